import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from utils.cutouts import cutout
from utils.io import batch
from utils.atomic import WriteError
from utils.cutouts.benchmark import smooth_field
from utils.extras import MissingExtraError
from utils.cutouts.foreground import composite, estimate_foreground, load_alpha, parse_background, rgba_image
from utils.io.images import read_first_channel

pymatting = pytest.importorskip("pymatting")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 64


def soft_alpha(size: int) -> np.ndarray:
    """float [0, 1]: an opaque body with a blurred edge, a half-transparent veil around part of it,
    and thin strands of partial opacity growing out of it, as hair and fabric do."""
    alpha = np.zeros((size, size), np.float32)
    centre, radius = (size // 2, size // 2), size // 4
    cv2.circle(alpha, centre, radius, 1.0, -1)
    cv2.ellipse(alpha, centre, (radius + 6, radius + 6), 0, 200, 340, 0.5, 6)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 1.5)
    for k in range(12):
        angle = 2 * np.pi * k / 12
        start = (round(centre[0] + radius * np.cos(angle)), round(centre[1] + radius * np.sin(angle)))
        end = (round(centre[0] + (radius + 18) * np.cos(angle + 0.2)),
               round(centre[1] + (radius + 18) * np.sin(angle + 0.2)))
        cv2.line(alpha, start, end, 0.4 + 0.05 * (k % 6), 1, cv2.LINE_AA)
    return np.clip(alpha, 0, 1)


def weighted_error(estimate: np.ndarray, truth: np.ndarray, alpha: np.ndarray) -> float:
    """alpha-weighted mean absolute colour error over 0 < alpha < 1 (0..255 scale)."""
    soft = (alpha > 0) & (alpha < 1)
    weights = alpha[soft][:, None]
    return float((weights * np.abs(estimate[soft] - truth[soft])).sum() / (3 * weights.sum()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_foreground_as_accurate_as_pymatting_and_far_better_than_the_image(seed):
    rng = np.random.default_rng(seed)
    size = 128
    foreground, background = smooth_field(rng, size, size, cells=4), smooth_field(rng, size, size, cells=4)
    alpha = np.round(soft_alpha(size) * 255).astype(np.uint8)
    unit = alpha / 255.0
    image = np.round(unit[..., None] * foreground + (1 - unit[..., None]) * background).astype(np.uint8)

    ours = estimate_foreground(image, alpha)
    direct = pymatting.estimate_foreground_ml(image / 255.0, unit) * 255
    assert ours.dtype == np.uint8 and ours.shape == image.shape
    error, direct_error, naive_error = (weighted_error(x.astype(np.float64), foreground, unit)
                                        for x in (ours, direct, image))
    assert error <= 1.05 * direct_error
    assert error < 0.5 * naive_error


def test_estimate_foreground_takes_floats_as_it_takes_uint8():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    alpha = np.round(soft_alpha(SIZE) * 255).astype(np.uint8)
    np.testing.assert_array_equal(estimate_foreground(image.astype(np.float32), alpha / 255.0),
                                  estimate_foreground(image, alpha))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        estimate_foreground(image, alpha.astype(np.float64))
    with pytest.raises(ValueError, match="must match"):
        estimate_foreground(image, alpha[1:])


def test_estimate_foreground_without_pymatting_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pymatting", None)
    with pytest.raises(MissingExtraError, match="pip install -r requirements-cutout.txt"):
        estimate_foreground(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8))


def test_rgba_and_composite():
    fg = np.full((2, 2, 3), (10, 20, 30), np.uint8)
    alpha = np.array([[0, 255], [128, 51]], np.uint8)
    background = np.full((2, 2, 3), 200, np.uint8)
    rgba = rgba_image(fg, alpha)
    assert rgba.shape == (2, 2, 4)
    np.testing.assert_array_equal(rgba[..., 3], alpha)
    out = composite(fg, alpha, background)
    np.testing.assert_array_equal(out[0, 0], (200, 200, 200))
    np.testing.assert_array_equal(out[0, 1], (10, 20, 30))
    np.testing.assert_array_equal(out[1, 1], np.round(0.2 * np.array([10, 20, 30]) + 0.8 * 200))


@pytest.mark.parametrize("spec, bgr", [
    ("#00ff00", (0, 255, 0)), ("#FF0000", (0, 0, 255)), ("#0f0", (0, 255, 0)), ("#F80", (0, 136, 255)),
    ("255,0,0", (0, 0, 255)), (" 0, 0 ,255 ", (255, 0, 0)),
    ("white", (255, 255, 255)), ("black", (0, 0, 0)), ("Red", (0, 0, 255)), ("green", (0, 255, 0)),
    ("blue", (255, 0, 0)), ("grey", (128, 128, 128)), ("gray", (128, 128, 128)),
])
def test_parse_background_colours(spec, bgr):
    background = parse_background(spec)
    assert background.colour_bgr == bgr
    filled = background.fill(3, 5)
    assert filled.shape == (3, 5, 3) and filled.dtype == np.uint8
    assert (filled == bgr).all()


@pytest.mark.parametrize("picture_size, interpolation", [((20, 40), cv2.INTER_CUBIC), ((90, 60), cv2.INTER_AREA)])
def test_background_picture_covers_and_is_centre_cropped(tmp_path, picture_size, interpolation):
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (*picture_size, 3), dtype=np.uint8)
    path = str(tmp_path / "back.png")
    cv2.imwrite(path, picture)
    filled = parse_background(path).fill(30, 30)
    scale = max(30 / picture_size[0], 30 / picture_size[1])
    size = (round(picture_size[1] * scale), round(picture_size[0] * scale))
    scaled = cv2.resize(picture, size, interpolation=interpolation)
    top, left = (size[1] - 30) // 2, (size[0] - 30) // 2
    np.testing.assert_array_equal(filled, scaled[top:top + 30, left:left + 30])


