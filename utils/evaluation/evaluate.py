"""Evaluate predicted alpha mattes against ground truth, with the protocol of a benchmark.

python -m utils.evaluation.evaluate --pred-dir P --alpha-dir A --trimap-dir T [--protocol comp1k|aim500]
    [--csv FILE] [--workers N] [--mse-scale S] [--categories FILE | --category-from-prefix SEP]
    [--gallery DIR [--worst K] [--image-dir I]] [--allow-subset]

comp1k (the default): the MATLAB-identical Composition-1K metrics over trimap pixels equal to
128 (utils.evaluation.metrics). aim500: the whole-image metrics of the AIM-500 authors' code, also used for
AM-2K and P3M-500 (utils.evaluation.metrics_aim500). The report's first line states the units.

Files pair by name stem. Composition-1K layout works without alpha_copy: a prediction
`<stem>_<k>.png` finds `A/<stem>.png` when `A/<stem>_<k>.png` does not exist. Every trimap is a test
image: one without a prediction is named, counted on the mean line and makes the exit code 1
(--allow-subset: named and counted only). The pictures demo.py writes beside its alphas
(`<stem>_offset1`, `_fg`, `_rgba`, ...: utils.io.batch.EXTRA_OUTPUT_SUFFIXES) are left out, with a note.

A trimap with values other than 0, 128 and 255 gets a warning. A figure that is undefined for an
image (comp1k MSE and MAD, aim500 MSE-Trimap and MAD-Trimap, without unknown pixels) is shown as
"-", left out of its mean (the mean line says over how many images) and an empty CSV cell. Exit 1
when an image failed or lacks a figure, a prediction or ground truth has no counterpart, or an
output cannot be written; exit 2 for a bad argument, before any metric is computed. Ctrl-C or
SIGTERM stops it with one line (how many images were evaluated; nothing is printed or written
until all are) and exit code 130 / 143.
"""
import argparse
import csv
import math
import multiprocessing
import os
import sys
from dataclasses import dataclass
from functools import partial
from typing import Callable, Dict, List, Optional, Set, Tuple

import cv2
import numpy as np

from utils.allocator import reuse_freed_memory
from utils.atomic import WriteError, atomic_file
from utils.io.batch import AGAIN, EXTRA_OUTPUT_SUFFIXES, Tally, name_list
from utils.evaluation.categories import (FIELDS, UNCATEGORISED, CategoriesError, assign_labels, categories_from_prefix,
                                         group_report, load_categories)
from utils.evaluation.gallery import Entry, folder_problem, write_gallery
from utils.io.images import ImageReadError, composition_base, index_by_stem, list_images, read_first_channel, stem
from utils.evaluation.metrics import UNKNOWN_VALUE, all_metrics
from utils.evaluation.metrics_aim500 import aim500_metrics
from utils.progress import progress
from utils.signals import leave_stop_signals_to_the_parent, run_until_stopped, stop_signals_blocked

LABELS = {"sad": "SAD", "mse": "MSE", "grad": "Grad", "conn": "Conn", "mad": "MAD", "sad_trimap": "SAD-Trimap",
          "mse_trimap": "MSE-Trimap", "mad_trimap": "MAD-Trimap", "sad_fg": "SAD-FG", "sad_bg": "SAD-BG"}
DECIMALS = {"sad": 2, "mse": 4, "grad": 2, "conn": 2, "mad": 4, "sad_trimap": 2, "mse_trimap": 4, "mad_trimap": 4,
            "sad_fg": 2, "sad_bg": 2}
TRIMAP_VALUES = (0, UNKNOWN_VALUE, 255)


@dataclass(frozen=True)
class Protocol:
    title: str
    columns: Tuple[str, ...]  # report and CSV order
    metrics: Callable[..., Dict[str, float]]  # (pred, target, trimap, fast) on the 0..255 scale
    units: str
    unknown_rule: str  # which trimap pixels are unknown
    no_unknown: str  # why a trimap `{path}` leaves a figure undefined


