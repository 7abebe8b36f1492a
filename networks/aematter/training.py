"""AEMatter's training recipe, written for this project from the description of its train.py
(GPL-2.0; not copied): RAdam (torch.optim.RAdam with decoupled weight decay, which is what its
radam.py computes) at 2.5e-5 x the batch, betas (0.5, 0.999), weight decay 1e-6 but for the
parameters its get_param exempts, the gradient norm clipped at 10 before each step, a cosine
stepped once per epoch over 150 epochs; its losses (losses.py) on the prediction composed with
the one-hot trimap; its data pipeline (data.py); the Swin-T ImageNet weights as the backbone's
start (its model.py loads swin_tiny_patch4_window7_224.pth into the backbone)."""
import math
import os
from functools import partial
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from dataloader.datasets import DataSettings, KeyedDataset, composited_training_set
from networks.aematter.data import aematter_sample
from networks.aematter.losses import aematter_losses
from networks.training import Arrays, Tensors, TrainingRecipe
from utils.checkpoint import CheckpointError, extract_state_dict, read_checkpoint
from utils.config import ModelSpec
from utils.recipe import Recipe

BETAS = (0.5, 0.999)
WEIGHT_DECAY = 1e-6
MAX_GRAD_NORM = 10.0
# get_param: a parameter whose name contains one of these gets no weight decay. They are
# substrings: "conv3" also matches the ResBlocks' conv3 inside apptrans, emb and the AEAL blocks,
# and "bias" the Swin blocks' relative_position_bias_table.
NO_DECAY_MARKERS = ("start_conv", "bias", "convo", "conv5", "conv4", "conv3")
SCHEDULE_KEYS = ("train.lr_per_sample", "model.batch_size", "train.lr_epochs")
BACKBONE = "trans."
# The backbone tensors the ImageNet file does not set: AEMatter's own patch embedding (a 64 -> 96
# stride-2 conv where Swin has 4 x 4 patches of the image) and its per-stage output norms.
OWN_PATCH_EMBEDDING = "patch_embed.proj."


def train_tensors(sample: Arrays, recipe: Recipe) -> Tensors:
    """The image as the network takes it at test time (RGB / 255), the trimap one-hot from its
    exact greys, the alpha 1 x H x W."""
    rgb = torch.from_numpy(np.ascontiguousarray(sample["image"][:, :, ::-1], dtype=np.float32))
    return {"image": recipe.image(rgb),
            "trimap": recipe.trimap(torch.from_numpy(np.ascontiguousarray(sample["trimap"], dtype=np.float32))),
            "alpha": torch.from_numpy(np.ascontiguousarray(sample["alpha"], dtype=np.float32))[None]}


def dataset(settings: DataSettings, spec: ModelSpec, recipe: Recipe) -> KeyedDataset:
    """The config's foregrounds (or photos) over its backgrounds through AEMatter's pipeline."""
    return composited_training_set(settings, partial(train_tensors, recipe=recipe), aematter_sample)


def losses(network: nn.Module, alpha: torch.Tensor, info: None, batch: Tensors, spec: ModelSpec) -> Tensors:
    return aematter_losses(alpha.float(), batch["alpha"], batch["trimap"])


def parameter_groups(network: nn.Module) -> List[Dict]:
    """get_param's two groups over the parameters that require a gradient: without weight decay
    those whose name contains a NO_DECAY_MARKERS entry, with WEIGHT_DECAY the others (empty
    groups left out)."""
    exempt, decayed = [], []
    for name, parameter in network.named_parameters():
        if parameter.requires_grad:
            (exempt if any(marker in name for marker in NO_DECAY_MARKERS) else decayed).append(parameter)
    groups = [{"params": exempt, "weight_decay": 0.0}, {"params": decayed, "weight_decay": WEIGHT_DECAY}]
    return [group for group in groups if group["params"]]


class ClippedRAdam(torch.optim.RAdam):
    """torch.optim.RAdam whose step first clips the total gradient norm of its parameters at
    `max_norm` (train.py clips right before its optimizer step)."""

    def __init__(self, groups: List[Dict], max_norm: float, **settings):
        super().__init__(groups, **settings)
        self.max_norm = max_norm

    def step(self, closure=None):
        parameters = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(parameters, self.max_norm)
        return super().step(closure)


