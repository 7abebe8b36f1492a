"""Fine-tuning: train.init_checkpoint, train.freeze and train.accumulate."""
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

import main
import one_block_gca
import trainer as trainer_module
from conftest import gca_tensors
from dataloader.datasets import TrainDataset
from dataloader.file_lists import training_list
from dataloader.loader import train_loader
from dataloader.toy import make_toy_dataset
from networks.families import load_config
from networks.gca_matting.generator import build_generator
from utils.checkpoint import read_checkpoint
from utils.distributed import DistInfo
from utils.freeze import FreezeError, named_parts
from utils.schedule import learning_rate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU = DistInfo(0, 0, 1, torch.device("cpu"))
GCA = ("resnet_gca_encoder_29", "res_gca_decoder_22")


@pytest.fixture(scope="module")
def toy_set(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("toy"))
    make_toy_dataset(root, num_fg=3, num_bg=12, num_test=1, fg_size=(96, 128), bg_size=(80, 100), seed=3)
    return root


@pytest.fixture
def toy(toy_set, monkeypatch):
    """The toy set; while the test runs, GCA's architecture is built with one block per layer
    (tests/one_block_gca.py), as it is in the ranks the DDP test starts through it."""
    one_block_gca.install(monkeypatch.setitem)
    return toy_set


def toml_lines(values: dict) -> str:
    return "\n".join(f"{key} = {json.dumps(value)}" for key, value in values.items())


def write_config(folder, toy, name="run", batch_size=2, data=None, **train):
    """A tiny GCA training config over the toy set (or the [data] keys `data`), without
    validation; `train` sets [train] keys."""
    train = {"total_step": 4, "warmup_step": 2, "val_step": 1000, **train}
    data = data or {f"train_{k}": f"{toy}/train/{k}" for k in ("fg", "alpha", "bg")}
    path = os.path.join(folder, f"{name}.toml")
    with open(path, "w") as f:
        f.write(f"""version = "{name}"
[model]
batch_size = {batch_size}
imagenet_pretrain = false
    [model.arch]
    encoder = "{GCA[0]}"
    decoder = "{GCA[1]}"
[data]
{toml_lines(data)}
crop_size = 64
[train]
{toml_lines(train)}
[log]
tensorboard_path = "{folder}/tb"
logging_path = "{folder}/logs"
checkpoint_path = "{folder}/ckpt"
logging_step = 1
checkpoint_step = 1000
""")
    return path


