import json
import os
import re
from functools import partial

import cv2
import numpy as np
import pytest
import torch

from networks.gca_matting import family as gca_matting
from networks.gca_matting import training as gca_training
from networks.gca_matting.generator import build_generator
from networks.families import family_spec
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


def disc_photo_and_trimap(height: int, width: int, seed: int = 0):
    """A smooth random 3-channel photo; a trimap with a foreground disc, an unknown ring, background."""
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.integers(0, 256, (height // 4 + 2, width // 4 + 2, 3), dtype=np.uint8), (width, height),
                       interpolation=cv2.INTER_CUBIC)
    ys, xs = np.mgrid[:height, :width]
    radius = np.hypot((ys - height / 2) / height, (xs - width / 2) / width)
    trimap = np.where(radius < 0.2, 255, np.where(radius < 0.4, 128, 0)).astype(np.uint8)
    return image, trimap


def arch_spec(family: str, arch, trimap_channel: int = 3) -> ModelSpec:
    """The spec of a GCA-Matting or MMagic network: arch = (encoder, decoder)."""
    return family_spec(family, {"model.arch.encoder": arch[0], "model.arch.decoder": arch[1],
                                "model.trimap_channel": trimap_channel})


def gca_tensors(trimap_channel: int = 3):
    """GCA-Matting's sample encoding (its TrainingRecipe.train_tensors), for a TrainDataset."""
    return partial(gca_training.train_tensors, spec=arch_spec("gca-matting", GCA_ARCH, trimap_channel))


def demo_recipe(trimap_channel: int = 3):
    """GCA-Matting's demo recipe (what demo.py runs the gca-dist configs with)."""
    return gca_matting.recipes(arch_spec("gca-matting", GCA_ARCH, trimap_channel))[0]


def write_eval_folders(folder, count: int = 2, size=(45, 70), seed: int = 2):
    """images/, trimaps/ and alpha/ (Composition-1K layout) of random pictures with 0/128/255
    trimaps in `folder`; their paths."""
    rng = np.random.default_rng(seed)
    for name in ("images", "trimaps", "alpha"):
        (folder / name).mkdir()
    for index in range(count):
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        trimap = np.full(size, 128, np.uint8)
        trimap[: size[0] // 4], trimap[-(size[0] // 4):] = 0, 255
        for name, picture in (("images", image), ("trimaps", trimap), ("alpha", np.where(trimap == 128, 90, trimap))):
            assert cv2.imwrite(str(folder / name / f"p{index}.png"), picture)
    return str(folder / "images"), str(folder / "trimaps"), str(folder / "alpha")


def config_for_test_phase(folder, config: str, checkpoint: str, folders, test_settings: str = "") -> str:
    """A copy of a shipped config whose test phase runs `checkpoint` on write_eval_folders'
    `folders`, predictions in folder/prediction, logs in folder/logs; `test_settings` are more
    [test] lines. Its path."""
    text = re.sub(r'checkpoint = ".*"', f'checkpoint = "{checkpoint}"', open(config).read())
    for published, ours in zip(("merged", "trimaps", "alpha_copy"), folders):
        text = text.replace(f"data/Composition-1k-testset/{published}", ours)
    text = text.replace('alpha_path = "prediction"', f'alpha_path = "{folder}/prediction"\n{test_settings}')
    logging = f'logging_path = "{folder}/logs"'
    if re.search(r"^\[log\]$", text, flags=re.M):  # the config's own [log] table (a training config's)
        text = re.sub(r"^\[log\]$", f"[log]\n{logging}", re.sub(r"^logging_path = .*$", "", text, flags=re.M),
                      count=1, flags=re.M)
    else:
        text += f"\n[log]\n{logging}\n"
    path = folder / "test.toml"
    path.write_text(text)
    return str(path)
