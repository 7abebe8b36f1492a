"""MMagic's GCA and baseline models (OpenMMLab; gca_r34_4x10_200k_comp1k_SAD-33.38_20220615-65595f39.pth,
baseline_r34_4x10_200k_comp1k_SAD-34.61_20220620-96f85d56.pth and the two dimaug files): the network
with torch's spectral norm and MMagic's attention, MMagic's recipe, MMagic's checkpoint layout."""
from typing import Dict, List, Optional, Tuple

from networks.family import Family, StateDict
from networks.mmagic.layout import describe, from_mmagic, is_mmagic_layout
from networks.mmagic.network import build_mmagic_generator
from utils.checkpoint import CheckpointError, extract_state_dict, saved_family
from utils.config import ModelSpec
from utils.recipe import (Padding, Recipe, exact_background, exact_foreground, exact_labels, exact_one_hot,
                          imagenet_normalised_255)

NAME = "mmagic"


def mmagic_recipe(trimap_channel: int) -> Recipe:
    """MMagic's test pipeline and BaseMattor.postprocess: (x - 255 mean) / (255 std) on 0..255 RGB,
    the trimap from its exact greys 0 / 128 / 255 (one-hot, or 1 / 2 for 128 / 255 in one channel;
    other greys: no class, or their own value), reflect padding at the bottom/right to a multiple
    of 32, the alpha clamped, 1 where the trimap is 255 and 0 where it is 0, x 255 rounded."""
    trimap = exact_one_hot if trimap_channel == 3 else exact_labels
    return Recipe("mmagic", imagenet_normalised_255, trimap, Padding(multiple=32), exact_foreground, exact_background,
                  "round")


def recipes(spec: ModelSpec) -> Tuple[Recipe, Recipe]:
    recipe = mmagic_recipe(spec.trimap_channel)
    return recipe, recipe


def state_dict(checkpoint: Dict, path: str, keys: List[str]) -> StateDict:
    """An MMagic file's tensors under this project's `keys`; a checkpoint of this project trained as
    this family as it is."""
    state = extract_state_dict(checkpoint, path)
    if is_mmagic_layout(state):
        return from_mmagic(state, keys)
    if saved_family(checkpoint) == NAME:
        return state
    raise CheckpointError(f"{path} is not an MMagic checkpoint: its tensors are not under \"backbone.\".")


def recognise(checkpoint: Dict) -> Optional[str]:
    try:
        return describe(extract_state_dict(checkpoint))
    except CheckpointError:
        return None


FAMILY = Family(name=NAME, title="MMagic's GCA and baseline (OpenMMLab, Composition-1K SAD 33.38 / 34.61)",
                build=build_mmagic_generator, recipes=recipes, state_dict=state_dict, recognise=recognise)
