"""Ctrl-C (SIGINT) and SIGTERM in the commands that work through a folder, and in the exporter: one
line saying how far they got and how to finish, no traceback, exit code 128 + the signal, every
file written whole; --resume (demo.py, utils.cutouts.cutout) finishes the rest without touching the files
already there. Each command runs as a user runs it, in a process of its own, stopped after its
first image is done and counted."""
import os
import re
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch

from conftest import random_gca

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "config", "gca-dist.toml")
COUNT = 10
EVALUATED = 400
SIGTERM_CAUGHT = 1 << (signal.SIGTERM - 1)  # in /proc/<pid>/status SigCgt once the command's handler is in


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A random GCA model in the released layout (DDP's `module.` prefix)."""
    path = tmp_path_factory.mktemp("ckpt") / "gca.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in random_gca(2).state_dict().items()}}, str(path))
    return str(path)


@pytest.fixture
def folders(tmp_path):
    """images/, trimaps/ and alphas/ of COUNT random 160 x 160 pictures."""
    rng = np.random.default_rng(0)
    paths = {name: tmp_path / name for name in ("images", "trimaps", "alphas")}
    for path in paths.values():
        path.mkdir()
    for index in range(COUNT):
        trimap = np.full((160, 160), 128, np.uint8)
        trimap[:40], trimap[-40:] = 0, 255
        alpha = np.where(trimap == 128, rng.integers(0, 256, trimap.shape), trimap).astype(np.uint8)
        for name, picture in (("images", rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)), ("trimaps", trimap),
                              ("alphas", alpha)):
            assert cv2.imwrite(str(paths[name] / f"p{index:02d}.png"), picture)
    return {name: str(path) for name, path in paths.items()}


def handler_installed(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as f:
        caught = next(line for line in f if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & SIGTERM_CAUGHT)


def run_and_stop(args, tmp_path, signum, progress="", process_group=False):
    """Starts `python args...` in the repository, waits until the command's own handler is in and
    its progress output has `progress` ('demo 1/': the progress line an item prints once it is
    done and counted), sends `signum` (to the whole process group, as a terminal's Ctrl-C does,
    with `process_group`); (exit code, stdout, stderr)."""
    out, err = open(tmp_path / "stdout.txt", "w+"), open(tmp_path / "stderr.txt", "w+")
    process = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=out, stderr=err,
                               start_new_session=process_group)
    try:
        deadline = time.monotonic() + 300
        while not (handler_installed(process.pid) and progress in open(tmp_path / "stderr.txt").read()):
            assert process.poll() is None, open(tmp_path / "stderr.txt").read()
            assert time.monotonic() < deadline, "the command never got ready"
            time.sleep(0.01)
        if process_group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        code = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    out.seek(0), err.seek(0)
    return code, out.read(), err.read()


def the_one_line(stderr: str, pattern: str) -> re.Match:
    """The 'interrupted: ...' line, checked to be the only one, the last, and without a traceback."""
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    lines = stderr.splitlines()
    assert [line for line in lines if line.startswith("interrupted")] == lines[-1:], stderr
    match = re.fullmatch(pattern, lines[-1])
    assert match, lines[-1]
    return match


def stamps(folder):
    return {name: os.stat(os.path.join(folder, name)).st_mtime_ns for name in os.listdir(folder)}


def check_resumed(folder, before, names, stderr, complete):
    """After --resume: every image's files, and those there before untouched."""
    assert f"--resume: {complete} of {COUNT} images have all their files in {folder} already; skipped" in stderr
    after = stamps(folder)
    for index in range(COUNT):
        for name in names(f"p{index:02d}"):
            assert cv2.imread(os.path.join(folder, name), cv2.IMREAD_UNCHANGED) is not None, name
            if name in before:
                assert after[name] == before[name], name


def complete_images(folder, names):
    """How many images have all their files (each readable); no write's temporary file is left."""
    files = os.listdir(folder)
    assert not [name for name in files if name.startswith(".tmp-")]
    whole = [index for index in range(COUNT) if all(name in files for name in names(f"p{index:02d}"))]
    for index in whole:
        for name in names(f"p{index:02d}"):
            assert cv2.imread(os.path.join(folder, name), cv2.IMREAD_UNCHANGED) is not None, name
    return len(whole)


