"""Released models by name: what a family declares of its released files (released), and fetching
them, checked, into a cache (fetch: the cache, MATTING_MIRROR, plain HTTPS with resume, Google
Drive through gdown, the HuggingFace hub through huggingface_hub). Family-free: the table itself is
gathered from the families by networks.families."""
