"""Training DIM as MMagic's three configs do: the samples as its data preprocessor gives them, and
its losses for the stage the network's frozen parts say (stage 1: no refiner; stage 2: the
encoder-decoder frozen, train.freeze = ["encoder", "decoder"]; stage 3: nothing frozen), Adam with
its constant rate, the VGG16 ImageNet weights as the encoder's start."""
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from networks.dim.losses import dim_losses
from networks.dim.pretrain import load_vgg16_imagenet
from networks.training import adam, imagenet_picture, scheduled_rate
from utils.config import ModelSpec
from utils.recipe import Recipe, unit_range


def train_tensors(sample: Dict[str, np.ndarray], recipe: Recipe) -> Dict[str, torch.Tensor]:
    """A training sample as MattorPreprocessor gives it: the image and the trimap through DIM's
    recipe's encoders (normalised on 0..255, grey / 255), as at test time, and the merged image, fg
    and bg as RGB on 0..1 for the composition loss; the alpha 1 x H x W."""
    rgb = {key: torch.from_numpy(np.ascontiguousarray(sample[key][:, :, ::-1], dtype=np.float32))
           for key in ("image", "fg", "bg")}
    return {
        "image": recipe.image(rgb["image"]),
        "trimap": recipe.trimap(torch.from_numpy(np.ascontiguousarray(sample["trimap"], dtype=np.float32))),
        "merged": unit_range(rgb["image"]),
        "fg": unit_range(rgb["fg"]),
        "bg": unit_range(rgb["bg"]),
        "alpha": torch.from_numpy(np.ascontiguousarray(sample["alpha"], dtype=np.float32))[None],
    }


def is_trained(part: Optional[nn.Module]) -> bool:
    return part is not None and any(p.requires_grad for p in part.parameters())


def losses(network: nn.Module, alpha: torch.Tensor, info: Dict, batch: Dict[str, torch.Tensor],
           spec: ModelSpec) -> Dict[str, torch.Tensor]:
    """MMagic's DIM losses (networks.dim.losses.dim_losses, with its own weights 0.5 / 0.5 / 1) on
    the training forward's two predictions: the encoder-decoder's where it is trained, the
    refiner's where it is."""
    train_backbone = is_trained(network.encoder) or is_trained(network.decoder)
    return dim_losses(info["decoder_alpha"].float(), None if info["refined_alpha"] is None
                      else info["refined_alpha"].float(), batch, train_backbone, is_trained(network.refiner))


def optimizer(network: nn.Module, spec: ModelSpec) -> torch.optim.Optimizer:
    return adam(network, spec.options.adam)


def rate(spec: ModelSpec, step: int, total_step: int, restart_step: Optional[int]) -> float:
    return scheduled_rate(spec.options.adam, step, total_step, restart_step)


def imagenet_backbone(network: nn.Module, path: str, spec: ModelSpec) -> List[str]:
    return load_vgg16_imagenet(network.encoder, path)


def shown_inputs(batch: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """The image un-normalised (ImageNet's on 0..255 is ImageNet's on 0..1), the grey / 255 trimap."""
    return imagenet_picture(batch["image"][0]), batch["trimap"][0].float().cpu()


def no_pictures(info: Dict) -> Dict[str, np.ndarray]:
    return {}