class TinyMatting(nn.Module):
    """A matting network without BatchNorm or spectral norm, so that micro-batches and one batch
    compute the same gradients."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(6, 8, 3, padding=1), nn.ReLU())
        self.decoder = nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, image, trimap):
        return torch.sigmoid(self.decoder(self.encoder(torch.cat([image, trimap], dim=1)))), None


def toy_loader(toy, batch_size=2):
    files = training_list(*(os.path.join(toy, "train", k) for k in ("fg", "alpha", "bg")))
    return train_loader(TrainDataset(files, gca_tensors(), 64, seed=0), batch_size, 0, 0)


def make_trainer(toy, folder, model, loader=None, **train):
    config = load_config(write_config(str(folder), toy, **train))
    return trainer_module.Trainer(config, model, loader, None, CPU)


def fixed_batch(unknown_rows, seed=0):
    """Two samples of 16 x 16 whose trimaps have `unknown_rows[i]` unknown rows each."""
    generator = torch.Generator().manual_seed(seed)
    classes = torch.zeros(2, 16, 16, dtype=torch.long)
    for i, rows in enumerate(unknown_rows):
        classes[i, :rows] = 1
    trimap = nn.functional.one_hot(classes, 3).permute(0, 3, 1, 2).float()
    return {"image": torch.randn(2, 3, 16, 16, generator=generator), "trimap": trimap,
            "alpha": torch.rand(2, 1, 16, 16, generator=generator),
            "fg": torch.zeros(2, 3, 16, 16), "bg": torch.zeros(2, 3, 16, 16)}


def gradients(toy, folder, batches, accumulate):
    torch.manual_seed(0)
    trainer = make_trainer(toy, folder, TinyMatting(), accumulate=accumulate)
    trainer.train_step(batches, 0)
    return [p.grad.clone() for p in trainer.params]


def halves(batch):
    return [{k: v[i:i + 1] for k, v in batch.items()} for i in (0, 1)]


def test_accumulating_two_batches_of_one_equals_one_batch_of_two(toy, tmp_path):
    batch = fixed_batch((6, 6))  # equal unknown counts: the two normalisations agree
    whole = gradients(toy, tmp_path, [batch], 1)
    accumulated = gradients(toy, tmp_path, halves(batch), 2)
    for a, b in zip(whole, accumulated):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), (a - b).abs().max()
    # Unequal counts: the mean of the micro-batches' gradients (what DDP over 2 ranks computes)
    batch = fixed_batch((3, 12))
    singles = [gradients(toy, tmp_path, [half], 1) for half in halves(batch)]
    for total, first, second in zip(gradients(toy, tmp_path, halves(batch), 2), *singles):
        assert torch.allclose(total, (first + second) / 2, atol=1e-6, rtol=0)


@pytest.mark.slow
def test_accumulation_counts_optimizer_steps_and_resumes_bit_exact(toy, tmp_path, monkeypatch):
    """12 backgrounds in batches of 2 are 6 batches an epoch; 4 a step: steps cross epochs."""
    seen = {}
    original = trainer_module.Trainer.train_step

    def recording_step(self, batches, step):
        seen.setdefault(self.config.version, []).append(
            (step, self.lr_at(step), [tuple(b["image"].sum(dim=(1, 2, 3)).tolist()) for b in batches]))
        return original(self, batches, step)

    monkeypatch.setattr(trainer_module.Trainer, "train_step", recording_step)

    def run(name, stop_after=None, resume=False):
        torch.manual_seed(0)
        trainer = make_trainer(toy, tmp_path, TinyMatting(), toy_loader(toy), name=name, accumulate=4, total_step=4)
        if resume:
            trainer.restore("latest_model")
        if stop_after is not None:
            monkeypatch.setattr(trainer, "_stop_signal_on_any_rank",
                                lambda: signal.SIGTERM if len(seen.get(name, [])) == stop_after else 0)
        return trainer.train()

    assert run("whole") is None
    assert run("parts", stop_after=2) == signal.SIGTERM
    assert read_checkpoint(str(tmp_path / "ckpt" / "parts" / "latest_model.pth"))["iter"] == 1
    assert run("parts", resume=True) is None
    assert seen["whole"] == seen["parts"]
    assert [(s, lr) for s, lr, _ in seen["whole"]] == [(s, learning_rate(s, 1e-3, 2, 4)) for s in range(4)]
    assert all(len(micro) == 4 for _, _, micro in seen["whole"])
    whole = read_checkpoint(str(tmp_path / "ckpt" / "whole" / "latest_model.pth"))
    parts = read_checkpoint(str(tmp_path / "ckpt" / "parts" / "latest_model.pth"))
    assert whole["iter"] == parts["iter"] == 3
    for key, value in whole["state_dict"].items():
        assert torch.equal(value, parts["state_dict"][key]), key


@pytest.mark.slow
def test_freeze_leaves_every_frozen_tensor_bit_equal_after_five_steps(toy, tmp_path):
    torch.manual_seed(0)
    model = build_generator(*GCA)
    trainer = make_trainer(toy, tmp_path, model, toy_loader(toy), freeze=["encoder"], total_step=5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = []
    model.encoder.bn1.register_forward_pre_hook(lambda module, _: modes.append(module.training))
    model.decoder.register_forward_pre_hook(lambda module, _: modes.append(module.training))
    assert trainer.train() is None
    after = model.state_dict()
    encoder = [k for k in before if k.startswith("encoder.")]
    assert any("running_mean" in k for k in encoder) and any("weight_u" in k for k in encoder)
    assert all(torch.equal(before[k], after[k]) for k in encoder)
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    assert modes == [False, True] * 5  # the frozen part in eval mode at every step, the rest training
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in model.encoder.parameters()}
    assert all(p.grad is None for p in model.encoder.parameters())


def test_a_freeze_name_that_matches_no_module_suggests_the_closest(toy, tmp_path):
    model = build_generator(*GCA)
    assert named_parts(model, ["encoder.layer1", "decoder"]) == [model.encoder.layer1, model.decoder]
    with pytest.raises(trainer_module.TrainingError) as e:
        make_trainer(toy, tmp_path, model, freeze=["encodr"])
    assert "train.freeze: the model has no module named 'encodr'; closest: 'encoder'" in str(e.value)
    with pytest.raises(FreezeError, match="closest: 'encoder.layer1'"):
        named_parts(model, ["encoder.layer_1"])
    with pytest.raises(trainer_module.TrainingError, match="freezes every parameter"):
        make_trainer(toy, tmp_path, build_generator(*GCA), freeze=["encoder", "decoder"])


@pytest.mark.slow
def test_init_checkpoint_starts_at_step_one_with_the_schedules_first_learning_rate(toy, tmp_path, monkeypatch,
                                                                                    capsys):
    # A checkpoint of this project, after a step and with an optimizer state of its own
    assert main.main(["--config", write_config(str(tmp_path), toy, name="first", total_step=1, warmup_step=1)]) == 0
    source = str(tmp_path / "ckpt" / "first" / "latest_model.pth")
    weights = read_checkpoint(source)["state_dict"]
    started = []
    original = trainer_module.Trainer.train_step

    def first_step(self, batches, step):
        if not started:
            state = self.model.state_dict()
            started.append((step, self.lr_at(step), len(self.optimizer.state),
                            all(torch.equal(state[k], weights[k]) for k in weights)))
        return original(self, batches, step)

    monkeypatch.setattr(trainer_module.Trainer, "train_step", first_step)
    config = write_config(str(tmp_path), toy, name="tuned", total_step=2, warmup_step=2, G_lr=2e-4,
                          init_checkpoint=source)
    assert main.main(["--config", config]) == 0
    assert started == [(0, learning_rate(0, 2e-4, 2, 2), 0, True)]  # lr 1e-4: step 1 of the warm-up
    assert read_checkpoint(str(tmp_path / "ckpt" / "tuned" / "latest_model.pth"))["iter"] == 1
    log = open(os.path.join(tmp_path, "logs", "tuned", os.listdir(tmp_path / "logs" / "tuned")[0])).read()
    assert f"weights from train.init_checkpoint = {source}: {len(weights)} tensors of a run after its step 1" in log
    # a baseline's weights into a GCA model: the keys named
    baseline = tmp_path / "baseline.pth"
    torch.save({"state_dict": build_generator("res_shortcut_encoder_29", "res_shortcut_decoder_22").state_dict()},
               baseline)
    capsys.readouterr()
    config = write_config(str(tmp_path), toy, name="wrong", init_checkpoint=str(baseline))
    assert main.main(["--config", config]) == 2
    out = capsys.readouterr().out
    assert f"train.init_checkpoint: {baseline} does not fit the model" in out and "missing keys: encoder." in out


@pytest.mark.slow
def test_ddp_trains_a_frozen_encoder_with_accumulation(toy, tmp_path):
    """Two gloo ranks, the encoder frozen, two micro-batches a step (no_sync on the first): no
    unused-parameter error, and the frozen encoder ends bit-equal to the initial checkpoint."""
    torch.manual_seed(5)
    source = tmp_path / "init.pth"
    torch.save({"state_dict": build_generator(*GCA).state_dict()}, source)
    config = write_config(str(tmp_path), toy, total_step=2, freeze=["encoder"], accumulate=2,
                          init_checkpoint=str(source))
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             os.path.join("tests", "one_block_gca.py"), "main.py", "--config", config], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    initial = read_checkpoint(str(source))["state_dict"]
    trained = read_checkpoint(str(tmp_path / "ckpt" / "run" / "latest_model.pth"))
    assert trained["iter"] == 1
    assert all(torch.equal(v, trained["state_dict"][k]) for k, v in initial.items() if k.startswith("encoder."))
    assert not all(torch.equal(v, trained["state_dict"][k]) for k, v in initial.items() if k.startswith("decoder."))
