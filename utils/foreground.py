"""From an image and its alpha matte to a usable cutout: the foreground colours (pymatting's
multi-level estimator), an RGBA picture, a composite over a new background.

Arrays are OpenCV's: BGR (BGRA) channel order, uint8 on the 0..255 scale unless said otherwise.
"""
import re
from dataclasses import dataclass
from types import ModuleType
from typing import Optional, Tuple

import cv2
import numpy as np

from utils.extras import import_extra
from utils.io.images import ImageReadError, read_image

COLOUR_NAMES = {  # R, G, B
    "white": (255, 255, 255), "black": (0, 0, 0), "red": (255, 0, 0), "green": (0, 255, 0),
    "blue": (0, 0, 255), "grey": (128, 128, 128), "gray": (128, 128, 128),
}
ACCEPTED_BACKGROUNDS = (f"a colour (#rrggbb or #rgb, R,G,B with values 0 to 255, or one of "
                        f"{', '.join(COLOUR_NAMES)}) or an image file")


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Values on the 0..255 scale -> uint8, rounded and clipped (uint8 input is returned as it is)."""
    if values.dtype == np.uint8:
        return values
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def require_pymatting() -> ModuleType:
    """The pymatting module, or MissingExtraError saying how to install it. Its first import
    compiles with numba (about half a minute, then cached)."""
    return import_extra("pymatting", "foreground colours need pymatting: pip install -r requirements-cutout.txt")


def alpha_to_unit(alpha: np.ndarray) -> np.ndarray:
    """uint8 alpha (0..255) or float alpha in [0, 1] -> float64 in [0, 1]."""
    if alpha.dtype == np.uint8:
        return alpha / 255.0
    if not np.issubdtype(alpha.dtype, np.floating):
        raise ValueError(f"alpha of type {alpha.dtype} is not supported; give uint8 (0..255) or float in [0, 1]")
    if alpha.size and (alpha.min() < 0 or alpha.max() > 1):
        raise ValueError(f"float alpha must lie in [0, 1], not [{alpha.min():g}, {alpha.max():g}]; "
                         "divide 0..255 values by 255")
    return alpha.astype(np.float64)


def estimate_foreground(image_bgr: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The foreground colours F of image = alpha F + (1 - alpha) B: H x W x 3 BGR uint8 (rounded).

    image_bgr: H x W x 3 on the 0..255 scale (uint8 or float); alpha: H x W uint8 or float in
    [0, 1]. Runs pymatting.estimate_foreground_ml on the CPU; its channels are solved alike, so
    BGR in gives BGR out."""
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"the image must be H x W x 3, not {image_bgr.shape}")
    if alpha.shape != image_bgr.shape[:2]:
        raise ValueError(f"the alpha is {alpha.shape} but the image is {image_bgr.shape[:2]}; they must match")
    pymatting = require_pymatting()
    unit_alpha = alpha_to_unit(alpha)
    foreground = pymatting.estimate_foreground_ml(image_bgr.astype(np.float64) / 255.0, unit_alpha)
    return to_uint8(foreground * 255.0)


def solve_background(image_bgr: np.ndarray, fg_bgr: np.ndarray, alpha_uint8: np.ndarray) -> np.ndarray:
    """The background B that completes image = alpha F + (1 - alpha) B for a known F: H x W x 3
    float32, (image - alpha F) / (1 - alpha) clipped to 0..255 where alpha < 1, the image itself
    where alpha is 1 (B has no weight there). Compositing F over it gives the image back, except
    where F is off by more than a background in 0..255 can make up for."""
    weight = alpha_uint8.astype(np.float32)[..., None] / 255
    image = image_bgr.astype(np.float32)
    remainder = image - weight * fg_bgr.astype(np.float32)
    background = np.divide(remainder, 1 - weight, out=image.copy(), where=np.broadcast_to(weight < 1, image.shape))
    return np.clip(background, 0, 255)


def rgba_image(fg_bgr: np.ndarray, alpha_uint8: np.ndarray) -> np.ndarray:
    """H x W x 4 BGRA uint8 with straight (not premultiplied) alpha, as cv2 writes PNG: colour =
    the foreground, alpha channel = alpha_uint8 exactly."""
    return np.dstack([fg_bgr, alpha_uint8])


