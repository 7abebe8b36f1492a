"""`resnet_gca_encoder_29`: the shortcut encoder with a guidance head and GCA after layer2."""
from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from networks.gca_matting.encoders.res_shortcut_enc import ResShortCut_D
from networks.gca_matting.gca import GuidedCxtAtten
from networks.gca_matting.spectral_norm import SpectralNorm
from networks.ops import InPlaceBatchNorm2d


def unknown_mask(x: torch.Tensor, trimap_channel: int) -> torch.Tensor:
    """The unknown region of the network input, nearest-downsampled to 1/8: N x 1 x H/8 x W/8."""
    if trimap_channel == 3:
        unknown = x[:, 4:5, ...]
    else:
        unknown = x[:, 3:, ...].eq(1.).float()
    return F.interpolate(unknown, scale_factor=1 / 8, mode="nearest")


class ResGuidedCxtAtten(ResShortCut_D):
    def __init__(self, layers, trimap_channel: int = 3):
        super().__init__(layers, trimap_channel)
        guidance = []
        for cin, cout in ((3, 16), (16, 32), (32, 128)):
            guidance += [
                nn.ReflectionPad2d(1),
                SpectralNorm(nn.Conv2d(cin, cout, kernel_size=3, padding=0, stride=2, bias=False)),
                nn.ReLU(inplace=True),
                InPlaceBatchNorm2d(cout),
            ]
        self.guidance_head = nn.Sequential(*guidance)
        self.gca = GuidedCxtAtten(128, 128)

    def trunk(self, x: torch.Tensor) -> Tuple[torch.Tensor, Dict, Tuple[torch.Tensor, ...]]:
        x1, out = self.stem(x)
        image_feature = self.guidance_head(x[:, :3, ...])
        unknown = unknown_mask(x, self.trimap_channel)
        x2 = self.layer1(out)
        x3 = self.layer2(x2)
        x3, offset = self.gca(image_feature, x3, unknown)
        x4 = self.layer3(x3)
        out = self.layer_bottleneck(x4)
        return out, {"image_fea": image_feature, "unknown": unknown, "offset_1": offset}, (x, x1, x2, x3, x4)