PROTOCOLS = {
    "comp1k": Protocol("Composition-1K (the MATLAB reference)", ("sad", "mse", "grad", "conn", "mad"), all_metrics,
                       "over the trimap's unknown pixels only; SAD, Grad and Conn in thousands, MSE and MAD "
                       "per unknown pixel",
                       f"the Composition-1K protocol counts only pixels equal to {UNKNOWN_VALUE} as unknown",
                       f"no pixel of the trimap {{path}} equals {UNKNOWN_VALUE}"),
    "aim500": Protocol("AIM-500 (the AIM authors' whole-image code)",
                       ("sad", "mse", "mad", "grad", "conn", "sad_trimap", "mse_trimap", "mad_trimap", "sad_fg",
                        "sad_bg"), aim500_metrics,
                       "over the whole image; SAD, Conn, SAD-Trimap, SAD-FG and SAD-BG in thousands, Grad in tens, "
                       "MSE and MAD per pixel, MSE-Trimap and MAD-Trimap per unknown pixel",
                       f"the AIM-500 protocol counts pixels equal to {UNKNOWN_VALUE} as unknown or, where there are "
                       "none, those neither 0 nor 255",
                       "no pixel of the trimap {path} is unknown: none equals 128 and all are 0 or 255"),
}
COLUMNS = PROTOCOLS["comp1k"].columns
WORST_DEFAULT = 10


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


def is_extra_output(name_stem: str, prediction_stems: Set[str]) -> bool:
    """Whether `name_stem` is `<stem><suffix>`, a picture demo.py wrote beside the prediction
    `<stem>` in `prediction_stems` (suffix: utils.io.batch.EXTRA_OUTPUT_SUFFIXES)."""
    return any(name_stem.endswith(suffix) and name_stem[:-len(suffix)] in prediction_stems
               for suffix in EXTRA_OUTPUT_SUFFIXES)


@dataclass
class Pairing:
    """A prediction folder against its ground truth: the (name, pred, alpha, trimap) to evaluate,
    predictions without a counterpart (problems), the ground-truth files without a prediction (missing),
    how many of the test images (one a trimap) have none and how many there are, and the
    pictures demo.py wrote beside its alphas (extras), which are not predictions."""
    triples: List[Tuple[str, str, str, str]]
    problems: List[str]
    missing: List[str]
    images_without_prediction: int
    test_images: int
    extras: List[str]


def pair_folders(pred_dir: str, alpha_dir: str, trimap_dir: str) -> Pairing:
    """Every prediction and every ground truth of the three folders accounted for. A trimap is a
    test image; an alpha no prediction uses is missing too, unless a missing trimap is its image."""
    alphas = index_by_stem(list_images(alpha_dir))
    trimaps = index_by_stem(list_images(trimap_dir))
    triples, problems, used = [], [], set()
    names = list_images(pred_dir)
    stems = {stem(n) for n in names}
    extras = [n for n in names if stem(n) not in alphas and is_extra_output(stem(n), stems)]
    for name in (n for n in names if n not in set(extras)):
        alpha, why_alpha = find_counterpart(stem(name), alphas, alpha_dir)
        trimap, why_trimap = find_counterpart(stem(name), trimaps, trimap_dir)
        used.update(path for path in (alpha, trimap) if path is not None)
        if alpha is None or trimap is None:
            problems.append(f"{os.path.join(pred_dir, name)}: " + "; ".join(w for w in (why_alpha, why_trimap) if w))
            continue
        triples.append((name, os.path.join(pred_dir, name), alpha, trimap))
    unused_trimaps = [os.path.join(trimap_dir, n) for files in trimaps.values() for n in files
                      if os.path.join(trimap_dir, n) not in used]
    images_left = {stem(path) for path in unused_trimaps} | {composition_base(stem(path)) for path in unused_trimaps}
    unused_alphas = [os.path.join(alpha_dir, n) for alpha_stem, files in alphas.items() for n in files
                     if os.path.join(alpha_dir, n) not in used and alpha_stem not in images_left]
    return Pairing(triples, problems, unused_alphas + unused_trimaps, len(unused_trimaps),
                   sum(len(files) for files in trimaps.values()), extras)


def missing_problems(pairing: Pairing, pred_dir: str) -> List[str]:
    """The ground truths without a prediction, as problems naming them."""
    return [f"{path}: no prediction for it in {pred_dir}" for path in pairing.missing]


def pair_files(pred_dir: str, alpha_dir: str, trimap_dir: str) -> Tuple[List[Tuple[str, str, str, str]], List[str]]:
    """([(name, pred, alpha, trimap)], [problems]) with every prediction and every ground truth
    accounted for (a ground truth without a prediction is a problem too)."""
    pairing = pair_folders(pred_dir, alpha_dir, trimap_dir)
    return pairing.triples, pairing.problems + missing_problems(pairing, pred_dir)


