"""AIM's family: the released layout (made here from a transcription of the published module tree
with random weights) loads unchanged and gives the transcription's outputs; the HYBRID and RESIZE
strategies give the transcription of the published inference_img / test_samples; demo.py, Matter,
the page and the test phase take a photo alone; its trimaps feed the other families."""
import dataclasses
import os
import re

import cv2
import numpy as np
import pytest
import torch

import aim_transcription as published
import demo
from conftest import random_gca, randomise_batch_norms
from matting import AutomaticTrimap, Matter
from networks.aim.layout import from_released
from networks.aim.network import fuse
from networks.aim.recipe import fuse_resized, network_side
from networks.aim.skimage_resize import resize_like_skimage
from networks.families import build_network, family_of, family_spec, load_config, model_spec
from utils.checkpoint import CheckpointError
from utils.inference.predict import predict_alpha
from utils.evaluation.metrics_aim500 import aim500_metrics
from utils.recipe import ImageSizeError

CONFIG = "config/aim.toml"
GCA_CONFIG = "config/gca-dist-all-data.toml"
SIZE = (130, 160)  # HYBRID runs the network at 32 x 32 and 64 x 64


def random_aim(seed: int = 0) -> published.AimNet:
    """The transcription with random weights and BatchNorm statistics; the semantic head's biases
    centre its logits on a test photo so that all three classes occur, its two heads' weights are
    scaled up so that the maps are not flat."""
    torch.manual_seed(seed)
    model = published.AimNet()
    randomise_batch_norms(model)
    with torch.no_grad():
        model.decoder_final_g.weight.mul_(40)
        model.decoder_final_l.weight.mul_(10)
        model.eval()
        logits = {}
        hook = model.decoder_final_g.register_forward_hook(lambda module, inputs, output: logits.update(z=output))
        model(torch.from_numpy(photo(0)).permute(2, 0, 1)[None].float().div(255)[:, :, :32, :32])
        hook.remove()
        model.decoder_final_g.bias.sub_(logits["z"][0].mean(dim=(1, 2)))
    return model


def photo(seed: int, size=SIZE) -> np.ndarray:
    """An RGB photo: a bright rectangle on a dark background, with noise."""
    height, width = size
    image = np.full((height, width, 3), 40, np.uint8)
    image[height // 4:-height // 4, width // 3:-width // 4] = 210
    return (image + np.random.default_rng(seed).integers(0, 40, image.shape)).astype(np.uint8)


@pytest.fixture(scope="module")
def model():
    return random_aim()


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("aim") / "aimnet_pretrained_matting.pth"
    torch.save({"state_dict": model.state_dict()}, str(path))  # as the authors' training saves it
    return str(path)


@pytest.fixture(scope="module")
def matter(checkpoint):
    return Matter(CONFIG, checkpoint, device="cpu")


def as_published(model, image_rgb, strategy="HYBRID", behaviour="skimage-0.14", limit=1080):
    return published.test_sample(strategy, model, image_rgb,
                                 lambda array, shape: resize_like_skimage(array, *shape, behaviour), limit)


def test_the_released_layout_maps_one_to_one_onto_the_network():
    theirs = published.AimNet().state_dict()
    ours = build_network(family_spec("aim")).state_dict()
    assert len(theirs) == 700 and len(ours) == 482  # the backbone twice and the classifier, in theirs
    mapped = from_released(theirs, "released.pth")
    assert {k: v.shape for k, v in mapped.items()} == {k: v.shape for k, v in ours.items()}
    assert sum(v.numel() for k, v in ours.items() if not k.endswith(("running_mean", "running_var",
                                                                      "num_batches_tracked"))) == 54785191


@pytest.mark.slow
def test_a_released_file_loads_and_gives_the_published_outputs(model, matter):
    image = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        semantic, detail, fused = model(image)
        alpha, info = matter.network(image, None)
    assert torch.equal(info["semantic"], semantic) and torch.equal(info["detail"], detail)
    assert torch.equal(alpha, fused)
    assert len(semantic.argmax(1).unique()) == 3


@pytest.mark.slow
def test_a_backbone_copy_that_differs_is_refused(model, tmp_path):
    state = model.state_dict()
    state["resnet.layer3.0.conv1.weight"] = state["resnet.layer3.0.conv1.weight"] + 1
    path = str(tmp_path / "damaged.pth")
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError, match=r"resnet.layer3.0.conv1.weight differs from encoder3.0.conv1.weight"):
        Matter(CONFIG, path, device="cpu")


