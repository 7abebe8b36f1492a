"""`res_gca_decoder_22`: the shortcut decoder with a second GCA at 1/8, guided by the encoder's
guidance features and unknown mask."""
from typing import Dict, Tuple

import torch

from networks.gca_matting.decoders.res_shortcut_dec import ResShortCut_D_Dec
from networks.gca_matting.gca import GuidedCxtAtten


class ResGuidedCxtAtten_Dec(ResShortCut_D_Dec):
    def __init__(self, layers):
        super().__init__(layers)
        self.gca = GuidedCxtAtten(128, 128)

    def trunk(self, x: torch.Tensor, mid_fea: Dict) -> Tuple[torch.Tensor, Dict]:
        fea3, fea4, fea5 = mid_fea["shortcut"][2:]
        x = self.layer1(x) + fea5
        x = self.layer2(x) + fea4
        x, offset = self.gca(mid_fea["image_fea"], x, mid_fea["unknown"])
        return self.layer3(x) + fea3, {"offset_1": mid_fea["offset_1"], "offset_2": offset}
