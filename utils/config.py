"""Configuration: published defaults overridden by a TOML file, with unknown keys refused.

Entry points call `load_config(path)` and pass plain values down; nothing else reads it.
"""
import copy
import difflib
import fnmatch
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from easydict import EasyDict

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

_DEFAULTS: Dict[str, Any] = {
    "version": "baseline",
    "phase": "train",
    "dist": False,
    "model": {
        "family": "gca-matting",
        "batch_size": 16,
        "imagenet_pretrain": True,
        "imagenet_pretrain_path": None,
        "trimap_channel": 3,
        "arch": {
            "encoder": "res_shortcut_encoder_29",
            "decoder": "res_shortcut_decoder_22",
            "refiner": "",
        },
    },
    "data": {
        "workers": 0,
        "train_fg": None,
        "train_alpha": None,
        "train_bg": None,
        "train_merged": None,
        "own_background_prob": 0.0,
        "test_merged": None,
        "test_alpha": None,
        "test_trimap": None,
        "crop_size": 512,
        "augmentation": True,
        "random_interp": False,
        "pipeline": "gca",
        "decode_cache": "",
    },
    "train": {
        "total_step": 100000,
        "warmup_step": 5000,
        "val_step": 1000,
        "G_lr": 1e-3,
        "lr_schedule": "cosine",
        "beta1": 0.5,
        "beta2": 0.999,
        "rec_weight": 1.0,
        "comp_weight": 0.0,
        "gabor_weight": 0.0,
        "grad_weight": 0.0,
        "smooth_l1_weight": 0.0,
        "lap_weight": 0.0,
        "clip_grad": True,
        "resume_checkpoint": None,
        "reset_lr": False,
        "init_checkpoint": None,
        "freeze": [],
        "accumulate": 1,
        "seed": 0,
        "amp": "off",
        "max_nonfinite_steps": 20,
    },
    "test": {
        "merged": None,
        "alpha": None,
        "trimap": None,
        "scale": "origin",
        "alpha_path": None,
        "batch_size": 1,
        "checkpoint": "best_model",
        "fast_eval": True,
        "gca_block": 0,
        "precision": "fp32",
        "tta": "none",
        "protocol": "comp1k",
        "categories": "",
        "category_from_prefix": "",
        "aim_strategy": "hybrid",
        "aim_resize": "skimage-0.14",
    },
    "log": {
        "tensorboard_path": "./logs/tensorboard",
        "tensorboard_step": 100,
        "tensorboard_image_step": 500,
        "logging_path": "./logs/stdout",
        "logging_step": 10,
        "logging_level": "DEBUG",
        "checkpoint_path": "./checkpoints",
        "checkpoint_step": 10000,
    },
}

# Run outputs are kept apart per run name.
VERSIONED_PATHS = (("log", "tensorboard_path"), ("log", "logging_path"),
                   ("log", "checkpoint_path"), ("test", "alpha_path"))


class ConfigError(ValueError):
    pass


def default_config() -> EasyDict:
    """A fresh copy of the published defaults."""
    return EasyDict(copy.deepcopy(_DEFAULTS))


def _type_name(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return "a table" if isinstance(value, dict) else "a list"
    return type(value).__name__


def _needed_kind(default: Any, value: Any) -> Optional[str]:
    """What a key with this default needs when `value` will not do; None when it will."""
    if default is None:
        return None
    if isinstance(default, int) and not isinstance(default, bool):
        # A count is never rounded silently (TOML reads 2e5 as a float).
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if isinstance(default, bool) or isinstance(value, bool):
        return None if isinstance(default, bool) and isinstance(value, bool) else _type_name(default)
    if isinstance(default, float):
        return None if isinstance(value, (int, float)) else _type_name(default)
    return None if isinstance(value, type(default)) else _type_name(default)


def _plain_name(name: str) -> bool:
    return name not in ("", ".") and ".." not in name and not any(c in name for c in "/\\\0")


def _at_least(low: int) -> Tuple[Callable[[Any], bool], str]:
    return (lambda value: value >= low), f">= {low}"


# train.lr_schedule: the published GCA warm-up and cosine, or MMagic DIM's constant rate.
LR_SCHEDULES = ("cosine", "constant")
# Dotted key (fnmatch pattern) -> (test, what is allowed), checked once the file is merged.
_RULES: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "version": (_plain_name, "a plain name (no '/', '\\' or '..')"),
    "model.batch_size": _at_least(1),
    "model.trimap_channel": ((lambda value: value in (1, 3)), "1 or 3"),
    "data.workers": _at_least(0),
    "data.crop_size": ((lambda value: value > 0 and value % 32 == 0), "a positive multiple of 32"),
    "data.own_background_prob": ((lambda value: 0 <= value <= 1), "in [0, 1]"),
    "train.total_step": _at_least(1),
    "train.warmup_step": _at_least(0),
    "train.val_step": _at_least(1),
    "train.max_nonfinite_steps": _at_least(1),
    "train.accumulate": _at_least(1),
    "train.freeze": ((lambda value: all(isinstance(name, str) and name for name in value)),
                     'a list of module names, dotted paths inside the model (e.g. ["encoder"])'),
    "train.G_lr": ((lambda value: value > 0), "> 0"),
    "train.lr_schedule": ((lambda value: value in LR_SCHEDULES), " or ".join(f'"{name}"' for name in LR_SCHEDULES)),
    "train.beta[12]": ((lambda value: 0 <= value < 1), "in [0, 1)"),
    "train.*_weight": _at_least(0),
    "test.batch_size": _at_least(1),
    "test.gca_block": ((lambda value: value >= -1), "-1, 0 or a positive number of queries"),
    "test.protocol": ((lambda value: value in ("comp1k", "aim500")), "comp1k or aim500"),
    "test.aim_strategy": ((lambda value: value in ("hybrid", "resize")), "hybrid or resize"),
    "test.aim_resize": ((lambda value: value in ("skimage-0.14", "skimage-0.19")), "skimage-0.14 or skimage-0.19"),
    "log.*_step": _at_least(1),
}


