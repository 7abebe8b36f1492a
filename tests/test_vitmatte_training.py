"""ViTMatte's training recipe against the published one (hustvl/ViTMatte's configs, criterion and
data/dim_dataset.py; the criterion and the optimizer's parameter groups as transcribed in
tests/vitmatte_transcription.py): the groups' learning rates and weight decays, the schedule,
each loss on a hand-computed case and against the transcription, the sample encoding, the
trimap eroded at 640 x 640, the DINO / MAE initialisation, and training and fine-tuning runs
through main.py on the toy set (vit_toy, 64-pixel crops)."""
import dataclasses
import json
import os

import numpy as np
import pytest
import torch

import main
import trainer as trainer_module
import vitmatte_transcription as published
from dataloader import transforms as T
from dataloader.datasets import DataSettings
from dataloader.file_lists import TrainFolders, training_list
from networks.families import build_network, family_spec
from networks.vitmatte import training
from networks.vitmatte.losses import (gradient_penalty, known_l1_loss, laplacian_loss, unknown_l1_loss,
                                      vitmatte_losses)
from networks.vitmatte.network import SIZES
from utils.checkpoint import CheckpointError
from utils.config import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = "vit_toy"
SPEC = family_spec("vitmatte", {"model.arch.encoder": TOY})
LR = 5e-4


def names_of(network: torch.nn.Module) -> dict:
    return {id(parameter): name for name, parameter in network.named_parameters()}


# ---- the optimizer ----
@pytest.mark.parametrize("encoder", [TOY, "vit_s"])
def test_the_parameter_groups_follow_the_published_layer_decay(encoder):
    """Each parameter's rate and weight decay as detectron2 gives them with ViTMatte's optimizer
    settings (the transcription), S on the meta device; and by hand: the embeddings at 0.65^13,
    block i at 0.65^(12 - i), its residual convolutions, the decoder and the head at 1; no decay on
    the position embedding, the blocks' LayerNorms and the BatchNorms, decay on the residual
    blocks' channel LayerNorms (detectron2's own class, which it does not count as a norm)."""
    size = SIZES[encoder]
    spec = family_spec("vitmatte", {"model.arch.encoder": encoder})
    with torch.device("meta"):
        network = build_network(spec)
        transcription = published.vitmatte(size.width, size.heads, size.depth)
    expected = published.optimizer_hyperparams(transcription, LR, 0.1, size.depth)
    groups = training.parameter_groups(network, spec.options.schedule)
    names = names_of(network)
    got = {names[id(parameter)]: (group["lr"], group["lr_scale"], group["weight_decay"])
           for group in groups for parameter in group["params"]}
    assert sorted(got) == sorted(expected) == sorted(names.values())
    for name, (lr, weight_decay) in expected.items():
        assert got[name][0] == pytest.approx(lr, rel=1e-12) and got[name][1] * LR == pytest.approx(lr, rel=1e-12)
        assert got[name][2] == weight_decay, name
    if encoder == "vit_s":
        by_hand = {"backbone.pos_embed": (0.65 ** 13, 0.0), "backbone.patch_embed.proj.weight": (0.65 ** 13, 0.1),
                   "backbone.blocks.0.norm1.weight": (0.65 ** 12, 0.0),
                   "backbone.blocks.11.attn.qkv.weight": (0.65, 0.1), "backbone.blocks.11.attn.rel_pos_h": (0.65, 0.1),
                   "backbone.blocks.2.residual.conv1.weight": (1.0, 0.1),
                   "backbone.blocks.2.residual.norm1.weight": (1.0, 0.1),
                   "decoder.fusion_blks.0.conv.bn.weight": (1.0, 0.0),
                   "decoder.matting_head.matting_convs.0.weight": (1.0, 0.1)}
        for name, (scale, weight_decay) in by_hand.items():
            assert got[name][1] == pytest.approx(scale, rel=1e-12) and got[name][2] == weight_decay, name


def test_the_optimizer_is_adamw_over_the_trained_parameters():
    network = build_network(SPEC)
    network.backbone.patch_embed.requires_grad_(False)  # as train.freeze leaves it
    optimizer = training.optimizer(network, SPEC)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert all(group["betas"] == (0.9, 0.999) for group in optimizer.param_groups)
    held = [id(p) for group in optimizer.param_groups for p in group["params"]]
    assert sorted(held) == sorted(id(p) for p in network.parameters() if p.requires_grad)
    assert len(held) == len(set(held))


