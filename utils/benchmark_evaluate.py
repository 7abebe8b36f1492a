"""Benchmark: evaluation speed on a generated Composition-1K- or AIM-500-sized test set.

python -m utils.evaluation.benchmark [--foregrounds 50] [--per-foreground 20] [--workers N]
python -m utils.evaluation.benchmark --protocol aim500 --foregrounds 500 --per-foreground 1 --megapixels 0.9 1.1

Writes ground truths (by default 50 of 1-2 MP) with soft, matte-like alpha (blurred shapes, thin
strands) and predictions and trimaps (about 30 % unknown) in Composition-1K naming to a temporary
folder, then times the evaluation with the protocol's figures (comp1k: SAD, MSE, Grad, Conn, MAD;
aim500: its ten, whole-image Grad and Conn included; reading included) with one process on a
subset and with N processes on the whole set. comp1k predictions err in the unknown band only,
aim500 ones everywhere, as a whole-image method's do.
"""
import argparse
import os
import shutil
import tempfile
import time
from typing import List, Tuple

import cv2
import numpy as np

from utils.evaluation import metrics_aim500
from utils.allocator import reuse_freed_memory
from utils.evaluation.aim500_reference import authors_conn, authors_grad
from utils.evaluation.evaluate import PROTOCOLS, evaluate_all, pair_files
from utils.io.images import read_first_channel

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


def make_test_set(root: str, foregrounds: int, per_foreground: int, seed: int = 0,
                  megapixels: Tuple[float, float] = (1.0, 2.0), band_only: bool = True) -> Tuple[str, str, str]:
    rng = np.random.default_rng(seed)
    dirs = tuple(os.path.join(root, name) for name in ("pred", "alpha", "trimaps"))
    for d in dirs:
        os.makedirs(d)
    pred_dir, alpha_dir, trimap_dir = dirs
    for i in range(foregrounds):
        pixels = rng.uniform(megapixels[0] * 1e6, megapixels[1] * 1e6)
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
            pred = np.clip(alpha + (error * (trimap == 128) if band_only else error), 0, 1)
            cv2.imwrite(os.path.join(pred_dir, f"fg{i:02d}_{k}.png"), (pred * 255).astype(np.uint8), PNG_FAST)
    return dirs


def compare_reference(tasks: List[Tuple[str, str, str, str]]) -> None:
    """Prints the time per image of this project's AIM-500 Grad + Conn and of the authors' code."""
    pairs = [(read_first_channel(pred) / 255, read_first_channel(alpha) / 255) for _, pred, alpha, _ in tasks]
    timings = {}
    for label, grad, conn in (("utils.evaluation.metrics_aim500", metrics_aim500.grad, metrics_aim500.conn),
                              ("the authors' SciPy code", lambda p, g: authors_grad(p, g)[0], authors_conn)):
        start = time.perf_counter()
        for pred, alpha in pairs:
            grad(pred, alpha)
            conn(pred, alpha)
        timings[label] = (time.perf_counter() - start) / len(pairs)
    ours, theirs = timings.values()
    print(f"Grad + Conn per image, 1 process ({len(pairs)} images): utils.evaluation.metrics_aim500 "
          f"{ours * 1000:.0f} ms, the authors' SciPy code {theirs * 1000:.0f} ms ({theirs / ours:.2f} x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--foregrounds", type=int, default=50)
    parser.add_argument("--per-foreground", type=int, default=20)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--protocol", choices=tuple(PROTOCOLS), default="comp1k")
    parser.add_argument("--compare-reference", type=int, default=0, metavar="N",
                        help="aim500: also time Grad + Conn against the authors' SciPy code on N images")
    parser.add_argument("--megapixels", type=float, nargs=2, default=(1.0, 2.0), metavar=("LOW", "HIGH"),
                        help="ground-truth sizes, uniform in this range (default 1 2)")
    parser.add_argument("--single-process-images", type=int, default=100,
                        help="images timed with one process (a subset, to keep the run short)")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="matting-eval-bench-")
    try:
        start = time.perf_counter()
        pred_dir, alpha_dir, trimap_dir = make_test_set(root, args.foregrounds, args.per_foreground,
                                                        megapixels=args.megapixels,
                                                        band_only=args.protocol == "comp1k")
        tasks, problems = pair_files(pred_dir, alpha_dir, trimap_dir)
        assert not problems, problems
        megapixels = np.mean([np.prod(cv2.imread(os.path.join(alpha_dir, f), 0).shape)
                              for f in os.listdir(alpha_dir)]) / 1e6
        print(f"generated {len(tasks)} predictions over {args.foregrounds} ground truths "
              f"(mean {megapixels:.2f} MP) in {time.perf_counter() - start:.0f} s")
        if args.compare_reference:
            compare_reference(tasks[:args.compare_reference])
        subset = tasks[:: max(1, len(tasks) // args.single_process_images)][:args.single_process_images]
        start = time.perf_counter()
        evaluate_all(subset, workers=1, protocol=args.protocol)
        single = len(subset) / (time.perf_counter() - start)
        print(f"1 process: {single:.2f} images/s ({len(subset)} images)")
        start = time.perf_counter()
        results = evaluate_all(tasks, workers=args.workers, protocol=args.protocol)
        elapsed = time.perf_counter() - start
        assert all(metrics is not None for _, metrics, _ in results)
        print(f"{args.workers} processes: {len(tasks) / elapsed:.2f} images/s ({len(tasks)} images)")
        print(f"{len(tasks)} images evaluated ({args.protocol}) in {elapsed:.1f} s with {args.workers} processes")
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    reuse_freed_memory()
    main()
