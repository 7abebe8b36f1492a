"""MMagic's Deep Image Matting (OpenMMLab; dim_stage1_v16_1x1_1000k_comp1k_SAD-53.8_20200605_140257-979a420f.pth,
dim_stage2_v16_pln_1x1_1000k_comp1k_SAD-52.3_20200607_171909-d83c4775.pth and
dim_stage3_v16_pln_1x1_1000k_comp1k_SAD-50.6_20200609_111851-647f24b6.pth): the VGG16 encoder-decoder
and, for stages 2 and 3, the refiner; MMagic's recipe with the trimap as grey / 255; the released
files' layout; its export form (the shared rewrites) and its training (training.py)."""
from functools import partial
from typing import Dict, Tuple

import numpy as np

from networks.dim import training
from networks.dim.layout import REFINER_PREFIX, describe, dim_key
from networks.dim.network import DeepImageMatting, xavier_init
from networks.dim.options import CONFIG
from networks.export_form import exportable_copy
from networks.family import Family, recogniser
from networks.mmagic.family import mattor_recipe, openmmlab_releases
from networks.mmagic.layout import mmagic_state_dict
from networks.training import ADAM_SCHEDULE_KEYS, TrainingRecipe, composited_dataset
from utils.config import ModelSpec
from utils.recipe import Recipe, grey_unit

NAME = "mmagic-dim"
ENCODER, DECODER, REFINER = "vgg16", "plain_decoder", "plain_refiner"
TRIMAP_CHANNEL = 1


def build(spec: ModelSpec) -> DeepImageMatting:
    """DIM with MMagic's initialisation; with the refiner where model.arch.refiner names it. ValueError
    for settings that are not DIM's."""
    options = spec.options
    for key, value, allowed in (("model.arch.encoder", options.encoder, (ENCODER,)),
                                ("model.arch.decoder", options.decoder, (DECODER,)),
                                ("model.arch.refiner", options.refiner, ("", REFINER)),
                                ("model.trimap_channel", options.trimap_channel, (TRIMAP_CHANNEL,))):
        if value not in allowed:
            shown = " or ".join(repr(a) for a in allowed)
            raise ValueError(f"{key} = {value!r} is not DIM's; model.family = \"{NAME}\" takes {shown}")
    return xavier_init(DeepImageMatting(refine=options.refiner == REFINER))


def dim_recipe() -> Recipe:
    """MMagic's recipe (mattor_recipe) with DIM's trimap channel: MattorPreprocessor's
    rescale_to_zero_one, the grey / 255."""
    return mattor_recipe(NAME, grey_unit)


def recipes(spec: ModelSpec) -> Tuple[Recipe, Recipe]:
    recipe = dim_recipe()
    return recipe, recipe


def train_tensors(sample: Dict[str, np.ndarray], spec: ModelSpec):
    return training.train_tensors(sample, dim_recipe())


TRAINING = TrainingRecipe(train_tensors=train_tensors, dataset=composited_dataset(train_tensors), losses=training.losses,
                          optimizer=training.optimizer, learning_rate=training.rate, schedule_keys=ADAM_SCHEDULE_KEYS,
                          init_may_lack=(REFINER_PREFIX,), imagenet_backbone=training.imagenet_backbone,
                          shown_inputs=training.shown_inputs, pictures=training.no_pictures)
FAMILY = Family(name=NAME, title="MMagic's Deep Image Matting (OpenMMLab, Composition-1K SAD 53.8 / 52.3 / 50.6)",
                config=CONFIG, build=build, recipes=recipes,
                state_dict=partial(mmagic_state_dict, family=NAME, name_of=dim_key),
                recognise=recogniser(describe, NAME, dim_key), export=exportable_copy, training=TRAINING)


RELEASED = openmmlab_releases(NAME, "dim", "https://github.com/open-mmlab/mmagic/tree/main/configs/dim", (
    ("mmagic-dim-stage1", "dim_stage1_v16_1x1_1000k_comp1k_SAD-53.8_20200605_140257-979a420f.pth",
     "Composition-1K SAD 53.8, MSE 0.017, Grad 32.7, Conn 54.5"),
    ("mmagic-dim-stage2", "dim_stage2_v16_pln_1x1_1000k_comp1k_SAD-52.3_20200607_171909-d83c4775.pth",
     "Composition-1K SAD 52.3, MSE 0.016, Grad 29.4, Conn 52.4"),
    ("mmagic-dim-stage3", "dim_stage3_v16_pln_1x1_1000k_comp1k_SAD-50.6_20200609_111851-647f24b6.pth",
     "Composition-1K SAD 50.6, MSE 0.015, Grad 29.0, Conn 50.7"),
))
