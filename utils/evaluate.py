"""Evaluate predicted alpha mattes against ground truth with the MATLAB-identical metrics.

python -m utils.evaluate --pred-dir P --alpha-dir A --trimap-dir T [--csv FILE] [--workers N]

Files pair by name stem. Composition-1K layout works without alpha_copy: a prediction
`<stem>_<k>.png` finds `A/<stem>.png` when `A/<stem>_<k>.png` does not exist.

Only trimap pixels equal to 128 count; a trimap with other values gets a warning. MSE and MAD
are undefined for an image with no such pixel: shown as "-", left out of their means (the mean
line says over how many images) and an empty CSV cell. Exit 1 when an image failed or lacks a
figure, a prediction or ground truth has no counterpart, or the CSV cannot be written; exit 2
for a bad argument, before any metric is computed.
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
import numpy as np

from utils.atomic import WriteError, atomic_file
from utils.image_io import ImageReadError, composition_base, index_by_stem, list_images, read_first_channel, stem
from utils.metrics import UNKNOWN_VALUE, all_metrics
from utils.progress import progress

COLUMNS = ("sad", "mse", "grad", "conn", "mad")
LABELS = {"sad": "SAD", "mse": "MSE", "grad": "Grad", "conn": "Conn", "mad": "MAD"}
DECIMALS = {"sad": 2, "mse": 4, "grad": 2, "conn": 2, "mad": 4}
TRIMAP_VALUES = (0, UNKNOWN_VALUE, 255)
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


def trimap_warning(trimap: np.ndarray, path: str) -> str:
    """'' for a trimap of 0, 128 and 255 only, else a warning naming its most common other value."""
    other = trimap[~np.isin(trimap, TRIMAP_VALUES)]
    if other.size == 0:
        return ""
    values, counts = np.unique(other, return_counts=True)
    value, count = values[np.argmax(counts)], int(counts.max())
    return (f"warning: {path}: trimap has values other than 0, {UNKNOWN_VALUE} and 255 (e.g. {value:g} on "
            f"{count:,} pixels); the Composition-1K protocol counts only pixels equal to {UNKNOWN_VALUE} as unknown")


def evaluate_one(task: Tuple[str, str, str, str]) -> Tuple[str, Optional[Dict[str, float]], str, str]:
    """(name, metrics or None, problem, trimap warning or '') for one (name, pred, alpha, trimap)."""
    name, pred_path, alpha_path, trimap_path = task
    try:
        pred, alpha, trimap = (read_first_channel(p) for p in (pred_path, alpha_path, trimap_path))
    except ImageReadError as e:
        return name, None, str(e), ""
    warning = trimap_warning(trimap, trimap_path)
    if not pred.shape == alpha.shape == trimap.shape:
        return name, None, (f"{pred_path}: size {pred.shape[1]}x{pred.shape[0]} differs from ground truth "
                            f"{alpha_path} ({alpha.shape[1]}x{alpha.shape[0]}) or trimap {trimap_path} "
                            f"({trimap.shape[1]}x{trimap.shape[0]})"), warning
    return name, all_metrics(pred, alpha, trimap), "", warning


def _init_worker() -> None:
    cv2.setNumThreads(1)


def evaluate_all_with_warnings(tasks: List[Tuple[str, str, str, str]], workers: int, show_progress: bool = False):
    """[(name, metrics or None, problem, trimap warning or '')] in the order of `tasks`."""
    if workers <= 1:
        results = map(evaluate_one, tasks)
        return list(progress(results, len(tasks), "evaluate") if show_progress else results)
    # spawn, not fork: a forked child inherits OpenCV's thread pool in a state that can deadlock.
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        results = pool.imap(evaluate_one, tasks, chunksize=4)
        return list(progress(results, len(tasks), "evaluate") if show_progress else results)


def evaluate_all(tasks: List[Tuple[str, str, str, str]], workers: int, show_progress: bool = False):
    """[(name, metrics or None, problem)] in the order of `tasks`."""
    return [result[:3] for result in evaluate_all_with_warnings(tasks, workers, show_progress)]


def defined(value: float) -> bool:
    return not math.isnan(value)


def format_figure(key: str, value: float) -> str:
    """'MSE 0.0045', or 'MSE -' when undefined (NaN)."""
    return f"{LABELS[key]} {value:.{DECIMALS[key]}f}" if defined(value) else f"{LABELS[key]} -"


def format_metrics(metrics: Dict[str, float]) -> str:
    return "  ".join(format_figure(key, metrics[key]) for key in COLUMNS)


def mean_metrics(rows: List[Dict[str, float]]) -> Tuple[Dict[str, float], Dict[str, int]]:
    """(means, counts) per figure named in any row: each mean is over the rows where that figure
    is present and not NaN, and counts says how many rows that is (NaN mean where it is 0).
    Key order is that of first appearance."""
    keys = dict.fromkeys(key for row in rows for key in row)
    values = {key: [row[key] for row in rows if key in row and defined(row[key])] for key in keys}
    means = {key: math.fsum(v) / len(v) if v else math.nan for key, v in values.items()}
    return means, {key: len(v) for key, v in values.items()}


def coverage_note(counts: Dict[str, int], total: int) -> str:
    """'' when every mean covers all `total` images, else ' (MSE and MAD over 9: 1 image has no
    unknown pixel)'; in this evaluator only a trimap without 128 leaves a figure undefined."""
    labels_by_count: Dict[int, List[str]] = {}
    for key, count in counts.items():
        if count < total:
            labels_by_count.setdefault(count, []).append(LABELS[key])
    parts = [f"{' and '.join(labels)} over {count}: {total - count} "
             f"{'image has' if total - count == 1 else 'images have'} no unknown pixel"
             for count, labels in labels_by_count.items()]
    return f" ({'; '.join(parts)})" if parts else ""


