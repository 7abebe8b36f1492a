"""MMagic's Deep Image Matting family: its released files' layout (made here from a transcription
of MMagic's module tree, random weights, saved as MMEditing's 2020 files were: the legacy format,
a `meta` dict) loads unchanged and gives the transcription's alpha through every entry point; the
stripes, the refiner's logit-space residual, DIM's losses and the VGG16 initialisation."""
import copy
import os
import re
from collections import OrderedDict

import cv2
import numpy as np
import pytest
import torch

import demo
import mmagic_dim_transcription as mm
from conftest import config_for_test_phase, write_eval_folders
from matting import Matter
from networks.dim import network as dim_network
from networks.dim.layout import dim_key
from networks.dim.losses import (dim_alpha_loss, dim_composition_loss, dim_losses, dim_unknown_weight,
                                 mmagic_charbonnier, mmagic_masked_mean)
from networks.dim.network import WHOLE, flat_indices, pool, window_codes
from networks.dim.pretrain import load_vgg16_imagenet
from networks.families import build_network, family_spec
from utils.checkpoint import CheckpointError, read_checkpoint
from utils.config import ModelSpec

CONFIGS = {1: "config/mmagic-dim-stage1.toml", 2: "config/mmagic-dim-stage2.toml", 3: "config/mmagic-dim-stage3.toml"}
REFINED = {1: False, 2: True, 3: True}
KEYS = {False: 42, True: 50}


def spec(refined: bool) -> ModelSpec:
    return family_spec("mmagic-dim", {"model.arch.refiner": "plain_refiner" if refined else ""})


