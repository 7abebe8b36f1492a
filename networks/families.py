"""The model families this project runs, by the config's model.family, and the one way every entry
point loads a config and builds and loads a network.

A family is found by its name in FAMILIES (this project's), in the families added to this process
with register(), or, for a model.family such as "my_package.my_family", as the FAMILY of the
module at that dotted path: a plug-in family needs no project file edited, and a config naming
its module works in every process (torchrun's ranks, data-loader workers) without registering.

Each family's module also declares the files it has released (RELEASED, utils.hub.released's
ReleasedModel): gathered here into one table by name, so that everything that takes a checkpoint
path takes a released model's name too (checkpoint_path, config_for).
"""
import importlib
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch.nn as nn
from easydict import EasyDict

from networks.aematter import family as aematter
from networks.aim import family as aim
from networks.dim import family as dim
from networks.family import Family
from networks.gca_matting import family as gca_matting
from networks.mmagic import family as mmagic
from utils import config as config_file
from utils.checkpoint import CheckpointError, load_state_dict_checked, read_checkpoint
from utils.config import DEFAULT_FAMILY, ConfigError, ModelSpec
from utils.hub.fetch import fetch
from utils.hub.released import ReleasedModel, released_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAMILY_MODULES = (gca_matting, mmagic, dim, aematter, aim)
FAMILIES: Dict[str, Family] = {module.FAMILY.name: module.FAMILY for module in FAMILY_MODULES}
# The released models by name (python -m networks.models lists them).
RELEASED: Dict[str, ReleasedModel] = released_table(model for module in FAMILY_MODULES for model in module.RELEASED)


def register(family: Family) -> Family:
    """Adds a family to this process's registry, so that model.family = family.name names it;
    ValueError when another family has that name. Returns the family."""
    if FAMILIES.get(family.name, family) is not family:
        raise ValueError(f"model.family {family.name!r} is taken by {FAMILIES[family.name].title}; give yours "
                         "another name")
    FAMILIES[family.name] = family
    return family


def _is_module_path(name: str) -> bool:
    return all(part.isidentifier() for part in name.split("."))


def family_named(name: str) -> Family:
    """The family that model.family = `name` names: a registered one, or the FAMILY of the module at
    the dotted path `name` (imported and registered). ValueError, naming the families there are,
    for a name that is neither."""
    if name in FAMILIES:
        return FAMILIES[name]
    known = ", ".join(FAMILIES)
    if not _is_module_path(name):
        raise ValueError(f"model.family {name!r} is not one of this project's ({known}) nor a module path")
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        raise ValueError(f"model.family {name!r} is not one of this project's ({known}), and no module of that "
                         f"name could be imported ({e}); a plug-in family is the FAMILY of a module on the Python "
                         "path") from None
    family = getattr(module, "FAMILY", None)
    if not isinstance(family, Family):
        raise ValueError(f"model.family {name!r}: the module {name} has no FAMILY (a networks.family.Family)")
    if family.name != name:
        raise ValueError(f"model.family {name!r}: the module's FAMILY is named {family.name!r}; name it {name!r}, "
                         "its module's path, so that every process finds it by that name")
    return register(family)


def family_of(spec: ModelSpec) -> Family:
    return family_named(spec.family)


def readers(key: str) -> List[str]:
    """The registered families that read a config key (or a table of keys)."""
    return [name for name, family in FAMILIES.items() if config_file.reads(family.config, key)]


def load_config(path: str) -> EasyDict:
    """The config at `path`: the shared keys and those of the family it names, each refused where
    nothing reads it (utils.config.load_config). Raises ConfigError."""
    return config_file.load_config(path, lambda name: family_named(name).config, readers)


def default_config(family: str = DEFAULT_FAMILY) -> EasyDict:
    """The defaults of a config of `family`: the shared ones and the family's."""
    config = config_file.default_config(family_named(family).config)
    config.model.family = family
    return config


def model_spec(config: Mapping) -> ModelSpec:
    """The model a loaded config describes: its family and the values of the family's keys."""
    name = config["model"]["family"]
    schema = family_named(name).config
    return config_file.model_spec(name, schema, config_file.spec_values(schema, config))


def family_spec(family: str, values: Optional[Mapping[str, Any]] = None, source: str = "settings") -> ModelSpec:
    """The spec of a model of `family` with `values` (dotted keys of the family's config) over the
    family's defaults, checked as a config file is: ConfigError for a key the family does not read
    or a value its rules refuse."""
    config, overrides = default_config(family), {}
    for key, value in (values or {}).items():
        config_file.set_key(overrides, key, value)
    config_file.merge_config(config, overrides, source,
                             not_read=lambda key: f"is not a config key of model.family \"{family}\"")
    config_file.check_values(config, source, family_named(family).config)
    return model_spec(config)


