"""The released AimNet checkpoint's layout: `{'state_dict': ...}` saved from the published module,
whose ResNet-34 is both a child `resnet` and, through the same modules, encoder0..encoder4. So the
file holds every backbone tensor twice (`resnet.layer2...` and `encoder2...`), plus the unused
ImageNet classifier `resnet.fc`. This project's AimNet has the encoders only: the `resnet.` copies
must equal their encoder names and are then dropped."""
from typing import Dict, Optional

import torch

from utils.checkpoint import CheckpointError

# The published module's aliases: resnet.<left> is encoder<right>.
ALIASES = (("resnet.conv1.", "encoder0.0."), ("resnet.bn1.", "encoder0.1."), ("resnet.layer1.", "encoder1.0."),
           ("resnet.layer2.", "encoder2."), ("resnet.layer3.", "encoder3."), ("resnet.layer4.", "encoder4."))
CLASSIFIER = "resnet.fc."
MARKER = "decoder_final_g.weight"


def alias_of(key: str) -> Optional[str]:
    """The encoder name of a `resnet.` key, or None for a key without one."""
    for published, ours in ALIASES:
        if key.startswith(published):
            return ours + key[len(published):]
    return None


def from_released(state_dict: Dict[str, torch.Tensor], path: str) -> Dict[str, torch.Tensor]:
    """The state dict without the backbone's second copy and the classifier; CheckpointError when a
    copy differs from its encoder tensor (the file was not saved from one shared backbone)."""
    kept = {}
    for key, tensor in state_dict.items():
        if key.startswith(CLASSIFIER):
            continue
        alias = alias_of(key)
        if alias is None:
            kept[key] = tensor
        elif alias not in state_dict:
            kept[alias] = tensor
        elif not torch.equal(state_dict[alias], tensor):
            raise CheckpointError(f"{path}: {key} differs from {alias}; in a released AimNet file they are the "
                                  "same tensor (the backbone is saved under both names)")
    return kept


def describe(state_dict: Dict[str, torch.Tensor]) -> Optional[str]:
    """The config for an AimNet state dict, or None for another layout."""
    return "an AIM (AimNet) checkpoint: use config/aim.toml" if MARKER in state_dict else None

