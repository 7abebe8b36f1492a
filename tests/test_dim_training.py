"""DIM's three training stages through main.py on the toy set, as MMagic's configs define them."""
import json
import os

import numpy as np
import pytest
import torch

import main
import trainer as trainer_module
from dataloader.toy import make_toy_dataset
from networks.dim.losses import dim_unknown_weight
from networks.dim.training import train_tensors
from networks.families import family_of, family_spec, load_config
from utils.checkpoint import read_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGE_TRAIN = {  # as config/mmagic-dim-stage{1,2,3}.toml
    1: {},
    2: {"freeze": ["encoder", "decoder"], "init_checkpoint": "STAGE1"},
    3: {"init_checkpoint": "STAGE2"},
}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("dimtoy"))
    make_toy_dataset(root, num_fg=2, num_bg=4, num_test=1, fg_size=(96, 128), bg_size=(80, 100), seed=5)
    return root


def stage_config(folder, toy, stage: int, steps: int) -> str:
    """The stage's config: the shipped one's model and training settings (its rate 1e-5 too), toy data, 32 x 32."""
    shipped = load_config(os.path.join(ROOT, "config", f"mmagic-dim-stage{stage}.toml"))
    train = {"total_step": steps, "warmup_step": 0, "val_step": steps, "G_lr": shipped.train.G_lr,
             "lr_schedule": shipped.train.lr_schedule, "beta1": shipped.train.beta1, "clip_grad": False,
             **STAGE_TRAIN[stage]}
    if "init_checkpoint" in train:
        train["init_checkpoint"] = os.path.join(folder, "ckpt", f"dim{train['init_checkpoint'][-1]}", "latest_model.pth")
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in train.items())
    path = os.path.join(folder, f"dim{stage}.toml")
    with open(path, "w") as f:
        f.write(f"""
version = "dim{stage}"
[model]
family = "mmagic-dim"
trimap_channel = 1
batch_size = 2
imagenet_pretrain = false
    [model.arch]
    encoder = "vgg16"
    decoder = "plain_decoder"
    refiner = "{shipped.model.arch.refiner}"
[data]
pipeline = "dim"
train_fg = "{toy}/train/fg"
train_alpha = "{toy}/train/alpha"
train_bg = "{toy}/train/bg"
test_merged = "{toy}/test/merged"
test_alpha = "{toy}/test/alpha"
test_trimap = "{toy}/test/trimaps"
crop_size = 32
workers = 0
[train]
{lines}
[log]
tensorboard_path = "{folder}/tb"
logging_path = "{folder}/logs"
checkpoint_path = "{folder}/ckpt"
logging_step = 1
checkpoint_step = {steps}
""")
    return path


@pytest.mark.slow
def test_the_three_stages_train_in_sequence_each_from_the_last_file(toy, tmp_path, monkeypatch, capsys):
    losses, starts = {}, {}
    original_step = trainer_module.Trainer.train_step

    def recording_step(self, batches, step):
        if self.config.version not in starts:  # the weights stage by stage training starts from
            starts[self.config.version] = {k: v.clone() for k, v in self.model.state_dict().items()}
        result = original_step(self, batches, step)
        losses.setdefault(self.config.version, []).append({k: v.item() for k, v in result[0].items()})
        return result

    monkeypatch.setattr(trainer_module.Trainer, "train_step", recording_step)
    steps = 24
    for stage in (1, 2, 3):
        torch.manual_seed(stage)
        assert main.main(["--config", stage_config(str(tmp_path), toy, stage, steps)]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    # Each stage's losses are its own: the refinement loss from stage 2 on, the encoder-decoder's
    # two losses in stages 1 and 3 only.
    assert set(losses["dim1"][0]) == {"alpha", "comp", "total"}
    assert set(losses["dim2"][0]) == {"refine", "total"}
    assert set(losses["dim3"][0]) == {"alpha", "comp", "refine", "total"}
    for stage in ("dim1", "dim2", "dim3"):
        totals = [step["total"] for step in losses[stage]]
        first, last = np.mean(totals[:6]), np.mean(totals[-6:])
        assert last < first, (stage, totals)
    # Stage 2 starts from stage 1's file (the refiner keeps its initialisation), stage 3 from stage 2's.
    assert "dim1/latest_model.pth: 42 tensors (8 more, of the refiner, which the file has not" in out
    assert "dim2/latest_model.pth: 50 tensors of a run after its step 24" in out
    stage1 = read_checkpoint(str(tmp_path / "ckpt" / "dim1" / "latest_model.pth"))["state_dict"]
    stage2 = read_checkpoint(str(tmp_path / "ckpt" / "dim2" / "latest_model.pth"))["state_dict"]
    stage3 = read_checkpoint(str(tmp_path / "ckpt" / "dim3" / "latest_model.pth"))["state_dict"]
    # Stage 2 froze the encoder-decoder: every one of its tensors is bit-equal to stage 1's, and
    # its refiner moved from where stage 2 started. Stage 3 trained everything.
    refiner = [key for key in stage2 if key.startswith("refiner.")]
    assert len(refiner) == 8 and set(stage2) == set(stage1) | set(refiner)
    assert all(torch.equal(starts["dim2"][key], tensor) for key, tensor in stage1.items())
    assert all(torch.equal(stage2[key], tensor) for key, tensor in stage1.items())
    assert not any(torch.equal(stage2[key], starts["dim2"][key]) for key in refiner if key.endswith("weight"))
    assert all(torch.equal(starts["dim3"][key], stage2[key]) for key in stage2)
    assert not all(torch.equal(stage2[key], stage3[key]) for key in stage1)
    assert not all(torch.equal(stage2[key], stage3[key]) for key in refiner)


def test_a_training_sample_is_encoded_as_mmagics_preprocessor_does():
    rng = np.random.default_rng(0)
    sample = {"image": rng.uniform(0, 255, (8, 6, 3)).astype(np.float32),
              "fg": rng.uniform(0, 255, (8, 6, 3)).astype(np.float32),
              "bg": rng.uniform(0, 255, (8, 6, 3)).astype(np.float32),
              "alpha": rng.uniform(0, 1, (8, 6)).astype(np.float32),
              "trimap": rng.choice([0, 128, 255], (8, 6)).astype(np.float32)}
    spec = family_spec("mmagic-dim")
    recipe = family_of(spec).recipes(spec)[0]
    tensors = train_tensors(sample, recipe)
    rgb = sample["image"][:, :, ::-1].transpose(2, 0, 1)
    mean, std = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])
    np.testing.assert_allclose(tensors["image"].numpy(), (rgb - mean[:, None, None]) / std[:, None, None], rtol=1e-5)
    np.testing.assert_allclose(tensors["merged"].numpy(), rgb / 255, rtol=1e-6)
    np.testing.assert_allclose(tensors["fg"].numpy(), sample["fg"][:, :, ::-1].transpose(2, 0, 1) / 255, rtol=1e-6)
    assert torch.equal(tensors["trimap"], torch.from_numpy(sample["trimap"])[None] / 255)
    assert tensors["alpha"].shape == (1, 8, 6)
    # The unknown mask the losses take is exactly the trimap's 128.
    assert torch.equal(dim_unknown_weight(tensors["trimap"][None])[0, 0].bool(),
                       torch.from_numpy(sample["trimap"] == 128))
