"""Synthetic alpha mattes and their trimaps, of any size and number, for the speed benchmarks
(evaluation, foreground estimation, networks): no data set needed."""
import cv2
import numpy as np


def synthetic_matte(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """H x W float32 alpha in [0, 1], matte-like: a few blurred ellipses and thin strands."""
    alpha = np.zeros((height, width), np.float32)
    for _ in range(rng.integers(2, 5)):
        center = (int(rng.integers(width // 4, 3 * width // 4)), int(rng.integers(height // 4, 3 * height // 4)))
        axes = (int(rng.integers(width // 10, width // 4)), int(rng.integers(height // 10, height // 4)))
        cv2.ellipse(alpha, center, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    for _ in range(40):
        points = np.cumsum(rng.normal(0, 15, (20, 2)), axis=0) + rng.uniform((0, 0), (width, height))
        cv2.polylines(alpha, [points.astype(np.int32)], False, float(rng.uniform(0.3, 1)), 1, cv2.LINE_AA)
    return cv2.GaussianBlur(alpha, (0, 0), float(rng.uniform(2, 6)))


def trimap_for(alpha: np.ndarray, unknown_fraction: float = 0.3) -> np.ndarray:
    """uint8 trimap of 0 / 128 / 255 for a float alpha: the `unknown_fraction` of the pixels nearest
    its soft band unknown, the rest foreground where alpha > 0.5."""
    band = ((alpha > 0.01) & (alpha < 0.99)).astype(np.uint8)
    distance = cv2.distanceTransform(1 - band, cv2.DIST_L2, 3)
    unknown = distance <= np.quantile(distance, unknown_fraction)
    trimap = np.where(alpha > 0.5, 255, 0).astype(np.uint8)
    trimap[unknown] = 128
    return trimap
