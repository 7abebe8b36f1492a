"""Images and folders: reading and writing images as the published code does (images), and what the
folder jobs share: pairing files by stem, refusing clashing outputs, all-or-none writes (batch)."""
