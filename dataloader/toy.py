"""A small matting data set made on the spot, for tests, the quickstart and benchmarks.

python -m dataloader.toy --out DIR [--layout adobe|photos] [--alphas shapes|glyphs]
                         [--num-fg 12] [--num-bg 40] [--num-test 4]
                         [--fg-size 320 480] [--bg-size 240 400] [--seed 0]

Foreground colours and backgrounds are real public-domain / CC0 photos that scikit-image
ships inside its wheel (read as files; scikit-image itself is not imported, so it installs
with --no-deps). Alphas are procedural: `shapes` (the default) are blurred solid shapes, thin
anti-aliased strands and semi-transparent regions; `glyphs` are another kind, large letters
smeared by a motion blur. Layouts:

  adobe (the default):
  DIR/train/fg, DIR/train/alpha, DIR/train/bg      Adobe training layout (mixed .jpg/.png)
  DIR/test/merged/<stem>_<k>.png, DIR/test/alpha/<stem>.png, DIR/test/trimaps/<stem>_<k>.png
                                                   Composition-1K layout
  photos: photos with alphas and no foreground layers, as AM-2K or P3M-10k ship them
  (each photo a foreground composited over a background, the foreground then thrown away):
  DIR/train/image/<stem>.png, DIR/train/alpha/<stem>.png   --num-fg photos to train on
  DIR/train/bg                                             --num-bg backgrounds
  DIR/test/merged/<stem>.png, DIR/test/alpha/<stem>.png    --num-test held-out photos, no
                                                           trimaps (python -m utils.trimaps.from_alpha)
"""
import argparse
import os
import sys
from typing import List, Optional, Tuple

import cv2
import numpy as np

from dataloader.composite_testset import composite
from utils.io.images import write_image
from utils.toy_images import load_photos, procedural_alpha

TEST_BACKGROUNDS_PER_FG = 2


