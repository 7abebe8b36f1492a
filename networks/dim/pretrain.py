"""DIM's ImageNet initialisation: VGG16's 13 convolutions from a local state-dict file (nothing is
downloaded), its first convolution extended from the 3 image channels to the image and the
trimap, the trimap's weights zero; conv6, the decoder and the refiner keep their initialisation."""
import os
import re
from typing import Dict, List

import torch

from networks.dim.network import VGG16Encoder
from utils.checkpoint import CheckpointError, extract_state_dict, read_checkpoint

# torchvision's vgg16: `features.N` for the convolutions (ReLUs and poolings have no tensors).
_TORCHVISION_CONV = re.compile(r"^features\.(\d+)\.(weight|bias)$")
FIRST_CONV = "layer1.0.weight"


def encoder_conv_keys(encoder: VGG16Encoder) -> List[str]:
    """The encoder's VGG16 convolution keys (weight, bias) in order, conv6 left out."""
    return [key for key in encoder.state_dict() if key.startswith("layer")]


def _from_torchvision(state: Dict[str, torch.Tensor], keys: List[str]) -> Dict[str, torch.Tensor]:
    """torchvision's `features.N` tensors under the encoder's names, in the order of N (weight
    before bias); {} unless there are as many as the encoder has."""
    found = sorted((int(match.group(1)), match.group(2) == "bias", key) for key in state
                   if (match := _TORCHVISION_CONV.match(key)))
    return {ours: state[theirs] for ours, (_, _, theirs) in zip(keys, found)} if len(found) == len(keys) else {}


def vgg16_state(state: Dict[str, torch.Tensor], encoder: VGG16Encoder, path: str) -> Dict[str, torch.Tensor]:
    """The VGG16 tensors of a state dict (torchvision's `features.N` names, or this encoder's
    `layer1.0` ...) under the encoder's names, the first conv with 3 or 4 input channels as given.
    CheckpointError naming the file for another layout."""
    keys = encoder_conv_keys(encoder)
    state = {key[len("encoder."):] if key.startswith("encoder.") else key: value for key, value in state.items()}
    if all(key in state for key in keys):
        return {key: state[key] for key in keys}
    converted = _from_torchvision(state, keys)
    if not converted:
        raise CheckpointError(f"{path}: not a VGG16 state dict (expected torchvision's features.0.weight ... "
                              f"features.28.bias, or {FIRST_CONV} ... layer5.4.bias); give the ImageNet VGG16 file")
    return converted


def load_vgg16_imagenet(encoder: VGG16Encoder, path: str) -> List[str]:
    """Loads ImageNet VGG16 weights from the file at `path` into `encoder`, a 3-channel first
    conv extended with zero weights for the trimap channel; returns the encoder keys it did not
    set (conv6's). CheckpointError for a missing file or tensors that do not fit."""
    if not os.path.isfile(path):
        raise CheckpointError(f"VGG16 ImageNet weights not found: {path}; give the local file of a VGG16 state dict "
                              "(torchvision's layout), or train from MMagic's initialisation without it")
    state = vgg16_state(extract_state_dict(read_checkpoint(path), path), encoder, path)
    first = state[FIRST_CONV]
    expected = encoder.state_dict()
    if first.shape[1] == 3:
        state[FIRST_CONV] = torch.cat([first, first.new_zeros(first.shape[0], 1, *first.shape[2:])], dim=1)
    wrong = [f"{key} {tuple(value.shape)} vs {tuple(expected[key].shape)}" for key, value in state.items()
             if value.shape != expected[key].shape]
    if wrong:
        raise CheckpointError(f"{path}: tensors do not fit VGG16: {', '.join(wrong[:3])}")
    encoder.load_state_dict(state, strict=False)
    return [key for key in expected if key not in state]