@pytest.mark.slow
def test_demo_stopped_by_ctrl_c_says_how_far_it_got_and_resumes(checkpoint, folders, tmp_path):
    out = str(tmp_path / "out")
    command = ["demo.py", "--config", CONFIG, "--checkpoint", checkpoint, "--image-dir", folders["images"],
               "--trimap-dir", folders["trimaps"], "--output", out, "--device", "cpu"]
    save_dir = os.path.join(out, "gca-dist_gca.pth")
    names = lambda stem: [f"{stem}.png", f"{stem}_offset1.png", f"{stem}_offset2.png"]  # noqa: E731
    code, _, stderr = run_and_stop(command, tmp_path, signal.SIGINT, "demo 1/")
    assert code == 130
    match = the_one_line(stderr, rf"interrupted: (\d+) of {COUNT} images written to {re.escape(save_dir)}; "
                                 r"add --resume to the same command to finish")
    written = int(match.group(1))
    # a signal just after an image's last file and before it is counted leaves one more whole
    assert 1 <= written < COUNT and complete_images(save_dir, names) in (written, written + 1)
    before = stamps(save_dir)
    complete = complete_images(save_dir, names)
    resumed = subprocess.run([sys.executable, *command, "--resume"], cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{COUNT} of {COUNT} images written to {save_dir} ({complete} before this run)" in resumed.stdout
    assert f"demo {COUNT - complete}/{COUNT - complete}" in resumed.stderr  # only the rest ran
    check_resumed(save_dir, before, names, resumed.stderr, complete)


@pytest.mark.slow
def test_cutout_stopped_by_sigterm_says_how_far_it_got_and_resumes(folders, tmp_path):
    pytest.importorskip("pymatting")
    out = str(tmp_path / "cutouts")
    command = ["-m", "utils.cutouts.cutout", "--image-dir", folders["images"], "--alpha-dir", folders["alphas"],
               "--output", out, "--background", "#3366cc"]
    names = lambda stem: [f"{stem}_fg.png", f"{stem}_rgba.png", f"{stem}_composite.png"]  # noqa: E731
    code, _, stderr = run_and_stop(command, tmp_path, signal.SIGTERM, "cutout 1/")
    assert code == 143
    match = the_one_line(stderr, rf"interrupted: (\d+) of {COUNT} images cut out into {re.escape(out)}; "
                                 r"add --resume to the same command to finish")
    written = int(match.group(1))
    assert 1 <= written < COUNT and complete_images(out, names) in (written, written + 1)
    before, complete = stamps(out), complete_images(out, names)
    resumed = subprocess.run([sys.executable, *command, "--resume"], cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{COUNT} of {COUNT} images cut out into {out} ({complete} before this run)" in resumed.stdout
    check_resumed(out, before, names, resumed.stderr, complete)


@pytest.mark.slow
def test_prepare_foreground_stopped_keeps_its_foregrounds(folders, tmp_path):
    pytest.importorskip("pymatting")
    out = str(tmp_path / "fg")
    command = ["-m", "dataloader.prepare_foreground", "--image-dir", folders["images"], "--alpha-dir",
               folders["alphas"], "--output", out]
    code, _, stderr = run_and_stop(command, tmp_path, signal.SIGINT, "foreground 1/")
    assert code == 130
    match = the_one_line(stderr, rf"interrupted: (\d+) of {COUNT} foregrounds made in {re.escape(out)}; "
                                 r"run the same command again to finish \(it keeps them\)")
    made = int(match.group(1))
    assert 1 <= made < COUNT and complete_images(out, lambda stem: [f"{stem}.png"]) in (made, made + 1)


@pytest.mark.slow
def test_evaluate_stopped_by_ctrl_c_in_a_terminal_ends_its_workers_quietly(folders, tmp_path):
    # An image takes a few milliseconds: EVALUATED links to the same files, so that the run is
    # still busy when the signal comes.
    for name in ("alphas", "trimaps"):
        os.makedirs(tmp_path / f"many_{name}")
        for index in range(EVALUATED):
            os.symlink(os.path.join(folders[name], "p00.png"), tmp_path / f"many_{name}" / f"q{index:03d}.png")
    predictions = str(tmp_path / "many_alphas")
    # the whole process group gets SIGINT, as from a terminal: the pool's workers too
    command = ["-m", "utils.evaluation.evaluate", "--pred-dir", predictions, "--alpha-dir", predictions,
               "--trimap-dir", str(tmp_path / "many_trimaps"), "--workers", "2"]
    code, stdout, stderr = run_and_stop(command, tmp_path, signal.SIGINT, "evaluate 1/", process_group=True)
    assert code == 130
    match = the_one_line(stderr, rf"interrupted: (\d+) of {EVALUATED} images evaluated in "
                                 rf"{re.escape(predictions)}; nothing printed or written; "
                                 r"run the same command again to finish")
    assert 1 <= int(match.group(1)) < EVALUATED
    assert "mean of" not in stdout


@pytest.mark.slow
def test_export_stopped_writes_no_file(checkpoint, tmp_path):
    for name in ("onnx", "onnxruntime", "onnxscript"):
        pytest.importorskip(name)
    output = str(tmp_path / "model.onnx")
    command = ["-m", "networks.export", "--config", CONFIG, "--checkpoint", checkpoint, "--output", output]
    code, _, stderr = run_and_stop(command, tmp_path, signal.SIGTERM)
    assert code == 143
    the_one_line(stderr, rf"interrupted: {re.escape(output)} not written; run the same command again")
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".onnx") or name.startswith(".tmp-")]