def random_view(rng: np.random.Generator, photo: np.ndarray, height: int, width: int) -> np.ndarray:
    """A random crop of the photo (at least half of each side), flipped at random, resized."""
    ph, pw = photo.shape[:2]
    ch, cw = int(rng.integers(ph // 2, ph + 1)), int(rng.integers(pw // 2, pw + 1))
    y, x = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
    view = photo[y:y + ch, x:x + cw]
    if rng.random() < 0.5:
        view = view[:, ::-1]
    return cv2.resize(np.ascontiguousarray(view), (width, height), interpolation=cv2.INTER_AREA)


GLYPH_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_TRIPLEX)
HERSHEY_CAP_HEIGHT = 22  # px of a capital at font scale 1


def motion_kernel(length: int, angle: float) -> np.ndarray:
    """A normalised line of `length` px at `angle` degrees: a linear motion blur."""
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1
    centre = ((length - 1) / 2, (length - 1) / 2)
    kernel = cv2.warpAffine(kernel, cv2.getRotationMatrix2D(centre, angle, 1.0), (length, length))
    return kernel / kernel.sum()


def glyph_alpha(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """uint8 alpha of another kind than procedural_alpha: one to three large thick letters,
    smeared by a linear motion blur of random length (5 to 25 px) and direction, so that
    sharp-cornered opaque strokes fade out in wide semi-transparent trails."""
    letters = np.zeros((height, width), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        font = GLYPH_FONTS[int(rng.integers(len(GLYPH_FONTS)))]
        scale = float(rng.uniform(0.3, 0.6)) * min(height, width) / HERSHEY_CAP_HEIGHT
        thickness = max(2, int(scale * rng.uniform(1.5, 4)))
        letter = chr(int(rng.integers(ord("A"), ord("Z") + 1)))
        (text_w, text_h), _ = cv2.getTextSize(letter, font, scale, thickness)
        x = int(rng.integers(0, max(1, width - text_w)))
        y = int(rng.integers(min(text_h, height - 1), height))
        cv2.putText(letters, letter, (x, y), font, scale, 255, thickness, cv2.LINE_AA)
    kernel = motion_kernel(int(rng.integers(5, 26)), float(rng.uniform(0, 180)))
    smeared = cv2.filter2D(letters.astype(np.float32), -1, kernel)
    return np.clip(np.round(smeared), 0, 255).astype(np.uint8)


ALPHA_KINDS = {"shapes": procedural_alpha, "glyphs": glyph_alpha}


def toy_trimap(alpha: np.ndarray, band: int = 15) -> np.ndarray:
    """128 on the soft band (0 < alpha < 255) dilated by `band` px, 255 / 0 elsewhere."""
    trimap = np.where(alpha >= 128, 255, 0).astype(np.uint8)
    soft = ((alpha > 0) & (alpha < 255)).astype(np.uint8)
    soft = cv2.dilate(soft, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (band, band)))
    trimap[soft == 1] = 128
    return trimap


def random_size(rng: np.random.Generator, size_range: Tuple[int, int]) -> Tuple[int, int]:
    return int(rng.integers(size_range[0], size_range[1] + 1)), int(rng.integers(size_range[0], size_range[1] + 1))


def make_toy_dataset(out: str, num_fg: int = 12, num_bg: int = 40, num_test: int = 4,
                     fg_size: Tuple[int, int] = (320, 480), bg_size: Tuple[int, int] = (240, 400),
                     seed: int = 0, alphas: str = "shapes") -> None:
    rng = np.random.default_rng(seed)
    make_alpha = ALPHA_KINDS[alphas]
    photos = load_photos()
    folders = {key: os.path.join(out, *key.split("/")) for key in
               ("train/fg", "train/alpha", "train/bg", "test/merged", "test/alpha", "test/trimaps")}
    for folder in folders.values():
        os.makedirs(folder, exist_ok=True)
    for i in range(num_fg):
        h, w = random_size(rng, fg_size)
        fg = random_view(rng, photos[int(rng.integers(len(photos)))], h, w)
        ext = ".jpg" if i % 3 == 0 else ".png"  # Adobe's folders mix extensions too
        write_image(os.path.join(folders["train/fg"], f"fg{i:03d}{ext}"), fg)
        write_image(os.path.join(folders["train/alpha"], f"fg{i:03d}.png"), make_alpha(rng, h, w))
    for i in range(num_bg):
        h, w = random_size(rng, bg_size)
        bg = random_view(rng, photos[int(rng.integers(len(photos)))], h, w)
        write_image(os.path.join(folders["train/bg"], f"bg{i:04d}.jpg"), bg)
    for i in range(num_test):
        h, w = random_size(rng, fg_size)
        fg = random_view(rng, photos[int(rng.integers(len(photos)))], h, w)
        alpha = make_alpha(rng, h, w)
        write_image(os.path.join(folders["test/alpha"], f"test{i:02d}.png"), alpha)
        for k in range(TEST_BACKGROUNDS_PER_FG):
            bg = random_view(rng, photos[int(rng.integers(len(photos)))], h, w)
            write_image(os.path.join(folders["test/merged"], f"test{i:02d}_{k}.png"), composite(fg, bg, alpha))
            write_image(os.path.join(folders["test/trimaps"], f"test{i:02d}_{k}.png"), toy_trimap(alpha))


def make_photo_dataset(out: str, num_photos: int = 12, num_bg: int = 40, num_test: int = 4,
                       size: Tuple[int, int] = (320, 480), bg_size: Tuple[int, int] = (240, 400),
                       seed: int = 0, alphas: str = "shapes") -> None:
    """The `photos` layout (see the module's docstring): photos composited from a foreground view
    and a background view with an alpha of the kind `alphas`; only the photo and its alpha kept."""
    rng = np.random.default_rng(seed)
    make_alpha = ALPHA_KINDS[alphas]
    photos = load_photos()
    folders = {key: os.path.join(out, *key.split("/")) for key in
               ("train/image", "train/alpha", "train/bg", "test/merged", "test/alpha")}
    for folder in folders.values():
        os.makedirs(folder, exist_ok=True)
    for photo_key, alpha_key, count, prefix in (("train/image", "train/alpha", num_photos, "p"),
                                                ("test/merged", "test/alpha", num_test, "t")):
        for i in range(count):
            h, w = random_size(rng, size)
            fg, bg = (random_view(rng, photos[int(rng.integers(len(photos)))], h, w) for _ in range(2))
            alpha = make_alpha(rng, h, w)
            write_image(os.path.join(folders[photo_key], f"{prefix}{i:03d}.png"), composite(fg, bg, alpha))
            write_image(os.path.join(folders[alpha_key], f"{prefix}{i:03d}.png"), alpha)
    for i in range(num_bg):
        h, w = random_size(rng, bg_size)
        write_image(os.path.join(folders["train/bg"], f"bg{i:04d}.jpg"),
                    random_view(rng, photos[int(rng.integers(len(photos)))], h, w))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--layout", choices=("adobe", "photos"), default="adobe")
    parser.add_argument("--alphas", choices=tuple(ALPHA_KINDS), default="shapes")
    parser.add_argument("--num-fg", type=int, default=12)
    parser.add_argument("--num-bg", type=int, default=40)
    parser.add_argument("--num-test", type=int, default=4)
    parser.add_argument("--fg-size", type=int, nargs=2, default=(320, 480), metavar=("MIN", "MAX"))
    parser.add_argument("--bg-size", type=int, nargs=2, default=(240, 400), metavar=("MIN", "MAX"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.layout == "photos":
        make_photo_dataset(args.out, args.num_fg, args.num_bg, args.num_test, tuple(args.fg_size),
                           tuple(args.bg_size), args.seed, args.alphas)
        print(f"photos with alphas ({args.alphas}) written to {args.out}: {args.num_fg} photos to train on, "
              f"{args.num_bg} backgrounds, {args.num_test} held-out photos")
        return 0
    make_toy_dataset(args.out, args.num_fg, args.num_bg, args.num_test, tuple(args.fg_size),
                     tuple(args.bg_size), args.seed, args.alphas)
    print(f"toy data set written to {args.out}: {args.num_fg} foregrounds, {args.num_bg} backgrounds, "
          f"{args.num_test * TEST_BACKGROUNDS_PER_FG} test images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
