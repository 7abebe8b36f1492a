"""ViTMatte's two families: the original layout (made here from a transcription of the published
module tree, tests/vitmatte_transcription.py) and transformers' hub folder (made by transformers'
own VitMatteForImageMatting and its image processor) map key for key, S and B; files of the wrong
size or of another model are named; the original recipe gives the transcription's alpha (its
padding quirk included) and the -hf recipe transformers', both with random weights that make the
alpha vary; the blocked attention and the stripes equal the whole form; every entry point runs
the configs.

Every network that runs here is the small vit_toy (32 wide, 2 heads, blocks 0 and 1 in windows,
block 2 global with the residual convolutions: each kind of block of ViTMatte-S and -B, the same
decoder); S and B are built on the meta device, for their keys and shapes only."""
import json
import os
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

import demo
import vitmatte_transcription as published
from conftest import disc_photo_and_trimap as photo_and_trimap
from matting import Matter
from networks.families import build_network, family_spec, load_network, load_weights
from networks.vitmatte import family as vitmatte
from networks.vitmatte.layout import from_hub_key, hub_key
from networks.vitmatte.network import SIZES, WHOLE, ViTMatte, exportable
from networks.vitmatte.recipe import ORIGINAL, TRANSFORMERS, padding_sides
from utils.checkpoint import CheckpointError
from utils.config import ConfigError
from utils.inference.predict import predict_alpha

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG, HF_CONFIG = "config/vitmatte-s.toml", "config/vitmatte-s-hf.toml"
TOY = "vit_toy"
CPU = torch.device("cpu")
SPEC = family_spec("vitmatte", {"model.arch.encoder": TOY})
HF_SPEC = family_spec("vitmatte-hf", {"model.arch.encoder": TOY})
# An odd size, one with a side already a multiple of 32 (the original pads it by 32 more), one with
# both, and one whose grid (16 x 4 patches) takes two attention windows.
SIZES_TESTED = [(45, 70), (64, 70), (64, 96), (230, 60)]
SIZE_IDS = ["odd", "one-side-a-multiple-of-32", "both-multiples", "several-windows"]
# The share of pixels within 1/255 of the reference that the acceptance asks for.
WITHIN_ONE_LEVEL = 0.999
HEAD_LOGIT_STD = 2.5
TRANSFORMERS_HINT = "pip install -r requirements-vitmatte-test.txt"


def randomise(model: torch.nn.Module, seed: int, head: torch.nn.Conv2d, run) -> None:
    """Every tensor of `model` drawn anew (weights ~ N(0, 1 / fan-in), norm scales near 1, biases,
    position tables and BatchNorm statistics away from their initial values), then the head's last
    conv scaled so that the logit before the sigmoid has mean 0 and std HEAD_LOGIT_STD on a test
    photo: `run()` runs the model once. The alpha then varies over most of 0..1."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if name in ("pixel_mean", "pixel_std"):  # the transcription's normalisation
                continue
            if "rel_pos" in name or "pos_embed" in name or "position_embeddings" in name:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.5)
            elif name.endswith("num_batches_tracked"):
                tensor.zero_()
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif name.endswith("running_mean") or (tensor.dim() == 1 and name.endswith("bias")):
                tensor.copy_((torch.rand(tensor.shape, generator=generator) - 0.5) * 0.2)
            elif tensor.dim() == 1:
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.6 + 0.7)
            elif tensor.dim() > 1:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / fan_in ** 0.5)
        model.eval()
        logits = []
        hook = head.register_forward_hook(lambda module, inputs, output: logits.append(output))
        run()
        hook.remove()
        scale = HEAD_LOGIT_STD / float(logits[0].std())
        head.weight.mul_(scale)
        head.bias.mul_(scale).sub_(scale * float(logits[0].mean()))


def within_one_level(alpha_uint8: np.ndarray, reference: np.ndarray) -> float:
    """The share of pixels where alpha / 255 is within 1/255 of the reference (float on 0..1)."""
    return float((np.abs(alpha_uint8.astype(np.float64) / 255 - reference) <= 1 / 255 + 1e-9).mean())


def exercised(alpha: np.ndarray) -> bool:
    """An alpha that is neither near-constant nor saturated."""
    alpha = alpha.astype(np.float64) / (255 if alpha.dtype == np.uint8 else 1)
    return alpha.std() > 0.1 and ((alpha > 0.02) & (alpha < 0.98)).mean() > 0.5


def stride_zero_state(state: dict) -> dict:
    """A state dict's keys and shapes as views of one zero each: files of the released sizes that
    take a few kilobytes."""
    return {key: torch.zeros((1,) * value.dim(), dtype=value.dtype).expand(value.shape) for key, value in state.items()}


def meta_network(spec) -> ViTMatte:
    with torch.device("meta"):
        return build_network(spec)


# ---- the original layout, from the transcription ----
def transcribed(seed: int = 0) -> published.ViTMatte:
    torch.manual_seed(seed)
    size = SIZES[TOY]
    model = published.vitmatte(size.width, size.heads, size.depth)
    image, trimap = photo_and_trimap(64, 96, seed)
    randomise(model, seed, model.decoder.matting_head.matting_convs[3], lambda: published.infer(model, image, trimap))
    return model


@pytest.fixture(scope="module")
def original():
    return transcribed()


@pytest.fixture(scope="module")
def original_file(original, tmp_path_factory):
    """The random model saved as detectron2's checkpointer saves the released files."""
    path = tmp_path_factory.mktemp("vitmatte") / "ViTMatte_S_Com.pth"
    torch.save({"model": original.state_dict(), "iteration": 134687}, path)
    return str(path)


