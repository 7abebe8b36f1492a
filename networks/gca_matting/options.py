"""GCA-Matting's config keys (its ConfigSchema), which MMagic's GCA and baseline share, and the
typed options they make: the encoder and decoder by name, the trimap channels, the attention's
blocking, Adam with its schedule, and the loss weights."""
from dataclasses import dataclass
from typing import Any, Dict, Mapping

from networks.training import ADAM_DEFAULTS, ADAM_RULES, AdamSchedule, adam_schedule
from utils.config import ConfigSchema, at_least, one_of

LOSS_WEIGHTS = ("rec_weight", "comp_weight", "smooth_l1_weight", "grad_weight", "gabor_weight", "lap_weight")


@dataclass(frozen=True)
class GcaOptions:
    """model.arch.encoder / decoder, model.trimap_channel (3: one-hot, 1: labels 0 / 1 / 2),
    test.gca_block (GuidedCxtAtten.block: -1 the published L x L form, 0 automatic, N queries per
    block), Adam and its schedule, and train.*_weight by name (rec_weight, ...)."""
    encoder: str
    decoder: str
    trimap_channel: int
    gca_block: int
    adam: AdamSchedule
    loss_weights: Dict[str, float]


def gca_options(values: Mapping[str, Any]) -> GcaOptions:
    return GcaOptions(values["model.arch.encoder"], values["model.arch.decoder"], values["model.trimap_channel"],
                      values["test.gca_block"], adam_schedule(values),
                      {name: values[f"train.{name}"] for name in LOSS_WEIGHTS})


CONFIG = ConfigSchema(
    defaults={"model.trimap_channel": 3,
              "model.arch.encoder": "res_shortcut_encoder_29", "model.arch.decoder": "res_shortcut_decoder_22",
              **ADAM_DEFAULTS,
              "train.rec_weight": 1.0, "train.comp_weight": 0.0, "train.gabor_weight": 0.0,
              "train.grad_weight": 0.0, "train.smooth_l1_weight": 0.0, "train.lap_weight": 0.0,
              "test.gca_block": 0},
    options=gca_options,
    rules={"model.trimap_channel": one_of(1, 3), **ADAM_RULES, "train.*_weight": at_least(0),
           "test.gca_block": ((lambda value: value >= -1), "-1, 0 or a positive number of queries")})
