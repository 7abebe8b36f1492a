"""Trimaps from object masks: known foreground and background, an unknown band along the mask's edge."""
import math
from typing import Optional

import cv2
import numpy as np

MIN_UNKNOWN_WIDTH = 3


def default_unknown_width(height: int, width: int) -> int:
    """The band's half-width PX for an image: 1 % of its diagonal, rounded, at least 3 px
    (14 px for 1000 x 1000, 22 px for 1920 x 1080)."""
    return max(MIN_UNKNOWN_WIDTH, round(0.01 * math.hypot(height, width)))


def mask_foreground(mask: np.ndarray) -> np.ndarray:
    """Boolean H x W: a bool mask as it is; any other on the 0..255 scale (uint8, or float32 as
    utils.io.images.read_grey returns 16-bit files) thresholded at half, >= 127.5."""
    return mask if mask.dtype == bool else mask >= 127.5


def mask_to_trimap(mask: np.ndarray, unknown_width: Optional[int] = None) -> np.ndarray:
    """mask H x W (binary or soft, see mask_foreground) -> uint8 trimap H x W of 0 / 128 / 255.

    Foreground (255) is what remains of the mask eroded by a disc of radius PX = unknown_width
    (default: default_unknown_width), background (0) what lies beyond the mask dilated by that
    disc, unknown (128) the band between: PX wide on either side of the edge, in every direction
    (band_trimap). The image border is not an edge, so a mask touching the border stays
    foreground there, and background touching it stays background."""
    if unknown_width is None:
        unknown_width = default_unknown_width(*mask.shape[:2])
    foreground = mask_foreground(mask)
    return band_trimap(foreground, foreground, unknown_width)


def band_trimap(sure_foreground: np.ndarray, any_foreground: np.ndarray, width: int) -> np.ndarray:
    """uint8 trimap of 0 / 128 / 255 from two boolean H x W masks: 255 where `sure_foreground`
    eroded by a disc of radius `width` remains, 0 beyond `any_foreground` dilated by that disc, 128
    between. The disc is exact, {dy² + dx² <= width²}, through Euclidean distance transforms
    (linear time, where a large elliptic kernel costs width² per pixel). The image border is not
    an edge: the outside counts as the nearest edge pixel (as cv2.BORDER_REPLICATE)."""
    if width < 1:
        raise ValueError(f"the unknown band's width must be at least 1 px, got {width}")
    # distanceTransform measures to the nearest zero pixel inside the image and never to the
    # outside, which is what makes the border neutral.
    to_not_sure = cv2.distanceTransform(sure_foreground.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    to_any = cv2.distanceTransform(1 - any_foreground.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    trimap = np.full(sure_foreground.shape, 128, np.uint8)
    trimap[to_not_sure > width] = 255
    trimap[to_any > width] = 0
    return trimap


def mask_problem(mask: np.ndarray) -> str:
    """'' for a mask with an edge to matte along, else why there is none."""
    foreground = mask_foreground(mask)
    if not foreground.any():
        return "nothing to matte: the mask is empty"
    if foreground.all():
        return "nothing to matte: the mask covers the whole image"
    return ""
