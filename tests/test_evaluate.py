import csv
import math
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from utils.evaluation import evaluate
from utils.evaluation.evaluate import evaluate_one, main, mean_metrics
from utils.evaluation.metrics import all_metrics

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
    assert "note: 2 pictures that demo.py writes beside its alphas (*_offset1, *_offset2) are not predictions" \
        in captured.err
    assert "mean of 1 images" in captured.out


def test_every_picture_demo_writes_beside_an_alpha_is_left_out_with_one_line(dirs, rng, capsys):
    pred_dir, alpha_dir, trimap_dir = dirs
    alpha = soft_alpha(rng)
    for folder, image in ((pred_dir, alpha), (alpha_dir, alpha), (trimap_dir, trimap_for(alpha))):
        write(folder, "x.png", image)
    extras = ("_fg", "_rgba", "_composite", "_trimap", "_offset1", "_offset2")
    for suffix in extras:
        write(pred_dir, f"x{suffix}.png", np.zeros(alpha.shape + (3,), np.uint8))
    assert main(["--pred-dir", pred_dir, "--alpha-dir", alpha_dir, "--trimap-dir", trimap_dir, "--workers", "1"]) == 0
    captured = capsys.readouterr()
    notes = [line for line in captured.err.splitlines() if "not predictions" in line]
    assert len(notes) == 1 and notes[0].startswith("note: 6 pictures that demo.py writes beside its alphas")
    assert all(f"*{suffix}" in notes[0] for suffix in extras)
    assert "mean of 1 images:" in captured.out and "problem" not in captured.err


def test_a_prediction_named_like_an_extra_with_its_own_ground_truth_is_evaluated(dirs, rng, capsys):
    pred_dir, alpha_dir, trimap_dir = dirs
    for name in ("x", "x_fg"):
        alpha = soft_alpha(rng)
        for folder, image in ((pred_dir, alpha), (alpha_dir, alpha), (trimap_dir, trimap_for(alpha))):
            write(folder, f"{name}.png", image)
    assert main(["--pred-dir", pred_dir, "--alpha-dir", alpha_dir, "--trimap-dir", trimap_dir, "--workers", "1"]) == 0
    assert "mean of 2 images" in capsys.readouterr().out


@pytest.mark.parametrize("allow", [False, True], ids=["refused", "allowed"])
def test_a_partial_test_set_is_named_counted_and_fails_unless_allowed(dirs, rng, capsys, allow):
    pred_dir, alpha_dir, trimap_dir = dirs
    alpha = soft_alpha(rng)
    write(alpha_dir, "boy.png", alpha)
    for k in range(8):
        write(trimap_dir, f"boy_{k}.png", trimap_for(alpha))
    for k in range(4):
        write(pred_dir, f"boy_{k}.png", soft_alpha(rng))
    code = main(["--pred-dir", pred_dir, "--alpha-dir", alpha_dir, "--trimap-dir", trimap_dir, "--workers", "1"]
                + (["--allow-subset"] if allow else []))
    captured = capsys.readouterr()
    assert code == (0 if allow else 1)
    assert "mean of 4 images (4 of 8 test images have no prediction): SAD" in captured.out
    for k in range(4, 8):
        named = os.path.join(trimap_dir, f'boy_{k}.png') + ("" if allow else f": no prediction for it in {pred_dir}")
        assert named in captured.err
    assert ("4 problem(s)" in captured.err) != allow
    assert ("--allow-subset: 4 ground truth(s) without a prediction" in captured.err) == allow


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
    _, m8, _, _ = evaluate_one(("x", *paths8))
    _, m16, _, _ = evaluate_one(("x", *paths16))
    assert m8 == m16


def test_colour_ground_truth_uses_its_first_channel(tmp_path, rng):
    alpha, pred = soft_alpha(rng), soft_alpha(rng)
    trimap = trimap_for(alpha)
    noise = rng.integers(0, 256, alpha.shape, dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "gt.png"), np.dstack([noise, noise, alpha]))  # BGR: red = alpha
    cv2.imwrite(str(tmp_path / "p.png"), pred)
    cv2.imwrite(str(tmp_path / "t.png"), trimap)
    _, metrics, _, _ = evaluate_one(("x", str(tmp_path / "p.png"), str(tmp_path / "gt.png"), str(tmp_path / "t.png")))
    assert metrics == all_metrics(pred, alpha, trimap)


