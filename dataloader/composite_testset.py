"""Rebuild the Composition-1K `merged/` images exactly as Adobe's compositing code does.

python -m dataloader.composite_testset --fg-dir FG --alpha-dir ALPHA --bg-dir VOC \
    --fg-names test_fg_names.txt --bg-names test_bg_names.txt --out merged

The test numbers depend on it: the released GCA weights score SAD 35.28 on Adobe's
composites and about 37.8 on a set composited by another script. Adobe's procedure is PIL
code, so this uses PIL too: its bicubic filter (a = -0.5) differs from OpenCV's (a = -0.75).
For each foreground in list order, the next 20 backgrounds in list order; a background
smaller than the foreground is bicubic-upscaled by max(w / bw, h / bh) (sizes rounded up),
cropped at the top-left to the foreground size, and composited per pixel in double precision
as fg * a + bg * (1 - a), a = alpha / 255, truncated to uint8. Output: `<fg stem>_<k>.png`.
"""
import argparse
import math
import os
import sys
from typing import List, Optional

import numpy as np
from PIL import Image

from utils.atomic import atomic_file
from utils.progress import progress

BACKGROUNDS_PER_FOREGROUND = 20


def read_names(path: str) -> List[str]:
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def fit_background(bg: Image.Image, width: int, height: int) -> Image.Image:
    """Upscale (bicubic) a background smaller than width x height by the larger ratio, then
    crop its top-left width x height."""
    if bg.mode != "RGB":
        bg = bg.convert("RGB")
    bw, bh = bg.size
    ratio = max(width / bw, height / bh)
    if ratio > 1:
        bg = bg.resize((math.ceil(bw * ratio), math.ceil(bh * ratio)), Image.BICUBIC)
    return bg.crop((0, 0, width, height))


def composite(fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Adobe's per-pixel composite: fg where alpha is 255, bg where 0, else
    int(a * fg + (1 - a) * bg) with a = alpha / 255 in double precision. All H x W (x 3) uint8."""
    a = (alpha.astype(np.float64) / 255)[..., None]
    blended = (a * fg.astype(np.float64) + (1 - a) * bg.astype(np.float64)).astype(np.uint8)
    return np.where(a >= 1, fg, np.where(a > 0, blended, bg))


def alpha_channel(image: Image.Image) -> np.ndarray:
    array = np.asarray(image)
    return array if array.ndim == 2 else array[:, :, 0]


def composite_test_set(fg_dir: str, alpha_dir: str, bg_dir: str, fg_names: List[str], bg_names: List[str],
                       out_dir: str, per_foreground: int = BACKGROUNDS_PER_FOREGROUND) -> int:
    """Writes len(fg_names) * per_foreground images to out_dir; returns how many."""
    needed = len(fg_names) * per_foreground
    if len(bg_names) < needed:
        raise ValueError(f"{len(fg_names)} foregrounds need {needed} background names, the list has {len(bg_names)}")
    missing = [os.path.join(folder, name) for folder, names in ((fg_dir, fg_names), (alpha_dir, fg_names),
                                                                  (bg_dir, bg_names[:needed]))
               for name in names if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise FileNotFoundError(f"{len(missing)} listed files are missing, e.g. {', '.join(missing[:3])}")
    os.makedirs(out_dir, exist_ok=True)
    written = 0
    for index, name in enumerate(progress(fg_names, desc="composite")):
        fg_image = Image.open(os.path.join(fg_dir, name))
        alpha = alpha_channel(Image.open(os.path.join(alpha_dir, name)))
        width, height = fg_image.size
        if alpha.shape != (height, width):
            raise ValueError(f"{os.path.join(alpha_dir, name)} is {alpha.shape[1]}x{alpha.shape[0]} but "
                             f"{os.path.join(fg_dir, name)} is {width}x{height}")
        fg = np.asarray(fg_image.convert("RGB"))
        stem = os.path.splitext(name)[0]
        for k in range(per_foreground):
            bg_name = bg_names[index * per_foreground + k]
            bg = np.asarray(fit_background(Image.open(os.path.join(bg_dir, bg_name)), width, height))
            with atomic_file(os.path.join(out_dir, f"{stem}_{k}.png")) as f:
                Image.fromarray(composite(fg, bg, alpha)).save(f, "PNG")
            written += 1
    return written


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fg-dir", required=True, help="Adobe test foregrounds (fg/)")
    parser.add_argument("--alpha-dir", required=True, help="Adobe test alpha mattes (alpha/)")
    parser.add_argument("--bg-dir", required=True, help="PASCAL VOC images")
    parser.add_argument("--fg-names", required=True, help="test_fg_names.txt")
    parser.add_argument("--bg-names", required=True, help="test_bg_names.txt")
    parser.add_argument("--out", required=True, help="output folder (merged/)")
    args = parser.parse_args(argv)
    try:
        count = composite_test_set(args.fg_dir, args.alpha_dir, args.bg_dir, read_names(args.fg_names),
                                   read_names(args.bg_names), args.out)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {count} composites to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
