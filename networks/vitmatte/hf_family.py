"""ViTMatte with transformers' recipe ("vitmatte-hf": config/vitmatte-s-hf.toml, -b-hf.toml): the
network, the files and the layouts of networks/vitmatte/family.py, with VitMatteImageProcessor's
normalisation (the folder's preprocessor_config.json, else its defaults) and padding. For
inference only: training is the original recipe's."""
from functools import partial
from typing import Dict, Optional

from networks.family import Family
from networks.vitmatte.family import TITLE, build, recipes, state_dict
from networks.vitmatte.layout import describe
from networks.vitmatte.network import exportable
from networks.vitmatte.options import CONFIG
from networks.vitmatte.recipe import TRANSFORMERS, Normalisation, transformers_normalisation
from utils.checkpoint import HUB_PREPROCESSOR

NAME = "vitmatte-hf"
TRAINING_REFUSAL = ("transformers' recipe is for inference; train with config/vitmatte-s.toml or -b.toml, the "
                    "original recipe the released weights were trained with (train.init_checkpoint takes a hub "
                    "folder too)")


def hub_normalisation(checkpoint: Dict, path: str) -> Normalisation:
    """transformers' processor with the folder's preprocessor_config.json, or its defaults."""
    preprocessor: Optional[Dict] = checkpoint.get(HUB_PREPROCESSOR) if isinstance(checkpoint, dict) else None
    return transformers_normalisation(preprocessor, path)


FAMILY = Family(name=NAME, title=TITLE + ", transformers' recipe", config=CONFIG,
                build=partial(build, padding=TRANSFORMERS, normalisation=transformers_normalisation(None, "")),
                recipes=partial(recipes, name=NAME), state_dict=partial(state_dict, normalisation=hub_normalisation),
                recognise=describe, export=exportable, training=TRAINING_REFUSAL)
# transformers' hub folders are not declared by name: which weights files each holds
# (model.safetensors, pytorch_model.bin) could not be checked from here (docs/families/vitmatte.md).
RELEASED = ()
