"""AIM (Li, Zhang and Tao, IJCAI 2021; JizhiziLi/AIM, MIT): AimNet, which needs no trimap, its
published test strategies (networks/aim/recipe.py) and its released checkpoint's layout
(aimnet_pretrained_matting.pth, `{'state_dict': ...}`)."""
from typing import Dict, List, Optional, Tuple

from networks.aim.layout import MARKER, describe, from_released
from networks.aim.network import AimNet
from networks.aim.recipe import SHORTER_SIDE_LIMIT, AimRecipe
from networks.family import Family, StateDict, recogniser
from utils.checkpoint import CheckpointError, extract_state_dict
from utils.config import ModelSpec
from utils.recipe import Padding, imagenet_normalised, nowhere

NAME = "aim"
TRAINING_REFUSAL = "training AIM is not supported here; its authors' code (JizhiziLi/AIM) trains it"
EXPORT_REFUSAL = ("AIM's inference resizes the photo to sizes computed from it, runs the network twice and resizes "
                  "on the CPU with scikit-image's arithmetic: it is not one graph; run it with demo.py")


def build(spec: ModelSpec) -> AimNet:
    return AimNet()


def aim_recipe(name: str, spec: ModelSpec, shorter_side: Optional[int], score_float: bool) -> AimRecipe:
    """ImageNet normalisation of the resized photo, no trimap, nothing forced, alpha x 255 truncated
    (test_samples' astype(np.uint8), save_test_result's)."""
    return AimRecipe(name, imagenet_normalised, None, Padding(multiple=32), nowhere, nowhere, "truncate",
                     score_float=score_float, strategy=spec.aim_strategy, resize=spec.aim_resize,
                     shorter_side=shorter_side)


def recipes(spec: ModelSpec) -> Tuple[AimRecipe, AimRecipe]:
    """test_samples' (the shorter side limited to 1080 px) and test_aim500's (the photo as it is,
    the float alpha scored)."""
    return (aim_recipe("aim demo", spec, SHORTER_SIDE_LIMIT, score_float=False),
            aim_recipe("aim test", spec, None, score_float=True))


def state_dict(checkpoint: Dict, path: str, keys: List[str]) -> StateDict:
    state = extract_state_dict(checkpoint, path)
    if describe(state) is None:
        raise CheckpointError(f"{path} is not an AimNet checkpoint: it has no {MARKER!r}.")
    return from_released(state, path)


FAMILY = Family(name=NAME, title="AIM (Li, Zhang and Tao, IJCAI 2021; aimnet_pretrained_matting.pth, no trimap)",
                build=build, recipes=recipes, state_dict=state_dict, recognise=recogniser(describe),
                export_refusal=EXPORT_REFUSAL, training_refusal=TRAINING_REFUSAL)
