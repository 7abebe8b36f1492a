"""Test trimaps from ground-truth alphas, as the Composition-1K and Distinctions-646 test sets'
trimaps were made: the alpha's soft and nearby pixels unknown.

python -m utils.trimaps.from_alpha --alpha-dir A --output T [--width K | --random-width LO HI --seed S]

unknown (128) = dilate(alpha > 0) minus erode(alpha == 255), both with a disc of radius K
pixels; 255 where the erosion leaves foreground, 0 beyond the dilation (utils.trimaps.from_mask.band_trimap:
an exact disc, and the image border is not an edge). --random-width draws K for each alpha
uniformly from LO..HI with a generator seeded by S and the file's stem, so a file gets the same
trimap whatever else the folder holds and however often it is run. Writes T/<stem>.png, 8-bit
grey 0 / 128 / 255, atomically; a trimap already in T is kept (a run continues where it
stopped). An alpha that cannot be read or is in colour is named and skipped; the exit code is
then 1.
"""
import argparse
import os
import sys
import zlib
from functools import partial
from typing import List, Optional, Tuple

import numpy as np

from utils.io.batch import drop_clashing, folders_problem, output_folder_problem, process_pairs, report_failures
from utils.cutouts.foreground import load_grey_alpha
from utils.io.images import list_images, stem, write_image
from utils.trimaps.from_mask import band_trimap


def trimap_from_alpha(alpha: np.ndarray, width: int) -> np.ndarray:
    """uint8 0 / 128 / 255 trimap of a uint8 alpha: unknown = dilate(alpha > 0) - erode(alpha == 255),
    both by a disc of radius `width`."""
    return band_trimap(alpha == 255, alpha > 0, width)


def width_for(name_stem: str, width_range: Tuple[int, int], seed: int) -> int:
    """A width drawn uniformly from width_range (both ends included), from a generator seeded by
    `seed` and the stem alone."""
    rng = np.random.default_rng([seed, zlib.crc32(name_stem.encode("utf-8"))])
    return int(rng.integers(width_range[0], width_range[1] + 1))


def trimap_path(output: str, alpha_path: str) -> str:
    return os.path.join(output, f"{stem(alpha_path)}.png")


def write_trimap(alpha_path: str, path: str, width_range: Tuple[int, int], seed: int) -> None:
    """Writes the trimap of the alpha at alpha_path to `path`; ImageReadError or WriteError
    naming the file."""
    width = width_for(stem(alpha_path), width_range, seed)
    write_image(path, trimap_from_alpha(load_grey_alpha(alpha_path), width))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alpha-dir", required=True, help="ground-truth alphas (grey, 8- or 16-bit)")
    parser.add_argument("--output", required=True, help="folder for the <stem>.png trimaps, outside --alpha-dir")
    widths = parser.add_mutually_exclusive_group(required=True)
    widths.add_argument("--width", type=int, metavar="K", help="the disc's radius in pixels, for every alpha")
    widths.add_argument("--random-width", type=int, nargs=2, metavar=("LO", "HI"),
                        help="a radius per alpha, uniform in LO..HI, seeded by --seed and the file's stem")
    parser.add_argument("--seed", type=int, default=0, help="seed of --random-width (default 0)")
    args = parser.parse_args(argv)
    low, high = args.random_width or (args.width, args.width)
    if low < 1 or high < low:
        parser.error("the width must be at least 1 px (and LO <= HI for --random-width)")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    problem = folders_problem((("--alpha-dir", args.alpha_dir),), args.output, "trimaps") or \
        output_folder_problem(args.output)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    names = list_images(args.alpha_dir)
    width_range = tuple(args.random_width or (args.width, args.width))
    alpha_paths = [os.path.join(args.alpha_dir, name) for name in names]
    items, problems = drop_clashing([(path, trimap_path(args.output, path)) for path in alpha_paths],
                                    lambda alpha_path: [trimap_path(args.output, alpha_path)])
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    todo = [(alpha_path, path) for alpha_path, path in items if not os.path.exists(path)]
    kept = len(items) - len(todo)
    made = process_pairs(todo, partial(write_trimap, width_range=width_range, seed=args.seed), "trimap", problems)
    print(f"{made} trimaps made, {kept} already in {args.output} kept, of {len(names)} alphas")
    return report_failures(len(names) - made - kept, len(names), problems)


if __name__ == "__main__":
    sys.exit(main())
