"""Several models on one benchmark, each run with its own evaluation recipe and all scored with the one
protocol, in one table (Markdown, CSV and JSON) and a gallery of the images where they disagree most.

python compare.py --model CONFIG CHECKPOINT --model NAME [--model ...] --benchmark DIR
    --output DIR [--protocol comp1k|aim500] [--categories FILE | --category-from-prefix SEP]
    [--device auto|cpu|cuda] [--precision fp32|bf16|fp16] [--tta MODE] [--worst K]
torchrun --nproc_per_node=N compare.py ...    (the same, each rank predicting its share)

A model is a config and a checkpoint, or a released model's name (python -m networks.models lists them).
The benchmark folder is found by its sub-folders: Composition-1K (merged/, alpha/ or alpha_copy/,
trimaps/), AIM-500 (original/, mask/, trimap/, and aim_category_type.json for its per-type and
per-category means; protocol aim500) or any images/, alphas/ and trimaps/ (image/, alpha/, trimap/
too). Images pair with their alpha and trimap as in the test phase (dataloader.file_lists.eval_list).

Each model's alphas, as its evaluation recipe quantises them, are written to OUTPUT/alphas/<model>/
and scored as `python -m utils.evaluation.evaluate` scores that folder, so the figures are the same.
OUTPUT/table.md, table.csv and table.json hold the means, the mean SAD per type and category where
the benchmark has them, seconds per image (the prediction alone) and peak memory per model;
OUTPUT/gallery/ the --worst images with the largest disagreement between the models, side by side.

Under torchrun each rank predicts and scores every world_size-th image (utils.distributed.shard_of);
rank 0 gathers the rows, puts them in the one-process order and writes the table, whose figures
equal a one-process run's. Exit 1 when an image failed for a model or an output could not be
written (each named), 2 for a bad argument, model or benchmark folder (one line naming it).
"""
import argparse
import csv
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from dataloader.datasets import EvalDataset, usable_eval_files
from dataloader.file_lists import DataListError, EvalList, eval_list
from matting import pick_device
from networks.families import RELEASED, config_for, load_config, load_configured
from utils import distributed as du
from utils.allocator import reuse_freed_memory
from utils.atomic import WriteError, atomic_file
from utils.checkpoint import CheckpointError
from utils.config import ConfigError
from utils.evaluation.categories import (FIELDS, CategoriesError, assign_labels, categories_from_prefix, group_means,
                                         load_categories)
from utils.evaluation.evaluate import (DECIMALS, LABELS, PROTOCOLS, WORST_DEFAULT, evaluate_one, format_figure,
                                       mean_metrics, units_line)
from utils.evaluation.gallery import folder_problem, gallery_picture, index_html, picture_name, remove_old_pictures
from utils.inference.predict import TTA_MODES, PRECISIONS, predict_views, runnable_precision
from utils.io.batch import AGAIN, Tally
from utils.io.images import ImageReadError, read_first_channel, read_image, stem, write_image
from utils.memory import OutOfMemory, format_bytes, named_out_of_memory, peak_memory_bytes, reset_peak_memory
from utils.progress import progress
from utils.recipe import ImageSizeError
from utils.signals import run_until_stopped

# (layout, image folders, alpha folders, trimap folders, protocol, categories file): the first
# folder of each tuple that exists is taken.
LAYOUTS = (
    ("Composition-1K", ("merged",), ("alpha", "alpha_copy"), ("trimaps",), "comp1k", None),
    ("AIM-500", ("original",), ("mask",), ("trimap",), "aim500", "aim_category_type.json"),
    ("images + alphas + trimaps", ("images", "image"), ("alphas", "alpha"), ("trimaps", "trimap"), "comp1k", None),
)
TIMING = ("seconds per image: the prediction alone (the recipe and the network, not reading or writing files), "
          "the mean over the images, the first included")


class CompareError(ValueError):
    """A model, benchmark or output that cannot be used; the message names it."""


@dataclass(frozen=True)
class Benchmark:
    folder: str
    layout: str
    images: str
    alphas: str
    trimaps: str
    protocol: str
    categories: Optional[str]


@dataclass(frozen=True)
class ModelChoice:
    name: str  # the model's column in the table and its folder of alphas
    config: str
    checkpoint: str


