"""Predict alpha mattes for a folder of images and trimaps with a trained GCA-Matting model.

python demo.py --config config/gca-dist-all-data.toml \
    --checkpoint checkpoints/gca-dist-all-data/gca-dist-all-data.pth \
    --image-dir demo/input_lowres --trimap-dir demo/trimap_lowres/Trimap3 --output demo/pred/Trimap3/
"""
import argparse
import os
import sys
from typing import List, Optional, Tuple

import torch

from networks import build_generator, set_gca_block
from utils.allocator import reuse_freed_memory
from utils.checkpoint import CheckpointError, load_weights
from utils.config import ConfigError, load_config
from utils.flow_vis import offset_image
from utils.image_io import IMAGE_EXTENSIONS, ImageReadError, index_by_stem, list_images, read_grey, read_image, stem, write_image
from utils.inference import check_precision, predict_alpha
from utils.progress import progress


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config/gca-dist-all-data.toml")
    parser.add_argument("--checkpoint", default="checkpoints/gca-dist-all-data/gca-dist-all-data.pth",
                        help="path of checkpoint")
    parser.add_argument("--image-dir", default="demo/input_lowres", help="input image dir")
    parser.add_argument("--trimap-dir", default="demo/trimap_lowres/Trimap3",
                        help="input trimap dir; trimaps are matched to images by file stem")
    parser.add_argument("--output", default="demo/pred/Trimap3/", help="output dir")
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


def process_one(model: torch.nn.Module, image_path: str, trimap_path: str, save_dir: str,
                trimap_channel: int, device: torch.device, write_offsets: bool, precision: str = "fp32") -> None:
    image = read_image(image_path)
    trimap = read_grey(trimap_path)
    if image.shape[:2] != trimap.shape:
        raise ImageReadError(f"{trimap_path}: trimap is {trimap.shape[1]}x{trimap.shape[0]} but "
                             f"{image_path} is {image.shape[1]}x{image.shape[0]}; they must be the same size")
    alpha, info = predict_alpha(model, image, trimap, trimap_channel, device, precision)
    name = stem(image_path)
    write_image(os.path.join(save_dir, name + ".png"), alpha)
    if write_offsets and info is not None:
        for index in (1, 2):
            offsets, scales = info[f"offset_{index}"]
            picture = offset_image(offsets[0].cpu().numpy(), float(scales[0, 0]), float(scales[0, 1]))
            write_image(os.path.join(save_dir, f"{name}_offset{index}.png"), picture)


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
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    os.makedirs(save_dir, exist_ok=True)
    done = 0
    for image_path, trimap_path in progress(pairs, desc="demo"):
        try:
            process_one(model, image_path, trimap_path, save_dir, config.model.trimap_channel,
                        device, not args.no_offset, args.precision)
            done += 1
        except ImageReadError as e:
            problems.append(str(e))
            print(f"skipped: {e}", file=sys.stderr)
        except FloatingPointError as e:
            problems.append(f"{image_path}: {e}")
            print(f"skipped: {image_path}: {e}", file=sys.stderr)
    print(f"{done} of {done + len(problems)} images written to {save_dir}")
    if problems:
        print(f"{len(problems)} failed:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    reuse_freed_memory()
    sys.exit(main())