def test_the_learning_rate_schedule_of_vitmatte_s_100ep():
    """ViTMatte_S_100ep.py: 134,687 steps, warm-up from 0.001 x over 250 steps, x 0.1 from step
    int(0.3 x 134,687) = 40,406, x 0.05 from int(0.9 x 134,687) = 121,218."""
    spec = family_spec("vitmatte")
    total = 134687
    expected = {0: 5e-4 * 0.001, 125: 5e-4 * (0.5 + 0.001 * 0.5), 249: 5e-4 * (249 / 250 + 0.001 / 250),
                250: 5e-4, 40405: 5e-4, 40406: 5e-5, 121217: 5e-5, 121218: 2.5e-5, 134686: 2.5e-5}
    for step, lr in expected.items():
        assert training.rate(spec, step, total, None) == pytest.approx(lr, rel=1e-12), step
    # train.reset_lr after step 1000: the schedule, warm-up included, over the steps left
    assert training.rate(spec, 1001, total, 1000) == pytest.approx(5e-7, rel=1e-12)
    assert training.rate(spec, 1001 + int(0.3 * (total - 1001)), total, 1000) == pytest.approx(5e-5, rel=1e-12)


def test_bad_schedules_are_refused():
    with pytest.raises(ConfigError, match="train.lr_factors .* must have one factor more than train.lr_milestones"):
        family_spec("vitmatte", {"train.lr_factors": [1.0, 0.1]})
    with pytest.raises(ConfigError, match="train.lr_milestones must be a list of increasing fractions"):
        family_spec("vitmatte", {"train.lr_milestones": [0.9, 0.3]})
    with pytest.raises(ConfigError, match="is not a config key of model.family \"vitmatte-hf\""):
        family_spec("vitmatte-hf", {"train.layer_decay": 0.7})


# ---- the criterion ----
def hand_case():
    """64 x 64 (the published losses' scale is then 512^2 / 64^2 = 64): rows 16..47 unknown."""
    trimap = torch.ones(1, 1, 64, 64)
    trimap[:, :, 16:48] = 0.5
    target = torch.where(trimap == 0.5, 0.25, 1.0)
    return trimap, target


def test_each_loss_matches_a_hand_computed_case():
    trimap, target = hand_case()
    unknown = (trimap == 0.5).float()
    pred = torch.full_like(target, 0.75)
    assert unknown_l1_loss(pred, target, unknown).item() == pytest.approx(0.5 * 64)
    assert known_l1_loss(pred, target, unknown).item() == pytest.approx(0.25 * 64)
    # A checkerboard of +-0.25 around 0.5 is all in the pyramid's first level (its blur is 0), a
    # constant in none: 2^0 x mean |0.25| / 5 levels.
    rows, columns = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    checker = 0.5 + 0.25 * (-1.0) ** (rows + columns)[None, None]
    assert laplacian_loss(checker, torch.full_like(checker, 0.5)).item() == pytest.approx(0.25 / 5)
    # A ramp of slope 1/64 along x: Sobel x = (1 + 2 + 1) x 2 / 64 = 0.125 inside, Sobel y = 0;
    # against a flat truth, on the inside: (0.125 + 0.01 x 0.125) x 64.
    ramp = (columns / 64.0)[None, None].float()
    inside = torch.zeros_like(ramp)
    inside[:, :, 1:-1, 1:-1] = 1
    assert gradient_penalty(ramp, torch.zeros_like(ramp), inside).item() == pytest.approx(0.125 * 1.01 * 64)
    losses = vitmatte_losses(pred, target, trimap)
    assert set(losses) == {"unknown_l1", "known_l1", "laplacian", "gradient_penalty", "total"}
    assert losses["total"].item() == pytest.approx(sum(v.item() for k, v in losses.items() if k != "total"))