@dataclass
class ModelResult:
    """One model's rows in benchmark order, [(image name, metrics)], and what failed, its time
    and memory."""
    choice: ModelChoice
    family: str
    rows: List[Tuple[str, Dict[str, float]]] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)
    seconds: float = 0.0
    timed: int = 0
    peak_bytes: int = 0

    @property
    def seconds_per_image(self) -> float:
        return self.seconds / self.timed if self.timed else math.nan


def find_benchmark(folder: str) -> Benchmark:
    """The benchmark in `folder`, by the sub-folders of its layout; CompareError naming the layouts."""
    if not os.path.isdir(folder):
        raise CompareError(f"--benchmark {folder} is not a folder")
    for layout, *kinds, protocol, categories in LAYOUTS:
        found = [next((os.path.join(folder, name) for name in names if os.path.isdir(os.path.join(folder, name))),
                      None) for names in kinds]
        if all(found):
            file = os.path.join(folder, categories) if categories else None
            return Benchmark(folder, layout, *found, protocol, file if file and os.path.isfile(file) else None)
    expected = "; ".join(f"{' + '.join('/ or '.join(names) + '/' for names in kinds)} ({layout})"
                         for layout, *kinds, _, _ in LAYOUTS)
    raise CompareError(f"--benchmark {folder}: no benchmark layout found; expected {expected}")


def model_choices(models: Sequence[Sequence[str]]) -> List[ModelChoice]:
    """A ModelChoice per --model (CONFIG CHECKPOINT, or a released model's NAME), named by the
    released name or the config's stem, a number added where two would share one; CompareError
    naming the --model that cannot be used."""
    choices, names = [], []
    for values in models:
        given = " ".join(values)
        if len(values) not in (1, 2):
            raise CompareError(f"--model {given}: give CONFIG CHECKPOINT or a released model's name")
        checkpoint = values[-1]
        config = values[0] if len(values) == 2 else None
        if config and not os.path.isfile(config):
            raise CompareError(f"--model {given}: config {config} is not a file")
        if not os.path.exists(checkpoint) and checkpoint not in RELEASED:
            raise CompareError(f"--model {given}: {checkpoint} is neither a file nor a released model's name "
                               "(python -m networks.models lists them)")
        try:
            config = config_for(checkpoint, config)
            load_config(config)
        except ConfigError as e:
            raise CompareError(f"--model {given}: {e}") from None
        name = checkpoint if len(values) == 1 else stem(os.path.basename(config))
        names.append(name)
        choices.append(ModelChoice(name, config, checkpoint))
    for index, choice in enumerate(choices):
        if names.count(choice.name) > 1:
            choices[index] = ModelChoice(f"{choice.name}-{names[:index + 1].count(choice.name)}", choice.config,
                                         choice.checkpoint)
    return choices


def memory_note(device: torch.device, reset: bool, world_size: int) -> str:
    """What the peak-memory figure is, for the table's header."""
    ranks = f", the largest of the {world_size} ranks" if world_size > 1 else ""
    if device.type == "cuda":
        return f"peak memory: torch.cuda.max_memory_allocated while the model predicted (its tensors){ranks}"
    since = ("reset before each model, to what the process held then" if reset else
             "since the process started, as it could not be reset: a later model's figure includes earlier ones'")
    return (f"peak memory: the whole process's peak resident memory on the CPU (VmHWM, {since}; Python, the "
            f"libraries, the model and the images included){ranks}")


def predict_one(network, recipe, sample: Dict, device: torch.device, precision: str, tta: str
                ) -> Tuple[np.ndarray, float]:
    """(the uint8 alpha as the recipe quantises it, seconds the prediction took)."""
    trimap = sample["trimap"] if recipe.takes_trimap else None
    height, width = sample["image"].shape[:2]
    with named_out_of_memory(sample["image_name"], width, height):
        start = time.perf_counter()
        _, alpha, _ = predict_views(network, recipe, sample["image"], trimap, device, precision, tta)
        return alpha, time.perf_counter() - start


