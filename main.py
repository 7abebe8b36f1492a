"""Train the config's model, or evaluate a checkpoint on the config's test set.

python main.py --config CONFIG.toml                        # one process
torchrun --nproc_per_node=4 main.py --config CONFIG.toml     # one process per GPU
python -m torch.distributed.launch --nproc_per_node=4 main.py --config=CONFIG.toml
python main.py --config CONFIG.toml --phase test
torchrun --nproc_per_node=4 main.py --config CONFIG.toml --phase test   # the test set split, same figures
python main.py --config config/quickstart.toml --resume latest_model   # continue a stopped run

The config's model family (model.family) says what is trained and how: its network, and its
training recipe (networks.training.TrainingRecipe: sample encoding, data pipeline, losses,
optimizer, learning-rate schedule, backbone initialisation); this script and trainer.py run any
family through that recipe.

A run never replaces another run's checkpoints: training into a log.checkpoint_path/<version>
that holds latest_model.pth or best_model.pth is refused unless it resumes from there or
--overwrite is given.
"""
import argparse
import logging
import os
import signal
import sys
import time
from typing import List, Optional, Tuple

import numpy as np
import torch

from dataloader.datasets import DataSettings, EvalDataset, usable_eval_files
from dataloader.file_lists import DataListError, EvalList, TrainFolders, eval_list
from dataloader.loader import eval_loader, train_loader
from networks.families import (RELEASED, build_network, family_of, init_from_checkpoint, load_checkpoint, load_config,
                               model_spec)
from networks.training import TrainingRecipe
from trainer import Trainer, TrainingError, checkpoint_file, earlier_run_problem
from utils import distributed as du
from utils.allocator import reuse_freed_memory
from utils.checkpoint import CheckpointError
from utils.config import ConfigError, ModelSpec, format_config
from utils.evaluation.categories import (CategoriesError, assign_labels, categories_from_prefix, group_report,
                                         load_categories)
from utils.evaluation.evaluate import PROTOCOLS, coverage_note, format_metrics, mean_metrics, units_line
from utils.io.images import write_image
from utils.io.shards import gathered_rows, share_cores
from utils.inference.predict import check_tta, evaluate_sample, runnable_precision
from utils.memory import OutOfMemory, named_out_of_memory, set_memory_cap
from utils.progress import progress
from utils.recipe import ImageSizeError
from utils.signals import StopRequest, exit_code

logger = logging.getLogger("matting")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--phase", choices=("train", "test"), default="train")
    parser.add_argument("--resume", metavar="CHECKPOINT",
                        help="continue training from this checkpoint: a name in the run's checkpoint folder "
                             "(latest_model, best_model) or a path; overrides train.resume_checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="train even where the run's checkpoint folder holds an earlier run's "
                             "latest_model.pth / best_model.pth, replacing them")
    parser.add_argument("--local_rank", "--local-rank", dest="local_rank", type=int, default=None,
                        help="set by torch.distributed.launch; torchrun sets LOCAL_RANK instead")
    return parser.parse_args(argv)


def apply_run_flags(config, args: argparse.Namespace) -> None:
    """--resume into the config; ConfigError for training flags given to the test phase."""
    if args.phase == "test" and (args.resume or args.overwrite):
        raise ConfigError(f"{'--resume' if args.resume else '--overwrite'} goes with training, not --phase test; "
                          "the test phase reads test.checkpoint")
    if args.resume:
        config.train.resume_checkpoint = args.resume


def refused_by_earlier_run(config, overwrite: bool, device: torch.device) -> bool:
    """Whether training must not start because its checkpoint folder holds another run's
    checkpoints (named on stderr); rank 0 decides for every rank, before anything is written."""
    if overwrite:
        return False
    problem = (earlier_run_problem(config.log.checkpoint_path, config.train.resume_checkpoint)
               if du.is_main_process() else "")
    refused = du.main_process_decides(bool(problem), device)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
    return refused


