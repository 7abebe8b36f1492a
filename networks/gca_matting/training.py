"""GCA-Matting's training recipe, as published (MMagic's GCA and baseline train with it too):
the sample ImageNet-normalised with the trimap one-hot or as labels, the weighted losses of
train.*_weight, Adam with the warm-up and cosine, the composited foregrounds' data pipeline, the
authors' ImageNet ResNet-34 as the encoder's start, and the attention's offsets as pictures."""
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from utils.inference.offset_pictures import flow_to_image
from networks.gca_matting.imagenet import load_imagenet_backbone
from networks.gca_matting.losses import matting_losses
from networks.training import (ADAM_SCHEDULE_KEYS, Arrays, Tensors, TrainingRecipe, adam, composited_dataset,
                               imagenet_picture, scheduled_rate)
from utils.config import ModelSpec
from utils.inference.preprocess import image_to_tensor, trimap_to_tensor


def train_tensors(sample: Arrays, spec: ModelSpec) -> Tensors:
    """Image, fg and bg ImageNet-normalised RGB (the composition loss compares them in that
    space), the trimap as the network takes it, the alpha 1 x H x W."""
    return {
        "image": image_to_tensor(sample["image"]),
        "fg": image_to_tensor(sample["fg"]),
        "bg": image_to_tensor(sample["bg"]),
        "alpha": torch.from_numpy(np.ascontiguousarray(sample["alpha"], dtype=np.float32))[None],
        "trimap": trimap_to_tensor(sample["trimap"], spec.options.trimap_channel),
    }


def losses(network: nn.Module, alpha: torch.Tensor, info: Optional[Dict], batch: Tensors,
           spec: ModelSpec) -> Tensors:
    """matting_losses on the float alpha with the config's weights; the network and its info are
    not needed."""
    return matting_losses(alpha.float(), batch, spec.options.loss_weights)


def optimizer(network: nn.Module, spec: ModelSpec) -> torch.optim.Optimizer:
    return adam(network, spec.options.adam)


def rate(spec: ModelSpec, step: int, total_step: int, restart_step: Optional[int]) -> float:
    return scheduled_rate(spec.options.adam, step, total_step, restart_step)


def imagenet_backbone(network: nn.Module, path: str, spec: ModelSpec) -> List[str]:
    return load_imagenet_backbone(network.encoder, path, spec.options.trimap_channel)


def shown_inputs(batch: Tensors) -> Tuple[torch.Tensor, torch.Tensor]:
    """The image un-normalised, the trimap's classes (0, 1, 2) halved."""
    trimap = batch["trimap"][0].float().cpu()
    classes = trimap.argmax(0, keepdim=True) if trimap.shape[0] == 3 else trimap
    return imagenet_picture(batch["image"][0]), classes / 2


def offset_pictures(info: Optional[Dict]) -> Dict[str, np.ndarray]:
    """The first image's offsets of each GCA block as a flow picture (3 x h x w uint8); none for
    a network without GCA."""
    return {name: flow_to_image(info[name][0][0].cpu().numpy()).transpose(2, 0, 1)
            for name in ("offset_1", "offset_2") if info and name in info}


TRAINING = TrainingRecipe(train_tensors=train_tensors, dataset=composited_dataset(train_tensors), losses=losses,
                          optimizer=optimizer, learning_rate=rate, schedule_keys=ADAM_SCHEDULE_KEYS, init_may_lack=(),
                          imagenet_backbone=imagenet_backbone, shown_inputs=shown_inputs, pictures=offset_pictures)
