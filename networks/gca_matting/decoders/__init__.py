"""Decoders by the names configs use (`model.arch.decoder`)."""
from typing import Callable, Dict

import torch.nn as nn

from networks.gca_matting.decoders.res_gca_dec import ResGuidedCxtAtten_Dec
from networks.gca_matting.decoders.res_shortcut_dec import ResShortCut_D_Dec


def res_shortcut_decoder_22() -> nn.Module:
    return ResShortCut_D_Dec([2, 3, 3, 2])


def res_gca_decoder_22() -> nn.Module:
    return ResGuidedCxtAtten_Dec([2, 3, 3, 2])


DECODERS: Dict[str, Callable[[], nn.Module]] = {
    "res_shortcut_decoder_22": res_shortcut_decoder_22,
    "res_gca_decoder_22": res_gca_decoder_22,
}
