"""Benchmark: utils.cutouts.foreground.estimate_foreground beside pymatting.estimate_foreground_ml called
directly, on the CPU, at 1920x1080 and 3840x2160.

python -m utils.cutouts.benchmark [--repeats 3]

The input is a synthetic composite: a smooth random foreground over a smooth random background
through a soft matte with thin strands. Each function's first call is a warm-up, left out; the
figure is the best of --repeats calls. Peak RSS is the process's, read after each size.
"""
import argparse
import resource
import time
from typing import Callable, Tuple

import cv2
import numpy as np

from utils.synthetic import synthetic_matte
from utils.cutouts.foreground import estimate_foreground, require_pymatting, to_uint8

SIZES = ((1920, 1080), (3840, 2160))


def smooth_field(rng: np.random.Generator, height: int, width: int, cells: int = 8) -> np.ndarray:
    """H x W x 3 float colours on the 0..255 scale that vary slowly: a cells x cells random grid
    enlarged bicubically."""
    grid = rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32)
    return np.clip(cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC), 0, 255)


def synthetic_composite(rng: np.random.Generator, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """(image H x W x 3 BGR uint8 = alpha F + (1 - alpha) B, alpha H x W uint8)."""
    alpha = to_uint8(synthetic_matte(rng, height, width) * 255)
    weight = alpha[..., None] / 255.0
    image = weight * smooth_field(rng, height, width) + (1 - weight) * smooth_field(rng, height, width)
    return to_uint8(image), alpha


def best_seconds(function: Callable[[], object], repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    pymatting = require_pymatting()
    rng = np.random.default_rng(0)
    print(f"pymatting {pymatting.__version__}, CPU, best of {args.repeats} after a warm-up call")
    for width, height in SIZES:
        image, alpha = synthetic_composite(rng, height, width)
        ours = best_seconds(lambda: estimate_foreground(image, alpha), args.repeats)
        direct = best_seconds(lambda: pymatting.estimate_foreground_ml(image / 255.0, alpha / 255.0), args.repeats)
        print(f"{width}x{height}: estimate_foreground {ours:.2f} s, pymatting.estimate_foreground_ml {direct:.2f} s, "
              f"peak RSS {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
