"""A model family: its network, its config keys, the recipe around the network, the layout of its
released checkpoints, its export form and its training recipe.

Every entry point (demo.py, demo.Matter, main.py's test phase and training, the ONNX export, the
web page) runs a family through these fields and nothing else: a new family is one package under
networks/ that defines one Family, named in networks.families.FAMILIES, or a module of its own
anywhere that a config names by its dotted path (model.family = "my_package.my_family"), or one
added in-process with networks.families.register. No field falls back to another family's
behaviour: a family without an export or a training says why, in its own words.
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn

from networks.training import TrainingRecipe
from utils.checkpoint import CheckpointError, extract_state_dict, saved_family
from utils.config import ConfigSchema, ModelSpec
from utils.recipe import Recipe

StateDict = Dict[str, torch.Tensor]


def recogniser(describe: Callable[[StateDict], Optional[str]], family: str = "",
               released_name: Optional[Callable[[str], str]] = None) -> Callable[[Dict], Optional[str]]:
    """A Family.recognise from `describe` (a state dict in the released layout -> the hint, or
    None): None as well for a checkpoint that holds no state dict. A checkpoint this project
    trained as `family` holds the network's own names; `released_name` gives the released file's
    name of each, so that such a file gets the same hint as the released one."""
    def recognise(checkpoint: Dict) -> Optional[str]:
        try:
            state = extract_state_dict(checkpoint)
        except CheckpointError:
            return None
        if released_name is not None and saved_family(checkpoint) == family:
            state = {released_name(key): value for key, value in state.items()}
        return describe(state)
    return recognise


@dataclass(frozen=True)
class Family:
    """name: the config's model.family; title: what its checkpoints are, for messages.
    config: its own config keys, their defaults and rules, and the typed options (ModelSpec.options)
    they make; a config key that no family field reads is refused.
    build(spec): the network, with initial weights, in training mode; it takes image N x 3 x H x W
    and trimap as the recipe encodes them and returns (alpha N x 1 x H x W, info).
    recipes(spec): (the recipe of its demo / published inference, that of its evaluation).
    state_dict(checkpoint, path, keys): from a checkpoint's contents (the released layout or this
    project's own), a state dict under the network's `keys`; CheckpointError for another layout.
    recognise(checkpoint): for a checkpoint that did not fit a config, a hint when it is one of this
    family's files ("an MMagic GCA checkpoint ...: use config/mmagic-gca.toml"), else None.
    export: export(network) -> the form of the network torch.export captures for any image size
    (networks.export_form has the shared rewrites); or why this family cannot be exported.
    training: its TrainingRecipe (networks.training); or why it cannot be trained here."""
    name: str
    title: str
    config: ConfigSchema
    build: Callable[[ModelSpec], nn.Module]
    recipes: Callable[[ModelSpec], Tuple[Recipe, Recipe]]
    state_dict: Callable[[Dict, str, List[str]], StateDict]
    recognise: Callable[[Dict], Optional[str]]
    export: Union[Callable[[nn.Module], nn.Module], str]
    training: Union[TrainingRecipe, str]
