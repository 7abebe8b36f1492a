"""Predict alpha mattes for a folder of images and trimaps with a trained GCA-Matting model.

python demo.py --config config/gca-dist-all-data.toml \
    --checkpoint checkpoints/gca-dist-all-data/gca-dist-all-data.pth \
    --image-dir demo/input_lowres --trimap-dir demo/trimap_lowres/Trimap3 --output demo/pred/Trimap3/

Writes <stem>.png (the alpha) and <stem>_offset1.png, <stem>_offset2.png (unless --no-offset) per
image into <output>/<version>_<checkpoint file name>/. Trimaps are grey (< 85 background, >= 170
foreground, else unknown) or labels 0/1/2. An image that cannot be processed or written, or whose
outputs would clash with another image's, is named and skipped; the rest goes on, and the exit
code is then 1.
"""
import argparse
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from networks import build_generator, set_gca_block
from utils.allocator import reuse_freed_memory
from utils.atomic import WriteError
from utils.checkpoint import CheckpointError, load_weights
from utils.config import ConfigError, load_config
from utils.flow_vis import offset_image
from utils.image_io import IMAGE_EXTENSIONS, ImageReadError, index_by_stem, list_images, read_grey, read_image, stem, write_image
from utils.inference import check_precision, predict_alpha
from utils.preprocess import UNKNOWN, label_trimap_to_grey, trimap_to_classes
from utils.progress import progress


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config/gca-dist-all-data.toml")
    parser.add_argument("--checkpoint", default="checkpoints/gca-dist-all-data/gca-dist-all-data.pth",
                        help="path of checkpoint")
    parser.add_argument("--image-dir", default="demo/input_lowres", help="input image dir")
    parser.add_argument("--trimap-dir", default="demo/trimap_lowres/Trimap3",
                        help="input trimap dir; trimaps are matched to images by file stem and are "
                             "grey (0 / 128 / 255) or labels 0 / 1 / 2")
    parser.add_argument("--output", default="demo/pred/Trimap3/",
                        help="output dir (created if missing); results go to a <version>_<checkpoint> folder in it")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CUDA when available, else CPU")
    parser.add_argument("--no-offset", action="store_true", help="do not write the GCA offset images")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="bf16 / fp16 run the convolutions in reduced precision (fp16: CUDA only); "
                             "GCA's attention stays fp32")
    return parser.parse_args(argv)


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda asked for, but PyTorch sees no CUDA device; use --device cpu")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


def is_inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder + os.sep)


def pair_images_with_trimaps(image_dir: str, trimap_dir: str) -> Tuple[List[Tuple[str, str]], List[str]]:
    """((image path, trimap path) pairs by file stem, problems) for every image in image_dir."""
    trimaps = index_by_stem(list_images(trimap_dir))
    pairs, problems = [], []
    for name in list_images(image_dir):
        image_path = os.path.join(image_dir, name)
        candidates = trimaps.get(stem(name), [])
        if not candidates:
            problems.append(f"{image_path}: no trimap named {stem(name)}.* in {trimap_dir}")
        elif len(candidates) > 1:
            problems.append(f"{image_path}: several trimaps match ({', '.join(candidates)}) in {trimap_dir}; keep one")
        else:
            pairs.append((image_path, os.path.join(trimap_dir, candidates[0])))
    return pairs, problems


