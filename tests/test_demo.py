import os
import re
import resource
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

import demo
from conftest import GCA_ARCH, demo_recipe, random_gca
from networks.gca_matting.generator import Generator, build_generator
from utils.inference.predict import predict_alpha

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "config", "gca-dist-all-data.toml")


@pytest.fixture(scope="module")
def released_checkpoint(tmp_path_factory):
    """A randomly initialised GCA model saved in the released layout: {'state_dict'} with DDP's
    `module.` prefix, and BN statistics that are not the identity. A few training-mode forwards
    converge the spectral norms' u, v as training does: random u, v give sigma near 0."""
    model = random_gca(10)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("ckpt") / "gca-dist-all-data.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, str(path))
    return str(path), model.eval()


def make_pair(folder_images, folder_trimaps, name, size, rng, image_ext=".png", trimap_ext=".png"):
    h, w = size
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    trimap = np.full((h, w), 128, np.uint8)
    trimap[: h // 4] = 0
    trimap[-h // 4:] = 255
    cv2.imwrite(os.path.join(folder_images, name + image_ext), image)
    cv2.imwrite(os.path.join(folder_trimaps, name + trimap_ext), trimap)
    return image, trimap


@pytest.fixture
def folders(tmp_path):
    images, trimaps, out = tmp_path / "images", tmp_path / "trimaps", tmp_path / "out"
    images.mkdir()
    trimaps.mkdir()
    return str(images), str(trimaps), str(out)


def run_demo(checkpoint, images, trimaps, out, *extra):
    return demo.main(["--config", CONFIG, "--checkpoint", checkpoint, "--image-dir", images,
                      "--trimap-dir", trimaps, "--output", out, "--device", "cpu", *extra])


@pytest.mark.slow
def test_outputs_at_the_published_paths_and_equal_to_the_model(released_checkpoint, folders, rng):
    checkpoint, model = released_checkpoint
    images, trimaps, out = folders
    image, trimap = make_pair(images, trimaps, "troll", (70, 90), rng)
    make_pair(images, trimaps, "doll", (64, 64), rng, image_ext=".jpg", trimap_ext=".png")
    assert run_demo(checkpoint, images, trimaps, out) == 0
    save_dir = os.path.join(out, "gca-dist-all-data_gca-dist-all-data.pth")
    assert sorted(os.listdir(save_dir)) == ["doll.png", "doll_offset1.png", "doll_offset2.png",
                                            "troll.png", "troll_offset1.png", "troll_offset2.png"]
    alpha = cv2.imread(os.path.join(save_dir, "troll.png"), cv2.IMREAD_UNCHANGED)
    expected, _ = predict_alpha(model, demo_recipe(), image, trimap, torch.device("cpu"))
    assert alpha.shape == (70, 90) and np.array_equal(alpha, expected)
    assert (alpha[:17] == 0).all() and (alpha[-17:] == 255).all()
    assert 0 < alpha[17:-17].mean() < 255
    offset = cv2.imread(os.path.join(save_dir, "troll_offset1.png"))
    # 70 x 90 pads to 160 x 160 -> a 10 x 10 grid at 1/16, resized so the short side is 512.
    assert offset.shape == (512, 512, 3)


@pytest.mark.slow
def test_no_offset_flag(released_checkpoint, folders, rng):
    images, trimaps, out = folders
    make_pair(images, trimaps, "a", (40, 40), rng)
    assert run_demo(released_checkpoint[0], images, trimaps, out, "--no-offset") == 0
    assert os.listdir(os.path.join(out, "gca-dist-all-data_gca-dist-all-data.pth")) == ["a.png"]


def test_bad_inputs_are_named_and_the_rest_processed(released_checkpoint, folders, rng, capsys):
    images, trimaps, out = folders
    make_pair(images, trimaps, "good", (48, 48), rng)
    cv2.imwrite(os.path.join(images, "lonely.png"), np.zeros((40, 40, 3), np.uint8))
    make_pair(images, trimaps, "sized", (48, 48), rng)
    cv2.imwrite(os.path.join(trimaps, "sized.png"), np.zeros((40, 48), np.uint8))
    with open(os.path.join(images, "corrupt.jpg"), "wb") as f:
        f.write(b"\xff\xd8 definitely not a jpeg")
    cv2.imwrite(os.path.join(trimaps, "corrupt.png"), np.zeros((8, 8), np.uint8))
    code = run_demo(released_checkpoint[0], images, trimaps, out, "--no-offset")
    err = capsys.readouterr().err
    assert code == 1
    assert "lonely.png: no trimap named lonely.*" in err
    assert "sized.png: trimap is 48x40" in err and "must be the same size" in err
    assert "corrupt.jpg: not a readable image" in err
    assert "3 of 4 images failed" in err
    assert os.listdir(os.path.join(out, "gca-dist-all-data_gca-dist-all-data.pth")) == ["good.png"]


@pytest.mark.slow
def test_grey_rgba_and_16_bit_inputs(released_checkpoint, folders, rng):
    checkpoint, model = released_checkpoint
    images, trimaps, out = folders
    image, trimap = make_pair(images, trimaps, "deep", (40, 50), rng)
    cv2.imwrite(os.path.join(images, "deep.png"), image.astype(np.uint16) * 257)
    cv2.imwrite(os.path.join(trimaps, "deep.png"), trimap.astype(np.uint16) * 257)
    rgba = np.dstack([image, np.zeros((40, 50), np.uint8)])
    cv2.imwrite(os.path.join(images, "rgba.png"), rgba)
    cv2.imwrite(os.path.join(trimaps, "rgba.png"), trimap)
    cv2.imwrite(os.path.join(images, "grey.png"), image[:, :, 1])
    cv2.imwrite(os.path.join(trimaps, "grey.png"), trimap)
    assert run_demo(checkpoint, images, trimaps, out, "--no-offset") == 0
    save_dir = os.path.join(out, "gca-dist-all-data_gca-dist-all-data.pth")
    expected, _ = predict_alpha(model, demo_recipe(), image, trimap, torch.device("cpu"))
    for name in ("deep", "rgba"):
        assert np.array_equal(cv2.imread(os.path.join(save_dir, name + ".png"), cv2.IMREAD_UNCHANGED), expected), name
    assert cv2.imread(os.path.join(save_dir, "grey.png"), cv2.IMREAD_UNCHANGED).shape == (40, 50)


def test_output_inside_an_input_folder_is_refused(released_checkpoint, folders, rng, capsys):
    images, trimaps, _ = folders
    make_pair(images, trimaps, "a", (40, 40), rng)
    assert run_demo(released_checkpoint[0], images, trimaps, images) == 2
    assert "lies inside the input folder" in capsys.readouterr().err
    assert sorted(os.listdir(images)) == ["a.png"]


def test_wrong_architecture_and_empty_folder(released_checkpoint, folders, tmp_path, rng, capsys):
    images, trimaps, out = folders
    baseline = os.path.join(ROOT, "config", "baseline.toml")
    code = demo.main(["--config", baseline, "--checkpoint", released_checkpoint[0], "--image-dir", images,
                      "--trimap-dir", trimaps, "--output", out, "--device", "cpu"])
    assert code == 2 and "model.arch" in capsys.readouterr().err
    assert run_demo(released_checkpoint[0], images, trimaps, out) == 2
    assert "no images" in capsys.readouterr().err


def test_non_finite_prediction_is_reported(folders, tmp_path, rng, capsys):
    model = build_generator(*GCA_ARCH)
    state = model.state_dict()
    state["decoder.conv2.bias"].fill_(float("nan"))
    path = str(tmp_path / "nan.pth")
    torch.save({"state_dict": state}, path)
    images, trimaps, out = folders
    make_pair(images, trimaps, "a", (40, 40), rng)
    assert run_demo(path, images, trimaps, out, "--no-offset") == 1
    assert "a.png: the network produced NaN" in capsys.readouterr().err


@pytest.mark.slow
def test_command_line_as_a_user_runs_it(released_checkpoint, folders, rng):
    images, trimaps, out = folders
    make_pair(images, trimaps, "cli", (40, 40), rng)
    result = subprocess.run([sys.executable, "demo.py", "--config", CONFIG, "--checkpoint", released_checkpoint[0],
                             "--image-dir", images, "--trimap-dir", trimaps, "--output", out],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "1 of 1 images written" in result.stdout
    assert "demo 1/1" in result.stderr
    assert os.path.exists(os.path.join(out, "gca-dist-all-data_gca-dist-all-data.pth", "cli_offset2.png"))


@pytest.mark.slow
def test_output_agrees_with_small_blocks_and_with_blocking_off(released_checkpoint, folders, tmp_path, rng):
    images, trimaps, _ = folders
    make_pair(images, trimaps, "a", (150, 130), rng)
    make_pair(images, trimaps, "b", (97, 161), rng)
    written = {}
    for block in (-1, 3):
        config = tmp_path / f"block{block}.toml"
        config.write_text('version = "v"\n[model.arch]\nencoder = "resnet_gca_encoder_29"\n'
                          f'decoder = "res_gca_decoder_22"\n[test]\ngca_block = {block}\n')
        out = str(tmp_path / f"out{block}")
        assert demo.main(["--config", str(config), "--checkpoint", released_checkpoint[0], "--image-dir", images,
                          "--trimap-dir", trimaps, "--output", out, "--device", "cpu"]) == 0
        folder = os.path.join(out, "v_gca-dist-all-data.pth")
        written[block] = {name: cv2.imread(os.path.join(folder, name), cv2.IMREAD_UNCHANGED)
                          for name in sorted(os.listdir(folder))}
    assert list(written[-1]) == list(written[3]) and len(written[3]) == 6  # alphas and offset pictures
    # the offsets agree exactly; the alphas within the blocked form's float rounding, which truncation
    # to 8 bits can move by one level (here 1 pixel of the 35,117)
    for name, picture in written[-1].items():
        levels = np.abs(picture.astype(int) - written[3][name])
        if "offset" in name:
            assert np.array_equal(picture, written[3][name]), name
        else:
            assert levels.max() <= 1 and (levels > 0).mean() < 1e-3, name


def test_bf16_is_offered_on_the_cpu_only_with_amx(monkeypatch):
    from utils.inference import predict
    cpu = torch.device("cpu")
    monkeypatch.setattr(predict, "cpu_has_amx", lambda: True)
    assert predict.offered_precisions(cpu) == ("fp32", "bf16") and predict.runnable_precision("bf16", cpu) == "bf16"
    monkeypatch.setattr(predict, "cpu_has_amx", lambda: False)
    assert predict.offered_precisions(cpu) == ("fp32",)
    with pytest.warns(UserWarning, match="bf16 runs as fp32 on this CPU: it has no AMX"):
        assert predict.runnable_precision("bf16", cpu) == "fp32"
    assert predict.offered_precisions(torch.device("cuda")) == ("fp32", "bf16", "fp16")


@pytest.mark.slow
def test_bf16_precision_on_the_cpu_and_fp16_refused(released_checkpoint, folders, rng, capsys):
    images, trimaps, out = folders
    make_pair(images, trimaps, "a", (64, 64), rng)
    import warnings
    from utils.inference.predict import cpu_has_amx
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_demo(released_checkpoint[0], images, trimaps, out, "--precision", "bf16", "--no-offset") == 0
    assert any("bf16 runs as fp32 on this CPU: it has no AMX" in str(w.message) for w in caught) == (not cpu_has_amx())
    assert run_demo(released_checkpoint[0], images, trimaps, out, "--precision", "fp16") == 2
    assert "fp16 inference needs a CUDA device" in capsys.readouterr().err


@pytest.mark.parametrize("test_keys,expected", [("gca_block = -5", "test.gca_block must be -1, 0 or a positive"),
                                                ("", "unknown model.arch.encoder")])
def test_a_bad_model_setting_names_the_config(released_checkpoint, folders, tmp_path, capsys, test_keys, expected):
    images, trimaps, out = folders
    config = tmp_path / "bad.toml"
    encoder = "resnet_gca_encoder_29" if test_keys else "resnet_gca_encoder_30"
    config.write_text(f'version = "v"\n[model.arch]\nencoder = "{encoder}"\ndecoder = "res_gca_decoder_22"\n'
                      f'[test]\n{test_keys}\n')
    assert demo.main(["--config", str(config), "--checkpoint", released_checkpoint[0], "--image-dir", images,
                      "--trimap-dir", trimaps, "--output", out, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and expected in err


SAVE_FOLDER = "gca-dist-all-data_gca-dist-all-data.pth"


@pytest.mark.slow
def test_a_failed_write_is_named_leaves_nothing_of_that_image_and_the_rest_goes_on(released_checkpoint, folders, rng):
    images, trimaps, out = folders
    make_pair(images, trimaps, "a", (32, 32), rng)
    make_pair(images, trimaps, "b", (32, 32), rng)
    # A 32 x 32 alpha PNG is under 1.5 kB, a 512 x 512 offset picture is tens of kB: each image's
    # alpha is written, then its first offset picture fails with EFBIG as on a full disk, and
    # the alpha already written must go too. (Python ignores SIGXFSZ.)
    limit = 4096

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run([sys.executable, "demo.py", "--config", CONFIG, "--checkpoint", released_checkpoint[0],
                             "--image-dir", images, "--trimap-dir", trimaps, "--output", out, "--device", "cpu"],
                            cwd=ROOT, capture_output=True, text=True, preexec_fn=small_files)
    save_dir = os.path.join(out, SAVE_FOLDER)
    assert result.returncode == 1, result.stderr
    for name in ("a", "b"):
        assert f"{os.path.join(save_dir, name)}_offset1.png: could not be written (File too large)" in result.stderr
    assert "0 of 2 images written" in result.stdout and "Traceback" not in result.stderr
    assert os.listdir(save_dir) == []


@pytest.mark.parametrize("output", ["afile", os.path.join("afile", "out")])
def test_output_that_is_or_lies_under_a_file_is_an_error(released_checkpoint, folders, tmp_path, rng, capsys, output):
    images, trimaps, _ = folders
    make_pair(images, trimaps, "a", (32, 32), rng)
    (tmp_path / "afile").write_text("not a folder")
    assert run_demo(released_checkpoint[0], images, trimaps, str(tmp_path / output)) == 2
    err = capsys.readouterr().err
    assert f"error: --output {tmp_path / output}: {tmp_path / 'afile'} is a file, not a folder" in err
    assert (tmp_path / "afile").read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_output_in_a_read_only_folder_is_an_error(released_checkpoint, folders, tmp_path, rng, capsys):
    images, trimaps, _ = folders
    make_pair(images, trimaps, "a", (32, 32), rng)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        assert run_demo(released_checkpoint[0], images, trimaps, str(locked / "out")) == 2
    finally:
        locked.chmod(0o755)
    assert f"cannot write in {locked} (permission denied)" in capsys.readouterr().err


def test_checkpoint_naming_a_folder_lists_its_pth_files(released_checkpoint, folders, tmp_path, rng, capsys):
    images, trimaps, out = folders
    make_pair(images, trimaps, "a", (32, 32), rng)
    folder = os.path.dirname(released_checkpoint[0])
    assert run_demo(folder, images, trimaps, out) == 2
    assert (f"error: checkpoint {folder} is a folder; give the checkpoint's .pth file "
            f"(the .pth files in it: {released_checkpoint[0]})") in capsys.readouterr().err
    assert run_demo(str(tmp_path), images, trimaps, out) == 2
    assert "it holds no .pth file" in capsys.readouterr().err


@pytest.mark.slow
def test_images_whose_outputs_would_clash_are_named_and_skipped(released_checkpoint, folders, rng, capsys):
    images, trimaps, out = folders
    for name, ext in (("a", ".jpg"), ("a", ".png"), ("x", ".png"), ("x_offset1", ".png"), ("ok", ".png")):
        make_pair(images, trimaps, name, (32, 32), rng, image_ext=ext)
    code = run_demo(released_checkpoint[0], images, trimaps, out)
    captured = capsys.readouterr()
    assert code == 1
    a, x = os.path.join(images, "a"), os.path.join(images, "x")
    assert f"{a}.jpg and {a}.png would both write a.png; rename one" in captured.err
    assert f"{x}.png and {x}_offset1.png would both write x_offset1.png; rename one" in captured.err
    assert "1 of 5 images written" in captured.out and "4 of 5 images failed" in captured.err
    assert sorted(os.listdir(os.path.join(out, SAVE_FOLDER))) == ["ok.png", "ok_offset1.png", "ok_offset2.png"]


@pytest.mark.slow
def test_a_label_trimap_is_read_as_grey_with_a_note(released_checkpoint, folders, rng, capsys):
    checkpoint, model = released_checkpoint
    images, trimaps, out = folders
    image, grey = make_pair(images, trimaps, "t", (40, 40), rng)
    labels = np.select([grey == 0, grey == 255], [0, 2], 1).astype(np.uint8)
    cv2.imwrite(os.path.join(trimaps, "t.png"), labels)
    assert run_demo(checkpoint, images, trimaps, out, "--no-offset") == 0
    err = capsys.readouterr().err
    assert err.count(f"note: {os.path.join(trimaps, 't.png')}: read as a 0/1/2 label trimap") == 1
    expected, _ = predict_alpha(model, demo_recipe(), image, grey, torch.device("cpu"))
    assert np.array_equal(cv2.imread(os.path.join(out, SAVE_FOLDER, "t.png"), cv2.IMREAD_UNCHANGED), expected)


@pytest.mark.slow
def test_a_trimap_without_unknown_pixels_gets_a_warning(released_checkpoint, folders, rng, capsys):
    images, trimaps, out = folders
    _, trimap = make_pair(images, trimaps, "k", (40, 40), rng)
    trimap[trimap == 128] = 0
    cv2.imwrite(os.path.join(trimaps, "k.png"), trimap)
    assert run_demo(released_checkpoint[0], images, trimaps, out, "--no-offset") == 0
    assert (f"warning: {os.path.join(trimaps, 'k.png')}: the trimap has no unknown pixel, so the alpha is just "
            "its known regions") in capsys.readouterr().err
    assert np.array_equal(cv2.imread(os.path.join(out, SAVE_FOLDER, "k.png"), cv2.IMREAD_UNCHANGED), trimap)


@pytest.mark.slow
def test_cutout_and_background_write_files_that_agree(released_checkpoint, folders, rng):
    images, trimaps, out = folders
    make_pair(images, trimaps, "a", (40, 48), rng)
    assert run_demo(released_checkpoint[0], images, trimaps, out, "--no-offset", "--background", "0,255,0") == 0
    save_dir = os.path.join(out, "gca-dist-all-data_gca-dist-all-data.pth")
    assert sorted(os.listdir(save_dir)) == ["a.png", "a_composite.png", "a_fg.png", "a_rgba.png"]
    read = lambda name: cv2.imread(os.path.join(save_dir, name), cv2.IMREAD_UNCHANGED)  # noqa: E731
    alpha, fg, rgba, composite = read("a.png"), read("a_fg.png"), read("a_rgba.png"), read("a_composite.png")
    assert np.array_equal(rgba[:, :, 3], alpha) and np.array_equal(rgba[:, :, :3], fg)
    a = alpha[..., None] / 255.0
    expected = a * fg + (1 - a) * np.array([0, 255, 0])  # BGR green
    assert np.abs(composite - expected).max() <= 1


def test_masks_make_trimaps_written_beside_the_alpha(released_checkpoint, folders, tmp_path, rng):
    from utils.trimaps.from_mask import mask_to_trimap
    images, _, out = folders
    masks = tmp_path / "masks"
    masks.mkdir()
    cv2.imwrite(os.path.join(images, "a.png"), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    mask = np.zeros((64, 64), np.uint8)
    cv2.circle(mask, (32, 32), 18, 200, -1)  # soft value above half: foreground
    cv2.imwrite(str(masks / "a.png"), mask)
    cv2.imwrite(os.path.join(images, "empty.png"), np.zeros((64, 64, 3), np.uint8))
    cv2.imwrite(str(masks / "empty.png"), np.zeros((64, 64), np.uint8))
    cv2.imwrite(os.path.join(images, "sized.png"), np.zeros((64, 64, 3), np.uint8))
    cv2.imwrite(str(masks / "sized.png"), np.zeros((32, 64), np.uint8))
    code = demo.main(["--config", CONFIG, "--checkpoint", released_checkpoint[0], "--image-dir", images,
                      "--mask-dir", str(masks), "--unknown-width", "5", "--output", out, "--device", "cpu",
                      "--no-offset"])
    assert code == 1
    save_dir = os.path.join(out, "gca-dist-all-data_gca-dist-all-data.pth")
    assert sorted(os.listdir(save_dir)) == ["a.png", "a_trimap.png"]
    trimap = cv2.imread(os.path.join(save_dir, "a_trimap.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(trimap, mask_to_trimap(mask, 5))
    alpha = cv2.imread(os.path.join(save_dir, "a.png"), cv2.IMREAD_UNCHANGED)
    assert (alpha[trimap == 255] == 255).all() and (alpha[trimap == 0] == 0).all()


def test_mask_problems_are_named(released_checkpoint, folders, tmp_path, rng, capsys):
    images, trimaps, out = folders
    masks = tmp_path / "masks"
    masks.mkdir()
    for name, mask in (("empty", np.zeros((40, 40), np.uint8)), ("full", np.full((40, 40), 255, np.uint8)),
                       ("sized", np.zeros((20, 40), np.uint8))):
        cv2.imwrite(os.path.join(images, f"{name}.png"), np.zeros((40, 40, 3), np.uint8))
        cv2.imwrite(str(masks / f"{name}.png"), mask)
    args = ["--config", CONFIG, "--checkpoint", released_checkpoint[0], "--image-dir", images, "--output", out,
            "--device", "cpu"]
    assert demo.main(args + ["--mask-dir", str(masks)]) == 1
    err = capsys.readouterr().err
    assert "empty.png: nothing to matte: the mask is empty" in err
    assert "full.png: nothing to matte: the mask covers the whole image" in err
    assert "sized.png: mask is 40x20 but" in err and "3 of 3 images failed" in err
    assert demo.main(args + ["--mask-dir", str(masks), "--trimap-dir", trimaps]) == 2
    assert "--mask-dir and --trimap-dir both given" in capsys.readouterr().err
    assert demo.main(args + ["--trimap-dir", trimaps, "--unknown-width", "4"]) == 2
    assert "--unknown-width goes with --mask-dir" in capsys.readouterr().err


@pytest.mark.slow
def test_tta_is_the_averaged_prediction(released_checkpoint, folders, rng):
    checkpoint, model = released_checkpoint
    images, trimaps, out = folders
    image, trimap = make_pair(images, trimaps, "a", (40, 52), rng)
    assert run_demo(checkpoint, images, trimaps, out, "--no-offset", "--tta", "d8") == 0
    written = cv2.imread(os.path.join(out, "gca-dist-all-data_gca-dist-all-data.pth", "a.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(written, predict_alpha(model, demo_recipe(), image, trimap, torch.device("cpu"), tta="d8")[0])
    assert not np.array_equal(written, predict_alpha(model, demo_recipe(), image, trimap, torch.device("cpu"))[0])


@pytest.mark.parametrize("spec, message", [("#12345", "not a colour"), ("missing.png", "cannot be read")])
def test_a_bad_background_is_an_error_before_any_work(released_checkpoint, folders, rng, capsys, spec, message):
    images, trimaps, out = folders
    make_pair(images, trimaps, "a", (40, 40), rng)
    assert run_demo(released_checkpoint[0], images, trimaps, out, "--background", spec) == 2
    assert f"error: --background {spec}: {message}" in capsys.readouterr().err
    assert not os.path.exists(out)


CPU_OUT_OF_MEMORY = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                     "you tried to allocate 3221225472 bytes. Error code 12 (Cannot allocate memory)")


def test_an_image_that_runs_out_of_memory_is_named_with_its_size_and_the_rest_goes_on(
        released_checkpoint, folders, rng, capsys, monkeypatch):
    images, trimaps, out = folders
    make_pair(images, trimaps, "big", (70, 90), rng)
    make_pair(images, trimaps, "small", (40, 40), rng)
    predict = demo.Matter.predict_bgr

    def out_of_memory_on_big(self, image_bgr, trimap, *args, **kwargs):
        if image_bgr.shape[:2] == (70, 90):
            raise RuntimeError(CPU_OUT_OF_MEMORY)
        return predict(self, image_bgr, trimap, *args, **kwargs)

    monkeypatch.setattr(demo.Matter, "predict_bgr", out_of_memory_on_big)
    assert run_demo(released_checkpoint[0], images, trimaps, out, "--no-offset") == 1
    captured = capsys.readouterr()
    assert (f"skipped: {os.path.join(images, 'big.png')}: out of memory on this 90x70 image (it tried to allocate "
            "3.0 GiB more); scale it down") in captured.err
    assert "1 of 2 images written" in captured.out and "1 of 2 images failed" in captured.err
    assert os.listdir(os.path.join(out, SAVE_FOLDER)) == ["small.png"]


def test_the_networks_memory_estimate_warns_before_and_says_what_fits(released_checkpoint, folders, rng, capsys,
                                                                      monkeypatch):
    images, trimaps, out = folders
    make_pair(images, trimaps, "big", (200, 260), rng)
    # A model family that estimates its need: here 1 TiB for any image larger than 100 x 100.
    monkeypatch.setattr(Generator, "inference_peak_bytes",
                        lambda self, height, width: 2 ** 40 if height * width > 100 * 100 else 0, raising=False)
    monkeypatch.setattr(demo.Matter, "predict_bgr", lambda *args, **kwargs: (_ for _ in ()).throw(
        MemoryError("Unable to allocate 1.00 TiB for an array")))
    assert run_demo(released_checkpoint[0], images, trimaps, out, "--no-offset") == 1
    err = capsys.readouterr().err
    big = os.path.join(images, "big.png")
    assert f"warning: {big}: this model needs about 1.0 TiB at 260x200 and this process has about" in err
    assert "it may run out of memory" in err
    assert f"skipped: {big}: out of memory on this 260x200 image (it tried to allocate 1.0 TiB more); this model" in err
    width, height = (int(v) for v in re.search(r"up to about (\d+)x(\d+) \(the same shape\) fits", err).groups())
    assert width * height <= 100 * 100 < (width + 2) * (height + 2) and abs(width / height - 1.3) < 0.03


@pytest.mark.slow
@pytest.mark.parametrize("unknown_rows, needle", [
    (slice(None), "only 0 % of the trimap is known foreground or background, under the 1 % the network needs"),
    (slice(0, 30), "the trimap has no known foreground"),
])
def test_a_trimap_with_too_little_known_gets_a_warning(released_checkpoint, folders, rng, capsys, unknown_rows,
                                                       needle):
    images, trimaps, out = folders
    _, trimap = make_pair(images, trimaps, "u", (40, 40), rng)
    trimap[:] = 0
    trimap[unknown_rows] = 128
    cv2.imwrite(os.path.join(trimaps, "u.png"), trimap)
    assert run_demo(released_checkpoint[0], images, trimaps, out, "--no-offset") == 0
    assert f"warning: {os.path.join(trimaps, 'u.png')}: {needle}" in capsys.readouterr().err


def test_a_mask_whose_band_covers_the_image_gets_the_warning(released_checkpoint, folders, tmp_path, rng, capsys):
    images, _, out = folders
    masks = tmp_path / "masks"
    masks.mkdir()
    cv2.imwrite(os.path.join(images, "a.png"), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    mask = np.zeros((40, 40), np.uint8)
    mask[18:22, 18:22] = 255
    cv2.imwrite(str(masks / "a.png"), mask)
    assert demo.main(["--config", CONFIG, "--checkpoint", released_checkpoint[0], "--image-dir", images,
                      "--mask-dir", str(masks), "--unknown-width", "30", "--output", out, "--device", "cpu",
                      "--no-offset"]) == 0
    assert "only 0 % of the trimap is known" in capsys.readouterr().err


def test_a_web_page_saved_as_the_checkpoint_is_one_line_and_exit_2(folders, tmp_path, rng, capsys):
    images, trimaps, out = folders
    make_pair(images, trimaps, "a", (32, 32), rng)
    page = tmp_path / "gca-dist-all-data.pth"
    page.write_text("<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head></html>")
    assert run_demo(str(page), images, trimaps, out) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {page}: not a PyTorch checkpoint (it looks like a web page saved instead of the file, the "
                   "usual result of a failed Google Drive download: download the file itself again)\n")
    assert not os.path.exists(out)
