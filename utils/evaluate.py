"""Evaluate predicted alpha mattes against ground truth with the MATLAB-identical metrics.

python -m utils.evaluate --pred-dir P --alpha-dir A --trimap-dir T [--csv FILE] [--workers N]

Files pair by name stem. Composition-1K layout works without alpha_copy: a prediction
`<stem>_<k>.png` finds `A/<stem>.png` when `A/<stem>_<k>.png` does not exist.
"""
import argparse
import csv
import math
import multiprocessing
import os
import re
import sys
from typing import Dict, List, Optional, Tuple

import cv2

from utils.image_io import ImageReadError, composition_base, index_by_stem, list_images, read_first_channel, stem
from utils.metrics import all_metrics
from utils.progress import progress

COLUMNS = ("sad", "mse", "grad", "conn", "mad")
DEMO_OFFSET_SUFFIX = re.compile(r"_offset[12]$")


def find_counterpart(name_stem: str, index: Dict[str, List[str]], folder: str) -> Tuple[Optional[str], str]:
    """(path, '') of the file in `folder` for a prediction stem, or (None, why not)."""
    base = composition_base(name_stem)
    for candidate in dict.fromkeys((name_stem, base)):
        matches = index.get(candidate, [])
        if len(matches) > 1:
            return None, f"several files named {candidate}.* in {folder}: {', '.join(matches)}"
        if matches:
            return os.path.join(folder, matches[0]), ""
    tried = f"{name_stem}.*" + (f" or {base}.*" if base != name_stem else "")
    return None, f"no {tried} in {folder}"


def demo_offset_images(names: List[str]) -> List[str]:
    """The `<stem>_offset1/2` pictures demo.py writes beside a prediction `<stem>`."""
    stems = {stem(n) for n in names}
    return [n for n in names if DEMO_OFFSET_SUFFIX.search(stem(n)) and DEMO_OFFSET_SUFFIX.sub("", stem(n)) in stems]


def pair_files(pred_dir: str, alpha_dir: str, trimap_dir: str):
    """([(name, pred, alpha, trimap)], [problems]) with every prediction and every ground truth
    accounted for; demo.py's offset pictures beside their prediction are not predictions."""
    alphas = index_by_stem(list_images(alpha_dir))
    trimaps = index_by_stem(list_images(trimap_dir))
    triples, problems, used_alphas = [], [], set()
    names = list_images(pred_dir)
    offsets = set(demo_offset_images(names))
    for name in (n for n in names if n not in offsets):
        alpha, why_alpha = find_counterpart(stem(name), alphas, alpha_dir)
        trimap, why_trimap = find_counterpart(stem(name), trimaps, trimap_dir)
        if alpha is not None:
            used_alphas.add(stem(alpha))
        if alpha is None or trimap is None:
            problems.append(f"{os.path.join(pred_dir, name)}: " + "; ".join(w for w in (why_alpha, why_trimap) if w))
            continue
        triples.append((name, os.path.join(pred_dir, name), alpha, trimap))
    for alpha_stem, names in alphas.items():
        if alpha_stem not in used_alphas:
            problems.append(f"{os.path.join(alpha_dir, names[0])}: no prediction for it in {pred_dir}")
    return triples, problems


def evaluate_one(task: Tuple[str, str, str, str]) -> Tuple[str, Optional[Dict[str, float]], str]:
    name, pred_path, alpha_path, trimap_path = task
    try:
        pred, alpha, trimap = (read_first_channel(p) for p in (pred_path, alpha_path, trimap_path))
    except ImageReadError as e:
        return name, None, str(e)
    if not pred.shape == alpha.shape == trimap.shape:
        return name, None, (f"{pred_path}: size {pred.shape[1]}x{pred.shape[0]} differs from ground truth "
                            f"{alpha_path} ({alpha.shape[1]}x{alpha.shape[0]}) or trimap {trimap_path} "
                            f"({trimap.shape[1]}x{trimap.shape[0]})")
    return name, all_metrics(pred, alpha, trimap), ""


def _init_worker() -> None:
    cv2.setNumThreads(1)


def evaluate_all(tasks: List[Tuple[str, str, str, str]], workers: int, show_progress: bool = False):
    """[(name, metrics or None, problem)] in the order of `tasks`."""
    if workers <= 1:
        results = map(evaluate_one, tasks)
        return list(progress(results, len(tasks), "evaluate") if show_progress else results)
    # spawn, not fork: a forked child inherits OpenCV's thread pool in a state that can deadlock.
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        results = pool.imap(evaluate_one, tasks, chunksize=4)
        return list(progress(results, len(tasks), "evaluate") if show_progress else results)


def format_metrics(metrics: Dict[str, float]) -> str:
    return (f"SAD {metrics['sad']:.2f}  MSE {metrics['mse']:.4f}  Grad {metrics['grad']:.2f}  "
            f"Conn {metrics['conn']:.2f}  MAD {metrics['mad']:.4f}")


def mean_metrics(rows: List[Dict[str, float]]) -> Dict[str, float]:
    return {key: math.fsum(row[key] for row in rows) / len(rows) for key in COLUMNS}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pred-dir", required=True, help="predicted alpha mattes")
    parser.add_argument("--alpha-dir", required=True, help="ground-truth alpha (Composition-1K: alpha or alpha_copy)")
    parser.add_argument("--trimap-dir", required=True, help="trimaps; only pixels equal to 128 count")
    parser.add_argument("--csv", help="write name,sad,mse,grad,conn,mad per image to this file")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    for flag, folder in (("--pred-dir", args.pred_dir), ("--alpha-dir", args.alpha_dir),
                         ("--trimap-dir", args.trimap_dir)):
        if not os.path.isdir(folder):
            print(f"error: {flag} {folder} is not a folder", file=sys.stderr)
            return 2
    triples, problems = pair_files(args.pred_dir, args.alpha_dir, args.trimap_dir)
    offsets = demo_offset_images(list_images(args.pred_dir))
    if offsets:
        print(f"note: {len(offsets)} GCA offset pictures written by demo.py (*_offset1/2.png) are not predictions; "
              "left out", file=sys.stderr)
    if not triples and not problems:
        print(f"error: no images in {args.pred_dir}", file=sys.stderr)
        return 2
    rows = []
    for name, metrics, problem in evaluate_all(triples, args.workers, show_progress=True):
        if metrics is None:
            problems.append(problem)
            print(f"{name}: FAILED: {problem}")
        else:
            rows.append((name, metrics))
            print(f"{name}: {format_metrics(metrics)}")
    if rows:
        print(f"mean of {len(rows)} images: {format_metrics(mean_metrics([m for _, m in rows]))}")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(("name",) + COLUMNS)
            for name, metrics in rows:
                writer.writerow((name,) + tuple(repr(metrics[key]) for key in COLUMNS))
    if problems:
        print(f"{len(problems)} problem(s); these images are not in the mean:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
