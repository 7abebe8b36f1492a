"""AEMatter's training recipe (networks/aematter/training.py, losses.py, data.py): the losses on
hand-computed cases, the optimizer's parameter groups, clipping and schedule as its train.py has
them, its data pipeline's samples, its keys, and runs through main.py: fine-tuning a file in the
released layout with the backbone frozen, stopped by a signal and resumed, then loaded by the
inference config.

The losses were also compared with the authors' laploss.py and train.py's loss code run outside
this repository on the same tensors (docs/families/aematter.md#training): equal in fp32."""
import math
import os
import cv2
import numpy as np
import pytest
import torch

import demo
from family_training import log_text, record_steps, refusal, state_of, train, write_config
from dataloader.datasets import SampleSource
from dataloader.toy import make_toy_dataset
from networks.aematter.data import aematter_sample, make_trimap, mix
from networks.aematter.losses import (CHARBONNIER_EPS, aematter_losses, composed_alpha, gaussian_kernel,
                                      laplacian_loss, unknown_charbonnier)
from networks.aematter.network import AEMatter
from networks.aematter.training import (ClippedRAdam, load_swin_imagenet, optimizer, parameter_groups,
                                        stepped_cosine)
from networks.families import family_spec, load_config, load_network
from networks.training import laplacian_pyramid
from utils.checkpoint import CheckpointError, read_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = family_spec("aematter")


def one_hot(classes) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.as_tensor(classes), 3).permute(0, 3, 1, 2).float()


def test_the_prediction_is_kept_in_the_unknown_region_and_the_rest_is_the_trimaps():
    prediction = torch.tensor([[[[0.3, 0.6, 0.9]]]])
    assert composed_alpha(prediction, one_hot([[[0, 1, 2]]])).flatten().tolist() == pytest.approx([0, 0.6, 1])