def test_module_runs_from_the_command_line(dirs, rng):
    pred_dir, alpha_dir, trimap_dir = dirs
    alpha = soft_alpha(rng)
    for folder, image in ((pred_dir, alpha), (alpha_dir, alpha), (trimap_dir, trimap_for(alpha))):
        write(folder, "x.png", image)
    result = subprocess.run([sys.executable, "-m", "utils.evaluation.evaluate", "--pred-dir", pred_dir,
                             "--alpha-dir", alpha_dir, "--trimap-dir", trimap_dir], cwd=ROOT, capture_output=True,
                             text=True)
    assert result.returncode == 0, result.stderr
    assert "mean of 1 images: SAD 0.00  MSE 0.0000  Grad 0.00  Conn 0.00" in result.stdout


def run_cli(dirs, *extra):
    pred_dir, alpha_dir, trimap_dir = dirs
    return main(["--pred-dir", pred_dir, "--alpha-dir", alpha_dir, "--trimap-dir", trimap_dir, *extra])


def write_good_pair(dirs, name, alpha):
    for folder, image in zip(dirs, (alpha, alpha, trimap_for(alpha))):
        write(folder, name, image)


@pytest.mark.parametrize("unknown, known", [(127, (0, 255)), (1, (0, 2))], ids=["127_unknown", "labels_0_1_2"])
def test_trimap_without_128_leaves_mse_and_mad_undefined_named_and_fails(dirs, tmp_path, rng, capsys, unknown, known):
    pred_dir, alpha_dir, trimap_dir = dirs
    alpha = soft_alpha(rng)
    write_good_pair(dirs, "good.png", alpha)
    trimap = np.full(alpha.shape, unknown, np.uint8)
    trimap[:4], trimap[-4:] = known
    write(pred_dir, "odd.png", soft_alpha(rng))
    write(alpha_dir, "odd.png", alpha)
    write(trimap_dir, "odd.png", trimap)
    csv_path = str(tmp_path / "out.csv")
    code = run_cli(dirs, "--workers", "1", "--csv", csv_path)
    captured = capsys.readouterr()
    assert code == 1
    assert "nan" not in captured.out.lower()
    assert "odd.png: SAD" in captured.out and "MSE -  Grad" in captured.out and captured.out.count("MAD -") == 1
    assert "mean of 2 images (MSE and MAD over 1: 1 image has no unknown pixel): SAD 0.00  MSE 0.0000" in captured.out
    assert (f"odd.png: MSE and MAD undefined, left out of their means: no pixel of the trimap "
            f"{os.path.join(trimap_dir, 'odd.png')} equals 128") in captured.err
    assert captured.err.count("warning:") == 1 and "counts only pixels equal to 128" in captured.err
    with open(csv_path) as f:
        odd_row = next(row for row in csv.reader(f) if row[0] == "odd.png")
    assert odd_row == ["odd.png", "0.0", "", "0.0", "0.0", ""]  # sums over no pixel are 0, means undefined


def test_mean_metrics_leaves_out_undefined_and_missing_figures():
    rows = [{"sad": 1.0, "mse": math.nan}, {"sad": 3.0, "mse": 0.5, "grad": 2.0}, {"sad": 2.0, "mse": math.nan}]
    means, counts = mean_metrics(rows)
    assert means == {"sad": 2.0, "mse": 0.5, "grad": 2.0} and counts == {"sad": 3, "mse": 1, "grad": 1}
    means, counts = mean_metrics([{"mse": math.nan}])
    assert math.isnan(means["mse"]) and counts == {"mse": 0}


def test_trimap_with_other_values_warns_once_per_file_from_the_workers(dirs, rng, capsys):
    pred_dir, alpha_dir, trimap_dir = dirs
    alpha = soft_alpha(rng)
    trimap = trimap_for(alpha)
    trimap[10:12] = 127
    write(alpha_dir, "x.png", alpha)
    write(trimap_dir, "x.png", trimap)
    for k in range(3):  # Composition-1K naming: all three predictions use the trimap x.png
        write(pred_dir, f"x_{k}.png", soft_alpha(rng))
    code = run_cli(dirs, "--workers", "2")
    captured = capsys.readouterr()
    assert code == 0
    assert captured.err.count("warning:") == 1
    assert (f"warning: {os.path.join(trimap_dir, 'x.png')}: trimap has values other than 0, 128 and 255 "
            "(e.g. 127 on 64 pixels); the Composition-1K protocol counts only pixels equal to 128 as unknown"
            ) in captured.err
    assert "mean of 3 images: SAD" in captured.out


@pytest.mark.parametrize("case", ["missing_folder", "folder"])
def test_bad_csv_path_is_exit_2_before_any_metric(dirs, tmp_path, rng, capsys, case):
    write_good_pair(dirs, "x.png", soft_alpha(rng))
    csv_path = str(tmp_path / "nowhere" / "out.csv") if case == "missing_folder" else str(tmp_path)
    reason = f"folder {tmp_path / 'nowhere'} does not exist" if case == "missing_folder" else "is a folder"
    code = run_cli(dirs, "--workers", "1", "--csv", csv_path)
    captured = capsys.readouterr()
    assert code == 2
    assert f"error: --csv {csv_path}: {reason}" in captured.err
    assert captured.out == ""


