"""Encoders by the names configs use (`model.arch.encoder`)."""
from typing import Callable, Dict

import torch.nn as nn

from networks.gca_matting.encoders.res_gca_enc import ResGuidedCxtAtten
from networks.gca_matting.encoders.res_shortcut_enc import ResShortCut_D


def res_shortcut_encoder_29(trimap_channel: int = 3) -> nn.Module:
    return ResShortCut_D([3, 4, 4, 2], trimap_channel)


def resnet_gca_encoder_29(trimap_channel: int = 3) -> nn.Module:
    return ResGuidedCxtAtten([3, 4, 4, 2], trimap_channel)


ENCODERS: Dict[str, Callable[..., nn.Module]] = {
    "res_shortcut_encoder_29": res_shortcut_encoder_29,
    "resnet_gca_encoder_29": resnet_gca_encoder_29,
}
