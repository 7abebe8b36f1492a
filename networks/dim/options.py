"""DIM's config keys (its ConfigSchema) and the typed options they make: the VGG16 encoder, the
plain decoder, the refiner ("plain_refiner" from stage 2 on, "" for none), the trimap's one
channel, and Adam with its schedule (MMagic's DIM: a constant 1e-5). Its losses have MMagic's fixed
weights, so it reads no train.*_weight."""
from dataclasses import dataclass
from typing import Any, Mapping

from networks.training import ADAM_DEFAULTS, ADAM_RULES, AdamSchedule, adam_schedule
from utils.config import ConfigSchema


@dataclass(frozen=True)
class DimOptions:
    encoder: str
    decoder: str
    refiner: str
    trimap_channel: int
    adam: AdamSchedule


def dim_options(values: Mapping[str, Any]) -> DimOptions:
    return DimOptions(values["model.arch.encoder"], values["model.arch.decoder"], values["model.arch.refiner"],
                      values["model.trimap_channel"], adam_schedule(values))


CONFIG = ConfigSchema(
    defaults={"model.trimap_channel": 1, "model.arch.encoder": "vgg16", "model.arch.decoder": "plain_decoder",
              "model.arch.refiner": "", **ADAM_DEFAULTS},
    options=dim_options, rules=ADAM_RULES)
