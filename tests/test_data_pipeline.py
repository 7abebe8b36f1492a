import logging
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from conftest import gca_tensors
from dataloader.datasets import EvalDataset, TrainDataset
from dataloader.decode_cache import DecodeCache
from dataloader.file_lists import DataListError, eval_list, training_list
from dataloader.loader import Prefetcher, eval_loader, train_loader
from dataloader.toy import make_toy_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("toy"))
    make_toy_dataset(root, num_fg=5, num_bg=12, num_test=2, fg_size=(160, 220), bg_size=(120, 180), seed=1)
    return root


def train_files(root):
    return training_list(*(os.path.join(root, "train", k) for k in ("fg", "alpha", "bg")))


def test_toy_layout(toy):
    assert sorted(os.listdir(os.path.join(toy, "train"))) == ["alpha", "bg", "fg"]
    fg = sorted(os.listdir(os.path.join(toy, "train", "fg")))
    assert any(f.endswith(".jpg") for f in fg) and any(f.endswith(".png") for f in fg)
    merged = sorted(os.listdir(os.path.join(toy, "test", "merged")))
    assert merged == ["test00_0.png", "test00_1.png", "test01_0.png", "test01_1.png"]
    assert sorted(os.listdir(os.path.join(toy, "test", "alpha"))) == ["test00.png", "test01.png"]
    alpha = cv2.imread(os.path.join(toy, "test", "alpha", "test00.png"), 0)
    assert (alpha == 0).any() and (alpha == 255).any() and ((alpha > 0) & (alpha < 255)).mean() > 0.01


def test_training_list_matches_by_stem_sorted(toy):
    files = train_files(toy)
    assert len(files.fg) == 5 and len(files.bg) == 12
    assert [os.path.splitext(os.path.basename(f))[0] for f in files.fg] == \
           [os.path.splitext(os.path.basename(a))[0] for a in files.alpha]
    assert files.fg == sorted(files.fg) and files.bg == sorted(files.bg)


def test_test_list_finds_composition_alpha_without_alpha_copy(toy):
    files = eval_list(*(os.path.join(toy, "test", k) for k in ("merged", "alpha", "trimaps")))
    assert [os.path.basename(a) for a in files.alpha] == ["test00.png", "test00.png", "test01.png", "test01.png"]


def make_folders(tmp_path, fg_names, alpha_names, sizes=None):
    for name in ("fg", "alpha", "bg"):
        (tmp_path / name).mkdir(exist_ok=True)
    for name in fg_names:
        cv2.imwrite(str(tmp_path / "fg" / name), np.zeros((40, 50, 3), np.uint8))
    for name in alpha_names:
        h, w = (sizes or {}).get(name, (40, 50))
        cv2.imwrite(str(tmp_path / "alpha" / name), np.zeros((h, w), np.uint8))
    cv2.imwrite(str(tmp_path / "bg" / "b.jpg"), np.zeros((40, 50, 3), np.uint8))
    return [str(tmp_path / k) for k in ("fg", "alpha", "bg")]


def test_unpaired_files_are_listed_once_and_left_out(tmp_path, caplog):
    folders = make_folders(tmp_path, ["a.jpg", "b.png", "c.jpg"], ["a.png", "b.png", "d.png"])
    with caplog.at_level(logging.WARNING):
        files = training_list(*folders)
    assert [os.path.basename(f) for f in files.fg] == ["a.jpg", "b.png"]
    assert "1 foregrounds" in caplog.text and "c.jpg" in caplog.text
    assert "1 alphas" in caplog.text and "d.png" in caplog.text


def test_nothing_paired_is_an_error(tmp_path):
    folders = make_folders(tmp_path, ["a.jpg"], ["b.png"])
    with pytest.raises(DataListError, match="no foreground in data.train_fg"):
        training_list(*folders)


def test_missing_and_empty_folders_name_the_config_key(tmp_path):
    folders = make_folders(tmp_path, ["a.jpg"], ["a.png"])
    with pytest.raises(DataListError, match="data.train_bg = .*no such folder"):
        training_list(folders[0], folders[1], str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataListError, match="data.train_alpha = .*holds no images"):
        training_list(folders[0], str(tmp_path / "empty"), folders[2])
    with pytest.raises(DataListError, match="data.train_fg is not set"):
        training_list("", folders[1], folders[2])


def test_size_mismatch_names_both_files(tmp_path):
    folders = make_folders(tmp_path, ["a.jpg"], ["a.png"], sizes={"a.png": (41, 50)})
    with pytest.raises(DataListError, match=r"a.jpg is 50x40 but .*a.png is 50x41"):
        TrainDataset(training_list(*folders), gca_tensors(), crop_size=32)


def test_unreadable_image_is_named_in_the_sample_replaced_and_counted(toy, tmp_path):
    # Workers have no log file: the error travels with the sample and the training process logs it.
    files = train_files(toy)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really")
    files.bg[3] = str(broken)
    dataset = TrainDataset(files, gca_tensors(), crop_size=64)
    sample = dataset[(0, 3)]
    assert sample["replaced"] == 1 and sample["bad_files"] == f"{broken}: not a readable image " \
        "(empty, truncated or an unknown format)"
    assert sample["image"].shape == (3, 64, 64)
    assert dataset[(0, 4)]["replaced"] == 0 and dataset[(0, 4)]["bad_files"] == ""


def test_unreadable_training_files_are_named_at_start_up(toy, tmp_path, caplog):
    files = train_files(toy)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    files.fg[1] = str(broken)
    with caplog.at_level(logging.WARNING):
        TrainDataset(files, gca_tensors(), crop_size=64)
    assert f"unreadable training file, its samples will be replaced by the next ones: {broken}" in caplog.text


