"""The published GCA training augmentation, written plainly at full resolution.

This is the reference: `dataloader/fast_pipeline.py` computes the same samples faster and
the tests compare the two on the same random draws. Every random choice of one sample is
drawn up front into a `GCADraws`, so both consume identical randomness.
"""
import math
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import cv2
import numpy as np

INTERPOLATIONS = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_LANCZOS4)
# Where the published code resizes or warps, and the interpolation it uses without random_interp.
INTERP_SITES = {
    "mix_fg": cv2.INTER_NEAREST, "mix_alpha": cv2.INTER_NEAREST,
    "resize640_fg": cv2.INTER_NEAREST, "resize640_alpha": cv2.INTER_NEAREST,
    "affine_fg": cv2.INTER_NEAREST, "affine_alpha": cv2.INTER_NEAREST,
    "bg": cv2.INTER_CUBIC, "upscale_fg": cv2.INTER_NEAREST, "upscale_alpha": cv2.INTER_NEAREST,
    "upscale_bg": cv2.INTER_CUBIC, "fallback_fg": cv2.INTER_NEAREST, "fallback_alpha": cv2.INTER_NEAREST,
    "fallback_bg": cv2.INTER_CUBIC,
}
AFFINE_DEGREES, AFFINE_SCALE, AFFINE_SHEAR, AFFINE_FLIP = 30, (0.8, 1.25), 10, 0.5
ROTATION_MIN_SIDE = 1024
EROSION_SIZES = range(1, 30)
EROSION_KERNELS = {size: cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)) for size in EROSION_SIZES}
MIN_UNKNOWN_FOR_CENTRED_CROP = 10


@dataclass
class GCADraws:
    mix: bool
    mix_offset: int
    resize_640: bool
    angle: float
    scale: Tuple[float, float]
    shear: float
    flip: Tuple[int, int]
    fg_erosion: int
    bg_erosion: int
    crop_pick: float
    crop_y: float
    crop_x: float
    hue_shift: int
    saturation_u: float
    value_u: float
    interp: Dict[str, int] = field(default_factory=lambda: dict(INTERP_SITES))
    # Not drawn here: set by the dataset for a photo composited over its own background.
    own_background: bool = False
    # Not drawn here: set by a family's draws (ViTMatte's data/dim_dataset.py erodes the trimap on
    # the alpha resized to 640 x 640 with trimap_interp, then brings it back with nearest);
    # 0 erodes at the alpha's own size, as GCA-Matting's GenTrimap.
    trimap_side: int = 0
    trimap_interp: int = cv2.INTER_NEAREST


def draw_gca(rng: np.random.Generator, num_fg: int, random_interp: bool = False,
             augmentation: bool = True) -> GCADraws:
    """All random choices of one GCA-pipeline sample, with the published distributions."""
    interp = ({site: int(rng.choice(INTERPOLATIONS)) for site in INTERP_SITES} if random_interp
              else dict(INTERP_SITES))
    return GCADraws(
        mix=augmentation and bool(rng.random() < 0.5),
        mix_offset=int(rng.integers(num_fg)),
        resize_640=augmentation and bool(rng.random() < 0.25),
        angle=float(rng.uniform(-AFFINE_DEGREES, AFFINE_DEGREES)),
        scale=(float(rng.uniform(*AFFINE_SCALE)), float(rng.uniform(*AFFINE_SCALE))),
        shear=float(rng.uniform(-AFFINE_SHEAR, AFFINE_SHEAR)),
        flip=tuple(int(f) for f in np.where(rng.random(2) < AFFINE_FLIP, -1, 1)),
        fg_erosion=int(rng.integers(1, 30)),
        bg_erosion=int(rng.integers(1, 30)),
        crop_pick=float(rng.random()), crop_y=float(rng.random()), crop_x=float(rng.random()),
        hue_shift=int(rng.integers(-40, 40)),
        saturation_u=float(rng.random()), value_u=float(rng.random()),
        interp=interp,
    )


def mix_foregrounds(fg: np.ndarray, alpha: np.ndarray, fg2: np.ndarray, alpha2: np.ndarray,
                    draws: GCADraws) -> Tuple[np.ndarray, np.ndarray]:
    """Blend a second foreground behind the first: fg1 a1 + fg2 (1 - a1), 1 - (1 - a1)(1 - a2),
    unless the combined alpha is 1 everywhere."""
    h, w = alpha.shape
    fg2 = cv2.resize(fg2, (w, h), interpolation=draws.interp["mix_fg"])
    alpha2 = cv2.resize(alpha2, (w, h), interpolation=draws.interp["mix_alpha"])
    combined = 1 - (1 - alpha) * (1 - alpha2)
    if np.any(combined < 1):
        fg = fg.astype(np.float32) * alpha[:, :, None] + fg2.astype(np.float32) * (1 - alpha[:, :, None])
        return fg.astype(np.uint8), combined
    return fg, alpha


