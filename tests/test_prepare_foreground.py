"""python -m dataloader.prepare_foreground: the photos' foregrounds, estimated once, resumable."""
import os
import re
import shlex
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from conftest import random_gca
from dataloader.prepare_foreground import main as prepare_main
from dataloader.toy import make_photo_dataset
from utils.checkpoint import read_checkpoint
from utils.cutouts.foreground import estimate_foreground, load_alpha
from utils.io.images import read_image

pytest.importorskip("pymatting")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# prepare_foreground, killed (SIGKILL) halfway through writing its third foreground
KILLED_ON_THE_THIRD_WRITE = """
import os, signal, sys
sys.path.insert(0, {root!r})
import utils.io.images as image_io
from utils.atomic import atomic_file
from dataloader.prepare_foreground import main
written = []
def write_bytes(path, data):
    written.append(path)
    if len(written) == 3:
        with atomic_file(path) as f:
            f.write(data[:len(data) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    with atomic_file(path) as f:
        f.write(data)
image_io.write_bytes = write_bytes
sys.exit(main(sys.argv[1:]))
"""


def make_photos(root, count, rng, size=(40, 52)):
    """Photos with soft alphas: `root/image/pNN.png`, `root/alpha/pNN.png`."""
    for name in ("image", "alpha"):
        os.makedirs(os.path.join(root, name), exist_ok=True)
    for i in range(count):
        alpha = np.zeros(size, np.uint8)
        alpha[8:-8, 10:-10] = 255
        alpha = cv2.GaussianBlur(alpha, (0, 0), 3)
        photo = cv2.GaussianBlur(rng.integers(0, 256, (*size, 3), dtype=np.uint8), (0, 0), 2)
        cv2.imwrite(os.path.join(root, "image", f"p{i:02d}.png"), photo)
        cv2.imwrite(os.path.join(root, "alpha", f"p{i:02d}.png"), alpha)
    return os.path.join(root, "image"), os.path.join(root, "alpha")


def expected_foreground(image_path, alpha_path):
    return estimate_foreground(read_image(image_path), load_alpha(alpha_path)[0])


