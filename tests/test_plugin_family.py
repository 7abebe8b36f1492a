"""The plug-in promise: a model family defined in this file alone (a two-conv network, its config
keys, its recipe, its checkpoint layout, its export form and its training recipe), named by a
config as model.family = "<this module's path>", runs through demo.py, the Python API, the test
phase, training through main.py (in a fresh process, which finds the family by its module path)
with a resume, and the ONNX export, with no project file edited."""
import ast
import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

import demo
import main
from dataloader.toy import make_toy_dataset
from networks import export
from networks.export_form import exportable_copy
from networks.families import FAMILIES, family_named, load_config, register
from networks.family import Family
from networks.training import TrainingRecipe, composited_dataset, unknown_l1
from utils.checkpoint import CheckpointError, extract_state_dict, read_checkpoint, saved_family
from utils.config import ConfigError, ConfigSchema, ModelSpec, at_least
from utils.recipe import Padding, Recipe, exact_background, exact_foreground, grey_unit, unit_range

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = __name__  # the config's model.family: this module, found in any process that can import it
# The layout of the family's "released" files: its tensors under this key.
RELEASED_KEY = "tiny_weights"


class TwoConv(nn.Module):
    """RGB + the grey trimap in, alpha out: two 3 x 3 convolutions."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(4, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, image: torch.Tensor, trimap: torch.Tensor) -> Tuple[torch.Tensor, Optional[Dict]]:
        return torch.sigmoid(self.conv2(torch.relu(self.conv1(torch.cat([image, trimap], 1))))), None


@dataclass(frozen=True)
class TinyOptions:
    width: int
    lr: float


CONFIG = ConfigSchema(defaults={"model.tiny_width": 4, "train.tiny_lr": 0.05},
                      options=lambda values: TinyOptions(values["model.tiny_width"], values["train.tiny_lr"]),
                      rules={"model.tiny_width": at_least(1)})


def build(spec: ModelSpec) -> TwoConv:
    return TwoConv(spec.options.width)


def recipes(spec: ModelSpec) -> Tuple[Recipe, Recipe]:
    recipe = Recipe(NAME, unit_range, grey_unit, Padding(multiple=8), exact_foreground, exact_background, "round")
    return recipe, recipe


def state_dict(checkpoint: Dict, path: str, keys: List[str]) -> Dict[str, torch.Tensor]:
    """Its released layout ({RELEASED_KEY: tensors}), or this project's own checkpoints."""
    if isinstance(checkpoint, dict) and RELEASED_KEY in checkpoint:
        return extract_state_dict(checkpoint[RELEASED_KEY], path)
    if saved_family(checkpoint) not in (None, NAME):
        raise CheckpointError(f"{path} is not a tiny-family checkpoint")
    return extract_state_dict(checkpoint, path)


def recognise(checkpoint: Dict) -> Optional[str]:
    if isinstance(checkpoint, dict) and RELEASED_KEY in checkpoint:
        return f"a tiny-family checkpoint: use model.family = \"{NAME}\""
    return None


def train_tensors(sample: Dict[str, np.ndarray], spec: ModelSpec) -> Dict[str, torch.Tensor]:
    recipe = recipes(spec)[0]
    return {"image": recipe.image(torch.from_numpy(np.ascontiguousarray(sample["image"][:, :, ::-1]))),
            "trimap": recipe.trimap(torch.from_numpy(np.ascontiguousarray(sample["trimap"], dtype=np.float32))),
            "alpha": torch.from_numpy(np.ascontiguousarray(sample["alpha"], dtype=np.float32))[None]}


def losses(network: nn.Module, alpha: torch.Tensor, info: Any, batch: Dict[str, torch.Tensor],
           spec: ModelSpec) -> Dict[str, torch.Tensor]:
    l1 = unknown_l1(alpha.float(), batch["alpha"], (batch["trimap"] == 128 / 255).float())
    return {"l1": l1, "total": l1}


TRAINING = TrainingRecipe(
    train_tensors=train_tensors, dataset=composited_dataset(train_tensors), losses=losses,
    optimizer=lambda network, spec: torch.optim.SGD(network.parameters(), lr=spec.options.lr, momentum=0.9),
    learning_rate=lambda spec, step, total_step, restart_step: spec.options.lr,
    schedule_keys=("train.tiny_lr",), init_may_lack=(),
    imagenet_backbone="the tiny family has no ImageNet backbone",
    shown_inputs=lambda batch: (batch["image"][0].float().cpu(), batch["trimap"][0].float().cpu()),
    pictures=lambda info: {})
