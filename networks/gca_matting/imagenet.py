"""GCA-Matting's backbone initialisation: the ImageNet-pretrained ResNet-34 of its authors
(model.imagenet_pretrain_path), loaded into the encoder."""
import os
from typing import List

import torch
import torch.nn as nn

from utils.checkpoint import CheckpointError, extract_state_dict, read_checkpoint


def load_imagenet_backbone(encoder: nn.Module, path: str, trimap_channel: int) -> List[str]:
    """Loads an ImageNet-pretrained ResNet-34 backbone (encoder-relative keys) into the encoder,
    zero-padding its 3-channel stem to 3 + trimap_channel inputs; returns the encoder keys it
    did not provide (the skip branches, guidance head and GCA start from their init)."""
    if not os.path.isfile(path):
        raise CheckpointError(
            f"ImageNet backbone not found: {path} (model.imagenet_pretrain_path). Put the file there, or "
            "train from scratch with model.imagenet_pretrain = false.")
    state = extract_state_dict(read_checkpoint(path), path)
    stem_key, v_key = "conv1.module.weight_bar", "conv1.module.weight_v"
    if stem_key in state and state[stem_key].shape[1] == 3:
        weight = state[stem_key]
        pad = weight.new_zeros(weight.shape[0], trimap_channel, *weight.shape[2:])
        state[stem_key] = torch.cat([weight, pad], dim=1)
        state[v_key] = torch.cat([state[v_key], state[v_key].new_zeros(pad[0].numel())])
    expected = encoder.state_dict()
    usable = {k: v for k, v in state.items() if k in expected and expected[k].shape == v.shape}
    if not usable:
        raise CheckpointError(f"{path}: no tensor fits the encoder; is it the ResNet-34 backbone "
                              "(keys like conv1.module.weight_bar, layer1.0.conv1.module.weight_bar)?")
    encoder.load_state_dict(usable, strict=False)
    return [k for k in expected if k not in usable]
