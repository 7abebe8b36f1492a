"""Cut out a folder of images with their alpha mattes (e.g. demo.py's predictions).

python -m utils.cutouts.cutout --image-dir I --alpha-dir A --output O [--background SPEC]

Alphas are matched to images by file stem. Per image it writes into O:
  <stem>_fg.png         the estimated foreground colours (pymatting's multi-level method), 8-bit;
  <stem>_rgba.png       the cutout: those colours with the alpha as a straight alpha channel, 8-bit;
  <stem>_composite.png  with --background: the cutout over that colour or picture.
Alphas are grey, 8- or 16-bit (scaled to 8 bits); of a colour alpha the first (red) channel is
used, with a warning. An image that cannot be read, processed or written is named and skipped;
the rest goes on, and the exit code is then 1. Needs pip install -r requirements-cutout.txt.
"""
import argparse
import os
import sys
from functools import partial
from typing import List, Optional

from utils.io.batch import (COMPOSITE_SUFFIX, CUTOUT_SUFFIXES, check_same_size, drop_clashing, folders_problem,
                            output_folder_problem, pair_by_stem, process_pairs, report_failures, write_all)
from utils.extras import MissingExtraError
from utils.cutouts.foreground import (ACCEPTED_BACKGROUNDS, Background, composite, estimate_foreground, load_alpha,
                                      parse_background, require_pymatting, rgba_image)
from utils.io.images import list_images, read_image, stem
from utils.memory import named_out_of_memory


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-dir", required=True, help="input image dir")
    parser.add_argument("--alpha-dir", required=True,
                        help="alpha matte dir; alphas are matched to images by file stem")
    parser.add_argument("--output", required=True, help="output dir (created if missing), outside the input dirs")
    parser.add_argument("--background", metavar="SPEC",
                        help=f"also write <stem>_composite.png over {ACCEPTED_BACKGROUNDS}; a picture is "
                             "scaled to cover the image and cropped about its centre")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="accepted as demo.py accepts it; the foreground estimator (pymatting) always "
                             "runs on the CPU")
    return parser.parse_args(argv)


def output_names(image_path: str, with_composite: bool) -> List[str]:
    suffixes = CUTOUT_SUFFIXES + ((COMPOSITE_SUFFIX,) if with_composite else ())
    return [f"{stem(image_path)}{suffix}.png" for suffix in suffixes]


def cut_out(image_path: str, alpha_path: str, output: str, background: Optional[Background]) -> None:
    """Writes the image's outputs into `output`; ImageReadError, WriteError or OutOfMemory naming the file."""
    image = read_image(image_path)
    alpha, warning = load_alpha(alpha_path)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    check_same_size(image, alpha, image_path, alpha_path, "alpha")
    with named_out_of_memory(image_path, alpha.shape[1], alpha.shape[0]):
        foreground = estimate_foreground(image, alpha)
        pictures = [foreground, rgba_image(foreground, alpha)]
        if background is not None:
            pictures.append(composite(foreground, alpha, background.fill(*alpha.shape)))
    write_all([os.path.join(output, name) for name in output_names(image_path, background is not None)], pictures)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    problem = folders_problem((("--image-dir", args.image_dir), ("--alpha-dir", args.alpha_dir)), args.output,
                              "cutouts")
    if problem:
        print(problem, file=sys.stderr)
        return 2
    try:
        background = parse_background(args.background) if args.background is not None else None
        require_pymatting()
    except ValueError as e:
        print(f"error: --background {e}", file=sys.stderr)
        return 2
    except MissingExtraError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.device == "cuda":
        print("note: --device cuda: the foreground estimator (pymatting) runs on the CPU", file=sys.stderr)

    pairs, problems = pair_by_stem(args.image_dir, args.alpha_dir, "alpha")
    pairs, clashes = drop_clashing(pairs, lambda image_path: output_names(image_path, background is not None))
    problems += clashes
    total = len(list_images(args.image_dir))
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    problem = output_folder_problem(args.output)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    done = process_pairs(pairs, partial(cut_out, output=args.output, background=background), "cutout", problems)
    print(f"{done} of {total} images cut out into {args.output}")
    return report_failures(total - done, total, problems)


if __name__ == "__main__":
    sys.exit(main())
