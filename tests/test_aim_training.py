"""AIM's two training stages (networks/aim/training.py, losses.py, data.py): the losses against
hand-computed cases and against tests/aim_transcription.py (core/evaluate.py and core/train.py's
sums), the data's trimaps and usr maps against core/util.py's, the optimizer and schedule of
core/train.py, the keys, and runs through main.py: the transfer stage on images and masks, and the
matting stage fine-tuning a released-layout file with its encoders frozen, stopped by a signal,
resumed and loaded by config/aim.toml."""
import math
import os

import cv2
import numpy as np
import pytest
import torch

import aim_transcription as published
import demo
from conftest import randomise_batch_norms
from family_training import log_text, record_steps, refusal, state_of, train, write_config
from dataloader.datasets import SampleSource
from dataloader.file_lists import DataListError
from dataloader.toy import make_toy_dataset
from networks.aim.data import MattingSamples, dilated_trimap, salient_objects, usr_files, wrapped_uint8
from networks.aim.layout import from_released
from networks.aim.losses import (composition_loss, laplacian_loss, matting_losses, pyramid_kernel, semantic_classes,
                                 transfer_losses, transition_alpha_loss, whole_alpha_loss)
from networks.aim.network import fuse
from networks.families import family_of, family_spec, load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENCODERS = ["encoder0", "encoder1", "encoder2", "encoder3", "encoder4"]


def test_the_trimaps_classes_as_published_for_resized_greys():
    greys = torch.tensor([0, 0.5, 1, 2, 3, 77, 128, 254, 255.]).view(1, 1, 1, -1)
    assert semantic_classes(greys).flatten().tolist() == [0, 0, 1, 2, 1, 1, 1, 1, 2]


def test_the_alpha_losses_on_hand_computed_cases():
    prediction = torch.tensor([[[[0.5, 0.2], [1.0, 0.0]]]])
    alpha = torch.tensor([[[[0.1, 0.2], [0.0, 0.0]]]])
    trimap = torch.tensor([[[[128., 128.], [255., 0.]]]])
    eps = 1e-6  # the root of 1e-12
    # two transition pixels (differences 0.4 and 0), two others counted at eps; over 2 + 1
    assert float(transition_alpha_loss(prediction, alpha, trimap)) == pytest.approx((0.4 + 3 * eps) / 3, rel=1e-5)
    assert float(whole_alpha_loss(prediction, alpha)) == pytest.approx((0.4 + 1.0 + 2 * eps) / 4, rel=1e-5)
    # a prediction of 1 composes the foreground: the loss is |fg - image| summed over the colours / pixels
    fg, bg, image = torch.full((1, 3, 2, 2), 0.3), torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.1)
    assert float(composition_loss(image, fg, bg, torch.ones(1, 1, 2, 2))) == pytest.approx(3 * 0.2, rel=1e-5)


