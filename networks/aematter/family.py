"""AEMatter (aipixel/AEMatter, ICML 2024; AEMFIX.ckpt and the RWA model of its main branch): the
network, its evaluation recipe (eval.py), its checkpoint layout ({'model': state dict} under the
published module names, which are the network's own), its config keys (options.py;
model.trimap_channel must be 3: its trimap is one-hot) and its training recipe (training.py)."""
from functools import partial
from typing import Dict, List, Optional, Tuple

from networks.aematter.network import AEMatter
from networks.aematter.options import CONFIG as KEYS
from networks.aematter.training import training_recipe
from networks.family import Family, StateDict
from utils.checkpoint import CheckpointError, extract_state_dict, saved_family
from utils.config import ModelSpec
from utils.hub.released import ReleasedModel
from utils.recipe import Padding, Recipe, every_other_grey_background, exact_foreground, exact_one_hot, unit_range

NAME = "aematter"
CONFIG = "config/aematter.toml"
LAYOUT_KEY = "model"
# Keys that only AEMatter's networks have; the gate of the main branch's AEAL blocks.
AEAL_KEY, GATE_KEY = "trans1.self_attn1.in_proj_weight", "trans1.gamma"
# Measured: torch.export of the demo graph with a free height and width ran 25 minutes on the 2-core
# development machine without finishing, in its symbolic-shape solver (sympy simplifying the
# sizes of the AEAL blocks' strips at 1/32 of the padded image), and was stopped (README, "AEMatter").
EXPORT_REFUSAL = ("its ONNX export is not supported: torch.export of a graph for any image size did not finish in "
                  "25 minutes (its symbolic-shape solver on the AEAL blocks' strip sizes); run it with demo.py, the "
                  "Python API, the test phase or the page")


def aematter_recipe() -> Recipe:
    """AEMatter's eval.py: RGB / 255 (no normalisation), the trimap one-hot from its exact greys 0 /
    128 / 255, OpenCV BORDER_REFLECT padding to a multiple of 32 split over both sides (the odd pixel
    at the bottom/right), alpha x 255 truncated where the trimap is 128, 255 where it is 255 and 0
    elsewhere."""
    return Recipe(NAME, unit_range, exact_one_hot, Padding(multiple=32, centred=True, edge="symmetric"),
                  exact_foreground, every_other_grey_background, "truncate")


def build(spec: ModelSpec) -> AEMatter:
    channels = spec.options.trimap_channel
    if channels != 3:
        raise ValueError(f"model.trimap_channel must be 3 for AEMatter (a one-hot trimap), got {channels}")
    return AEMatter()


def recipes(spec: ModelSpec) -> Tuple[Recipe, Recipe]:
    recipe = aematter_recipe()
    return recipe, recipe


def released_state(checkpoint: Dict) -> Optional[Dict]:
    """The state dict of a file in AEMatter's layout ({'model': state dict}), or None."""
    state = checkpoint.get(LAYOUT_KEY) if isinstance(checkpoint, dict) else None
    return state if isinstance(state, dict) else None


def state_dict(checkpoint: Dict, path: str, keys: List[str]) -> StateDict:
    """An AEMatter file's tensors (the published names are the network's); a checkpoint of this
    project saved as this family as it is."""
    state = released_state(checkpoint)
    if state is not None:
        return extract_state_dict(state, path)
    if saved_family(checkpoint) == NAME:
        return extract_state_dict(checkpoint, path)
    raise CheckpointError(f"{path} is not an AEMatter checkpoint: it holds no '{LAYOUT_KEY}' state dict "
                          "(AEMatter's AEMFIX.ckpt holds {'model': ...}).")


def recognise(checkpoint: Dict) -> Optional[str]:
    """The hint for a released file or a checkpoint this project trained as AEMatter."""
    state = released_state(checkpoint)
    if state is None and saved_family(checkpoint) == NAME:
        state = checkpoint.get("state_dict")
    if not isinstance(state, dict) or AEAL_KEY not in state:
        return None
    if GATE_KEY not in state:
        return ("a checkpoint of AEMatter's PT20 branch (its AEAL blocks have no gate), another network that this "
                "project does not run; use the main branch's AEMFIX.ckpt or RWA model")
    return f"an AEMatter checkpoint (model.family = \"{NAME}\"): use {CONFIG}"


FAMILY = Family(name=NAME, title="AEMatter (Liu et al., ICML 2024; AEMFIX.ckpt, Composition-1K SAD 17.53)",
                config=KEYS, build=build, recipes=recipes, state_dict=state_dict, recognise=recognise,
                export=EXPORT_REFUSAL, training=training_recipe(aematter_recipe()))


# Both on MEGA (a browser is needed), linked from AEMatter's README, 195 MiB, non-commercial.
aematter_release = partial(ReleasedModel, family=NAME, config="config/aematter.toml",
                           page="https://github.com/aipixel/AEMatter", non_commercial=True, published_size="195 MiB",
                           licence="for non-commercial use only (its README); its code GPL-2.0 (this project's port is "
                                   "written anew)")
RELEASED = (
    aematter_release(name="aematter", file="AEMFIX.ckpt",
                     urls=("https://mega.nz/file/7N4AEKrS#L4h3Cm2qLMMbwBGm1lyGOmVDTXJwDMAi4BlBauqNHrI",),
                     figures="Composition-1K SAD 17.53, MSE 0.00226, Grad 4.76, Conn 12.46; SAD 16.89 with its 8-pass "
                             "TTA"),
    # Its README names this file only by a link; aematter-rwa.ckpt is the name it is kept under here.
    aematter_release(name="aematter-rwa", file="aematter-rwa.ckpt",
                     urls=("https://mega.nz/file/OEAhHAwB#jt_qn4v5RA1nNX4URDCjqDUA0Xu-UILRJJq9CCB13dk",),
                     figures="none (real-world augmentation, recommended by its authors for photos)"),
)