@pytest.mark.slow
def test_files_of_the_other_family_name_the_config(checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match=r"an AIM \(AimNet\) checkpoint: use config/aim.toml"):
        Matter(GCA_CONFIG, checkpoint, device="cpu")
    path = str(tmp_path / "gca.pth")
    torch.save({"state_dict": random_gca(0).state_dict()}, path)
    with pytest.raises(CheckpointError, match=r"not an AimNet checkpoint.*GCA-Matting GCA checkpoint"):
        Matter(CONFIG, path, device="cpu")


def test_the_fusions_against_hand_made_cases():
    semantic_255 = np.array([[0.0, 255.0, 254.99999999999997], [128.0, 1e-12, 255.0]])
    detail = np.array([[0.3, 0.4, 0.5], [0.6, 0.7, 0.8]])
    expected = np.array([[0.0, 1.0, 0.5], [0.6, 0.7, 1.0]])  # only exact 0 and 255 are known
    assert np.array_equal(fuse_resized(semantic_255, detail), expected)
    assert np.array_equal(fuse_resized(semantic_255, detail),
                          published.get_masked_local_from_global_test(semantic_255, detail))
    scores = torch.tensor([[[[0.9, 0.1, 0.2, 0.5]], [[0.1, 0.8, 0.2, 0.5]], [[0.0, 0.1, 0.7, 0.5]]]])
    local = torch.tensor([[[[0.25, 0.5, 0.75, 0.125]]]])
    assert torch.equal(fuse(scores, local), torch.tensor([[[[0.0, 0.5, 1.0, 0.0]]]]))  # a tie: the first class
    assert torch.equal(fuse(scores, local), published.get_masked_local_from_global(scores, local))


def test_network_sides_follow_the_published_rounding():
    assert [network_side(side, 4) for side in (127, 128, 1080, 1920, 7000)] == [0, 32, 256, 480, 1600]
    assert [network_side(side, 2) for side in (130, 1080, 1081)] == [64, 512, 512]


@pytest.mark.slow
@pytest.mark.parametrize("strategy,behaviour", [("HYBRID", "skimage-0.14"), ("RESIZE", "skimage-0.14"),
                                                ("HYBRID", "skimage-0.19")])
def test_the_recipes_give_the_published_alpha(model, matter, strategy, behaviour, tmp_path):
    config = tmp_path / "aim.toml"
    config.write_text(open(CONFIG).read().replace('aim_strategy = "hybrid"', f'aim_strategy = "{strategy.lower()}"')
                      .replace('aim_resize = "skimage-0.14"', f'aim_resize = "{behaviour}"'))
    spec = model_spec(load_config(str(config)))
    recipe = family_of(spec).recipes(spec)[0]
    assert (recipe.strategy, recipe.resize) == (strategy.lower(), behaviour)
    image = photo(1, (150, 170))
    alpha, _ = predict_alpha(matter.network, recipe, np.ascontiguousarray(image[:, :, ::-1]), None,
                             torch.device("cpu"))
    expected = as_published(model, image, strategy, behaviour)
    assert np.array_equal(alpha, expected)
    assert len(np.unique(alpha)) > 20 and (alpha == 0).any() and (alpha == 255).any()


@pytest.mark.slow
def test_the_shorter_side_limit_and_the_way_back(model, matter):
    recipe = dataclasses.replace(matter.recipe, shorter_side=140)
    image = photo(2, (150, 190))
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    alpha, info = predict_alpha(matter.network, recipe, bgr, None, torch.device("cpu"))
    assert alpha.shape == info["trimap"].shape == (150, 190)
    assert np.array_equal(alpha, as_published(model, image, limit=140))
    assert set(np.unique(info["trimap"].numpy())) == {0, 128, 255}


@pytest.mark.slow
def test_a_photo_too_small_is_named(matter):
    with pytest.raises(ImageSizeError, match=r"90 x 100 px.*at least 128 px"):
        matter(photo(0, (100, 90)))


@pytest.mark.slow
def test_matter_takes_the_photo_alone_and_refuses_a_trimap(matter):
    image = photo(3)
    alpha = matter(image)
    assert alpha.shape == SIZE and alpha.dtype == np.uint8
    with pytest.raises(ValueError, match="predicts from the image alone"):
        matter(image, np.full(SIZE, 128, np.uint8))
    flipped = matter(image, tta="flip")  # each view a whole HYBRID inference, mapped back
    assert flipped.shape == SIZE and not np.array_equal(flipped, alpha)


