"""The matting network: an encoder and a decoder chosen by name."""
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn

from networks.decoders import DECODERS
from networks.encoders import ENCODERS
from networks.gca import GuidedCxtAtten


class Generator(nn.Module):
    def __init__(self, encoder: nn.Module, decoder: nn.Module, trimap_channel: int):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.trimap_channel = trimap_channel

    def forward(self, image: torch.Tensor, trimap: torch.Tensor) -> Tuple[torch.Tensor, Optional[Dict]]:
        """image N x 3 x H x W (normalised), trimap N x trimap_channel x H x W; H, W multiples of 32.
        Returns alpha N x 1 x H x W and, for GCA models, {offset_1, offset_2: (offsets, scales)}."""
        embedding, mid_fea = self.encoder(torch.cat((image, trimap), dim=1))
        return self.decoder(embedding, mid_fea)


def _lookup(registry: Dict, name: str, key: str):
    if name not in registry:
        raise ValueError(f"unknown {key} {name!r}; choose one of: {', '.join(sorted(registry))}")
    return registry[name]


def build_generator(encoder: str, decoder: str, trimap_channel: int = 3) -> Generator:
    """Builds the generator from the names in `model.arch.encoder` / `model.arch.decoder`."""
    if trimap_channel not in (1, 3):
        raise ValueError(f"model.trimap_channel must be 1 or 3, got {trimap_channel!r}")
    if ("gca" in encoder) != ("gca" in decoder):
        raise ValueError(f"model.arch: encoder {encoder!r} and decoder {decoder!r} do not pair; "
                         "a GCA decoder needs the GCA encoder's guidance features and the reverse")
    build_encoder = _lookup(ENCODERS, encoder, "model.arch.encoder")
    build_decoder = _lookup(DECODERS, decoder, "model.arch.decoder")
    return Generator(build_encoder(trimap_channel), build_decoder(), trimap_channel)


def set_gca_block(model: nn.Module, block: int) -> None:
    """Queries per attention block in every GCA module: -1 the published L x L form, 0 automatic
    (the published form where it fits the memory budget), N > 0 blocks of N queries."""
    if block < -1:
        raise ValueError(f"test.gca_block must be -1, 0 or a positive number of queries, got {block}")
    for module in model.modules():
        if isinstance(module, GuidedCxtAtten):
            module.block = block
