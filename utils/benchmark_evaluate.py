"""Benchmark: evaluation speed on a generated Composition-1K-sized test set.

python -m utils.benchmark_evaluate [--foregrounds 50] [--per-foreground 20] [--workers N]

Writes 50 ground truths of 1-2 MP with soft, matte-like alpha (blurred shapes, thin strands)
and 1000 predictions and trimaps (about 30 % unknown) in Composition-1K naming to a temporary
folder, then times the evaluation (SAD, MSE, Grad, Conn, MAD; reading included) with one
process on a subset and with N processes on the whole set.
"""
import argparse
import os
import shutil
import tempfile
import time
from typing import Tuple

import cv2
import numpy as np

from utils.evaluate import evaluate_all, pair_files

PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1]


def synthetic_matte(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
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
    band = ((alpha > 0.01) & (alpha < 0.99)).astype(np.uint8)
    distance = cv2.distanceTransform(1 - band, cv2.DIST_L2, 3)
    unknown = distance <= np.quantile(distance, unknown_fraction)
    trimap = np.where(alpha > 0.5, 255, 0).astype(np.uint8)
    trimap[unknown] = 128
    return trimap


def make_test_set(root: str, foregrounds: int, per_foreground: int, seed: int = 0) -> Tuple[str, str, str]:
    rng = np.random.default_rng(seed)
    dirs = tuple(os.path.join(root, name) for name in ("pred", "alpha", "trimaps"))
    for d in dirs:
        os.makedirs(d)
    pred_dir, alpha_dir, trimap_dir = dirs
    for i in range(foregrounds):
        pixels = rng.uniform(1.0e6, 2.0e6)
        aspect = rng.uniform(0.6, 1.6)
        height, width = int(np.sqrt(pixels / aspect)), int(np.sqrt(pixels * aspect))
        alpha = synthetic_matte(rng, height, width)
        trimap = trimap_for(alpha)
        cv2.imwrite(os.path.join(alpha_dir, f"fg{i:02d}.png"), (alpha * 255).astype(np.uint8), PNG_FAST)
        trimap_path = os.path.join(trimap_dir, f"fg{i:02d}_0.png")
        cv2.imwrite(trimap_path, trimap, PNG_FAST)
        for k in range(per_foreground):
            if k:
                os.link(trimap_path, os.path.join(trimap_dir, f"fg{i:02d}_{k}.png"))
            error = cv2.GaussianBlur(rng.normal(0, 0.15, alpha.shape).astype(np.float32), (0, 0), 3)
            pred = np.clip(alpha + error * (trimap == 128), 0, 1)
            cv2.imwrite(os.path.join(pred_dir, f"fg{i:02d}_{k}.png"), (pred * 255).astype(np.uint8), PNG_FAST)
    return dirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--foregrounds", type=int, default=50)
    parser.add_argument("--per-foreground", type=int, default=20)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--single-process-images", type=int, default=100,
                        help="images timed with one process (a subset, to keep the run short)")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="matting-eval-bench-")
    try:
        start = time.perf_counter()
        pred_dir, alpha_dir, trimap_dir = make_test_set(root, args.foregrounds, args.per_foreground)
        tasks, problems = pair_files(pred_dir, alpha_dir, trimap_dir)
        assert not problems, problems
        megapixels = np.mean([np.prod(cv2.imread(os.path.join(alpha_dir, f), 0).shape)
                              for f in os.listdir(alpha_dir)]) / 1e6
        print(f"generated {len(tasks)} predictions over {args.foregrounds} ground truths "
              f"(mean {megapixels:.2f} MP) in {time.perf_counter() - start:.0f} s")
        subset = tasks[:: max(1, len(tasks) // args.single_process_images)][:args.single_process_images]
        start = time.perf_counter()
        evaluate_all(subset, workers=1)
        single = len(subset) / (time.perf_counter() - start)
        print(f"1 process: {single:.2f} images/s ({len(subset)} images)")
        start = time.perf_counter()
        results = evaluate_all(tasks, workers=args.workers)
        elapsed = time.perf_counter() - start
        assert all(metrics is not None for _, metrics, _ in results)
        print(f"{args.workers} processes: {len(tasks) / elapsed:.2f} images/s ({len(tasks)} images)")
        print(f"{len(tasks)} images evaluated in {elapsed:.1f} s with {args.workers} processes")
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
