"""`res_shortcut_decoder_22`: the decoder trunk adding the encoder's skip branches."""
from typing import Dict, Optional, Tuple

import torch

from networks.gca_matting.decoders.resnet_dec import ResNet_D_Dec


class ResShortCut_D_Dec(ResNet_D_Dec):
    def forward(self, x: torch.Tensor, mid_fea: Dict) -> Tuple[torch.Tensor, Optional[Dict]]:
        x, info = self.trunk(x, mid_fea)
        fea1, fea2 = mid_fea["shortcut"][:2]
        return self.tail(x, fea2, fea1), info

    def trunk(self, x: torch.Tensor, mid_fea: Dict) -> Tuple[torch.Tensor, Optional[Dict]]:
        """Layers 1-3 with their skips: the 1/4-resolution features, and the GCA info or None."""
        fea3, fea4, fea5 = mid_fea["shortcut"][2:]
        x = self.layer1(x) + fea5
        x = self.layer2(x) + fea4
        return self.layer3(x) + fea3, None

    def tail(self, x: torch.Tensor, fea2: torch.Tensor, fea1: torch.Tensor) -> torch.Tensor:
        """Layer 4 and the head: 1/4-resolution features and the 1/2 and full-resolution skips -> alpha."""
        return self.head(self.layer4(x) + fea2, fea1)
