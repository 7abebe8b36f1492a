import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch

import demo
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
from networks.gca_matting.imagenet import load_imagenet_backbone
from utils.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from utils.distributed import DistInfo
from utils.schedule import AdaptiveGradClip, learning_rate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU = DistInfo(0, 0, 1, torch.device("cpu"))
# main.py as `python main.py` runs it, the architectures built with one block per layer.
MAIN = [os.path.join("tests", "one_block_gca.py"), "main.py"]


@pytest.fixture(scope="module")
def toy_set(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("toy"))
    make_toy_dataset(root, num_fg=4, num_bg=12, num_test=1, fg_size=(96, 128), bg_size=(80, 100), seed=2)
    return root


@pytest.fixture
def toy(toy_set, monkeypatch):
    """The toy set; while the test runs, the configs' GCA architecture is built with one block per
    layer (tests/one_block_gca.py), as it is in the subprocesses the tests start through MAIN."""
    one_block_gca.install(monkeypatch.setitem)
    return toy_set


def write_config(folder, toy, name="run", workers=0, test_dir=None, **train):
    """A tiny training config over the toy set (test set: `test_dir`, default the toy's);
    `train` overrides [train] keys, and checkpoint_step (default 2) goes to [log]."""
    test_dir = test_dir or f"{toy}/test"
    settings = {"total_step": 4, "warmup_step": 2, "val_step": 2, **train}
    checkpoint_step = settings.pop("checkpoint_step", 2)
    train_lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
    text = f"""
version = "{name}"
[model]
batch_size = 2
imagenet_pretrain = false
    [model.arch]
    encoder = "resnet_gca_encoder_29"
    decoder = "res_gca_decoder_22"
[data]
train_fg = "{toy}/train/fg"
train_alpha = "{toy}/train/alpha"
train_bg = "{toy}/train/bg"
test_merged = "{test_dir}/merged"
test_alpha = "{test_dir}/alpha"
test_trimap = "{test_dir}/trimaps"
crop_size = 64
workers = {workers}
[train]
{train_lines}
[log]
tensorboard_path = "{folder}/tb"
logging_path = "{folder}/logs"
checkpoint_path = "{folder}/ckpt"
logging_step = 1
tensorboard_step = 1
tensorboard_image_step = 2
checkpoint_step = {checkpoint_step}
[test]
merged = "{test_dir}/merged"
alpha = "{test_dir}/alpha"
trimap = "{test_dir}/trimaps"
checkpoint = "best_model"
fast_eval = false
alpha_path = "{folder}/pred"
"""
    path = os.path.join(folder, f"{name}.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


def test_learning_rate_schedule_values():
    base, warmup, total = 4e-4, 5000, 200000
    assert learning_rate(0, base, warmup, total) == pytest.approx(base / 5000)
    assert learning_rate(4999, base, warmup, total) == pytest.approx(base)
    assert learning_rate(5000, base, warmup, total) == pytest.approx(base, rel=1e-9)
    assert learning_rate(102499, base, warmup, total) == pytest.approx(2e-4)
    assert learning_rate(199999, base, warmup, total) == pytest.approx(0, abs=1e-15)
    # reset_lr at step 1000: the cosine restarts over the remaining 198,999 steps
    assert learning_rate(1001, base, warmup, total, restart_step=1000) == pytest.approx(base, rel=1e-9)
    assert learning_rate(199999, base, warmup, total, restart_step=1000) == pytest.approx(0, abs=1e-15)


def test_adaptive_clipping_on_a_hand_made_gradient_sequence():
    param = torch.nn.Parameter(torch.zeros(2))
    clip = AdaptiveGradClip()
    history = []
    for grad in ([3.0, 4.0], [6.0, 8.0], [0.0, 30.0], [float("nan"), 0.0]):
        param.grad = torch.tensor(grad)
        norm = clip.clip([param])
        history.append((norm, float(param.grad.norm()) if math.isfinite(norm) else None, clip.moving_max))
    assert history[0] == (5.0, 5.0, 5.0)  # first step: limit 1e6, seeds the moving max
    assert history[1][0] == 10.0 and history[1][1] == pytest.approx(10.0)  # limit 2 x 5 = 10
    assert history[1][2] == pytest.approx(0.999 * 5 + 0.001 * 10)
    m = history[1][2]
    assert history[2][0] == 30.0 and history[2][1] == pytest.approx(2 * m)  # clipped to 2 x moving max
    assert history[2][2] == pytest.approx(0.999 * m + 0.001 * 30)
    assert math.isnan(history[3][0]) and history[3][2] == history[2][2]  # non-finite: unchanged
    assert AdaptiveGradClip(enabled=False).limit() == math.inf


def toy_trainer(toy, config_path, model=None, loader=True):
    config = load_config(config_path)
    files = training_list(*(os.path.join(toy, "train", k) for k in ("fg", "alpha", "bg")))
    dataset = TrainDataset(files, gca_tensors(), 64, seed=0)
    torch.manual_seed(0)
    model = model or build_generator("resnet_gca_encoder_29", "res_gca_decoder_22")
    return trainer_module.Trainer(config, model, train_loader(dataset, 2, 0, 0) if loader else None, None, CPU), dataset


@pytest.mark.slow
def test_a_non_finite_step_is_skipped(toy, tmp_path):
    trainer, dataset = toy_trainer(toy, write_config(str(tmp_path), toy))
    batch = torch.utils.data.default_collate([dataset[(0, 0)], dataset[(0, 1)]])
    batch["image"][0, 0, 0, 0] = float("nan")
    before = [p.detach().clone() for p in trainer.params]
    _, norm, finite, _, _ = trainer.train_step([batch], 0)
    assert not finite and math.isnan(norm)
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.params))


