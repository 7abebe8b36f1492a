"""The Deep Image Matting augmentation used by the `*-dimaug` configs (one-channel trimap).

Crop a square of side 320, 480 or 640 centred on a random unknown pixel (0 < alpha < 255),
upscaling (bilinear) an image too small for it, flip horizontally with p = 0.5, resize to the
output size, generate the trimap by erosion (kernel sizes 1..29) and composite over the
background resized (cubic) to the foreground.
"""
from typing import Dict

import cv2
import numpy as np

from dataloader import transforms as T

CROP_SIDES = (320, 480, 640)


def dim_sample(fg: np.ndarray, alpha8: np.ndarray, bg: np.ndarray, rng: np.random.Generator,
               output_size: int, own_background: bool = False) -> Dict[str, np.ndarray]:
    """fg, bg BGR uint8, alpha uint8 -> image, fg, bg (float 0..255), alpha (float32), trimap
    (float32 grey 0/128/255), output_size x output_size. An own background (aligned with fg, of
    its size) is upscaled as fg is, so that the image is the photo."""
    side = int(rng.choice(CROP_SIDES))
    h, w = alpha8.shape
    if min(h, w) < side:
        factor = side / min(h, w)
        size = (max(side, int(np.ceil(w * factor))), max(side, int(np.ceil(h * factor))))
        fg = cv2.resize(fg, size, interpolation=cv2.INTER_LINEAR)
        alpha8 = cv2.resize(alpha8, size, interpolation=cv2.INTER_LINEAR)
        if own_background:
            bg = cv2.resize(bg, size, interpolation=cv2.INTER_LINEAR)
        h, w = alpha8.shape
    bg = cv2.resize(bg, (w, h), interpolation=cv2.INTER_CUBIC)
    unknown = np.argwhere((alpha8 > 0) & (alpha8 < 255))
    if len(unknown):
        cy, cx = unknown[int(rng.integers(len(unknown)))]
    else:
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
    top = int(np.clip(cy - side // 2, 0, h - side))
    left = int(np.clip(cx - side // 2, 0, w - side))
    window = (slice(top, top + side), slice(left, left + side))
    fg, alpha8, bg = fg[window], alpha8[window], bg[window]
    if rng.random() < 0.5:
        fg, alpha8, bg = fg[:, ::-1], alpha8[:, ::-1], bg[:, ::-1]
    size = (output_size, output_size)
    fg = cv2.resize(np.ascontiguousarray(fg), size, interpolation=cv2.INTER_LINEAR)
    alpha = cv2.resize(np.ascontiguousarray(alpha8), size, interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    bg = cv2.resize(np.ascontiguousarray(bg), size, interpolation=cv2.INTER_LINEAR)
    trimap = T.gen_trimap(alpha, int(rng.integers(1, 30)), int(rng.integers(1, 30)))
    image, fg, bg, alpha = T.composite(fg, bg, alpha)
    return {"image": image, "fg": fg, "bg": bg, "alpha": alpha, "trimap": trimap}