def test_sample_keys_and_shapes(toy):
    for pipeline, channels in (("gca", 3), ("dim", 1)):
        sample = TrainDataset(train_files(toy), gca_tensors(channels), crop_size=96, pipeline=pipeline)[(0, 1)]
        assert {"image", "alpha", "trimap", "fg", "bg", "image_name"} <= set(sample)
        assert sample["image"].shape == (3, 96, 96) and sample["alpha"].shape == (1, 96, 96)
        assert sample["trimap"].shape == (channels, 96, 96)
        assert 0 <= sample["alpha"].min() and sample["alpha"].max() <= 1


def test_crop_size_must_be_a_multiple_of_32(toy):
    with pytest.raises(ValueError, match="multiple of 32"):
        TrainDataset(train_files(toy), gca_tensors(), crop_size=100)


def keys_of(loader):
    return [key for key in loader.sampler]


def test_same_seed_same_samples_and_different_keys_differ(toy):
    a = TrainDataset(train_files(toy), gca_tensors(), crop_size=64, seed=7)
    b = TrainDataset(train_files(toy), gca_tensors(), crop_size=64, seed=7)
    assert torch.equal(a[(2, 5)]["image"], b[(2, 5)]["image"])
    assert not torch.equal(a[(2, 5)]["image"], a[(3, 5)]["image"])  # another epoch
    other_rank = TrainDataset(train_files(toy), gca_tensors(), crop_size=64, seed=7, rank=1)
    assert not torch.equal(a[(2, 5)]["image"], other_rank[(2, 5)]["image"])


def test_ranks_get_disjoint_indices_and_resume_continues_in_order(toy):
    dataset = TrainDataset(train_files(toy), gca_tensors(), crop_size=64)
    rank0 = train_loader(dataset, 2, 0, seed=3, rank=0, world_size=2)
    rank1 = train_loader(dataset, 2, 0, seed=3, rank=1, world_size=2)
    for loader in (rank0, rank1):
        loader.sampler.set_position(4)
    keys0, keys1 = keys_of(rank0), keys_of(rank1)
    assert not {k for _, k in keys0} & {k for _, k in keys1}
    resumed = train_loader(dataset, 2, 0, seed=3, rank=0, world_size=2)
    resumed.sampler.set_position(4, start=2)
    assert keys_of(resumed) == keys0[2:]


def test_workers_produce_the_same_samples_as_the_main_process(toy):
    dataset = TrainDataset(train_files(toy), gca_tensors(), crop_size=64, seed=11)
    in_process = train_loader(dataset, 2, 0, seed=11)
    with_workers = train_loader(dataset, 2, 2, seed=11)
    for loader in (in_process, with_workers):
        loader.sampler.set_position(1)
    batches = [next(iter(loader)) for loader in (in_process, with_workers)]
    assert torch.equal(batches[0]["image"], batches[1]["image"])
    assert not torch.equal(batches[0]["image"][0], batches[0]["image"][1])


def test_test_dataset_gives_the_files_as_read(tmp_path):
    for name in ("merged", "alpha", "trimaps"):
        (tmp_path / name).mkdir()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "merged" / "x_0.png"), image)
    cv2.imwrite(str(tmp_path / "alpha" / "x.png"), np.full((45, 70), 255, np.uint8))
    trimap = np.full((45, 70), 128, np.uint8)
    trimap[0] = 0
    cv2.imwrite(str(tmp_path / "trimaps" / "x_0.png"), trimap)
    dataset = EvalDataset(eval_list(str(tmp_path / "merged"), str(tmp_path / "alpha"), str(tmp_path / "trimaps")))
    sample = next(iter(eval_loader(dataset)))
    assert np.array_equal(sample["image"], image) and np.array_equal(sample["trimap"], trimap)
    assert np.array_equal(sample["alpha"], np.full((45, 70), 255)) and sample["image_name"] == "x_0.png"


def test_decode_cache_is_lossless_and_notices_changes(tmp_path):
    path = str(tmp_path / "img.png")
    first = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    cv2.imwrite(path, first)
    cache = DecodeCache(str(tmp_path / "cache"))
    assert np.array_equal(cache.read(path), first)
    assert np.array_equal(cache.read(path), first)  # from the .npy
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 1
    second = 255 - first
    cv2.imwrite(path, second)
    os.utime(path, ns=(1, 1))
    assert np.array_equal(cache.read(path), second)


def test_prefetcher_passes_batches_through_on_cpu():
    batches = [{"x": torch.ones(2)}, {"x": torch.zeros(2)}]
    assert list(Prefetcher(batches, torch.device("cpu"))) == batches


@pytest.mark.slow
def test_benchmark_command_prints_samples_per_second_last(toy, tmp_path):
    config = tmp_path / "bench.toml"
    config.write_text("[data]\ncrop_size = 64\n")
    result = subprocess.run([sys.executable, "-m", "dataloader.benchmark", "--config", str(config), "--data", toy,
                             "--num-samples", "6", "--compare", "--save-samples", str(tmp_path / "grid")],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1].startswith("samples/s: ") and float(lines[-1].split()[-1]) > 0
    assert any(line.startswith("reference (full resolution") for line in lines)
    grid = cv2.imread(str(tmp_path / "grid" / "samples.png"))
    assert grid.shape[1] == 3 * 64


def test_toy_command_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "dataloader.toy", "--out", str(tmp_path / "t"), "--num-fg", "2",
                             "--num-bg", "3", "--num-test", "1", "--fg-size", "100", "120", "--bg-size", "80", "90"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert len(os.listdir(tmp_path / "t" / "train" / "bg")) == 3