def undefined_problem(name: str, metrics: Dict[str, float], trimap_path: str) -> str:
    """'' when every figure is defined, else why not, for the closing problem list."""
    missing = [LABELS[key] for key in COLUMNS if not defined(metrics[key])]
    if not missing:
        return ""
    return (f"{name}: {' and '.join(missing)} undefined, left out of their means: no pixel of the trimap "
            f"{trimap_path} equals {UNKNOWN_VALUE}")


def csv_path_error(path: str) -> str:
    """'' when `path` can be written as a file, as far as can be told before writing, else why not."""
    if os.path.isdir(path):
        return "is a folder"
    folder = os.path.dirname(os.path.abspath(path))
    return "" if os.path.isdir(folder) else f"folder {folder} does not exist"


def write_csv(path: str, rows: List[Tuple[str, Dict[str, float]]]) -> None:
    """name,sad,mse,grad,conn,mad per image, atomically; an undefined figure is an empty cell.
    Raises WriteError."""
    with atomic_file(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("name",) + COLUMNS)
        for name, metrics in rows:
            writer.writerow((name,) + tuple(repr(metrics[key]) if defined(metrics[key]) else "" for key in COLUMNS))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pred-dir", required=True, help="predicted alpha mattes")
    parser.add_argument("--alpha-dir", required=True, help="ground-truth alpha (Composition-1K: alpha or alpha_copy)")
    parser.add_argument("--trimap-dir", required=True, help="trimaps; only pixels equal to 128 count")
    parser.add_argument("--csv", help="write name,sad,mse,grad,conn,mad per image to this file "
                                      "(an undefined figure is an empty cell)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    return parser.parse_args(argv)


def argument_error(args: argparse.Namespace) -> str:
    """'' when the folders exist and --csv can be written, else the message for exit 2."""
    for flag, folder in (("--pred-dir", args.pred_dir), ("--alpha-dir", args.alpha_dir),
                         ("--trimap-dir", args.trimap_dir)):
        if not os.path.isdir(folder):
            return f"{flag} {folder} is not a folder"
    why = csv_path_error(args.csv) if args.csv else ""
    return f"--csv {args.csv}: {why}" if why else ""


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    error = argument_error(args)
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    triples, problems = pair_files(args.pred_dir, args.alpha_dir, args.trimap_dir)
    offsets = demo_offset_images(list_images(args.pred_dir))
    if offsets:
        print(f"note: {len(offsets)} GCA offset pictures written by demo.py (*_offset1/2.png) are not predictions; "
              "left out", file=sys.stderr)
    if not triples and not problems:
        print(f"error: no images in {args.pred_dir}", file=sys.stderr)
        return 2
    rows, warned = [], set()
    results = evaluate_all_with_warnings(triples, args.workers, show_progress=True)
    for (name, metrics, problem, warning), (_, _, _, trimap_path) in zip(results, triples):
        # One trimap can serve several predictions (`<stem>_<k>` falls back to `<stem>`): warn once.
        if warning and warning not in warned:
            warned.add(warning)
            print(warning, file=sys.stderr)
        if metrics is None:
            problems.append(problem)
            print(f"{name}: FAILED: {problem}")
            continue
        rows.append((name, metrics))
        print(f"{name}: {format_metrics(metrics)}")
        undefined = undefined_problem(name, metrics, trimap_path)
        if undefined:
            problems.append(undefined)
    if rows:
        means, counts = mean_metrics([m for _, m in rows])
        print(f"mean of {len(rows)} images{coverage_note(counts, len(rows))}: {format_metrics(means)}")
    code = 1 if problems else 0
    if args.csv:
        try:
            write_csv(args.csv, rows)
        except WriteError as e:
            print(f"error: {e}", file=sys.stderr)
            code = 1
    if problems:
        print(f"{len(problems)} problem(s) (an image that failed is in no mean; an undefined figure "
              "leaves only its own mean):", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
