"""The README's picture, made from data this project makes itself: toy test images from
dataloader.toy (CC0 photos from scikit-image's wheel, procedural alphas), each row its photo,
its trimap, its ground-truth alpha and the cutout over a checkerboard (foreground colours
estimated as the cutout tools estimate them; needs requirements-cutout.txt).

python -m docs.readme_picture --out docs/toy-example.png
"""
import argparse
import os
import sys
import tempfile
from typing import List, Optional

import cv2
import numpy as np
from PIL import Image

from dataloader.toy import make_toy_dataset
from utils.cutouts.foreground import checkerboard, composite, estimate_foreground
from utils.io.images import read_grey, read_image

PANEL_HEIGHT = 150
LABELS = ("photo", "trimap", "true alpha", "cutout")


def labelled(panel: np.ndarray, label: str) -> np.ndarray:
    """The panel with its label on a white strip above it."""
    strip = np.full((22, panel.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([strip, panel])


def picture_row(folder: str, name: str) -> np.ndarray:
    """photo | trimap | alpha | cutout over a checkerboard, PANEL_HEIGHT px high, BGR."""
    image = read_image(os.path.join(folder, "test", "merged", name + ".png")).astype(np.uint8)
    trimap = read_grey(os.path.join(folder, "test", "trimaps", name + ".png")).astype(np.uint8)
    alpha = read_grey(os.path.join(folder, "test", "alpha", name.rsplit("_", 1)[0] + ".png")).astype(np.uint8)
    height, width = alpha.shape
    cutout = composite(estimate_foreground(image, alpha), alpha, checkerboard(height, width))
    panels = [image, cv2.cvtColor(trimap, cv2.COLOR_GRAY2BGR), cv2.cvtColor(alpha, cv2.COLOR_GRAY2BGR), cutout]
    scale = PANEL_HEIGHT / height
    gap = np.full((PANEL_HEIGHT + 22, 6, 3), 255, np.uint8)
    row: List[np.ndarray] = []
    for panel, label in zip(panels, LABELS):
        row += [labelled(cv2.resize(panel, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), label), gap]
    return np.hstack(row[:-1])


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the PNG to write (256 colours)")
    parser.add_argument("--seed", type=int, default=0, help="dataloader.toy's seed")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        make_toy_dataset(folder, num_fg=0, num_bg=0, num_test=2, seed=args.seed)
        rows = [picture_row(folder, name) for name in ("test00_0", "test01_1")]
    width = max(row.shape[1] for row in rows)
    rows = [np.pad(row, ((0, 6), (0, width - row.shape[1]), (0, 0)), constant_values=255) for row in rows]
    picture = Image.fromarray(np.vstack(rows)[:-6, :, ::-1].copy())
    picture.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
