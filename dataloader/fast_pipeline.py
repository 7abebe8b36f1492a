"""The GCA training augmentation, computed faster but sample for sample equal to
`dataloader.transforms.gca_sample_reference` on the same draws (the tests check it).

With the published nearest-neighbour sampling every output pixel of the crop is a copy of
one source pixel, so most full-resolution work can move to the crop:
- alpha stays uint8 (k/255) through resizes and warps; the trimap masks are `k == 255` /
  `k == 0`, exactly what `int(k / 255 + 1e-5)` gives; only the crop becomes float.
- a mixed alpha 1 - (1 - k1/255)(1 - k2/255) depends on (k1, k2) alone: it is carried as the
  uint16 code k1 * 256 + k2 and its float32 value and trimap masks are read from tables
  computed with the reference's float32 operations (code 0 is alpha 0, the warp's border).
- the two mixed foregrounds are warped separately and blended on the crop only; the formula
  gives fg1 where alpha is 1 and fg2 where it is 0, as the full-resolution blend does.
- the foreground is warped only down to the crop's bottom row: OpenCV computes each
  nearest-neighbour pixel from its absolute coordinates. The full width is kept: its SIMD
  lanes and scalar tail round differently, and a narrower output moves the tail.
- the trimap is uint8 until cropped.
Random interpolation (`data.random_interp`) runs the reference, since these shortcuts hold for
nearest-neighbour sampling only, and so does a trimap eroded at another size (draws.trimap_side).
"""
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from dataloader import transforms as T


def _mixed_alpha_tables():
    k1, k2 = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8), indexing="ij")
    a1, a2 = k1.astype(np.float32) / 255, k2.astype(np.float32) / 255
    combined = (1 - (1 - a1) * (1 - a2)).ravel()
    return combined, combined + np.float32(1e-5) >= 1, 1 - combined + np.float32(1e-5) >= 1


MIXED_ALPHA, MIXED_FG_MASK, MIXED_BG_MASK = _mixed_alpha_tables()


def alpha_value(alpha: np.ndarray) -> np.ndarray:
    """float32 alpha of a uint8 (k/255) or uint16 (mixed code) alpha."""
    if alpha.dtype == np.uint16:
        return MIXED_ALPHA[alpha]
    return alpha.astype(np.float32) / 255


def trimap_uint8(alpha: np.ndarray, fg_erosion: int, bg_erosion: int) -> np.ndarray:
    """gen_trimap's 0/128/255 as uint8, from a uint8 or mixed-code alpha."""
    if alpha.dtype == np.uint16:
        fg_mask, bg_mask = MIXED_FG_MASK[alpha], MIXED_BG_MASK[alpha]
    else:
        fg_mask, bg_mask = alpha == 255, alpha == 0
    fg_mask = cv2.erode(fg_mask.view(np.uint8), T.EROSION_KERNELS[fg_erosion])
    bg_mask = cv2.erode(bg_mask.view(np.uint8), T.EROSION_KERNELS[bg_erosion])
    trimap = np.full(alpha.shape, 128, np.uint8)
    trimap[fg_mask == 1] = 255
    trimap[bg_mask == 1] = 0
    return trimap


def mix_codes(fg2: np.ndarray, alpha8: np.ndarray, alpha2_8: np.ndarray) -> Tuple[Optional[np.ndarray], np.ndarray]:
    """(fg2 resized to the first fg, mixed alpha code), or (None, alpha8) when the combined
    alpha is 1 everywhere and the published code leaves the sample unmixed."""
    h, w = alpha8.shape
    alpha2_8 = cv2.resize(alpha2_8, (w, h), interpolation=cv2.INTER_NEAREST)
    if not np.any((alpha8 != 255) & (alpha2_8 != 255)):
        return None, alpha8
    code = (alpha8.astype(np.uint16) << 8) | alpha2_8
    return cv2.resize(fg2, (w, h), interpolation=cv2.INTER_NEAREST), code


