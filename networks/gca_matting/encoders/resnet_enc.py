"""ResNet-D style encoder trunk: stem and four residual stages, every conv spectrally normalised."""
from typing import List, Optional

import torch
import torch.nn as nn

from networks.gca_matting.spectral_norm import SpectralNorm
from networks.ops import InPlaceBatchNorm2d, conv1x1, conv3x3


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None):
        super().__init__()
        self.conv1 = SpectralNorm(conv3x3(inplanes, planes, stride))
        self.bn1 = InPlaceBatchNorm2d(planes)
        self.activation = nn.ReLU(inplace=True)
        self.conv2 = SpectralNorm(conv3x3(planes, planes))
        self.bn2 = InPlaceBatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.activation(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity  # in place: out is this block's own map (a BatchNorm's output, never needed again)
        return self.activation(out)


class ResNet_D(nn.Module):
    """Stem (three 3x3 convs, no max-pool) and stages of [64, 128, 256, 512] channels."""

    def __init__(self, layers: List[int], trimap_channel: int = 3):
        super().__init__()
        self.trimap_channel = trimap_channel
        self.inplanes = 64
        self.conv1 = SpectralNorm(nn.Conv2d(3 + trimap_channel, 32, kernel_size=3, stride=2, padding=1, bias=False))
        self.conv2 = SpectralNorm(nn.Conv2d(32, 32, kernel_size=3, stride=1, padding=1, bias=False))
        self.conv3 = SpectralNorm(nn.Conv2d(32, self.inplanes, kernel_size=3, stride=2, padding=1, bias=False))
        self.bn1 = InPlaceBatchNorm2d(32)
        self.bn2 = InPlaceBatchNorm2d(32)
        self.bn3 = InPlaceBatchNorm2d(self.inplanes)
        self.activation = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(64, layers[0], stride=1)
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer_bottleneck = self._make_layer(512, layers[3], stride=2)
        self._init_weights()

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1:
            downsample = nn.Sequential(
                nn.AvgPool2d(2, stride),
                SpectralNorm(conv1x1(self.inplanes, planes)),
                InPlaceBatchNorm2d(planes),
            )
        elif self.inplanes != planes:
            downsample = nn.Sequential(SpectralNorm(conv1x1(self.inplanes, planes)), InPlaceBatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight_bar)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.constant_(m.bn2.weight, 0)
        # A backbone pretrained on RGB starts blind to the trimap; training from scratch does too.
        with torch.no_grad():
            self.conv1.module.weight_bar[:, 3:] = 0

    def stem(self, x: torch.Tensor):
        """Returns the 1/2-resolution features x1 (32 ch) and the 1/4-resolution output (64 ch)."""
        out = self.activation(self.bn1(self.conv1(x)))
        x1 = self.activation(self.bn2(self.conv2(out)))
        out = self.activation(self.bn3(self.conv3(x1)))
        return x1, out