@pytest.mark.slow
def test_a_run_of_non_finite_steps_is_counted_and_stops_training(toy, tmp_path):
    torch.manual_seed(0)
    model = build_generator("resnet_gca_encoder_29", "res_gca_decoder_22")
    with torch.no_grad():
        model.decoder.conv2.bias.fill_(float("nan"))
    trainer, _ = toy_trainer(toy, write_config(str(tmp_path), toy, total_step=50, max_nonfinite_steps=3), model)
    with pytest.raises(trainer_module.TrainingError, match="3 steps in a row had non-finite gradients"):
        trainer.train()
    assert trainer.skipped_steps == 3
    assert read_checkpoint(str(tmp_path / "ckpt" / "run" / "latest_model.pth"))["skipped_steps"] == 3


class RecordingWriter:
    """A SummaryWriter that keeps the last value of each tag."""

    def __init__(self):
        self.images, self.scalars = {}, {}

    def add_image(self, tag, picture, step):
        self.images[tag] = picture

    def add_scalar(self, tag, value, step):
        self.scalars[tag] = value


@pytest.mark.slow
def test_tensorboard_gets_the_generic_pictures_and_the_familys_own(toy, tmp_path):
    trainer, dataset = toy_trainer(toy, write_config(str(tmp_path), toy))
    trainer.writer = RecordingWriter()
    batch = torch.utils.data.default_collate([dataset[(0, 0)], dataset[(0, 1)]])
    losses, norm, _, alpha, info = trainer.train_step([batch], 0)
    trainer.log_scalars(1, losses, norm)
    trainer.log_images(1, batch, alpha, info)
    images = trainer.writer.images
    assert set(images) == {"image", "trimap", "alpha", "pred_alpha", "offset_1", "offset_2"}
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    assert torch.allclose(images["image"], (batch["image"][0] * std + mean).clamp(0, 1))  # ImageNet's undone
    assert torch.equal(images["trimap"], batch["trimap"][0].argmax(0, keepdim=True) / 2)
    assert images["offset_1"].dtype == np.uint8 and images["offset_1"].shape[0] == 3  # a flow picture
    assert {"Train/Loss", "Train/Loss_REC", "Train/LearnRate", "Train/Max_Grad"} <= set(trainer.writer.scalars)


def run_main(config, *extra):
    return main.main(["--config", config, *extra])


@pytest.mark.slow
def test_resume_equals_an_uninterrupted_run(toy, tmp_path, monkeypatch):
    lrs = {}
    original_step = trainer_module.Trainer.train_step

    def recording_step(self, batch, step):
        lrs.setdefault(self.config.version, []).append((step, self.lr_at(step)))
        return original_step(self, batch, step)

    monkeypatch.setattr(trainer_module.Trainer, "train_step", recording_step)
    assert run_main(write_config(str(tmp_path), toy, "whole", total_step=6, val_step=100)) == 0

    def stop_after_three(self):
        steps = int(next(iter(self.optimizer.state.values()))["step"]) if self.optimizer.state else 0
        return signal.SIGINT if steps == 3 else 0

    monkeypatch.setattr(trainer_module.Trainer, "_stop_signal_on_any_rank", stop_after_three)
    assert run_main(write_config(str(tmp_path), toy, "parts", total_step=6, val_step=100)) == 130
    assert read_checkpoint(str(tmp_path / "ckpt" / "parts" / "latest_model.pth"))["iter"] == 2
    monkeypatch.setattr(trainer_module.Trainer, "_stop_signal_on_any_rank", lambda self: 0)
    resumed = write_config(str(tmp_path), toy, "parts", total_step=6, val_step=100, resume_checkpoint="latest_model")
    assert run_main(resumed) == 0
    whole = read_checkpoint(str(tmp_path / "ckpt" / "whole" / "latest_model.pth"))
    parts = read_checkpoint(str(tmp_path / "ckpt" / "parts" / "latest_model.pth"))
    assert whole["iter"] == parts["iter"] == 5
    assert lrs["whole"] == lrs["parts"] and [s for s, _ in lrs["parts"]] == list(range(6))
    for key, value in whole["state_dict"].items():
        assert torch.allclose(value.float(), parts["state_dict"][key].float(), atol=1e-6), key
    assert whole["moving_max_grad"] == pytest.approx(parts["moving_max_grad"])