@pytest.fixture(scope="module")
def toy_configs(tmp_path_factory):
    """config/vitmatte-s.toml and -s-hf.toml with the toy backbone, under their own names."""
    folder = tmp_path_factory.mktemp("configs")
    paths = []
    for config in (CONFIG, HF_CONFIG):
        text = open(os.path.join(ROOT, config)).read()
        assert 'encoder = "vit_s"' in text
        path = folder / os.path.basename(config)
        path.write_text(text.replace('encoder = "vit_s"', f'encoder = "{TOY}"'))
        paths.append(str(path))
    return paths


# ---- transformers' hub folder, from transformers itself ----
def hub_config(width: int, heads: int, depth: int = 12):
    """convert_vitmatte_to_hf.py's config of ViTMatte-S or -B (depth 12), or of a smaller ViT of
    the same pattern."""
    transformers = pytest.importorskip("transformers", reason=TRANSFORMERS_HINT)
    backbone = transformers.VitDetConfig(
        num_channels=4, image_size=512, pretrain_image_size=224, patch_size=16, hidden_size=width,
        num_attention_heads=heads, num_hidden_layers=depth, use_absolute_position_embeddings=True,
        use_relative_position_embeddings=True, window_size=14,
        window_block_indices=[i for i in range(depth) if i % 3 != 2],
        residual_block_indices=[i for i in range(depth) if i % 3 == 2], out_features=[f"stage{depth}"])
    return transformers.VitMatteConfig(backbone_config=backbone, hidden_size=width,
                                       convstream_hidden_sizes=[48, 96, 192], fusion_hidden_sizes=[256, 128, 64, 32])


def processor(**settings):
    transformers = pytest.importorskip("transformers", reason=TRANSFORMERS_HINT)
    return transformers.VitMatteImageProcessorPil(**settings)


def transformers_alpha(model, image_rgb: np.ndarray, trimap: np.ndarray, **settings) -> np.ndarray:
    """transformers' documented use: the processor on the image and trimap, the model, the alpha
    cropped to the image."""
    inputs = processor(**settings)(images=image_rgb, trimaps=trimap, return_tensors="pt")
    with torch.no_grad():
        alphas = model(**inputs).alphas
    return alphas[0, 0, :trimap.shape[0], :trimap.shape[1]].numpy()


@pytest.fixture(scope="module")
def hf_model():
    transformers = pytest.importorskip("transformers", reason=TRANSFORMERS_HINT)
    size = SIZES[TOY]
    torch.manual_seed(1)
    model = transformers.VitMatteForImageMatting(hub_config(size.width, size.heads, size.depth))
    image, trimap = photo_and_trimap(64, 96, 1)
    randomise(model, 1, model.decoder.matting_head.matting_convs[3], lambda: transformers_alpha(model, image, trimap))
    return model