def test_the_charbonnier_loss_counts_every_pixel_and_divides_by_the_unknown_pixels_plus_5():
    prediction = torch.tensor([[[[0.5, 0.2], [0.7, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    target = torch.tensor([[[[0.1, 0.2], [0.7, 1.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])
    unknown = torch.tensor([[[[1., 1.], [0., 0.]]], [[[0., 0.], [0., 0.]]]])
    # image 1: |0.4| and |0| on its 2 unknown pixels, eps on each of the other 3; over 2 + 5.
    # image 2: no unknown pixel: 4 eps over 5.
    first = (math.sqrt(0.4 ** 2 + CHARBONNIER_EPS ** 2) + 3 * CHARBONNIER_EPS) / 7
    second = 4 * CHARBONNIER_EPS / 5
    assert float(unknown_charbonnier(prediction, target, unknown)) == pytest.approx((first + second) / 2, rel=1e-6)


def test_the_laplacian_loss_on_hand_computed_cases():
    kernel = gaussian_kernel()
    line = np.exp(-np.arange(-2, 3) ** 2 / (2 * 1.5 ** 2))
    np.testing.assert_allclose(kernel.numpy(), np.outer(line, line) / line.sum() ** 2, rtol=1e-6)
    # An impulse: the first band is the impulse minus the kernel around it, whose absolute values
    # sum to 2 (1 - centre).
    impulse = torch.zeros(1, 1, 64, 64)
    impulse[0, 0, 32, 32] = 1
    first = laplacian_pyramid(impulse, kernel, 5, "reflect")[0]
    assert float(first.abs().sum()) == pytest.approx(2 * (1 - float(kernel[2, 2])), rel=1e-5)
    # The bands see no constant offset; level k counts 2^k times.
    target = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0)) * 0.5
    assert float(laplacian_loss(target + 0.25, target)) == pytest.approx(0, abs=1e-5)
    bands = [laplacian_pyramid(x, kernel, 5, "reflect")[:-1] for x in (impulse, torch.zeros_like(impulse))]
    expected = sum(2 ** k * float((a - b).abs().mean()) for k, (a, b) in enumerate(zip(*bands)))
    assert len(bands[0]) == 5 and float(laplacian_loss(impulse, torch.zeros_like(impulse))) == pytest.approx(expected)
    # The prediction is clamped to [0, 1] first.
    assert float(laplacian_loss(impulse * 3, torch.zeros_like(impulse))) == pytest.approx(expected)


def test_the_total_is_half_of_each_loss_on_the_composed_alpha():
    generator = torch.Generator().manual_seed(1)
    prediction, target = torch.rand(2, 1, 64, 64, generator=generator), torch.rand(2, 1, 64, 64, generator=generator)
    trimap = one_hot(torch.randint(0, 3, (2, 64, 64), generator=generator))
    losses = aematter_losses(prediction, target, trimap)
    alpha = composed_alpha(prediction, trimap)
    assert float(losses["l1"]) == pytest.approx(0.5 * float((alpha - target).abs().mean()))
    assert float(losses["unknown"]) == pytest.approx(0.5 * float(unknown_charbonnier(alpha, target, trimap[:, 1:2])))
    assert float(losses["laplacian"]) == pytest.approx(0.5 * float(laplacian_loss(alpha, target)))
    assert float(losses["total"]) == pytest.approx(sum(float(losses[k]) for k in ("l1", "unknown", "laplacian")))


@pytest.fixture(scope="module")
def small_network():
    torch.manual_seed(0)
    return AEMatter(backbone_depths=(1, 1, 1, 1), decoder_depth=1)


def test_the_parameter_groups_and_weight_decay_are_get_params(small_network):
    """get_param: no weight decay for names containing start_conv, bias, convo, conv5, conv4 or conv3
    (the ResBlocks' conv3 inside apptrans, emb and the AEAL blocks, and Swin's
    relative_position_bias_table, included); 1e-6 for the rest."""
    names = {id(p): name for name, p in small_network.named_parameters()}
    exempt, decayed = ({names[id(p)] for p in group["params"]} for group in parameter_groups(small_network))
    assert {"start_conv0.0.weight", "start_conv.2.weight", "start_conv0.1.weight", "trans.layers.0.blocks.0.attn.qkv.bias",
            "conv3.0.weight", "conv4.0.weight", "conv5.4.weight", "convo.4.weight", "convo.1.weight",
            "apptrans.1.conv3.weight", "emb.1.conv3.weight", "trans2.trans.1.conv3.weight", "conv1.0.bias",
            "trans1.self_attn1.in_proj_bias", "trans.layers.0.blocks.0.attn.relative_position_bias_table"} <= exempt
    assert {"conv1.0.weight", "conv2.0.weight", "trans.patch_embed.proj.weight", "trans.norm0.weight",
            "trans1.self_attn1.in_proj_weight",
            "trans1.gamma", "apptrans.1.conv1.weight", "ctran0.blocks.0.mlp.fc1.weight", "h2l.weight"} <= decayed
    assert exempt | decayed == set(names.values()) and not exempt & decayed
    opt = optimizer(small_network, SPEC)
    assert isinstance(opt, torch.optim.RAdam) and opt.max_norm == 10
    assert [(g["weight_decay"], g["lr"], g["betas"], g["decoupled_weight_decay"]) for g in opt.param_groups] == \
        [(0.0, 5e-5, (0.5, 0.999), True), (1e-6, 5e-5, (0.5, 0.999), True)]
    # Frozen parameters are in neither group.
    small_network.trans.requires_grad_(False)
    try:
        kept = {names[id(p)] for group in parameter_groups(small_network) for p in group["params"]}
        assert kept and not any(name.startswith("trans.") for name in kept)
    finally:
        small_network.trans.requires_grad_(True)


def test_swin_ts_imagenet_file_starts_the_backbone_but_for_aematters_own_patch_embedding(small_network, tmp_path):
    """The file as Microsoft's swin_tiny_patch4_window7_224.pth holds it: {'model': ...} with Swin's
    4 x 4 patch embedding of the image, a final norm and a classifier besides the stages."""
    generator = torch.Generator().manual_seed(3)
    swin = {key[len("trans."):]: torch.randn(value.shape, generator=generator) if value.is_floating_point() else value
            for key, value in small_network.state_dict().items()
            if key.startswith("trans.") and not key.startswith(("trans.norm0", "trans.norm1", "trans.norm2", "trans.norm3"))}
    swin.update({"patch_embed.proj.weight": torch.randn(96, 3, 4, 4), "patch_embed.proj.bias": torch.randn(96),
                 "norm.weight": torch.ones(768), "head.weight": torch.randn(1000, 768)})
    torch.save({"model": swin}, tmp_path / "swin.pth")
    before = {k: v.clone() for k, v in small_network.state_dict().items()}
    left = load_swin_imagenet(small_network, str(tmp_path / "swin.pth"), SPEC)
    assert sorted(left) == sorted(k for k in before if k.startswith(("trans.patch_embed.proj.", "trans.norm")))
    after = small_network.state_dict()
    assert all(torch.equal(after["trans." + k], v) for k, v in swin.items() if "trans." + k in after and
               "trans." + k not in left)
    assert all(torch.equal(after[k], before[k]) for k in left) and torch.equal(after["conv1.0.weight"],
                                                                              before["conv1.0.weight"])
    torch.save({"model": {"layers.0.blocks.0.norm1.weight": torch.ones(5)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not Swin-T's ImageNet weights"):
        load_swin_imagenet(small_network, str(tmp_path / "other.pth"), SPEC)


def test_the_step_clips_the_gradient_norm_at_10_first():
    generator = torch.Generator().manual_seed(2)
    start = [torch.randn(30, generator=generator), torch.randn(4, 5, generator=generator)]
    grads = [torch.randn(p.shape, generator=generator) * 40 for p in start]
    norm = float(torch.cat([g.flatten() for g in grads]).norm())
    assert norm > 10
    clipped, plain = ([p.clone().requires_grad_() for p in start] for _ in range(2))
    for p, g in zip(clipped, grads):
        p.grad = g.clone()
    for p, g in zip(plain, grads):
        p.grad = g * (10 / (norm + 1e-6))
    ClippedRAdam([{"params": clipped}], 10.0, lr=0.1, betas=(0.5, 0.999)).step()
    torch.optim.RAdam([{"params": plain}], lr=0.1, betas=(0.5, 0.999)).step()
    for a, b in zip(clipped, plain):
        assert torch.allclose(a, b, atol=1e-7)


def test_the_cosine_steps_once_per_epoch():
    base = 5e-5
    # 300 steps, 150 epochs: two steps an epoch, CosineAnnealingLR(T_max = 150) after each epoch.
    rates = [stepped_cosine(base, step, 300, 150, None) for step in range(300)]
    assert rates[0] == rates[1] == base
    assert rates[2] == rates[3] == pytest.approx(base * (1 + math.cos(math.pi / 150)) / 2)
    assert rates[299] == pytest.approx(base * (1 + math.cos(math.pi * 149 / 150)) / 2)
    # train.reset_lr at step index 99: the epochs spread over the 200 steps left
    assert stepped_cosine(base, 100, 300, 150, 99) == base
    assert stepped_cosine(base, 299, 300, 150, 99) == pytest.approx(rates[299])


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("aemtoy"))
    make_toy_dataset(root, num_fg=2, num_bg=4, num_test=1, fg_size=(96, 128), bg_size=(80, 100), seed=7)
    return root


def source(toy, seed: int, augmentation: bool = True, crop: int = 64) -> SampleSource:
    folder = os.path.join(toy, "train")
    names = sorted(os.listdir(os.path.join(folder, "fg")))

    def read(index):
        stem = os.path.splitext(names[index])[0]
        return (cv2.imread(os.path.join(folder, "fg", names[index])),
                cv2.imread(os.path.join(folder, "alpha", stem + ".png"), cv2.IMREAD_GRAYSCALE))

    fg, alpha = read(0)
    bg = cv2.imread(os.path.join(folder, "bg", sorted(os.listdir(os.path.join(folder, "bg")))[0]))
    return SampleSource(fg, alpha, bg, False, 0, len(names), np.random.default_rng(seed), crop, augmentation, read)


def test_a_sample_is_a_crop_composited_with_a_trimap_of_its_alpha(toy):
    for seed in range(6):
        sample = aematter_sample(source(toy, seed, augmentation=seed % 2 == 0))
        assert {k: v.shape[:2] for k, v in sample.items()} == {k: (64, 64) for k in sample}
        alpha, trimap = sample["alpha"], sample["trimap"]
        assert set(np.unique(trimap)) <= {0, 128, 255}
        assert np.all(alpha[trimap == 255] == 1) and np.all(alpha[trimap == 0] == 0)
        expected = sample["fg"] * alpha[:, :, None] + sample["bg"] * (1 - alpha[:, :, None])
        np.testing.assert_allclose(sample["image"], expected, atol=1e-3)
    again = aematter_sample(source(toy, 4))
    assert all(np.array_equal(v, aematter_sample(source(toy, 4))[k]) for k, v in again.items())


def test_the_trimap_keeps_every_partial_pixel_unknown():
    alpha = np.zeros((100, 100), np.uint8)
    alpha[20:80, 20:80] = 255
    alpha[20:80, 78:80] = 120
    for seed in range(5):
        trimap = make_trimap(alpha, np.random.default_rng(seed))
        assert np.all(trimap[alpha == 120] == 128)
        assert np.all(alpha[trimap == 255] == 255) and np.all(alpha[trimap == 0] == 0)
        assert (trimap == 255).any() and (trimap == 0).any()


def test_mixing_puts_the_foreground_over_another_and_combines_the_alphas():
    fg = np.full((32, 48, 3), 200, np.uint8)
    alpha = np.zeros((32, 48), np.uint8)
    alpha[8:24, 8:40] = 255
    other = (np.full((32, 48, 3), 10, np.uint8), np.full((32, 48), 255, np.uint8))
    for seed in range(6):
        mixed_fg, mixed_alpha = mix(fg, alpha, lambda index: other, 1, np.random.default_rng(seed))
        assert mixed_fg.shape == fg.shape and mixed_alpha.shape == alpha.shape
        assert mixed_alpha.min() >= alpha.min() and (mixed_alpha > alpha).any()
        assert set(np.unique(mixed_fg)) <= {0, 10, 200}


@pytest.mark.parametrize("text,message", [
    ("[train]\nG_lr = 1e-3\n", "'train.G_lr' is not read by model.family = \"aematter\""),
    ("[train]\nwarmup_step = 10\n", "'train.warmup_step' is not read by model.family = \"aematter\""),
    ("[data]\npipeline = \"gca\"\n", "data.pipeline must be \"aematter\""),
    ("[train]\nclip_grad = true\n", "train.clip_grad must be false for AEMatter"),
    ("[data]\ncrop_size = 32\n", "data.crop_size must be a multiple of 32 of at least 64"),
])
def test_a_key_the_recipe_does_not_read_or_a_value_it_cannot_honour_is_refused(tmp_path, text, message):
    assert refusal(tmp_path, "aematter", text).startswith(message)


def test_the_shipped_configs_load():
    for name in ("aematter-train", "aematter-finetune-photos", "aematter"):
        config = load_config(os.path.join(ROOT, "config", f"{name}.toml"))
        assert config.model.family == "aematter" and config.model.batch_size == 2


def released_file(path: str, seed: int = 0) -> str:
    """A random AEMatter saved as AEMatter releases its files ({'model': state dict}); its output
    conv scaled so that the alpha starts inside (0, 1), as a trained model's, instead of pinned
    at 0 by the clamp (the initialisation's raw output is mostly below 0)."""
    torch.manual_seed(seed)
    network = AEMatter()
    with torch.no_grad():
        network.convo[4].weight.mul_(0.05)
        network.convo[4].bias.fill_(0.5)
    torch.save({"model": network.state_dict()}, path)
    return path


def released(path: str):
    return read_checkpoint(path)["model"]


def recipe_losses(checkpoint: str, batch) -> float:
    """The recipe's total loss of the weights in `checkpoint` on `batch`, in eval mode."""
    network = load_network(SPEC, checkpoint)
    with torch.no_grad():
        alpha, _ = network(batch["image"], batch["trimap"])
    return float(aematter_losses(alpha, batch["alpha"], batch["trimap"])["total"])


@pytest.mark.slow
def test_fine_tuning_a_released_file_with_a_frozen_backbone_stopped_resumed_and_loaded(toy, tmp_path, monkeypatch,
                                                                                       capsys):
    """Through main.py: weights from a file in the released layout, the Swin backbone frozen; a
    SIGTERM after step 1 saves it, --resume goes on with step 2; the loss of the first batch falls;
    the backbone ends bit-equal, the rest has moved; the file loads with config/aematter.toml and
    gives alphas."""
    source_file = released_file(str(tmp_path / "AEMFIX.ckpt"))
    data = {f"train_{k}": f"{toy}/train/{k}" for k in ("fg", "alpha", "bg")}
    config = write_config(str(tmp_path), "tune", "aematter", {
        "model": {"batch_size": 1}, "data": {**data, "crop_size": 64, "augmentation": False},
        "train": {"total_step": 3, "val_step": 1000, "init_checkpoint": source_file, "freeze": ["trans"],
                  "lr_per_sample": 5e-3}})
    seen = record_steps(monkeypatch, {"tune": 1})
    assert train(config) == 143
    assert train(config, "--resume", "latest_model") == 0
    assert [step for step, _ in seen["tune"]] == list(range(3))
    assert set(seen["tune"][0][1]) == {"l1", "unknown", "laplacian", "total"}
    latest = str(tmp_path / "ckpt" / "tune" / "latest_model.pth")
    first_batch = seen.batches["tune"][0]
    assert recipe_losses(latest, first_batch) < recipe_losses(source_file, first_batch)
    log = log_text(str(tmp_path), "tune")
    assert f"weights from train.init_checkpoint = {source_file}: 534 tensors" in log
    assert "stopped by SIGTERM after step 1" in log and "resumed from" in log and "after step 1" in log
    start, trained = released(source_file), state_of(latest)
    assert all(torch.equal(value, trained[key]) for key, value in start.items() if key.startswith("trans."))
    assert not any(torch.equal(value, trained[key]) for key, value in start.items()
                   if key.startswith(("convo.", "trans1.linear1", "conv1.")))
    out = tmp_path / "alphas"
    capsys.readouterr()
    assert demo.main(["--config", os.path.join(ROOT, "config", "aematter.toml"), "--checkpoint", latest,
                      "--image-dir", f"{toy}/test/merged", "--trimap-dir", f"{toy}/test/trimaps",
                      "--output", str(out)]) == 0
    written = [name for _, _, names in os.walk(out) for name in names]
    assert len(written) == len(os.listdir(f"{toy}/test/merged"))