def extras_note(extras: List[str]) -> str:
    """One line on demo.py's pictures left out of the evaluation."""
    found = [suffix for suffix in EXTRA_OUTPUT_SUFFIXES if any(stem(n).endswith(suffix) for n in extras)]
    return (f"note: {len(extras)} pictures that demo.py writes beside its alphas "
            f"({', '.join('*' + suffix for suffix in found)}) are not predictions; left out")


def subset_note(missing: int, test_images: int) -> str:
    """' (4 of 8 test images have no prediction)' for the mean line, '' when none is missing."""
    if not missing:
        return ""
    return f" ({missing} of {test_images} test images {'has' if missing == 1 else 'have'} no prediction)"


def trimap_warning(trimap: np.ndarray, path: str, protocol: str = "comp1k") -> str:
    """'' for a trimap of 0, 128 and 255 only, else a warning naming its most common other value."""
    other = trimap[~np.isin(trimap, TRIMAP_VALUES)]
    if other.size == 0:
        return ""
    values, counts = np.unique(other, return_counts=True)
    value, count = values[np.argmax(counts)], int(counts.max())
    return (f"warning: {path}: trimap has values other than 0, {UNKNOWN_VALUE} and 255 (e.g. {value:g} on "
            f"{count:,} pixels); {PROTOCOLS[protocol].unknown_rule}")


def evaluate_one(task: Tuple[str, str, str, str],
                 protocol: str = "comp1k") -> Tuple[str, Optional[Dict[str, float]], str, str]:
    """(name, metrics or None, problem, trimap warning or '') for one (name, pred, alpha, trimap)."""
    name, pred_path, alpha_path, trimap_path = task
    try:
        pred, alpha, trimap = (read_first_channel(p) for p in (pred_path, alpha_path, trimap_path))
    except ImageReadError as e:
        return name, None, str(e), ""
    warning = trimap_warning(trimap, trimap_path, protocol)
    if not pred.shape == alpha.shape == trimap.shape:
        return name, None, (f"{pred_path}: size {pred.shape[1]}x{pred.shape[0]} differs from ground truth "
                            f"{alpha_path} ({alpha.shape[1]}x{alpha.shape[0]}) or trimap {trimap_path} "
                            f"({trimap.shape[1]}x{trimap.shape[0]})"), warning
    return name, PROTOCOLS[protocol].metrics(pred, alpha, trimap), "", warning


def _init_worker() -> None:
    leave_stop_signals_to_the_parent()
    cv2.setNumThreads(1)
    reuse_freed_memory()


def evaluate_all_with_warnings(tasks: List[Tuple[str, str, str, str]], workers: int, show_progress: bool = False,
                               protocol: str = "comp1k", tally: Optional[Tally] = None):
    """[(name, metrics or None, problem, trimap warning or '')] in the order of `tasks`, counted in
    `tally` as they come."""
    evaluate = partial(evaluate_one, protocol=protocol)
    if workers <= 1:
        return collect(map(evaluate, tasks), len(tasks), show_progress, tally)
    # spawn, not fork: a forked child inherits OpenCV's thread pool in a state that can deadlock.
    # The workers start with the stop signals held back until they ignore Ctrl-C (see _init_worker).
    with stop_signals_blocked():
        pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker)
    with pool:
        return collect(pool.imap(evaluate, tasks, chunksize=4), len(tasks), show_progress, tally)


def collect(results, total: int, show_progress: bool, tally: Optional[Tally]) -> List:
    collected = []
    for result in progress(results, total, "evaluate") if show_progress else results:
        collected.append(result)
        if tally is not None:
            tally.done += 1
    return collected


def evaluate_all(tasks: List[Tuple[str, str, str, str]], workers: int, show_progress: bool = False,
                 protocol: str = "comp1k"):
    """[(name, metrics or None, problem)] in the order of `tasks`."""
    return [result[:3] for result in evaluate_all_with_warnings(tasks, workers, show_progress, protocol)]


def defined(value: float) -> bool:
    return not math.isnan(value)


def format_figure(key: str, value: float, label: Optional[str] = None) -> str:
    """'MSE 0.0045', or 'MSE -' when undefined (NaN); `label` in place of the figure's own name."""
    label = label or LABELS[key]
    return f"{label} {value:.{DECIMALS[key]}f}" if defined(value) else f"{label} -"


def scale_mse(metrics: Dict[str, float], mse_scale: float) -> Dict[str, float]:
    """The figures with the MSE ones multiplied by `mse_scale` (--mse-scale)."""
    return {key: value * mse_scale if key.startswith("mse") else value for key, value in metrics.items()}


