"""The training loop, a hand-written DDP loop around the model family's training recipe.

The family's TrainingRecipe (networks.training) gives the losses, the optimizer and its parameter
groups, the learning rate of each step and the family's own TensorBoard pictures; the loop adds
adaptive gradient clipping, validation every `train.val_step` (SAD, MSE, and the L1 on the
unknown region), `latest_model.pth` every `log.checkpoint_step` and `best_model.pth` by
validation MSE, written atomically. A step is one optimizer step: with `train.accumulate = N` it
sums the gradients of N batches, and schedule, logging, validation and checkpoints all count such
steps. Parts named in `train.freeze` are kept in eval mode without gradients (utils.freeze). A
SIGINT / SIGTERM (utils.signals) saves `latest_model.pth` and stops, whatever the moment;
non-finite steps are skipped and counted; a run of them stops training.

Step numbers in messages count steps done (1-based, as the progress lines); a checkpoint's
`iter` is the 0-based index of its last step, as in the released files.
"""
import contextlib
import copy
import json
import logging
import math
import os
import time
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from dataloader.loader import Prefetcher
from networks.families import family_of, load_checkpoint, model_spec
from networks.training import unknown_l1
from utils import distributed as du
from utils.atomic import remove_temporary_files
from utils.checkpoint import save_checkpoint
from utils.config import lookup, set_key
from utils.freeze import FreezeError, freeze
from utils.inference.predict import autocast_for, evaluate_sample
from utils.recipe import ImageSizeError
from utils.evaluation.metrics import mse, sad
from utils.schedule import AdaptiveGradClip
from utils.signals import StopRequest, signal_name

logger = logging.getLogger("matting")
# train.amp -> the precision autocast runs in
AMP_PRECISIONS = {"off": "fp32", "bf16": "bf16", "fp16": "fp16"}
STOPPED = object()  # _next_batch: data loading broke while stopping


class TrainingError(RuntimeError):
    pass


def checkpoint_file(checkpoint_dir: str, name: str) -> str:
    """A path as given, or `<checkpoint_dir>/<name>.pth` for a bare name like "latest_model"
    (`<checkpoint_dir>/<name>` for a name ending in .pth or .ckpt, as some released files end)."""
    if os.path.isfile(name):
        return name
    return os.path.join(checkpoint_dir, name if name.endswith((".pth", ".ckpt")) else f"{name}.pth")


RUN_CHECKPOINTS = ("latest_model.pth", "best_model.pth")
RESUME_HINT = "--resume latest_model (or train.resume_checkpoint = \"latest_model\" in the config)"


def earlier_run_problem(checkpoint_dir: str, resume_checkpoint: Optional[str]) -> str:
    """'' when training may write into checkpoint_dir, else why not: the folder holds another run's
    checkpoints and this run does not resume from that folder, so its saves would replace them."""
    found = [name for name in RUN_CHECKPOINTS if os.path.isfile(os.path.join(checkpoint_dir, name))]
    if not found:
        return ""
    if resume_checkpoint:
        resumed = checkpoint_file(checkpoint_dir, resume_checkpoint)
        if os.path.realpath(os.path.dirname(os.path.abspath(resumed))) == os.path.realpath(checkpoint_dir):
            return ""
    return (f"{checkpoint_dir} already holds {' and '.join(found)} of an earlier run, which this run would replace; "
            f"nothing was written. To continue that run, resume it: {RESUME_HINT}. To start a new run, give it "
            "another name (version in the config), or pass --overwrite to replace those checkpoints.")


