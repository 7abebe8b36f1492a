"""Whole-image matting metrics as the AIM-500 authors' Python code computes them (also used for
AM-2K and P3M-500), quirks included; a different protocol from `utils.evaluation.metrics` (MATLAB).

Inputs are prediction, ground truth and trimap on the 0..255 scale, as `utils.evaluation.metrics` takes
them; prediction and ground truth become float64 in [0, 1] (value / 255, no rounding). The
authors' SciPy / scikit-image calls are re-expressed with OpenCV, keeping their arithmetic:
float32 filter outputs, reflected borders, raster-order components.
"""
import math
from typing import Dict

import cv2
import numpy as np

from utils.evaluation.metrics import UNKNOWN_VALUE, largest_component_raster

GRAD_SIGMA = 1.4
GRAD_TRUNCATE = 4.0


def to_unit(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) / 255


def whole_image_errors(pred: np.ndarray, target: np.ndarray) -> Dict[str, float]:
    """sad (thousands), mse, mad over all pixels of unit-range float64 arrays."""
    difference = pred - target
    absolute = float(np.abs(difference).sum())
    return {"sad": absolute / 1000, "mse": float((difference ** 2).sum()) / difference.size,
            "mad": absolute / difference.size}


def trimap_errors(pred: np.ndarray, target: np.ndarray, trimap: np.ndarray) -> Dict[str, float]:
    """sad_trimap, mse_trimap, mad_trimap: the prediction forced to the trimap's known values, the
    sums over all pixels, the means over the 128 pixels (or, with none, the pixels neither 0 nor
    255; NaN when that is none either)."""
    forced = pred.copy()
    foreground, background = trimap == 255, trimap == 0
    forced[foreground], forced[background] = 1, 0
    count = int((trimap == UNKNOWN_VALUE).sum())
    if count == 0:
        count = trimap.size - int(foreground.sum()) - int(background.sum())
    difference = forced - target
    absolute = float(np.abs(difference).sum())
    squared = float((difference ** 2).sum())
    return {"sad_trimap": absolute / 1000,
            "mse_trimap": squared / count if count else math.nan,
            "mad_trimap": absolute / count if count else math.nan}


def known_region_errors(pred: np.ndarray, target: np.ndarray, trimap: np.ndarray) -> Dict[str, float]:
    """sad_fg, sad_bg: the absolute error summed over trimap 255 / 0, in thousands; weighted sums
    over the whole image as the authors write them, so that the rounding is theirs too."""
    absolute = np.abs(pred - target)
    return {"sad_fg": float((absolute * (trimap == 255)).sum()) / 1000,
            "sad_bg": float((absolute * (trimap == 0)).sum()) / 1000}


def gaussian_taps(sigma: float = GRAD_SIGMA, truncate: float = GRAD_TRUNCATE):
    """(smoothing, derivative) taps as scipy.ndimage.gaussian_filter1d applies them (radius
    int(truncate * sigma + 0.5)), laid out for OpenCV's correlation: SciPy convolves with
    -x / sigma^2 * G(x), which is correlation with x / sigma^2 * G(x)."""
    radius = int(truncate * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    smoothing = np.exp(-0.5 / sigma ** 2 * offsets ** 2)
    smoothing /= smoothing.sum()
    return smoothing, offsets / sigma ** 2 * smoothing


_SMOOTHING, _DERIVATIVE = gaussian_taps()
_IDENTITY = np.ones(1, dtype=np.float64)


def filter_axis(image: np.ndarray, taps: np.ndarray, axis: int, border: int = cv2.BORDER_REFLECT,
                dtype: type = np.float32) -> np.ndarray:
    """One 1-D pass along `axis`, computed in float64 and stored as `dtype` like SciPy's
    output=np.float32; borders reflect including the edge pixel (SciPy 'reflect'), or as `border`."""
    kernel_x, kernel_y = (_IDENTITY, taps) if axis == 0 else (taps, _IDENTITY)
    out = cv2.sepFilter2D(image, cv2.CV_64F, kernel_x, kernel_y, borderType=border)
    return out.astype(dtype)


def gradient_magnitude(image: np.ndarray) -> np.ndarray:
    """sqrt(gx^2 + gy^2) in float32 for gaussian_filter(image, 1.4, order=[1, 0] / [0, 1],
    output=np.float32): axis 0 first, the intermediate stored as float32."""
    gx = filter_axis(filter_axis(image, _DERIVATIVE, 0), _SMOOTHING, 1)
    gy = filter_axis(filter_axis(image, _SMOOTHING, 0), _DERIVATIVE, 1)
    return np.sqrt(gx ** 2 + gy ** 2)


def grad(pred: np.ndarray, target: np.ndarray) -> float:
    """Sum of squared gradient-magnitude differences over the whole image, divided by ten; the
    sum in float32 like NumPy's sum of the authors' float32 error map."""
    error = (gradient_magnitude(pred) - gradient_magnitude(target)) ** 2
    return float(error.sum(dtype=np.float32) / np.float32(10))


def conn_thresholds(step: float = 0.1) -> np.ndarray:
    """i * step in float64 for i = 0..10, as np.arange(0, 1.1, 0.1) gives them (t_6 is
    0.6000000000000001, above 153 / 255)."""
    return np.arange(int(round(1 / step)) + 1) * step


def connectivity_levels(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The authors' l_map (float32): per pixel the threshold below the first one at which it
    leaves the largest 4-connected component of both mattes; a threshold where no pixel passes
    is skipped; never left -> 1."""
    thresholds = conn_thresholds()
    lower = np.fmin(pred, target)
    # A pixel stays in the running while it is in every component so far, so its level is
    # thresholds[number of steps it stayed]. Once a threshold has no component, no higher one
    # has: the steps taken are 1..taken, and a pixel that stayed in all of them gets 1.
    stayed = np.zeros(pred.shape, dtype=np.uint8)
    undecided = np.ones(pred.shape, dtype=bool)
    taken = 0
    for threshold in thresholds[1:]:
        both = lower >= threshold
        if not both.any():
            break
        undecided &= largest_component_raster(both)
        stayed += undecided
        taken += 1
    levels = np.append(thresholds[:taken], 1).astype(np.float32)
    return levels[stayed]


def conn(pred: np.ndarray, target: np.ndarray) -> float:
    """Connectivity error over the whole image, in thousands."""
    level = connectivity_levels(pred, target)
    pred_d, target_d = pred - level, target - level
    pred_phi = 1 - pred_d * (pred_d >= 0.15)
    target_phi = 1 - target_d * (target_d >= 0.15)
    return float(np.abs(pred_phi - target_phi).sum()) / 1000


def aim500_metrics(pred: np.ndarray, target: np.ndarray, trimap: np.ndarray, fast: bool = False) -> Dict[str, float]:
    """sad, mse, mad, grad, conn (whole image), sad_trimap, mse_trimap, mad_trimap, sad_fg,
    sad_bg; without grad and conn when fast."""
    if not pred.shape == target.shape == trimap.shape:
        raise ValueError(f"sizes differ: prediction {pred.shape}, ground truth {target.shape}, trimap {trimap.shape}")
    pred, target = to_unit(pred), to_unit(target)
    result = whole_image_errors(pred, target)
    if not fast:
        result["grad"] = grad(pred, target)
        result["conn"] = conn(pred, target)
    result.update(trimap_errors(pred, target, trimap))
    result.update(known_region_errors(pred, target, trimap))
    return result
