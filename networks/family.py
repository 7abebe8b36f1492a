"""A model family: the network, the recipe around it and the layout of its released checkpoints.

Every entry point (demo.py, demo.Matter, main.py's test phase, the ONNX export, the web page)
runs a family through the same calls: `build`, `recipes`, `state_dict`; a new family is a
sub-package of networks/ that defines one Family and adds it to networks.families.FAMILIES.
Training runs every family through main.py and trainer.py too; a family brings its own sample
encoding and losses (train_tensors, train_losses) where GCA-Matting's do not fit it.
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from utils.checkpoint import CheckpointError, extract_state_dict, saved_family
from utils.config import ModelSpec
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
    build(spec): the network, with initial weights, in training mode.
    recipes(spec): (the recipe of its demo / published inference, that of its evaluation).
    state_dict(checkpoint, path, keys): from a checkpoint's contents (the released layout or this
    project's own), a state dict under the network's `keys`; CheckpointError for another layout.
    recognise(checkpoint): for a checkpoint that did not fit a config, a hint when it is one of this
    family's files ("an MMagic GCA checkpoint ...: use config/mmagic-gca.toml"), else None.
    exportable(network): the form of the network torch.export captures (None: as it is).
    export_refusal / training_refusal: why this family cannot be exported / trained here, or "".
    train_tensors(sample): a training sample's arrays (dataloader.datasets: BGR image, fg, bg on
    0..255, alpha on 0..1, grey trimap) as the tensors the network and the losses take; None:
    GCA-Matting's encoding (dataloader.datasets.train_sample_to_tensors).
    train_losses(network, alpha, info, batch, weights): the training losses of one forward, with
    "total"; network is the model outside DDP (its frozen parts say the stage), weights the
    config's train.*_weight; None: GCA-Matting's (utils.losses.matting_losses).
    init_may_lack: state-dict key prefixes a train.init_checkpoint may lack altogether, their tensors
    keeping their initialisation (DIM's refiner, from a stage-1 file).
    imagenet_backbone(encoder, path): loads ImageNet weights from a local file into the network's
    encoder (model.imagenet_pretrain) and returns the encoder keys left to their initialisation;
    None: GCA-Matting's ResNet-34 (utils.checkpoint.load_imagenet_backbone)."""
    name: str
    title: str
    build: Callable[[ModelSpec], nn.Module]
    recipes: Callable[[ModelSpec], Tuple[Recipe, Recipe]]
    state_dict: Callable[[Dict, str, List[str]], StateDict]
    recognise: Callable[[Dict], Optional[str]]
    exportable: Optional[Callable[[nn.Module], nn.Module]] = None
    export_refusal: str = ""
    training_refusal: str = ""
    train_tensors: Optional[Callable[[Dict[str, np.ndarray]], Dict[str, torch.Tensor]]] = None
    train_losses: Optional[Callable[..., Dict[str, torch.Tensor]]] = None
    init_may_lack: Tuple[str, ...] = ()
    imagenet_backbone: Optional[Callable[[nn.Module, str], List[str]]] = None
