"""A family's training recipe: everything main.py and trainer.py run that differs between model
families, and the building blocks several families' recipes share (Adam with the published
warm-up and cosine, the L1 on the unknown region, ImageNet pictures).

The trainer owns the loop (DDP, accumulation, AMP, clipping, signals, checkpoints, validation,
resume checks, logging); it asks the recipe what a step trains on and with what. Every callable
takes the run's ModelSpec, whose `options` are the family's own config keys as plain values.
"""
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from dataloader.datasets import DataSettings, KeyedDataset, composited_training_set
from utils.config import ModelSpec, Rule, at_least, one_of
from utils.recipe import IMAGENET_MEAN, IMAGENET_STD
from utils.schedule import learning_rate

Arrays = Dict[str, np.ndarray]
Tensors = Dict[str, torch.Tensor]


@dataclass(frozen=True)
class TrainingRecipe:
    """What the trainer runs for one family.

    train_tensors(sample, spec): a training sample's arrays (dataloader.datasets: BGR image, fg, bg
    on 0..255, alpha on 0..1, grey trimap) as the tensors the network and the losses take: at
    least "image" and "trimap" (the network's two inputs) and "alpha" (1 x H x W on 0..1).
    dataset(settings, spec): the training set (the data pipeline) over the config's folders
    (settings.folders) with its data settings, its items encoded by train_tensors: a
    dataloader.datasets.KeyedDataset (items keyed (epoch, index), summary() for the log).
    losses(network, alpha, info, batch, spec): the losses of one forward, "total" among them; the
    network is the model outside DDP (its frozen parts say what is trained), alpha and info the
    forward's outputs, batch the encoded samples on the device.
    optimizer(network, spec): the optimizer over the network's parameters that require a gradient,
    in the parameter groups the family wants; a group's "lr_scale" (1 where absent) multiplies the
    learning rate the schedule gives.
    learning_rate(spec, step, total_step, restart_step): the rate of 0-based step `step` of a run
    of `total_step`; restart_step: where train.reset_lr restarted the schedule (None: never).
    schedule_keys: the dotted config keys, besides train.total_step, whose change reshapes
    learning_rate: a resumed run refuses a change that moves the rates of the steps left.
    init_may_lack: state-dict key prefixes a train.init_checkpoint may lack altogether, their
    tensors keeping their initialisation (DIM's refiner, from a stage-1 file).
    imagenet_backbone(network, path, spec): loads ImageNet weights from a local file into the
    network's backbone (model.imagenet_pretrain) and returns the backbone keys left to their
    initialisation; or why the family has no such backbone.
    shown_inputs(batch): the first sample's network image and trimap as pictures for TensorBoard,
    3 x H x W RGB and 1 x H x W, both on 0..1.
    pictures(info): the family's own TensorBoard pictures from a forward's info, by name (C x H x W
    arrays); {} for none."""
    train_tensors: Callable[[Arrays, ModelSpec], Tensors]
    dataset: Callable[[DataSettings, ModelSpec], KeyedDataset]
    losses: Callable[[nn.Module, torch.Tensor, Any, Tensors, ModelSpec], Tensors]
    optimizer: Callable[[nn.Module, ModelSpec], torch.optim.Optimizer]
    learning_rate: Callable[[ModelSpec, int, int, Optional[int]], float]
    schedule_keys: Tuple[str, ...]
    init_may_lack: Tuple[str, ...]
    imagenet_backbone: Union[Callable[[nn.Module, str, ModelSpec], List[str]], str]
    shown_inputs: Callable[[Tensors], Tuple[torch.Tensor, torch.Tensor]]
    pictures: Callable[[Any], Dict[str, np.ndarray]]


@dataclass(frozen=True)
class AdamSchedule:
    """Adam (train.G_lr, train.beta1, train.beta2) and the published schedule: linear warm-up over
    train.warmup_step, then cosine or constant (train.lr_schedule; utils.schedule.learning_rate)."""
    lr: float
    betas: Tuple[float, float]
    warmup_step: int
    lr_schedule: str


# The config keys of AdamSchedule, with the published defaults; a family's schema takes them in.
ADAM_DEFAULTS: Dict[str, Any] = {"train.G_lr": 1e-3, "train.beta1": 0.5, "train.beta2": 0.999,
                                 "train.warmup_step": 5000, "train.lr_schedule": "cosine"}
ADAM_RULES: Dict[str, Rule] = {
    "train.G_lr": ((lambda value: value > 0), "> 0"),
    "train.beta[12]": ((lambda value: 0 <= value < 1), "in [0, 1)"),
    "train.warmup_step": at_least(0),
    # the published warm-up and cosine, or MMagic DIM's constant rate
    "train.lr_schedule": one_of("cosine", "constant"),
}
ADAM_SCHEDULE_KEYS = ("train.G_lr", "train.warmup_step", "train.lr_schedule")


def adam_schedule(values: Mapping[str, Any]) -> AdamSchedule:
    return AdamSchedule(values["train.G_lr"], (values["train.beta1"], values["train.beta2"]),
                        values["train.warmup_step"], values["train.lr_schedule"])


def adam(network: nn.Module, schedule: AdamSchedule) -> torch.optim.Optimizer:
    """Adam over the network's parameters that require a gradient, in one group."""
    return torch.optim.Adam([p for p in network.parameters() if p.requires_grad], lr=schedule.lr,
                            betas=schedule.betas)


def scheduled_rate(schedule: AdamSchedule, step: int, total_step: int, restart_step: Optional[int]) -> float:
    return learning_rate(step, schedule.lr, schedule.warmup_step, total_step, restart_step, schedule.lr_schedule)


def composited_dataset(train_tensors: Callable[[Arrays, ModelSpec], Tensors]
                       ) -> Callable[[DataSettings, ModelSpec], KeyedDataset]:
    """A TrainingRecipe.dataset: the foregrounds (or photos) composited over the backgrounds by
    data.pipeline, encoded by `train_tensors`."""
    def dataset(settings: DataSettings, spec: ModelSpec) -> KeyedDataset:
        return composited_training_set(settings, partial(train_tensors, spec=spec))
    return dataset


def laplacian_pyramid(image: torch.Tensor, kernel: torch.Tensor, levels: int, border: str) -> List[torch.Tensor]:
    """`levels` band-pass levels of N x C x H x W `image`, each the image minus its blur by the
    square `kernel` (padded with F.pad's `border`: "reflect", "replicate"), the blur then halved by
    2 x 2 averaging for the next level; and, last, the final blur so halved (AEMatter's and AIM's
    Laplacian losses)."""
    weight = kernel.to(image)[None, None].expand(image.shape[1], 1, *kernel.shape)
    pad = kernel.shape[0] // 2
    pyramid = []
    for _ in range(levels):
        blurred = F.conv2d(F.pad(image, (pad, pad, pad, pad), mode=border), weight, groups=image.shape[1])
        pyramid.append(image - blurred)
        image = F.avg_pool2d(blurred, 2)
    return pyramid + [image]


def unknown_l1(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sum(|pred - target| w) / (sum(w) + 1e-8), summed over all of pred's channels: the L1 on the
    unknown region w, the trainer's validation REC."""
    return ((pred - target).abs() * weight).sum() / (weight.sum() + 1e-8)


def imagenet_picture(image: torch.Tensor) -> torch.Tensor:
    """An ImageNet-normalised 3 x H x W image back on 0..1, for TensorBoard."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (image.float().cpu() * std + mean).clamp(0, 1)
