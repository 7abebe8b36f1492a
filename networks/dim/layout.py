"""The layout of MMagic's released DIM files (MMEditing 2020, read from MMagic's DIM, VGG16,
PlainDecoder and PlainRefiner): every tensor under `state_dict`, the encoder's and decoder's with
the prefix `backbone.` (`backbone.encoder.layer1.0.weight` ... `backbone.decoder.deconv1.bias`, 42
tensors), the refiner's with `refiner.` (8 more, in the stage-2 and stage-3 files). This project's
network uses the same names below the prefixes."""
from typing import Dict, Optional

import torch

from networks.mmagic.layout import PREFIX

REFINER_PREFIX = "refiner."
STEM = PREFIX + "encoder.layer1.0.weight"
DECODER_HEAD = PREFIX + "decoder.deconv6_1.weight"
STAGE1_CONFIG, REFINED_CONFIGS = "config/mmagic-dim-stage1.toml", ("config/mmagic-dim-stage2.toml",
                                                                    "config/mmagic-dim-stage3.toml")


def dim_key(key: str) -> str:
    """The released files' name of one of this project's DIM state-dict keys."""
    return key if key.startswith(REFINER_PREFIX) else PREFIX + key


def describe(state_dict: Dict[str, torch.Tensor]) -> Optional[str]:
    """What an MMagic DIM state dict is, with the config to use, or None for another layout."""
    if STEM not in state_dict or DECODER_HEAD not in state_dict:
        return None
    if any(key.startswith(REFINER_PREFIX) for key in state_dict):
        return (f"an MMagic DIM checkpoint with the refiner (stage 2 or 3; model.family = \"mmagic-dim\", "
                f"model.arch.refiner = \"plain_refiner\"): use {REFINED_CONFIGS[1]} or {REFINED_CONFIGS[0]}")
    return ("an MMagic DIM stage-1 checkpoint, without the refiner (model.family = \"mmagic-dim\", "
            f"model.arch.refiner = \"\"): use {STAGE1_CONFIG}")
