"""AimNet (Li, Zhang and Tao, "Deep Automatic Natural Image Matting", IJCAI 2021): the alpha of a
photo's salient foreground from the photo alone.

A ResNet-34 whose stem keeps full resolution and whose five downsamplings are 3x3 max-poolings
that remember where each maximum came from; a semantic decoder (pyramid pooling, squeeze-and-
excitation) that predicts a 3-class map (background, transition, foreground) at full resolution;
a detail decoder that un-pools with the encoder's indices and is steered by a spatial attention
map from the semantic decoder; their fusion: the detail alpha inside the transition class, 1 in
the foreground class, 0 in the background class. Module names follow the released checkpoint's
keys (networks/aim/layout.py).
"""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from networks.ops import conv1x1, conv3x3

BACKGROUND, TRANSITION, FOREGROUND = 0, 1, 2
RESNET34_BLOCKS = (3, 4, 6, 3)
STAGE_CHANNELS = (64, 128, 256, 512)
PYRAMID_BINS = (1, 3, 5)


class ResidualBlock(nn.Module):
    """ResNet's basic block: two 3x3 convs with batch norm, the input added back (through a 1x1
    conv where the channels change)."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = (nn.Sequential(conv1x1(in_channels, channels), nn.BatchNorm2d(channels))
                           if in_channels != channels else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


def residual_stage(in_channels: int, channels: int, blocks: int) -> nn.Sequential:
    return nn.Sequential(ResidualBlock(in_channels, channels), *(ResidualBlock(channels, channels)
                                                                  for _ in range(blocks - 1)))


def conv_bn_relu(in_channels: int, out_channels: int, dilation: int = 1) -> List[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


def decoder_stage(channels: Tuple[int, ...], upsample: bool) -> nn.Sequential:
    """3x3 conv + BN + ReLU from channels[i] to channels[i + 1], then, for the semantic decoder,
    a bilinear x2 upsampling."""
    layers = [layer for pair in zip(channels, channels[1:]) for layer in conv_bn_relu(*pair)]
    return nn.Sequential(*layers, *([upsample_by(2)] if upsample else []))


def upsample_by(factor: int) -> nn.Upsample:
    return nn.Upsample(scale_factor=factor, mode="bilinear", align_corners=False)


class SqueezeExcitation(nn.Module):
    """Channel attention: the channels' means through a bottleneck (1/16) give each a weight."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(channels // reduction, channels, bias=False), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))
        return x * weights[:, :, None, None]