def config_for(checkpoint: str, config: Optional[str], default: Optional[str] = None) -> str:
    """The config to run `checkpoint` with: `config` where given, else the config that comes with the
    released model `checkpoint` names, else `default`. ConfigError where there is none."""
    if config:
        return config
    if checkpoint in RELEASED:
        return os.path.join(ROOT, RELEASED[checkpoint].config)
    if default:
        return default
    raise ConfigError(f"{checkpoint} is not a released model's name (python -m networks.models lists them): give the "
                      "config to run it with (--config)")


def released_file(model: ReleasedModel) -> str:
    """Where the docs say to put a released model's file: its config's checkpoint folder."""
    return os.path.join(load_config(os.path.join(ROOT, model.config)).log.checkpoint_path, model.file)


def checkpoint_path(checkpoint: str) -> str:
    """The file `checkpoint` names: a path as it is, or where it is no file, the released model of
    that name (utils.hub.fetch: where the docs say to put it, the cache, MATTING_MIRROR, its
    publisher). Raises CheckpointError (utils.hub.download.FetchError) where it cannot be fetched."""
    if checkpoint not in RELEASED or os.path.exists(checkpoint):
        return checkpoint
    model = RELEASED[checkpoint]
    return fetch(model, released_file(model))


def build_network(spec: ModelSpec) -> nn.Module:
    """The spec's network with initial weights, in training mode. ValueError for a spec that names
    no network."""
    return family_of(spec).build(spec)


def absent_parts(network: nn.Module, state_dict: Dict, prefixes: Tuple[str, ...]) -> Dict:
    """The network's own tensors under each of `prefixes` that the state dict has no key under."""
    absent = tuple(prefix for prefix in prefixes if not any(key.startswith(prefix) for key in state_dict))
    return {key: value for key, value in network.state_dict().items() if absent and key.startswith(absent)}


def load_weights(network: nn.Module, spec: ModelSpec, path: str, may_lack: Tuple[str, ...] = ()) -> Tuple[Dict, List[str]]:
    """Loads the checkpoint at `path` into `network` (built from `spec`) strictly, but for the parts
    under `may_lack` the file has no tensor of (they keep theirs); returns the file's contents and
    the keys so kept. A file that does not fit gets a CheckpointError that names what it looks like
    and the settings or config to use. `path` may be a released model's name (checkpoint_path)."""
    path = checkpoint_path(path)
    checkpoint = read_checkpoint(path)
    family = family_of(spec)
    try:
        state = family.state_dict(checkpoint, path, list(network.state_dict()))
        kept = absent_parts(network, state, may_lack)
        load_state_dict_checked(network, {**kept, **state}, path)
    except CheckpointError as e:
        hints = [hint for other in FAMILIES.values() if (hint := other.recognise(checkpoint))]
        raise CheckpointError(f"{e} The file looks like {hints[0]}." if hints else str(e)) from None
    return checkpoint, list(kept)


def load_checkpoint(network: nn.Module, spec: ModelSpec, path: str) -> Dict:
    """load_weights with every tensor from the file; the file's contents."""
    return load_weights(network, spec, path)[0]


def init_from_checkpoint(network: nn.Module, spec: ModelSpec, path: str) -> str:
    """Loads the weights, and only the weights, of the checkpoint at `path` into `network` for
    fine-tuning (train.init_checkpoint): a released file of the spec's family (gca-dist*.pth, an
    MMagic file), a checkpoint of this project or a bare state dict, strictly (a mismatch raises
    CheckpointError naming the keys) but for the parts the family lets a file lack (DIM's refiner
    from a stage-1 file). Its optimizer, schedule and step are not used. Returns a line describing
    what was loaded, for the log."""
    training = family_of(spec).training
    checkpoint, kept = load_weights(network, spec, path, () if isinstance(training, str) else training.init_may_lack)
    loaded = f"{len(network.state_dict()) - len(kept)} tensors"
    if kept:
        parts = ", ".join(sorted({key.split(".")[0] for key in kept}))
        loaded += f" ({len(kept)} more, of the {parts}, which the file has not, keep their initialisation)"
    if "iter" in checkpoint:
        return (f"{path}: {loaded} of a run after its step {int(checkpoint['iter']) + 1} "
                "(its optimizer, schedule and step are not used)")
    return f"{path}: {loaded}"


def load_network(spec: ModelSpec, path: str) -> nn.Module:
    """The spec's network with the checkpoint's weights, in eval mode."""
    network = build_network(spec)
    load_checkpoint(network, spec, path)
    return network.eval()


def load_configured(config_path: Optional[str], checkpoint: str) -> Tuple[nn.Module, Family, ModelSpec]:
    """(the network of the config at `config_path` with the checkpoint's weights, in eval mode, its
    family, its spec): what demo.py, the page and the exporter run. The checkpoint may be a released
    model's name, whose config comes with it where `config_path` is None (config_for). Raises
    ConfigError, CheckpointError."""
    config_path = config_for(checkpoint, config_path)
    spec = model_spec(load_config(config_path))
    family = family_of(spec)
    try:
        network = build_network(spec)
    except ValueError as e:
        raise ConfigError(f"{config_path}: {e}") from None
    load_checkpoint(network, spec, checkpoint)
    return network.eval(), family, spec
