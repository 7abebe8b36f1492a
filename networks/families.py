"""The model families this project runs, by the config's model.family, and the one way every entry
point builds and loads a network."""
from typing import Dict, List, Tuple

import torch.nn as nn

from networks.aematter import family as aematter
from networks.aim import family as aim
from networks.dim import family as dim
from networks.family import Family
from networks.gca_matting import family as gca_matting
from networks.mmagic import family as mmagic
from utils.checkpoint import CheckpointError, load_state_dict_checked, read_checkpoint
from utils.config import ConfigError, ModelSpec, load_config, model_spec

FAMILIES: Dict[str, Family] = {family.name: family for family in (gca_matting.FAMILY, mmagic.FAMILY, dim.FAMILY,
                                                                       aematter.FAMILY, aim.FAMILY)}


def family_of(spec: ModelSpec) -> Family:
    if spec.family not in FAMILIES:
        raise ValueError(f"model.family {spec.family!r} is not one of this project's: {', '.join(FAMILIES)}")
    return FAMILIES[spec.family]


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
    and the settings or config to use."""
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
    checkpoint, kept = load_weights(network, spec, path, family_of(spec).init_may_lack)
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


def load_configured(config_path: str, checkpoint: str) -> Tuple[nn.Module, Family, ModelSpec]:
    """(the network of the config at `config_path` with the checkpoint's weights, in eval mode, its
    family, its spec): what demo.py, the page and the exporter run. Raises ConfigError,
    CheckpointError."""
    spec = model_spec(load_config(config_path))
    try:
        family = family_of(spec)
        network = build_network(spec)
    except ValueError as e:
        raise ConfigError(f"{config_path}: {e}") from None
    load_checkpoint(network, spec, checkpoint)
    return network.eval(), family, spec