def setup_logging(config, main_process: bool) -> None:
    """Log to stdout and, on the main process, to log.logging_path/<time>.log."""
    logger.handlers.clear()
    logger.setLevel(getattr(logging, str(config.log.logging_level).upper(), logging.INFO) if main_process
                    else logging.WARNING)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    stream = logging.StreamHandler(sys.stdout)
    stream.setFormatter(formatter)
    logger.addHandler(stream)  # first, so that a log folder that cannot be made is reported
    handlers = [stream]
    if main_process:
        try:
            os.makedirs(config.log.logging_path, exist_ok=True)
            file_handler = logging.FileHandler(os.path.join(config.log.logging_path,
                                                            time.strftime("%Y-%m-%d-%H-%M-%S") + ".log"))
        except OSError as e:
            raise ConfigError(f"log.logging_path: cannot write a log in {config.log.logging_path} "
                              f"({e.strerror or e}); set it to a folder you can write to") from None
        file_handler.setFormatter(formatter)
        logger.addHandler(file_handler)
        handlers.append(file_handler)
    for name in ("dataloader.datasets", "dataloader.file_lists"):
        logging.getLogger(name).handlers = handlers
        logging.getLogger(name).setLevel(logging.WARNING)


def checked_eval_list(merged: str, alpha: str, trimap: str, keys) -> Tuple[EvalList, int]:
    """The test set's files, checked at start-up as the training files are: images whose files
    cannot be read or differ in size are named in the log and left out; and how many were."""
    files, problems = usable_eval_files(eval_list(merged, alpha, trimap, keys))
    for problem in problems:
        logger.warning("test image left out: %s", problem)
    if problems:
        logger.warning("%d of %d test images left out (named above); the means are over the other %d",
                       len(problems), len(problems) + len(files.merged), len(files.merged))
    return files, len(problems)


def initial_weights(config, model, spec: ModelSpec, recipe: TrainingRecipe) -> None:
    """Where training starts from, unless it resumes: train.init_checkpoint (fine-tuning), else
    the family's ImageNet backbone (model.imagenet_pretrain), else the initialisation."""
    if config.train.resume_checkpoint:
        if config.train.init_checkpoint:
            logger.info("train.init_checkpoint is not used: the run resumes from train.resume_checkpoint = %r",
                        config.train.resume_checkpoint)
        return
    if config.train.init_checkpoint:
        try:
            loaded = init_from_checkpoint(model, spec, config.train.init_checkpoint)
        except CheckpointError as e:
            raise CheckpointError(f"train.init_checkpoint: {e}") from None
        logger.info("weights from train.init_checkpoint = %s; training starts at step 1 with a fresh optimizer "
                    "and learning-rate schedule", loaded)
    elif config.model.imagenet_pretrain:
        if isinstance(recipe.imagenet_backbone, str):
            raise ConfigError(f"model.imagenet_pretrain: {recipe.imagenet_backbone}; set model.imagenet_pretrain "
                              "= false")
        left = recipe.imagenet_backbone(model, config.model.imagenet_pretrain_path or "", spec)
        logger.info("ImageNet backbone loaded from %s (%d backbone tensors keep their init)",
                    config.model.imagenet_pretrain_path, len(left))


def run_training(config, dist_info: du.DistInfo, stop: StopRequest) -> int:
    """Trains; returns 0 when the run is finished, 128 + the signal number when a signal
    stopped it (latest_model.pth saved)."""
    spec = model_spec(config)
    family = family_of(spec)
    if isinstance(family.training, str):
        raise ConfigError(f"{config.model.family!r} (model.family): {family.training}")
    recipe = family.training
    torch.manual_seed(config.train.seed)
    model = build_network(spec)
    initial_weights(config, model, spec, recipe)
    data = config.data
    settings = DataSettings(data.crop_size, data.augmentation, data.random_interp, data.pipeline, data.decode_cache,
                            data.own_background_prob, config.train.seed, dist_info.rank,
                            TrainFolders(data.train_fg, data.train_alpha, data.train_bg, data.train_merged))
    dataset = recipe.dataset(settings, spec)
    loader = train_loader(dataset, config.model.batch_size, data.workers, config.train.seed, dist_info.rank,
                          dist_info.world_size, pin_memory=dist_info.device.type == "cuda")
    validation = None
    if data.test_merged:
        eval_files, _ = checked_eval_list(data.test_merged, data.test_alpha, data.test_trimap,
                                       ("data.test_merged", "data.test_alpha", "data.test_trimap"))
        validation = eval_loader(EvalDataset(eval_files), dist_info.rank, dist_info.world_size)
    else:
        logger.warning("data.test_merged is not set: no validation, and no best_model.pth")
    writer = None
    if du.is_main_process():
        from tensorboardX import SummaryWriter
        writer = SummaryWriter(config.log.tensorboard_path)
    logger.info("%s, %d validation images, %d process(es) on %s", dataset.summary(),
                len(validation.dataset) if validation else 0, dist_info.world_size, dist_info.device)
    trainer = Trainer(config, model, loader, validation, dist_info, writer, stop)
    trainer.remove_interrupted_saves()
    if config.train.resume_checkpoint:
        trainer.restore(config.train.resume_checkpoint)
    try:
        signum = trainer.train()
        # Rank 0 may still be writing the last checkpoint: a rank that tears its process group
        # down while a peer is busy can abort at exit (gloo: "terminate called without an
        # active exception"), failing the whole job after a finished run.
        du.barrier()
    finally:
        if writer is not None:
            writer.close()
    return exit_code(signum) if signum else 0