def output_folder_problem(output: str, save_dir: str) -> Optional[str]:
    """Why save_dir cannot be created or written, or None. It creates nothing, so a run refused
    later (a bad checkpoint, no images) leaves no empty folder behind."""
    existing = os.path.abspath(save_dir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return (f"--output {output}: {existing} is a file, not a folder; "
                "give --output a folder path (missing folders are created)")
    if not os.access(existing, os.W_OK | os.X_OK):
        return (f"--output {output}: cannot write in {existing} (permission denied); "
                "choose an --output folder you can write to")
    return None


def output_names(image_path: str, write_offsets: bool) -> List[str]:
    """The file names an image's results are written under: the alpha, then the offset pictures."""
    name = stem(image_path)
    return [name + ".png"] + ([f"{name}_offset{index}.png" for index in (1, 2)] if write_offsets else [])


def drop_clashing(pairs: List[Tuple[str, str]], write_offsets: bool) -> Tuple[List[Tuple[str, str]], List[str]]:
    """(the pairs whose output names no other image writes, a problem per group of images that
    would write the same file): one would silently overwrite the other's result."""
    writers: Dict[str, List[str]] = {}
    for image_path, _ in pairs:
        for name in output_names(image_path, write_offsets):
            writers.setdefault(name, []).append(image_path)
    clashes: Dict[Tuple[str, ...], str] = {}
    for name, paths in writers.items():
        if len(paths) > 1:
            clashes.setdefault(tuple(paths), name)
    problems = [f"{', '.join(paths[:-1])} and {paths[-1]} would {'both' if len(paths) == 2 else 'all'} "
                f"write {name}; rename one" for paths, name in clashes.items()]
    clashing = {path for paths in clashes for path in paths}
    return [pair for pair in pairs if pair[0] not in clashing], problems


def read_trimap(path: str) -> np.ndarray:
    """read_grey, a 0/1/2 label trimap mapped to grey with a note; warns when no pixel is unknown."""
    trimap = read_grey(path)
    grey = label_trimap_to_grey(trimap)
    if grey is not None:
        print(f"note: {path}: read as a 0/1/2 label trimap", file=sys.stderr)
        trimap = grey
    if not (trimap_to_classes(trimap) == UNKNOWN).any():
        print(f"warning: {path}: the trimap has no unknown pixel, so the alpha is just its known regions "
              "and the network's prediction is not used; mark the uncertain band grey (128)", file=sys.stderr)
    return trimap


def write_all(paths: Sequence[str], pictures: Sequence[np.ndarray]) -> None:
    """Writes pictures[i] to paths[i]; when one fails, those already written are removed before
    the WriteError goes on, so an image leaves all its results or none."""
    written = []
    try:
        for path, picture in zip(paths, pictures):
            write_image(path, picture)
            written.append(path)
    except WriteError:
        for path in written:
            os.remove(path)
        raise


def process_one(model: torch.nn.Module, image_path: str, trimap_path: str, save_dir: str,
                trimap_channel: int, device: torch.device, write_offsets: bool, precision: str = "fp32") -> None:
    image = read_image(image_path)
    trimap = read_trimap(trimap_path)
    if image.shape[:2] != trimap.shape:
        raise ImageReadError(f"{trimap_path}: trimap is {trimap.shape[1]}x{trimap.shape[0]} but "
                             f"{image_path} is {image.shape[1]}x{image.shape[0]}; they must be the same size")
    alpha, info = predict_alpha(model, image, trimap, trimap_channel, device, precision)
    pictures = [alpha]
    if write_offsets and info is not None:
        for index in (1, 2):
            offsets, scales = info[f"offset_{index}"]
            pictures.append(offset_image(offsets[0].cpu().numpy(), float(scales[0, 0]), float(scales[0, 1])))
    names = output_names(image_path, write_offsets)
    write_all([os.path.join(save_dir, name) for name in names], pictures)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for flag, folder in (("--image-dir", args.image_dir), ("--trimap-dir", args.trimap_dir)):
        if not os.path.isdir(folder):
            print(f"error: {flag} {folder} is not a folder", file=sys.stderr)
            return 2
    save_dir = os.path.join(args.output, f"{config.version}_{os.path.basename(args.checkpoint)}")
    for folder in (args.image_dir, args.trimap_dir):
        if is_inside(save_dir, folder):
            print(f"error: output folder {save_dir} lies inside the input folder {folder}; "
                  "choose an --output outside it so predictions do not mix with the inputs", file=sys.stderr)
            return 2
    problem = output_folder_problem(args.output, save_dir)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2

    device = pick_device(args.device)
    try:
        check_precision(args.precision, device)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        model = build_generator(config.model.arch.encoder, config.model.arch.decoder, config.model.trimap_channel)
        set_gca_block(model, config.test.gca_block)
    except ValueError as e:
        print(f"error: {args.config}: {e}", file=sys.stderr)
        return 2
    try:
        load_weights(model, args.checkpoint)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    model.to(device).eval()

    pairs, problems = pair_images_with_trimaps(args.image_dir, args.trimap_dir)
    if not pairs and not problems:
        print(f"error: no images ({', '.join(IMAGE_EXTENSIONS)}) in {args.image_dir}", file=sys.stderr)
        return 2
    total = len(pairs) + len(problems)
    pairs, clashes = drop_clashing(pairs, not args.no_offset)
    problems += clashes
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    try:
        os.makedirs(save_dir, exist_ok=True)
    except OSError as e:
        print(f"error: --output {args.output}: {save_dir} cannot be created ({e.strerror or e}); "
              "choose another --output folder", file=sys.stderr)
        return 2
    done = 0
    for image_path, trimap_path in progress(pairs, desc="demo"):
        try:
            process_one(model, image_path, trimap_path, save_dir, config.model.trimap_channel,
                        device, not args.no_offset, args.precision)
            done += 1
        except (ImageReadError, WriteError) as e:
            problems.append(str(e))
            print(f"skipped: {e}", file=sys.stderr)
        except FloatingPointError as e:
            problems.append(f"{image_path}: {e}")
            print(f"skipped: {image_path}: {e}", file=sys.stderr)
    print(f"{done} of {total} images written to {save_dir}")
    if problems:
        print(f"{total - done} of {total} images failed:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    reuse_freed_memory()
    sys.exit(main())