def run_model(choice: ModelChoice, files: EvalList, indices: List[int], alpha_dir: str, protocol: str,
              device: torch.device, precision: str, tta: str, tally: Tally) -> Tuple[Dict, bool]:
    """This rank's share of one model's work: {"rows": [(index, name, metrics)], "problems",
    "seconds", "timed", "peak"} and whether the peak memory could be reset. CompareError when the
    model cannot be loaded."""
    try:
        network, family, spec = load_configured(choice.config, choice.checkpoint)
    except (ConfigError, CheckpointError, ValueError) as e:
        raise CompareError(f"--model {choice.config} {choice.checkpoint}: {e}") from None
    network.to(device)
    recipe = family.recipes(spec)[1]
    dataset = EvalDataset(files)
    os.makedirs(alpha_dir, exist_ok=True)
    share = {"family": family.name, "rows": [], "problems": [], "seconds": 0.0, "timed": 0}
    reset = reset_peak_memory(device)
    for index in progress(indices, len(indices), choice.name) if du.is_main_process() else indices:
        sample = dataset[index]
        name = sample["image_name"]
        if "error" in sample:
            share["problems"].append((index, f"{choice.name}: {sample['error']}"))
            continue
        try:
            alpha, seconds = predict_one(network, recipe, sample, device, precision, tta)
            pred_path = os.path.join(alpha_dir, stem(name) + ".png")
            write_image(pred_path, alpha)
        except (ImageSizeError, OutOfMemory, FloatingPointError, WriteError) as e:
            share["problems"].append((index, f"{choice.name}: {name}: {e}"))
            continue
        share["seconds"] += seconds
        share["timed"] += 1
        # Scored from the file written, as utils.evaluation.evaluate scores it.
        _, metrics, problem, _ = evaluate_one((name, pred_path, files.alpha[index], files.trimap[index]), protocol)
        if metrics is None:
            share["problems"].append((index, f"{choice.name}: {problem}"))
        else:
            share["rows"].append((index, name, metrics))
        tally.done += 1
    share["peak"] = peak_memory_bytes(device)
    del network
    return share, reset


def merge_shares(choice: ModelChoice, shares: List[Dict]) -> ModelResult:
    """Every rank's share of a model in the one-process order; times summed in that order too."""
    result = ModelResult(choice, shares[0]["family"])
    result.rows = [(name, metrics) for _, name, metrics in sorted(row for s in shares for row in s["rows"])]
    result.problems = [problem for _, problem in sorted(p for s in shares for p in s["problems"])]
    result.seconds = math.fsum(s["seconds"] for s in shares)
    result.timed = sum(s["timed"] for s in shares)
    result.peak_bytes = max(s["peak"] for s in shares)
    return result


def labels_of(names: List[str], benchmark: Benchmark, categories: Optional[str], prefix: Optional[str]
              ) -> Tuple[Dict[str, Dict[str, str]], Dict[str, Dict[str, str]]]:
    """(labels per image name, the table they come from) from --categories, --category-from-prefix
    or the benchmark's own file; ({}, {}) without. Raises CategoriesError."""
    if prefix:
        table = categories_from_prefix(names, prefix)
    elif categories or benchmark.categories:
        table = load_categories(categories or benchmark.categories)
    else:
        return {}, {}
    return assign_labels(names, table)[0], table


def group_table(results: List[ModelResult], labels: Dict[str, Dict[str, str]], table: Dict[str, Dict[str, str]]
                ) -> Dict[str, Dict[str, Dict[str, Dict]]]:
    """{field: {group: {model: {"sad": mean, "images": count}}}}: each model's mean SAD per type and
    category, as utils.evaluation.evaluate reports it."""
    groups: Dict[str, Dict[str, Dict[str, Dict]]] = {}
    for label_field in FIELDS:
        order = list(dict.fromkeys(labels_[label_field] for labels_ in table.values() if label_field in labels_))
        if not order:
            continue
        for result in results:
            sads = {name: metrics["sad"] for name, metrics in result.rows}
            for group, mean, count in group_means(sads, labels, label_field, order):
                groups.setdefault(label_field, {}).setdefault(group, {})[result.choice.name] = \
                    {"sad": mean, "images": count}
    return groups


def finite_or_none(value: float) -> Optional[float]:
    return value if math.isfinite(value) else None