class PyramidPooling(nn.Module):
    """The features average-pooled to 1x1, 3x3 and 5x5 bins, each through a 1x1 conv and upsampled
    back, concatenated with the features and fused by a 1x1 conv + ReLU."""

    def __init__(self, channels: int, out_channels: int, bins: Tuple[int, ...] = PYRAMID_BINS):
        super().__init__()
        self.stages = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(size), nn.Conv2d(channels, channels, 1, bias=False))
                                    for size in bins)
        self.bottleneck = nn.Conv2d(channels * (len(bins) + 1), out_channels, kernel_size=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        size = features.shape[2:]
        priors = [F.interpolate(stage(features), size=size, mode="bilinear", align_corners=False)
                  for stage in self.stages]
        return F.relu(self.bottleneck(torch.cat(priors + [features], 1)))


def pyramid_branch(out_channels: int, factor: int) -> nn.Sequential:
    """The pooled features brought to a decoder stage: 3x3 conv + BN + ReLU, upsampled by `factor`."""
    return nn.Sequential(*conv_bn_relu(STAGE_CHANNELS[-1], out_channels), upsample_by(factor))


def fuse(semantic: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
    """The detail alpha where the semantic map's likeliest class is the transition, 1 where it is
    the foreground, 0 where it is the background (the first class wins a tie)."""
    classes = semantic.argmax(dim=1, keepdim=True)
    return torch.where(classes == FOREGROUND, 1.0, torch.where(classes == TRANSITION, detail, 0.0))


class AimNet(nn.Module):
    """network(image N x 3 x H x W, None) -> (fused alpha N x 1 x H x W, {"semantic": the 3-class
    sigmoid map, "detail": the detail decoder's alpha}); H and W multiples of 32."""

    def __init__(self):
        super().__init__()
        self.encoder0 = nn.Sequential(nn.Conv2d(3, 64, kernel_size=7, padding=3, bias=False), nn.BatchNorm2d(64),
                                      nn.ReLU(inplace=True))
        for index in range(5):
            setattr(self, f"mp{index}", nn.MaxPool2d(kernel_size=3, stride=2, padding=1, return_indices=True))
        inputs = (64,) + STAGE_CHANNELS[:-1]
        stages = [residual_stage(*args) for args in zip(inputs, STAGE_CHANNELS, RESNET34_BLOCKS)]
        self.encoder1 = nn.Sequential(stages[0])
        self.encoder2, self.encoder3, self.encoder4 = stages[1:]

        self.psp_module = PyramidPooling(512, 512)
        self.psp4, self.psp3, self.psp2, self.psp1 = (pyramid_branch(channels, factor) for channels, factor in
                                                      ((256, 2), (128, 4), (64, 8), (64, 16)))
        self.decoder4_g = decoder_stage((1024, 512, 512, 256), upsample=True)
        self.decoder4_g_se = SqueezeExcitation(256)
        self.decoder3_g = decoder_stage((512, 256, 256, 128), upsample=True)
        self.decoder3_g_se = SqueezeExcitation(128)
        self.decoder2_g = decoder_stage((256, 128, 128, 64), upsample=True)
        self.decoder2_g_se = SqueezeExcitation(64)
        self.decoder1_g = decoder_stage((128, 64, 64, 64), upsample=True)
        self.decoder1_g_se = SqueezeExcitation(64)
        self.decoder0_g = decoder_stage((128, 64, 64), upsample=True)
        self.decoder0_g_spatial = nn.Conv2d(2, 1, 7, padding=3)
        self.decoder0_g_se = SqueezeExcitation(64)
        self.decoder_final_g = nn.Conv2d(64, 3, 3, padding=1)

        self.bridge_block = nn.Sequential(*(layer for _ in range(3) for layer in conv_bn_relu(512, 512, dilation=2)))
        self.decoder4_l = decoder_stage((1024, 512, 512, 256), upsample=False)
        self.decoder3_l = decoder_stage((512, 256, 256, 128), upsample=False)
        self.decoder2_l = decoder_stage((256, 128, 128, 64), upsample=False)
        self.decoder1_l = decoder_stage((128, 64, 64, 64), upsample=False)
        self.decoder0_l = decoder_stage((128, 64, 64), upsample=False)
        self.decoder_final_l = nn.Conv2d(64, 1, 3, padding=1)

    def encode(self, image: torch.Tensor) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """([e0 at 1/1, e1 at 1/4, e2 at 1/8, e3 at 1/16, e4 at 1/32], the five poolings' indices)."""
        e0 = self.encoder0(image)
        pooled, index0 = self.mp0(e0)
        pooled, index1 = self.mp1(pooled)
        e1 = self.encoder1(pooled)
        features, indices = [e0, e1], [index0, index1]
        for pool, stage in ((self.mp2, self.encoder2), (self.mp3, self.encoder3), (self.mp4, self.encoder4)):
            pooled, index = pool(features[-1])
            features.append(stage(pooled))
            indices.append(index)
        return features, indices

    def semantic(self, e4: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(the 3-class sigmoid map, the spatial attention map for the detail decoder), both at 1/1."""
        psp = self.psp_module(e4)
        d = self.decoder4_g_se(self.decoder4_g(torch.cat((psp, e4), 1)))
        for branch, stage, excitation in ((self.psp4, self.decoder3_g, self.decoder3_g_se),
                                          (self.psp3, self.decoder2_g, self.decoder2_g_se),
                                          (self.psp2, self.decoder1_g, self.decoder1_g_se)):
            d = excitation(stage(torch.cat((branch(psp), d), 1)))
        d0 = self.decoder0_g(torch.cat((self.psp1(psp), d), 1))
        pooled_channels = torch.cat([d0.mean(dim=1, keepdim=True), d0.amax(dim=1, keepdim=True)], dim=1)
        attention = torch.sigmoid(self.decoder0_g_spatial(pooled_channels))
        return torch.sigmoid(self.decoder_final_g(self.decoder0_g_se(d0))), attention

    def detail(self, features: List[torch.Tensor], indices: List[torch.Tensor],
               attention: torch.Tensor) -> torch.Tensor:
        """The detail decoder's alpha at 1/1: un-pooled stage by stage with the encoder's indices."""
        e0, e1, e2, e3, e4 = features
        d = self.decoder4_l(torch.cat((self.bridge_block(e4), e4), 1))
        for index, skip, stage in ((indices[4], e3, self.decoder3_l), (indices[3], e2, self.decoder2_l),
                                   (indices[2], e1, self.decoder1_l)):
            d = stage(torch.cat((F.max_unpool2d(d, index, kernel_size=2, stride=2), skip), 1))
        d = F.max_unpool2d(F.max_unpool2d(d, indices[1], kernel_size=2, stride=2), indices[0], kernel_size=2,
                           stride=2)
        d = self.decoder0_l(torch.cat((d, e0), 1))
        return torch.sigmoid(self.decoder_final_l(d + d * attention))

    def forward(self, image: torch.Tensor, trimap: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        features, indices = self.encode(image)
        semantic, attention = self.semantic(features[-1])
        detail = self.detail(features, indices, attention)
        return fuse(semantic, detail), {"semantic": semantic, "detail": detail}