@pytest.mark.parametrize("spec, named", [
    ("#12345", "#12345: not a colour"), ("#12345g", "#12345g: not a colour"), ("#0g0", "#0g0: not a colour"),
    ("#0f00", "#0f00: not a colour"), ("300,0,0", "300,0,0: not a colour"),
    ("1,2", "1,2: not a colour"), ("purple", "purple: cannot be read"),
])
def test_parse_background_refusals_name_the_spec_and_what_is_accepted(spec, named):
    with pytest.raises(ValueError) as refused:
        parse_background(spec)
    assert named in str(refused.value)
    assert "#rrggbb" in str(refused.value) and "image file" in str(refused.value)


def test_parse_background_refuses_an_unreadable_file(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.png: not a readable image"):
        parse_background(str(path))


def test_load_alpha_colour_and_16_bit_agree_with_read_first_channel(tmp_path, rng):
    colour = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    deep = rng.integers(0, 65536, (8, 8), dtype=np.uint16)
    for name, picture in (("colour.png", colour), ("deep.png", deep), ("grey3.png", np.dstack([deep // 257] * 3))):
        cv2.imwrite(str(tmp_path / name), picture)
    alpha, warning = load_alpha(str(tmp_path / "colour.png"))
    np.testing.assert_array_equal(alpha, read_first_channel(str(tmp_path / "colour.png")))
    assert "colour.png" in warning and "red" in warning
    alpha, warning = load_alpha(str(tmp_path / "deep.png"))
    np.testing.assert_array_equal(alpha, np.round(read_first_channel(str(tmp_path / "deep.png"))).astype(np.uint8))
    assert warning == ""
    assert load_alpha(str(tmp_path / "grey3.png"))[1] == ""


@pytest.fixture
def folders(tmp_path):
    images, alphas = tmp_path / "images", tmp_path / "alphas"
    images.mkdir()
    alphas.mkdir()
    return str(images), str(alphas), str(tmp_path / "out")


def make_pair(images, alphas, name, rng, alpha=None):
    image = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    alpha = np.round(soft_alpha(SIZE) * 255).astype(np.uint8) if alpha is None else alpha
    cv2.imwrite(os.path.join(images, name + ".png"), image)
    cv2.imwrite(os.path.join(alphas, name + ".png"), alpha)
    return image, alpha


def read_back(path):
    return cv2.imread(path, cv2.IMREAD_UNCHANGED)


def test_cli_writes_fg_rgba_and_composite_that_agree(folders, rng, capsys):
    images, alphas, out = folders
    _, alpha = make_pair(images, alphas, "a", rng)
    assert cutout.main(["--image-dir", images, "--alpha-dir", alphas, "--output", out,
                        "--background", "0,255,0", "--device", "cuda"]) == 0
    fg, rgba, comp = (read_back(os.path.join(out, f"a_{kind}.png")) for kind in ("fg", "rgba", "composite"))
    assert fg.shape == (SIZE, SIZE, 3) and rgba.shape == (SIZE, SIZE, 4)
    assert fg.dtype == rgba.dtype == comp.dtype == np.uint8
    np.testing.assert_array_equal(rgba[..., 3], alpha)
    np.testing.assert_array_equal(rgba[..., :3], fg)
    weight = alpha[..., None] / 255.0
    expected = weight * fg + (1 - weight) * np.array([0, 255, 0])
    assert np.abs(comp - expected).max() <= 1
    captured = capsys.readouterr()
    assert "1 of 1 images cut out" in captured.out
    assert "--device cuda: the foreground estimator (pymatting) runs on the CPU" in captured.err


def test_cli_skips_bad_items_names_them_and_exits_1(folders, rng, capsys):
    images, alphas, out = folders
    make_pair(images, alphas, "good", rng)
    make_pair(images, alphas, "small", rng, alpha=np.zeros((SIZE // 2, SIZE), np.uint8))
    colour_alpha = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    make_pair(images, alphas, "colour", rng, alpha=colour_alpha)
    deep_alpha = (soft_alpha(SIZE) * 65535).astype(np.uint16)
    make_pair(images, alphas, "deep", rng, alpha=deep_alpha)
    make_pair(images, alphas, "broken", rng)
    with open(os.path.join(images, "broken.png"), "wb") as f:
        f.write(b"truncated")
    cv2.imwrite(os.path.join(images, "lonely.png"), np.zeros((4, 4, 3), np.uint8))

    assert cutout.main(["--image-dir", images, "--alpha-dir", alphas, "--output", out]) == 1
    err = capsys.readouterr().err
    assert os.path.join(alphas, "small.png") in err and "must be the same size" in err
    assert f"warning: {os.path.join(alphas, 'colour.png')}: the alpha is a colour image" in err
    assert f"{os.path.join(images, 'broken.png')}: not a readable image" in err
    assert f"{os.path.join(images, 'lonely.png')}: no alpha named lonely.*" in err
    assert "3 of 6 images failed" in err
    assert sorted(os.listdir(out)) == sorted(f"{name}_{kind}.png" for name in ("good", "colour", "deep")
                                             for kind in ("fg", "rgba"))
    np.testing.assert_array_equal(read_back(os.path.join(out, "colour_rgba.png"))[..., 3], colour_alpha[..., 2])
    np.testing.assert_array_equal(read_back(os.path.join(out, "deep_rgba.png"))[..., 3],
                                  np.round(deep_alpha / 257).astype(np.uint8))


def test_cli_names_ambiguous_stems(folders, rng, capsys):
    images, alphas, out = folders
    make_pair(images, alphas, "a", rng)
    cv2.imwrite(os.path.join(alphas, "a.jpg"), np.zeros((SIZE, SIZE), np.uint8))
    make_pair(images, alphas, "b", rng)
    cv2.imwrite(os.path.join(images, "b.jpg"), np.zeros((SIZE, SIZE, 3), np.uint8))
    assert cutout.main(["--image-dir", images, "--alpha-dir", alphas, "--output", out]) == 1
    err = capsys.readouterr().err
    assert "several alphas match (a.jpg, a.png)" in err
    assert f"{os.path.join(images, 'b.jpg')} and {os.path.join(images, 'b.png')} would both write b_fg.png" in err
    assert os.listdir(out) == []


def test_cli_failed_write_leaves_none_of_the_images_outputs(folders, rng, monkeypatch, capsys):
    images, alphas, out = folders
    make_pair(images, alphas, "a", rng)
    make_pair(images, alphas, "b", rng)
    real_write = batch.write_image

    def failing_write(path, picture):
        if path.endswith("a_rgba.png"):
            raise WriteError(f"{path}: could not be written (No space left on device)")
        real_write(path, picture)

    monkeypatch.setattr(batch, "write_image", failing_write)
    assert cutout.main(["--image-dir", images, "--alpha-dir", alphas, "--output", out]) == 1
    assert "a_rgba.png: could not be written" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["b_fg.png", "b_rgba.png"]


def test_cli_names_an_image_that_runs_out_of_memory_and_goes_on(folders, rng, monkeypatch, capsys):
    images, alphas, out = folders
    make_pair(images, alphas, "a", rng)
    make_pair(images, alphas, "b", rng)
    estimate = cutout.estimate_foreground

    def out_of_memory_on_a(image, alpha):
        if image[0, 0].tolist() == cv2.imread(os.path.join(images, "a.png"))[0, 0].tolist():
            np.empty(2 ** 50, np.uint8)  # numpy's own MemoryError, with its size
        return estimate(image, alpha)

    monkeypatch.setattr(cutout, "estimate_foreground", out_of_memory_on_a)
    assert cutout.main(["--image-dir", images, "--alpha-dir", alphas, "--output", out]) == 1
    err = capsys.readouterr().err
    assert (f"skipped: {os.path.join(images, 'a.png')}: out of memory on this {SIZE}x{SIZE} image (it tried to "
            "allocate 1024.0 TiB more)") in err
    assert "1 of 2 images failed" in err and sorted(os.listdir(out)) == ["b_fg.png", "b_rgba.png"]


@pytest.mark.parametrize("spec, message", [
    ("#zz0000", "error: --background #zz0000: not a colour"),
    ("missing.png", "error: --background missing.png: cannot be read"),
])
def test_cli_bad_background_exits_2_before_any_work(folders, rng, capsys, spec, message):
    images, alphas, out = folders
    make_pair(images, alphas, "a", rng)
    assert cutout.main(["--image-dir", images, "--alpha-dir", alphas, "--output", out, "--background", spec]) == 2
    assert message in capsys.readouterr().err
    assert not os.path.exists(out)


def test_cli_refuses_output_inside_an_input_folder(folders, rng, capsys):
    images, alphas, _ = folders
    make_pair(images, alphas, "a", rng)
    out = os.path.join(alphas, "cutouts")
    assert cutout.main(["--image-dir", images, "--alpha-dir", alphas, "--output", out]) == 2
    assert f"lies inside the input folder {alphas}" in capsys.readouterr().err
    assert not os.path.exists(out)


def test_cli_missing_folder_and_missing_pymatting_exit_2(folders, rng, monkeypatch, capsys):
    images, alphas, out = folders
    make_pair(images, alphas, "a", rng)
    assert cutout.main(["--image-dir", images + "-nope", "--alpha-dir", alphas, "--output", out]) == 2
    assert f"error: --image-dir {images}-nope is not a folder" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "pymatting", None)
    assert cutout.main(["--image-dir", images, "--alpha-dir", alphas, "--output", out]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: foreground colours need pymatting: pip install -r requirements-cutout.txt"
    assert not os.path.exists(out)


def test_cli_help_runs_as_a_module_and_says_the_cpu_is_used():
    result = subprocess.run([sys.executable, "-m", "utils.cutouts.cutout", "--help"], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    assert "--background SPEC" in result.stdout and "runs on the CPU" in result.stdout
