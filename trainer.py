"""The training loop: the published GCA recipe with a hand-written DDP loop.

Adam, linear warm-up then per-step cosine, adaptive gradient clipping, L1 on the unknown
region (plus optional weighted losses), validation every `train.val_step`, `latest_model.pth`
every `log.checkpoint_step` and `best_model.pth` by validation MSE, written atomically. A
SIGINT / SIGTERM saves `latest_model.pth` and stops; non-finite steps are skipped and
counted; a run of them stops training.
"""
import json
import logging
import math
import os
import signal
import time
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from dataloader.loader import Prefetcher
from utils import distributed as du
from utils.checkpoint import load_weights, save_checkpoint
from utils.flow_vis import flow_to_image
from utils.inference import autocast_for, predict_eval_batch
from utils.losses import matting_losses, regression_loss, unknown_weight
from utils.metrics import mse, sad
from utils.preprocess import IMAGENET_MEAN, IMAGENET_STD
from utils.schedule import AdaptiveGradClip, learning_rate

logger = logging.getLogger("gca")
LOSS_WEIGHTS = ("rec_weight", "comp_weight", "smooth_l1_weight", "grad_weight", "gabor_weight", "lap_weight")
# train.amp -> the precision autocast runs in
AMP_PRECISIONS = {"off": "fp32", "bf16": "bf16", "fp16": "fp16"}


class TrainingError(RuntimeError):
    pass


def checkpoint_file(checkpoint_dir: str, name: str) -> str:
    """A path as given, or `<checkpoint_dir>/<name>.pth` for a bare name like "latest_model"."""
    if os.path.isfile(name):
        return name
    return os.path.join(checkpoint_dir, name if name.endswith(".pth") else f"{name}.pth")


