"""AIM's two training stages (core/train.py and scripts/train_*.sh; JizhiziLi/AIM, MIT): the
stage's data (data.py) and losses (losses.py), Adam at a constant rate (torch's defaults besides
the rate: betas (0.9, 0.999), no weight decay; the scripts' 1e-4 for the transfer stage, 1e-6 for
the matting stage, batch 16), no gradient clipping; the ImageNet ResNet-34 with max-pooling
indices (r34mp_pretrained_imagenet.pth.tar) as the encoders' start. The transfer stage starts from
ImageNet, the matting stage from the transfer stage's file (train.init_checkpoint)."""
from dataclasses import dataclass
from functools import partial
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from dataloader.datasets import DataSettings, KeyedDataset, composited_training_set
from dataloader.file_lists import DataListError, composited_list
from networks.aim.data import MattingSamples, salient_objects, usr_files
from networks.aim.layout import alias_of
from networks.aim.losses import matting_losses, transfer_losses
from networks.training import (ADAM_DEFAULTS, ADAM_RULES, ADAM_SCHEDULE_KEYS, AdamSchedule, Arrays, Tensors,
                               TrainingRecipe, adam, adam_schedule, imagenet_picture, scheduled_rate)
from utils.checkpoint import CheckpointError, extract_state_dict, read_checkpoint
from utils.config import ModelSpec, Rule, one_of
from utils.recipe import imagenet_normalised

STAGES = ("duts", "matting")
PIPELINE = "aim"
# core/train.py's Adam: torch's betas, the rate of scripts/train_matting.sh (1e-6; the transfer
# stage's 1e-4 is set by config/aim-train-duts.toml), constant.
AIM_ADAM_DEFAULTS = {**ADAM_DEFAULTS, "train.G_lr": 1e-6, "train.beta1": 0.9, "train.beta2": 0.999,
                     "train.warmup_step": 0, "train.lr_schedule": "constant"}
TRAINING_DEFAULTS: Dict[str, Any] = {
    **AIM_ADAM_DEFAULTS, "train.aim_stage": "matting", "data.train_usr": "", "model.batch_size": 16,
    "data.crop_size": 320, "data.pipeline": PIPELINE, "train.clip_grad": False}
TRAINING_RULES: Dict[str, Rule] = {
    **ADAM_RULES,
    "train.aim_stage": one_of(*STAGES),
    "data.pipeline": one_of(PIPELINE),
    "train.clip_grad": ((lambda value: value is False),
                        "false for AIM (its recipe clips no gradient; GCA-Matting's adaptive clipping is not part of it)"),
    "data.random_interp": ((lambda value: value is False),
                           "false for AIM (its pipeline resizes bilinearly, as published)"),
    "data.own_background_prob": ((lambda value: value == 0),
                                 "0 for AIM (its pipeline composites every sample over a background of the set)"),
}


@dataclass(frozen=True)
class AimTraining:
    """stage: "duts" (transfer learning on salient objects) or "matting"; usr_folder: AIM's usr maps
    ("" to make them from the alphas); adam: the optimizer and its constant rate."""
    stage: str
    usr_folder: str
    adam: AdamSchedule


def aim_training(values: Mapping[str, Any]) -> AimTraining:
    return AimTraining(values["train.aim_stage"], values["data.train_usr"], adam_schedule(values))


def train_tensors(sample: Arrays, spec: ModelSpec) -> Tensors:
    """The image (and, in the matting stage, fg and bg) as RGB ImageNet-normalised, the alpha 1 x H x
    W on 0..1, the trimap or usr 1 x H x W on 0..255 (the network does not take it; the losses do)."""
    tensors = {name: imagenet_normalised(torch.from_numpy(np.ascontiguousarray(sample[name][:, :, ::-1],
                                                                                dtype=np.float32)))
               for name in ("image", "fg", "bg") if name in sample}
    for name in ("alpha", "trimap"):
        tensors[name] = torch.from_numpy(np.ascontiguousarray(sample[name], dtype=np.float32))[None]
    return tensors


