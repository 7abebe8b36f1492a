"""`res_shortcut_encoder_29`: the ResNet-D trunk plus five skip branches for the decoder."""
from typing import Dict, Tuple

import torch
import torch.nn as nn

from networks.gca_matting.encoders.resnet_enc import ResNet_D
from networks.gca_matting.spectral_norm import SpectralNorm
from networks.ops import InPlaceBatchNorm2d


def make_shortcut(inplanes: int, planes: int) -> nn.Sequential:
    return nn.Sequential(
        SpectralNorm(nn.Conv2d(inplanes, planes, kernel_size=3, padding=1, bias=False)),
        nn.ReLU(inplace=True),
        InPlaceBatchNorm2d(planes),
        SpectralNorm(nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=False)),
        nn.ReLU(inplace=True),
        InPlaceBatchNorm2d(planes),
    )


class ResShortCut_D(ResNet_D):
    def __init__(self, layers, trimap_channel: int = 3):
        super().__init__(layers, trimap_channel)
        # Built after the trunk's init on purpose: the skip branches keep PyTorch's default init.
        channels = [3 + trimap_channel, 32, 64, 128, 256]
        out_channels = [32, 32, 64, 128, 256]
        self.shortcut = nn.ModuleList(make_shortcut(c, o) for c, o in zip(channels, out_channels))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Dict]:
        out, mid_fea, skip_inputs = self.trunk(x)
        mid_fea["shortcut"] = tuple(branch(feature) for branch, feature in zip(self.shortcut, skip_inputs))
        return out, mid_fea

    def trunk(self, x: torch.Tensor) -> Tuple[torch.Tensor, Dict, Tuple[torch.Tensor, ...]]:
        """The embedding, the mid features other than the skips, and the five skip branches'
        inputs (the input, then 1/2 .. 1/16)."""
        x1, out = self.stem(x)
        x2 = self.layer1(out)
        x3 = self.layer2(x2)
        x4 = self.layer3(x3)
        out = self.layer_bottleneck(x4)
        return out, {"image": x[:, :3, ...]}, (x, x1, x2, x3, x4)
