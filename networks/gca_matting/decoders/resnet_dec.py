"""ResNet-D style decoder trunk: four upsampling stages, LeakyReLU(0.2), spectral norm."""
from typing import List, Optional

import torch
import torch.nn as nn

from networks.gca_matting.spectral_norm import SpectralNorm
from networks.ops import InPlaceBatchNorm2d, conv1x1, conv3x3


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 upsample: Optional[nn.Module] = None):
        super().__init__()
        if stride > 1:
            self.conv1 = SpectralNorm(nn.ConvTranspose2d(inplanes, inplanes, kernel_size=4, stride=2,
                                                         padding=1, bias=False))
        else:
            self.conv1 = SpectralNorm(conv3x3(inplanes, inplanes))
        self.bn1 = InPlaceBatchNorm2d(inplanes)
        self.activation = nn.LeakyReLU(0.2, inplace=True)
        self.conv2 = SpectralNorm(conv3x3(inplanes, planes))
        self.bn2 = InPlaceBatchNorm2d(planes)
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.upsample is None else self.upsample(x)
        out = self.activation(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity  # in place: out is this block's own map (a BatchNorm's output, never needed again)
        return self.activation(out)


class ResNet_D_Dec(nn.Module):
    def __init__(self, layers: List[int]):
        super().__init__()
        self.inplanes = 512
        self.conv1 = SpectralNorm(nn.ConvTranspose2d(32, 32, kernel_size=4, stride=2, padding=1, bias=False))
        self.bn1 = InPlaceBatchNorm2d(32)
        self.leaky_relu = nn.LeakyReLU(0.2, inplace=True)
        self.conv2 = nn.Conv2d(32, 1, kernel_size=3, stride=1, padding=1)
        self.tanh = nn.Tanh()
        self.layer1 = self._make_layer(256, layers[0])
        self.layer2 = self._make_layer(128, layers[1])
        self.layer3 = self._make_layer(64, layers[2])
        self.layer4 = self._make_layer(32, layers[3])
        self._init_weights()

    def _make_layer(self, planes: int, blocks: int) -> nn.Sequential:
        upsample = nn.Sequential(
            nn.UpsamplingNearest2d(scale_factor=2),
            SpectralNorm(conv1x1(self.inplanes, planes)),
            InPlaceBatchNorm2d(planes),
        )
        layers = [BasicBlock(self.inplanes, planes, stride=2, upsample=upsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight_bar if hasattr(m, "weight_bar") else m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.constant_(m.bn2.weight, 0)

    def head(self, x: torch.Tensor, full_res_shortcut: torch.Tensor) -> torch.Tensor:
        """Last upsampling to full resolution and the alpha prediction in [0, 1]."""
        x = self.leaky_relu(self.bn1(self.conv1(x))) + full_res_shortcut
        return (self.tanh(self.conv2(x)) + 1.0) / 2.0
