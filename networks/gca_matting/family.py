"""The GCA-Matting family: the published network (encoders/, decoders/, gca.py, generator.py), its
config keys (options.py), its recipes (the demo's and the test phase's), the layout of its released
files gca-dist.pth and gca-dist-all-data.pth, which are also this project's training checkpoints'
layout, its exportable form (export.py) and its training recipe (training.py)."""
from functools import partial
from typing import Dict, List, Optional, Tuple

from networks.family import Family, StateDict
from networks.gca_matting.export import exportable
from networks.gca_matting.generator import DEMO_PADDING, build_generator, set_gca_block
from networks.gca_matting.options import CONFIG
from networks.gca_matting.training import TRAINING
from utils.checkpoint import CheckpointError, extract_state_dict, saved_family
from utils.config import ModelSpec
from utils.hub.released import ReleasedModel
from utils.recipe import (Padding, Recipe, imagenet_normalised, threshold_background, threshold_foreground,
                          threshold_labels, threshold_one_hot)

NAME = "gca-matting"
GCA_ARCH = {"model.arch.encoder": "resnet_gca_encoder_29", "model.arch.decoder": "res_gca_decoder_22"}
BASELINE_ARCH = {"model.arch.encoder": "res_shortcut_encoder_29", "model.arch.decoder": "res_shortcut_decoder_22"}
STEM_KEY = "encoder.conv1.module.weight_bar"


def build(spec: ModelSpec):
    options = spec.options
    network = build_generator(options.encoder, options.decoder, options.trimap_channel)
    set_gca_block(network, options.gca_block)
    return network


def recipes(spec: ModelSpec) -> Tuple[Recipe, Recipe]:
    """demo.py's (32 px reflected on every side, then bottom/right to a multiple of 32; alpha x 255
    truncated) and the test phase's (bottom/right only; rounded); ImageNet normalisation and the
    grey thresholds < 85 / >= 170 in both."""
    trimap = threshold_one_hot if spec.options.trimap_channel == 3 else threshold_labels
    demo = Recipe("gca-matting demo", imagenet_normalised, trimap, DEMO_PADDING,
                  threshold_foreground, threshold_background, "truncate")
    test = Recipe("gca-matting test", imagenet_normalised, trimap, Padding(multiple=32),
                  threshold_foreground, threshold_background, "round")
    return demo, test


def state_dict(checkpoint: Dict, path: str, keys: List[str]) -> StateDict:
    family = saved_family(checkpoint)
    if family not in (None, NAME):
        raise CheckpointError(f"{path} was trained with model.family = \"{family}\", not \"{NAME}\".")
    return extract_state_dict(checkpoint, path)


def recognise(checkpoint: Dict) -> Optional[str]:
    """The settings for a state dict in GCA-Matting's layout, or None."""
    if saved_family(checkpoint) not in (None, NAME):
        return None
    try:
        stem = extract_state_dict(checkpoint).get(STEM_KEY)
    except CheckpointError:
        return None
    if stem is None:
        return None
    gca = any(".gca." in key for key in extract_state_dict(checkpoint))
    settings = {"model.family": NAME, **(GCA_ARCH if gca else BASELINE_ARCH), "model.trimap_channel": stem.shape[1] - 3}
    dimaug = stem.shape[1] == 4
    config = f"config/{'gca' if gca and dimaug else 'gca-dist' if gca else 'baseline'}{'-dimaug' if dimaug else ''}.toml"
    shown = ", ".join(f"{key} = {value!r}".replace("'", '"') for key, value in settings.items())
    return (f"a GCA-Matting {'GCA' if gca else 'baseline (no GCA)'} checkpoint with {stem.shape[1]} input channels: "
            f"set {shown} (as {config} does)")


FAMILY = Family(name=NAME, title="GCA-Matting (Li and Lu, AAAI 2020; gca-dist.pth, gca-dist-all-data.pth)",
                config=CONFIG, build=build, recipes=recipes, state_dict=state_dict, recognise=recognise,
                export=exportable, training=TRAINING)


# Both on Google Drive, linked from GCA-Matting's README, 96.5 MB, under the Adobe data's licence.
gca_matting_release = partial(ReleasedModel, family=NAME, page="https://github.com/Yaoyi-Li/GCA-Matting#models",
                              licence="the Adobe Deep Image Matting data licence (the weights); code MIT",
                              non_commercial=True, published_size="96.5 MB")
RELEASED = (
    gca_matting_release(name="gca-dist", config="config/gca-dist.toml", file="gca-dist.pth",
                        urls=("https://drive.google.com/open?id=1ti_a46lKEH2Hk2fAB11BbyKfYj0rxNK0",),
                        figures="Composition-1K SAD 35.28, MSE 0.0091, Grad 16.92, Conn 32.53"),
    gca_matting_release(name="gca-dist-all-data", config="config/gca-dist-all-data.toml", file="gca-dist-all-data.pth",
                        urls=("https://drive.google.com/open?id=1GrFrV7guwOQB3N1-bx1iByw_LJNYnIw_",),
                        figures="none (trained on the Composition-1K test set too, for alphamatting.com)"),
)
