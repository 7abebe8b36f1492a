"""The released models this project runs, by name: what is on this machine, the sizes, the licences.

python -m networks.models                      # the table
python -m networks.models --fetch aim mmagic-gca   # fetch them now (e.g. on a machine with a network)

A name is what --checkpoint takes in demo.py, app.py, networks.export and main.py's
train.init_checkpoint and test.checkpoint; its config comes with it. A model is looked for where
the docs say to put it (checkpoints/<version>/<file>), then in the cache ($MATTING_CACHE, else
$XDG_CACHE_HOME/gca-matting, else ~/.cache/gca-matting) and huggingface_hub's, and fetched from
$MATTING_MIRROR (a base URL or a folder) where set, else from its publisher (docs/models.md).
"""
import argparse
import os
import sys
from typing import List, Optional
from urllib.parse import urlparse

from networks.families import RELEASED, checkpoint_path, released_file
from utils.checkpoint import CheckpointError
from utils.hub.fetch import local_copy
from utils.hub.released import BROWSER, CACHE_ENV, HTTP, MIRROR_ENV, ReleasedModel, cache_folder, mirror, source_kind


def bytes_on_disk(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(folder, name)) for folder, _, names in os.walk(path) for name in names)


def where(model: ReleasedModel) -> str:
    """Where the model's file is on this machine and its size, or how it would be fetched."""
    found = local_copy(model, released_file(model))
    if found:
        return f"{found} ({bytes_on_disk(found) / 2 ** 20:.1f} MiB)"
    if mirror():
        return f"not here; fetched on first use from {MIRROR_ENV}"
    sources = [urlparse(url).hostname if source_kind(url) == HTTP else source_kind(url) for url in model.urls
               if source_kind(url) != BROWSER]
    if not sources:
        return f"not here; download it by hand (python -m networks.models --fetch {model.name} says from where)"
    return f"not here; fetched on first use from {' or '.join(sources)}"


def table_lines() -> List[str]:
    lines = [f"cache: {cache_folder()} ({CACHE_ENV}); mirror: {mirror() or 'none'} ({MIRROR_ENV})", ""]
    for model in RELEASED.values():
        size = f", {model.published_size}" if model.published_size else ""
        lines += [f"{model.name}  ({model.family}, {model.config}): {model.file}{size}",
                  f"    here: {where(model)}",
                  f"    licence: {'NON-COMMERCIAL use only; ' if model.non_commercial else ''}{model.licence}",
                  f"    published figures: {model.figures}"]
    return lines


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fetch", nargs="+", metavar="NAME", choices=list(RELEASED),
                        help="fetch these models into the cache now")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if not args.fetch:
        print("\n".join(table_lines()))
        return 0
    failed = 0
    for name in args.fetch:
        try:
            print(f"{name}: {checkpoint_path(name)}")
        except CheckpointError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