def merge_config(config: Dict, overrides: Dict, source: str, prefix: str = "") -> None:
    """Writes `overrides` into `config` in place, refusing keys and types the defaults do not have."""
    for key, value in overrides.items():
        full_key = prefix + key
        if key not in config:
            close = difflib.get_close_matches(key, list(config), n=1)
            hint = f"; did you mean {prefix + close[0]!r}?" if close else \
                f"; valid keys here: {', '.join(prefix + k for k in config)}"
            raise ConfigError(f"{source}: unknown config key {full_key!r}{hint}")
        default = config[key]
        if isinstance(default, dict) != isinstance(value, dict):
            raise ConfigError(f"{source}: {full_key!r} must be {_type_name(default) if isinstance(default, dict) else 'a value'}"
                              f", got {_type_name(value)}")
        if isinstance(default, dict):
            merge_config(default, value, source, full_key + ".")
        elif (needed := _needed_kind(default, value)) is not None:
            raise ConfigError(f"{source}: {full_key!r} must be {needed}, got {value!r}")
        else:
            config[key] = value


def iter_items(config: Dict, prefix: str = "") -> Iterator[Tuple[str, Any]]:
    """(dotted key, value) for every leaf, in definition order."""
    for key, value in config.items():
        if isinstance(value, dict):
            yield from iter_items(value, prefix + key + ".")
        else:
            yield prefix + key, value


def check_values(config: Dict, source: str) -> None:
    """Refuses the first value that `_RULES` does not allow."""
    for key, value in iter_items(config):
        for pattern, (allowed, what) in _RULES.items():
            if fnmatch.fnmatchcase(key, pattern) and not allowed(value):
                # The key unquoted, as where the value is used (networks, dataloader): one wording.
                raise ConfigError(f"{source}: {key} must be {what}, got {value!r}")


def load_config(path: str) -> EasyDict:
    """Defaults overridden by the TOML file at `path`; run paths get `/<version>` appended."""
    try:
        with open(path, "rb") as f:
            overrides = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    config = default_config()
    merge_config(config, overrides, path)
    check_values(config, path)
    for section, key in VERSIONED_PATHS:
        if config[section][key] is not None:
            config[section][key] = os.path.join(config[section][key], config.version)
    return config


@dataclass(frozen=True)
class ModelSpec:
    """The model a config describes, as plain values for networks/: its family (network, recipe and
    checkpoint layout), the encoder and decoder by name, the trimap channels, the GCA blocking, the
    refiner by name ("" for none), AIM's test strategy and scikit-image resize behaviour."""
    family: str
    encoder: str
    decoder: str
    trimap_channel: int
    gca_block: int = 0
    refiner: str = ""
    aim_strategy: str = "hybrid"
    aim_resize: str = "skimage-0.14"


def model_spec(config: Dict) -> ModelSpec:
    model, test = config["model"], config["test"]
    return ModelSpec(model["family"], model["arch"]["encoder"], model["arch"]["decoder"], model["trimap_channel"],
                     test["gca_block"], model["arch"]["refiner"], test["aim_strategy"], test["aim_resize"])


def format_config(config: Dict) -> str:
    return "\n".join(f"{key} = {value!r}" for key, value in iter_items(config))