def format_metrics(metrics: Dict[str, float], columns: Tuple[str, ...] = COLUMNS, mse_scale: float = 1.0) -> str:
    """The figures of `columns` that `metrics` has, in that order, MSE ones times `mse_scale`."""
    shown = scale_mse(metrics, mse_scale)
    return "  ".join(format_figure(key, shown[key]) for key in columns if key in shown)


def units_line(protocol: str, mse_scale: float = 1.0) -> str:
    """The report's header: protocol and units."""
    scale = f"; MSE figures multiplied by {mse_scale:g} (--mse-scale)" if mse_scale != 1 else ""
    return f"protocol {protocol}: {PROTOCOLS[protocol].title}, {PROTOCOLS[protocol].units}{scale}"


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


def undefined_problem(name: str, metrics: Dict[str, float], trimap_path: str, protocol: str = "comp1k") -> str:
    """'' when every figure is defined, else why not, for the closing problem list."""
    missing = [LABELS[key] for key in metrics if not defined(metrics[key])]
    if not missing:
        return ""
    return (f"{name}: {' and '.join(missing)} undefined, left out of their means: "
            + PROTOCOLS[protocol].no_unknown.format(path=trimap_path))


def csv_path_error(path: str) -> str:
    """'' when `path` can be written as a file, as far as can be told before writing, else why not."""
    if os.path.isdir(path):
        return "is a folder"
    folder = os.path.dirname(os.path.abspath(path))
    return "" if os.path.isdir(folder) else f"folder {folder} does not exist"


def write_csv(path: str, rows: List[Tuple[str, Dict[str, float]]], columns: Tuple[str, ...] = COLUMNS,
              labels: Optional[Dict[str, Dict[str, str]]] = None, label_fields: Tuple[str, ...] = ()) -> None:
    """name, the label fields, then `columns` per image, atomically; figures raw (no --mse-scale),
    an undefined figure or a missing label is an empty cell. Raises WriteError."""
    labels = labels or {}
    with atomic_file(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("name",) + label_fields + columns)
        for name, metrics in rows:
            writer.writerow((name,) + tuple(labels.get(name, {}).get(field, "") for field in label_fields) +
                            tuple(repr(metrics[key]) if key in metrics and defined(metrics[key]) else ""
                                  for key in columns))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pred-dir", required=True, help="predicted alpha mattes")
    parser.add_argument("--alpha-dir", required=True, help="ground-truth alpha (Composition-1K: alpha or alpha_copy)")
    parser.add_argument("--trimap-dir", required=True, help="trimaps of 0, 128 and 255")
    parser.add_argument("--protocol", choices=tuple(PROTOCOLS), default="comp1k",
                        help="comp1k: MATLAB Composition-1K metrics over trimap == 128 (default); aim500: the "
                             "AIM-500 / AM-2K / P3M-500 whole-image metrics")
    parser.add_argument("--csv", help="write name, the protocol's figures (raw, whatever --mse-scale) and, with "
                                      "categories, type and category per image to this file (an undefined figure "
                                      "is an empty cell)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    parser.add_argument("--mse-scale", type=float, default=1.0, metavar="S",
                        help="multiply the printed MSE figures by S, e.g. 1e3 for tables headed MSE (x1e-3)")
    groups = parser.add_mutually_exclusive_group()
    groups.add_argument("--categories", metavar="FILE",
                        help='per-type and per-category mean SAD from a JSON {"<stem>": {"type": ..., "category": '
                             '...}} (AIM-500\'s file) or a CSV name,category')
    groups.add_argument("--category-from-prefix", metavar="SEP",
                        help="per-category mean SAD, the category being the name up to its last SEP "
                             "(SIM: <category>_<n>, SEP _)")
    parser.add_argument("--gallery", metavar="DIR",
                        help="write a picture of each of the --worst images by SAD and DIR/index.html, a table of "
                             "every image's figures sortable by a click on a column")
    parser.add_argument("--worst", type=int, default=WORST_DEFAULT, metavar="K",
                        help=f"pictures in the gallery (default {WORST_DEFAULT})")
    parser.add_argument("--image-dir", help="the photos, shown first in the gallery's pictures")
    parser.add_argument("--allow-subset", action="store_true",
                        help="evaluate the predictions there are: ground truths without a prediction are named and "
                             "counted, but do not make the exit code 1")
    return parser.parse_args(argv)