def randomise(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """He-normal weights and small random biases: activations keep their scale through the 20
    convolutions, so the alpha varies (Xavier's would fade to a constant 0.5)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for conv in module.modules():
            if isinstance(conv, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(conv.weight)
                conv.bias.uniform_(-0.1, 0.1)
    return module.eval()


@pytest.fixture(scope="module")
def mattors():
    """The transcription, stage 1 (no refiner) and stage 3 (refiner), random weights."""
    return {refined: randomise(mm.DIM(refiner=refined), seed=int(refined)) for refined in (False, True)}


def save_released(mattor: mm.DIM, path: str) -> str:
    """As MMEditing saved DIM in 2020: torch's legacy format, the tensors under state_dict with the
    prefixes backbone. and refiner., mmcv's meta."""
    contents = {
        "meta": {"mmcv_version": "1.0rc0", "time": "Fri Jun  5 14:02:57 2020", "epoch": 1, "iter": 1000000,
                 "config": "model = dict(type='DIM', backbone=dict(type='SimpleEncoderDecoder'))"},
        "state_dict": OrderedDict(mattor.state_dict()),
    }
    torch.save(contents, path, _use_new_zipfile_serialization=False)
    return path


@pytest.fixture(scope="module")
def networks():
    """This project's DIM without and with the refiner, random weights, eval mode."""
    return {refined: randomise(build_network(spec(refined)), seed=4) for refined in (False, True)}


@pytest.fixture(scope="module")
def released(mattors, tmp_path_factory):
    folder = tmp_path_factory.mktemp("released")
    return {refined: save_released(mattor, str(folder / f"dim_{int(refined)}.pth")) for refined, mattor in mattors.items()}


def test_the_key_map_is_onto_the_released_names(mattors):
    for refined, mattor in mattors.items():
        network = build_network(spec(refined))
        ours = {dim_key(key): value.shape for key, value in network.state_dict().items()}
        theirs = {key: value.shape for key, value in mattor.state_dict().items()}
        assert ours == theirs and len(ours) == KEYS[refined]
        assert any(key.startswith("refiner.refine_pred.") for key in theirs) == refined


def test_a_released_file_loads_without_running_code(released):
    checkpoint = read_checkpoint(released[True])
    assert checkpoint["meta"]["iter"] == 1000000 and len(checkpoint["state_dict"]) == 50


def sample(height: int = 45, width: int = 70, seed: int = 1):
    """A random BGR image and a trimap: background above, foreground below, an unknown band with a
    patch of grey 77 (DIM takes any grey as grey / 255; only 0 and 255 are forced)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    trimap = np.full((height, width), 128, np.uint8)
    trimap[:10], trimap[-10:], trimap[20:24, :30] = 0, 255, 77
    return image, trimap


@pytest.mark.parametrize("stage", list(CONFIGS))
def test_matter_gives_mmagics_alpha_to_the_bit(mattors, released, stage):
    refined = REFINED[stage]
    image, trimap = sample()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        expected = mattors[refined].predict(image, trimap).numpy()
        matter = Matter(CONFIGS[stage], released[refined], device="cpu")
        whole = matter(image[:, :, ::-1].copy(), trimap)
        matter.network.stripe_rows = 8  # 64 padded rows: eight stripes, mostly context
        striped = matter(image[:, :, ::-1].copy(), trimap)
    finally:
        torch.set_num_threads(threads)
    # The whole image runs MMagic's operations on the same tensors: the same bits. The stripes run
    # the convolutions on shorter maps, which the math library may sum in another order: an alpha
    # a few fp32 roundings away can truncate to the next level.
    assert np.array_equal(whole, expected)
    assert np.abs(striped.astype(np.int16) - expected).max() <= 1
    assert len(np.unique(expected[10:-10])) > 20  # the network's alpha, not only the forced regions
    assert (expected[20:24, :30] != expected[20:24, :30].min()).any()


def test_stage_1_has_no_refiner_and_its_alpha_is_the_decoders_sigmoid(mattors):
    network = build_network(spec(False)).eval()
    network.load_state_dict({key: mattors[False].state_dict()[dim_key(key)] for key in network.state_dict()})
    image, trimap = torch.randn(1, 3, 64, 64), torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        alpha, info = network(image, trimap)
        raw = mattors[False].backbone(torch.cat((image, trimap), 1))
    assert network.refiner is None and info is None
    assert torch.equal(alpha, torch.sigmoid(raw))


def test_the_refiner_adds_its_output_to_the_decoders_in_logit_space(networks):
    network = copy.deepcopy(networks[True])
    with torch.no_grad():
        network.refiner.refine_pred.weight.zero_()
        network.refiner.refine_pred.bias.fill_(1.5)
        image, trimap = torch.randn(1, 3, 64, 64), torch.rand(1, 1, 64, 64)
        alpha, refined = network.predictions(image, trimap)
        output, _ = network(image, trimap)
    assert torch.equal(output, refined)
    logit = lambda a: torch.log(a / (1 - a))  # noqa: E731
    assert torch.allclose(logit(refined.double()) - logit(alpha.double()), torch.full_like(alpha.double(), 1.5),
                          atol=1e-4)
    assert not torch.allclose(refined, alpha + 1.5 * alpha * (1 - alpha), atol=1e-3)  # not added to the alpha


@pytest.mark.parametrize("refined", [False, True])
def test_stripes_give_the_whole_image_result(networks, refined):
    network = networks[refined]
    image, trimap = torch.randn(2, 3, 128, 32), torch.rand(2, 1, 128, 32)
    with torch.no_grad():
        network.stripe_rows = WHOLE
        whole, _ = network(image, trimap)
        # 30 is no multiple of 4 (32 are run); 52 does not divide 128. (Matter's test runs 8.)
        for rows in (30, 52):
            network.stripe_rows = rows
            striped, _ = network(image, trimap)
            # The same convolutions on maps of another height: the math library may choose another
            # kernel for them and sum in another order, a few fp32 roundings of an alpha in 0..1
            # (eps 1.2e-7). 1e-5 is the bound that too little context exceeds (next test).
            assert torch.allclose(striped, whole, atol=1e-5, rtol=0), rows


def test_stripe_context_is_needed(networks, monkeypatch):
    monkeypatch.setattr(dim_network, "STRIPE_CONTEXT", 1)
    network = networks[True]
    image, trimap = torch.randn(1, 3, 128, 32), torch.rand(1, 1, 128, 32)
    with torch.no_grad():
        network.stripe_rows = WHOLE
        whole, _ = network(image, trimap)
        network.stripe_rows = 32
        striped, _ = network(image, trimap)
    assert not torch.allclose(striped, whole, atol=1e-5)


def test_training_never_stripes_and_gives_both_predictions(networks, monkeypatch):
    network = copy.deepcopy(networks[True]).train()
    network.stripe_rows = 32
    monkeypatch.setattr(dim_network.DeepImageMatting, "forward_striped", lambda *args: pytest.fail("striped"))
    image, trimap = torch.randn(1, 3, 64, 64), torch.rand(1, 1, 64, 64)
    alpha, info = network(image, trimap)
    decoder_alpha, refined = network.predictions(image, trimap)
    assert alpha.shape == (1, 1, 64, 64) and torch.equal(alpha, refined)
    assert torch.equal(info["decoder_alpha"], decoder_alpha) and torch.equal(info["refined_alpha"], refined)
    trimap = torch.tensor([0, 128, 255], dtype=torch.uint8)[torch.randint(0, 3, (1, 1, 64, 64))] / 255.
    alpha, info = network(image, trimap)
    batch = {"alpha": torch.rand(1, 1, 64, 64), "fg": torch.rand(1, 3, 64, 64), "bg": torch.rand(1, 3, 64, 64),
             "merged": torch.rand(1, 3, 64, 64), "trimap": trimap}
    dim_losses(info["decoder_alpha"], info["refined_alpha"], batch, True, True)["total"].backward()
    assert all(parameter.grad is not None and parameter.grad.abs().sum() > 0 for parameter in network.parameters())


def test_window_codes_give_the_pooling_indices_back():
    x = torch.randn(2, 3, 8, 12)
    x[0, 0, :2, :2] = 1.0  # a tie: the first maximum in row-major order, as torch's pooling
    _, indices = pool(x)
    codes = window_codes(indices, 12)
    assert codes.dtype == torch.uint8 and codes[0, 0, 0, 0] == 0 and int(codes.max()) <= 3
    assert torch.equal(flat_indices(codes), indices)


def test_a_stage_1_file_with_a_refined_config_names_the_stage_1_config(released):
    with pytest.raises(CheckpointError, match=r"missing keys: refiner\..*MMagic DIM stage-1 checkpoint.*"
                                              r"use config/mmagic-dim-stage1.toml"):
        Matter(CONFIGS[3], released[False], device="cpu")
    with pytest.raises(CheckpointError, match=r"unexpected keys: refiner\..*with the refiner.*"
                                              r"use config/mmagic-dim-stage3.toml or config/mmagic-dim-stage2.toml"):
        Matter(CONFIGS[1], released[True], device="cpu")


def test_a_dim_file_with_a_gca_config_names_the_dim_config(released):
    with pytest.raises(CheckpointError, match=r"MMagic DIM stage-1 checkpoint.*config/mmagic-dim-stage1.toml"):
        Matter("config/mmagic-baseline-dimaug.toml", released[False], device="cpu")
    with pytest.raises(CheckpointError, match=r"MMagic DIM checkpoint with the refiner"):
        Matter("config/gca-dist.toml", released[True], device="cpu")


@pytest.mark.parametrize("key,value", [("encoder", '"resnet_gca_encoder_29"'), ("refiner", '"unet"')])
def test_settings_that_are_not_dims_are_named(tmp_path, released, key, value):
    config = tmp_path / "bad.toml"
    config.write_text(re.sub(rf'{key} = ".*"', f"{key} = {value}", open(CONFIGS[3]).read()))
    with pytest.raises(ValueError, match=rf"model.arch.{key} = {value[1:-1]!r} is not DIM's"):
        Matter(str(config), released[True], device="cpu")


def test_resume_skips_the_images_of_a_model_without_offset_pictures(tmp_path, released, capsys):
    # DIM draws no offset pictures: an image whose alpha is there is complete
    images, trimaps, _ = write_eval_folders(tmp_path)
    out = str(tmp_path / "out")
    args = ["--config", CONFIGS[1], "--checkpoint", released[False], "--image-dir", images, "--trimap-dir", trimaps,
            "--output", out, "--device", "cpu"]
    assert demo.main(args) == 0
    save_dir = os.path.join(out, f"mmagic-dim-stage1_{os.path.basename(released[False])}")
    os.remove(os.path.join(save_dir, "p1.png"))
    kept = os.stat(os.path.join(save_dir, "p0.png")).st_mtime_ns
    capsys.readouterr()
    assert demo.main(args + ["--resume"]) == 0
    captured = capsys.readouterr()
    assert f"--resume: 1 of 2 images have all their files in {save_dir} already; skipped" in captured.err
    assert f"2 of 2 images written to {save_dir} (1 before this run)" in captured.out and "demo 1/1" in captured.err
    assert os.stat(os.path.join(save_dir, "p0.png")).st_mtime_ns == kept
    assert sorted(os.listdir(save_dir)) == ["p0.png", "p1.png"]


@pytest.mark.slow
@pytest.mark.parametrize("stage", [3])
def test_every_entry_point_runs_dim(tmp_path, mattors, released, stage, capsys):
    import app
    import main
    refined = REFINED[stage]
    images, trimaps, alphas = write_eval_folders(tmp_path)
    out = str(tmp_path / "out")
    assert demo.main(["--config", CONFIGS[stage], "--checkpoint", released[refined], "--image-dir", images,
                      "--trimap-dir", trimaps, "--output", out, "--device", "cpu"]) == 0
    save_dir = os.path.join(out, f"mmagic-dim-stage{stage}_{os.path.basename(released[refined])}")
    assert sorted(os.listdir(save_dir)) == ["p0.png", "p1.png"]  # no offset pictures: DIM has no GCA
    written = cv2.imread(os.path.join(save_dir, "p0.png"), cv2.IMREAD_UNCHANGED)
    image, trimap = cv2.imread(os.path.join(images, "p0.png")), cv2.imread(os.path.join(trimaps, "p0.png"), 0)
    expected = mattors[refined].predict(image, trimap).numpy()
    assert np.abs(written.astype(int) - expected).max() <= 1
    matter = Matter(CONFIGS[stage], released[refined], device="cpu")
    page = app.matte(matter, app.Inputs(os.path.join(images, "p0.png"), trimap=os.path.join(trimaps, "p0.png")), 4096)
    assert np.array_equal(page.alpha, written) and page.offsets == [None, None]
    flipped = matter(image[:, :, ::-1].copy(), trimap, tta="flip")
    mirrored = mattors[refined].predict(image[:, ::-1].copy(), trimap[:, ::-1].copy()).numpy()[:, ::-1]
    assert np.abs(flipped.astype(int) - (expected.astype(int) + mirrored) / 2).max() <= 1
    for protocol, figures in (("comp1k", "SAD"), ("aim500", "SAD-Trimap")):
        capsys.readouterr()
        config = config_for_test_phase(tmp_path, CONFIGS[stage], released[refined], (images, trimaps, alphas),
                                       f'protocol = "{protocol}"')
        assert main.main(["--config", config, "--phase", "test"]) == 0
        predicted = cv2.imread(str(tmp_path / "prediction" / f"mmagic-dim-stage{stage}" / "p0.png"),
                               cv2.IMREAD_UNCHANGED)
        assert np.abs(predicted.astype(int) - expected).max() <= 1  # MMagic's recipe in the test phase too
        report = capsys.readouterr().out
        assert f"mmagic-dim-stage{stage} on 2 images" in report and figures in report


def test_demo_makes_trimaps_from_masks_and_cutouts_for_dim(tmp_path, released):
    pytest.importorskip("pymatting", reason="pymatting not installed (pip install -r requirements-cutout.txt)")
    images, masks, out = tmp_path / "images", tmp_path / "masks", str(tmp_path / "out")
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(5)
    cv2.imwrite(str(images / "a.png"), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    mask = np.zeros((64, 64), np.uint8)
    cv2.circle(mask, (32, 32), 18, 255, -1)
    cv2.imwrite(str(masks / "a.png"), mask)
    assert demo.main(["--config", CONFIGS[3], "--checkpoint", released[True], "--image-dir", str(images),
                      "--mask-dir", str(masks), "--unknown-width", "5", "--output", out, "--device", "cpu",
                      "--tta", "flip", "--cutout"]) == 0
    save_dir = os.path.join(out, f"mmagic-dim-stage3_{os.path.basename(released[True])}")
    assert sorted(os.listdir(save_dir)) == ["a.png", "a_fg.png", "a_rgba.png", "a_trimap.png"]
    trimap = cv2.imread(os.path.join(save_dir, "a_trimap.png"), cv2.IMREAD_UNCHANGED)
    rgba = cv2.imread(os.path.join(save_dir, "a_rgba.png"), cv2.IMREAD_UNCHANGED)
    alpha = cv2.imread(os.path.join(save_dir, "a.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(rgba[:, :, 3], alpha)
    assert (alpha[trimap == 255] == 255).all() and (alpha[trimap == 0] == 0).all()


# DIM's losses, by hand: a 2 x 2 prediction, three unknown pixels (grey 128) and one background.
PRED = torch.tensor([[[[0.2, 0.5], [1.0, 0.0]]]])
TARGET = torch.tensor([[[[0.0, 0.5], [0.5, 0.0]]]])
TRIMAP = torch.tensor([[[[128, 128], [128, 0]]]], dtype=torch.uint8) / 255.


def test_the_unknown_mask_is_grey_128_of_the_networks_trimap():
    assert torch.equal(dim_unknown_weight(TRIMAP), torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]]))


def test_charbonnier_and_the_masked_mean_by_hand():
    charbonnier = mmagic_charbonnier(PRED, TARGET)
    assert torch.allclose(charbonnier, torch.tensor([[[[0.2, 1e-6], [0.5, 1e-6]]]]), rtol=1e-6, atol=0)
    # the masked pixel's 1e-6 drops out; (0.2 + 1e-6 + 0.5) / (3 + 1e-12)
    assert dim_alpha_loss(PRED, TARGET, dim_unknown_weight(TRIMAP)).item() == pytest.approx(0.700001 / 3, rel=1e-6)
    # a one-channel mask counts once per channel of the loss
    loss = torch.ones(1, 3, 2, 2)
    assert mmagic_masked_mean(loss, dim_unknown_weight(TRIMAP)).item() == pytest.approx(9 / 9)
    assert mmagic_masked_mean(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)).item() == 0.0


def test_the_composition_loss_by_hand():
    # white fg, black bg, the merged image grey at the true alpha: the composite's error is the
    # alpha's in each of the three channels, so the mean is the alpha loss's
    fg, bg, merged = torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2), TARGET.expand(-1, 3, -1, -1)
    weight = dim_unknown_weight(TRIMAP)
    assert dim_composition_loss(PRED, fg, bg, merged, weight).item() == pytest.approx(0.700001 / 3, rel=1e-6)
    # fg and bg swapped: the composite is 1 - alpha
    expected = (abs(0.8 - 0.0) + abs(0.5 - 0.5) + 1e-6 + abs(0.0 - 0.5)) / 3
    assert dim_composition_loss(PRED, bg, fg, merged, weight).item() == pytest.approx(expected, rel=1e-5)


def test_each_stages_losses_by_hand():
    refined = torch.tensor([[[[0.0, 0.5], [0.5, 0.9]]]])  # exact on the unknown pixels
    batch = {"alpha": TARGET, "fg": torch.ones(1, 3, 2, 2), "bg": torch.zeros(1, 3, 2, 2),
             "merged": TARGET.expand(-1, 3, -1, -1), "trimap": TRIMAP}
    alpha_loss = 0.700001 / 3
    stage1 = dim_losses(PRED, None, batch, train_backbone=True, train_refiner=False)
    assert sorted(stage1) == ["alpha", "comp", "total"]
    assert stage1["total"].item() == pytest.approx(0.5 * alpha_loss + 0.5 * alpha_loss, rel=1e-6)
    stage2 = dim_losses(PRED, refined, batch, train_backbone=False, train_refiner=True)
    assert sorted(stage2) == ["refine", "total"] and stage2["total"].item() == pytest.approx(1e-6, rel=1e-3)
    stage3 = dim_losses(PRED, refined, batch, train_backbone=True, train_refiner=True)
    assert stage3["total"].item() == pytest.approx(alpha_loss + 1e-6, rel=1e-6)
    with pytest.raises(ValueError, match="needs the refiner's alpha"):
        dim_losses(PRED, None, batch, train_backbone=True, train_refiner=True)


@pytest.mark.parametrize("backbone,refiner", [(True, False), (False, True), (True, True)])
def test_the_losses_are_mmagics_to_the_bit(backbone, refiner):
    torch.manual_seed(7)
    alpha, refined, target = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    fg, bg, merged = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    trimap = torch.tensor([0, 128, 255], dtype=torch.uint8)[torch.randint(0, 3, (2, 1, 16, 16))] / 255.
    ours = dim_losses(alpha, refined, {"alpha": target, "fg": fg, "bg": bg, "merged": merged, "trimap": trimap},
                      backbone, refiner)
    theirs = mm.forward_train_losses(alpha, refined, trimap, target, fg, bg, merged, backbone, refiner)
    assert all(torch.equal(ours[name[len("loss_"):]], value) for name, value in theirs.items())
    assert len(ours) == len(theirs) + 1


def torchvision_vgg16(seed: int = 0) -> dict:
    """A random state dict in torchvision's vgg16 layout: features.N convs, classifier.M linears."""
    generator = torch.Generator().manual_seed(seed)
    state, index, channels = {}, 0, 3
    for out_channels, convs in dim_network.VGG16_STAGES:
        for _ in range(convs):
            state[f"features.{index}.weight"] = torch.randn(out_channels, channels, 3, 3, generator=generator)
            state[f"features.{index}.bias"] = torch.randn(out_channels, generator=generator)
            channels, index = out_channels, index + 2
        index += 1  # the pooling
    state["classifier.0.weight"], state["classifier.0.bias"] = torch.randn(8, 8), torch.randn(8)
    return state


def test_the_vgg16_imagenet_weights_load_with_a_zero_trimap_channel(tmp_path):
    state = torchvision_vgg16()
    path = str(tmp_path / "vgg16.pth")
    torch.save(state, path)
    network = build_network(spec(True))
    conv6 = network.encoder.conv6.weight.clone()
    left = load_vgg16_imagenet(network.encoder, path)
    assert left == ["conv6.weight", "conv6.bias"] and torch.equal(network.encoder.conv6.weight, conv6)
    first = network.encoder.layer1[0].weight
    assert torch.equal(first[:, :3], state["features.0.weight"]) and not first[:, 3].any()
    assert torch.equal(network.encoder.layer3[4].weight, state["features.14.weight"])
    assert torch.equal(network.encoder.layer5[4].bias, state["features.28.bias"])


def test_vgg16_files_that_do_not_fit_are_named(tmp_path):
    encoder = build_network(spec(False)).encoder
    with pytest.raises(CheckpointError, match="VGG16 ImageNet weights not found: .*missing.pth"):
        load_vgg16_imagenet(encoder, str(tmp_path / "missing.pth"))
    path = str(tmp_path / "resnet.pth")
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(CheckpointError, match=r"resnet.pth: not a VGG16 state dict"):
        load_vgg16_imagenet(encoder, path)
    state = torchvision_vgg16()
    state["features.2.weight"] = torch.zeros(64, 64, 5, 5)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"do not fit VGG16: layer1.2.weight \(64, 64, 5, 5\)"):
        load_vgg16_imagenet(encoder, path)