def test_categories(config) -> dict:
    """stem -> labels from test.categories (a file), {} when it is empty. Raises ConfigError."""
    if not config.test.categories:
        return {}
    try:
        return load_categories(config.test.categories)
    except CategoriesError as e:
        raise ConfigError(f"test.categories: {e}") from None


def report_categories(config, sads: dict, table: dict) -> None:
    """Mean SAD per type and category (test.categories or test.category_from_prefix), with the
    images that have no labels named in the log."""
    if config.test.category_from_prefix:
        table = categories_from_prefix(sads, config.test.category_from_prefix)
    if not table or not sads:
        return
    labels, missing, unused = assign_labels(list(sads), table)
    if missing:
        logger.warning("%d test image(s) without a category, counted as uncategorised: %s", len(missing),
                       ", ".join(missing))
    if unused:
        logger.warning("test.categories names %d image(s) not in the test set: %s", len(unused), ", ".join(unused))
    for line in group_report(sads, labels, table):
        print(line)


def test_checkpoint(config) -> str:
    """test.checkpoint: the file of the run's checkpoint folder it names (best_model, a path), or
    where there is none, the released model of that name (fetched when needed by load_checkpoint)."""
    run_file = checkpoint_file(config.log.checkpoint_path, config.test.checkpoint)
    if not os.path.exists(run_file) and config.test.checkpoint in RELEASED:
        return config.test.checkpoint
    return run_file


def checked_test_settings(config) -> None:
    """test.tta and test.max_memory (which it sets); ConfigError naming the key otherwise."""
    try:
        check_tta(config.test.tta)
    except ValueError as e:
        raise ConfigError(f"test.tta: {e}") from None
    try:
        set_memory_cap(config.test.max_memory, "test.max_memory")
    except ValueError as e:
        raise ConfigError(str(e)) from None


def test_output_folder(config) -> Optional[str]:
    """test.alpha_path, made where missing, or None where the predictions are not kept."""
    out_dir = config.test.alpha_path
    if out_dir:
        try:
            os.makedirs(out_dir, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"test.alpha_path: {out_dir} cannot be created ({e.strerror or e}); "
                              "set test.alpha_path to a folder you can write to") from None
    return out_dir


def score_share(config, model, recipe, dataset: EvalDataset, dist_info: du.DistInfo, precision: str,
                out_dir: Optional[str]) -> Tuple[list, List[str]]:
    """This rank's share of the test set predicted (and written to `out_dir`) and scored: the rows
    (index in the test set, name, figures) and the messages of the images left out or not saved."""
    protocol = PROTOCOLS[config.test.protocol]
    rows, left_out = [], []
    main_process = du.is_main_process()

    def leave_out(message: str) -> None:
        left_out.append(message)
        if main_process:  # the other ranks' are logged by rank 0 at the end, in its log file too
            logger.warning("%s", message)

    loader = eval_loader(dataset, dist_info.rank, dist_info.world_size)
    indices = du.shard_of(range(len(dataset)), dist_info.rank, dist_info.world_size)
    with torch.no_grad():
        for index, batch in zip(indices, progress(loader, len(loader), desc="test") if main_process else loader):
            name = batch["image_name"]
            if "error" in batch:
                leave_out(f"left out of the means: {batch['error']}")
                continue
            height, width = batch["image"].shape[:2]
            try:
                with named_out_of_memory(name, width, height):
                    alpha, pred, target = evaluate_sample(model, recipe, batch, dist_info.device, precision,
                                                          config.test.tta)
            except ImageSizeError as e:
                leave_out(f"left out of the means: {name}: {e}")
                continue
            except OutOfMemory as e:
                leave_out(f"left out of the means: {e}")
                continue
            if out_dir:
                try:
                    write_image(os.path.join(out_dir, os.path.splitext(name)[0] + ".png"), pred)
                except OSError as e:
                    leave_out(f"prediction not saved (its figures still count): {e}")
            scored = alpha * 255 if recipe.score_float else pred
            metrics = protocol.metrics(scored, target, batch["trimap"].astype(np.uint8), fast=config.test.fast_eval)
            rows.append((index, name, metrics))
    return rows, left_out


