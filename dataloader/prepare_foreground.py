"""Estimate once the foreground colours of photos with alphas, to train on them
(data.train_merged = the photos, data.train_alpha = the alphas, data.train_fg = the output).

python -m dataloader.prepare_foreground --image-dir I --alpha-dir A --output F

For each photo I/<stem>.* with its alpha A/<stem>.* it writes F/<stem>.png: the foreground
colours F of photo = alpha F + (1 - alpha) B, estimated with the project's foreground
estimation (utils.cutouts.foreground.estimate_foreground: pymatting's multi-level method, as the
cutouts use), 8-bit. Training then composites F over new backgrounds as it does Adobe's
foregrounds. Files are written atomically, so a foreground in F is always whole: a run that
was interrupted (Ctrl-C, a kill, a crash) continues where it stopped when started again, keeping
the foregrounds already made. A photo without an alpha, an alpha of another size or in colour,
or a file that cannot be read is named and skipped; the exit code is then 1.
Needs pip install -r requirements-cutout.txt.
"""
import argparse
import os
import sys
from functools import partial
from typing import List, Optional, Tuple

from dataloader.datasets import image_size
from utils.atomic import remove_temporary_files
from utils.io.batch import (check_same_size, drop_clashing, folders_problem, output_folder_problem, pair_by_stem,
                            process_pairs, report_failures)
from utils.extras import MissingExtraError
from utils.cutouts.foreground import estimate_foreground, load_grey_alpha, require_pymatting
from utils.io.images import ImageReadError, list_images, read_image, stem, write_image


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-dir", required=True, help="the photos (data.train_merged)")
    parser.add_argument("--alpha-dir", required=True, help="their alphas, matched by file stem (data.train_alpha)")
    parser.add_argument("--output", required=True,
                        help="folder for <stem>.png foregrounds (data.train_fg), outside the input folders")
    return parser.parse_args(argv)


def foreground_path(output: str, image_path: str) -> str:
    return os.path.join(output, f"{stem(image_path)}.png")


def make_foreground(image_path: str, alpha_path: str, output: str) -> None:
    """Writes the photo's estimated foreground into `output`; ImageReadError or WriteError naming
    the file."""
    image = read_image(image_path)
    alpha = load_grey_alpha(alpha_path)
    check_same_size(image, alpha, image_path, alpha_path, "alpha")
    write_image(foreground_path(output, image_path), estimate_foreground(image, alpha))


def split_done(pairs: List[Tuple[str, str]], output: str) -> Tuple[List[Tuple[str, str]], int, List[str]]:
    """(the pairs still to do, how many foregrounds are already there, problems): a foreground
    already in `output` is kept when it has its photo's size, else named (it may be the user's)."""
    todo, done, problems = [], 0, []
    for image_path, alpha_path in pairs:
        path = foreground_path(output, image_path)
        if not os.path.exists(path):
            todo.append((image_path, alpha_path))
            continue
        try:
            made, photo = image_size(path), image_size(image_path)
        except ImageReadError as e:
            problems.append(f"{e}; delete it to make it again")
            continue
        if made == photo:
            done += 1
        else:
            problems.append(f"{path} is {made[0]}x{made[1]} but its photo {image_path} is {photo[0]}x{photo[1]}; "
                            "delete it to make it again")
    return todo, done, problems


def arguments_problem(args: argparse.Namespace) -> str:
    """The error line for arguments the command cannot run with, '' when none (the output folder
    is then made)."""
    problem = folders_problem((("--image-dir", args.image_dir), ("--alpha-dir", args.alpha_dir)), args.output,
                              "foregrounds")
    if problem:
        return problem
    try:
        require_pymatting()
    except MissingExtraError as e:
        return f"error: {e}"
    return output_folder_problem(args.output)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    problem = arguments_problem(args)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    total = len(list_images(args.image_dir))
    for path in remove_temporary_files(args.output):
        print(f"removed {path}, left by a write that was cut short", file=sys.stderr)

    pairs, problems = pair_by_stem(args.image_dir, args.alpha_dir, "alpha")
    pairs, clashes = drop_clashing(pairs, lambda image_path: [foreground_path("", image_path)])
    todo, kept, found = split_done(pairs, args.output)
    problems += clashes + found
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    made = process_pairs(todo, partial(make_foreground, output=args.output), "foreground", problems)
    print(f"{made} foregrounds made, {kept} already in {args.output} kept, of {total} photos")
    return report_failures(total - made - kept, total, problems)


if __name__ == "__main__":
    sys.exit(main())