def test_the_pyramids_kernel_is_a_sum_of_two_gaussians():
    g = np.exp(-(np.arange(5) - 2.0) ** 2)  # exp(-x^2 / 2)^2 at sigma 1
    expected = (g[:, None] + g[None, :]) / (10 * g.sum())
    np.testing.assert_allclose(pyramid_kernel().numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(pyramid_kernel().numpy(), published.build_gauss_kernel()[0, 0].numpy(), rtol=1e-6)
    # the pyramid's six levels of a constant are 0 but the last, the constant itself
    constant = torch.full((1, 1, 64, 64), 0.25)
    assert float(laplacian_loss(constant, torch.zeros_like(constant))) == pytest.approx(0.25, rel=1e-5)


def random_outputs(seed: int, size: int = 64):
    """AimNet-like outputs, a mask on 0..255 and a trimap with resized greys besides 0 / 128 / 255."""
    generator = torch.Generator().manual_seed(seed)
    semantic = torch.rand(2, 3, size, size, generator=generator)
    detail = torch.rand(2, 1, size, size, generator=generator)
    mask = torch.randint(0, 256, (2, 1, size, size), generator=generator).float()
    trimap = torch.tensor([0., 128., 255., 1., 2., 77.])[torch.randint(0, 6, (2, 1, size, size), generator=generator)]
    image, fg, bg = (torch.randn(2, 3, size, size, generator=generator) for _ in range(3))
    return semantic, detail, fuse(semantic, detail), mask, trimap, image, fg, bg


@pytest.mark.parametrize("seed", [0, 1])
def test_the_stages_losses_match_the_published_functions(seed):
    semantic, detail, fused, mask, trimap, image, fg, bg = random_outputs(seed)
    assert torch.equal(fused, published.get_masked_local_from_global(semantic, detail))
    batch = {"alpha": mask / 255, "trimap": trimap, "image": image, "fg": fg, "bg": bg}
    transfer = transfer_losses(semantic, detail, fused, batch)
    assert float(transfer["global"]) == pytest.approx(float(published.get_crossentropy_loss(trimap, semantic)), 1e-6)
    assert float(transfer["local"]) == pytest.approx(float(published.get_alpha_loss(detail, mask, trimap)), 1e-6)
    assert float(transfer["total"]) == pytest.approx(float(published.training_loss(
        "sod", image, mask, trimap, fg, bg, semantic, detail, fused)), rel=1e-6)
    matting = matting_losses(semantic, detail, fused, batch)
    assert float(matting["local_laplacian"]) == pytest.approx(float(published.get_laplacian_loss(detail, mask, trimap)),
                                                              rel=1e-6)
    assert float(matting["fusion_laplacian"]) == pytest.approx(
        float(published.get_laplacian_loss_whole_img(fused, mask)), rel=1e-6)
    assert float(matting["composition"]) == pytest.approx(
        float(published.get_composition_loss_whole_img(image, mask, fg, bg, fused)), rel=1e-6)
    assert float(matting["total"]) == pytest.approx(float(published.training_loss(
        "matting", image, mask, trimap, fg, bg, semantic, detail, fused)), rel=1e-6)
    # and their gradients
    ours, theirs = (detail.clone().requires_grad_() for _ in range(2))
    matting_losses(semantic, ours, fuse(semantic, ours), batch)["total"].backward()
    published.training_loss("matting", image, mask, trimap, fg, bg, semantic, theirs,
                            published.get_masked_local_from_global(semantic, theirs)).backward()
    assert torch.allclose(ours.grad, theirs.grad, rtol=1e-5, atol=1e-9)


def test_the_trimaps_and_usr_maps_are_core_utils():
    alpha = np.zeros((90, 120), np.uint8)
    cv2.circle(alpha, (60, 45), 30, 255, -1)
    alpha[40:50] = np.clip(alpha[40:50].astype(int) + 90, 0, 200).astype(np.uint8)
    for kernel in (10, 30):
        assert np.array_equal(dilated_trimap(alpha, kernel), published.gen_trimap_with_dilate(alpha, kernel))
    assert wrapped_uint8(np.array([-3.7, 255.5, 256.2, 100.9])).tolist() == [253, 255, 0, 100]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Foregrounds of 128 .. 160 px, so that the test images fit AIM's 1/4 scale."""
    root = str(tmp_path_factory.mktemp("aimtoy"))
    make_toy_dataset(root, num_fg=2, num_bg=4, num_test=1, fg_size=(128, 160), bg_size=(80, 100), seed=5)
    return root


def test_a_matting_sample_and_a_transfer_sample(toy, tmp_path):
    folder = os.path.join(toy, "train")
    names = sorted(os.listdir(os.path.join(folder, "fg")))
    fg = cv2.imread(os.path.join(folder, "fg", names[0]))
    alpha = cv2.imread(os.path.join(folder, "alpha", os.path.splitext(names[0])[0] + ".png"), cv2.IMREAD_GRAYSCALE)
    bg = cv2.imread(os.path.join(folder, "bg", sorted(os.listdir(os.path.join(folder, "bg")))[0]))
    for seed in range(4):
        source = SampleSource(fg, alpha, bg, False, 0, 1, np.random.default_rng(seed), 64, True, None)
        sample = MattingSamples(None)(source)
        assert {k: v.shape[:2] for k, v in sample.items()} == {k: (64, 64) for k in sample}
        assert sample["alpha"].max() <= 1 and set(np.unique(sample["trimap"])) <= set(range(256))
    # usr maps from a folder, paired with the alphas by stem
    usr = tmp_path / "usr"
    usr.mkdir()
    cv2.imwrite(str(usr / (os.path.splitext(names[0])[0] + ".png")), np.full(alpha.shape, 128, np.uint8))
    alphas = [os.path.join(folder, "alpha", os.path.splitext(name)[0] + ".png") for name in names]
    with pytest.raises(DataListError, match=r"1 of 2 alphas have no usr map in data.train_usr"):
        usr_files(str(usr), alphas)
    files = usr_files(str(usr), alphas[:1])
    source = SampleSource(fg, alpha, bg, False, 0, 1, np.random.default_rng(0), 64, False, None)
    assert np.all(MattingSamples(files)(source)["trimap"] == 128)
    duts = salient_objects(os.path.join(folder, "fg"), os.path.join(folder, "alpha"), lambda s: s, 64, True, 0, 0)
    sample = duts.make_sample(0, 0)
    assert sample["image"].shape == (64, 64, 3) and len(duts) == 2 and duts.summary().startswith("2 images")


def test_adam_at_a_constant_rate_over_every_trained_parameter():
    spec = family_spec("aim", {"train.G_lr": 1e-4})
    recipe = family_of(spec).training
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 1, 1))
    network[0].requires_grad_(False)
    optimizer = recipe.optimizer(network, spec)
    assert isinstance(optimizer, torch.optim.Adam) and len(optimizer.param_groups) == 1
    group = optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["weight_decay"]) == (1e-4, (0.9, 0.999), 0)
    assert len(group["params"]) == sum(1 for p in network.parameters() if p.requires_grad)
    assert {recipe.learning_rate(spec, step, 1000, None) for step in (0, 1, 500, 999)} == {1e-4}


