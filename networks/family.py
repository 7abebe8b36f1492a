"""A model family: the network, the recipe around it and the layout of its released checkpoints.

Every entry point (demo.py, demo.Matter, main.py's test phase, the ONNX export, the web page)
runs a family through the same calls: `build`, `recipes`, `state_dict`; a new family is a
sub-package of networks/ that defines one Family and adds it to networks.families.FAMILIES.
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from utils.checkpoint import CheckpointError, extract_state_dict
from utils.config import ModelSpec
from utils.recipe import Recipe

StateDict = Dict[str, torch.Tensor]


def recogniser(describe: Callable[[StateDict], Optional[str]]) -> Callable[[Dict], Optional[str]]:
    """A Family.recognise from `describe` (a state dict -> the hint, or None): None as well for a
    checkpoint that holds no state dict."""
    def recognise(checkpoint: Dict) -> Optional[str]:
        try:
            return describe(extract_state_dict(checkpoint))
        except CheckpointError:
            return None
    return recognise


@dataclass(frozen=True)
class Family:
    """name: the config's model.family; title: what its checkpoints are, for messages.
    build(spec): the network, with initial weights, in training mode.
    recipes(spec): (the recipe of its demo / published inference, that of its evaluation).
    state_dict(checkpoint, path, keys): from a checkpoint's contents (the released layout or this
    project's own), a state dict under the network's `keys`; CheckpointError for another layout.
    recognise(checkpoint): for a checkpoint that did not fit a config, a hint when it is one of this
    family's files ("an MMagic GCA checkpoint ...: use config/mmagic-gca.toml"), else None.
    exportable(network): the form of the network torch.export captures (None: as it is).
    export_refusal / training_refusal: why this family cannot be exported / trained here, or ""."""
    name: str
    title: str
    build: Callable[[ModelSpec], nn.Module]
    recipes: Callable[[ModelSpec], Tuple[Recipe, Recipe]]
    state_dict: Callable[[Dict, str, List[str]], StateDict]
    recognise: Callable[[Dict], Optional[str]]
    exportable: Optional[Callable[[nn.Module], nn.Module]] = None
    export_refusal: str = ""
    training_refusal: str = ""