def blend_crop(fg: np.ndarray, fg2: Optional[np.ndarray], alpha: np.ndarray) -> np.ndarray:
    """The published mixing formula on cropped pixels: fg1 a1 + fg2 (1 - a1), truncated."""
    if fg2 is None:
        return fg
    a1 = ((alpha >> 8).astype(np.float32) / 255)[:, :, None]
    return (fg.astype(np.float32) * a1 + fg2.astype(np.float32) * (1 - a1)).astype(np.uint8)


def _nearest_resize(images: List[Optional[np.ndarray]], size: Tuple[int, int]) -> List[Optional[np.ndarray]]:
    return [None if im is None else cv2.resize(im, size, interpolation=cv2.INTER_NEAREST) for im in images]


def _warp(image: Optional[np.ndarray], matrix: np.ndarray, size: Tuple[int, int]) -> Optional[np.ndarray]:
    if image is None:
        return None
    return cv2.warpAffine(image, matrix, size, flags=cv2.INTER_NEAREST + cv2.WARP_INVERSE_MAP)


def gca_sample_fast(fg: np.ndarray, alpha8: np.ndarray, bg: np.ndarray, draws: T.GCADraws, crop: int,
                    augmentation: bool = True, fg2: Optional[np.ndarray] = None,
                    alpha2_8: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
    """As gca_sample_reference(fg, alpha8 / 255, bg, ...), taking uint8 alphas. An own background
    (draws.own_background) travels with fg through every resize, warp and crop."""
    if draws.interp != T.INTERP_SITES or draws.trimap_side:
        alpha2 = None if alpha2_8 is None else alpha2_8.astype(np.float32) / 255
        return T.gca_sample_reference(fg, alpha8.astype(np.float32) / 255, bg, draws, crop, augmentation,
                                      fg2, alpha2)
    own = draws.own_background
    alpha, second, layer = alpha8, None, bg if own else None
    matrix = None
    if augmentation:
        if draws.mix and not own:
            second, alpha = mix_codes(fg2, alpha8, alpha2_8)
        if draws.resize_640:
            fg, second, alpha, layer = _nearest_resize([fg, second, alpha, layer], (640, 640))
        matrix = T.affine_matrix_for(alpha.shape, draws)
        alpha = _warp(alpha, matrix, (alpha.shape[1], alpha.shape[0]))
    trimap = trimap_uint8(alpha, draws.fg_erosion, draws.bg_erosion)
    h, w = trimap.shape
    if T.upscale_ratio(h, w, crop) is None and (trimap == 128).any():
        top, left = T.crop_origin(trimap, crop, draws)
        if matrix is not None:
            fg, second, layer = (_warp(im, matrix, (w, top + crop)) for im in (fg, second, layer))
        bg = layer if own else cv2.resize(bg, (w, h), interpolation=cv2.INTER_CUBIC)
        window = (slice(top, top + crop), slice(left, left + crop))
        fg, second, alpha, trimap, bg = (None if im is None else im[window]
                                         for im in (fg, second, alpha, trimap, bg))
    else:
        if matrix is not None:
            fg, second, layer = (_warp(im, matrix, (w, h)) for im in (fg, second, layer))
        bg = layer if own else bg
        if second is not None:
            # the reference resizes the blended foreground; the blend commutes with nearest sampling
            fg = blend_crop(fg, second, alpha)
            second = None
            alpha = alpha_value(alpha) if alpha.dtype == np.uint16 else alpha
        fg, alpha, trimap, bg = T.random_crop(fg, alpha, trimap, bg, crop, draws)
    fg = blend_crop(fg, second, alpha)
    alpha, trimap = alpha_value(alpha) if alpha.dtype != np.float32 else alpha, trimap.astype(np.float32)
    if augmentation and not own:
        fg = T.random_jitter(fg, alpha, draws)
    image, fg, bg, alpha = T.composite(fg, bg, alpha)
    return {"image": image, "fg": fg, "bg": bg, "alpha": alpha, "trimap": trimap}
