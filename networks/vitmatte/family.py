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
from utils.hub.released import ReleasedModel

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
vitmatte_release = partial(ReleasedModel, family=NAME, page="https://github.com/hustvl/ViTMatte#results")
COMPOSITION_1K = dict(licence="the Adobe Deep Image Matting data licence (the weights); code MIT", non_commercial=True)
DISTINCTIONS_646 = dict(licence="code MIT; the weights' terms are not stated apart from that (trained on "
                                "Distinctions-646, whose own terms apply)", non_commercial=False)
# The original files, as the authors' README links them (transformers' hub folders are not named here).
RELEASED = (
    vitmatte_release(name="vitmatte-s", config="config/vitmatte-s.toml", file="ViTMatte_S_Com.pth",
                     urls=("https://drive.google.com/file/d/12VKhSwE_miF9lWQQCgK7mv83rJIls3Xe/view",),
                     figures="Composition-1K SAD 21.46, MSE 0.0033, Grad 7.24, Conn 16.21", **COMPOSITION_1K),
    vitmatte_release(name="vitmatte-s-dis", config="config/vitmatte-s.toml", file="ViTMatte_S_DIS.pth",
                     urls=("https://drive.google.com/file/d/18wIFlhFY9MPqyH0FGiB0PFk3Xp2xTHzx/view",),
                     figures="Distinctions-646 (not Composition-1K): SAD 21.22, MSE 0.0021, Grad 8.78, Conn 17.55",
                     **DISTINCTIONS_646),
    vitmatte_release(name="vitmatte-b", config="config/vitmatte-b.toml", file="ViTMatte_B_Com.pth",
                     urls=("https://drive.google.com/file/d/1mOO5MMU4kwhNX96AlfpwjAoMM4V5w3k-/view",),
                     figures="Composition-1K SAD 20.33, MSE 0.0030, Grad 6.74, Conn 14.78", **COMPOSITION_1K),
    vitmatte_release(name="vitmatte-b-dis", config="config/vitmatte-b.toml", file="ViTMatte_B_DIS.pth",
                     urls=("https://drive.google.com/file/d/1d97oKuITCeWgai2Tf3iNilt6rMSSYzkW/view",),
                     figures="Distinctions-646 (not Composition-1K): SAD 17.05, MSE 0.0015, Grad 7.03, Conn 12.95",
                     **DISTINCTIONS_646),
)