@pytest.mark.parametrize("text,message", [
    ("[train]\nlr_per_sample = 1e-3\n", "'train.lr_per_sample' is not read by model.family = \"aim\""),
    ("[train]\naim_stage = \"sod\"\n", "train.aim_stage must be \"duts\" or \"matting\""),
    ("[data]\nown_background_prob = 0.5\n", "data.own_background_prob must be 0 for AIM"),
    ("[train]\nclip_grad = true\n", "train.clip_grad must be false for AIM"),
])
def test_a_key_the_recipe_does_not_read_or_a_value_it_cannot_honour_is_refused(tmp_path, text, message):
    assert refusal(tmp_path, "aim", text).startswith(message)


def test_the_shipped_configs_load():
    duts, matting = (load_config(os.path.join(ROOT, "config", f"aim-train-{stage}.toml")) for stage in ("duts", "matting"))
    assert (duts.train.aim_stage, duts.train.G_lr, matting.train.aim_stage, matting.train.G_lr) == \
        ("duts", 1e-4, "matting", 1e-6)
    assert duts.model.batch_size == matting.model.batch_size == 16


def validation_set(toy: str, folder) -> dict:
    """The toy's first test image, and one too small for AIM's 1/4 scale."""
    keys = {}
    for key, sub in (("test_merged", "merged"), ("test_alpha", "alpha"), ("test_trimap", "trimaps")):
        os.makedirs(folder / sub)
        name = sorted(os.listdir(os.path.join(toy, "test", sub)))[0]
        image = cv2.imread(os.path.join(toy, "test", sub, name), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(folder / sub / name), image)
        cv2.imwrite(str(folder / sub / "small.png"), image[:64, :80])
        keys[key] = str(folder / sub)
    return keys