def report_test(config, rows: list, other_ranks_problems: List[List[str]], table, out_dir: Optional[str]) -> None:
    """Rank 0's report of every rank's rows, in the one-process order: the other ranks' problems
    and each image's figures in the log, the means and the category tables printed."""
    protocol = PROTOCOLS[config.test.protocol]
    for message in (message for others in other_ranks_problems for message in others):
        logger.warning("%s", message)
    for _, name, metrics in rows:
        logger.info("%s: %s", name, format_metrics(metrics, protocol.columns))
    means, counts = mean_metrics([metrics for _, _, metrics in rows])
    print(units_line(config.test.protocol))
    print(f"{config.version} on {len(rows)} images{coverage_note(counts, len(rows))}: "
          f"{format_metrics(means, protocol.columns)}")
    report_categories(config, {name: metrics["sad"] for _, name, metrics in rows}, table)
    if out_dir:
        print(f"predictions written to {out_dir}")


def run_test(config, dist_info: du.DistInfo) -> int:
    """Predicts and scores the test set, each rank its share (torchrun), rank 0 reporting the
    figures of all in the one-process order (utils.io.shards.gathered_rows), so that they are the
    same to the bit; 1 when an image could not be read, predicted (out of memory) or written
    (named in the log, left out of the means or kept in them), else 0."""
    checked_test_settings(config)
    table = test_categories(config)
    spec = model_spec(config)
    model = build_network(spec)
    load_checkpoint(model, spec, test_checkpoint(config))
    precision = runnable_precision(config.test.precision, dist_info.device)
    model.to(dist_info.device).eval()
    recipe = family_of(spec).recipes(spec)[1]
    files, problems = checked_eval_list(config.test.merged, config.test.alpha, config.test.trimap,
                                        ("test.merged", "test.alpha", "test.trimap"))
    out_dir = test_output_folder(config)
    rows, left_out = score_share(config, model, recipe, EvalDataset(files), dist_info, precision, out_dir)
    rows, rank_problems = gathered_rows(rows, left_out)
    problems += sum(map(len, rank_problems))
    if du.is_main_process():
        report_test(config, rows, rank_problems[1:], table, out_dir)
        if problems:
            print(f"{problems} test image(s) left out or not saved: named in the log", file=sys.stderr)
    return 1 if problems else 0


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config)
        apply_run_flags(config, args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    config.phase = args.phase
    dist_info = du.init_distributed(args.local_rank)
    # From here on a SIGINT / SIGTERM is a request to save and stop (before: the default
    # behaviour, so that a stuck rendezvous can still be interrupted).
    stop = StopRequest().install() if args.phase == "train" else None
    try:
        if args.phase == "train" and refused_by_earlier_run(config, args.overwrite, dist_info.device):
            return 2
        setup_logging(config, du.is_main_process())
        if du.is_main_process():
            logger.info("resolved config:\n%s", format_config(config))
        if args.phase == "train":
            return run_training(config, dist_info, stop)
        share_cores(dist_info)
        return run_test(config, dist_info)
    except (ConfigError, DataListError, CheckpointError, TrainingError, ValueError, OSError) as e:
        # OSError: an unreadable file or a failed write (utils.atomic.WriteError), path named
        logger.error("%s", e)
        return 2
    except KeyboardInterrupt:
        logger.error("interrupted")
        return exit_code(signal.SIGINT)
    finally:
        if stop is not None:
            stop.uninstall()
        du.cleanup()


if __name__ == "__main__":
    reuse_freed_memory()
    sys.exit(main())