def dataset(settings: DataSettings, spec: ModelSpec) -> KeyedDataset:
    """The stage's set: images and masks (data.train_merged, data.train_alpha) for "duts";
    foregrounds or photos, alphas and usr maps over backgrounds for "matting"."""
    training, folders = spec.options.training, settings.folders
    to_tensors = partial(train_tensors, spec=spec)
    if training.stage == "duts":
        unread = [key for key, value in (("data.train_fg", folders.fg), ("data.train_bg", folders.bg),
                                         ("data.train_usr", training.usr_folder)) if value]
        if unread:
            raise DataListError(f"train.aim_stage = \"duts\" trains on images and their masks (data.train_merged, "
                                f"data.train_alpha) and does not read {', '.join(unread)}: remove it")
        if not folders.merged:
            raise DataListError("train.aim_stage = \"duts\" needs data.train_merged (the images) and data.train_alpha "
                                "(their masks)")
        return salient_objects(folders.merged, folders.alpha, to_tensors, settings.crop_size, settings.augmentation,
                               settings.seed, settings.rank)
    usr = usr_files(training.usr_folder, composited_list(folders).alpha) if training.usr_folder else None
    return composited_training_set(settings, to_tensors, MattingSamples(usr))


def losses(network: nn.Module, fused: torch.Tensor, info: Dict[str, torch.Tensor], batch: Tensors,
           spec: ModelSpec) -> Tensors:
    stage_losses = transfer_losses if spec.options.training.stage == "duts" else matting_losses
    return stage_losses(info["semantic"].float(), info["detail"].float(), fused.float(), batch)


def optimizer(network: nn.Module, spec: ModelSpec) -> torch.optim.Optimizer:
    return adam(network, spec.options.training.adam)


def rate(spec: ModelSpec, step: int, total_step: int, restart_step: Optional[int]) -> float:
    return scheduled_rate(spec.options.training.adam, step, total_step, restart_step)


def load_resnet34_mp(network: nn.Module, path: str, spec: ModelSpec) -> List[str]:
    """The ImageNet ResNet-34 with max-pooling indices (resnet34_mp's state dict: conv1, bn1,
    layer1 .. layer4, fc) into the encoders, by the released layout's aliases; the classifier is
    not used. Returns the encoder keys left to their initialisation (none for the file). CheckpointError
    for a missing file or one that is not that network."""
    if not os.path.isfile(path):
        raise CheckpointError(f"ResNet-34 ImageNet weights not found: {path or 'model.imagenet_pretrain_path is not set'}; "
                              "give AIM's r34mp_pretrained_imagenet.pth.tar, or set model.imagenet_pretrain = false")
    state = {alias_of("resnet." + key): value for key, value in extract_state_dict(read_checkpoint(path), path).items()}
    encoders = {key: value for key, value in network.state_dict().items() if key.startswith("encoder")}
    found = {key: state[key] for key in encoders if key in state and state[key].shape == encoders[key].shape}
    if len(found) < len(encoders) // 2:
        raise CheckpointError(f"{path}: not the ResNet-34 AIM starts from ({len(found)} of the {len(encoders)} "
                              "encoder tensors found)")
    network.load_state_dict(found, strict=False)
    return [key for key in encoders if key not in found]


def shown_inputs(batch: Tensors) -> Tuple[torch.Tensor, torch.Tensor]:
    """The image un-normalised, the trimap or usr / 255."""
    return imagenet_picture(batch["image"][0]), batch["trimap"][0].float().cpu() / 255


def no_pictures(info: Dict) -> Dict[str, np.ndarray]:
    return {}


TRAINING = TrainingRecipe(train_tensors=train_tensors, dataset=dataset, losses=losses, optimizer=optimizer,
                          learning_rate=rate, schedule_keys=ADAM_SCHEDULE_KEYS, init_may_lack=(),
                          imagenet_backbone=load_resnet34_mp, shown_inputs=shown_inputs, pictures=no_pictures)
