"""ViTMatte (Yao et al., Information Fusion 2024; hustvl/ViTMatte, MIT) as two families, one per
source, with the same network and the same files:
- "vitmatte" (here): the original code's recipe (config/vitmatte-s.toml, config/vitmatte-b.toml),
  and its training (networks/vitmatte/training.py);
- "vitmatte-hf" (hf_family.py): transformers' (config/vitmatte-s-hf.toml, config/vitmatte-b-hf.toml).
Each loads both layouts (networks/vitmatte/layout.py): the original .pth files and the transformers
hub folders. The recipe, not the file, decides the normalisation (networks/vitmatte/recipe.py),
so the released hub folders run with the original recipe too. model.arch.encoder picks the size."""
from functools import partial
from typing import Callable, Dict, List, Tuple

from networks.family import Family, StateDict
from networks.vitmatte.layout import (ORIGINAL_MARKERS, check_hub_config, describe, hub_state, original_state,
                                      without_normalisation)
from networks.vitmatte.network import SIZES, ViTMatte, exportable
from networks.vitmatte.options import TRAINING_CONFIG
from networks.vitmatte.recipe import (ORIGINAL, Normalisation, ViTMatteRecipe, normalisation_tensors,
                                      original_normalisation, vitmatte_recipe)
from networks.vitmatte.training import TRAINING
from utils.checkpoint import HUB_CONFIG, CheckpointError
from utils.config import ModelSpec

NAME = "vitmatte"


def build(spec: ModelSpec, padding: str, normalisation: Normalisation) -> ViTMatte:
    """The network of model.arch.encoder's size, normalising and padding by the family's recipe."""
    network = ViTMatte(SIZES[spec.options.encoder], padding=padding)
    for name, tensor in normalisation_tensors(normalisation).items():
        getattr(network, name).copy_(tensor)
    return network


def recipes(spec: ModelSpec, name: str) -> Tuple[ViTMatteRecipe, ViTMatteRecipe]:
    recipe = vitmatte_recipe(name)
    return recipe, recipe


def weights(checkpoint: Dict, path: str) -> StateDict:
    """The network's tensors, but for its normalisation, from a file of either layout;
    CheckpointError for another file."""
    hub_config = checkpoint.get(HUB_CONFIG) if isinstance(checkpoint, dict) else None
    if hub_config is not None:
        check_hub_config(hub_config, path)
    for state in (original_state(checkpoint), hub_state(checkpoint)):
        if state is not None:
            return without_normalisation(state)
    raise CheckpointError(f"{path} is not a ViTMatte checkpoint: it has no {ORIGINAL_MARKERS[0]!r} (an original "
                          "file, {'model': ...} or bare) and is no transformers hub folder of a ViTMatte.")


def state_dict(checkpoint: Dict, path: str, keys: List[str],
               normalisation: Callable[[Dict, str], Normalisation]) -> StateDict:
    """weights() with the recipe's pixel_mean and pixel_std (`keys`, the network's, are those
    two and the files' own)."""
    return {**weights(checkpoint, path), **normalisation_tensors(normalisation(checkpoint, path))}


def original_recipe_normalisation(checkpoint: Dict, path: str) -> Normalisation:
    """The original's ImageNet statistics, whatever the file."""
    return original_normalisation()


TITLE = "ViTMatte (Yao et al., Information Fusion 2024; Composition-1K SAD 21.46 (S), 20.33 (B))"
FAMILY = Family(name=NAME, title=TITLE + ", the original code's recipe", config=TRAINING_CONFIG,
                build=partial(build, padding=ORIGINAL, normalisation=original_normalisation()),
                recipes=partial(recipes, name=NAME),
                state_dict=partial(state_dict, normalisation=original_recipe_normalisation),
                recognise=describe, export=exportable, training=TRAINING)
# Not yet declared by name (utils.hub): the files' places are in docs/families/vitmatte.md.
RELEASED = ()