def test_the_evaluation_recipe_scores_the_float_alpha_at_full_size():
    demo_recipe, test_recipe = family_of(model_spec(load_config(CONFIG))).recipes(model_spec(load_config(CONFIG)))
    assert demo_recipe.shorter_side == 1080 and test_recipe.shorter_side is None
    assert test_recipe.score_float and not demo_recipe.score_float and not demo_recipe.takes_trimap


def write_photos(folder, count=2, size=SIZE):
    folder.mkdir()
    for index in range(count):
        assert cv2.imwrite(str(folder / f"p{index}.png"), photo(index, size)[:, :, ::-1])
    return str(folder)


@pytest.mark.slow
def test_demo_without_trimaps_writes_alphas_and_cutouts(model, checkpoint, tmp_path, capsys):
    images = write_photos(tmp_path / "images")
    out = str(tmp_path / "out")
    assert demo.main(["--config", CONFIG, "--checkpoint", checkpoint, "--image-dir", images, "--output", out,
                      "--device", "cpu", "--cutout"]) == 0
    folder = os.path.join(out, "aim_aimnet_pretrained_matting.pth")
    assert sorted(os.listdir(folder)) == ["p0.png", "p0_fg.png", "p0_rgba.png", "p1.png", "p1_fg.png", "p1_rgba.png"]
    written = cv2.imread(os.path.join(folder, "p1.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(written, as_published(model, photo(1)))
    assert np.array_equal(cv2.imread(os.path.join(folder, "p1_rgba.png"), cv2.IMREAD_UNCHANGED)[:, :, 3], written)
    assert "2 of 2 images written" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--trimap-dir", "--mask-dir", "--trimap-from"])
def test_demo_refuses_trimaps_for_a_model_that_takes_none(checkpoint, tmp_path, capsys, flag):
    images = write_photos(tmp_path / "images", count=1)
    value = f"{CONFIG}:{checkpoint}" if flag == "--trimap-from" else images
    assert demo.main(["--config", CONFIG, "--checkpoint", checkpoint, "--image-dir", images, flag, value,
                      "--output", str(tmp_path / "out")]) == 2
    assert f"config/aim.toml: its model predicts from the photo alone; drop {flag}" in capsys.readouterr().err


@pytest.fixture(scope="module")
def gca_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("gca") / "gca.pth"
    torch.save({"state_dict": random_gca(3).state_dict()}, str(path))
    return str(path)


@pytest.fixture(scope="module")
def gca(gca_checkpoint):
    return Matter(GCA_CONFIG, gca_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def automatic(checkpoint):
    return AutomaticTrimap(CONFIG, checkpoint, device="cpu")


@pytest.mark.slow
@pytest.mark.parametrize("source", ["semantic", "alpha"])
def test_trimaps_from_aim_feed_another_model(model, checkpoint, gca_checkpoint, gca, automatic, tmp_path, source):
    images = write_photos(tmp_path / "images", count=1)
    out = str(tmp_path / "out")
    extra = ["--trimap-source", "alpha", "--unknown-width", "5"] if source == "alpha" else []
    assert demo.main(["--config", GCA_CONFIG, "--checkpoint", gca_checkpoint, "--image-dir", images, "--trimap-from",
                      f"{CONFIG}:{checkpoint}", "--output", out, "--device", "cpu", "--no-offset", *extra]) == 0
    folder = os.path.join(out, "gca-dist-all-data_gca.pth")
    trimap = cv2.imread(os.path.join(folder, "p0_trimap.png"), cv2.IMREAD_UNCHANGED)
    image = photo(0)
    assert np.array_equal(trimap, automatic(image, source, 5 if source == "alpha" else None))
    if source == "semantic":  # the trimap AIM's fusion used: exactly 0 / 255 after resizing, else 128
        semantic, _, _ = published.inference_once(model, resize_like_skimage(image, 32, 32) * 255.0)
        resized = resize_like_skimage(semantic, *SIZE) * 255.0
        assert np.array_equal(trimap == 128, (resized != 0) & (resized != 255))
    assert {0, 128} <= set(np.unique(trimap))
    alpha = cv2.imread(os.path.join(folder, "p0.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(alpha, gca(image, trimap))


@pytest.mark.slow
@pytest.mark.parametrize("spec,message", [
    ("config/aim.toml", r"give CONFIG.toml:CHECKPOINT"),
    ("config/missing.toml:x.pth", r"config file not found: config/missing.toml"),
    (f"{GCA_CONFIG}:x.pth", r"needs a trimap itself; give the config of a model that predicts from the photo alone"),
    ("config/aim.toml:missing.pth", r"missing.pth"),
])
def test_a_bad_trimap_model_is_one_line_and_exit_2(gca_checkpoint, tmp_path, capsys, spec, message):
    images = write_photos(tmp_path / "images", count=1)
    assert demo.main(["--config", GCA_CONFIG, "--checkpoint", gca_checkpoint, "--image-dir", images, "--trimap-from",
                      spec, "--output", str(tmp_path / "out"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.slow
def test_the_page_offers_no_trimap_for_aim_and_the_automatic_trimap_for_others(matter, gca, automatic, tmp_path):
    pytest.importorskip("gradio")
    import app
    path = str(tmp_path / "photo.png")
    assert cv2.imwrite(path, photo(0)[:, :, ::-1])
    assert app.guide_choices(matter, None) == [app.NO_TRIMAP]
    results = app.matte(matter, app.Inputs(path, guide="none"), 4096)
    assert np.array_equal(results.alpha, matter(photo(0)))
    assert set(np.unique(results.trimap)) <= {0, 128, 255}  # AIM's own trimap, shown as the one used
    with pytest.raises(app.PageError, match="predicts from the photo alone"):
        app.matte(matter, app.Inputs(path, guide="trimap", trimap=path), 4096)
    assert app.guide_choices(gca, automatic)[-1] == app.AUTOMATIC
    results = app.matte(gca, app.Inputs(path, guide="automatic"), 4096, automatic=automatic)
    assert np.array_equal(results.trimap, automatic(photo(0)))
    assert np.array_equal(results.alpha, gca(photo(0), results.trimap))
    with pytest.raises(app.PageError, match="start app.py with --trimap-from"):
        app.matte(gca, app.Inputs(path, guide="automatic"), 4096)


@pytest.mark.slow
def test_the_test_phase_scores_aims_float_alpha_with_the_aim500_protocol(model, checkpoint, tmp_path, capsys):
    import main
    write_photos(tmp_path / "original")
    for name in ("mask", "trimap"):
        (tmp_path / name).mkdir()
    truth = np.zeros(SIZE, np.uint8)
    truth[40:90, 60:120] = 255
    trimap = np.where(cv2.dilate(truth, np.ones((9, 9))) != cv2.erode(truth, np.ones((9, 9))), 128, truth)
    for index in range(2):
        cv2.imwrite(str(tmp_path / "mask" / f"p{index}.png"), truth)
        cv2.imwrite(str(tmp_path / "trimap" / f"p{index}.png"), trimap.astype(np.uint8))
    text = re.sub(r'checkpoint = ".*"', f'checkpoint = "{checkpoint}"', open(CONFIG).read())
    text = text.replace("data/AIM-500", str(tmp_path)).replace('alpha_path = "prediction"',
                                                               f'alpha_path = "{tmp_path}/prediction"')
    config = tmp_path / "test.toml"
    config.write_text(text + f'\n[log]\nlogging_path = "{tmp_path}/logs"\n')
    capsys.readouterr()
    assert main.main(["--config", str(config), "--phase", "test"]) == 0
    report = capsys.readouterr().out
    expected = [published.inference_img("HYBRID", model, photo(index),
                                        lambda array, shape: resize_like_skimage(array, *shape))
                for index in range(2)]
    sad = np.mean([aim500_metrics(alpha * 255, truth, trimap.astype(np.uint8))["sad"] for alpha in expected])
    assert f"aim on 2 images: SAD {sad:.2f}" in report, report
    written = cv2.imread(str(tmp_path / "prediction" / "aim" / "p0.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(written, (expected[0] * 255).astype(np.uint8))  # save_test_result's truncation


@pytest.mark.slow
def test_aim_is_not_exported(matter):
    pytest.importorskip("onnx")
    from networks.export import ExportError, export_onnx
    with pytest.raises(ExportError, match="not one graph"):
        export_onnx(matter.network, model_spec(load_config(CONFIG)))
