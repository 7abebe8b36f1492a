"""ViTMatte's config keys (its ConfigSchema) and the typed options they make: the backbone's size
(model.arch.encoder: vit_s, vit_b, or the small vit_toy), the Detail Capture decoder, the trimap's
one channel."""
from dataclasses import dataclass
from typing import Any, Mapping

from networks.vitmatte.network import SIZES
from utils.config import ConfigSchema, one_of

DECODER = "detail_capture"
TRIMAP_CHANNEL = 1


@dataclass(frozen=True)
class ViTMatteOptions:
    encoder: str
    decoder: str
    trimap_channel: int


def vitmatte_options(values: Mapping[str, Any]) -> ViTMatteOptions:
    return ViTMatteOptions(values["model.arch.encoder"], values["model.arch.decoder"], values["model.trimap_channel"])


NETWORK_DEFAULTS = {"model.trimap_channel": TRIMAP_CHANNEL, "model.arch.encoder": "vit_s",
                    "model.arch.decoder": DECODER}
NETWORK_RULES = {"model.trimap_channel": one_of(TRIMAP_CHANNEL), "model.arch.encoder": one_of(*SIZES),
                 "model.arch.decoder": one_of(DECODER)}
CONFIG = ConfigSchema(defaults=NETWORK_DEFAULTS, options=vitmatte_options, rules=NETWORK_RULES)