@pytest.fixture(scope="module")
def hub_folder(hf_model, tmp_path_factory):
    """The random model as transformers saves a hub folder: config.json, model.safetensors,
    preprocessor_config.json."""
    folder = tmp_path_factory.mktemp("hub") / "vitmatte-small-composition-1k"
    hf_model.save_pretrained(folder)
    processor().save_pretrained(folder)
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    return str(folder)


@pytest.fixture(scope="module")
def matter(toy_configs, original_file):
    return Matter(toy_configs[0], original_file, device="cpu")


@pytest.fixture(scope="module")
def hf_matter(toy_configs, hub_folder):
    return Matter(toy_configs[1], hub_folder, device="cpu")


def write_folders(folder, sizes, seed: int = 0):
    """images/ and trimaps/ of one picture per size, p0.png, p1.png, ...; the (RGB, trimap) pairs."""
    pairs = [photo_and_trimap(*size, seed + index) for index, size in enumerate(sizes)]
    for name in ("images", "trimaps"):
        (folder / name).mkdir()
    for index, (image, trimap) in enumerate(pairs):
        assert cv2.imwrite(str(folder / "images" / f"p{index}.png"), image[:, :, ::-1])
        assert cv2.imwrite(str(folder / "trimaps" / f"p{index}.png"), trimap)
    return str(folder / "images"), str(folder / "trimaps"), pairs


def demo_alphas(config: str, checkpoint: str, images: str, trimaps: str, out: str, count: int, extra=()):
    assert demo.main(["--config", config, "--checkpoint", checkpoint, "--image-dir", images, "--trimap-dir", trimaps,
                      "--output", out, "--device", "cpu", *extra]) == 0
    version = os.path.splitext(os.path.basename(config))[0]
    folder = os.path.join(out, f"{version}_{os.path.basename(os.path.normpath(checkpoint))}")
    return [cv2.imread(os.path.join(folder, f"p{index}.png"), cv2.IMREAD_UNCHANGED) for index in range(count)]


# ---- the layouts ----
@pytest.mark.parametrize("encoder", ["vit_s", "vit_b"])
def test_the_original_layout_maps_key_for_key(encoder):
    size = SIZES[encoder]
    with torch.device("meta"):
        ours = ViTMatte(size, padding=ORIGINAL).state_dict()
        theirs = published.vitmatte(size.width, size.heads).state_dict()
    assert [key for key in ours if key not in ("pixel_mean", "pixel_std")] == list(theirs)
    assert all(ours[key].shape == value.shape for key, value in theirs.items())
    assert len(theirs) == 258


@pytest.mark.parametrize("encoder", ["vit_s", "vit_b"])
def test_the_hub_layout_maps_key_for_key(encoder):
    transformers = pytest.importorskip("transformers", reason=TRANSFORMERS_HINT)
    size = SIZES[encoder]
    with torch.device("meta"):
        ours = ViTMatte(size, padding=TRANSFORMERS).state_dict()
        theirs = transformers.VitMatteForImageMatting(hub_config(size.width, size.heads)).state_dict()
    ours = {key: value for key, value in ours.items() if key not in ("pixel_mean", "pixel_std")}
    assert sorted(hub_key(key) for key in ours) == sorted(theirs)
    assert all(theirs[hub_key(key)].shape == value.shape for key, value in ours.items())
    assert all(from_hub_key(hub_key(key)) == key for key in ours)


