"""`res_shortcut_decoder_22`: the decoder trunk adding the encoder's skip branches."""
from typing import Dict, Optional, Tuple

import torch

from networks.decoders.resnet_dec import ResNet_D_Dec


class ResShortCut_D_Dec(ResNet_D_Dec):
    def forward(self, x: torch.Tensor, mid_fea: Dict) -> Tuple[torch.Tensor, Optional[Dict]]:
        fea1, fea2, fea3, fea4, fea5 = mid_fea["shortcut"]
        x = self.layer1(x) + fea5
        x = self.layer2(x) + fea4
        x = self.layer3(x) + fea3
        x = self.layer4(x) + fea2
        return self.head(x, fea1), None