def resize_640(fg: np.ndarray, alpha: np.ndarray, draws: GCADraws) -> Tuple[np.ndarray, np.ndarray]:
    return (cv2.resize(fg, (640, 640), interpolation=draws.interp["resize640_fg"]),
            cv2.resize(alpha, (640, 640), interpolation=draws.interp["resize640_alpha"]))


def inverse_affine_matrix(center: Tuple[float, float], angle: float, scale: Tuple[float, float],
                          shear: float, flip: Tuple[int, int]) -> np.ndarray:
    """2 x 3 matrix taking output to input coordinates, flip -> scale -> rotation -> shear about
    `center`, as the published RandomAffine (no translation)."""
    angle, shear = math.radians(angle), math.radians(shear)
    scale_x = 1.0 / scale[0] * flip[0]
    scale_y = 1.0 / scale[1] * flip[1]
    d = math.cos(angle + shear) * math.cos(angle) + math.sin(angle + shear) * math.sin(angle)
    matrix = [math.cos(angle) * scale_x, math.sin(angle + shear) * scale_x, 0,
              -math.sin(angle) * scale_y, math.cos(angle + shear) * scale_y, 0]
    matrix = [m / d for m in matrix]
    matrix[2] += matrix[0] * -center[0] + matrix[1] * -center[1]
    matrix[5] += matrix[3] * -center[0] + matrix[4] * -center[1]
    matrix[2] += center[0]
    matrix[5] += center[1]
    return np.array(matrix).reshape(2, 3)


def affine_matrix_for(shape: Tuple[int, int], draws: GCADraws) -> np.ndarray:
    rows, cols = shape
    angle = draws.angle if max(rows, cols) >= ROTATION_MIN_SIDE else 0.0
    return inverse_affine_matrix((cols * 0.5 + 0.5, rows * 0.5 + 0.5), angle, draws.scale, draws.shear, draws.flip)


def random_affine(fg: np.ndarray, alpha: np.ndarray, draws: GCADraws) -> Tuple[np.ndarray, np.ndarray]:
    rows, cols = alpha.shape
    matrix = affine_matrix_for((rows, cols), draws)
    fg = cv2.warpAffine(fg, matrix, (cols, rows), flags=draws.interp["affine_fg"] + cv2.WARP_INVERSE_MAP)
    alpha = cv2.warpAffine(alpha, matrix, (cols, rows), flags=draws.interp["affine_alpha"] + cv2.WARP_INVERSE_MAP)
    return fg, alpha


def gen_trimap(alpha: np.ndarray, fg_erosion: int, bg_erosion: int) -> np.ndarray:
    """float32 trimap: 255 on the eroded alpha ~ 1 mask, 0 on the eroded alpha ~ 0 mask, else 128."""
    fg_mask = (alpha + 1e-5).astype(int).astype(np.uint8)
    bg_mask = (1 - alpha + 1e-5).astype(int).astype(np.uint8)
    fg_mask = cv2.erode(fg_mask, EROSION_KERNELS[fg_erosion])
    bg_mask = cv2.erode(bg_mask, EROSION_KERNELS[bg_erosion])
    trimap = np.ones_like(alpha) * 128
    trimap[fg_mask == 1] = 255
    trimap[bg_mask == 1] = 0
    return trimap


def sample_trimap(alpha: np.ndarray, draws: GCADraws) -> np.ndarray:
    """gen_trimap with the draws' erosions, at the alpha's size or, with draws.trimap_side, on the
    alpha resized to that square and brought back to the alpha's size with nearest sampling."""
    if not draws.trimap_side:
        return gen_trimap(alpha, draws.fg_erosion, draws.bg_erosion)
    side = (draws.trimap_side, draws.trimap_side)
    square = gen_trimap(cv2.resize(alpha, side, interpolation=draws.trimap_interp), draws.fg_erosion, draws.bg_erosion)
    return cv2.resize(square, alpha.shape[::-1], interpolation=cv2.INTER_NEAREST)


def upscale_ratio(h: int, w: int, crop: int) -> Optional[float]:
    """The factor the published RandomCrop applies (repeatedly) while a side is < crop + 1."""
    if w < crop + 1 or h < crop + 1:
        return 1.1 * crop / h if h < w else 1.1 * crop / w
    return None