def test_csv_write_failure_is_exit_1_after_the_figures(dirs, tmp_path, rng, capsys, monkeypatch):
    write_good_pair(dirs, "x.png", soft_alpha(rng))
    folder = tmp_path / "csv"
    folder.mkdir()
    pair_folders = evaluate.pair_folders

    def pair_then_remove_folder(*args):  # the folder goes while the run is under way
        shutil.rmtree(folder)
        return pair_folders(*args)

    monkeypatch.setattr(evaluate, "pair_folders", pair_then_remove_folder)
    code = run_cli(dirs, "--workers", "1", "--csv", str(folder / "out.csv"))
    captured = capsys.readouterr()
    assert code == 1
    assert f"error: {folder / 'out.csv'}: could not be written" in captured.err
    assert "x.png: SAD 0.00" in captured.out and "mean of 1 images: SAD 0.00" in captured.out


def test_aim500_protocol_csv_columns_values_and_units(dirs, tmp_path, rng, capsys):
    from utils.evaluation.metrics_aim500 import aim500_metrics
    pred_dir, alpha_dir, trimap_dir = dirs
    expected = {}
    for name in ("a", "b"):
        alpha, pred = soft_alpha(rng), soft_alpha(rng)
        for folder, image in zip(dirs, (pred, alpha, trimap_for(alpha))):
            write(folder, name + ".png", image)
        expected[name + ".png"] = aim500_metrics(pred, alpha, trimap_for(alpha))
    csv_path = str(tmp_path / "out.csv")
    assert run_cli(dirs, "--protocol", "aim500", "--csv", csv_path, "--mse-scale", "1e3", "--workers", "2") == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("protocol aim500: AIM-500") and "Grad in tens" in out.splitlines()[0]
    assert "MSE figures multiplied by 1000 (--mse-scale)" in out.splitlines()[0]
    a = expected["a.png"]
    assert f"a.png: SAD {a['sad']:.2f}  MSE {a['mse'] * 1e3:.4f}  MAD {a['mad']:.4f}  Grad {a['grad']:.2f}" in out
    assert f"SAD-Trimap {a['sad_trimap']:.2f}  MSE-Trimap {a['mse_trimap'] * 1e3:.4f}" in out
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["name", "sad", "mse", "mad", "grad", "conn", "sad_trimap", "mse_trimap", "mad_trimap",
                             "sad_fg", "sad_bg"]
    for row in rows:
        assert {k: float(v) for k, v in row.items() if k != "name"} == expected[row["name"]]  # raw, unscaled


def test_comp1k_header_states_its_units(dirs, rng, capsys):
    alpha = soft_alpha(rng)
    write_good_pair(dirs, "a.png", alpha)
    assert run_cli(dirs, "--workers", "1") == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "protocol comp1k: Composition-1K (the MATLAB reference), over the trimap's unknown pixels only; SAD, Grad and "
        "Conn in thousands, MSE and MAD per unknown pixel")


@pytest.mark.parametrize("extra, needle", [
    (["--mse-scale", "0"], "--mse-scale 0: give a positive number"),
    (["--category-from-prefix", ""], "--category-from-prefix: give the separator"),
    (["--gallery", "G", "--worst", "-1"], "--worst -1: give 0 or more"),
    (["--workers", "0"], "--workers 0: give 1 or more"),
])
def test_bad_report_arguments_are_exit_2(dirs, rng, capsys, extra, needle):
    write_good_pair(dirs, "a.png", soft_alpha(rng))
    assert run_cli(dirs, *extra) == 2
    assert needle in capsys.readouterr().err


def test_aim500_trimap_without_unknown_pixels_is_named(dirs, rng, capsys):
    pred_dir, alpha_dir, trimap_dir = dirs
    alpha = soft_alpha(rng)
    write(pred_dir, "k.png", alpha)
    write(alpha_dir, "k.png", alpha)
    write(trimap_dir, "k.png", np.where(alpha > 127, 255, 0).astype(np.uint8))
    assert run_cli(dirs, "--protocol", "aim500", "--workers", "1") == 1
    captured = capsys.readouterr()
    assert "MSE-Trimap -" in captured.out and "nan" not in captured.out.lower()
    assert ("k.png: MSE-Trimap and MAD-Trimap undefined, left out of their means: no pixel of the trimap "
            f"{os.path.join(trimap_dir, 'k.png')} is unknown") in captured.err
