"""AEMatter's config keys (its ConfigSchema) and the typed options they make: the one-hot trimap,
and its training recipe's settings: the learning rate per sample of the batch (train.py: 2.5e-5
times the batch size of 2) and the epochs of its cosine. It also fixes four of the shared keys
where its recipe allows one value only (its pipeline, its random interpolations, its own gradient
clipping) and sets the published batch and crop as their defaults."""
from dataclasses import dataclass
from typing import Any, Mapping

from networks.aematter.losses import MIN_CROP
from utils.config import ConfigSchema, at_least, one_of

PIPELINE = "aematter"


@dataclass(frozen=True)
class AEMatterOptions:
    """trimap_channel: 3 (one-hot); lr_per_sample x batch_size: the base learning rate;
    lr_epochs: the cosine's steps (the published 150 epochs), spread evenly over train.total_step."""
    trimap_channel: int
    lr_per_sample: float
    batch_size: int
    lr_epochs: int


def aematter_options(values: Mapping[str, Any]) -> AEMatterOptions:
    return AEMatterOptions(values["model.trimap_channel"], values["train.lr_per_sample"], values["model.batch_size"],
                           values["train.lr_epochs"])


CONFIG = ConfigSchema(
    defaults={"model.trimap_channel": 3, "model.batch_size": 2, "train.lr_per_sample": 2.5e-5, "train.lr_epochs": 150,
              "data.crop_size": 1024, "data.pipeline": PIPELINE, "data.random_interp": True, "train.clip_grad": False},
    options=aematter_options,
    rules={
        "train.lr_per_sample": ((lambda value: value > 0), "> 0"),
        "train.lr_epochs": at_least(1),
        "data.crop_size": ((lambda value: value >= MIN_CROP and value % 32 == 0),
                           f"a multiple of 32 of at least {MIN_CROP} (the Laplacian loss's 5 levels)"),
        "data.pipeline": one_of(PIPELINE),
        "data.random_interp": ((lambda value: value is True),
                               "true for AEMatter (its pipeline always draws its interpolations at random)"),
        "train.clip_grad": ((lambda value: value is False),
                            "false for AEMatter (its optimizer step clips the gradient norm at 10, as published; "
                            "GCA-Matting's adaptive clipping is not part of its recipe)"),
    })