@pytest.mark.slow
def test_the_transfer_stage_trains_on_images_and_masks(toy, tmp_path, monkeypatch, capsys):
    """Its losses fall; validation leaves out, by name, an image too small for AIM's recipe."""
    data = {"train_merged": f"{toy}/train/fg", "train_alpha": f"{toy}/train/alpha", "crop_size": 64}
    config = write_config(str(tmp_path), "duts", "aim", {
        "model": {"batch_size": 2}, "data": {**data, **validation_set(toy, tmp_path / "val")},
        "train": {"aim_stage": "duts", "total_step": 3, "val_step": 3, "G_lr": 1e-4}})
    seen = record_steps(monkeypatch, {})
    assert train(config) == 0
    totals = [losses["total"] for _, losses in seen["duts"]]
    assert set(seen["duts"][0][1]) == {"global", "local", "fusion", "total"} and totals[-1] < totals[0], totals
    log = log_text(str(tmp_path), "duts")
    assert "2 images with salient-object masks" in log
    assert "validation image left out of the means: small.png: the photo is 80 x 64 px" in log
    assert "validation at step 3:" in log and "(1 image, 1 too small for the recipe left out)" in log
    # a background folder is not read by this stage: refused by name
    bad = write_config(str(tmp_path), "bad", "aim", {
        "data": {**data, "train_bg": f"{toy}/train/bg"}, "train": {"aim_stage": "duts"}})
    capsys.readouterr()
    assert train(bad) == 2
    assert "does not read data.train_bg: remove it" in capsys.readouterr().out


def released_file(path: str) -> str:
    """A random AimNet saved as the released file is: the published module's state dict (the
    backbone under resnet.* and encoder*, the unused classifier) in {'state_dict': ...}."""
    torch.manual_seed(3)
    module = published.AimNet()
    randomise_batch_norms(module)
    torch.save({"state_dict": module.state_dict()}, path)
    return path


@pytest.mark.slow
def test_the_matting_stage_fine_tunes_a_released_file_with_frozen_encoders(toy, tmp_path, monkeypatch, capsys):
    """Through main.py: the released layout's weights, the encoders frozen, usr maps made from the
    alphas; a SIGTERM after step 1, --resume for the rest; the loss falls; the encoders end
    bit-equal, the decoders have moved; config/aim.toml loads the file and gives alphas."""
    source_file = released_file(str(tmp_path / "aimnet_pretrained_duts.pth"))
    data = {f"train_{k}": f"{toy}/train/{k}" for k in ("fg", "alpha", "bg")}
    config = write_config(str(tmp_path), "tune", "aim", {
        "model": {"batch_size": 2}, "data": {**data, "crop_size": 64},
        "train": {"total_step": 3, "val_step": 1000, "G_lr": 1e-4, "init_checkpoint": source_file,
                  "freeze": ENCODERS}})
    seen = record_steps(monkeypatch, {"tune": 1})
    assert train(config) == 143
    assert train(config, "--resume", "latest_model") == 0
    assert [step for step, _ in seen["tune"]] == [0, 1, 2]
    totals = [losses["total"] for _, losses in seen["tune"]]
    assert set(seen["tune"][0][1]) == {"global", "local", "local_laplacian", "fusion", "fusion_laplacian",
                                       "composition", "total"}
    assert totals[-1] < totals[0], totals
    log = log_text(str(tmp_path), "tune")
    start = from_released(state_of(source_file), source_file)
    assert f"weights from train.init_checkpoint = {source_file}: {len(start)} tensors" in log
    assert "stopped by SIGTERM after step 1" in log and "after step 1" in log
    latest = str(tmp_path / "ckpt" / "tune" / "latest_model.pth")
    trained = state_of(latest)
    assert all(torch.equal(value, trained[key]) for key, value in start.items() if key.startswith("encoder"))
    assert not any(torch.equal(value, trained[key]) for key, value in start.items()
                   if key.startswith(("decoder_final_l.", "decoder_final_g.", "psp_module.bottleneck.")))
    out = tmp_path / "alphas"
    capsys.readouterr()
    assert demo.main(["--config", os.path.join(ROOT, "config", "aim.toml"), "--checkpoint", latest,
                      "--image-dir", f"{toy}/test/merged", "--output", str(out)]) == 0
    written = [name for _, _, names in os.walk(out) for name in names if name.endswith(".png")]
    assert len(written) >= len(os.listdir(f"{toy}/test/merged"))