def unknown_candidates(trimap: np.ndarray, crop: int) -> np.ndarray:
    """(row, col) of unknown pixels of the nearest 1/4-scale trimap inside the crop/2 margin,
    row-major, relative to the margin."""
    h, w = trimap.shape
    margin = crop // 2
    small = cv2.resize(trimap, (w // 4, h // 4), interpolation=cv2.INTER_NEAREST)
    return np.argwhere(small[margin // 4:(h - margin) // 4, margin // 4:(w - margin) // 4] == 128)


def crop_origin(trimap: np.ndarray, crop: int, draws: GCADraws) -> Tuple[int, int]:
    """Top-left of the crop: centred on a random unknown pixel when there are >= 10, else uniform."""
    h, w = trimap.shape
    candidates = unknown_candidates(trimap, crop)
    if len(candidates) < MIN_UNKNOWN_FOR_CENTRED_CROP:
        return int(draws.crop_y * (h - crop + 1)), int(draws.crop_x * (w - crop + 1))
    y, x = candidates[int(draws.crop_pick * len(candidates))]
    return int(y) * 4, int(x) * 4


def random_crop(fg, alpha, trimap, bg, crop: int, draws: GCADraws):
    """The crop of all four; an own background (already aligned with fg) is resized as fg is."""
    h, w = trimap.shape
    bg_site = "fg" if draws.own_background else "bg"
    bg = cv2.resize(bg, (w, h), interpolation=draws.interp["bg"])
    ratio = upscale_ratio(h, w, crop)
    if ratio is not None:
        while h < crop + 1 or w < crop + 1:
            size = (int(w * ratio), int(h * ratio))
            fg = cv2.resize(fg, size, interpolation=draws.interp["upscale_fg"])
            alpha = cv2.resize(alpha, size, interpolation=draws.interp["upscale_alpha"])
            trimap = cv2.resize(trimap, size, interpolation=cv2.INTER_NEAREST)
            bg = cv2.resize(bg, size, interpolation=draws.interp[f"upscale_{bg_site}"])
            h, w = trimap.shape
    if not (trimap == 128).any():
        size = (crop, crop)
        return (cv2.resize(fg, size, interpolation=draws.interp["fallback_fg"]),
                cv2.resize(alpha, size, interpolation=draws.interp["fallback_alpha"]),
                cv2.resize(trimap, size, interpolation=cv2.INTER_NEAREST),
                cv2.resize(bg, size, interpolation=draws.interp[f"fallback_{bg_site}"]))
    top, left = crop_origin(trimap, crop, draws)
    window = (slice(top, top + crop), slice(left, left + crop))
    return fg[window], alpha[window], trimap[window], bg[window]


def random_jitter(fg: np.ndarray, alpha: np.ndarray, draws: GCADraws) -> np.ndarray:
    """Hue shift and saturation / value noise scaled by how far their mean is from 1.1; skipped
    (fg returned unchanged) when alpha is all 0."""
    if np.all(alpha == 0):
        return fg
    hsv = cv2.cvtColor(fg.astype(np.float32) / 255.0, cv2.COLOR_BGR2HSV)
    hsv[:, :, 0] = np.remainder(hsv[:, :, 0].astype(np.float32) + draws.hue_shift, 360)
    for channel, u in ((1, draws.saturation_u), (2, draws.value_u)):
        mean = hsv[:, :, channel][alpha > 0].mean()
        jitter = u * (1.1 - mean) / 5 - (1.1 - mean) / 10
        values = np.abs(hsv[:, :, channel] + jitter)
        values[values > 1] = 2 - values[values > 1]
        hsv[:, :, channel] = values
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR) * 255


def composite(fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray):
    """Clip alpha to [0, 1] and fg, bg to [0, 255]; image = fg a + bg (1 - a). Returns all four."""
    alpha = np.clip(alpha, 0, 1)
    fg = np.clip(fg, 0, 255)
    bg = np.clip(bg, 0, 255)
    image = fg * alpha[:, :, None] + bg * (1 - alpha[:, :, None])
    return image, fg, bg, alpha


def gca_sample_reference(fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray, draws: GCADraws, crop: int,
                         augmentation: bool = True, fg2: Optional[np.ndarray] = None,
                         alpha2: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
    """One training sample by the published recipe, everything at full resolution.
    fg, bg: BGR uint8; alpha: float32 in [0, 1]. Returns image, fg, bg (float, 0..255, BGR),
    alpha (float32) and trimap (float32 grey 0/128/255), all crop x crop.

    With draws.own_background, bg is the photo's own background (utils.cutouts.foreground.solve_background),
    aligned with fg: it takes fg's resizes and warps instead of being fitted to them, and the
    sample is neither mixed nor colour-jittered, so that the image is the photo."""
    own = draws.own_background
    if augmentation:
        if draws.mix and not own:
            fg, alpha = mix_foregrounds(fg, alpha, fg2, alpha2, draws)
        if draws.resize_640:
            fg, alpha = resize_640(fg, alpha, draws)
            if own:
                bg = cv2.resize(bg, (640, 640), interpolation=draws.interp["resize640_fg"])
        rows, cols = alpha.shape
        fg, alpha = random_affine(fg, alpha, draws)
        if own:
            bg = cv2.warpAffine(bg, affine_matrix_for((rows, cols), draws), (cols, rows),
                                flags=draws.interp["affine_fg"] + cv2.WARP_INVERSE_MAP)
    trimap = sample_trimap(alpha, draws)
    fg, alpha, trimap, bg = random_crop(fg, alpha, trimap, bg, crop, draws)
    if augmentation and not own:
        fg = random_jitter(fg, alpha, draws)
    image, fg, bg, alpha = composite(fg, bg, alpha)
    return {"image": image, "fg": fg, "bg": bg, "alpha": alpha, "trimap": trimap}