class Trainer:
    def __init__(self, config, model: nn.Module, train_loader, eval_loader, dist_info: du.DistInfo,
                 writer=None):
        self.config, self.train_config = config, config.train
        self.dist, self.device = dist_info, dist_info.device
        if config.train.amp not in AMP_PRECISIONS:
            raise TrainingError(f"train.amp must be \"off\", \"bf16\" or \"fp16\", got {config.train.amp!r}")
        if config.train.amp == "fp16" and self.device.type != "cuda":
            raise TrainingError("train.amp = \"fp16\" needs a CUDA device; use \"bf16\" or \"off\" on the CPU")
        if dist_info.distributed and self.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(self.device)
        self.net = (DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                                            else None) if dist_info.distributed else self.model)
        self.train_loader, self.eval_loader = train_loader, eval_loader
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=config.train.G_lr,
                                          betas=(config.train.beta1, config.train.beta2))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.train.amp == "fp16")
        self.clipper = AdaptiveGradClip(config.train.clip_grad)
        self.loss_weights = {k: config.train[k] for k in LOSS_WEIGHTS}
        self.writer = writer
        self.start_step, self.restart_step = 0, None
        self.best_mse, self.last_mse = math.inf, None
        self.skipped_steps = self.replaced_samples = 0
        self.stop_signal: Optional[str] = None

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
        if du.is_main_process():
            logger.info("saved %s (step %d)", path, step)

    def restore(self, name: str) -> None:
        path = checkpoint_file(self.config.log.checkpoint_path, name)
        checkpoint = load_weights(self.model, path)
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
        logger.info("resumed from %s at step %d%s", path, self.start_step,
                    " with the learning rate schedule restarted" if self.train_config.reset_lr else "")

    # ---- one step ----------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        t = self.train_config
        return learning_rate(step, t.G_lr, t.warmup_step, t.total_step, self.restart_step)

    def train_step(self, batch: Dict[str, torch.Tensor], step: int):
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(step)
        self.net.train()
        with autocast_for(AMP_PRECISIONS[self.train_config.amp], self.device):
            alpha, info = self.net(batch["image"], batch["trimap"])
        losses = matting_losses(alpha.float(), batch, self.loss_weights)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses["total"]).backward()
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
        self.writer.add_scalar("Train/Loss_REC", losses["rec"].item() if "rec" in losses else 0.0, step)
        self.writer.add_scalar("Train/LearnRate", self.optimizer.param_groups[0]["lr"], step)
        self.writer.add_scalar("Train/Moving_Max_Grad", self.clipper.moving_max or 0.0, step)
        self.writer.add_scalar("Train/Max_Grad", norm, step)

    def log_images(self, step: int, batch, alpha: torch.Tensor, info) -> None:
        if self.writer is None:
            return
        image = (batch["image"][0].float().cpu() * IMAGENET_STD + IMAGENET_MEAN).clamp(0, 1)
        trimap = batch["trimap"][0].float().cpu()
        classes = trimap.argmax(0, keepdim=True) if trimap.shape[0] == 3 else trimap
        self.writer.add_image("image", image, step)
        self.writer.add_image("trimap", classes / 2, step)
        self.writer.add_image("alpha", batch["alpha"][0].float().cpu(), step)
        self.writer.add_image("pred_alpha", alpha[0].detach().float().cpu().clamp(0, 1), step)
        for index in (1, 2):
            if info and f"offset_{index}" in info:
                offsets = info[f"offset_{index}"][0][0].cpu().numpy()
                self.writer.add_image(f"offset_{index}", flow_to_image(offsets).transpose(2, 0, 1), step)

    # ---- validation --------------------------------------------------------------------
    def validate(self, step: int) -> Optional[float]:
        if self.eval_loader is None:
            return None
        self.model.eval()
        totals = torch.zeros(4, dtype=torch.float64)  # sad, mse, rec loss, images
        with torch.no_grad():
            for batch in self.eval_loader:
                alpha, pred8, target8 = predict_eval_batch(self.model, batch, self.device)
                h, w = alpha.shape[2:]
                rec = regression_loss(alpha, batch["alpha"], unknown_weight(batch["trimap"][..., :h, :w]))
                trimap = batch["trimap_grey"][0].numpy()
                totals += torch.tensor([sad(pred8, target8, trimap), np.nan_to_num(mse(pred8, target8, trimap)),
                                        float(rec), 1.0], dtype=torch.float64)
        totals = du.all_reduce_sum(totals.to(self.device)).cpu()
        count = max(totals[3].item(), 1)
        mean_sad, mean_mse, mean_rec = (totals[:3] / count).tolist()
        self.last_mse = mean_mse
        if du.is_main_process():
            logger.info("validation at step %d: SAD %.2f  MSE %.4f  REC %.4f  (%d images)",
                        step, mean_sad, mean_mse, mean_rec, int(count))
            if self.writer is not None:
                for tag, value in (("Test/Loss", mean_rec), ("Test/Loss_MSE", mean_mse),
                                   ("Test/Loss_SAD", mean_sad), ("Test/Loss_REC", mean_rec)):
                    self.writer.add_scalar(tag, value, step)
        return mean_mse

    # ---- the loop ----------------------------------------------------------------------
    def _on_signal(self, signum, _frame) -> None:
        self.stop_signal = signal.Signals(signum).name

    def _stop_requested(self) -> bool:
        flag = torch.tensor([1.0 if self.stop_signal else 0.0], device=self.device)
        return bool(du.all_reduce_max(flag).item())

    def train(self) -> int:
        """Runs to train.total_step (or a stop signal); returns the number of the last step done."""
        t, log = self.train_config, self.config.log
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        batches_per_epoch = len(self.train_loader)
        if batches_per_epoch == 0:
            raise TrainingError("the training set has fewer samples than one batch on every rank; "
                                "lower model.batch_size or add backgrounds")
        step, nonfinite_run, last = self.start_step, 0, self.start_step - 1
        tick, tick_step = time.monotonic(), step
        while step < t.total_step:
            epoch, batch_index = divmod(step, batches_per_epoch)
            self.train_loader.sampler.set_position(epoch, batch_index * self.train_loader.batch_size)
            for batch in Prefetcher(self.train_loader, self.device):
                self.replaced_samples += int(batch["replaced"].sum())
                losses, norm, finite, alpha, info = self.train_step(batch, step)
                if finite:
                    nonfinite_run = 0
                else:
                    self.skipped_steps += 1
                    nonfinite_run += 1
                    logger.warning("step %d: gradient norm %s, step skipped (%d in a row, %d in all)",
                                   step, norm, nonfinite_run, self.skipped_steps)
                    if nonfinite_run >= t.max_nonfinite_steps:
                        self.save("latest_model", step)
                        raise TrainingError(
                            f"{nonfinite_run} steps in a row had non-finite gradients (last at step {step}); "
                            "training stopped. Lower train.G_lr, or set train.amp = \"off\", and resume "
                            "from latest_model (train.resume_checkpoint = \"latest_model\").")
                last, done = step, step + 1
                if du.is_main_process():
                    if done % log.logging_step == 0 or done == t.total_step:
                        rate = (done - tick_step) / max(time.monotonic() - tick, 1e-9)
                        tick, tick_step = time.monotonic(), done
                        parts = "  ".join(f"{k} {v.item():.4f}" for k, v in losses.items() if k != "total")
                        logger.info("[%d/%d] loss %.4f  %s  lr %.2e  grad %.3f  %.2f steps/s  skipped %d  replaced %d",
                                    done, t.total_step, losses["total"].item(), parts,
                                    self.optimizer.param_groups[0]["lr"], norm, rate,
                                    self.skipped_steps, self.replaced_samples)
                    if done % log.tensorboard_step == 0:
                        self.log_scalars(done, losses, norm)
                    if done % log.tensorboard_image_step == 0:
                        self.log_images(done, batch, alpha, info)
                if done % t.val_step == 0 or done == t.total_step:
                    current = self.validate(done)
                    if current is not None and current < self.best_mse:
                        self.best_mse = current
                        self.save("best_model", step)
                if done % log.checkpoint_step == 0:
                    self.save("latest_model", step)
                step = done
                if self._stop_requested():
                    self.save("latest_model", last)
                    logger.info("stopped by %s after step %d; resume with train.resume_checkpoint = \"latest_model\"",
                                self.stop_signal or "a signal on another rank", last)
                    return last
                if step >= t.total_step:
                    break
        if last % self.config.log.checkpoint_step != self.config.log.checkpoint_step - 1:
            self.save("latest_model", last)  # not saved by the periodic save just before
        return last
