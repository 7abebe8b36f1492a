"""AIM (Li, Zhang and Tao, IJCAI 2021; JizhiziLi/AIM, MIT): AimNet, which needs no trimap, its
published test strategies (networks/aim/recipe.py), its released checkpoint's layout
(aimnet_pretrained_matting.pth, `{'state_dict': ...}`) and its two training stages
(networks/aim/training.py); its config keys choose the strategy and the scikit-image resize
(test.aim_strategy, test.aim_resize) and the training stage and its settings."""
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from networks.aim.layout import MARKER, describe, from_released
from networks.aim.network import AimNet
from networks.aim.recipe import SHORTER_SIDE_LIMIT, STRATEGIES, AimRecipe
from networks.aim.skimage_resize import SKIMAGE_RESIZES
from networks.aim.training import TRAINING, TRAINING_DEFAULTS, TRAINING_RULES, AimTraining, aim_training
from networks.family import Family, StateDict, recogniser
from utils.checkpoint import CheckpointError, extract_state_dict
from utils.config import ConfigSchema, ModelSpec, one_of
from utils.hub.released import ReleasedModel
from utils.recipe import Padding, imagenet_normalised, nowhere

NAME = "aim"
EXPORT_REFUSAL = ("AIM's inference resizes the photo to sizes computed from it, runs the network twice and resizes "
                  "on the CPU with scikit-image's arithmetic: it is not one graph; run it with demo.py")


@dataclass(frozen=True)
class AimOptions:
    """test.aim_strategy: "hybrid" (the semantic map at 1/4, the details at 1/2) or "resize" (1/4);
    test.aim_resize: the scikit-image behaviour of its resizes; training: its training stage."""
    strategy: str
    resize: str
    training: AimTraining


def aim_options(values: Mapping[str, Any]) -> AimOptions:
    return AimOptions(values["test.aim_strategy"], values["test.aim_resize"], aim_training(values))


CONFIG = ConfigSchema(defaults={"test.aim_strategy": "hybrid", "test.aim_resize": "skimage-0.14", **TRAINING_DEFAULTS},
                      options=aim_options,
                      rules={"test.aim_strategy": one_of(*STRATEGIES), "test.aim_resize": one_of(*SKIMAGE_RESIZES),
                             **TRAINING_RULES})


def build(spec: ModelSpec) -> AimNet:
    return AimNet()


def aim_recipe(name: str, spec: ModelSpec, shorter_side: Optional[int], score_float: bool) -> AimRecipe:
    """ImageNet normalisation of the resized photo, no trimap, nothing forced, alpha x 255 truncated
    (test_samples' astype(np.uint8), save_test_result's)."""
    return AimRecipe(name, imagenet_normalised, None, Padding(multiple=32), nowhere, nowhere, "truncate",
                     score_float=score_float, strategy=spec.options.strategy, resize=spec.options.resize,
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
                config=CONFIG, build=build, recipes=recipes, state_dict=state_dict, recognise=recogniser(describe),
                export=EXPORT_REFUSAL, training=TRAINING)


RELEASED = (
    ReleasedModel(name="aim", family=NAME, config="config/aim.toml", file="aimnet_pretrained_matting.pth",
                  urls=("https://drive.google.com/uc?export=download&id=16dd1FGMcsMTqR6EfD2T9mtRmPwxnY0zs",
                        "https://pan.baidu.com/s/1-twrRBtVqNq3uunadJuIaw"),
                  page="https://github.com/JizhiziLi/AIM",
                  licence="code MIT; the weights' terms are not stated apart from that (trained on synthetic matting "
                          "data, see its README)",
                  non_commercial=False, figures="AIM-500 (not Composition-1K): SAD 44.25, MSE 0.0165, MAD 0.0263"),
)
