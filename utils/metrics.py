"""Matting metrics identical to the Deep Image Matting authors' MATLAB evaluation code, the
reference of every published Composition-1K number.

Inputs are prediction, ground truth and trimap on the 0..255 scale (uint8, or float for
16-bit files scaled by `utils.io.images.to_8bit_range`). Only pixels where the trimap is
exactly 128 count. Per-pixel arithmetic is float32 where the reference uses `single`; sums
accumulate in float64.
"""
import math
from typing import Dict

import cv2
import numpy as np

GRAD_SIGMA = 1.4
CONN_STEP = 0.1
UNKNOWN_VALUE = 128


def unknown_region(trimap: np.ndarray) -> np.ndarray:
    return trimap == UNKNOWN_VALUE


def sad(pred: np.ndarray, target: np.ndarray, trimap: np.ndarray) -> float:
    """Sum of absolute differences over the unknown region, in thousands."""
    error = np.abs(pred.astype(np.float32) - target.astype(np.float32)) / np.float32(255)
    return float(error[unknown_region(trimap)].sum(dtype=np.float64)) / 1000


def mse(pred: np.ndarray, target: np.ndarray, trimap: np.ndarray) -> float:
    """Mean squared error over the unknown region (NaN when there is none, as in the reference)."""
    error = (pred.astype(np.float32) - target.astype(np.float32)) / np.float32(255)
    mask = unknown_region(trimap)
    count = int(mask.sum())
    return float((error[mask] ** 2).sum(dtype=np.float64)) / count if count else math.nan


def mad(pred: np.ndarray, target: np.ndarray, trimap: np.ndarray) -> float:
    """Mean absolute difference over the unknown region (AIM-500 style; NaN when there is none)."""
    error = np.abs(pred.astype(np.float32) - target.astype(np.float32)) / np.float32(255)
    mask = unknown_region(trimap)
    count = int(mask.sum())
    return float(error[mask].sum(dtype=np.float64)) / count if count else math.nan


def mat2gray(image: np.ndarray) -> np.ndarray:
    """MATLAB mat2gray: min-max scaling to [0, 1] in double; a constant image is kept as its
    values, clipped to [0, 1]."""
    out = image.astype(np.float64)
    low, high = out.min(), out.max()
    if high != low:
        delta = 1 / (high - low)
        out *= delta
        out += -low * delta
    return np.clip(out, 0, 1, out=out)


def _gauss(x: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-x ** 2 / (2 * sigma ** 2)) / (sigma * math.sqrt(2 * math.pi))


def gauss_gradient_factors(sigma: float = GRAD_SIGMA, epsilon: float = 1e-2):
    """The reference's gaussgradient kernel hx[i, j] = G(i) dG(j) / ||G dG^T|| (9x9 at sigma 1.4),
    as its two unit-norm 1-D factors (G over rows, dG over columns): hx = outer(g, dg)."""
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * epsilon)))
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    gauss = _gauss(offsets, sigma)
    dgauss = -offsets * gauss / sigma ** 2
    return gauss / np.linalg.norm(gauss), dgauss / np.linalg.norm(dgauss)


_GAUSS, _DGAUSS = gauss_gradient_factors()


def gradient_amplitude(image: np.ndarray) -> np.ndarray:
    """sqrt(gx^2 + gy^2) of the Gaussian-derivative gradients, replicate borders, as float32.
    hx has rank 1, so it is applied as two 1-D passes."""
    gx = cv2.sepFilter2D(image, cv2.CV_64F, _DGAUSS, _GAUSS, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.sepFilter2D(image, cv2.CV_64F, _GAUSS, _DGAUSS, borderType=cv2.BORDER_REPLICATE)
    return np.sqrt(gx ** 2 + gy ** 2).astype(np.float32)


def grad(pred: np.ndarray, target: np.ndarray, trimap: np.ndarray) -> float:
    """Gradient error over the unknown region, in thousands."""
    error = (gradient_amplitude(mat2gray(pred)) - gradient_amplitude(mat2gray(target))) ** 2
    return float(error[unknown_region(trimap)].sum(dtype=np.float64)) / 1000


def largest_component_raster(mask: np.ndarray) -> np.ndarray:
    """Largest 4-connected component of a C-ordered bool mask; ties go to the component whose
    first pixel comes first in row-major order."""
    count, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=4)
    if count <= 1:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(labels.ravel(), minlength=count)
    sizes[0] = 0
    candidates = np.flatnonzero(sizes == sizes.max())
    if len(candidates) > 1:
        flat = labels.ravel()
        candidates = [min(candidates, key=lambda c: int(np.argmax(flat == c)))]
    return labels == candidates[0]


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of a bool mask; among equal sizes the one MATLAB's
    bwconncomp labels first (column-major scan order). Empty mask -> empty result."""
    return largest_component_raster(np.ascontiguousarray(mask.T, dtype=bool)).T


def conn(pred: np.ndarray, target: np.ndarray, trimap: np.ndarray, step: float = CONN_STEP) -> float:
    """Connectivity error over the unknown region, in thousands."""
    # Everything runs on the transposes: OpenCV scans rows, MATLAB's component order follows columns.
    pred = pred.T.astype(np.float32, order="C") / np.float32(255)
    target = target.T.astype(np.float32, order="C") / np.float32(255)
    thresholds = np.arange(0, 1 + step / 2, step).astype(np.float32)
    level = np.ones(pred.shape, dtype=np.float32)
    undecided = np.ones(pred.shape, dtype=bool)  # the reference's l_map == -1
    for previous, threshold in zip(thresholds[:-1], thresholds[1:]):
        omega = largest_component_raster((pred >= threshold) & (target >= threshold))
        level[undecided & ~omega] = previous
        undecided &= omega
    pred_d, target_d = pred - level, target - level
    pred_phi = 1 - pred_d * (pred_d >= np.float32(0.15))
    target_phi = 1 - target_d * (target_d >= np.float32(0.15))
    error = np.abs(pred_phi - target_phi)
    return float(error[unknown_region(trimap.T)].sum(dtype=np.float64)) / 1000


def all_metrics(pred: np.ndarray, target: np.ndarray, trimap: np.ndarray, fast: bool = False) -> Dict[str, float]:
    """{'sad', 'mse', 'mad'} and, unless fast, 'grad' and 'conn'."""
    if not pred.shape == target.shape == trimap.shape:
        raise ValueError(f"sizes differ: prediction {pred.shape}, ground truth {target.shape}, trimap {trimap.shape}")
    result = {"sad": sad(pred, target, trimap), "mse": mse(pred, target, trimap), "mad": mad(pred, target, trimap)}
    if not fast:
        result["grad"] = grad(pred, target, trimap)
        result["conn"] = conn(pred, target, trimap)
    return result