def test_an_interrupted_save_leaves_the_previous_file(tmp_path, monkeypatch):
    path = str(tmp_path / "latest_model.pth")
    save_checkpoint({"iter": 1, "state_dict": {"w": torch.ones(3)}}, path)

    def crashing_save(obj, f):
        f.write(b"partial bytes")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"iter": 2, "state_dict": {"w": torch.zeros(3)}}, path)
    monkeypatch.undo()
    assert read_checkpoint(path)["iter"] == 1
    assert os.listdir(tmp_path) == ["latest_model.pth"]


def wait_for(predicate, timeout, poll=0.3):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(poll)
    return False


def log_text(folder, name="run"):
    logs = os.path.join(folder, "logs", name)
    if not os.path.isdir(logs):
        return ""
    return "".join(open(os.path.join(logs, f)).read() for f in os.listdir(logs))


def copy_test_set(toy, folder, copies):
    """The toy's first test image `copies` times (Composition-1K names), for a longer validation."""
    for sub in ("merged", "trimaps", "alpha"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    shutil.copy(os.path.join(toy, "test", "alpha", "test00.png"), os.path.join(folder, "alpha"))
    for k in range(copies):
        for sub in ("merged", "trimaps"):
            shutil.copy(os.path.join(toy, "test", sub, "test00_0.png"), os.path.join(folder, sub, f"test00_{k}.png"))
    return folder


def resume_for_one_step(config):
    """Runs main.py's training in this process from latest_model, stopped after one step by a
    SIGINT request; returns [(step, learning rate used)] and the exit code."""
    used = []
    original = trainer_module.Trainer.train_step

    def one_step(self, batch, step):
        result = original(self, batch, step)
        used.append((step, self.optimizer.param_groups[0]["lr"]))
        self.stop.signum = signal.SIGINT
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer_module.Trainer, "train_step", one_step)
        code = run_main(config)
    return used, code


# Where the signal lands: the log line to wait for, and how long after it to send the signal.
# 12 backgrounds in batches of 2: an epoch is 6 steps, so after step 6 the next epoch's loader
# workers start (0.1 to 1 s, measured); validation at step 4 runs over 40 images.
SIGNAL_MOMENTS = {
    "during a step": ("[3/10000]", 0.05),
    "while the next epoch's workers start": ("[6/10000]", 0.3),
    "during validation": ("validating at step 4", 0.2),
}


@pytest.mark.slow
@pytest.mark.parametrize("moment", list(SIGNAL_MOMENTS))
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_process_group_saves_a_resumable_checkpoint(toy, tmp_path, signum, moment):
    marker, delay = SIGNAL_MOMENTS[moment]
    validation = "validation" in moment
    test_dir = copy_test_set(toy, str(tmp_path / "test"), 40) if validation else None
    config = write_config(str(tmp_path), toy, workers=2, test_dir=test_dir, total_step=10000,
                          val_step=4 if validation else 10000, checkpoint_step=10000)
    # A session of its own: the signal goes to its whole process group (loader workers and the
    # forkserver included), as a terminal's Ctrl-C or `timeout` sends it.
    process = subprocess.Popen([sys.executable, *MAIN, "--config", config], cwd=ROOT, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for(lambda: marker in log_text(str(tmp_path)), 180, poll=0.01), "training did not get there"
        time.sleep(delay)
        os.killpg(process.pid, signum)
        out, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signum, out
    checkpoint = read_checkpoint(str(tmp_path / "ckpt" / "run" / "latest_model.pth"))
    done = checkpoint["iter"] + 1
    assert f"stopped by {signal.Signals(signum).name} after step {done};" in out
    if validation:
        assert done == 4 and "validation at step 4 cut short by the stop signal" in out
    else:
        assert done >= int(marker[1:].split("/")[0])
    assert "exited unexpectedly" not in out and "Traceback" not in out
    resumed = write_config(str(tmp_path), toy, workers=2, test_dir=test_dir, total_step=10000, val_step=10000,
                           checkpoint_step=10000, resume_checkpoint="latest_model")
    used, code = resume_for_one_step(resumed)
    assert code == 130
    assert used == [(done, pytest.approx(learning_rate(done, 1e-3, 2, 10000)))]
    assert read_checkpoint(str(tmp_path / "ckpt" / "run" / "latest_model.pth"))["iter"] == done


def torchrun(*args):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]


