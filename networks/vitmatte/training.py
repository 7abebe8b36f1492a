"""ViTMatte's training recipe as hustvl/ViTMatte trains (configs/common/*.py, ViTMatte_S_100ep.py,
ViTMatte_B_100ep.py, modeling/criterion/matting_criterion.py, data/dim_dataset.py):
- the samples of data/dim_dataset.py: GCA-Matting's composited foregrounds (dataloader's "gca"
  pipeline) with the trimap eroded at 640 x 640 (its GenMask), the image on 0..1 (the network
  normalises), the trimap cut at 85 and 170 into 0 / 0.5 / 1 as its meta-architecture does;
- its criterion (networks/vitmatte/losses.py);
- AdamW (detectron2's common/optim.py: betas 0.9 / 0.999, weight decay 0.1) over parameter
  groups with a layer-wise learning-rate decay (get_vit_lr_decay_rate, 0.65), no weight decay on
  the position embedding nor on the LayerNorm and BatchNorm layers;
- a linear warm-up from 0.001 x over 250 steps, then x 1, 0.1 and 0.05 from 30 % and 90 % of
  the run (WarmupParamScheduler around MultiStepParamScheduler);
- the DINO ViT-S/16 (or MAE ViT-B/16) weights as the backbone's start, from a local file."""
import bisect
import dataclasses
import os
from functools import partial
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np
import torch
import torch.nn as nn

from dataloader import transforms as T
from dataloader.datasets import DataSettings, TrainDataset, composited_training_set
from networks.training import Arrays, Tensors, TrainingRecipe
from networks.vitmatte.losses import vitmatte_losses
from networks.vitmatte.network import ViT
from networks.vitmatte.options import SCHEDULE_KEYS, ViTMatteSchedule
from utils.checkpoint import CheckpointError, extract_state_dict, read_checkpoint
from utils.config import ModelSpec
from utils.recipe import threshold_classes, unit_range

# data/dim_dataset.py's GenMask erodes the trimap on the alpha resized to 640 x 640.
TRIMAP_SIDE = 640
GCA_PIPELINE = "gca"
WARMUP_FACTOR = 0.001  # the warm-up's first multiplier (WarmupParamScheduler's warmup_factor)
BETAS = (0.9, 0.999)
# The modules detectron2's get_default_optimizer_params keeps free of weight decay: of the kinds
# this network has, torch's LayerNorm and BatchNorm; the residual blocks' channel LayerNorm is
# detectron2's own class, which it does not count as one, so it is decayed as published.
NO_DECAY_MODULES = (nn.LayerNorm, nn.BatchNorm2d)
NO_DECAY_PARAMETERS = ("pos_embed",)


def train_tensors(sample: Arrays, spec: ModelSpec) -> Tensors:
    """The image RGB on 0..1 (data/dim_dataset.py's ToTensor; the network normalises), the trimap
    0 / 0.5 / 1 (below 85, between, from 170: the meta-architecture's cut of a training trimap),
    the alpha 1 x H x W."""
    image = torch.from_numpy(np.ascontiguousarray(sample["image"][:, :, ::-1], dtype=np.float32))
    trimap = torch.from_numpy(np.ascontiguousarray(sample["trimap"], dtype=np.float32))
    return {"image": unit_range(image), "trimap": threshold_classes(trimap)[None].float() / 2,
            "alpha": torch.from_numpy(np.ascontiguousarray(sample["alpha"], dtype=np.float32))[None]}


def vitmatte_draws(rng: np.random.Generator, num_fg: int, random_interp: bool, augmentation: bool) -> T.GCADraws:
    """GCA-Matting's draws with data/dim_dataset.py's trimap: eroded at 640 x 640, the alpha
    resized there with nearest (or, with data.random_interp, a random) interpolation."""
    draws = T.draw_gca(rng, num_fg, random_interp, augmentation)
    interp = int(rng.choice(T.INTERPOLATIONS)) if random_interp else cv2.INTER_NEAREST
    return dataclasses.replace(draws, trimap_side=TRIMAP_SIDE, trimap_interp=interp)


def dataset(settings: DataSettings, spec: ModelSpec) -> TrainDataset:
    """data/dim_dataset.py's training samples (vitmatte_draws) over the config's files."""
    if settings.pipeline != GCA_PIPELINE:
        raise ValueError(f"data.pipeline = {settings.pipeline!r}: ViTMatte trains on its own pipeline, GCA-Matting's "
                         "with the trimap eroded at 640 x 640; leave data.pipeline at \"gca\"")
    return composited_training_set(settings, partial(train_tensors, spec=spec), draw=vitmatte_draws)


def losses(network: nn.Module, alpha: torch.Tensor, info: Any, batch: Tensors, spec: ModelSpec) -> Tensors:
    return vitmatte_losses(alpha.float(), batch["alpha"], batch["trimap"])


def layer_id(name: str, depth: int) -> int:
    """configs/common/optimizer.py's get_vit_lr_decay_rate: 0 for the patch and position
    embeddings, i + 1 for ViT block i (its residual convolutions excluded), depth + 1 for the rest."""
    if name.startswith("backbone"):
        if ".pos_embed" in name or ".patch_embed" in name:
            return 0
        if ".blocks." in name and ".residual." not in name:
            return int(name[name.find(".blocks."):].split(".")[2]) + 1
    return depth + 1