FAMILY = Family(name=NAME, title="a tiny family of the tests", config=CONFIG, build=build, recipes=recipes,
                state_dict=state_dict, recognise=recognise, export=exportable_copy, training=TRAINING)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tinytoy"))
    make_toy_dataset(root, num_fg=2, num_bg=4, num_test=1, fg_size=(72, 96), bg_size=(72, 96), seed=3)
    return root


def write_config(folder: str, toy: str, name: str, total_step: int, **train) -> str:
    lines = "\n".join(f"{key} = {value!r}".replace("'", '"') for key, value in train.items())
    path = os.path.join(folder, f"{name}.toml")
    with open(path, "w") as f:
        f.write(f"""
version = "{name}"
[model]
family = "{NAME}"
batch_size = 2
imagenet_pretrain = false
tiny_width = 4
[data]
train_fg = "{toy}/train/fg"
train_alpha = "{toy}/train/alpha"
train_bg = "{toy}/train/bg"
test_merged = "{toy}/test/merged"
test_alpha = "{toy}/test/alpha"
test_trimap = "{toy}/test/trimaps"
crop_size = 32
[train]
total_step = {total_step}
val_step = 3
{lines}
[log]
tensorboard_path = "{folder}/tb"
logging_path = "{folder}/logs"
checkpoint_path = "{folder}/ckpt"
logging_step = 1
tensorboard_step = 1
tensorboard_image_step = 1
checkpoint_step = 3
[test]
merged = "{toy}/test/merged"
alpha = "{toy}/test/alpha"
trimap = "{toy}/test/trimaps"
checkpoint = "latest_model"
alpha_path = "{folder}/pred"
""")
    return path


@pytest.fixture(scope="module")
def trained(toy, tmp_path_factory):
    """3 steps in a fresh `python main.py` (the family found by its module path), then a resume
    to step 6 in this process; and 6 steps without a stop, for comparison."""
    folder = str(tmp_path_factory.mktemp("tiny"))
    config = write_config(folder, toy, "tiny", 3)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.path.dirname(os.path.abspath(__file__))])}
    done = subprocess.run([sys.executable, "main.py", "--config", config], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    first = read_checkpoint(os.path.join(folder, "ckpt", "tiny", "latest_model.pth"))
    resumed = write_config(folder, toy, "tiny", 6)
    assert main.main(["--config", resumed, "--resume", "latest_model"]) == 0
    whole = write_config(folder, toy, "whole", 6)
    assert main.main(["--config", whole]) == 0
    return folder, resumed, first, done.stdout


@pytest.mark.slow
def test_the_family_trains_through_main_and_resumes_where_it_stopped(trained):
    folder, config, first, out = trained
    assert first["iter"] == 2 and first["config"]["model"]["family"] == NAME
    assert "[3/3] loss " in out and "l1 " in out and "validation at step 3" in out
    assert first["config"]["train"]["tiny_lr"] == 0.05 and "rec_weight" not in first["config"]["train"]
    latest = read_checkpoint(os.path.join(folder, "ckpt", "tiny", "latest_model.pth"))
    whole = read_checkpoint(os.path.join(folder, "ckpt", "whole", "latest_model.pth"))
    assert latest["iter"] == whole["iter"] == 5
    assert not all(torch.equal(first["state_dict"][key], value) for key, value in latest["state_dict"].items())
    for key, value in whole["state_dict"].items():  # stopped after 3 and resumed: the same 6 steps
        assert torch.allclose(value, latest["state_dict"][key], atol=1e-6), key
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(os.path.join(folder, "tb", "tiny")))


@pytest.mark.slow
def test_a_changed_schedule_key_of_the_family_is_refused_on_resume(trained, toy, tmp_path, capsys):
    folder, config, _, _ = trained
    changed = open(config).read().replace("total_step = 6", "total_step = 8\ntiny_lr = 0.5")
    path = tmp_path / "changed.toml"
    path.write_text(changed)
    assert main.main(["--config", str(path), "--resume", "latest_model"]) == 2
    message = capsys.readouterr().out
    assert "was trained with train.total_step = 6 (this config: 8), train.tiny_lr = 0.05 (this config: 0.5)" in message


