"""Sharded inference and resumable runs: demo.py and main.py --phase test under
`python -m torch.distributed.run --nproc_per_node=2` on the CPU (gloo) write and score exactly what
one process does, rank 0 printing the one summary; a rank killed mid-run loses nothing finished,
and the same command with --resume does only what is missing, rewriting nothing."""
import contextlib
import io
import os
import re
import subprocess
import sys
from typing import Dict, List, Tuple

import pytest
import torch

import demo
import main
from dataloader.toy import make_toy_dataset
from test_plugin_family import RELEASED_KEY, TwoConv, write_config
from utils import distributed as du
from utils.io.shards import ShardedFolder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
# The family of tests/test_plugin_family.py (two convolutions): the ranks import it by its module path.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([ROOT, TESTS])}
IMAGES = 6
LOGGED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \w+ ")  # the logger's prefix
PER_IMAGE = re.compile(r" test\d\d_\d\.png: SAD ")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A toy test set of IMAGES pictures (<= 64 px), a config of the tiny family scoring it with
    the AIM-500 protocol and categories by name prefix, its checkpoint, and the demo arguments."""
    folder = str(tmp_path_factory.mktemp("sharding"))
    toy = os.path.join(folder, "toy")
    make_toy_dataset(toy, num_fg=1, num_bg=1, num_test=IMAGES // 2, fg_size=(48, 64), bg_size=(48, 64), seed=5)
    config = write_config(folder, toy, "tiny", 3)
    with open(config) as f:
        text = f.read().replace("[test]\n", '[test]\nprotocol = "aim500"\ncategory_from_prefix = "_"\n')
    with open(config, "w") as f:
        f.write(text)
    checkpoint = os.path.join(folder, "ckpt", "tiny", "latest_model.pth")
    os.makedirs(os.path.dirname(checkpoint))
    torch.manual_seed(0)
    torch.save({RELEASED_KEY: TwoConv(4).state_dict()}, checkpoint)
    args = ["--config", config, "--checkpoint", checkpoint, "--image-dir", f"{toy}/test/merged",
            "--trimap-dir", f"{toy}/test/trimaps", "--device", "cpu"]
    return folder, config, args


def torchrun(*args: str) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run --nproc_per_node=2 ARGS` in the repository, on a free port."""
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "--monitor-interval=0.2", *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=240)


def files(folder: str) -> Dict[str, bytes]:
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


@pytest.fixture(scope="module")
def one_process(setup, tmp_path_factory) -> Dict[str, bytes]:
    """The files a plain one-process demo.py run writes."""
    _, _, args = setup
    out = str(tmp_path_factory.mktemp("one"))
    assert demo.main(args + ["--output", out]) == 0
    written = files(os.path.join(out, "tiny_latest_model.pth"))
    assert len(written) == IMAGES
    return written


@pytest.mark.slow
def test_two_ranks_write_what_one_process_writes_bit_for_bit(setup, one_process, tmp_path):
    _, _, args = setup
    done = torchrun("demo.py", *args, "--output", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    folder = os.path.join(str(tmp_path), "tiny_latest_model.pth")
    assert files(folder) == one_process
    # one summary, from rank 0, counting both ranks' images
    assert done.stdout.count("images written to") == 1
    assert f"{IMAGES} of {IMAGES} images written to {folder} by 2 processes" in done.stdout


def logged_and_printed(out: str) -> Tuple[List[str], List[str]]:
    """(the per-image lines main.py logged, without their time, the lines it printed after them)."""
    lines = out.splitlines()
    per_image = [index for index, line in enumerate(lines) if LOGGED.match(line) and PER_IMAGE.search(line)]
    return [LOGGED.sub("", lines[index]) for index in per_image], lines[per_image[-1] + 1:]


@pytest.mark.slow
def test_the_test_phase_over_two_ranks_reports_the_one_process_figures_exactly(setup):
    _, config, _ = setup
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main.main(["--config", config, "--phase", "test"]) == 0
    per_image, printed = logged_and_printed(out.getvalue())
    assert len(per_image) == IMAGES and printed[1].startswith(f"tiny on {IMAGES} images: SAD ")
    assert "mean SAD per category:" in printed
    assert any(re.fullmatch(r"test01: SAD \d+\.\d+ \(2 images\)", line) for line in printed), printed
    done = torchrun("main.py", "--config", config, "--phase", "test")
    assert done.returncode == 0, done.stdout + done.stderr
    assert logged_and_printed(done.stdout) == (per_image, printed)


@pytest.mark.slow
def test_a_rank_killed_mid_run_loses_nothing_and_resume_does_only_the_rest(setup, one_process, tmp_path):
    _, _, args = setup
    folder = os.path.join(str(tmp_path), "tiny_latest_model.pth")
    stopped = torchrun(os.path.join("tests", "dying_rank.py"), *args, "--output", str(tmp_path))
    assert stopped.returncode != 0
    before = {name: os.stat(os.path.join(folder, name)).st_mtime_ns for name in os.listdir(folder)}
    assert 0 < len(before) < IMAGES, stopped.stderr
    # rank 0's one line: how many are written, which are not, how to finish
    line = next(line for line in stopped.stderr.splitlines() if line.startswith("interrupted: "))
    missing = sorted(set(one_process) - set(before))
    assert f"{len(before)} of {IMAGES} images written to {folder}; not done: " in line
    assert all(name in line for name in missing) and line.endswith("add --resume to the same command to finish")
    assert files(folder) == {name: one_process[name] for name in before}  # each file whole

    resumed = torchrun("demo.py", *args, "--output", str(tmp_path), "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"--resume: {len(before)} of {IMAGES} images have all their files" in resumed.stderr
    assert f"{IMAGES} of {IMAGES} images written to {folder} ({len(before)} before this run)" in resumed.stdout
    assert files(folder) == one_process
    assert {name: os.stat(os.path.join(folder, name)).st_mtime_ns for name in before} == before


def test_rank_0_names_the_images_of_a_rank_that_died_before_it_reported(setup, one_process, tmp_path,
                                                                         monkeypatch, capsys):
    """Where the launcher leaves the others running, the gather fails; rank 0 counts the dead
    rank's images from the folder and names those not written, with exit code 1."""
    names = sorted(one_process)
    pairs = [(os.path.join("images", name), None) for name in names]
    for name in names[1::2][:1]:  # of rank 1's share, one image was written before it died
        (tmp_path / name).write_bytes(one_process[name])

    def dead_peer(value):
        raise RuntimeError("Connection closed by peer")

    monkeypatch.setattr(du, "all_gather_objects", dead_peer)
    shards = ShardedFolder(du.DistInfo(0, 0, 2, torch.device("cpu")), pairs, str(tmp_path),
                           lambda image: [os.path.basename(image)])
    shards.written = [image for image, _ in pairs[0::2]]  # rank 0 did its share
    assert shards.summary(IMAGES, []) == 1
    out, err = capsys.readouterr()
    assert f"{IMAGES // 2 + 1} of {IMAGES} images written to {tmp_path} by 2 processes" in out
    lost = [os.path.join("images", name) for name in names[1::2][1:]]
    assert err.splitlines()[1:] == [f"  {image}: not written (rank 1 stopped before it reported)" for image in lost]
