import os

import numpy as np
import pytest
from PIL import Image

from dataloader.composite_testset import composite, main


def save(path, array):
    Image.fromarray(array).save(path)


@pytest.fixture
def adobe(tmp_path):
    """Two foregrounds (6x4 and 3x3) and four backgrounds, two of them smaller than the fg."""
    for name in ("fg", "alpha", "bg"):
        (tmp_path / name).mkdir()
    fg = np.zeros((4, 6, 3), np.uint8)
    fg[:] = (200, 100, 50)
    alpha = np.zeros((4, 6), np.uint8)
    alpha[:, 0] = 255
    alpha[:, 1] = 128
    save(tmp_path / "fg" / "a b.png", fg)
    save(tmp_path / "alpha" / "a b.png", alpha)
    save(tmp_path / "fg" / "c.jpg", np.full((3, 3, 3), 90, np.uint8))  # a JPEG foreground
    save(tmp_path / "alpha" / "c.jpg", np.full((3, 3), 255, np.uint8))
    big = np.zeros((10, 12, 3), np.uint8)
    big[:] = (10, 20, 30)
    big[5:, 6:] = 250  # outside the top-left 4x6 crop
    save(tmp_path / "bg" / "big.jpg", big)
    save(tmp_path / "bg" / "small.png", np.full((2, 3, 3), 40, np.uint8))  # 3x2 -> x2 -> 6x4
    gradient = np.tile(np.arange(0, 200, 50, dtype=np.uint8)[None, :, None], (2, 1, 3))  # 4x2
    save(tmp_path / "bg" / "gradient.png", gradient)
    save(tmp_path / "bg" / "other.png", np.full((3, 3, 3), 7, np.uint8))
    (tmp_path / "fg_names.txt").write_text("a b.png\nc.jpg\n")
    (tmp_path / "bg_names.txt").write_text("big.jpg\nsmall.png\ngradient.png\nother.png\n")
    return tmp_path


def run(root, per=2):
    from dataloader import composite_testset
    fg_names = ["a b.png", "c.jpg"]
    bg_names = ["big.jpg", "small.png", "gradient.png", "other.png"]
    return composite_testset.composite_test_set(str(root / "fg"), str(root / "alpha"), str(root / "bg"),
                                                fg_names, bg_names, str(root / "merged"), per)


def load(path):
    return np.asarray(Image.open(path))


def test_composite_formula_by_hand():
    fg = np.array([[[200, 100, 50]] * 3], np.uint8)
    bg = np.array([[[10, 20, 30]] * 3], np.uint8)
    alpha = np.array([[255, 128, 0]], np.uint8)
    # 128/255 * 200 + 127/255 * 10 = 105.37 -> 105; 100 -> 60.2 -> 60; 50 -> 40.0... -> 40
    assert composite(fg, bg, alpha).tolist() == [[[200, 100, 50], [105, 60, 40], [10, 20, 30]]]


def test_background_order_crop_and_upscale(adobe):
    assert run(adobe) == 4
    merged = adobe / "merged"
    assert sorted(os.listdir(merged)) == ["a b_0.png", "a b_1.png", "c_0.png", "c_1.png"]
    first = load(merged / "a b_0.png")
    assert first.shape == (4, 6, 3)
    assert first[:, 0].tolist() == [[200, 100, 50]] * 4
    bg = load(adobe / "bg" / "big.jpg")[:4, :6]
    expected_mid = (128 / 255 * np.array([200, 100, 50]) + 127 / 255 * bg[:, 1].astype(float)).astype(np.uint8)
    assert np.array_equal(first[:, 1], expected_mid)
    assert np.array_equal(first[:, 2:], bg[:, 2:])  # top-left crop of the larger background
    second = load(merged / "a b_1.png")  # 3x2 background upscaled x2 (bicubic keeps a constant)
    assert second[:, 2:].tolist() == [[[40, 40, 40]] * 4] * 4
    # c.jpg takes the next two names in order: gradient (4x2, upscaled by 1.5) and other
    third = load(merged / "c_0.png")
    fg_c = np.asarray(Image.open(adobe / "fg" / "c.jpg").convert("RGB"))
    assert np.array_equal(third, fg_c)  # alpha 255 everywhere


def test_upscale_is_pil_bicubic_of_the_smaller_background(adobe):
    from dataloader.composite_testset import fit_background
    small = Image.open(adobe / "bg" / "gradient.png")
    fitted = np.asarray(fit_background(small, 3, 3))
    expected = np.asarray(small.convert("RGB").resize((6, 3), Image.BICUBIC))[:3, :3]
    assert np.array_equal(fitted, expected)


def test_command_line_and_missing_files(adobe, capsys):
    args = ["--fg-dir", str(adobe / "fg"), "--alpha-dir", str(adobe / "alpha"), "--bg-dir", str(adobe / "bg"),
            "--fg-names", str(adobe / "fg_names.txt"), "--bg-names", str(adobe / "bg_names.txt"),
            "--out", str(adobe / "out")]
    assert main(args) == 2  # 2 foregrounds need 40 backgrounds
    assert "need 40 background names" in capsys.readouterr().err
    (adobe / "bg_names.txt").write_text("\n".join(["big.jpg"] * 39 + ["gone.jpg"]) + "\n")
    assert main(args) == 2
    assert "gone.jpg" in capsys.readouterr().err
    (adobe / "bg_names.txt").write_text("\n".join(["big.jpg"] * 40) + "\n")
    assert main(args) == 0
    assert len(os.listdir(adobe / "out")) == 40