@pytest.mark.slow
def test_the_family_runs_in_demo_the_api_and_the_test_phase(trained, toy, tmp_path, capsys):
    folder, config, _, _ = trained
    checkpoint = os.path.join(folder, "ckpt", "tiny", "latest_model.pth")
    out = str(tmp_path / "demo")
    assert demo.main(["--config", config, "--checkpoint", checkpoint, "--image-dir", f"{toy}/test/merged",
                      "--trimap-dir", f"{toy}/test/trimaps", "--output", out]) == 0
    written = cv2.imread(os.path.join(out, "tiny_latest_model.pth", "test00_0.png"), cv2.IMREAD_GRAYSCALE)
    image = cv2.imread(os.path.join(toy, "test", "merged", "test00_0.png"))
    trimap = cv2.imread(os.path.join(toy, "test", "trimaps", "test00_0.png"), cv2.IMREAD_GRAYSCALE)
    matter = demo.Matter(config, checkpoint, device="cpu")
    alpha = matter(np.ascontiguousarray(image[:, :, ::-1]), trimap)
    assert np.array_equal(alpha, written) and (alpha[trimap == 255] == 255).all() and (alpha[trimap == 0] == 0).all()
    released = str(tmp_path / "released.pth")
    torch.save({RELEASED_KEY: matter.network.state_dict()}, released)
    assert np.array_equal(demo.Matter(config, released, device="cpu")(image[:, :, ::-1], trimap), alpha)
    with pytest.raises(CheckpointError, match=f"looks like a tiny-family checkpoint: use model.family = \"{NAME}\""):
        demo.Matter(os.path.join(ROOT, "config", "gca-dist.toml"), released, device="cpu")
    capsys.readouterr()
    assert main.main(["--config", config, "--phase", "test"]) == 0
    assert "tiny on 2 images: SAD " in capsys.readouterr().out
    assert sorted(os.listdir(os.path.join(folder, "pred", "tiny"))) == ["test00_0.png", "test00_1.png"]


@pytest.mark.slow
def test_the_family_exports_to_onnx(trained, toy, tmp_path):
    for name in export.EXPORT_PACKAGES:
        pytest.importorskip(name, reason=f"{name} not installed (pip install -r requirements-export.txt)")
    folder, config, _, _ = trained
    checkpoint, output = os.path.join(folder, "ckpt", "tiny", "latest_model.pth"), str(tmp_path / "tiny.onnx")
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert export.main(["--config", config, "--checkpoint", checkpoint, "--output", output]) == 0
    assert "checked with onnxruntime" in printed.getvalue()
    image = cv2.imread(os.path.join(toy, "test", "merged", "test00_0.png"))[:, :, ::-1]
    trimap = cv2.imread(os.path.join(toy, "test", "trimaps", "test00_0.png"), cv2.IMREAD_GRAYSCALE)
    onnx_alpha = export.OnnxMatting(output)(np.ascontiguousarray(image), trimap)
    torch_alpha = demo.Matter(config, checkpoint, device="cpu")(image, trimap)
    assert np.abs(onnx_alpha.astype(int) - torch_alpha.astype(int)).max() <= 1


def test_a_family_registered_in_process_is_named_by_its_name(tmp_path):
    inline = Family(name="tiny-inline", title="an inline tiny family", config=CONFIG, build=build, recipes=recipes,
                    state_dict=state_dict, recognise=recognise, export="not exported", training="not trained")
    try:
        assert register(inline) is inline and family_named("tiny-inline") is inline
        config = tmp_path / "inline.toml"
        config.write_text('[model]\nfamily = "tiny-inline"\ntiny_width = 2\n')
        assert load_config(str(config)).model.tiny_width == 2
        config.write_text('[model]\nfamily = "tiny-inline"\n[model.arch]\nencoder = "vgg16"\n')
        with pytest.raises(ConfigError, match="'model.arch' is not read by model.family = \"tiny-inline\""):
            load_config(str(config))
        with pytest.raises(ValueError, match="'tiny-inline' is taken by an inline tiny family"):
            register(Family(**{**inline.__dict__, "title": "another"}))
    finally:
        FAMILIES.pop("tiny-inline", None)


def test_a_module_without_a_family_is_refused(tmp_path):
    config = tmp_path / "none.toml"
    config.write_text('[model]\nfamily = "json"\n')
    with pytest.raises(ConfigError, match="the module json has no FAMILY"):
        load_config(str(config))



@pytest.mark.parametrize("script", ["demo.py", "app.py", "matting.py", "main.py", "trainer.py", "compare.py"])
def test_the_entry_points_import_no_family_package(script):
    # The families are reached through networks.families only; demo.py and the page still name
    # their default released model in their help texts, which the next test does not allow.
    tree = ast.parse(open(os.path.join(ROOT, script)).read())
    imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    family_packages = {f"networks.{name}" for name in os.listdir(os.path.join(ROOT, "networks"))
                       if os.path.isdir(os.path.join(ROOT, "networks", name)) and not name.startswith("__")}
    assert not [module for module in imported
                if any(module == package or module.startswith(package + ".") for package in family_packages)]


@pytest.mark.parametrize("script", ["main.py", "trainer.py"])
def test_the_training_entry_points_name_no_family(script):
    text = open(os.path.join(ROOT, script)).read().lower()
    named = [name for name in ("gca", "dim", "aim", "aematter", "mmagic") if name in text]
    assert not named, f"{script} names {named}: a family's own behaviour belongs in its package"
