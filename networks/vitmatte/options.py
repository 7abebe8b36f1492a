"""ViTMatte's config keys (its ConfigSchemas) and the typed options they make: the backbone's size
(model.arch.encoder: vit_s, vit_b, or the small vit_toy), the Detail Capture decoder, the trimap's
one channel; and, for the "vitmatte" family, which trains, its optimizer and schedule (ViTMatte_S_100ep.py's)."""
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple

from networks.vitmatte.network import SIZES
from utils.config import ConfigError, ConfigSchema, at_least, one_of

DECODER = "detail_capture"
TRIMAP_CHANNEL = 1


@dataclass(frozen=True)
class ViTMatteSchedule:
    """AdamW's base rate (train.lr) and weight decay (train.weight_decay, detectron2's common/optim.py
    AdamW's 0.1), the layer-wise decay of the rate over the ViT blocks (train.layer_decay), the
    warm-up (train.warmup_step) and the multi-step decay: train.lr_factors from 0, and from each of
    train.lr_milestones (fractions of train.total_step) on."""
    lr: float
    weight_decay: float
    layer_decay: float
    warmup_step: int
    milestones: Tuple[float, ...]
    factors: Tuple[float, ...]


@dataclass(frozen=True)
class ViTMatteOptions:
    """schedule: None for a family that does not train (vitmatte-hf)."""
    encoder: str
    decoder: str
    trimap_channel: int
    schedule: Optional[ViTMatteSchedule] = None


def schedule_of(values: Mapping[str, Any]) -> ViTMatteSchedule:
    milestones, factors = tuple(values["train.lr_milestones"]), tuple(values["train.lr_factors"])
    if len(factors) != len(milestones) + 1:
        raise ConfigError(f"train.lr_factors {list(factors)} must have one factor more than train.lr_milestones "
                          f"{list(milestones)} (the first before the first milestone)")
    return ViTMatteSchedule(values["train.lr"], values["train.weight_decay"], values["train.layer_decay"],
                            values["train.warmup_step"], milestones, factors)


def vitmatte_options(values: Mapping[str, Any]) -> ViTMatteOptions:
    return ViTMatteOptions(values["model.arch.encoder"], values["model.arch.decoder"], values["model.trimap_channel"],
                           schedule_of(values) if "train.lr" in values else None)


def increasing_fractions(value: Any) -> bool:
    return (isinstance(value, list) and all(isinstance(v, (int, float)) and 0 < v < 1 for v in value)
            and value == sorted(value))


def positive_numbers(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, (int, float)) and v > 0 for v in value)


NETWORK_DEFAULTS = {"model.trimap_channel": TRIMAP_CHANNEL, "model.arch.encoder": "vit_s",
                    "model.arch.decoder": DECODER}
NETWORK_RULES = {"model.trimap_channel": one_of(TRIMAP_CHANNEL), "model.arch.encoder": one_of(*SIZES),
                 "model.arch.decoder": one_of(DECODER)}
# ViTMatte_S_100ep.py (and _B_): lr 5e-4, 250 warm-up steps, x 0.1 from 30 % and x 0.05 from 90 % of
# the run; configs/common/optimizer.py: layer decay 0.65; detectron2's AdamW: weight decay 0.1.
TRAINING_DEFAULTS = {"train.lr": 5e-4, "train.weight_decay": 0.1, "train.layer_decay": 0.65,
                     "train.warmup_step": 250, "train.lr_milestones": [0.3, 0.9], "train.lr_factors": [1.0, 0.1, 0.05]}
TRAINING_RULES = {"train.lr": ((lambda value: value > 0), "> 0"), "train.weight_decay": at_least(0),
                  "train.layer_decay": ((lambda value: 0 < value <= 1), "in (0, 1]"),
                  "train.warmup_step": at_least(0),
                  "train.lr_milestones": (increasing_fractions, "a list of increasing fractions of train.total_step"),
                  "train.lr_factors": (positive_numbers, "a list of numbers > 0")}
# The keys whose change moves the learning rate of a step (the layer decay moves only the groups' scales).
SCHEDULE_KEYS = ("train.lr", "train.warmup_step", "train.lr_milestones", "train.lr_factors")
CONFIG = ConfigSchema(defaults=NETWORK_DEFAULTS, options=vitmatte_options, rules=NETWORK_RULES)
TRAINING_CONFIG = ConfigSchema(defaults={**NETWORK_DEFAULTS, **TRAINING_DEFAULTS}, options=vitmatte_options,
                               rules={**NETWORK_RULES, **TRAINING_RULES})