def test_each_layout_loads_with_each_config(original, original_file, hf_model, hub_folder, tmp_path):
    bare = tmp_path / "bare.pth"
    torch.save(original.state_dict(), bare)
    weights = original.state_dict()
    for spec in (SPEC, HF_SPEC):
        for path in (original_file, str(bare)):
            loaded = load_network(spec, path).state_dict()
            assert all(torch.equal(loaded[key], value) for key, value in weights.items())
    hub_weights = hf_model.state_dict()
    for path in (hub_folder, hub_folder + os.sep, os.path.join(hub_folder, "model.safetensors")):
        loaded = load_network(HF_SPEC, path).state_dict()
        assert all(torch.equal(loaded[key], hub_weights[hub_key(key)]) for key in weights)
    bin_folder = tmp_path / "bin"  # the older hub folders' pytorch_model.bin
    bin_folder.mkdir()
    torch.save(hub_weights, bin_folder / "pytorch_model.bin")
    shutil.copy(os.path.join(hub_folder, "config.json"), bin_folder)
    loaded = load_network(SPEC, str(bin_folder)).state_dict()
    assert all(torch.equal(loaded[key], hub_weights[hub_key(key)]) for key in weights)


def test_the_recipe_not_the_file_sets_the_normalisation(original_file, hub_folder, tmp_path):
    imagenet = torch.tensor([123.675, 116.28, 103.53]) / 255
    for path in (original_file, hub_folder):
        assert torch.equal(load_network(SPEC, path).pixel_mean.flatten(), imagenet)
        assert load_network(HF_SPEC, path).pixel_mean.flatten().tolist() == [0.5] * 3
    changed = tmp_path / "changed"
    shutil.copytree(hub_folder, changed)
    settings = json.loads((changed / "preprocessor_config.json").read_text())
    settings.update(image_mean=[0.3, 0.4, 0.6], image_std=0.25)
    (changed / "preprocessor_config.json").write_text(json.dumps(settings))
    network = load_network(HF_SPEC, str(changed))
    assert network.pixel_mean.flatten().tolist() == pytest.approx([0.3, 0.4, 0.6])
    assert network.pixel_std.flatten().tolist() == [0.25] * 3
    assert torch.equal(load_network(SPEC, str(changed)).pixel_mean.flatten(), imagenet)


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def released_size_files(folder) -> dict:
    """ViTMatte-S in the original layout and as a hub folder, at their real shapes (stride-0 views)."""
    state = stride_zero_state({key: value for key, value in meta_network(family_spec("vitmatte")).state_dict().items()
                               if key not in ("pixel_mean", "pixel_std")})
    original_path = folder / "ViTMatte_S_Com.pth"
    torch.save({"model": state}, original_path)
    hub = folder / "vitmatte-small-composition-1k"
    hub.mkdir()
    torch.save({hub_key(key): value for key, value in state.items()}, hub / "pytorch_model.bin")
    (hub / "config.json").write_text(hub_config(384, 6).to_json_string())
    return {"original": str(original_path), "hub": str(hub)}


def test_a_file_of_the_other_size_is_named_with_its_config(original_file, hub_folder, tmp_path):
    files = released_size_files(tmp_path)
    for family, path, hint in (("vitmatte", files["original"], "ViTMatte-S checkpoint in the original layout: use "
                                                                 "config/vitmatte-s.toml"),
                               ("vitmatte-hf", files["hub"], "ViTMatte-S checkpoint in transformers' layout: use "
                                                             "config/vitmatte-s-hf.toml")):
        spec = family_spec(family, {"model.arch.encoder": "vit_b"})
        with pytest.raises(CheckpointError) as error:
            load_weights(meta_network(spec), spec, path)
        assert "tensor shapes differ" in one_line(error) and hint in one_line(error)
    with pytest.raises(CheckpointError) as error:
        Matter(CONFIG, hub_folder, device="cpu")
    assert ('a vit_toy ViTMatte checkpoint in transformers\' layout: use config/vitmatte-s-hf.toml with '
            'model.arch.encoder = "vit_toy"') in one_line(error)
    gca = family_spec("gca-matting", {"model.arch.encoder": "resnet_gca_encoder_29",
                                      "model.arch.decoder": "res_gca_decoder_22"})
    with pytest.raises(CheckpointError) as error:
        load_weights(build_network(gca), gca, files["original"])
    assert "use config/vitmatte-s.toml" in one_line(error)