@pytest.mark.parametrize("size", [(64, 64), (96, 64)])
def test_the_losses_are_the_published_criterions(size):
    """On random predictions of a batch of 2 with both regions: the transcription's four losses."""
    generator = torch.Generator().manual_seed(0)
    pred = torch.rand(2, 1, *size, generator=generator)
    target = torch.rand(2, 1, *size, generator=generator).round()
    trimap = torch.rand(2, 1, *size, generator=generator).mul(3).floor() / 2  # 0, 0.5, 1
    theirs = published.criterion()(published.training_sample_map(trimap), {"phas": pred}, {"phas": target})
    ours = vitmatte_losses(pred, target, trimap)
    for name, published_name in (("unknown_l1", "unknown_l1_loss"), ("known_l1", "known_l1_loss"),
                                 ("laplacian", "loss_pha_laplacian"), ("gradient_penalty", "loss_gradient_penalty")):
        assert ours[name].item() == pytest.approx(theirs[published_name].item(), rel=1e-5), name


def test_a_training_sample_is_encoded_as_the_original_trains():
    """The image RGB on 0..1 (the network normalises it), the trimap cut as meta_arch/vitmatte.py
    cuts a training one (below 85: 0, from 170: 1, else 0.5), the alpha."""
    rng = np.random.default_rng(0)
    sample = {"image": rng.uniform(0, 255, (8, 6, 3)).astype(np.float32),
              "alpha": rng.uniform(0, 1, (8, 6)).astype(np.float32),
              "trimap": rng.integers(0, 256, (8, 6)).astype(np.float32)}
    tensors = training.train_tensors(sample, SPEC)
    np.testing.assert_allclose(tensors["image"].numpy(), sample["image"][:, :, ::-1].transpose(2, 0, 1) / 255,
                               rtol=1e-6)
    cut = torch.from_numpy(sample["trimap"]).clone()[None]
    cut[cut < 85] = 0
    cut[cut >= 170] = 1
    cut[cut >= 85] = 0.5
    assert torch.equal(tensors["trimap"], cut)
    assert torch.equal(tensors["alpha"], torch.from_numpy(sample["alpha"])[None])


# ---- the data pipeline ----
def test_the_trimap_is_eroded_at_640_by_640():
    """data/dim_dataset.py's GenMask erodes on the alpha resized to 640 x 640: on a 1280 x 1280
    alpha with a straight edge, a 9 x 9 erosion leaves an unknown band of 8 columns at the alpha's
    own size (GCA-Matting's) and of 16 from 640 x 640."""
    alpha = np.zeros((1280, 1280), np.float32)
    alpha[:, :640] = 1
    draws = dataclasses.replace(T.draw_gca(np.random.default_rng(0), 1), fg_erosion=9, bg_erosion=9)
    assert (T.sample_trimap(alpha, draws)[0] == 128).sum() == 8
    vitmatte = dataclasses.replace(draws, trimap_side=640)
    trimap = T.sample_trimap(alpha, vitmatte)
    assert (trimap[0] == 128).sum() == 16 and set(np.unique(trimap)) == {0, 128, 255}
    drawn = training.vitmatte_draws(np.random.default_rng(0), 1, random_interp=True, augmentation=True)
    assert drawn.trimap_side == 640 and drawn.trimap_interp in T.INTERPOLATIONS


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from dataloader.toy import make_toy_dataset
    root = str(tmp_path_factory.mktemp("vitmattetoy"))
    make_toy_dataset(root, num_fg=2, num_bg=4, num_test=1, fg_size=(96, 128), bg_size=(80, 100), seed=5)
    return root


def toy_settings(toy: str, seed: int) -> DataSettings:
    """The data settings of a 64-pixel training run over the toy set."""
    return DataSettings(64, True, False, "gca", "", 0.0, seed, 0,
                        TrainFolders(f"{toy}/train/fg", f"{toy}/train/alpha", f"{toy}/train/bg", None))