def base_rate(spec: ModelSpec) -> float:
    return spec.options.lr_per_sample * spec.options.batch_size


def optimizer(network: nn.Module, spec: ModelSpec) -> torch.optim.Optimizer:
    return ClippedRAdam(parameter_groups(network), MAX_GRAD_NORM, lr=base_rate(spec), betas=BETAS,
                        decoupled_weight_decay=True)


def stepped_cosine(base: float, step: int, total_step: int, epochs: int, restart_step: Optional[int]) -> float:
    """CosineAnnealingLR(T_max = epochs) stepped once per epoch, the epochs spread evenly over the
    run: step s of a run of total_step is in epoch floor(s x epochs / total_step), whose rate is
    base (1 + cos(pi epoch / epochs)) / 2. After a train.reset_lr resume at `restart_step` the
    epochs are spread over the steps left."""
    first = 0 if restart_step is None else restart_step + 1
    span = max(total_step - first, 1)
    epoch = min(max(step - first, 0) * epochs // span, epochs - 1)
    return base * (1 + math.cos(math.pi * epoch / epochs)) / 2


def rate(spec: ModelSpec, step: int, total_step: int, restart_step: Optional[int]) -> float:
    return stepped_cosine(base_rate(spec), step, total_step, spec.options.lr_epochs, restart_step)


def load_swin_imagenet(network: nn.Module, path: str, spec: ModelSpec) -> List[str]:
    """Swin-T's ImageNet weights (swin_tiny_patch4_window7_224.pth: {'model': state dict}) into
    the backbone by name, but for AEMatter's own patch embedding; the classifier and final norm
    the file also holds are not used. Returns the backbone keys left to their initialisation.
    CheckpointError for a missing file or one without Swin-T's tensors."""
    if not os.path.isfile(path):
        where = path or "model.imagenet_pretrain_path is not set"
        raise CheckpointError(f"Swin-T ImageNet weights not found: {where}; give the local file "
                              "swin_tiny_patch4_window7_224.pth (model.imagenet_pretrain_path), or set "
                              "model.imagenet_pretrain = false")
    checkpoint = read_checkpoint(path)
    state = extract_state_dict(checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else checkpoint,
                               path)
    backbone = {key[len(BACKBONE):]: value for key, value in network.state_dict().items() if key.startswith(BACKBONE)}
    found = {key: state[key] for key, value in backbone.items()
             if not key.startswith(OWN_PATCH_EMBEDDING) and key in state and state[key].shape == value.shape}
    wrong = [key for key in backbone if key in state and key not in found and not key.startswith(OWN_PATCH_EMBEDDING)]
    if wrong or not found:
        raise CheckpointError(f"{path}: not Swin-T's ImageNet weights ({len(found)} tensors fit the backbone"
                              + (f"; of another shape: {', '.join(wrong[:3])}" if wrong else "") + ")")
    network.trans.load_state_dict(found, strict=False)
    return [BACKBONE + key for key in backbone if key not in found]


def shown_inputs(batch: Tensors) -> Tuple[torch.Tensor, torch.Tensor]:
    """The image (RGB on 0..1), the trimap's classes (0, 1, 2) halved."""
    return batch["image"][0].float().cpu(), batch["trimap"][0].float().cpu().argmax(0, keepdim=True) / 2


def no_pictures(info: None) -> Dict[str, np.ndarray]:
    return {}


def training_recipe(recipe: Recipe) -> TrainingRecipe:
    """AEMatter's TrainingRecipe around its inference recipe's encoders."""
    return TrainingRecipe(
        train_tensors=lambda sample, spec: train_tensors(sample, recipe),
        dataset=partial(dataset, recipe=recipe), losses=losses, optimizer=optimizer,
        learning_rate=rate, schedule_keys=SCHEDULE_KEYS, init_may_lack=(), imagenet_backbone=load_swin_imagenet,
        shown_inputs=shown_inputs, pictures=no_pictures)
