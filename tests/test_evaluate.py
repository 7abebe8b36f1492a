import csv
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from utils.evaluate import evaluate_one, main
from utils.metrics import all_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def soft_alpha(rng, size=(24, 32)):
    return cv2.GaussianBlur(rng.integers(0, 256, size).astype(np.uint8), (5, 5), 2)


def trimap_for(alpha):
    trimap = np.full(alpha.shape, 128, np.uint8)
    trimap[:4] = 0
    trimap[-4:] = 255
    return trimap


@pytest.fixture
def dirs(tmp_path):
    paths = [tmp_path / name for name in ("pred", "alpha", "trimap")]
    for p in paths:
        p.mkdir()
    return [str(p) for p in paths]


def write(folder, name, image):
    assert cv2.imwrite(os.path.join(folder, name), image)


def test_plain_naming_prints_lines_mean_and_csv(dirs, tmp_path, rng, capsys):
    pred_dir, alpha_dir, trimap_dir = dirs
    expected = {}
    for name in ("a", "b"):
        alpha, pred = soft_alpha(rng), soft_alpha(rng)
        write(alpha_dir, name + ".png", alpha)
        write(pred_dir, name + ".png", pred)
        write(trimap_dir, name + ".png", trimap_for(alpha))
        expected[name] = all_metrics(pred, alpha, trimap_for(alpha))
    csv_path = str(tmp_path / "out.csv")
    assert main(["--pred-dir", pred_dir, "--alpha-dir", alpha_dir, "--trimap-dir", trimap_dir,
                 "--csv", csv_path, "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert f"a.png: SAD {expected['a']['sad']:.2f}" in out
    mean_sad = (expected["a"]["sad"] + expected["b"]["sad"]) / 2
    assert f"mean of 2 images: SAD {mean_sad:.2f}  MSE" in out and "Grad" in out and "Conn" in out
    with open(csv_path) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["name", "sad", "mse", "grad", "conn", "mad"]
    assert [r[0] for r in rows[1:]] == ["a.png", "b.png"]
    assert float(rows[1][4]) == pytest.approx(expected["a"]["conn"])


def test_composition_1k_naming_without_alpha_copy(dirs, rng, capsys):
    pred_dir, alpha_dir, trimap_dir = dirs
    alpha = soft_alpha(rng)
    write(alpha_dir, "boy-1518482_1920.png", alpha)
    for k in range(3):
        write(pred_dir, f"boy-1518482_1920_{k}.png", soft_alpha(rng))
        write(trimap_dir, f"boy-1518482_1920_{k}.png", trimap_for(alpha))
    assert main(["--pred-dir", pred_dir, "--alpha-dir", alpha_dir, "--trimap-dir", trimap_dir, "--workers", "1"]) == 0
    assert "mean of 3 images" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["missing_alpha", "missing_trimap", "size", "unreadable", "unused_alpha"])
def test_each_error_is_named_counted_and_fails_the_run(dirs, rng, capsys, case):
    pred_dir, alpha_dir, trimap_dir = dirs
    alpha = soft_alpha(rng)
    write(alpha_dir, "good.png", alpha)
    write(pred_dir, "good.png", alpha)
    write(trimap_dir, "good.png", trimap_for(alpha))
    if case == "missing_alpha":
        write(pred_dir, "orphan.png", alpha)
        write(trimap_dir, "orphan.png", trimap_for(alpha))
        needle = "orphan.png: no orphan.* in"
    elif case == "missing_trimap":
        write(pred_dir, "notri.png", alpha)
        write(alpha_dir, "notri.png", alpha)
        needle = "notri.png: no notri.* in " + trimap_dir
    elif case == "size":
        write(pred_dir, "small.png", alpha[:10])
        write(alpha_dir, "small.png", alpha)
        write(trimap_dir, "small.png", trimap_for(alpha))
        needle = "small.png: size 32x10 differs"
    elif case == "unreadable":
        with open(os.path.join(pred_dir, "broken.png"), "wb") as f:
            f.write(b"\x89PNG broken")
        write(alpha_dir, "broken.png", alpha)
        write(trimap_dir, "broken.png", trimap_for(alpha))
        needle = "broken.png: not a readable image"
    else:
        write(alpha_dir, "lonely.png", alpha)
        needle = "lonely.png: no prediction for it"
    code = main(["--pred-dir", pred_dir, "--alpha-dir", alpha_dir, "--trimap-dir", trimap_dir, "--workers", "1"])
    captured = capsys.readouterr()
    assert code == 1
    assert needle in captured.out + captured.err
    assert "1 problem(s)" in captured.err
    assert "mean of 1 images" in captured.out


def test_demo_offset_pictures_are_set_aside_with_a_note(dirs, rng, capsys):
    pred_dir, alpha_dir, trimap_dir = dirs
    alpha = soft_alpha(rng)
    for folder, image in ((pred_dir, alpha), (alpha_dir, alpha), (trimap_dir, trimap_for(alpha))):
        write(folder, "x.png", image)
    write(pred_dir, "x_offset1.png", np.zeros((8, 8, 3), np.uint8))
    write(pred_dir, "x_offset2.png", np.zeros((8, 8, 3), np.uint8))
    write(pred_dir, "y_offset1.png", alpha)  # no prediction y: a prediction of its own, unmatched
    code = main(["--pred-dir", pred_dir, "--alpha-dir", alpha_dir, "--trimap-dir", trimap_dir, "--workers", "1"])
    captured = capsys.readouterr()
    assert code == 1 and "y_offset1.png: no y_offset1.*" in captured.out + captured.err
    assert "note: 2 GCA offset pictures" in captured.err
    assert "mean of 1 images" in captured.out


def test_missing_folder_is_exit_2(dirs, capsys):
    pred_dir, alpha_dir, _ = dirs
    assert main(["--pred-dir", pred_dir, "--alpha-dir", alpha_dir, "--trimap-dir", "/nonexistent/x"]) == 2
    assert "--trimap-dir /nonexistent/x is not a folder" in capsys.readouterr().err


def test_16_bit_pair_gives_the_8_bit_figures(tmp_path, rng):
    alpha, pred = soft_alpha(rng), soft_alpha(rng)
    trimap = trimap_for(alpha)
    paths8 = [str(tmp_path / f"{n}8.png") for n in ("p", "a", "t")]
    paths16 = [str(tmp_path / f"{n}16.png") for n in ("p", "a", "t")]
    for path8, path16, image in zip(paths8, paths16, (pred, alpha, trimap)):
        cv2.imwrite(path8, image)
        cv2.imwrite(path16, image.astype(np.uint16) * 257)
    _, m8, _ = evaluate_one(("x", *paths8))
    _, m16, _ = evaluate_one(("x", *paths16))
    assert m8 == m16


def test_colour_ground_truth_uses_its_first_channel(tmp_path, rng):
    alpha, pred = soft_alpha(rng), soft_alpha(rng)
    trimap = trimap_for(alpha)
    noise = rng.integers(0, 256, alpha.shape, dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "gt.png"), np.dstack([noise, noise, alpha]))  # BGR: red = alpha
    cv2.imwrite(str(tmp_path / "p.png"), pred)
    cv2.imwrite(str(tmp_path / "t.png"), trimap)
    _, metrics, _ = evaluate_one(("x", str(tmp_path / "p.png"), str(tmp_path / "gt.png"), str(tmp_path / "t.png")))
    assert metrics == all_metrics(pred, alpha, trimap)


def test_module_runs_from_the_command_line(dirs, rng):
    pred_dir, alpha_dir, trimap_dir = dirs
    alpha = soft_alpha(rng)
    for folder, image in ((pred_dir, alpha), (alpha_dir, alpha), (trimap_dir, trimap_for(alpha))):
        write(folder, "x.png", image)
    result = subprocess.run([sys.executable, "-m", "utils.evaluate", "--pred-dir", pred_dir, "--alpha-dir", alpha_dir,
                             "--trimap-dir", trimap_dir], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "mean of 1 images: SAD 0.00  MSE 0.0000  Grad 0.00  Conn 0.00" in result.stdout