def test_the_dataset_makes_its_samples_with_its_draws(toy):
    files = training_list(f"{toy}/train/fg", f"{toy}/train/alpha", f"{toy}/train/bg")
    settings = toy_settings(toy, seed=3)
    dataset = training.dataset(settings, SPEC)
    sample = dataset.make_sample(0, 1)
    rng = dataset.rng_for(0, 1)
    draws = training.vitmatte_draws(rng, len(files.fg), False, True)
    fg, alpha = dataset._read_fg(1 % len(files.fg))
    fg2 = alpha2 = None
    if draws.mix:
        fg2, alpha2 = dataset._read_fg((1 + draws.mix_offset) % len(files.fg))
        alpha2 = alpha2.astype(np.float32) / 255
    from utils.io.images import read_uint8
    expected = T.gca_sample_reference(fg, alpha.astype(np.float32) / 255, read_uint8(files.bg[1]), draws, 64, True,
                                      fg2, alpha2)
    for key in ("image", "alpha", "trimap"):
        np.testing.assert_array_equal(sample[key], expected[key], err_msg=key)
    with pytest.raises(ValueError, match="leave data.pipeline at \"gca\""):
        training.dataset(dataclasses.replace(settings, pipeline="dim"), SPEC)


# ---- the pre-trained backbone ----
def dino_like_state(network) -> dict:
    """A self-supervised ViT's file as facebookresearch/dino saves it, for the toy's size: the
    backbone's own names, a 3-channel patch embedding, a class token and a final norm, and none
    of the relative position tables or residual convolutions ViTMatte adds."""
    state = {key: value.clone() for key, value in network.backbone.state_dict().items()
             if "rel_pos" not in key and ".residual." not in key}
    state["patch_embed.proj.weight"] = state["patch_embed.proj.weight"][:, :3].clone()
    width = state["pos_embed"].shape[-1]
    state.update({"cls_token": torch.randn(1, 1, width), "norm.weight": torch.ones(width),
                  "norm.bias": torch.zeros(width)})
    return state


def test_the_backbone_starts_from_a_dino_or_mae_file(tmp_path):
    torch.manual_seed(0)
    state = dino_like_state(build_network(SPEC))
    preprocessed = {f"backbone.{key}": value for key, value in state.items()}  # pretrained/preprocess.py's
    preprocessed["backbone.patch_embed.proj.weight"] = torch.cat(
        [state["patch_embed.proj.weight"], torch.zeros_like(state["patch_embed.proj.weight"][:, :1])], dim=1)
    for name, contents in (("dino.pth", state), ("mae.pth", {"model": state}), ("dino_fna.pth", preprocessed)):
        path = tmp_path / name
        torch.save(contents, path)
        network = build_network(SPEC)
        left = training.pretrained_backbone(network, str(path), SPEC)
        loaded = network.backbone.state_dict()
        assert torch.equal(loaded["patch_embed.proj.weight"][:, :3], state["patch_embed.proj.weight"]), name
        assert not loaded["patch_embed.proj.weight"][:, 3].any()
        assert all(torch.equal(loaded[key], value) for key, value in state.items() if key in loaded
                   and key != "patch_embed.proj.weight")
        assert left == [key for key in loaded if "rel_pos" in key or ".residual." in key]
    wide = tmp_path / "vit_b.pth"
    torch.save({"pos_embed": torch.zeros(1, 197, 768), "blocks.0.attn.qkv.weight": torch.zeros(2304, 768)}, wide)
    with pytest.raises(CheckpointError, match=r"vit_b.pth does not fit this ViT \(pos_embed \(1, 197, 768\) vs "):
        training.pretrained_backbone(build_network(SPEC), str(wide), SPEC)
    with pytest.raises(CheckpointError, match="pre-trained ViT not found: .*model.imagenet_pretrain_path"):
        training.pretrained_backbone(build_network(SPEC), str(tmp_path / "absent.pth"), SPEC)