def table_json(benchmark: Benchmark, protocol: str, results: List[ModelResult], groups: Dict, notes: List[str]
               ) -> Dict:
    models = []
    for result in results:
        means, counts = mean_metrics([metrics for _, metrics in result.rows])
        models.append({"name": result.choice.name, "config": result.choice.config,
                       "checkpoint": result.choice.checkpoint, "family": result.family, "images": len(result.rows),
                       "means": {key: finite_or_none(value) for key, value in means.items()}, "counts": counts,
                       "seconds_per_image": finite_or_none(result.seconds_per_image),
                       "peak_memory_bytes": result.peak_bytes, "problems": result.problems})
    images: Dict[str, Dict[str, Dict]] = {}
    for result in results:
        for name, metrics in result.rows:
            images.setdefault(name, {})[result.choice.name] = {k: finite_or_none(v) for k, v in metrics.items()}
    return {"benchmark": benchmark.folder, "layout": benchmark.layout, "protocol": protocol, "notes": notes,
            "columns": list(PROTOCOLS[protocol].columns), "models": models, "groups": groups, "images": images}


def cell(key: str, value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.{DECIMALS[key]}f}"


def table_markdown(data: Dict) -> str:
    columns = data["columns"]
    lines = [f"# {data['layout']}: {data['benchmark']}", ""] + [f"- {note}" for note in data["notes"]] + [""]
    header = ["model", "family", "images"] + [LABELS[key] for key in columns] + ["s / image", "peak memory"]
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for model in data["models"]:
        seconds = model["seconds_per_image"]
        cells = [model["name"], model["family"], str(model["images"])]
        cells += [cell(key, model["means"].get(key)) for key in columns]
        cells += ["-" if seconds is None else f"{seconds:.3f}", format_bytes(model["peak_memory_bytes"])]
        lines.append("| " + " | ".join(cells) + " |")
    names = [model["name"] for model in data["models"]]
    for label_field, groups in data["groups"].items():
        lines += ["", f"## Mean SAD per {label_field}", "",
                  f"| {label_field} | " + " | ".join(f"{name} (images)" for name in names) + " |",
                  "|" + " --- |" * (len(names) + 1)]
        for group, per_model in groups.items():
            lines.append(f"| {group} | " + " | ".join(
                f"{cell('sad', per_model[name]['sad'])} ({per_model[name]['images']})" if name in per_model else "-"
                for name in names) + " |")
    return "\n".join(lines) + "\n"


def write_table_csv(path: str, data: Dict) -> None:
    """A row per model over all its images (group `all`), then one per model and type or category
    (the mean SAD alone); figures raw, an undefined one an empty cell."""
    columns = data["columns"]
    with atomic_file(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "family", "field", "group", "images"] + columns
                        + ["seconds_per_image", "peak_memory_bytes"])
        for model in data["models"]:
            writer.writerow([model["name"], model["family"], "", "all", model["images"]]
                            + ["" if model["means"].get(key) is None else repr(model["means"][key]) for key in columns]
                            + ["" if model["seconds_per_image"] is None else repr(model["seconds_per_image"]),
                               model["peak_memory_bytes"]])
        families = {model["name"]: model["family"] for model in data["models"]}
        for label_field, groups in data["groups"].items():
            for group, per_model in groups.items():
                for name, figures in per_model.items():
                    writer.writerow([name, families[name], label_field, group, figures["images"], repr(figures["sad"])]
                                    + [""] * (len(columns) + 1))


def disagreement(predictions: List[np.ndarray]) -> float:
    """The SAD, in thousands, between the models' most distant predictions at each pixel (the
    largest alpha minus the smallest), over the whole image."""
    stack = np.stack([p.astype(np.float64) / 255 for p in predictions])
    return float((stack.max(0) - stack.min(0)).sum() / 1000)