def test_a_hub_folder_of_another_model_is_refused_in_one_line(toy_configs, hub_folder, tmp_path):
    other = tmp_path / "bert"
    shutil.copytree(hub_folder, other)
    (other / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(CheckpointError) as error:
        Matter(toy_configs[1], str(other), device="cpu")
    assert re.search(r"bert is a transformers hub folder of model_type 'bert' \(BertModel\), not a ViTMatte",
                     one_line(error))
    config = json.loads(open(os.path.join(hub_folder, "config.json")).read())
    config["backbone_config"]["out_indices"] = [1]
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"backbone_config.out_indices = \[1\], where ViTMatte \(3 blocks\) has "
                                              r"\[3\]"):
        Matter(toy_configs[1], str(other), device="cpu")
    config["backbone_config"].update(out_indices=[3], window_block_indices=[0])
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError,
                       match=r"window_block_indices = \[0\], where ViTMatte \(3 blocks\) has \[0, 1\]"):
        Matter(toy_configs[1], str(other), device="cpu")
    (other / "config.json").write_text(open(os.path.join(hub_folder, "config.json")).read())
    (other / "preprocessor_config.json").write_text(json.dumps({"do_pad": False}))
    with pytest.raises(CheckpointError, match="pads to 32 \\(do_pad False\\)"):
        Matter(toy_configs[1], str(other), device="cpu")


def test_other_files_and_settings_are_refused(toy_configs, tmp_path):
    gca_spec = family_spec("gca-matting", {"model.arch.encoder": "resnet_gca_encoder_29",
                                           "model.arch.decoder": "res_gca_decoder_22"})
    gca = tmp_path / "gca.pth"
    torch.save({"state_dict": stride_zero_state(meta_network(gca_spec).state_dict())}, gca)
    with pytest.raises(CheckpointError, match=r"not a ViTMatte checkpoint.*GCA-Matting GCA checkpoint"):
        Matter(toy_configs[0], str(gca), device="cpu")
    with pytest.raises(ConfigError,
                       match="model.arch.encoder must be \"vit_s\" or \"vit_b\" or \"vit_toy\", got 'vit_l'"):
        family_spec("vitmatte", {"model.arch.encoder": "vit_l"})


# ---- the recipes ----
def test_the_two_paddings_on_hand_made_sizes():
    # the original: both sides get 32 - side % 32 when either needs padding, none when neither does
    assert padding_sides(45, 70, ORIGINAL) == (19, 26)
    assert padding_sides(64, 70, ORIGINAL) == (32, 26)
    assert padding_sides(64, 96, ORIGINAL) == (0, 0)
    assert padding_sides(64, 70, TRANSFORMERS) == (0, 26)
    assert padding_sides(45, 64, TRANSFORMERS) == (19, 0)


@pytest.mark.parametrize("size", SIZES_TESTED, ids=SIZE_IDS)
def test_the_original_recipe_gives_the_transcriptions_alpha(original, matter, size):
    image, trimap = photo_and_trimap(*size, seed=3)
    expected = published.infer(original, image, trimap)
    alpha = matter(image, trimap)
    assert within_one_level(alpha, expected / 255) >= WITHIN_ONE_LEVEL
    assert np.abs(alpha.astype(int) - expected).max() <= 1
    assert exercised(expected)


@pytest.mark.parametrize("size", SIZES_TESTED, ids=SIZE_IDS)
def test_the_hf_recipe_gives_transformers_alpha(hf_model, hf_matter, size):
    image, trimap = photo_and_trimap(*size, seed=4)
    expected = transformers_alpha(hf_model, image, trimap)
    alpha = hf_matter(image, trimap)
    assert within_one_level(alpha, expected) >= WITHIN_ONE_LEVEL
    assert exercised(expected)


def test_demo_with_the_hf_config_gives_transformers_alpha(toy_configs, hf_model, hub_folder, tmp_path):
    """The folder given with a trailing separator, as a shell's completion gives it: the output
    folder is still named after the folder."""
    images, trimaps, pairs = write_folders(tmp_path, [(45, 70), (64, 70)], seed=5)
    out = str(tmp_path / "out")
    alphas = demo_alphas(toy_configs[1], hub_folder + os.sep, images, trimaps, out, len(pairs))
    assert os.listdir(out) == ["vitmatte-s-hf_vitmatte-small-composition-1k"]
    for alpha, (image, trimap) in zip(alphas, pairs):
        assert within_one_level(alpha, transformers_alpha(hf_model, image, trimap)) >= WITHIN_ONE_LEVEL