# ---- through main.py ----
def toy_config(folder: str, toy: str, name: str, steps: int, train: dict) -> str:
    """config/vitmatte-s.toml's settings on the toy set: vit_toy, 64 x 64 crops in batches of 2,
    a 3-step warm-up, no pre-trained backbone, fp32."""
    settings = {"total_step": steps, "warmup_step": 3, "val_step": steps, "clip_grad": False, "amp": "off", **train}
    lines = "\n".join(f"{key} = {json.dumps(value)}" for key, value in settings.items())
    path = os.path.join(folder, f"{name}.toml")
    with open(path, "w") as f:
        f.write(f"""
version = "{name}"
[model]
family = "vitmatte"
batch_size = 2
imagenet_pretrain = false
    [model.arch]
    encoder = "{TOY}"
[data]
train_fg = "{toy}/train/fg"
train_alpha = "{toy}/train/alpha"
train_bg = "{toy}/train/bg"
test_merged = "{toy}/test/merged"
test_alpha = "{toy}/test/alpha"
test_trimap = "{toy}/test/trimaps"
crop_size = 64
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


def train_recording(monkeypatch, config: str) -> list:
    """Runs main.py on `config`; the total loss of each step."""
    totals = []
    step = trainer_module.Trainer.train_step

    def recording_step(self, batches, index):
        result = step(self, batches, index)
        totals.append(result[0]["total"].item())
        return result

    monkeypatch.setattr(trainer_module.Trainer, "train_step", recording_step)
    assert main.main(["--config", config]) == 0
    monkeypatch.undo()
    return totals


def fixed_batch_loss(network: torch.nn.Module, toy: str) -> float:
    """The total loss of the network (in training mode, without gradients) on 8 training samples
    of the toy set, the same for every network."""
    dataset = training.dataset(toy_settings(toy, seed=7), SPEC)
    samples = [dataset[(epoch, index)] for epoch in range(2) for index in range(len(dataset))]
    batch = {key: torch.stack([sample[key] for sample in samples]) for key in ("image", "trimap", "alpha")}
    with torch.no_grad():
        alpha, info = network.train()(batch["image"], batch["trimap"])
        return training.losses(network, alpha, info, batch, SPEC)["total"].item()


def trained_network(folder, name: str) -> torch.nn.Module:
    network = build_network(SPEC)
    network.load_state_dict(torch.load(os.path.join(folder, "ckpt", name, "latest_model.pth"),
                                       weights_only=True)["state_dict"])
    return network


@pytest.fixture
def one_thread():
    """These runs are small: one thread does them as fast, without contending with the machine's
    other work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_a_toy_training_run_lowers_the_loss(toy, tmp_path, monkeypatch, one_thread):
    """24 steps from the initialisation (main.py seeds it with train.seed): the loss of the steps
    goes down, and so does the loss on the same samples before and after."""
    totals = train_recording(monkeypatch, toy_config(str(tmp_path), toy, "scratch", 24,
                                                     {"lr_milestones": [0.8, 0.9]}))
    assert len(totals) == 24 and np.mean(totals[-5:]) < np.mean(totals[:5]), totals
    torch.manual_seed(0)
    before = fixed_batch_loss(build_network(SPEC), toy)
    assert fixed_batch_loss(trained_network(tmp_path, "scratch"), toy) < 0.9 * before


@pytest.mark.slow
def test_fine_tuning_from_either_kind_of_released_file(toy, tmp_path, monkeypatch, capsys, one_thread):
    """train.init_checkpoint: an original file ({'model': ...}) and a transformers hub folder,
    each with random weights that make the alpha vary; 12 steps from each lower the loss on the
    same samples."""
    from networks.families import load_network
    from networks.vitmatte.layout import hub_key
    from test_vitmatte import hub_config, transcribed
    original = tmp_path / "ViTMatte_S_Com.pth"
    state = transcribed().state_dict()
    torch.save({"model": state}, original)
    hub = tmp_path / "vitmatte-small-composition-1k"
    hub.mkdir()
    torch.save({hub_key(key): value for key, value in state.items()}, hub / "pytorch_model.bin")
    size = SIZES[TOY]
    (hub / "config.json").write_text(hub_config(size.width, size.heads, size.depth).to_json_string())
    before = fixed_batch_loss(load_network(SPEC, str(original)), toy)
    for name, path in (("from_original", original), ("from_hub", hub)):
        train_recording(monkeypatch, toy_config(str(tmp_path), toy, name, 12, {"init_checkpoint": str(path)}))
        out = capsys.readouterr().out
        assert f"weights from train.init_checkpoint = {path}: {len(state) + 2} tensors" in out, out
        assert fixed_batch_loss(trained_network(tmp_path, name), toy) < 0.9 * before, name


def test_the_hf_family_refuses_to_train_and_names_the_config_that_does(tmp_path, capsys):
    config = tmp_path / "train.toml"
    config.write_text(open(os.path.join(ROOT, "config", "vitmatte-s-hf.toml")).read()
                      + f'\n[log]\nlogging_path = "{tmp_path}/logs"\n')
    assert main.main(["--config", str(config)]) == 2
    assert "train with config/vitmatte-s.toml or -b.toml" in capsys.readouterr().out
