"""MMagic's checkpoint layout for GCA and its baseline (read from MMagic's model code): every
tensor under `state_dict` with the prefix `backbone.`, each conv + norm an mmcv ConvModule (its
children `conv` and `bn`), torch's spectral norm (`weight_orig`, `weight_u`, `weight_v`). One to
one with this project's names: 578 keys for GCA, 538 for the baseline."""
import re
from typing import Callable, Dict, List, Optional, Tuple

import torch

from utils.checkpoint import CheckpointError, extract_state_dict, saved_family

PREFIX = "backbone."
# (pattern, replacement) applied in order to a key of this project's network.
_RULES: Tuple[Tuple[str, str], ...] = (
    (r"\.layer_bottleneck\.", ".layer4."),
    # skip branches: [conv, ReLU, BN, conv, ReLU, BN] -> two ConvModules
    (r"\.shortcut\.(\d+)\.0\.module\.", r".shortcut.\1.0.conv."),
    (r"\.shortcut\.(\d+)\.2\.", r".shortcut.\1.0.bn."),
    (r"\.shortcut\.(\d+)\.3\.module\.", r".shortcut.\1.1.conv."),
    (r"\.shortcut\.(\d+)\.5\.", r".shortcut.\1.1.bn."),
    # identities of the first block of a stage: [pool / upsampling, conv, BN] -> [pool, ConvModule]
    (r"\.(?:downsample|upsample)\.1\.module\.", ".interpolation.1.conv."),
    (r"\.(?:downsample|upsample)\.2\.", ".interpolation.1.bn."),
    (r"\.gca\.W\.0\.", ".gca.out_conv.conv."),
    (r"\.gca\.W\.1\.", ".gca.out_conv.bn."),
    (r"^decoder\.conv2\.", "decoder.conv2.conv."),
    (r"\.conv(\d)\.module\.", r".conv\1.conv."),
    (r"\.bn(\d)\.", r".conv\1.bn."),
    (r"\.weight_bar$", ".weight_orig"),
)
# guidance head: [pad, conv, ReLU, BN] three times -> three ConvModules
_GUIDANCE = re.compile(r"\.guidance_head\.(\d+)\.(module\.)?")


def _guidance_key(match: "re.Match") -> str:
    index = int(match.group(1))
    return f".guidance_head.{index // 4}.{'conv.' if match.group(2) else 'bn.'}"


def mmagic_key(key: str) -> str:
    """The MMagic checkpoint's name of one of this project's state-dict keys."""
    key = _GUIDANCE.sub(_guidance_key, key)
    for pattern, replacement in _RULES:
        key = re.sub(pattern, replacement, key)
    return PREFIX + key


def is_mmagic_layout(state_dict: Dict[str, torch.Tensor]) -> bool:
    return any(key.startswith(PREFIX) for key in state_dict)


def from_mmagic(state_dict: Dict[str, torch.Tensor], keys: List[str],
                name_of: Callable[[str], str] = mmagic_key) -> Dict[str, torch.Tensor]:
    """A state dict under this project's `keys` from an MMagic one, `name_of` giving the MMagic
    name of each key; keys it lacks stay missing, and its tensors that no key names are kept
    under their own names (so that a strict load reports both)."""
    names = {name_of(key): key for key in keys}
    return {names.get(name, name): tensor for name, tensor in state_dict.items()}


def mmagic_state_dict(checkpoint: Dict, path: str, keys: List[str], family: str,
                      name_of: Callable[[str], str] = mmagic_key) -> Dict[str, torch.Tensor]:
    """An MMagic file's tensors under this project's `keys` (see from_mmagic); a checkpoint of
    this project trained as `family` as it is."""
    state = extract_state_dict(checkpoint, path)
    if is_mmagic_layout(state):
        return from_mmagic(state, keys, name_of)
    if saved_family(checkpoint) == family:
        return state
    raise CheckpointError(f"{path} is not an MMagic checkpoint: its tensors are not under \"{PREFIX}\".")


def describe(state_dict: Dict[str, torch.Tensor]) -> Optional[str]:
    """'GCA' or 'baseline' and the trimap channels of an MMagic GCA-family state dict, as the
    config to use, or None for another layout."""
    stem = state_dict.get(PREFIX + "encoder.conv1.conv.weight_orig")
    if stem is None:
        return None
    gca = any(".gca." in key for key in state_dict)
    dimaug = stem.shape[1] == 4
    config = f"config/mmagic-{'gca' if gca else 'baseline'}{'-dimaug' if dimaug else ''}.toml"
    return (f"an MMagic {'GCA' if gca else 'baseline'} checkpoint with {stem.shape[1]} input channels "
            f"(model.family = \"mmagic\", model.trimap_channel = {stem.shape[1] - 3}): use {config}")