def write_disagreement_gallery(folder: str, results: List[ModelResult], files: EvalList, alpha_dirs: Dict[str, str],
                               worst: int, protocol: str) -> None:
    """OUTPUT/gallery: the `worst` images every model predicted with the largest disagreement, a
    picture each (image | trimap | ground truth | each model's alpha), and index.html with every
    such image's disagreement and each model's SAD. Raises OSError."""
    metrics = {result.choice.name: dict(result.rows) for result in results}
    paths = {os.path.basename(merged): (merged, alpha, trimap)
             for merged, alpha, trimap in zip(files.merged, files.alpha, files.trimap)}
    common = [name for name, _ in results[0].rows if all(name in per_model for per_model in metrics.values())]
    entries = []
    for name in common:
        alphas = [read_first_channel(os.path.join(alpha_dirs[model], stem(name) + ".png")) for model in metrics]
        figures = {"disagreement": disagreement(alphas)}
        figures.update({f"sad {model}": per_model[name]["sad"] for model, per_model in metrics.items()})
        entries.append((name, figures, alphas))
    entries.sort(key=lambda entry: -entry[1]["disagreement"])
    os.makedirs(folder, exist_ok=True)
    remove_old_pictures(folder)
    columns = [("disagreement", "disagreement", 2)] + [(f"sad {model}", f"SAD {model}", 2) for model in metrics]
    rows = []
    for rank, (name, figures, alphas) in enumerate(entries, 1):
        picture = None
        if rank <= worst:
            merged, alpha, trimap = paths[name]
            panels = [("image", read_image(merged)), ("trimap", read_first_channel(trimap)),
                      ("ground truth", read_first_channel(alpha))] + list(zip(metrics, alphas))
            text = [f"disagreement {figures['disagreement']:.2f}"] + [
                format_figure("sad", figures[f"sad {model}"], f"{model} SAD") for model in metrics]
            picture = picture_name(rank, name)
            write_image(os.path.join(folder, picture), gallery_picture(name, text, panels))
        rows.append((name, picture, {}, figures))
    notes = [units_line(protocol), f"{len(entries)} images every model predicted, the largest disagreement first: "
             "the SAD (in thousands) between the models' most distant alphas at each pixel, over the whole image; "
             f"the {worst} largest have a picture (the name links to it). Click a column's header to sort by it."]
    with atomic_file(os.path.join(folder, "index.html"), "w", encoding="utf-8") as f:
        f.write(index_html(f"Where {', '.join(metrics)} disagree", notes, columns, rows, []))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", nargs="+", required=True, metavar="CONFIG CHECKPOINT | NAME",
                        help="a model: its config and checkpoint, or a released model's name; give two or more")
    parser.add_argument("--benchmark", required=True,
                        help="a Composition-1K, AIM-500 or images/ + alphas/ + trimaps/ folder")
    parser.add_argument("--output", required=True, help="folder for table.md, table.csv, table.json, alphas/, "
                                                        "gallery/")
    parser.add_argument("--protocol", choices=tuple(PROTOCOLS),
                        help="the metrics (utils.evaluation.evaluate's); default: aim500 for an AIM-500 folder, "
                             "else comp1k")
    groups = parser.add_mutually_exclusive_group()
    groups.add_argument("--categories", metavar="FILE", help="per-type and per-category mean SAD from this file "
                                                             "(utils.evaluation.evaluate's --categories)")
    groups.add_argument("--category-from-prefix", metavar="SEP",
                        help="per-category mean SAD, the category being the name up to its last SEP")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--precision", default="fp32", choices=tuple(PRECISIONS))
    parser.add_argument("--tta", default="none", choices=TTA_MODES, help="test-time augmentation (demo.py's --tta)")
    parser.add_argument("--worst", type=int, default=WORST_DEFAULT, metavar="K",
                        help=f"pictures in the gallery (default {WORST_DEFAULT})")
    return parser.parse_args(argv)


@dataclass
class Plan:
    benchmark: Benchmark
    models: List[ModelChoice]
    files: EvalList  # the benchmark's usable images
    problems: List[str]  # the others'
    labels: Dict[str, Dict[str, str]]  # type and category per image name, {} without categories
    table: Dict[str, Dict[str, str]]  # the categories they come from
    device: torch.device