def test_the_folders_own_preprocessor_values_are_transformers(toy_configs, hf_model, hub_folder, tmp_path):
    changed = tmp_path / "changed"
    shutil.copytree(hub_folder, changed)
    settings = json.loads((changed / "preprocessor_config.json").read_text())
    settings.update(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    (changed / "preprocessor_config.json").write_text(json.dumps(settings))
    image, trimap = photo_and_trimap(45, 70, seed=6)
    expected = transformers_alpha(hf_model, image, trimap, image_mean=settings["image_mean"],
                                  image_std=settings["image_std"])
    alpha = Matter(toy_configs[1], str(changed), device="cpu")(image, trimap)
    assert within_one_level(alpha, expected) >= WITHIN_ONE_LEVEL
    assert within_one_level(alpha, transformers_alpha(hf_model, image, trimap)) < 0.9


def test_the_same_weights_give_another_alpha_with_each_recipe(toy_configs, hub_folder, hf_matter):
    """The normalisation (and, where a side is a multiple of 32, the padding) differ: the alphas of
    the same file differ well beyond rounding."""
    image, trimap = photo_and_trimap(64, 70, seed=7)
    original_alpha = Matter(toy_configs[0], hub_folder, device="cpu")(image, trimap)
    hf_alpha = hf_matter(image, trimap)
    assert np.abs(original_alpha.astype(int) - hf_alpha).mean() > 5


def test_the_padding_quirk_changes_the_alpha(original_file):
    """At 64 x 70 the original pads 32 rows the other rule does not: another global grid."""
    network = load_network(SPEC, original_file)
    image, trimap = photo_and_trimap(64, 70, seed=8)
    recipe = vitmatte.FAMILY.recipes(SPEC)[0]
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    quirk, _ = predict_alpha(network, recipe, bgr, trimap, CPU)
    network.padding = TRANSFORMERS
    plain, _ = predict_alpha(network, recipe, bgr, trimap, CPU)
    assert np.abs(quirk.astype(int) - plain).max() > 5


def test_the_bounded_form_equals_the_whole(original_file):
    network = load_network(SPEC, original_file)
    image, trimap = (torch.from_numpy(array.copy()) for array in photo_and_trimap(100, 130, seed=13))
    image, trimap = image.permute(2, 0, 1)[None].float() / 255, trimap[None, None].float() / 255
    # padded to 128 x 160: an 8 x 10 grid, 4 decoder stripes of 32 rows
    settings = {"whole": (WHOLE, WHOLE), "blocked attention": (10 ** 6, 1), "stripes": (32, 10 ** 6), "both": (32, 3)}
    alphas = {}
    with torch.no_grad():
        for name, (stripe_rows, query_rows) in settings.items():
            network.stripe_rows, network.query_rows = stripe_rows, query_rows
            alphas[name] = network(image, trimap)[0]
        alphas["scanned"] = exportable(network)(image, trimap)[0]  # the exported form: one query row per step
    for name in ("blocked attention", "stripes", "both", "scanned"):
        assert torch.allclose(alphas[name], alphas["whole"], atol=1e-5, rtol=0), name
    assert exercised(alphas["whole"][0, 0].numpy())


def test_the_benchmark_knows_when_the_whole_attention_does_not_fit(toy_configs, monkeypatch):
    """The whole form's scores at 3840 x 2160 (the original pads it to 3872 x 2176: 242 x 136 =
    32,912 tokens): heads x tokens^2 floats, three alive at once. The benchmark runs it only where
    that fits in half the free memory."""
    from networks import benchmark
    network = build_network(SPEC)
    assert network.literal_peak_bytes(2160, 3840) == 2 * 32912 ** 2 * 4 * 3
    assert network.literal_peak_bytes(64, 96) == 2 * 24 ** 2 * 4 * 3
    monkeypatch.setattr(benchmark.os, "sysconf", lambda name: 2 ** 18 if name == "SC_AVPHYS_PAGES" else 2 ** 12)
    assert not benchmark.literal_fits("3840x2160", toy_configs[0])  # 26 GB of scores, 1 GiB free
    assert benchmark.literal_fits("96x64", toy_configs[0])


# ---- the entry points ----
def test_demo_folders_masks_and_tta(toy_configs, matter, original_file, tmp_path):
    images, trimaps, pairs = write_folders(tmp_path, [(45, 70)], seed=9)
    image, trimap = pairs[0]
    alpha, = demo_alphas(toy_configs[0], original_file, images, trimaps, str(tmp_path / "out"), 1)
    assert np.array_equal(alpha, matter(image, trimap))
    masks = tmp_path / "masks"
    masks.mkdir()
    assert cv2.imwrite(str(masks / "p0.png"), np.where(trimap == 255, 255, 0).astype(np.uint8))
    mask_out = str(tmp_path / "masked")
    assert demo.main(["--config", toy_configs[0], "--checkpoint", original_file, "--image-dir", images, "--mask-dir",
                      str(masks), "--unknown-width", "4", "--tta", "flip", "--output", mask_out,
                      "--device", "cpu"]) == 0
    folder = os.path.join(mask_out, "vitmatte-s_ViTMatte_S_Com.pth")
    made = cv2.imread(os.path.join(folder, "p0_trimap.png"), cv2.IMREAD_UNCHANGED)
    flipped = cv2.imread(os.path.join(folder, "p0.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(flipped, matter(image, made, tta="flip"))
    assert not np.array_equal(flipped, matter(image, made))


@pytest.mark.slow
def test_demo_cutouts(toy_configs, matter, original_file, tmp_path):
    pytest.importorskip("pymatting", reason="pip install -r requirements-cutout.txt")
    images, trimaps, pairs = write_folders(tmp_path, [(45, 70)], seed=9)
    out = str(tmp_path / "out")
    alpha, = demo_alphas(toy_configs[0], original_file, images, trimaps, out, 1, ["--cutout"])
    assert np.array_equal(alpha, matter(*pairs[0]))
    save_dir = os.path.join(out, "vitmatte-s_ViTMatte_S_Com.pth")
    assert sorted(os.listdir(save_dir)) == ["p0.png", "p0_fg.png", "p0_rgba.png"]
    assert np.array_equal(cv2.imread(os.path.join(save_dir, "p0_rgba.png"), cv2.IMREAD_UNCHANGED)[:, :, 3], alpha)


@pytest.mark.slow
def test_the_page(matter, tmp_path):
    pytest.importorskip("gradio", reason="pip install -r requirements-app.txt")
    import app
    images, trimaps, pairs = write_folders(tmp_path, [(45, 70)], seed=10)
    image, trimap = pairs[0]
    results = app.matte(matter, app.Inputs(os.path.join(images, "p0.png"), trimap=os.path.join(trimaps, "p0.png")),
                        4096)
    assert np.array_equal(results.alpha, matter(image, trimap)) and results.offsets == [None, None]


def test_the_test_phase_with_both_protocols_and_a_hub_folder(toy_configs, hf_matter, hub_folder, tmp_path, capsys):
    """test.checkpoint names the folder's weights file, as config/vitmatte-s-hf.toml does; the
    folder's preprocessor_config.json comes with it."""
    import main
    images, trimaps, pairs = write_folders(tmp_path, [(45, 70)], seed=11)
    (tmp_path / "alpha").mkdir()
    image, trimap = pairs[0]
    assert cv2.imwrite(str(tmp_path / "alpha" / "p0.png"), np.where(trimap == 128, 90, trimap).astype(np.uint8))
    text = open(toy_configs[1]).read()
    assert 'checkpoint = "checkpoints/vitmatte-s-hf/vitmatte-small-composition-1k/model.safetensors"' in text
    text = text.replace("checkpoints/vitmatte-s-hf/vitmatte-small-composition-1k",
                        hub_folder.replace(os.sep, "/"))
    for published_folder, ours in (("merged", images), ("alpha_copy", str(tmp_path / "alpha")), ("trimaps", trimaps)):
        text = text.replace(f"data/Composition-1k-testset/{published_folder}", ours)
    expected = hf_matter(image, trimap)
    for protocol in ("comp1k", "aim500"):
        config = tmp_path / f"{protocol}.toml"
        config.write_text(text.replace('alpha_path = "prediction"', f'alpha_path = "{tmp_path}/{protocol}"\n'
                                       f'protocol = "{protocol}"') +
                          f'\n[log]\nlogging_path = "{tmp_path}/logs"\n')
        capsys.readouterr()
        assert main.main(["--config", str(config), "--phase", "test"]) == 0
        predicted = cv2.imread(str(tmp_path / protocol / "vitmatte-s-hf" / "p0.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(predicted, expected), protocol
        assert "vitmatte-s-hf on 1 images" in capsys.readouterr().out


@pytest.mark.slow
def test_trimaps_from_aim_feed_vitmatte(toy_configs, matter, original_file, tmp_path):
    from matting import AutomaticTrimap
    from test_aim import random_aim  # AIM's random model whose semantic map has all three classes
    aim = tmp_path / "aimnet_pretrained_matting.pth"
    torch.save({"state_dict": random_aim().state_dict()}, aim)
    images, trimaps, pairs = write_folders(tmp_path, [(130, 160)], seed=12)
    out = str(tmp_path / "out")
    assert demo.main(["--config", toy_configs[0], "--checkpoint", original_file, "--image-dir", images,
                      "--trimap-from", f"config/aim.toml:{aim}", "--output", out, "--device", "cpu"]) == 0
    folder = os.path.join(out, "vitmatte-s_ViTMatte_S_Com.pth")
    image = pairs[0][0]
    trimap = AutomaticTrimap("config/aim.toml", str(aim), device="cpu")(image)
    assert set(np.unique(trimap)) == {0, 128, 255}
    assert np.array_equal(cv2.imread(os.path.join(folder, "p0_trimap.png"), cv2.IMREAD_UNCHANGED), trimap)
    assert np.array_equal(cv2.imread(os.path.join(folder, "p0.png"), cv2.IMREAD_UNCHANGED), matter(image, trimap))


# ---- the ONNX export ----
@pytest.mark.slow
def test_onnxruntime_alone_gives_the_demo_alpha(original_file, tmp_path):
    """The original recipe's (its padding is the one with a branch written as arithmetic; the
    -hf recipe's graph differs only in that formula, and an export takes minutes). The exporter's
    own check (onnxruntime against demo.py's alpha at two sizes), then onnxruntime alone in a
    process that imports nothing of this project, at an odd size and one with a side a multiple
    of 32."""
    for name in ("onnx", "onnxruntime", "onnxscript"):
        pytest.importorskip(name, reason=f"{name} not installed (pip install -r requirements-export.txt)")
    from networks import export
    from test_export import RUN_ALONE
    network = load_network(SPEC, original_file)
    recipe = vitmatte.FAMILY.recipes(SPEC)[0]
    model = export.export_onnx(network, SPEC)
    assert len(export.verify_export(model, network, recipe)) == 2
    path = tmp_path / "vitmatte.onnx"
    path.write_bytes(model)
    expected = []
    for index, size in enumerate([(45, 70), (64, 70)]):
        image, trimap = photo_and_trimap(*size, seed=14 + index)
        np.save(tmp_path / f"image{index}.npy", image)
        np.save(tmp_path / f"trimap{index}.npy", trimap)
        expected.append(predict_alpha(network, recipe, np.ascontiguousarray(image[:, :, ::-1]), trimap, CPU)[0])
    done = subprocess.run([sys.executable, "-I", "-c", RUN_ALONE, str(path), str(tmp_path)], cwd=str(tmp_path),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "imported: []" in done.stdout
    for index, alpha in enumerate(expected):
        exported = np.load(tmp_path / f"alpha{index}.npy")
        assert exported.shape == alpha.shape and within_one_level(exported, alpha / 255) >= WITHIN_ONE_LEVEL
        assert exercised(alpha)