def composite(fg_bgr: np.ndarray, alpha_uint8: np.ndarray, background_bgr: np.ndarray) -> np.ndarray:
    """alpha x fg + (1 - alpha) x background, computed in float and rounded to uint8."""
    weight = alpha_uint8[..., None] / 255.0
    return to_uint8(weight * fg_bgr + (1.0 - weight) * background_bgr)


@dataclass(frozen=True)
class Background:
    """A plain colour (BGR) or a picture (BGR, 0..255 scale), whichever is set."""
    colour_bgr: Optional[Tuple[int, int, int]] = None
    picture: Optional[np.ndarray] = None

    def fill(self, height: int, width: int) -> np.ndarray:
        """H x W x 3 BGR uint8: the colour everywhere, or the picture scaled to cover the frame
        (keeping its aspect ratio) and cropped about its centre."""
        if self.picture is None:
            return np.full((height, width, 3), self.colour_bgr, np.uint8)
        picture_h, picture_w = self.picture.shape[:2]
        scale = max(height / picture_h, width / picture_w)
        size = (max(width, round(picture_w * scale)), max(height, round(picture_h * scale)))
        scaled = cv2.resize(self.picture, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        top, left = (size[1] - height) // 2, (size[0] - width) // 2
        return to_uint8(scaled[top:top + height, left:left + width])


def parse_colour(spec: str) -> Optional[Tuple[int, int, int]]:
    """BGR for '#rrggbb', CSS's short '#rgb' (#0f0 is #00ff00), 'R,G,B' (0..255) or a colour name;
    None when spec has none of these forms."""
    text = spec.strip().lower()
    if text in COLOUR_NAMES:
        rgb = COLOUR_NAMES[text]
    elif re.fullmatch(r"#[0-9a-f]{3}", text):
        rgb = tuple(int(digit * 2, 16) for digit in text[1:])
    elif re.fullmatch(r"#[0-9a-f]{6}", text):
        rgb = tuple(int(text[i:i + 2], 16) for i in (1, 3, 5))
    elif re.fullmatch(r"\d{1,3}\s*,\s*\d{1,3}\s*,\s*\d{1,3}", text):
        rgb = tuple(int(part) for part in text.split(","))
        if max(rgb) > 255:
            return None
    else:
        return None
    return rgb[2], rgb[1], rgb[0]


def parse_background(spec: str) -> Background:
    """A Background from a colour or an image file path (see ACCEPTED_BACKGROUNDS); ValueError
    naming the spec (or the file) and what is accepted."""
    colour = parse_colour(spec)
    if colour is not None:
        return Background(colour_bgr=colour)
    if spec.strip().startswith("#") or "," in spec:
        raise ValueError(f"{spec}: not a colour; give {ACCEPTED_BACKGROUNDS}")
    try:
        return Background(picture=read_image(spec))
    except ImageReadError as e:
        raise ValueError(f"{e}; give {ACCEPTED_BACKGROUNDS}") from None


def load_alpha(path: str) -> Tuple[np.ndarray, str]:
    """(H x W uint8 alpha, a warning or ""). Grey 8- or 16-bit files (16-bit scaled to 0..255, then
    rounded); of a colour file the first channel (red) is used, as read_first_channel and the
    evaluation take it, and the warning says so. Raises ImageReadError naming the file."""
    # One decode: read_image replicates a grey file to three equal channels, so unequal channels
    # are what tells a colour file; its red channel is read_first_channel's choice.
    channels = read_image(path)
    alpha = to_uint8(channels[:, :, 2])
    if (channels != channels[:, :, :1]).any():
        return alpha, (f"{path}: the alpha is a colour image; its first (red) channel is used. "
                       "Save alphas as grey images")
    return alpha, ""


def load_grey_alpha(path: str) -> np.ndarray:
    """As load_alpha, but a colour file (channels that differ) is an ImageReadError naming it:
    where alphas become training or test data, a colour image is a mistake, not a matte."""
    alpha, warning = load_alpha(path)
    if warning:
        raise ImageReadError(f"{path}: not a grey alpha (its colour channels differ); save alphas as grey images")
    return alpha