def checked_arguments(args: argparse.Namespace, dist_info: du.DistInfo) -> Plan:
    """What to run; CompareError naming the first argument that cannot be used."""
    benchmark = find_benchmark(args.benchmark)
    if len(args.model) < 2:
        raise CompareError("give two or more --model to compare")
    choices = model_choices(args.model)
    if args.worst < 0:
        raise CompareError(f"--worst {args.worst}: give 0 or more")
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise CompareError(f"--output {args.output} is a file; give a folder")
    why = folder_problem(os.path.join(args.output, "gallery"))
    if why:
        raise CompareError(f"{os.path.join(args.output, 'gallery')}: {why}")
    if args.categories and not os.path.isfile(args.categories):
        raise CompareError(f"--categories {args.categories} is not a file")
    try:
        files, problems = usable_eval_files(eval_list(benchmark.images, benchmark.alphas, benchmark.trimaps,
                                                      ("images", "alphas", "trimaps")))
    except DataListError as e:
        raise CompareError(f"--benchmark {args.benchmark}: {e}") from None
    if not files.merged:
        raise CompareError(f"--benchmark {args.benchmark}: no usable image in {benchmark.images}")
    try:
        labels, table = labels_of([os.path.basename(m) for m in files.merged], benchmark, args.categories,
                                  args.category_from_prefix)
        device = pick_device(args.device)
        if dist_info.distributed and device.type == "cuda":
            device = dist_info.device  # this rank's GPU
        args.precision = runnable_precision(args.precision, device)
    except (CategoriesError, ValueError) as e:
        raise CompareError(str(e)) from None
    return Plan(benchmark, choices, files, problems, labels, table, device)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    tally = Tally(folder=os.path.join(args.output, "alphas"))
    return run_until_stopped(partial(run, args, tally),
                             lambda: tally.stopped_line("predictions written to", f"no table written; {AGAIN}"))


def run(args: argparse.Namespace, tally: Tally) -> int:
    """The command's work on this rank; the exit code."""
    dist_info = du.init_distributed()
    try:
        plan = checked_arguments(args, dist_info)
        protocol = args.protocol or plan.benchmark.protocol
        indices = du.shard_of(range(len(plan.files.merged)), dist_info.rank, dist_info.world_size)
        tally.total = len(indices) * len(plan.models)
        alpha_dirs = {choice.name: os.path.join(args.output, "alphas", choice.name) for choice in plan.models}
        results, resets = [], []
        for choice in plan.models:
            share, reset = run_model(choice, plan.files, indices, alpha_dirs[choice.name], protocol, plan.device,
                                     args.precision, args.tta, tally)
            results.append(merge_shares(choice, du.all_gather_objects(share)))
            resets.append(reset)
    except CompareError as e:
        if dist_info.rank == 0:
            print(f"error: {e}", file=sys.stderr)
        du.cleanup()
        return 2
    code = 0
    if dist_info.rank == 0:
        memory = memory_note(plan.device, all(resets), dist_info.world_size)
        code = write_outputs(args, plan, protocol, results, alpha_dirs, memory)
    du.cleanup()
    return code


def write_outputs(args: argparse.Namespace, plan: Plan, protocol: str, results: List[ModelResult],
                  alpha_dirs: Dict[str, str], memory: str) -> int:
    """Rank 0's part: the three tables, the gallery and the problems; the exit code."""
    problems = plan.problems + [problem for result in results for problem in result.problems]
    notes = [units_line(protocol), TIMING, memory]
    data = table_json(plan.benchmark, protocol, results, group_table(results, plan.labels, plan.table), notes)
    markdown = table_markdown(data)
    print(markdown, end="")
    code = 0
    try:
        with atomic_file(os.path.join(args.output, "table.md"), "w", encoding="utf-8") as f:
            f.write(markdown)
        write_table_csv(os.path.join(args.output, "table.csv"), data)
        with atomic_file(os.path.join(args.output, "table.json"), "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
        print(f"tables: {os.path.join(args.output, 'table.md')}, table.csv, table.json")
        write_disagreement_gallery(os.path.join(args.output, "gallery"), results, plan.files, alpha_dirs, args.worst,
                                   protocol)
        print(f"gallery: {os.path.join(args.output, 'gallery', 'index.html')}")
    except (OSError, ImageReadError) as e:
        print(f"error: {e}", file=sys.stderr)
        code = 1
    if problems:
        print(f"{len(problems)} problem(s) (an image that failed is in none of its model's means):", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
    return 1 if problems else code


if __name__ == "__main__":
    reuse_freed_memory()
    sys.exit(main())
