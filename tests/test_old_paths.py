"""The `python -m` commands of the modules that utils/'s split by concept moved still run from their old
paths, with a note on stderr that names the new one."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# utils/<old name>.py -> the module it runs. The old paths are spelled in two pieces, so that a search and
# replace of old paths by new ones leaves this table as it is.
MOVED = {"evaluate": "utils.evaluation.evaluate", "cutout": "utils.cutouts.cutout",
         "trimap_from_alpha": "utils.trimaps.from_alpha", "benchmark_evaluate": "utils.evaluation.benchmark",
         "benchmark_foreground": "utils.cutouts.benchmark", "quickstart_report": "utils.evaluation.quickstart_report"}


def old_path(name: str) -> str:
    return "utils." + name


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("old_name", sorted(MOVED))
def test_an_old_path_runs_the_new_module_after_a_note(old_name):
    old, new = old_path(old_name), MOVED[old_name]
    result = run_module(old, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"note: `python -m {old}` is now `python -m {new}`\n"
    assert result.stdout == run_module(new, "--help").stdout  # the new module's own parser answered


@pytest.mark.slow
def test_the_old_evaluate_path_evaluates_with_worker_processes_and_keeps_the_exit_code(tmp_path):
    # Worker processes are spawned: they must find the module that runs, not the old path's note.
    rng = np.random.default_rng(0)
    folders = [tmp_path / name for name in ("pred", "alpha", "trimap")]
    for folder in folders:
        folder.mkdir()
    for index in range(2):
        alpha = rng.integers(0, 256, (24, 32), dtype=np.uint8)
        trimap = np.full(alpha.shape, 128, np.uint8)
        for folder, image in zip(folders, (255 - alpha, alpha, trimap)):
            cv2.imwrite(str(folder / f"x{index}.png"), image)
    args = [f"--{name}-dir={folder}" for name, folder in zip(("pred", "alpha", "trimap"), folders)] + ["--workers=2"]
    old, new = run_module(old_path("evaluate"), *args), run_module(MOVED["evaluate"], *args)
    assert old.returncode == new.returncode == 0, old.stderr
    assert old.stdout == new.stdout and "mean of 2 images" in old.stdout
    missing = [f"--pred-dir={tmp_path / 'none'}"] + args[1:]
    assert run_module(old_path("evaluate"), *missing).returncode == 2
    assert run_module(MOVED["evaluate"], *missing).returncode == 2
