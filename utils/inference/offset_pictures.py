"""Attention offset maps drawn as optical-flow colour images (the Middlebury colour wheel).

A network whose info holds "offset_1" and "offset_2" (offsets N x 2 x h x w, softmax scales
N x 2: GCA-Matting's and MMagic's GCA blocks) gets these pictures from every entry point; any
family may give them."""
from typing import Dict, List, Optional

import cv2
import numpy as np


def _color_wheel() -> np.ndarray:
    """55 colours red -> yellow -> green -> cyan -> blue -> magenta -> red."""
    # (length, channel held at 255, channel ramped, ramp rises)
    segments = ((15, 0, 1, True), (6, 1, 0, False), (4, 1, 2, True),
                (11, 2, 1, False), (13, 2, 0, True), (6, 0, 2, False))
    parts = []
    for length, held, ramped, rising in segments:
        part = np.zeros((length, 3))
        ramp = np.floor(255 * np.arange(length) / length)
        part[:, held] = 255
        part[:, ramped] = ramp if rising else 255 - ramp
        parts.append(part)
    return np.concatenate(parts)


COLOR_WHEEL = _color_wheel()


def flow_to_image(flow: np.ndarray) -> np.ndarray:
    """flow 2 x h x w as (row offset, column offset) -> h x w x 3 uint8 RGB; hue is the direction,
    saturation the length relative to the longest vector."""
    v, u = flow[0].astype(np.float64), flow[1].astype(np.float64)
    radius = np.sqrt(u ** 2 + v ** 2)
    scale = radius.max() + np.finfo(float).eps
    u, v, radius = u / scale, v / scale, radius / scale
    n_colors = len(COLOR_WHEEL)
    angle = np.arctan2(-v, -u) / np.pi
    position = (angle + 1) / 2 * (n_colors - 1)
    k0 = np.floor(position).astype(int)
    k1 = (k0 + 1) % n_colors
    fraction = (position - k0)[..., None]
    color = ((1 - fraction) * COLOR_WHEEL[k0] + fraction * COLOR_WHEEL[k1]) / 255
    color = 1 - radius[..., None] * (1 - color)
    return np.floor(255 * color).astype(np.uint8)


def offset_image(offsets: np.ndarray, unknown_scale: float, known_scale: float,
                 short_side: int = 512) -> np.ndarray:
    """BGR picture of one offset map, resized (nearest) to the given short side, with the two
    softmax scales written on it."""
    rgb = flow_to_image(offsets)
    h, w = rgb.shape[:2]
    factor = short_side / min(h, w)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    bgr = cv2.resize(rgb[:, :, ::-1], size, interpolation=cv2.INTER_NEAREST)
    text = f"unknown: {unknown_scale:.2f}, known: {known_scale:.2f}"
    cv2.putText(bgr, text, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2, cv2.LINE_AA)
    return bgr


def offset_pictures(info: Optional[Dict]) -> List[np.ndarray]:
    """BGR pictures of the two offset maps in the network's info (offsets, softmax scales per
    map); [] for a model that gives none (info None, or without offsets)."""
    if info is None or "offset_1" not in info:
        return []
    pictures = []
    for index in (1, 2):
        offsets, scales = info[f"offset_{index}"]
        pictures.append(offset_image(offsets[0].cpu().numpy(), float(scales[0, 0]), float(scales[0, 1])))
    return pictures