def argument_error(args: argparse.Namespace) -> str:
    """'' when the arguments can be used, as far as can be told before any metric, else the
    message for exit 2."""
    for flag, folder in (("--pred-dir", args.pred_dir), ("--alpha-dir", args.alpha_dir),
                         ("--trimap-dir", args.trimap_dir), ("--image-dir", args.image_dir)):
        if folder is not None and not os.path.isdir(folder):
            return f"{flag} {folder} is not a folder"
    why = csv_path_error(args.csv) if args.csv else ""
    if why:
        return f"--csv {args.csv}: {why}"
    if args.workers < 1:
        return f"--workers {args.workers}: give 1 or more"
    if not (math.isfinite(args.mse_scale) and args.mse_scale > 0):
        return f"--mse-scale {args.mse_scale:g}: give a positive number such as 1e3"
    if args.category_from_prefix == "":
        return "--category-from-prefix: give the separator, e.g. _"
    if args.gallery is None:
        if args.image_dir or args.worst != WORST_DEFAULT:
            return f"{'--image-dir' if args.image_dir else '--worst'} is used only in a gallery: add --gallery DIR"
        return ""
    if args.worst < 0:
        return f"--worst {args.worst}: give 0 or more"
    why = folder_problem(args.gallery)
    return f"--gallery {args.gallery}: {why}" if why else ""


def category_table(args: argparse.Namespace, names: List[str]) -> Tuple[Dict[str, Dict[str, str]], str]:
    """(stem -> labels, where they come from: the file or the flag) for --categories /
    --category-from-prefix, or ({}, ''). Raises CategoriesError."""
    if args.categories:
        return load_categories(args.categories), args.categories
    if args.category_from_prefix:
        return (categories_from_prefix(names, args.category_from_prefix),
                f"--category-from-prefix {args.category_from_prefix!r}")
    return {}, ""


def category_notes(source: str, from_prefix: bool, missing: List[str], unused: List[str], pred_dir: str) -> List[str]:
    """Warnings on images without labels and, for a categories file, on its names without a
    prediction (a prefix names only the images it is taken from)."""
    notes = []
    if missing:
        why = "with no category before the separator" if from_prefix else "not in it"
        notes.append(f"warning: {source}: {len(missing)} image(s) {why}, counted as {UNCATEGORISED}: "
                     f"{name_list(missing)}")
    if unused and not from_prefix:
        notes.append(f"warning: {source}: {len(unused)} name(s) with no evaluated prediction in {pred_dir}: "
                     f"{name_list(unused)}")
    return notes


def gallery_entries(rows: List[Tuple[str, Dict[str, float]]], triples: List[Tuple[str, str, str, str]],
                    image_dir: Optional[str], labels: Dict[str, Dict[str, str]]) -> Tuple[List[Entry], List[str]]:
    """(an Entry per evaluated image, notes on photos not found)."""
    paths = {name: (pred, alpha, trimap) for name, pred, alpha, trimap in triples}
    images = index_by_stem(list_images(image_dir)) if image_dir else {}
    entries, notes = [], []
    for name, metrics in rows:
        image = None
        if image_dir:
            image, why = find_counterpart(stem(name), images, image_dir)
            if image is None:
                notes.append(f"{name}: no photo in the gallery picture: {why}")
        entries.append(Entry(name, metrics, *paths[name], image=image, labels=labels.get(name)))
    return entries, notes


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    tally = Tally(folder=args.pred_dir)
    return run_until_stopped(partial(run, args, tally),
                             lambda: tally.stopped_line("images evaluated in", f"nothing printed or written; {AGAIN}"))


def print_rows(results: list, triples: list, args: argparse.Namespace, problems: List[str]
               ) -> List[Tuple[str, Dict[str, float]]]:
    """Prints each image's figures (or why it failed) and returns the (name, metrics) rows of the
    images that were scored; failures and undefined figures are added to `problems`."""
    protocol = PROTOCOLS[args.protocol]
    rows, warned = [], set()
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
        print(f"{name}: {format_metrics(metrics, protocol.columns, args.mse_scale)}")
        undefined = undefined_problem(name, metrics, trimap_path, args.protocol)
        if undefined:
            problems.append(undefined)
    return rows


