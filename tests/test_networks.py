import numpy as np
import pytest
import torch

from conftest import BASELINE_ARCH, GCA_ARCH, demo_recipe, key_list, state_dict_from_key_list
from networks.gca_matting.decoders.res_gca_dec import ResGuidedCxtAtten_Dec
from networks.gca_matting.decoders.res_shortcut_dec import ResShortCut_D_Dec
from networks.gca_matting.encoders.res_gca_enc import ResGuidedCxtAtten
from networks.gca_matting.encoders.res_shortcut_enc import ResShortCut_D
from networks.gca_matting.generator import Generator, build_generator
from utils.inference.predict import predict_alpha


@pytest.mark.parametrize("name,arch", [("gca", GCA_ARCH), ("baseline", BASELINE_ARCH)])
def test_state_dict_matches_published_key_list(name, arch):
    model = build_generator(*arch)
    got = [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in model.state_dict().items()]
    assert got == key_list(name)


@pytest.mark.parametrize("name,arch", [("gca", GCA_ARCH), ("baseline", BASELINE_ARCH)])
@pytest.mark.parametrize("prefix", ["", "module."])
def test_published_keys_load_strictly(name, arch, prefix):
    from utils.checkpoint import extract_state_dict
    state = state_dict_from_key_list(name)
    model = build_generator(*arch)
    model.load_state_dict(extract_state_dict({"state_dict": {prefix + k: v for k, v in state.items()}}), strict=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_parameter_count_is_the_published_one():
    model = build_generator(*GCA_ARCH)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen_uv = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert (trainable, frozen_uv) == (25_164_529, 104_615)


def random_input(size, trimap_channel=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    h, w = size
    image = torch.randn(1, 3, h, w, generator=generator)
    classes = torch.randint(0, 3, (1, h // 8, w // 8), generator=generator)
    classes = torch.nn.functional.interpolate(classes[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()
    if trimap_channel == 3:
        trimap = torch.nn.functional.one_hot(classes, 3).permute(0, 3, 1, 2).float()
    else:
        trimap = classes[:, None].float()
    return image, trimap


@pytest.mark.slow
@pytest.mark.parametrize("arch", [GCA_ARCH, BASELINE_ARCH])
@pytest.mark.parametrize("trimap_channel", [3, 1])
def test_forward_shapes(arch, trimap_channel):
    model = build_generator(*arch, trimap_channel=trimap_channel).eval()
    assert model.encoder.conv1.module.weight_bar.shape[1] == 3 + trimap_channel
    with torch.no_grad():
        alpha, info = model(*random_input((256, 224), trimap_channel))
    assert alpha.shape == (1, 1, 256, 224)
    assert 0 <= alpha.min() and alpha.max() <= 1
    if arch == GCA_ARCH:
        for name in ("offset_1", "offset_2"):
            offsets, scales = info[name]
            assert offsets.shape == (1, 2, 16, 14) and offsets.dtype == torch.int64
            assert scales.shape == (1, 2)
    else:
        assert info is None


@pytest.mark.slow
@pytest.mark.parametrize("trimap_channel", [3, 1])
def test_prediction_at_a_size_not_divisible_by_32(trimap_channel, rng):
    model = build_generator(*GCA_ARCH, trimap_channel=trimap_channel).eval()
    image = rng.integers(0, 256, (77, 45, 3), dtype=np.uint8)
    trimap = np.full((77, 45), 128, np.uint8)
    trimap[:20] = 0
    trimap[-20:] = 255
    alpha, info = predict_alpha(model, demo_recipe(trimap_channel), image, trimap, torch.device("cpu"))
    assert alpha.shape == (77, 45) and alpha.dtype == np.uint8
    assert (alpha[:20] == 0).all() and (alpha[-20:] == 255).all()
    # 77 + 64 -> 160, 45 + 64 -> 128 after padding: offsets live on the 1/16 grid of that.
    assert info["offset_1"][0].shape == (1, 2, 10, 8)


def test_mismatched_encoder_and_decoder_are_refused():
    with pytest.raises(ValueError, match="do not pair"):
        build_generator("resnet_gca_encoder_29", "res_shortcut_decoder_22")
    with pytest.raises(ValueError, match="choose one of"):
        build_generator("resnet_gca_encoder_30", "res_gca_decoder_22")


def test_training_init_follows_the_published_recipe():
    model = build_generator(*GCA_ARCH)
    assert (model.encoder.conv1.module.weight_bar[:, 3:] == 0).all()
    assert (model.encoder.conv1.module.weight_bar[:, :3] != 0).any()
    assert (model.encoder.layer1[0].bn2.weight == 0).all()
    assert (model.decoder.layer1[0].bn2.weight == 0).all()
    assert (model.encoder.gca.W[1].weight == 1e-3).all()


# Blocks per layer of the encoder and of the decoder for the stripe tests: decoder layer 4's two
# blocks as published, so the striped tail (layer 4, the head, the two finest shortcut branches)
# is the published one, and one block per other layer, so the trunk, which runs whole, costs less.
PUBLISHED_TAIL = ([1, 1, 1, 1], [1, 1, 1, 2])


def converged_model(arch, trimap_channel=3, seed=0, layers=None):
    """Random weights with converged spectral norms and non-trivial BatchNorm statistics; the
    arch's blocks per layer, or `layers` (the encoder's, the decoder's)."""
    from networks.gca_matting.spectral_norm import SpectralNorm
    torch.manual_seed(seed)
    if layers is None:
        model = build_generator(*arch, trimap_channel=trimap_channel)
    else:
        gca = arch == GCA_ARCH
        model = Generator((ResGuidedCxtAtten if gca else ResShortCut_D)(layers[0], trimap_channel),
                          (ResGuidedCxtAtten_Dec if gca else ResShortCut_D_Dec)(layers[1]), trimap_channel)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, SpectralNorm):
                for _ in range(20):
                    module.normalized_weight()
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2)
    return model.eval()


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_in_place_batchnorm_gives_batchnorm_bits_in_its_input(layout):
    from networks.ops import InPlaceBatchNorm2d
    torch.manual_seed(0)
    plain, in_place = torch.nn.BatchNorm2d(8), InPlaceBatchNorm2d(8)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean"):
            getattr(plain, name).normal_()
        plain.running_var.uniform_(0.5, 2)
    in_place.load_state_dict(plain.state_dict())
    plain.eval(), in_place.eval()
    x = torch.randn(2, 8, 5, 7).contiguous(memory_format=layout)
    with torch.no_grad():
        expected, given = plain(x), x.clone(memory_format=torch.preserve_format)
        out = in_place(given)
    assert torch.equal(out, expected) and out.data_ptr() == given.data_ptr()
    # with autograd or in training it is nn.BatchNorm2d: a new tensor, the input untouched
    given = x.clone(memory_format=torch.preserve_format)
    assert torch.equal(in_place(given), expected) and torch.equal(given, x)
    in_place.train()
    with torch.no_grad():
        assert torch.equal(in_place(given), plain.train()(x)) and torch.equal(given, x)


@pytest.mark.slow
@pytest.mark.parametrize("arch,trimap_channel", [(GCA_ARCH, 3), (GCA_ARCH, 1), (BASELINE_ARCH, 3)])
def test_striped_tail_gives_the_whole_image_result(arch, trimap_channel):
    from networks.gca_matting.generator import WHOLE
    model = converged_model(arch, trimap_channel, layers=PUBLISHED_TAIL)
    image, trimap = random_input((160, 64), trimap_channel, seed=1)
    image, trimap = torch.cat([image, image.flip(2)]), torch.cat([trimap, trimap.flip(2)])
    with torch.no_grad():
        model.stripe_rows = WHOLE
        whole, whole_info = model(image, trimap)
        # 4 rows: every stripe is mostly context; 30 is no multiple of 4; 36 does not divide 160;
        # 160 is one stripe
        for rows in (4, 30, 36, 64, 160):
            model.stripe_rows = rows
            striped, info = model(image, trimap)
            # The same convolutions on the same rows, but on maps of another height: the math
            # library may choose another kernel for them and sum in another order, a few fp32
            # roundings of an alpha in 0..1 (eps 1.2e-7). 1e-5 is the bound the next test shows
            # too little context exceeds. The offsets come before the tail: the same bits.
            assert torch.allclose(striped, whole, atol=1e-5, rtol=0), rows
            if arch == GCA_ARCH:
                for name in ("offset_1", "offset_2"):
                    assert torch.equal(info[name][0], whole_info[name][0])


@pytest.mark.slow
def test_stripe_context_is_needed(monkeypatch):
    # The equality above is not trivial: with too little context the stripes' edges differ.
    import networks.gca_matting.generator as generator
    monkeypatch.setattr(generator, "STRIPE_CONTEXT", 2)
    model = converged_model(BASELINE_ARCH, layers=PUBLISHED_TAIL)
    image, trimap = random_input((160, 64), seed=1)
    with torch.no_grad():
        model.stripe_rows = generator.WHOLE
        whole, _ = model(image, trimap)
        model.stripe_rows = 32
        striped, _ = model(image, trimap)
    assert not torch.allclose(striped, whole, atol=1e-5)


@pytest.mark.slow
def test_training_never_stripes(monkeypatch):
    from networks.gca_matting.generator import Generator
    model = converged_model(BASELINE_ARCH, layers=PUBLISHED_TAIL).train()
    model.stripe_rows = 32
    monkeypatch.setattr(Generator, "forward_striped", lambda *args: pytest.fail("striped in training"))
    alpha, _ = model(*random_input((64, 64)))
    assert alpha.shape == (1, 1, 64, 64)


def test_automatic_stripes_fit_the_budget():
    from networks.gca_matting.generator import TAIL_BYTES_PER_PIXEL
    from networks.stripes import STRIPE_BUDGET_BYTES, WHOLE, choose_stripe_rows
    cpu = torch.device("cpu")
    rows = choose_stripe_rows(3904, 0, cpu, TAIL_BYTES_PER_PIXEL)
    assert rows % 32 == 0 and 32 <= rows and rows * 3904 * TAIL_BYTES_PER_PIXEL <= STRIPE_BUDGET_BYTES
    assert choose_stripe_rows(10 ** 6, 0, cpu, TAIL_BYTES_PER_PIXEL) == 32
    assert choose_stripe_rows(3904, 8, cpu, TAIL_BYTES_PER_PIXEL) == 8
    assert choose_stripe_rows(3904, WHOLE, cpu, TAIL_BYTES_PER_PIXEL) == WHOLE


@pytest.mark.slow
def test_inference_benchmark_runs_both_forms_at_a_tiny_size():
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-m", "networks.benchmark", "--sizes", "256x192", "--gemm-size", "512"],
                            cwd=root,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines()
             if line.split()[:2] == ["gca-dist", "256x192"] and " vs " not in line]
    rows = [line.split() for line in lines]
    assert [row[2] for row in rows] == ["blocked", "literal"]
    for row in rows:
        seconds, process_seconds, peak_gib, unknown, floor, over_floor = (float(v) for v in row[3:9])
        assert 0 < seconds < process_seconds and peak_gib > 0 and 0.25 < unknown < 0.35
        # at this size the network's other layers outweigh the attention's products many times
        assert floor > 0 and over_floor == pytest.approx(seconds / floor, rel=0.5) and over_floor > 1
    comparison = next(line for line in result.stdout.splitlines() if "blocked vs literal" in line)
    assert "of the memory" in comparison and "alpha" in comparison
    assert "floor s: the GCA attention's matrix products" in result.stdout and "512^2 matmul" in result.stdout


@pytest.mark.slow
def test_inference_benchmark_exits_1_when_its_runs_fail(tmp_path):
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    page = tmp_path / "gca-dist.pth"
    page.write_text("<!DOCTYPE html><html><title>Google Drive</title></html>")
    result = subprocess.run([sys.executable, "-m", "networks.benchmark", "--sizes", "64x64", "--forms", "blocked",
                             "--checkpoint", str(page)], cwd=root, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    assert "failed:" in result.stdout and "not a PyTorch checkpoint" in result.stdout
    assert "1 of 1 runs failed" in result.stderr


def test_inference_benchmark_refuses_a_bad_size():
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-m", "networks.benchmark", "--sizes", "1920by1080"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "WIDTHxHEIGHT" in result.stderr


def test_freed_memory_is_kept_for_reuse_on_glibc():
    import platform
    import subprocess
    import sys
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("the setting is glibc's")
    code = "from utils.allocator import reuse_freed_memory; print(reuse_freed_memory())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "True", result.stderr


def test_the_inference_memory_estimate_covers_the_measured_peaks():
    from networks.gca_matting.generator import set_gca_block
    from networks.gca_matting.generator import WHOLE
    model = build_generator("resnet_gca_encoder_29", "res_gca_decoder_22")
    # Peaks above the process before the image, the larger of README's two measurements ("Out of
    # memory", and the table of "Any image size in bounded memory" less 0.42 GiB): (width, height, GiB)
    for width, height, measured in ((800, 600, 0.43), (1920, 1080, 1.37), (2560, 1440, 1.40), (3840, 2160, 2.42),
                                    (5120, 2880, 4.90)):
        estimate = model.inference_peak_bytes(height, width) / 2 ** 30
        assert measured <= estimate <= 1.15 * max(measured, 1.5), (width, height)
    baseline = build_generator("res_shortcut_encoder_29", "res_shortcut_decoder_22")
    assert baseline.inference_peak_bytes(2880, 5120) < model.inference_peak_bytes(2880, 5120)
    set_gca_block(model, -1)
    assert model.inference_peak_bytes(600, 800) is None
    set_gca_block(model, 0)
    model.stripe_rows = WHOLE
    assert model.inference_peak_bytes(600, 800) is None