class Trainer:
    """Trains `model`, the network of the config's model family, with the family's training
    recipe; validation runs the family's evaluation recipe."""

    def __init__(self, config, model: nn.Module, train_loader, eval_loader, dist_info: du.DistInfo,
                 writer=None, stop: Optional[StopRequest] = None):
        self.config, self.train_config = config, config.train
        self.spec = model_spec(config)
        family = family_of(self.spec)
        if isinstance(family.training, str):
            raise TrainingError(f"{family.title}: {family.training}")
        self.recipe, self.eval_recipe = family.training, family.recipes(self.spec)[1]
        self.dist, self.device = dist_info, dist_info.device
        if config.train.amp not in AMP_PRECISIONS:
            raise TrainingError(f"train.amp must be \"off\", \"bf16\" or \"fp16\", got {config.train.amp!r}")
        if config.train.amp == "fp16" and self.device.type != "cuda":
            raise TrainingError("train.amp = \"fp16\" needs a CUDA device; use \"bf16\" or \"off\" on the CPU")
        if dist_info.distributed and self.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(self.device)
        try:
            # Before DDP: it registers only the parameters that still require a gradient.
            self.frozen = freeze(self.model, config.train.freeze)
        except FreezeError as e:
            raise TrainingError(str(e)) from None
        self.net = (DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                                            else None) if dist_info.distributed else self.model)
        self.train_loader, self.eval_loader = train_loader, eval_loader
        self.accumulate = config.train.accumulate
        self.optimizer = self.recipe.optimizer(self.model, self.spec)
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]
        if self.frozen:
            logger.info("train.freeze: %s kept in eval mode without gradients; %d parameters are trained",
                        ", ".join(config.train.freeze), sum(p.numel() for p in self.params))
        if self.accumulate > 1:
            logger.info("train.accumulate = %d: one optimizer step per %d batches of %d on each process",
                        self.accumulate, self.accumulate, config.model.batch_size)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.train.amp == "fp16")
        self.clipper = AdaptiveGradClip(config.train.clip_grad)
        self.writer = writer
        self.start_step, self.restart_step = 0, None
        self.best_mse, self.last_mse = math.inf, None
        self.skipped_steps = self.replaced_samples = self.nonfinite_run = 0
        self.saved_latest_step: Optional[int] = None
        self.reported = set()
        self.stop = stop or StopRequest()
        self.tick = time.monotonic(), 0

    # ---- checkpoints -------------------------------------------------------------------
    def checkpoint_state(self, step: int) -> Dict:
        return {
            "iter": step, "loss": self.last_mse, "state_dict": self.model.state_dict(),
            "opt_state_dict": self.optimizer.state_dict(),
            "lr_state_dict": {"restart_step": self.restart_step},
            "best_mse": self.best_mse, "moving_max_grad": self.clipper.moving_max,
            "scaler": self.scaler.state_dict(), "skipped_steps": self.skipped_steps,
            "config": json.loads(json.dumps(self.config)),
        }

    def save(self, name: str, step: int) -> None:
        path = os.path.join(self.config.log.checkpoint_path, f"{name}.pth")
        du.save_on_master(save_checkpoint, self.checkpoint_state(step), path)
        if name == "latest_model":
            self.saved_latest_step = step
        if du.is_main_process():
            logger.info("saved %s after step %d", path, step + 1)

    def save_latest(self, step: int) -> None:
        """latest_model.pth after step `step` (0-based), unless it holds that step already or no
        step was done."""
        if step >= 0 and step != self.saved_latest_step:
            self.save("latest_model", step)

    def remove_interrupted_saves(self) -> None:
        """Temporary files of saves that a crash (or SIGKILL) cut short; whole checkpoints are
        never touched."""
        if du.is_main_process():
            for path in remove_temporary_files(self.config.log.checkpoint_path):
                logger.info("removed %s, left by a save that was cut short", path)

    def check_schedule(self, checkpoint: Dict, path: str) -> None:
        """Refuses a resume whose config would change the learning rates of the steps left from
        those of the schedule the checkpoint was trained on (the keys that shape it: train.total_step
        and the recipe's schedule_keys, as the checkpoint's config holds them)."""
        saved = checkpoint.get("config") or {}
        missing = object()
        changed = [key for key in ("train.total_step", *self.recipe.schedule_keys)
                   if lookup(saved, key, missing) not in (missing, lookup(self.config, key))]
        if not changed or self.train_config.reset_lr:
            return
        old_config = copy.deepcopy(self.config)
        for key in changed:
            set_key(old_config, key, lookup(saved, key))
        old_spec, old_total = model_spec(old_config), old_config.train.total_step
        first, total = int(checkpoint["iter"]) + 1, self.train_config.total_step
        restart = checkpoint["lr_state_dict"]["restart_step"]
        # The step whose rate moves most, over the steps left of either schedule.
        rates = ((step, self.recipe.learning_rate(old_spec, step, old_total, restart),
                  self.recipe.learning_rate(self.spec, step, total, restart))
                 for step in range(first, max(old_total, total)))
        step, before, after = max(rates, key=lambda r: abs(r[2] - r[1]), default=(first, 0.0, 0.0))
        if after == before:
            return
        settings = ", ".join(f"{key} = {lookup(saved, key)!r} (this config: {lookup(self.config, key)!r})"
                             for key in changed)
        raise TrainingError(
            f"{path} was trained with {settings}. Resuming with the new value would reshape the learning-rate "
            f"schedule (at step {step + 1} the rate would be {after:.4g} instead of {before:.4g}). Set it back "
            "to continue the run as it was, or set train.reset_lr = true to restart the cosine over the steps left.")

    def restore(self, name: str) -> None:
        path = checkpoint_file(self.config.log.checkpoint_path, name)
        checkpoint = load_checkpoint(self.model, self.spec, path)
        self.check_schedule(checkpoint, path)
        self.start_step = int(checkpoint["iter"]) + 1
        self.best_mse = checkpoint.get("best_mse", math.inf)
        self.skipped_steps = checkpoint.get("skipped_steps", 0)
        if self.train_config.reset_lr:
            self.restart_step = int(checkpoint["iter"])  # fresh optimizer, cosine restarted here
        else:
            self.optimizer.load_state_dict(checkpoint["opt_state_dict"])
            self.restart_step = checkpoint["lr_state_dict"]["restart_step"]
            self.clipper.moving_max = checkpoint.get("moving_max_grad")
            if "scaler" in checkpoint:
                self.scaler.load_state_dict(checkpoint["scaler"])
        if os.path.abspath(path) == os.path.abspath(os.path.join(self.config.log.checkpoint_path, "latest_model.pth")):
            self.saved_latest_step = int(checkpoint["iter"])
        logger.info("resumed from %s after step %d%s", path, self.start_step,
                    " with the learning rate schedule restarted" if self.train_config.reset_lr else "")

    # ---- one step ----------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        return self.recipe.learning_rate(self.spec, step, self.train_config.total_step, self.restart_step)

    def train_step(self, batches: Sequence[Dict[str, torch.Tensor]], step: int):
        """Optimizer step number `step` over the micro-batches `batches` (train.accumulate of them):
        each one's loss divided by their number, the gradients summed (DDP all-reduces on the last
        backward only), then one clipped step. Returns the losses averaged over the micro-batches,
        the gradient norm, whether it was finite, and the last micro-batch's alpha and info."""
        rate = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = rate * group.get("lr_scale", 1.0)
        self.net.train()
        for part in self.frozen:
            part.eval()
        self.optimizer.zero_grad(set_to_none=True)
        losses: Dict[str, torch.Tensor] = {}
        for index, batch in enumerate(batches):
            last = index == len(batches) - 1
            with contextlib.nullcontext() if last or self.net is self.model else self.net.no_sync():
                with autocast_for(AMP_PRECISIONS[self.train_config.amp], self.device):
                    alpha, info = self.net(batch["image"], batch["trimap"])
                micro = self.recipe.losses(self.model, alpha, info, batch, self.spec)
                self.scaler.scale(micro["total"] / len(batches)).backward()
            for name, value in micro.items():
                losses[name] = losses.get(name, 0) + value.detach() / len(batches)
        self.scaler.unscale_(self.optimizer)
        # Gradients are identical on every rank after DDP's all-reduce, so this decision is too.
        norm = self.clipper.clip(self.params)
        finite = math.isfinite(norm)
        if finite or self.scaler.is_enabled():
            self.scaler.step(self.optimizer)
        self.scaler.update()
        return losses, norm, finite, alpha, info

    # ---- logging -----------------------------------------------------------------------
    def log_scalars(self, step: int, losses, norm: float) -> None:
        if self.writer is None:
            return
        self.writer.add_scalar("Train/Loss", losses["total"].item(), step)
        for name, value in losses.items():
            if name != "total":
                self.writer.add_scalar(f"Train/Loss_{name.upper()}", value.item(), step)
        self.writer.add_scalar("Train/LearnRate", self.optimizer.param_groups[0]["lr"], step)
        self.writer.add_scalar("Train/Moving_Max_Grad", self.clipper.moving_max or 0.0, step)
        self.writer.add_scalar("Train/Max_Grad", norm, step)

    def log_images(self, step: int, batch, alpha: torch.Tensor, info) -> None:
        """The first sample's image, trimap, truth and prediction, and the family's own pictures."""
        if self.writer is None:
            return
        image, trimap = self.recipe.shown_inputs(batch)
        self.writer.add_image("image", image, step)
        self.writer.add_image("trimap", trimap, step)
        self.writer.add_image("alpha", batch["alpha"][0].float().cpu(), step)
        self.writer.add_image("pred_alpha", alpha[0].detach().float().cpu().clamp(0, 1), step)
        for name, picture in self.recipe.pictures(info).items():
            self.writer.add_image(name, picture, step)

    # ---- validation --------------------------------------------------------------------
    def validate(self, step: int) -> Optional[float]:
        """SAD / MSE on the test set, all ranks' shares together. Returns the mean MSE, or None
        without a result: no test set, no readable image, or a stop signal cut it short.
        Unreadable images are named in the log and left out of the means."""
        if self.eval_loader is None:
            return None
        self.model.eval()
        # sums of SAD, MSE, REC; images with an MSE, images, unreadable images, images the recipe
        # cannot take (too small for its resizing), interrupted
        totals = torch.zeros(8, dtype=torch.float64)
        with torch.no_grad():
            for batch in self.eval_loader:
                if self.stop.signum is not None:
                    totals[7] = 1
                    break
                if "error" in batch:
                    totals[5] += 1
                    self._report_once(batch["error"], "unreadable validation image, left out of the means: %s")
                    continue
                try:
                    totals[:5] += self._validation_figures(batch)
                except ImageSizeError as e:
                    totals[6] += 1
                    self._report_once(f"{batch['image_name']}: {e}", "validation image left out of the means: %s")
        return self._report_validation(step, du.all_reduce_sum(totals.to(self.device)).cpu().tolist())

    def _validation_figures(self, batch: dict) -> torch.Tensor:
        """One image's SAD, MSE (0 where undefined), REC, whether its MSE is defined, and 1."""
        alpha, pred8, target8 = evaluate_sample(self.model, self.eval_recipe, batch, self.device)
        unknown = self.eval_recipe.unknown(torch.from_numpy(batch["trimap"])).float()
        target = torch.from_numpy(batch["alpha"].astype(np.float32) / 255)
        rec = unknown_l1(torch.from_numpy(alpha), target, unknown)
        trimap = batch["trimap"].astype(np.uint8)
        image_mse = mse(pred8, target8, trimap)  # NaN without unknown pixels
        defined = not math.isnan(image_mse)
        return torch.tensor([sad(pred8, target8, trimap), image_mse if defined else 0.0, float(rec),
                             float(defined), 1.0], dtype=torch.float64)

    def _report_validation(self, step: int, totals: List[float]) -> Optional[float]:
        """Logs (rank 0) and records the means of all ranks' summed `totals`; the mean MSE or None."""
        sad_sum, mse_sum, rec_sum, with_mse, images, unreadable, unfit, interrupted = totals
        if interrupted:
            if du.is_main_process():
                logger.info("validation at step %d cut short by the stop signal: no result", step)
            return None
        left_out = (f", {int(unreadable)} unreadable left out" if unreadable else "") + \
            (f", {int(unfit)} too small for the recipe left out" if unfit else "")
        if not with_mse:
            if du.is_main_process():
                logger.warning("validation at step %d: no readable image with unknown pixels (%d images%s)",
                               step, int(images), left_out)
            return None
        mean_sad, mean_mse, mean_rec = sad_sum / images, mse_sum / with_mse, rec_sum / images
        self.last_mse = mean_mse
        if du.is_main_process():
            mse_note = f", MSE over the {int(with_mse)} with unknown pixels" if with_mse < images else ""
            logger.info("validation at step %d: SAD %.2f  MSE %.4f  REC %.4f  (%d image%s%s%s)", step, mean_sad,
                        mean_mse, mean_rec, int(images), "" if images == 1 else "s", mse_note, left_out)
            if self.writer is not None:
                for tag, value in (("Test/Loss", mean_rec), ("Test/Loss_MSE", mean_mse),
                                   ("Test/Loss_SAD", mean_sad), ("Test/Loss_REC", mean_rec)):
                    self.writer.add_scalar(tag, value, step)
        return mean_mse

    # ---- the loop ----------------------------------------------------------------------
    def _report_once(self, message: str, template: str) -> None:
        """Logs a problem the first time it is met (a bad file comes back every epoch)."""
        if message not in self.reported:
            self.reported.add(message)
            logger.warning(template, message)

    def _stop_signal_on_any_rank(self) -> int:
        """The stop signal received by any rank (the highest number), 0 for none; every rank
        calls it at the same point of each step."""
        flag = torch.tensor([float(self.stop.signum or 0)], device=self.device)
        return int(du.all_reduce_max(flag).item())

    def _batches(self, first: int) -> Iterator[Dict]:
        """The training batches from number `first` (0-based, counted over the whole run, epoch
        after epoch) on, without end; each epoch's loader starts at its position, so a resumed
        run goes on with the batch it stopped before."""
        epoch, index = divmod(first, len(self.train_loader))
        while True:
            self.train_loader.sampler.set_position(epoch, index * self.train_loader.batch_size)
            yield from Prefetcher(self.train_loader, self.device)
            epoch, index = epoch + 1, 0

    def _next_batch(self, batches: Iterator, step: int):
        """The next batch, or STOPPED when data loading broke while a stop signal was being
        handled (a loader worker may have been killed by it)."""
        try:
            return next(batches)
        except Exception as e:
            # Its traceback holds the loader's iterator in a reference cycle, which the garbage
            # collector breaks only after closing the iterator's queues: its workers would never
            # be told to end, and the exit would wait for them (they ignore SIGTERM) forever.
            # Without the traceback the iterator goes at once and shuts its workers down.
            e.__traceback__ = None
            if self.stop.signum is not None:
                logger.info("data loading ended while stopping on %s: %s", signal_name(self.stop.signum), e)
                return STOPPED
            self.save_latest(step - 1)
            raise TrainingError(f"data loading failed before step {step + 1}: {e}") from e

    def _micro_batches(self, batches: Iterator, step: int) -> Optional[List[Dict]]:
        """The train.accumulate batches of step `step`, or None when data loading broke while
        stopping."""
        micro = []
        while len(micro) < self.accumulate:
            batch = self._next_batch(batches, step)
            if batch is STOPPED:
                return None
            micro.append(batch)
        return micro

    def _train_one(self, batches: List[Dict], step: int) -> None:
        """Step number `step` (0-based) with its logging, validation and periodic saves."""
        t, log = self.train_config, self.config.log
        for batch in batches:
            self.replaced_samples += int(batch["replaced"].sum())
            for message in batch["bad_files"]:
                for line in filter(None, message.split("\n")):
                    self._report_once(line, "unreadable training file, its samples are replaced by the next ones: %s")
        losses, norm, finite, alpha, info = self.train_step(batches, step)
        done = step + 1
        if finite:
            self.nonfinite_run = 0
        else:
            self.skipped_steps += 1
            self.nonfinite_run += 1
            logger.warning("step %d: gradient norm %s, step skipped (%d in a row, %d in all)",
                           done, norm, self.nonfinite_run, self.skipped_steps)
            if self.nonfinite_run >= t.max_nonfinite_steps:
                self.save_latest(step)
                raise TrainingError(
                    f"{self.nonfinite_run} steps in a row had non-finite gradients (last: step {done}); "
                    f"training stopped. Lower the learning rate, or set train.amp = \"off\", and resume with "
                    f"{RESUME_HINT}.")
        if du.is_main_process():
            if done % log.logging_step == 0 or done == t.total_step:
                tick, tick_step = self.tick
                rate = (done - tick_step) / max(time.monotonic() - tick, 1e-9)
                self.tick = time.monotonic(), done
                parts = "  ".join(f"{k} {v.item():.4f}" for k, v in losses.items() if k != "total")
                logger.info("[%d/%d] loss %.4f  %s  lr %.2e  grad %.3f  %.2f steps/s  skipped %d  replaced %d",
                            done, t.total_step, losses["total"].item(), parts,
                            self.optimizer.param_groups[0]["lr"], norm, rate,
                            self.skipped_steps, self.replaced_samples)
            if done % log.tensorboard_step == 0:
                self.log_scalars(done, losses, norm)
            if done % log.tensorboard_image_step == 0:
                self.log_images(done, batches[-1], alpha, info)
        if done % t.val_step == 0 or done == t.total_step:
            if du.is_main_process():
                logger.info("validating at step %d", done)
            current = self.validate(done)
            if current is not None and current < self.best_mse:
                self.best_mse = current
                self.save("best_model", step)
        if done % log.checkpoint_step == 0:
            self.save_latest(step)

    def _stop(self, last: int, signum: int) -> int:
        self.save_latest(last)
        if du.is_main_process():
            if last >= 0:
                logger.info("stopped by %s after step %d; latest_model.pth holds it: resume with %s",
                            signal_name(signum), last + 1, RESUME_HINT)
            else:
                logger.info("stopped by %s before the first step; nothing to save", signal_name(signum))
        return signum

    def train(self) -> Optional[int]:
        """Trains from start_step to train.total_step. Returns None when the run is finished, or
        the number of the stop signal that ended it early, after saving latest_model.pth."""
        t = self.train_config
        if self.start_step >= t.total_step:
            if du.is_main_process():
                logger.info("nothing to train: the checkpoint is at step %d of train.total_step = %d, so the run "
                            "is finished. To train further, raise train.total_step and set train.reset_lr = true.",
                            self.start_step, t.total_step)
            return None
        if len(self.train_loader) == 0:
            raise TrainingError("the training set has fewer samples than one batch on every rank; "
                                "lower model.batch_size or add backgrounds")
        step = self.start_step
        batches = self._batches(step * self.accumulate)
        self.tick = time.monotonic(), step
        while step < t.total_step:
            micro = self._micro_batches(batches, step)
            signum = self._stop_signal_on_any_rank()
            if signum:
                return self._stop(step - 1, signum)
            self._train_one(micro, step)
            step += 1
        self.save_latest(step - 1)
        return None
