"""AEMatter's family: the released layout ({'model': state dict} under the published module names,
tests/fixtures/aematter_keys.json transcribed from the published model's module tree) loads
unchanged; the recipe of its eval.py (BORDER_REFLECT padding split over both sides, one-hot from the
exact greys, RGB / 255, forcing, truncation) and the 8 passes of its eval_tta.py, written here
independently with OpenCV from their description, against this project's tools; the bounded form
against the whole one; every entry point on a random-weight network."""
import os
import re

import cv2
import numpy as np
import pytest
import torch

import demo
from conftest import arch_spec, disc_photo_and_trimap, key_list
from matting import Matter
from networks.aematter import family as aematter
from networks.aematter import network as aematter_network
from networks.aematter.network import AEMatter, StripAttention
from networks.aematter.swin import WHOLE, region_labels, relative_position_index, shifted_window_mask
from networks.families import build_network, family_spec, load_network
from utils.checkpoint import CheckpointError
from utils.inference.predict import predict_alpha, predict_float
from utils.recipe import Padding

CONFIG = "config/aematter.toml"
SPEC = family_spec("aematter")
CPU = torch.device("cpu")
RECIPE = aematter.aematter_recipe()
SAVE_FOLDER = "aematter_AEMFIX.ckpt"


def randomise(network: AEMatter, seed: int = 0) -> AEMatter:
    """Random weights with an alpha that varies: norm scales near 1, biases and gates away from
    0, and the output conv scaled so that the alpha before clamping has mean 0.5, std 0.25 on a
    photo_and_trimap pair."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in network.named_parameters():
            if name.endswith("gamma"):
                parameter.copy_(torch.rand(parameter.shape, generator=generator) + 0.5)
            elif parameter.dim() == 1 and ("norm" in name or ".gn" in name) and name.endswith("weight"):
                parameter.copy_(torch.rand(parameter.shape, generator=generator) * 0.4 + 0.8)
            elif name.endswith("bias"):
                parameter.copy_((torch.rand(parameter.shape, generator=generator) - 0.5) * 0.2)
            elif "relative_position_bias_table" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
        network.eval()
        photo, grey = photo_and_trimap(64, 64, seed)
        image, trimap = RECIPE.inputs(torch.from_numpy(photo[:, :, ::-1].copy()), torch.from_numpy(grey))
        outputs = []
        hook = network.convo[4].register_forward_hook(lambda module, inputs, output: outputs.append(output))
        network(image, trimap)
        hook.remove()
        scale = 0.25 / float(outputs[0].std())
        network.convo[4].weight.mul_(scale)
        network.convo[4].bias.mul_(scale).add_(0.5 - scale * float(outputs[0].mean()))
    return network


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return randomise(AEMatter())


@pytest.fixture(scope="module")
def checkpoint(network, tmp_path_factory):
    """The random network saved as AEMatter releases its files."""
    path = tmp_path_factory.mktemp("aematter") / "AEMFIX.ckpt"
    torch.save({"model": network.state_dict()}, path)
    return str(path)


def photo_and_trimap(height: int, width: int, seed: int = 0):
    """A smooth random BGR photo; a trimap with a foreground disc, an unknown ring, background, and
    patches of greys (77, 200) that are no class of AEMatter's (forced to 0)."""
    image, trimap = disc_photo_and_trimap(height, width, seed)
    trimap[: height // 8, : width // 3] = 77
    trimap[-(height // 8):, -(width // 3):] = 200
    return image, trimap


def evaluated_alpha(network: AEMatter, image_bgr: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """One image as AEMatter's eval.py treats it, written here from its description: OpenCV's
    BORDER_REFLECT to a multiple of 32, the smaller half at the top/left; the one-hot of the exact
    greys 0 / 128 / 255; RGB / 255; the network; cropped; x 255 where the trimap is 128, 255 where it
    is 255, 0 elsewhere; truncated to uint8."""
    height, width = trimap.shape
    rows, columns = -height % 32, -width % 32
    border = (rows // 2, rows - rows // 2, columns // 2, columns - columns // 2)
    image = cv2.copyMakeBorder(image_bgr, *border, cv2.BORDER_REFLECT)
    padded = cv2.copyMakeBorder(trimap, *border, cv2.BORDER_REFLECT)
    one_hot = np.stack([padded == 0, padded == 128, padded == 255]).astype(np.float32)
    rgb = image[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) / 255.
    network.stripe_rows = WHOLE
    try:
        with torch.no_grad():
            alpha, _ = network(torch.from_numpy(rgb.copy())[None], torch.from_numpy(one_hot)[None])
    finally:
        network.stripe_rows = aematter_network.AUTO
    alpha = alpha[0, 0].numpy()[border[0]:border[0] + height, border[2]:border[2] + width]
    return (alpha * 255 * (trimap == 128) + (trimap == 255) * 255).astype(np.uint8)


def eight_pass_alpha(network: AEMatter, image_bgr: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """AEMatter's eval_tta.py, written here from its description: no rotation and cv2's three
    rotations, each with and without a left-right flip after it; each pass evaluated_alpha (so
    truncated to uint8), flipped and rotated back; the sum of the 8 over 8, truncated."""
    total = np.zeros(trimap.shape, np.float64)
    undo = {cv2.ROTATE_90_COUNTERCLOCKWISE: cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_180: cv2.ROTATE_180,
            cv2.ROTATE_90_CLOCKWISE: cv2.ROTATE_90_COUNTERCLOCKWISE}
    for rotation in (None, cv2.ROTATE_90_COUNTERCLOCKWISE, cv2.ROTATE_180, cv2.ROTATE_90_CLOCKWISE):
        for flip in (False, True):
            image, guide = image_bgr, trimap
            if rotation is not None:
                image, guide = cv2.rotate(image, rotation), cv2.rotate(guide, rotation)
            if flip:
                image, guide = cv2.flip(image, 1), cv2.flip(guide, 1)
            alpha = evaluated_alpha(network, np.ascontiguousarray(image), np.ascontiguousarray(guide))
            if flip:
                alpha = cv2.flip(alpha, 1)
            if rotation is not None:
                alpha = cv2.rotate(alpha, undo[rotation])
            total += alpha
    return (total / 8).astype(np.uint8)


@pytest.mark.slow
def test_the_network_has_the_published_module_tree(network):
    ours = [[key, list(value.shape), str(value.dtype).replace("torch.", "")]
            for key, value in network.state_dict().items()]
    published = key_list("aematter")
    assert len(published) == 534
    assert sorted(map(str, ours)) == sorted(map(str, published))


def test_relative_positions_and_shifted_regions_on_hand_made_cases():
    index = relative_position_index(7)
    # query (0, 0) and key (0, 0): offset (0, 0), the middle of the 13 x 13 table
    assert index[0, 0] == 6 * 13 + 6 and index[0, 48] == 0 and index[48, 0] == 168
    assert torch.equal(region_labels(9, 3, 1), torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 2]))
    mask = shifted_window_mask((6, 6), 3, 1, slice(0, 2))
    assert mask.shape == (4, 9, 9)
    assert (mask[0] == 0).all()  # the top-left window holds no wrapped token
    # the bottom-right window: rows and columns 3, 4 (region 1) and 5 (region 2, wrapped)
    labels = torch.tensor([[4, 4, 5], [4, 4, 5], [7, 7, 8]]).flatten()
    assert torch.equal(mask[3], torch.where(labels[:, None] != labels[None, :], -100.0, 0.0))


def test_padding_is_opencvs_border_reflect_split_over_both_sides():
    array = np.arange(5 * 7, dtype=np.uint8).reshape(5, 7)
    padding = RECIPE.padding
    assert padding == Padding(multiple=32, centred=True, edge="symmetric")
    assert padding.sides(5) == (13, 14) and padding.sides(7) == (12, 13)  # the odd pixel at the bottom/right
    expected = cv2.copyMakeBorder(array, 13, 14, 12, 13, cv2.BORDER_REFLECT)
    assert np.array_equal(padding.pad(torch.from_numpy(array)).numpy(), expected)
    assert np.array_equal(padding.crop(torch.from_numpy(expected), 5, 7).numpy(), array)


def test_one_hot_forcing_and_truncation_on_hand_made_arrays():
    trimap = torch.tensor([[0, 1, 77, 127], [128, 129, 200, 255]], dtype=torch.uint8)
    one_hot = RECIPE.trimap(trimap)
    assert one_hot[:, 0, 0].tolist() == [1, 0, 0] and one_hot[:, 1, 0].tolist() == [0, 1, 0]
    assert one_hot[:, 1, 3].tolist() == [0, 0, 1]
    assert one_hot[:, 0, 1:].sum() == 0 and one_hot[:, 1, 1:3].sum() == 0  # 1, 77, 127, 129, 200: no class
    network_alpha = torch.full((1, 1, 32, 32), 0.6)  # padded to a multiple of 32
    finished = RECIPE.finish(network_alpha, trimap)
    assert finished.tolist() == [[0, 0, 0, 0], [pytest.approx(0.6), 0, 0, 1]]
    assert RECIPE.to_uint8(torch.tensor([0.9999, 0.5, 1.0])).tolist() == [254, 127, 255]  # truncated, not rounded
    assert RECIPE.image(torch.full((1, 1, 3), 255, dtype=torch.uint8)).flatten().tolist() == [1, 1, 1]


@pytest.mark.slow
def test_a_released_file_loads_unchanged(network, checkpoint):
    loaded = load_network(SPEC, checkpoint)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), network.state_dict().values()))


@pytest.mark.slow
def test_the_whole_form_equals_the_bounded_form(network):
    photo, grey = photo_and_trimap(128, 64, seed=2)
    image, trimap = RECIPE.inputs(torch.from_numpy(photo[:, :, ::-1].copy()), torch.from_numpy(grey))
    # 128 rows: 5 window rows at 1/4, 4 stripes of 32 rows, 11 of 12
    settings = {"whole": (WHOLE, WHOLE), "bands": (10 ** 6, 1), "stripes": (32, 10 ** 6), "both": (12, 1)}
    alphas = {}
    with torch.no_grad():
        for name, (stripes, window_rows) in settings.items():
            network.stripe_rows, network.window_rows = stripes, window_rows
            alphas[name] = network(image, trimap)[0]
    network.stripe_rows = network.window_rows = aematter_network.AUTO
    # Swin blocks a band of window rows at a time: the same windows through the same layers, but
    # each matrix product runs over the band's windows, not all of them, and the math library may
    # pick another kernel for the other size and sum the products in another order (on an Intel
    # CPU with AVX-512 the bands differed from the whole by up to 5.4e-7; on the developers' AMD
    # CPU not at all). Each form is an fp32 rounding of the same exact alpha (both lie within
    # 1.7e-6 of a float64 run of this network on this input), so they agree within twice that;
    # 1e-5 leaves a margin and is far below what a mistake moves alpha by (every band given the
    # first band's region mask: 2.9e-2).
    # stripes: besides, torch's bilinear upsampling rounds differently with the height of its input
    for name in ("bands", "stripes", "both"):
        assert torch.allclose(alphas[name], alphas["whole"], atol=1e-5, rtol=0), name
    assert float(alphas["whole"].std()) > 0.05


def test_strip_attention_in_chunks_equals_it_whole(monkeypatch):
    torch.manual_seed(0)
    attention = StripAttention(64, 4).eval()
    tokens = torch.randn(6, 35, 64)
    with torch.no_grad():
        whole = attention(tokens)
        monkeypatch.setattr(aematter_network, "STRIP_SCORE_BYTES", 4 * 4 * 35 * 35 * 2)  # 2 strips at a time
        chunked = attention(tokens)
    assert torch.equal(chunked, whole)


def test_strip_attention_is_torchs_multihead_attention_in_eval():
    torch.manual_seed(0)
    reference = torch.nn.MultiheadAttention(64, 4, batch_first=True).eval()
    with torch.no_grad():
        reference.in_proj_bias.uniform_(-0.5, 0.5)
    attention = StripAttention(64, 4)
    attention.load_state_dict(reference.state_dict())
    tokens = torch.randn(3, 25, 64)
    with torch.no_grad():
        expected = reference(tokens, tokens, tokens, need_weights=False)[0]
        assert torch.allclose(attention(tokens), expected, atol=1e-5)


@pytest.mark.slow
def test_matter_gives_eval_pys_alpha(network, checkpoint):
    image, trimap = photo_and_trimap(45, 70)
    matter = Matter(CONFIG, checkpoint, device="cpu")
    alpha = matter(np.ascontiguousarray(image[:, :, ::-1]), trimap)
    expected = evaluated_alpha(network, image, trimap)
    assert np.array_equal(alpha, expected)
    assert len(np.unique(expected[trimap == 128])) > 20  # the network's alpha, not only the forced regions
    assert (alpha[(trimap != 128) & (trimap != 255)] == 0).all()


@pytest.mark.slow
def test_d8_uint8_is_eval_tta_pys_eight_passes(network):
    image, trimap = photo_and_trimap(37, 50, seed=1)
    alpha, _ = predict_alpha(network, RECIPE, image, trimap, CPU, tta="d8-uint8")
    assert np.array_equal(alpha, eight_pass_alpha(network, image, trimap))
    single, _ = predict_float(network, RECIPE, image, trimap, CPU)
    assert not np.array_equal(alpha, (single * 255).astype(np.uint8))


def write_folders(folder, size=(45, 70)):
    """images/, trimaps/, masks/ and alpha/ (Composition-1K layout) of one picture."""
    image, trimap = photo_and_trimap(*size)
    mask = np.where(trimap == 255, 255, 0).astype(np.uint8)
    alpha = np.where(trimap == 128, 90, np.where(trimap == 255, 255, 0)).astype(np.uint8)
    for name, picture in (("images", image), ("trimaps", trimap), ("masks", mask), ("alpha", alpha)):
        (folder / name).mkdir()
        assert cv2.imwrite(str(folder / name / "p0.png"), picture)
    return [str(folder / name) for name in ("images", "trimaps", "masks", "alpha")]


@pytest.mark.slow
def test_demo_folders_cutouts_and_masks(network, checkpoint, tmp_path):
    images, trimaps, masks, _ = write_folders(tmp_path)
    out = str(tmp_path / "out")
    base = ["--config", CONFIG, "--checkpoint", checkpoint, "--image-dir", images, "--device", "cpu"]
    assert demo.main(base + ["--trimap-dir", trimaps, "--output", out, "--cutout"]) == 0
    save_dir = os.path.join(out, SAVE_FOLDER)
    assert sorted(os.listdir(save_dir)) == ["p0.png", "p0_fg.png", "p0_rgba.png"]  # no GCA, no offset pictures
    image, trimap = cv2.imread(os.path.join(images, "p0.png")), cv2.imread(os.path.join(trimaps, "p0.png"), 0)
    written = cv2.imread(os.path.join(save_dir, "p0.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(written, evaluated_alpha(network, image, trimap))
    assert np.array_equal(cv2.imread(os.path.join(save_dir, "p0_rgba.png"), cv2.IMREAD_UNCHANGED)[:, :, 3], written)
    mask_out = str(tmp_path / "masked")
    assert demo.main(base + ["--mask-dir", masks, "--unknown-width", "4", "--output", mask_out, "--tta",
                             "d8-uint8"]) == 0
    mask_dir = os.path.join(mask_out, SAVE_FOLDER)
    made = cv2.imread(os.path.join(mask_dir, "p0_trimap.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(cv2.imread(os.path.join(mask_dir, "p0.png"), cv2.IMREAD_UNCHANGED),
                          predict_alpha(network, RECIPE, image, made, CPU, tta="d8-uint8")[0])


@pytest.mark.slow
def test_the_page_and_the_test_phase_with_both_protocols(network, checkpoint, tmp_path, capsys):
    import app
    import main
    images, trimaps, _, alphas = write_folders(tmp_path)
    image, trimap = cv2.imread(os.path.join(images, "p0.png")), cv2.imread(os.path.join(trimaps, "p0.png"), 0)
    expected = evaluated_alpha(network, image, trimap)
    matter = Matter(CONFIG, checkpoint, device="cpu")
    page = app.matte(matter, app.Inputs(os.path.join(images, "p0.png"), trimap=os.path.join(trimaps, "p0.png")), 4096)
    assert np.array_equal(page.alpha, expected) and page.offsets == [None, None]
    text = re.sub(r'checkpoint = ".*"', f'checkpoint = "{checkpoint}"', open(CONFIG).read())
    for published, ours in (("merged", images), ("alpha_copy", alphas), ("trimaps", trimaps)):
        text = text.replace(f"data/Composition-1k-testset/{published}", ours)
    for protocol in ("comp1k", "aim500"):
        config = tmp_path / f"{protocol}.toml"
        config.write_text(text.replace('alpha_path = "prediction"', f'alpha_path = "{tmp_path}/{protocol}"\n'
                                       f'protocol = "{protocol}"') + f'\n[log]\nlogging_path = "{tmp_path}/logs"\n')
        capsys.readouterr()
        assert main.main(["--config", str(config), "--phase", "test"]) == 0
        predicted = cv2.imread(str(tmp_path / protocol / "aematter" / "p0.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(predicted, expected), protocol
        assert "aematter on 1 images" in capsys.readouterr().out


def test_exporting_gives_a_message_and_training_needs_the_backbones_imagenet_file(network, tmp_path, capsys):
    pytest.importorskip("onnx")
    from networks.export import ExportError, export_onnx
    with pytest.raises(ExportError, match="its ONNX export is not supported: torch.export of a graph for any image"):
        export_onnx(network, SPEC)
    import main
    config = tmp_path / "train.toml"
    config.write_text(open(CONFIG).read() + f'\n[log]\nlogging_path = "{tmp_path}/logs"\n')
    assert main.main(["--config", str(config)]) == 2
    # It trains (tests/test_aematter_training.py) from Swin-T's ImageNet file, which is not there.
    assert "Swin-T ImageNet weights not found: model.imagenet_pretrain_path is not set" in capsys.readouterr().out


@pytest.mark.slow
def test_files_of_other_layouts_are_named(network, checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match=r"an AEMatter checkpoint \(model.family = \"aematter\"\): "
                                              r"use config/aematter.toml"):
        Matter("config/gca-dist.toml", checkpoint, device="cpu")
    gca = tmp_path / "gca.pth"
    torch.save({"state_dict": build_network(arch_spec("gca-matting", ("resnet_gca_encoder_29", "res_gca_decoder_22"),
                                                      3)).state_dict()}, gca)
    with pytest.raises(CheckpointError, match=r"not an AEMatter checkpoint.*GCA-Matting GCA checkpoint"):
        Matter(CONFIG, str(gca), device="cpu")
    pt20 = tmp_path / "pt20.ckpt"
    torch.save({"model": {k: v for k, v in network.state_dict().items() if not k.endswith("gamma")}}, pt20)
    with pytest.raises(CheckpointError, match=r"missing.*trans1.gamma.*PT20 branch"):
        Matter(CONFIG, str(pt20), device="cpu")


def test_a_one_channel_trimap_setting_is_refused(tmp_path):
    config = tmp_path / "one.toml"
    config.write_text(open(CONFIG).read().replace("trimap_channel = 3", "trimap_channel = 1"))
    with pytest.raises(Exception, match="model.trimap_channel must be 3 for AEMatter"):
        Matter(str(config), "unused.ckpt", device="cpu")
