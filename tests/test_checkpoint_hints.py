"""Every released checkpoint layout, and this project's own files of each family, loaded with the
config of another family, variant or stage: the error names the config to use.

The files hold the real keys and shapes, but every tensor is a stride-0 view of one zero (saved as
one float), so each is a few kilobytes; each config's network is built once."""
import json
import os

import pytest
import torch

from networks.dim.layout import dim_key
from networks.families import build_network, load_config, load_weights, model_spec
from networks.mmagic.layout import mmagic_key
from utils.checkpoint import CheckpointError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MMAGIC_META = {"meta": {"mmcv_version": "1.0rc0", "time": "Fri Jun  5 14:02:57 2020"}}
AIM_ALIASES = (("encoder0.0.", "resnet.conv1."), ("encoder0.1.", "resnet.bn1."), ("encoder1.0.", "resnet.layer1."),
               ("encoder2.", "resnet.layer2."), ("encoder3.", "resnet.layer3."), ("encoder4.", "resnet.layer4."))


def gca_matting_file(state):
    return {"state_dict": {"module." + key: value for key, value in state.items()}}


def mmagic_file(state):
    return {**MMAGIC_META, "state_dict": {mmagic_key(key): value for key, value in state.items()}}


def dim_file(state):
    return {**MMAGIC_META, "state_dict": {dim_key(key): value for key, value in state.items()}}


def aematter_file(state):
    return {"model": state}


def vitmatte_file(state):
    """detectron2's checkpointer layout, without the normalisation (the recipe's, not the file's)."""
    return {"model": {key: value for key, value in state.items() if key not in ("pixel_mean", "pixel_std")}}


def aim_file(state):
    """The backbone under both of the published module's names, and its unused classifier."""
    aliases = {published + key[len(ours):]: value for key, value in state.items()
               for ours, published in AIM_ALIASES if key.startswith(ours)}
    fc = {"resnet.fc.weight": torch.zeros(1).expand(1000, 512), "resnet.fc.bias": torch.zeros(1).expand(1000)}
    return {"state_dict": {**state, **aliases, **fc}}


# (released file, the config it was released for, how the release lays it out, the configs the
# error may name: a file fits each of them)
RELEASED = {
    "gca-dist": ("config/gca-dist.toml", gca_matting_file, ("config/gca-dist.toml",)),
    "gca-dimaug": ("config/gca-dimaug.toml", gca_matting_file, ("config/gca-dimaug.toml",)),
    "baseline": ("config/baseline.toml", gca_matting_file, ("config/baseline.toml",)),
    "baseline-dimaug": ("config/baseline-dimaug.toml", gca_matting_file, ("config/baseline-dimaug.toml",)),
    "mmagic-gca": ("config/mmagic-gca.toml", mmagic_file, ("config/mmagic-gca.toml",)),
    "mmagic-gca-dimaug": ("config/mmagic-gca-dimaug.toml", mmagic_file, ("config/mmagic-gca-dimaug.toml",)),
    "mmagic-baseline": ("config/mmagic-baseline.toml", mmagic_file, ("config/mmagic-baseline.toml",)),
    "mmagic-baseline-dimaug": ("config/mmagic-baseline-dimaug.toml", mmagic_file,
                               ("config/mmagic-baseline-dimaug.toml",)),
    "dim-stage1": ("config/mmagic-dim-stage1.toml", dim_file, ("config/mmagic-dim-stage1.toml",)),
    # stages 2 and 3 have the same network: either config fits either file
    "dim-stage2": ("config/mmagic-dim-stage2.toml", dim_file,
                   ("config/mmagic-dim-stage2.toml", "config/mmagic-dim-stage3.toml")),
    "dim-stage3": ("config/mmagic-dim-stage3.toml", dim_file,
                   ("config/mmagic-dim-stage2.toml", "config/mmagic-dim-stage3.toml")),
    "aematter": ("config/aematter.toml", aematter_file, ("config/aematter.toml",)),
    "aim": ("config/aim.toml", aim_file, ("config/aim.toml",)),
    "vitmatte-s": ("config/vitmatte-s.toml", vitmatte_file, ("config/vitmatte-s.toml",)),
}
CONFIGS = sorted({config for config, _, _ in RELEASED.values()})
# Every family trains here and saves {'state_dict', 'config', ...} (trainer.checkpoint_state).
OWN = list(RELEASED)


@pytest.fixture(scope="module")
def networks():
    """Each config's spec and network, built once."""
    built = {}
    for config in CONFIGS:
        spec = model_spec(load_config(os.path.join(ROOT, config)))
        built[config] = (spec, build_network(spec))
    return built


def zeros_like_state(network):
    """The network's state dict as stride-0 views of one zero: the real keys, shapes and dtypes."""
    return {key: torch.zeros((1,) * value.dim(), dtype=value.dtype).expand(value.shape)
            for key, value in network.state_dict().items()}


@pytest.fixture(scope="module")
def files(networks, tmp_path_factory):
    """{(name, 'released' or 'own'): path} of every layout."""
    folder = tmp_path_factory.mktemp("layouts")
    paths = {}
    for name, (config, layout, _) in RELEASED.items():
        state = zeros_like_state(networks[config][1])
        contents = {"released": layout(state)}
        if name in OWN:
            contents["own"] = {"iter": 10, "state_dict": state,
                               "config": json.loads(json.dumps(load_config(os.path.join(ROOT, config))))}
        for kind, checkpoint in contents.items():
            paths[name, kind] = str(folder / f"{name}-{kind}.pth")
            torch.save(checkpoint, paths[name, kind])
    return paths


def outcome(networks, config, path):
    """'' when the file loads into the config's network, else the error."""
    spec, network = networks[config]
    try:
        load_weights(network, spec, path)
    except CheckpointError as e:
        return str(e)
    return ""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["released", "own"])
@pytest.mark.parametrize("name", list(RELEASED))
def test_a_file_with_any_other_config_names_the_config_to_use(networks, files, name, kind):
    config, _, fitting = RELEASED[name]
    assert outcome(networks, config, files[name, kind]) == ""
    for other in CONFIGS:
        error = outcome(networks, other, files[name, kind])
        if other in fitting:
            assert error == "", (other, error)
            continue
        assert error, other
        named = [candidate for candidate in fitting if candidate in error]
        assert named, f"{name} ({kind}) with {other}: {error}"
        # and not the config that was given, as if it were the one to use
        assert f"use {other}" not in error and f"as {other} does" not in error, (other, error)
