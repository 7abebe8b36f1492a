"""MMagic's GCA and baseline models (OpenMMLab; gca_r34_4x10_200k_comp1k_SAD-33.38_20220615-65595f39.pth,
baseline_r34_4x10_200k_comp1k_SAD-34.61_20220620-96f85d56.pth and the two dimaug files): GCA-Matting's
network with torch's spectral norm and MMagic's attention, MMagic's recipe, MMagic's checkpoint layout;
GCA-Matting's config keys, export form and training recipe."""
from functools import partial
from typing import Tuple

from networks.family import Family, recogniser
from networks.gca_matting.export import exportable
from networks.gca_matting.options import CONFIG
from networks.gca_matting.training import TRAINING
from networks.mmagic.layout import describe, mmagic_key, mmagic_state_dict
from networks.mmagic.network import build_mmagic_generator
from utils.checkpoint import OPENMMLAB_NAME
from utils.config import ModelSpec
from utils.hub.released import ReleasedModel
from utils.recipe import (Encoder, Padding, Recipe, exact_background, exact_foreground, exact_labels, exact_one_hot,
                          imagenet_normalised_255)

NAME = "mmagic"


def mattor_recipe(name: str, trimap: Encoder) -> Recipe:
    """MMagic's test pipeline and BaseMattor.postprocess with the trimap encoded by `trimap`:
    (x - 255 mean) / (255 std) on 0..255 RGB, reflect padding at the bottom/right to a multiple
    of 32, the alpha clamped, 1 where the trimap is 255 and 0 where it is 0, x 255 rounded."""
    return Recipe(name, imagenet_normalised_255, trimap, Padding(multiple=32), exact_foreground, exact_background,
                  "round")


def mmagic_recipe(trimap_channel: int) -> Recipe:
    """MMagic's GCA recipe (mattor_recipe): the trimap from its exact greys 0 / 128 / 255 (one-hot,
    or 1 / 2 for 128 / 255 in one channel; other greys: no class, or their own value)."""
    return mattor_recipe("mmagic", exact_one_hot if trimap_channel == 3 else exact_labels)


def recipes(spec: ModelSpec) -> Tuple[Recipe, Recipe]:
    recipe = mmagic_recipe(spec.options.trimap_channel)
    return recipe, recipe


FAMILY = Family(name=NAME, title="MMagic's GCA and baseline (OpenMMLab, Composition-1K SAD 33.38 / 34.61)",
                config=CONFIG, build=build_mmagic_generator, recipes=recipes,
                state_dict=partial(mmagic_state_dict, family=NAME), recognise=recogniser(describe, NAME, mmagic_key),
                export=exportable, training=TRAINING)


OPENMMLAB_LICENCE = "weights trained on the Adobe Deep Image Matting data (its non-commercial licence); code Apache-2.0"
MMAGIC_FILES = "https://download.openmmlab.com/mmediting/mattors/"


def openmmlab_releases(family: str, folder: str, page: str,
                       rows: Tuple[Tuple[str, str, str], ...]) -> Tuple[ReleasedModel, ...]:
    """The files of download.openmmlab.com/mmediting/mattors/<folder>/, one per (name, file,
    figures): config/<name>.toml's, their sha256's first 8 hex digits those their names end in."""
    return tuple(ReleasedModel(name=name, family=family, config=f"config/{name}.toml", file=file,
                               urls=(f"{MMAGIC_FILES}{folder}/{file}",), page=page, licence=OPENMMLAB_LICENCE,
                               non_commercial=True, figures=figures, sha256=OPENMMLAB_NAME.search(file).group(1))
                 for name, file, figures in rows)


RELEASED = openmmlab_releases(NAME, "gca", "https://github.com/open-mmlab/mmagic/tree/main/configs/gca", (
    ("mmagic-gca", "gca_r34_4x10_200k_comp1k_SAD-33.38_20220615-65595f39.pth",
     "Composition-1K SAD 33.38, MSE 0.0081, Grad 14.96, Conn 30.59"),
    ("mmagic-baseline", "baseline_r34_4x10_200k_comp1k_SAD-34.61_20220620-96f85d56.pth",
     "Composition-1K SAD 34.61, MSE 0.0083, Grad 16.21, Conn 32.12"),
    ("mmagic-gca-dimaug", "gca_dimaug_r34_4x10_200k_comp1k_SAD-49.42_20200626_231422-8e9cc127.pth",
     "Composition-1K SAD 49.42, MSE 0.0129, Grad 28.07, Conn 49.47"),
    ("mmagic-baseline-dimaug", "baseline_dimaug_r34_4x10_200k_comp1k_SAD-49.95_20200626_231612-535c9a11.pth",
     "Composition-1K SAD 49.95, MSE 0.0144, Grad 30.21, Conn 49.67"),
))