def test_the_foregrounds_equal_utils_foreground_on_the_same_pairs(tmp_path, rng, capsys):
    images, alphas = make_photos(str(tmp_path), 3, rng)
    assert prepare_main(["--image-dir", images, "--alpha-dir", alphas, "--output", str(tmp_path / "fg")]) == 0
    assert "3 foregrounds made, 0 already in" in capsys.readouterr().out
    for name in sorted(os.listdir(images)):
        written = cv2.imread(str(tmp_path / "fg" / name), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(written, expected_foreground(os.path.join(images, name), os.path.join(alphas, name)))


@pytest.mark.slow
def test_a_killed_run_resumes_without_redoing_or_corrupting_files(tmp_path, rng):
    images, alphas = make_photos(str(tmp_path), 5, rng)
    output = tmp_path / "fg"
    args = ["--image-dir", images, "--alpha-dir", alphas, "--output", str(output)]
    killed = subprocess.run([sys.executable, "-c", KILLED_ON_THE_THIRD_WRITE.format(root=ROOT), *args],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr
    whole = sorted(name for name in os.listdir(output) if not name.startswith("."))
    partial = [name for name in os.listdir(output) if name.startswith(".tmp-")]
    assert whole == ["p00.png", "p01.png"] and len(partial) == 1 and len(os.listdir(output)) == 3
    stamps = {name: os.stat(output / name).st_mtime_ns for name in whole}
    resumed = subprocess.run([sys.executable, "-m", "dataloader.prepare_foreground", *args], cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "3 foregrounds made, 2 already in" in resumed.stdout and f"removed {output / partial[0]}" in resumed.stderr
    assert sorted(os.listdir(output)) == [f"p0{i}.png" for i in range(5)]
    assert {name: os.stat(output / name).st_mtime_ns for name in stamps} == stamps  # not redone
    for name in os.listdir(output):
        written = cv2.imread(str(output / name), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(written, expected_foreground(os.path.join(images, name), os.path.join(alphas, name)))


def test_bad_pairs_are_named_and_skipped_and_the_rest_made(tmp_path, rng, capsys):
    images, alphas = make_photos(str(tmp_path), 2, rng)
    cv2.imwrite(os.path.join(images, "lonely.png"), np.zeros((20, 20, 3), np.uint8))
    cv2.imwrite(os.path.join(images, "small.png"), np.zeros((20, 20, 3), np.uint8))
    cv2.imwrite(os.path.join(alphas, "small.png"), np.zeros((21, 20), np.uint8))
    cv2.imwrite(os.path.join(images, "colour.png"), np.zeros((20, 20, 3), np.uint8))
    cv2.imwrite(os.path.join(alphas, "colour.png"), np.dstack([np.zeros((20, 20), np.uint8)] * 2 +
                                                              [np.full((20, 20), 255, np.uint8)]))
    open(os.path.join(images, "broken.png"), "wb").write(b"not a png")
    cv2.imwrite(os.path.join(alphas, "broken.png"), np.zeros((20, 20), np.uint8))
    output = str(tmp_path / "fg")
    assert prepare_main(["--image-dir", images, "--alpha-dir", alphas, "--output", output]) == 1
    err = capsys.readouterr().err
    assert f"{os.path.join(images, 'lonely.png')}: no alpha named lonely.* in {alphas}" in err
    small = os.path.join(alphas, "small.png")
    assert f"{small}: alpha is 20x21 but {os.path.join(images, 'small.png')} is 20x20" in err
    assert f"{os.path.join(alphas, 'colour.png')}: not a grey alpha" in err
    assert f"{os.path.join(images, 'broken.png')}: not a readable image" in err
    assert "4 of 6 images failed" in err
    assert sorted(os.listdir(output)) == ["p00.png", "p01.png"]
    # a foreground already there but of another size (another photo's, or the user's) is named, kept
    cv2.imwrite(os.path.join(output, "p00.png"), np.zeros((5, 5, 3), np.uint8))
    assert prepare_main(["--image-dir", images, "--alpha-dir", alphas, "--output", output]) == 1
    assert f"{os.path.join(output, 'p00.png')} is 5x5 but its photo" in capsys.readouterr().err
    assert cv2.imread(os.path.join(output, "p00.png")).shape == (5, 5, 3)


def test_an_empty_folder_and_an_output_inside_an_input_are_refused(tmp_path, rng, capsys):
    images, alphas = make_photos(str(tmp_path), 1, rng)
    (tmp_path / "empty").mkdir()
    assert prepare_main(["--image-dir", str(tmp_path / "empty"), "--alpha-dir", alphas,
                         "--output", str(tmp_path / "fg")]) == 2
    assert "error: no images" in capsys.readouterr().err
    assert prepare_main(["--image-dir", images, "--alpha-dir", alphas, "--output", os.path.join(images, "fg")]) == 2
    assert "lies inside the input folder" in capsys.readouterr().err
    assert not os.path.exists(os.path.join(images, "fg"))


def readme_recipe():
    """The four commands of docs/training.md's fine-tuning recipe."""
    text = open(os.path.join(ROOT, "docs", "training.md")).read()
    section = text[text.index("## Fine-tune gca-dist.pth on your photos and alphas in 4 commands"):]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1).strip().splitlines()


# The recipe's config, lowered to run in seconds; every other key as shipped.
SMALL = {"total_step": "2", "warmup_step": "1", "val_step": "2", "checkpoint_step": "2", "accumulate": "2",
         "batch_size": "2", "crop_size": "64", "workers": "0", "decode_cache": '""'}


@pytest.mark.slow
def test_the_readme_recipe_runs_as_written_on_a_small_set(tmp_path):
    commands = readme_recipe()
    assert len(commands) == 4 and all(c.startswith(".venv/bin/python ") for c in commands)
    for name in ("dataloader", "networks", "utils", "main.py", "trainer.py"):
        os.symlink(os.path.join(ROOT, name), tmp_path / name)
    (tmp_path / "config").mkdir()
    config = open(os.path.join(ROOT, "config", "finetune-photos.toml")).read()
    for key, value in SMALL.items():
        config, count = re.subn(rf"^{key} = .*$", f"{key} = {value}", config, flags=re.M)
        assert count == 1, key
    (tmp_path / "config" / "finetune-photos.toml").write_text(config)
    (tmp_path / "checkpoints" / "gca-dist").mkdir(parents=True)
    torch.save({"state_dict": random_gca(0).state_dict()}, tmp_path / "checkpoints" / "gca-dist" / "gca-dist.pth")
    # the docs' `dataloader.toy --out data/photos --layout photos --alphas glyphs`, smaller
    make_photo_dataset(str(tmp_path / "data" / "photos"), num_photos=4, num_bg=4, num_test=2, size=(96, 128),
                       bg_size=(80, 100), alphas="glyphs")
    outputs = []
    for command in ([sys.executable] + shlex.split(c)[1:] for c in commands):
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        outputs.append(result.stdout)
    assert len(os.listdir(tmp_path / "data" / "photos" / "train" / "fg")) == 4
    assert sorted(os.listdir(tmp_path / "data" / "photos" / "test" / "trimaps")) == ["t000.png", "t001.png"]
    assert read_checkpoint(str(tmp_path / "checkpoints" / "finetune-photos" / "latest_model.pth"))["iter"] == 1
    assert "finetune-photos on 2 images: SAD " in outputs[-1]
    assert sorted(os.listdir(tmp_path / "prediction" / "finetune-photos")) == ["t000.png", "t001.png"]