@pytest.mark.slow
def test_two_process_gloo_ddp_trains_validates_and_checkpoints(toy, tmp_path, capsys):
    config = write_config(str(tmp_path), toy, total_step=4, val_step=2)
    result = subprocess.run(torchrun(*MAIN, "--config", config), cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    text = log_text(str(tmp_path))
    assert "2 process(es) on cpu" in text and "validation at step 4" in text
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tb" / "run"))
    assert text.index("resolved config:") < text.index("[1/4]")
    best = read_checkpoint(str(tmp_path / "ckpt" / "run" / "best_model.pth"))
    latest = read_checkpoint(str(tmp_path / "ckpt" / "run" / "latest_model.pth"))
    assert latest["iter"] == 3 and set(best["state_dict"]) == set(latest["state_dict"])
    assert not any(k.startswith("module.") for k in latest["state_dict"])
    # the checkpoint written by training runs in demo.py, and in the test phase
    out = str(tmp_path / "demo")
    assert demo.main(["--config", config, "--checkpoint", str(tmp_path / "ckpt" / "run" / "latest_model.pth"),
                      "--image-dir", f"{toy}/test/merged", "--trimap-dir", f"{toy}/test/trimaps",
                      "--output", out, "--no-offset"]) == 0
    capsys.readouterr()
    assert run_main(config, "--phase", "test") == 0
    printed = capsys.readouterr().out
    for name in ("SAD", "MSE", "Grad", "Conn"):
        assert name in printed
    assert sorted(os.listdir(tmp_path / "pred" / "run")) == ["test00_0.png", "test00_1.png"]


@pytest.mark.slow
def test_sigterm_to_a_torchrun_group_stops_every_rank_and_saves(toy, tmp_path):
    # 12 backgrounds over 2 ranks in batches of 2: an epoch is 3 steps; the signal lands while
    # the next epoch's loader workers (2 per rank) start.
    config = write_config(str(tmp_path), toy, workers=2, total_step=10000, val_step=10000, checkpoint_step=10000)
    process = subprocess.Popen(torchrun(*MAIN, "--config", config), cwd=ROOT, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for(lambda: "[3/10000]" in log_text(str(tmp_path)), 180, poll=0.01), "training did not start"
        time.sleep(0.4)
        os.killpg(process.pid, signal.SIGTERM)
        out, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    # torchrun itself ends with its own SignalException (exit 1); the ranks save and stop
    assert process.returncode != 0
    checkpoint = read_checkpoint(str(tmp_path / "ckpt" / "run" / "latest_model.pth"))
    assert f"stopped by SIGTERM after step {checkpoint['iter'] + 1};" in out and checkpoint["iter"] >= 2
    assert "exited unexpectedly" not in out


@pytest.mark.slow
def test_ddp_gradients_equal_a_single_process_on_the_same_batches(tmp_path, monkeypatch):
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import ddp_grad_worker
    one_block_gca.install(monkeypatch.setitem)  # here and, through MAIN's launcher, in the ranks
    path = str(tmp_path / "grads.pt")
    env = {**os.environ, "PYTHONPATH": ROOT}
    result = subprocess.run(torchrun(MAIN[0], os.path.join("tests", "ddp_grad_worker.py"), path), cwd=ROOT,
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr
    ddp_grads = torch.load(path)
    full = ddp_grad_worker.fixed_batch()
    # Without CUDA there is no SyncBatchNorm: each rank normalises its own half, so DDP's
    # gradient is the mean of the two halves' gradients, computed here one at a time.
    halves = [ddp_grad_worker.gradients_of_one_step({k: v[i:i + 2] for k, v in full.items()}, CPU) for i in (0, 2)]
    for ddp_grad, first, second in zip(ddp_grads, *halves):
        assert torch.allclose(ddp_grad, (first + second) / 2, atol=1e-6, rtol=1e-4)


def worker_pids(parent):
    out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def rank_of(pid):
    with open(f"/proc/{pid}/environ", "rb") as f:
        env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
    return int(env.get(b"RANK", b"-1"))


@pytest.mark.slow
def test_a_dead_rank_brings_the_others_down(toy, tmp_path):
    config = write_config(str(tmp_path), toy, total_step=10000, val_step=10000, checkpoint_step=10000)
    process = subprocess.Popen(torchrun(*MAIN, "--config", config), cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: "[2/10000]" in log_text(str(tmp_path)), 180), "training did not start"
        victims = [pid for pid in worker_pids(process.pid) if rank_of(pid) == 1]
        assert victims
        os.kill(victims[0], signal.SIGKILL)
        start = time.monotonic()
        process.wait(timeout=120)
        assert process.returncode != 0
        assert time.monotonic() - start < 120
    finally:
        process.kill()


def test_imagenet_backbone_stem_is_zero_padded(tmp_path):
    torch.manual_seed(1)
    backbone = build_generator("res_shortcut_encoder_29", "res_shortcut_decoder_22", trimap_channel=3).encoder
    state = {k: v for k, v in backbone.state_dict().items() if not k.startswith("shortcut")}
    state["conv1.module.weight_bar"] = state["conv1.module.weight_bar"][:, :3].clone()
    state["conv1.module.weight_v"] = state["conv1.module.weight_v"][:27].clone()
    path = str(tmp_path / "backbone.pth")
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, path)
    model = build_generator("resnet_gca_encoder_29", "res_gca_decoder_22")
    left = load_imagenet_backbone(model.encoder, path, trimap_channel=3)
    stem = model.encoder.conv1.module.weight_bar
    assert torch.equal(stem[:, :3], state["conv1.module.weight_bar"]) and (stem[:, 3:] == 0).all()
    assert torch.equal(model.encoder.conv1.module.weight_v[:27], state["conv1.module.weight_v"])
    assert torch.equal(model.encoder.layer3[1].conv2.module.weight_bar, state["layer3.1.conv2.module.weight_bar"])
    assert any(k.startswith("guidance_head") for k in left) and any(k.startswith("shortcut") for k in left)
    with pytest.raises(CheckpointError, match="imagenet_pretrain = false"):
        load_imagenet_backbone(model.encoder, str(tmp_path / "missing.pth"), 3)


@pytest.mark.parametrize("flag", [["--local_rank", "1"], ["--local-rank=1"], ["--local_rank=1"]])
def test_both_local_rank_spellings(flag):
    assert main.parse_args(["--config", "c.toml", *flag]).local_rank == 1


def test_bad_config_key_exits_with_a_message(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text("[train]\ntotal_steps = 3\n")
    assert run_main(str(path)) == 2
    assert "did you mean 'train.total_step'" in capsys.readouterr().err


@pytest.mark.slow
def test_a_signal_during_a_save_still_leaves_a_loadable_latest_model(toy, tmp_path, monkeypatch):
    real_save = trainer_module.save_checkpoint

    def save_hit_by_a_signal(obj, path):
        os.kill(os.getpid(), signal.SIGTERM)  # its handler runs while this save is under way
        real_save(obj, path)

    monkeypatch.setattr(trainer_module, "save_checkpoint", save_hit_by_a_signal)
    config = write_config(str(tmp_path), toy, total_step=8, val_step=100, checkpoint_step=2)
    assert run_main(config) == 143
    assert read_checkpoint(str(tmp_path / "ckpt" / "run" / "latest_model.pth"))["iter"] == 1
    assert "stopped by SIGTERM after step 2;" in log_text(str(tmp_path))


def test_data_loading_that_breaks_while_stopping_ends_the_run_cleanly(toy, tmp_path):
    trainer, _ = toy_trainer(toy, write_config(str(tmp_path), toy))

    def dead_workers():
        raise RuntimeError("DataLoader worker (pid(s) 1234) exited unexpectedly")
        yield

    trainer.stop.signum = signal.SIGTERM
    assert trainer._next_batch(dead_workers(), 3) is trainer_module.STOPPED
    trainer.stop.signum = None
    with pytest.raises(trainer_module.TrainingError, match="data loading failed before step 4: DataLoader worker"):
        trainer._next_batch(dead_workers(), 3)
    # the steps done are not lost
    assert read_checkpoint(str(tmp_path / "ckpt" / "run" / "latest_model.pth"))["iter"] == 2


def corrupt_test_set(toy, folder):
    """The toy test set with test00_0 truncated (its header reads, its pixels do not) and a
    test00_5 that is no image at all."""
    test_dir = copy_test_set(toy, folder, 5)
    merged = os.path.join(test_dir, "merged")
    data = open(os.path.join(merged, "test00_0.png"), "rb").read()
    open(os.path.join(merged, "test00_0.png"), "wb").write(data[:len(data) // 2])
    open(os.path.join(merged, "test00_5.png"), "wb").write(b"not a png")
    shutil.copy(os.path.join(test_dir, "trimaps", "test00_1.png"), os.path.join(test_dir, "trimaps", "test00_5.png"))
    return test_dir


@pytest.mark.slow
def test_an_unreadable_validation_image_is_named_and_left_out(toy, tmp_path, capsys):
    test_dir = corrupt_test_set(toy, str(tmp_path / "test"))
    config = write_config(str(tmp_path), toy, test_dir=test_dir, total_step=4, val_step=2)
    assert run_main(config) == 0
    text = log_text(str(tmp_path))
    assert "test image left out: " in text and "test00_5.png: not a readable image" in text
    assert "1 of 6 test images left out (named above); the means are over the other 5" in text
    assert "unreadable validation image, left out of the means: " in text and "test00_0.png" in text
    assert text.count("unreadable validation image") == 1  # named once, not at every validation
    assert "validation at step 2:" in text and "(4 images, 1 unreadable left out)" in text
    assert "validation at step 4:" in text
    assert os.path.isfile(tmp_path / "ckpt" / "run" / "best_model.pth")
    # the test phase: the same images named and left out, the means over the rest, exit 1
    capsys.readouterr()
    assert run_main(config, "--phase", "test") == 1
    captured = capsys.readouterr()
    assert "run on 4 images" in captured.out and "2 test image(s) left out or not saved" in captured.err
    assert sorted(os.listdir(tmp_path / "pred" / "run")) == [f"test00_{k}.png" for k in range(1, 5)]


@pytest.mark.slow
def test_a_bad_training_file_is_named_once_in_the_log_file(toy, tmp_path):
    data = str(tmp_path / "data")
    shutil.copytree(os.path.join(toy, "train"), os.path.join(data, "train"))
    shutil.copytree(os.path.join(toy, "test"), os.path.join(data, "test"))
    bad = os.path.join(data, "train", "bg", sorted(os.listdir(os.path.join(data, "train", "bg")))[2])
    with open(bad, "r+b") as f:
        f.truncate(200)
    # 3 epochs through a loader worker, which has no log file of its own
    config = write_config(str(tmp_path), data, workers=1, total_step=18, val_step=100, checkpoint_step=100)
    result = subprocess.run([sys.executable, *MAIN, "--config", config], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    text = log_text(str(tmp_path))
    message = f"unreadable training file, its samples are replaced by the next ones: {bad}: not a readable image"
    assert text.count(message) == 1
    assert re.search(r"^.*\[18/18\] .* replaced 3$", text, re.M)  # replaced once an epoch, and counted
    assert "[ WARN" not in result.stdout + result.stderr


@pytest.mark.slow
def test_resume_refuses_a_changed_schedule_unless_reset_lr(toy, tmp_path, capsys):
    assert run_main(write_config(str(tmp_path), toy, total_step=3, val_step=100)) == 0
    changed = write_config(str(tmp_path), toy, total_step=6, val_step=100, resume_checkpoint="latest_model")
    assert run_main(changed) == 2
    message = capsys.readouterr().out
    assert "was trained with train.total_step = 3 (this config: 6)" in message
    after, before = re.search(r"the rate would be (\S+) instead of (\S+)\)", message).groups()
    assert float(after) != float(before)
    assert read_checkpoint(str(tmp_path / "ckpt" / "run" / "latest_model.pth"))["iter"] == 2
    restarted = write_config(str(tmp_path), toy, total_step=6, val_step=100, resume_checkpoint="latest_model",
                             reset_lr=True)
    assert run_main(restarted) == 0
    assert read_checkpoint(str(tmp_path / "ckpt" / "run" / "latest_model.pth"))["iter"] == 5


def test_a_checkpoint_whose_config_holds_other_familys_keys_still_resumes_and_loads(toy, tmp_path):
    """The version before family keys stored every family's defaults in a checkpoint's config
    (test.aim_strategy in a GCA-Matting run, say): such a checkpoint resumes and loads."""
    assert run_main(write_config(str(tmp_path), toy, total_step=2, val_step=100)) == 0
    path = str(tmp_path / "ckpt" / "run" / "latest_model.pth")
    checkpoint = read_checkpoint(path)
    checkpoint["config"]["model"]["arch"]["refiner"] = ""
    checkpoint["config"]["test"].update(aim_strategy="hybrid", aim_resize="skimage-0.14")
    save_checkpoint(checkpoint, path)
    resumed = write_config(str(tmp_path), toy, total_step=3, val_step=100, resume_checkpoint="latest_model")
    assert demo.Matter(resumed, path, device="cpu").family.name == "gca-matting"
    assert run_main(resumed) == 0
    assert read_checkpoint(path)["iter"] == 2


@pytest.mark.slow
def test_resuming_a_finished_run_says_so(toy, tmp_path, capsys):
    assert run_main(write_config(str(tmp_path), toy, total_step=3, val_step=100)) == 0
    before = os.path.getmtime(tmp_path / "ckpt" / "run" / "latest_model.pth")
    again = write_config(str(tmp_path), toy, total_step=3, val_step=100, resume_checkpoint="latest_model")
    assert run_main(again) == 0
    assert "the checkpoint is at step 3 of train.total_step = 3, so the run is finished" in capsys.readouterr().out
    assert os.path.getmtime(tmp_path / "ckpt" / "run" / "latest_model.pth") == before


@pytest.mark.slow
def test_saves_cut_short_are_cleaned_and_step_numbers_match_the_progress_lines(toy, tmp_path):
    folder = tmp_path / "ckpt" / "run"
    folder.mkdir(parents=True)
    (folder / ".tmp-abc123.pth").write_bytes(b"half a checkpoint")
    (folder / "mine.pth").write_bytes(b"a file of the user's")
    assert run_main(write_config(str(tmp_path), toy, total_step=4, val_step=4, checkpoint_step=2)) == 0
    assert sorted(os.listdir(folder)) == ["best_model.pth", "latest_model.pth", "mine.pth"]
    text = log_text(str(tmp_path))
    assert f"removed {folder / '.tmp-abc123.pth'}, left by a save that was cut short" in text
    assert "[2/4]" in text and f"saved {folder / 'latest_model.pth'} after step 2" in text
    assert f"saved {folder / 'latest_model.pth'} after step 4" in text
    assert f"saved {folder / 'best_model.pth'} after step 4" in text
    assert read_checkpoint(str(folder / "latest_model.pth"))["iter"] == 3  # 0-based, as released files


@pytest.mark.slow
@pytest.mark.parametrize("key", ["log.logging_path", "test.alpha_path"])
def test_an_output_folder_under_a_file_is_named_by_its_key(toy, tmp_path, capsys, key):
    config = write_config(str(tmp_path), toy, total_step=2, val_step=100)
    assert run_main(config) == 0
    (tmp_path / "afile").write_text("a file of the user's")
    section, name = key.split(".")
    text = open(config).read().replace(f'{name} = "{tmp_path}/{"logs" if section == "log" else "pred"}"',
                                       f'{name} = "{tmp_path}/afile"')
    open(config, "w").write(text)
    assert run_main(config, "--phase", "test") == 2
    captured = capsys.readouterr()
    assert f"{key}: " in captured.out + captured.err and "(Not a directory)" in captured.out + captured.err
    assert (tmp_path / "afile").read_text() == "a file of the user's"


@pytest.mark.slow
def test_the_test_phase_runs_with_test_time_augmentation_and_a_memory_cap(toy, tmp_path, capsys, monkeypatch):
    config = write_config(str(tmp_path), toy, total_step=2, val_step=100)
    assert run_main(config) == 0
    used = []
    real = main.evaluate_sample
    monkeypatch.setattr(main, "evaluate_sample", lambda *args: used.append(args[5]) or real(*args))
    text = open(config).read().replace("[test]\n", '[test]\ntta = "flip"\n')
    open(config, "w").write(text)
    capsys.readouterr()
    assert run_main(config, "--phase", "test") == 0
    assert used == ["flip", "flip"] and "run on 2 images" in capsys.readouterr().out
    open(config, "w").write(text.replace('tta = "flip"', 'tta = "d4"'))
    assert run_main(config, "--phase", "test") == 2
    assert "test.tta: tta must be one of none, flip, d8, d8-uint8, got 'd4'" in capsys.readouterr().out
    # the test phase's memory cap: refused in one line when it is no amount, else set for the run
    from utils import memory
    monkeypatch.setattr(memory, "_cap_bytes", None)
    open(config, "w").write(text.replace('tta = "flip"', 'max_memory = "lots"'))
    assert run_main(config, "--phase", "test") == 2
    assert "test.max_memory: 'lots' is not an amount of memory" in capsys.readouterr().out
    open(config, "w").write(text.replace('tta = "flip"', 'max_memory = "16GiB"'))
    assert run_main(config, "--phase", "test") == 0 and memory._cap_bytes == 16 * 2 ** 30


@pytest.mark.slow
def test_the_test_phase_takes_a_protocol_and_categories(toy, tmp_path, capsys):
    config = write_config(str(tmp_path), toy, total_step=2, val_step=100)
    assert run_main(config) == 0
    categories = tmp_path / "cats.json"
    categories.write_text(json.dumps({"test00_0": {"type": "SO", "category": "toy"}, "ghost": {"type": "NS"}}))
    text = open(config).read().replace("[test]\n", f'[test]\nprotocol = "aim500"\ncategories = "{categories}"\n')
    open(config, "w").write(text)
    capsys.readouterr()
    assert run_main(config, "--phase", "test") == 0
    out = capsys.readouterr().out
    assert "protocol aim500: AIM-500" in out and "run on 2 images: SAD " in out and "SAD-Trimap" in out
    assert "mean SAD per type:\nSO: SAD " in out and "uncategorised: SAD " in out and "toy: SAD " in out
    log = log_text(str(tmp_path))
    assert "1 test image(s) without a category, counted as uncategorised: test00_1.png" in log
    assert "test.categories names 1 image(s) not in the test set: ghost" in log
    categories.write_text("{\n oops")
    assert run_main(config, "--phase", "test") == 2
    assert f"test.categories: {categories}:2: not valid JSON" in capsys.readouterr().out
    open(config, "w").write(text.replace('"aim500"', '"sim"'))
    assert run_main(config, "--phase", "test") == 2
    assert "test.protocol" in capsys.readouterr().err


@pytest.mark.slow
def test_a_data_loading_error_in_a_worker_ends_the_run_instead_of_hanging(toy, tmp_path):
    data = str(tmp_path / "data")
    shutil.copytree(os.path.join(toy, "train"), os.path.join(data, "train"))
    shutil.copytree(os.path.join(toy, "test"), os.path.join(data, "test"))
    for name in os.listdir(os.path.join(data, "train", "bg")):  # every sample unreadable: no batch at all
        open(os.path.join(data, "train", "bg", name), "wb").write(b"not an image")
    config = write_config(str(tmp_path), data, workers=1, total_step=4, val_step=100)
    result = subprocess.run([sys.executable, *MAIN, "--config", config], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "data loading failed before step 1" in result.stdout and "10 unreadable samples in a row" in result.stdout


@pytest.mark.slow
def test_a_second_run_into_a_finished_runs_folder_is_refused_before_writing(toy, tmp_path, capsys):
    config = write_config(str(tmp_path), toy, total_step=2, val_step=2)
    assert run_main(config) == 0
    folder = tmp_path / "ckpt" / "run"

    def written():
        return {str(path): (path.stat().st_mtime_ns, path.stat().st_size) for path in tmp_path.rglob("*")
                if path.is_file() and not path.name.endswith(".toml")}

    before = written()
    capsys.readouterr()
    assert run_main(config) == 2
    err = capsys.readouterr().err
    assert f"{folder} already holds latest_model.pth and best_model.pth of an earlier run" in err
    assert "--resume latest_model" in err and "version" in err and "--overwrite" in err
    assert written() == before  # no log, no tensorboard file, no checkpoint touched
    assert run_main(config, "--resume", "latest_model") == 0
    assert "so the run is finished" in capsys.readouterr().out
    assert read_checkpoint(str(folder / "latest_model.pth"))["iter"] == 1
    assert run_main(config, "--overwrite") == 0
    assert (folder / "latest_model.pth").stat().st_mtime_ns != before[str(folder / "latest_model.pth")][0]
    assert run_main(config, "--phase", "test", "--overwrite") == 2
    assert "--overwrite goes with training" in capsys.readouterr().err


def test_resuming_from_another_folder_into_a_finished_run_is_refused(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "best_model.pth").write_bytes(b"an earlier run's")
    other = tmp_path / "released.pth"
    other.write_bytes(b"weights")
    assert trainer_module.earlier_run_problem(str(folder), "best_model") == ""
    assert trainer_module.earlier_run_problem(str(folder), str(folder / "best_model.pth")) == ""
    assert "already holds best_model.pth" in trainer_module.earlier_run_problem(str(folder), str(other))
    assert "already holds best_model.pth" in trainer_module.earlier_run_problem(str(folder), None)
    assert trainer_module.earlier_run_problem(str(tmp_path / "new"), None) == ""


@pytest.mark.slow
def test_under_torchrun_every_rank_refuses_a_finished_runs_folder(toy, tmp_path):
    config = write_config(str(tmp_path), toy, total_step=2, val_step=100)
    folder = tmp_path / "ckpt" / "run"
    folder.mkdir(parents=True)
    (folder / "best_model.pth").write_bytes(b"an earlier run's")
    result = subprocess.run(torchrun(*MAIN, "--config", config), cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode != 0 and out.count("already holds best_model.pth of an earlier run") == 1, out
    assert not (tmp_path / "logs").exists() and not (tmp_path / "tb").exists()
    assert os.listdir(folder) == ["best_model.pth"] and (folder / "best_model.pth").read_bytes() == b"an earlier run's"


@pytest.mark.slow
def test_the_test_phase_names_an_image_that_runs_out_of_memory_and_goes_on(toy, tmp_path, capsys, monkeypatch):
    config = write_config(str(tmp_path), toy, total_step=2, val_step=100)
    assert run_main(config) == 0
    real = main.evaluate_sample

    def out_of_memory_on_the_first(model, recipe, sample, *args):
        if sample["image_name"] == "test00_0.png":
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1073741824 bytes")
        return real(model, recipe, sample, *args)

    monkeypatch.setattr(main, "evaluate_sample", out_of_memory_on_the_first)
    capsys.readouterr()
    assert run_main(config, "--phase", "test") == 1
    captured = capsys.readouterr()
    height, width = cv2.imread(os.path.join(toy, "test", "merged", "test00_0.png")).shape[:2]
    assert (f"left out of the means: test00_0.png: out of memory on this {width}x{height} image (it tried to allocate "
            "1.0 GiB more)") in captured.out
    assert "run on 1 images" in captured.out and "1 test image(s) left out or not saved" in captured.err
    assert sorted(os.listdir(tmp_path / "pred" / "run")) == ["test00_1.png"]
