"""Benchmark the training data pipeline of a config.

python -m dataloader.benchmark --config CFG --num-samples N [--workers W]
                               [--save-samples DIR] [--data DIR] [--compare]

Builds the training dataset from the config (`--data DIR` reads DIR/train/{fg,alpha,bg}
instead, e.g. a toy set from `python -m dataloader.toy`) and prints `samples/s: X` as its last
line. With `--compare` it first times, in this one process and on the same samples, the plain
full-resolution reference of the transforms (reading every file, as the published code does)
and the fast pipeline without and with the decode cache, and prints the ratios.
`--save-samples DIR` writes a grid of image / trimap / alpha for a person to look at.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
from functools import partial
from typing import Callable, List, Optional, Tuple

import cv2
import numpy as np
import torch

from dataloader.datasets import TrainDataset
from dataloader.file_lists import DataListError, training_list
from dataloader.loader import train_loader
from networks.families import family_of, load_config, model_spec
from networks.training import TrainingRecipe
from utils.config import ConfigError, ModelSpec
from utils.io.images import write_image


def samples_per_second(dataset: TrainDataset, num_samples: int) -> float:
    """In this process, one thread: the per-process rate a loader worker gets."""
    start = time.perf_counter()
    for index in range(num_samples):
        dataset.make_sample(0, index % len(dataset))
    return num_samples / (time.perf_counter() - start)


def loader_samples_per_second(dataset: TrainDataset, num_samples: int, workers: int, seed: int) -> float:
    loader = train_loader(dataset, batch_size=1, workers=workers, seed=seed)
    loader.sampler.set_position(0)
    iterator = iter(loader)
    next(iterator)  # worker start-up is not pipeline throughput
    start = time.perf_counter()
    for _ in range(num_samples):
        try:
            next(iterator)
        except StopIteration:
            loader.sampler.set_position(loader.sampler.epoch + 1)
            iterator = iter(loader)
    return num_samples / (time.perf_counter() - start)


def save_grid(dataset: TrainDataset, recipe: TrainingRecipe, folder: str, count: int = 8) -> str:
    """Image, trimap and alpha of the first samples, as the family's recipe shows them."""
    rows = []
    for index in range(min(count, len(dataset))):
        sample = dataset[(0, index)]
        shown_image, shown_trimap = recipe.shown_inputs({key: sample[key][None] for key in ("image", "trimap")})
        image = shown_image.permute(1, 2, 0).numpy()[:, :, ::-1]
        trimap = (shown_trimap[0].numpy() * 255).astype(np.uint8)
        alpha = (sample["alpha"][0].numpy() * 255).astype(np.uint8)
        rows.append(np.hstack([(image * 255).astype(np.uint8), cv2.cvtColor(trimap, cv2.COLOR_GRAY2BGR),
                               cv2.cvtColor(alpha, cv2.COLOR_GRAY2BGR)]))
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "samples.png")
    write_image(path, np.vstack(rows))
    return path


def recipe_of(config, path: str) -> Tuple[TrainingRecipe, ModelSpec]:
    """The training recipe of the config's model family and its spec; ConfigError for a family
    that is not trained here."""
    spec = model_spec(config)
    family = family_of(spec)
    if isinstance(family.training, str):
        raise ConfigError(f"{path}: {family.title}: {family.training}")
    return family.training, spec


def compare_pipelines(dataset: Callable[[bool, Optional[str]], TrainDataset], files_count: int,
                      num_samples: int) -> None:
    """Prints the rates of the full-resolution reference and of the fast pipeline without and with
    the decode cache, on the same samples."""
    reference = samples_per_second(dataset(False, None), num_samples)
    fast = samples_per_second(dataset(True, None), num_samples)
    cache_dir = tempfile.mkdtemp(prefix="decode-cache-")
    try:
        cached = dataset(True, cache_dir)
        samples_per_second(cached, files_count)  # fills the cache, untimed
        fast_cached = samples_per_second(cached, num_samples)
    finally:
        shutil.rmtree(cache_dir)
    print(f"reference (full resolution, files decoded each time): {reference:.2f} samples/s")
    print(f"fast pipeline: {fast:.2f} samples/s ({fast / reference:.2f}x)")
    print(f"fast pipeline + decode cache: {fast_cached:.2f} samples/s ({fast_cached / reference:.2f}x)")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--num-samples", type=int, default=100)
    parser.add_argument("--workers", type=int, default=0, help="0: time the pipeline in this process")
    parser.add_argument("--save-samples", metavar="DIR")
    parser.add_argument("--data", metavar="DIR", help="use DIR/train/{fg,alpha,bg} instead of the config's folders")
    parser.add_argument("--compare", action="store_true", help="also time the full-resolution reference")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    try:
        config = load_config(args.config)
        recipe, spec = recipe_of(config, args.config)
        data = config.data
        folders = ([os.path.join(args.data, "train", k) for k in ("fg", "alpha", "bg")] if args.data
                   else [data.train_fg, data.train_alpha, data.train_bg])
        files = training_list(*folders)
    except (ConfigError, DataListError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    def dataset(fast: bool, cache: Optional[str]) -> TrainDataset:
        return TrainDataset(files, partial(recipe.train_tensors, spec=spec), data.crop_size,
                            data.augmentation, data.random_interp, data.pipeline, config.train.seed, decode_cache=cache,
                            fast=fast)

    print(f"{len(files.fg)} foregrounds, {len(files.bg)} backgrounds, crop {data.crop_size}, "
          f"pipeline {data.pipeline}, {args.num_samples} samples")
    if args.save_samples:
        grid = save_grid(dataset(True, data.decode_cache), recipe, args.save_samples)
        print(f"sample grid written to {grid}")
    if args.compare:
        compare_pipelines(dataset, len(files.fg), args.num_samples)
    if args.workers:
        rate = loader_samples_per_second(dataset(True, data.decode_cache), args.num_samples, args.workers,
                                         config.train.seed)
        print(f"DataLoader with {args.workers} workers")
    else:
        rate = samples_per_second(dataset(True, data.decode_cache), args.num_samples)
    print(f"samples/s: {rate:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