def print_categories(args: argparse.Namespace, source: str, table: Dict[str, Dict[str, str]],
                     rows: List[Tuple[str, Dict[str, float]]]) -> Dict[str, Dict[str, str]]:
    """Prints the mean SAD per type and category (and notes on images the table misses or names
    in vain); returns each image's labels."""
    labels, missing, unused = assign_labels([name for name, _ in rows], table)
    for note in category_notes(source, bool(args.category_from_prefix), missing, unused, args.pred_dir):
        print(note, file=sys.stderr)
    for line in group_report({name: m["sad"] for name, m in rows}, labels, table):
        print(line)
    return labels


def write_evaluation_gallery(args: argparse.Namespace, header: str, rows: List[Tuple[str, Dict[str, float]]],
                             triples: list, labels: Dict[str, Dict[str, str]], label_fields: Tuple[str, ...]) -> bool:
    """Writes --gallery (the --worst images' pictures and an index page of every image); False
    when it could not be completed."""
    protocol = PROTOCOLS[args.protocol]
    page_labels = {name: {f: labels.get(name, {}).get(f, UNCATEGORISED) for f in label_fields} for name, _ in rows}
    shown = [(name, scale_mse(metrics, args.mse_scale)) for name, metrics in rows]
    entries, notes = gallery_entries(shown, triples, args.image_dir, page_labels)
    scaled = f" (x{args.mse_scale:g})" if args.mse_scale != 1 else ""
    columns = [(key, LABELS[key] + (scaled if key.startswith("mse") else ""), DECIMALS[key])
               for key in protocol.columns if key in rows[0][1]]
    page_notes = [header, f"{len(rows)} images from {args.pred_dir}, largest SAD first; the {args.worst} "
                  "largest have a picture (the name links to it). Click a column's header to sort by it."]
    complete = True
    try:
        notes += write_gallery(args.gallery, entries, args.worst, f"Evaluation of {args.pred_dir}", page_notes,
                               columns, lambda m: [format_figure(key, m[key], label) for key, label, _ in columns])
        print(f"gallery: {os.path.join(args.gallery, 'index.html')}")
    except OSError as e:
        print(f"error: gallery not complete: {e}", file=sys.stderr)
        complete = False
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return complete


def run(args: argparse.Namespace, tally: Tally) -> int:
    """The command's work, counting the images evaluated in `tally`; the exit code."""
    error = argument_error(args)
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    protocol = PROTOCOLS[args.protocol]
    pairing = pair_folders(args.pred_dir, args.alpha_dir, args.trimap_dir)
    triples, problems = pairing.triples, list(pairing.problems)
    if pairing.extras:
        print(extras_note(pairing.extras), file=sys.stderr)
    if pairing.missing and args.allow_subset:
        print(f"note: --allow-subset: {len(pairing.missing)} ground truth(s) without a prediction in {args.pred_dir}, "
              f"left out of the means: {name_list(pairing.missing)}", file=sys.stderr)
    elif pairing.missing:
        problems += missing_problems(pairing, args.pred_dir)
    if not triples and not problems and not pairing.missing:
        print(f"error: no images in {args.pred_dir}", file=sys.stderr)
        return 2
    try:
        table, source = category_table(args, [name for name, *_ in triples])
    except CategoriesError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    header = units_line(args.protocol, args.mse_scale)
    print(header)
    tally.total = len(triples)
    results = evaluate_all_with_warnings(triples, args.workers, show_progress=True, protocol=args.protocol,
                                         tally=tally)
    rows = print_rows(results, triples, args, problems)
    if rows:
        means, counts = mean_metrics([m for _, m in rows])
        subset = subset_note(pairing.images_without_prediction, pairing.test_images)
        print(f"mean of {len(rows)} images{coverage_note(counts, len(rows))}{subset}: "
              f"{format_metrics(means, protocol.columns, args.mse_scale)}")
    labels = print_categories(args, source, table, rows) if source and rows else {}
    code = 1 if problems else 0
    label_fields = tuple(f for f in FIELDS if any(f in labels_ for labels_ in table.values()))
    if args.csv:
        try:
            write_csv(args.csv, rows, protocol.columns, labels, label_fields)
        except WriteError as e:
            print(f"error: {e}", file=sys.stderr)
            code = 1
    if args.gallery and rows and not write_evaluation_gallery(args, header, rows, triples, labels, label_fields):
        code = 1
    if problems:
        print(f"{len(problems)} problem(s) (an image that failed is in no mean; an undefined figure "
              "leaves only its own mean):", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
    return code


if __name__ == "__main__":
    reuse_freed_memory()
    sys.exit(main())
