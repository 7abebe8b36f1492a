"""Configuration: published defaults overridden by a TOML file, with keys nothing reads refused.

The keys here are the ones every model family shares (the run, the data, the training loop, the
test phase, the logs); each family declares its own keys in a ConfigSchema (their defaults, the
values they allow, the typed options they make). `load_config(path, schema_of)` merges both for
the family the file names (model.family), and refuses a key the family does not read. Entry
points load a config through networks.families.load_config and pass plain values down; nothing
else reads it.
"""
import copy
import difflib
import fnmatch
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from easydict import EasyDict

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

# The family of a config that names none: the published GCA-Matting configs name none.
DEFAULT_FAMILY = "gca-matting"
_DEFAULTS: Dict[str, Any] = {
    "version": "baseline",
    "phase": "train",
    "dist": False,
    "model": {
        "family": DEFAULT_FAMILY,
        "batch_size": 16,
        "imagenet_pretrain": True,
        "imagenet_pretrain_path": None,
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
        "val_step": 1000,
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
        "precision": "fp32",
        "max_memory": "",
        "tta": "none",
        "protocol": "comp1k",
        "categories": "",
        "category_from_prefix": "",
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
# (test, what is allowed) of a key's value, checked once the file is merged.
Rule = Tuple[Callable[[Any], bool], str]


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ConfigSchema:
    """A model family's own config keys. defaults: dotted key -> default ("model.arch.encoder":
    "res_shortcut_encoder_29", "train.rec_weight": 1.0), which also sets the key's type, as the
    shared defaults do; options(values): the family's typed options (ModelSpec.options) from those
    keys' values, by the same dotted keys; rules: dotted key (fnmatch pattern) -> (test, what is
    allowed), checked with the shared rules."""
    defaults: Dict[str, Any]
    options: Callable[[Mapping[str, Any]], Any]
    rules: Dict[str, Rule] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    """The model a config describes, as plain values for networks/: its family (model.family),
    the values of the family's own config keys (dotted, as its ConfigSchema names them) and the
    typed options its schema makes of them."""
    family: str
    values: Mapping[str, Any]
    options: Any


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


def at_least(low: int) -> Rule:
    return (lambda value: value >= low), f">= {low}"


def one_of(*allowed: Any) -> Rule:
    return (lambda value: value in allowed), " or ".join(f'"{a}"' if isinstance(a, str) else str(a) for a in allowed)


# Dotted key (fnmatch pattern) -> (test, what is allowed), checked once the file is merged.
_RULES: Dict[str, Rule] = {
    "version": (_plain_name, "a plain name (no '/', '\\' or '..')"),
    "model.batch_size": at_least(1),
    "data.workers": at_least(0),
    "data.crop_size": ((lambda value: value > 0 and value % 32 == 0), "a positive multiple of 32"),
    "data.own_background_prob": ((lambda value: 0 <= value <= 1), "in [0, 1]"),
    "train.total_step": at_least(1),
    "train.val_step": at_least(1),
    "train.max_nonfinite_steps": at_least(1),
    "train.accumulate": at_least(1),
    "train.freeze": ((lambda value: all(isinstance(name, str) and name for name in value)),
                     'a list of module names, dotted paths inside the model (e.g. ["encoder"])'),
    "test.batch_size": at_least(1),
    "test.protocol": ((lambda value: value in ("comp1k", "aim500")), "comp1k or aim500"),
    "log.*_step": at_least(1),
}


def lookup(config: Mapping, key: str, missing: Any = None) -> Any:
    """The value at a dotted key of a nested config, or `missing` where it has none."""
    for part in key.split("."):
        if not isinstance(config, Mapping) or part not in config:
            return missing
        config = config[part]
    return config


def set_key(config: Dict, key: str, value: Any) -> None:
    """Sets a dotted key of a nested config, making the tables on its way."""
    *tables, last = key.split(".")
    for part in tables:
        if part not in config:
            config[part] = {}
        config = config[part]
    config[last] = value


def default_config(schema: Optional[ConfigSchema] = None) -> EasyDict:
    """A fresh copy of the shared defaults, with those of a family's schema."""
    config = EasyDict(copy.deepcopy(_DEFAULTS))
    for key, value in (schema.defaults if schema else {}).items():
        set_key(config, key, copy.deepcopy(value))
    return config


def merge_config(config: Dict, overrides: Dict, source: str, prefix: str = "",
                 not_read: Callable[[str], str] = lambda key: "") -> None:
    """Writes `overrides` into `config` in place, refusing keys and types the defaults do not have.
    not_read(key): for a key the defaults lack, why the config's family does not read it ('' for
    a key nothing reads)."""
    for key, value in overrides.items():
        full_key = prefix + key
        if key not in config:
            why = not_read(full_key)
            if why:
                raise ConfigError(f"{source}: {full_key!r} {why}")
            close = difflib.get_close_matches(key, list(config), n=1)
            hint = f"; did you mean {prefix + close[0]!r}?" if close else \
                f"; valid keys here: {', '.join(prefix + k for k in config)}"
            raise ConfigError(f"{source}: unknown config key {full_key!r}{hint}")
        default = config[key]
        if isinstance(default, dict) != isinstance(value, dict):
            raise ConfigError(f"{source}: {full_key!r} must be {_type_name(default) if isinstance(default, dict) else 'a value'}"
                              f", got {_type_name(value)}")
        if isinstance(default, dict):
            merge_config(default, value, source, full_key + ".", not_read)
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


def check_values(config: Dict, source: str, schema: Optional[ConfigSchema] = None) -> None:
    """Refuses the first value that the shared rules, or the family schema's, do not allow."""
    rules = {**_RULES, **(schema.rules if schema else {})}
    for key, value in iter_items(config):
        for pattern, (allowed, what) in rules.items():
            if fnmatch.fnmatchcase(key, pattern) and not allowed(value):
                # The key unquoted, as where the value is used (networks, dataloader): one wording.
                raise ConfigError(f"{source}: {key} must be {what}, got {value!r}")


def named_family(overrides: Dict, source: str) -> str:
    """The model.family a TOML file's contents name, DEFAULT_FAMILY where they name none."""
    model = overrides.get("model", {})
    family = model.get("family", DEFAULT_FAMILY) if isinstance(model, dict) else DEFAULT_FAMILY
    if not isinstance(family, str):
        raise ConfigError(f"{source}: 'model.family' must be str, got {family!r}")
    return family


def load_config(path: str, schema_of: Callable[[str], ConfigSchema],
                readers: Callable[[str], List[str]] = lambda key: []) -> EasyDict:
    """Defaults overridden by the TOML file at `path`; run paths get `/<version>` appended.
    schema_of(family): the ConfigSchema of the family the file names (ValueError for a name that
    is none); readers(key): the families that read a key, to name in the refusal of a key the
    file's family does not read."""
    try:
        with open(path, "rb") as f:
            overrides = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    family = named_family(overrides, path)
    try:
        schema = schema_of(family)
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None

    def not_read(key: str) -> str:
        others = [name for name in readers(key) if name != family]
        if not others:
            return ""
        owners = ", ".join(f'"{name}"' for name in others)
        return f"is not read by model.family = \"{family}\" (it is a key of {owners}); remove it, or set model.family"

    config = default_config(schema)
    merge_config(config, overrides, path, not_read=not_read)
    check_values(config, path, schema)
    for section, key in VERSIONED_PATHS:
        if config[section][key] is not None:
            config[section][key] = os.path.join(config[section][key], config.version)
    return config


def reads(schema: ConfigSchema, key: str) -> bool:
    """Whether a dotted key (or a table, such as "model.arch") is one of the schema's."""
    return any(own == key or own.startswith(key + ".") for own in schema.defaults)


def spec_values(schema: ConfigSchema, config: Mapping) -> Dict[str, Any]:
    """The values of a family's own keys in a merged config, by their dotted keys."""
    return {key: lookup(config, key, default) for key, default in schema.defaults.items()}


def model_spec(family: str, schema: ConfigSchema, values: Mapping[str, Any]) -> ModelSpec:
    return ModelSpec(family, dict(values), schema.options(values))


def format_config(config: Dict) -> str:
    return "\n".join(f"{key} = {value!r}" for key, value in iter_items(config))
