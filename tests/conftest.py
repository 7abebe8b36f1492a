import json
import os

import numpy as np
import pytest
import torch

from networks import build_generator, gca_matting
from utils.config import ModelSpec

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
GCA_ARCH = ("resnet_gca_encoder_29", "res_gca_decoder_22")
BASELINE_ARCH = ("res_shortcut_encoder_29", "res_shortcut_decoder_22")

torch.set_num_threads(min(2, os.cpu_count() or 1))


def key_list(name: str):
    """[(key, shape, dtype)] of the released checkpoints, copied from the published spec."""
    with open(os.path.join(FIXTURES, f"{name}_keys.json")) as f:
        return json.load(f)


def state_dict_from_key_list(name: str, seed: int = 0):
    """A state dict of random tensors with exactly the published keys, shapes and dtypes."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape, dtype in key_list(name):
        if dtype == "int64":
            state[key] = torch.tensor(7, dtype=torch.int64).reshape(shape)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.05
    return state


def random_gca(forwards: int) -> torch.nn.Module:
    """The GCA generator with random weights (seed 0) after `forwards` training-mode forwards on
    random 64 x 64 batches: they converge the spectral norms' u, v as training does (random u, v
    give sigma near 0) and move the BatchNorm statistics. Left in training mode."""
    torch.manual_seed(0)
    model = build_generator(*GCA_ARCH)
    with torch.no_grad():
        for _ in range(forwards):
            model(torch.randn(2, 3, 64, 64), torch.rand(2, 3, 64, 64))
    return model


def randomise_batch_norms(model: torch.nn.Module) -> None:
    """BatchNorm statistics and affine weights away from the identity, as a trained model's are."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def demo_recipe(trimap_channel: int = 3):
    """GCA-Matting's demo recipe (what demo.py runs the gca-dist configs with)."""
    return gca_matting.recipes(ModelSpec("gca-matting", *GCA_ARCH, trimap_channel))[0]