def parameter_groups(network: nn.Module, schedule: ViTMatteSchedule) -> List[Dict[str, Any]]:
    """The trained parameters in groups by layer and weight decay: each group's lr_scale is
    layer_decay ^ (depth + 1 - its layer), its weight decay 0 for the position embedding and the
    norm layers, train.weight_decay for the rest."""
    depth = len(network.backbone.blocks)
    groups: Dict[Tuple[int, bool], List[nn.Parameter]] = {}
    for module_name, module in network.named_modules():
        for name, parameter in module.named_parameters(recurse=False):
            if parameter.requires_grad:
                decayed = not isinstance(module, NO_DECAY_MODULES) and name not in NO_DECAY_PARAMETERS
                groups.setdefault((layer_id(f"{module_name}.{name}", depth), decayed), []).append(parameter)
    return [{"params": parameters, "lr_scale": schedule.layer_decay ** (depth + 1 - layer),
             "lr": schedule.lr * schedule.layer_decay ** (depth + 1 - layer),
             "weight_decay": schedule.weight_decay if decayed else 0.0}
            for (layer, decayed), parameters in sorted(groups.items())]


def optimizer(network: nn.Module, spec: ModelSpec) -> torch.optim.Optimizer:
    schedule = spec.options.schedule
    return torch.optim.AdamW(parameter_groups(network, schedule), lr=schedule.lr, betas=BETAS)


def multiplier(schedule: ViTMatteSchedule, step: int, total_step: int) -> float:
    """The learning rate's multiplier at 0-based step `step` of `total_step`: from WARMUP_FACTOR
    x the first factor linearly to the factor at the end of the warm-up, then train.lr_factors by
    the milestones int(fraction x total_step) (a milestone's step takes the next factor)."""
    milestones = [int(fraction * total_step) for fraction in schedule.milestones]

    def stepped(at: int) -> float:
        return schedule.factors[bisect.bisect_right(milestones, at)]

    if step < schedule.warmup_step:
        progress = step / schedule.warmup_step
        return stepped(schedule.warmup_step) * progress + WARMUP_FACTOR * stepped(0) * (1 - progress)
    return stepped(step)


def rate(spec: ModelSpec, step: int, total_step: int, restart_step: Optional[int]) -> float:
    """train.lr x the multiplier; after a train.reset_lr resume after step `restart_step` the
    schedule, warm-up included, starts again over the steps left."""
    schedule = spec.options.schedule
    if restart_step is not None:
        step, total_step = step - restart_step - 1, max(total_step - restart_step - 1, 1)
    return schedule.lr * multiplier(schedule, step, total_step)


def load_pretrained_backbone(backbone: ViT, path: str) -> List[str]:
    """Loads a self-supervised ViT's weights (DINO's dino_deitsmall16_pretrain.pth for S, MAE's
    mae_pretrain_vit_base.pth for B; bare, {'model': ...}, or pretrained/preprocess.py's
    *_fna.pth with 'backbone.' names) into the backbone: its patch embedding's 3 input channels
    with a zero fourth (the trimap's), as preprocess.py makes it; the class token and the final
    norm, which the backbone has not, are left out. Returns the backbone keys the file does not
    give (the relative position tables, the residual convolutions), which keep their
    initialisation."""
    if not os.path.isfile(path):
        raise CheckpointError(f"pre-trained ViT not found: {path!r} (model.imagenet_pretrain_path): ViTMatte-S starts "
                              "from DINO's dino_deitsmall16_pretrain.pth, -B from MAE's mae_pretrain_vit_base.pth. Put "
                              "the file there, or train from the initialisation with model.imagenet_pretrain = false.")
    checkpoint = read_checkpoint(path)
    held = checkpoint.get("model") if isinstance(checkpoint, dict) else None
    state = extract_state_dict(held if isinstance(held, dict) else checkpoint, path)
    state = {key[len("backbone."):] if key.startswith("backbone.") else key: value for key, value in state.items()}
    expected = backbone.state_dict()
    patch = "patch_embed.proj.weight"
    if patch in state and patch in expected and state[patch].shape[1] < expected[patch].shape[1]:
        weight = state[patch]
        extra = weight.new_zeros(weight.shape[0], expected[patch].shape[1] - weight.shape[1], *weight.shape[2:])
        state[patch] = torch.cat([weight, extra], dim=1)
    mismatched = [f"{key} {tuple(value.shape)} vs {tuple(expected[key].shape)}" for key, value in state.items()
                  if key in expected and value.shape != expected[key].shape]
    usable = {key: value for key, value in state.items() if key in expected and value.shape == expected[key].shape}
    if mismatched or not usable:
        shown = "; ".join(mismatched[:3]) if mismatched else "none of its keys are the backbone's"
        raise CheckpointError(f"{path} does not fit this ViT ({shown}): ViTMatte-S takes DINO's ViT-S/16, -B MAE's "
                              "ViT-B/16 (keys like blocks.0.attn.qkv.weight).")
    backbone.load_state_dict(usable, strict=False)
    return [key for key in expected if key not in usable]


def pretrained_backbone(network: nn.Module, path: str, spec: ModelSpec) -> List[str]:
    return load_pretrained_backbone(network.backbone, path)


def shown_inputs(batch: Tensors) -> Tuple[torch.Tensor, torch.Tensor]:
    """The image as it is (0..1) and the 0 / 0.5 / 1 trimap."""
    return batch["image"][0].float().cpu(), batch["trimap"][0].float().cpu()


def no_pictures(info: Any) -> Dict[str, np.ndarray]:
    return {}


TRAINING = TrainingRecipe(train_tensors=train_tensors, dataset=dataset, losses=losses, optimizer=optimizer,
                          learning_rate=rate, schedule_keys=SCHEDULE_KEYS, init_may_lack=(),
                          imagenet_backbone=pretrained_backbone, shown_inputs=shown_inputs, pictures=no_pictures)
