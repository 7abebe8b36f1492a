"""Training on photos with alphas (data.train_merged), and test trimaps from alphas."""
import dataclasses
import logging
import os

import cv2
import numpy as np
import pytest
import torch

import main
from conftest import gca_tensors
from test_finetune import write_config
from dataloader import transforms as T
from dataloader.datasets import TrainDataset
from dataloader.fast_pipeline import gca_sample_fast
from dataloader.file_lists import DataListError, eval_list, photo_training_list
from dataloader.composite_testset import composite
from dataloader.fast_pipeline import trimap_uint8
from dataloader.toy import glyph_alpha, load_photos, make_photo_dataset, random_view
from utils.cutouts.foreground import solve_background
from utils.io.images import read_uint8
from utils.trimaps.from_alpha import main as trimap_main, trimap_from_alpha, width_for

HAND_MADE_TRIMAP = """
...........
...........
...uuuuu...
..uuuuuuu..
..uuFFFuuu.
..uuuuuuu..
...uuuuu...
...........
...........
"""


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Photos composited from known foregrounds and backgrounds with glyph alphas; the known
    foregrounds stand in for the estimated ones (train/fg), so a photo is its fg over a background."""
    root = str(tmp_path_factory.mktemp("photos"))
    folders = {k: os.path.join(root, "train", k) for k in ("image", "alpha", "fg", "bg")}
    for folder in folders.values():
        os.makedirs(folder)
    rng = np.random.default_rng(4)
    pictures = load_photos()
    for i in range(4):
        h, w = int(rng.integers(96, 129)), int(rng.integers(96, 129))
        fg, bg = (random_view(rng, pictures[int(rng.integers(len(pictures)))], h, w) for _ in range(2))
        alpha = glyph_alpha(rng, h, w)
        for key, picture in (("image", composite(fg, bg, alpha)), ("alpha", alpha), ("fg", fg)):
            cv2.imwrite(os.path.join(folders[key], f"p{i:03d}.png"), picture)
    for i in range(6):
        cv2.imwrite(os.path.join(folders["bg"], f"bg{i}.jpg"), random_view(rng, pictures[i], 80, 100))
    return root


def folders(root):
    return [os.path.join(root, "train", k) for k in ("image", "alpha", "fg", "bg")]


def test_the_toy_photos_layout_has_photos_alphas_and_backgrounds(tmp_path):
    make_photo_dataset(str(tmp_path), num_photos=2, num_bg=3, num_test=1, size=(64, 80), bg_size=(50, 60),
                       alphas="glyphs")
    assert sorted(os.listdir(tmp_path / "train")) == ["alpha", "bg", "image"]
    assert sorted(os.listdir(tmp_path / "test")) == ["alpha", "merged"]
    assert sorted(os.listdir(tmp_path / "train" / "image")) == ["p000.png", "p001.png"]
    assert sorted(os.listdir(tmp_path / "test" / "merged")) == sorted(os.listdir(tmp_path / "test" / "alpha"))
    alpha = cv2.imread(str(tmp_path / "train" / "alpha" / "p000.png"), cv2.IMREAD_UNCHANGED)
    assert alpha.ndim == 2 and (alpha == 255).any() and (alpha == 0).any() and ((alpha > 0) & (alpha < 255)).any()


def test_trimap_from_alpha_on_a_hand_made_case():
    alpha = np.zeros((9, 11), np.uint8)
    alpha[3:6, 3:8] = 255
    alpha[4, 8] = 100
    expected = np.array([[{".": 0, "u": 128, "F": 255}[c] for c in row]
                         for row in HAND_MADE_TRIMAP.strip().splitlines()], np.uint8)
    assert np.array_equal(trimap_from_alpha(alpha, 1), expected)
    # radius 2: erosion leaves nothing of a 3-row block, the band reaches 2 px beyond alpha > 0
    wide = trimap_from_alpha(alpha, 2)
    assert not (wide == 255).any() and wide[1, 5] == 128 and wide[0, 5] == 0 and wide[4, 10] == 128
    assert wide[3, 0] == 0 and wide[3, 1] == 128


def test_the_trimap_command_is_seeded_per_file_and_names_bad_alphas(tmp_path, capsys):
    alphas = tmp_path / "alpha"
    alphas.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        alpha = np.zeros((60, 60), np.uint8)
        alpha[15:45, 15:45] = 255
        alpha[10:15, 15:45] = rng.integers(1, 255, (5, 30))
        cv2.imwrite(str(alphas / f"{name}.png"), alpha)
    colour = np.zeros((60, 60, 3), np.uint8)
    colour[..., 2] = 200
    cv2.imwrite(str(alphas / "colour.png"), colour)
    args = ["--alpha-dir", str(alphas), "--random-width", "2", "9", "--seed", "7"]
    assert trimap_main([*args, "--output", str(tmp_path / "t1")]) == 1
    captured = capsys.readouterr()
    assert f"{alphas / 'colour.png'}: not a grey alpha" in captured.err
    assert "3 trimaps made, 0 already in" in captured.out
    for name in ("a", "b", "c"):
        trimap = cv2.imread(str(tmp_path / "t1" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        alpha = cv2.imread(str(alphas / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert trimap.dtype == np.uint8 and set(np.unique(trimap)) == {0, 128, 255}
        assert np.array_equal(trimap, trimap_from_alpha(alpha, width_for(name, (2, 9), 7)))
    # the same trimap for a file alone in its folder: the width depends on the seed and the stem only
    os.remove(alphas / "colour.png")
    os.remove(alphas / "a.png")
    os.remove(alphas / "c.png")
    assert trimap_main([*args, "--output", str(tmp_path / "t2")]) == 0
    assert open(tmp_path / "t1" / "b.png", "rb").read() == open(tmp_path / "t2" / "b.png", "rb").read()
    assert len({width_for(name, (2, 9), 7) for name in "abcdefgh"}) > 1
    assert trimap_main([*args, "--output", str(tmp_path / "t2")]) == 0  # run again: kept, nothing rewritten
    assert "0 trimaps made, 1 already in" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert trimap_main(["--alpha-dir", str(tmp_path / "empty"), "--output", str(tmp_path / "t3"), "--width", "3"]) == 2
    assert "no images" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        trimap_main(["--alpha-dir", str(alphas), "--output", str(tmp_path / "t4"), "--width", "0"])


def test_photos_need_their_foregrounds_and_the_error_names_the_command(photos, tmp_path, caplog):
    merged, alpha, fg, bg = folders(photos)
    for missing in (None, str(tmp_path / "nowhere")):
        with pytest.raises(DataListError) as e:
            photo_training_list(merged, alpha, missing, bg)
        assert (f"python -m dataloader.prepare_foreground --image-dir {merged} --alpha-dir {alpha} --output"
                in str(e.value)) and "data.train_fg" in str(e.value)
    partial = tmp_path / "partial"
    partial.mkdir()
    cv2.imwrite(str(partial / "p000.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataListError, match=r"3 of 4 photos in data.train_merged = .* have no foreground in "
                                            r"data.train_fg = .*p001.png.*prepare_foreground"):
        photo_training_list(merged, alpha, str(partial), bg)
    lonely = tmp_path / "image"
    lonely.mkdir()
    for name in os.listdir(merged):
        os.link(os.path.join(merged, name), lonely / name)
    cv2.imwrite(str(lonely / "extra.png"), np.zeros((4, 4, 3), np.uint8))
    with caplog.at_level(logging.WARNING):
        files = photo_training_list(str(lonely), alpha, fg, bg)
    assert "1 photos in" in caplog.text and "extra.png" in caplog.text and len(files.merged) == 4
    assert [os.path.basename(p) for p in files.fg] == [os.path.basename(p) for p in files.merged]


def test_an_alpha_of_another_size_is_named_before_training(photos, tmp_path):
    merged, alpha, fg, bg = folders(photos)
    files = photo_training_list(merged, alpha, fg, bg)
    small = tmp_path / "p002.png"
    cv2.imwrite(str(small), np.zeros((10, 12), np.uint8))
    files.alpha[2] = str(small)
    with pytest.raises(DataListError, match=r"p002.png is \d+x\d+ but .*p002.png is 12x10"):
        TrainDataset(files, gca_tensors(), 64)
    with pytest.raises(ValueError, match="own_background_prob = 0.5 needs photos"):
        TrainDataset(dataclasses.replace(files, merged=None), gca_tensors(), 64, own_background_prob=0.5)


def test_samples_composite_the_estimated_foreground_as_adobe_foregrounds(photos):
    files = photo_training_list(*folders(photos))
    dataset = TrainDataset(files, gca_tensors(), 64, seed=3)
    for index in range(len(dataset)):
        fg_index = index % len(files.fg)
        draws = T.draw_gca(dataset.rng_for(0, index), len(files.fg))
        fg2 = alpha2 = None
        if draws.mix:
            other = (index + draws.mix_offset) % len(files.fg)
            fg2, alpha2 = read_uint8(files.fg[other]), read_uint8(files.alpha[other], grey=True)
        expected = gca_sample_fast(read_uint8(files.fg[fg_index]), read_uint8(files.alpha[fg_index], grey=True),
                                   read_uint8(files.bg[index]), draws, 64, True, fg2, alpha2)
        sample = dataset.make_sample(0, index)
        for key in ("image", "fg", "bg", "alpha", "trimap"):
            assert np.array_equal(sample[key], expected[key]), (index, key)
        alpha = sample["alpha"][..., None]
        assert np.allclose(sample["image"], sample["fg"] * alpha + sample["bg"] * (1 - alpha), atol=1e-3)


def test_an_own_background_sample_is_the_photo(photos):
    files = photo_training_list(*folders(photos))
    dataset = TrainDataset(files, gca_tensors(), 64, augmentation=False, own_background_prob=1.0)
    for index in range(len(files.fg)):
        sample = dataset.make_sample(0, index)
        fg, photo = read_uint8(files.fg[index]), read_uint8(files.merged[index])
        alpha = read_uint8(files.alpha[index], grey=True)
        draws = T.draw_gca(dataset.rng_for(0, index), len(files.fg), augmentation=False)
        top, left = T.crop_origin(trimap_uint8(alpha, draws.fg_erosion, draws.bg_erosion), 64, draws)
        window = (slice(top, top + 64), slice(left, left + 64))
        assert np.array_equal(sample["fg"], fg[window]) and np.array_equal(sample["alpha"] * 255, alpha[window])
        assert np.array_equal(sample["bg"], solve_background(photo, fg, alpha)[window])
        # The photo: its background solved from the photo, its fg and its alpha composites back to
        # it, except where that background left 0..255 (the photo was truncated to uint8 and
        # (photo - a fg) / (1 - a) can go below 0 on a dark background): there the composite is
        # a fg over the clipped background, off the photo by less than the truncation's 1. Which
        # pixels those are depends on the data (OpenCV's resizes and blurs that made it vary
        # with the CPU), so they are found from the photo rather than counted.
        a = alpha[window].astype(np.float64)[..., None] / 255
        photo_window, fg_window = photo[window].astype(np.float64), fg[window].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            unclipped = np.where(a < 1, (photo_window - a * fg_window) / (1 - a), photo_window)
        clipped = np.clip(unclipped, 0, 255)
        expected = photo_window + (1 - a) * (clipped - unclipped)
        # fp32 arithmetic on values up to 255: each of the few roundings (a fg, the difference, the
        # division undone by the product with 1 - a, the sum) is off by at most half a unit in the
        # last place at 255, 2**-17; 2**-13 is sixteen of them (one unit, 2**-16, measured).
        assert np.abs(sample["image"] - expected).max() <= 2 ** -13
        assert np.abs(expected - photo_window).max() < 1
        composited_back = (0 < a) & (a < 1) & (clipped == unclipped)
        assert composited_back.any()


@pytest.mark.parametrize("seed", range(12))
def test_the_fast_pipeline_equals_the_reference_with_an_own_background(seed):
    rng = np.random.default_rng(seed)
    size = (int(rng.integers(60, 140)), int(rng.integers(60, 140))) if seed % 3 else (1100, 300)
    alpha = np.zeros(size, np.uint8)
    alpha[size[0] // 4:3 * size[0] // 4, size[1] // 4:3 * size[1] // 4] = 255
    alpha = cv2.GaussianBlur(alpha, (0, 0), 3)
    fg = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    own = rng.uniform(0, 255, (*size, 3)).astype(np.float32)
    draws = dataclasses.replace(T.draw_gca(rng, 1), own_background=True, resize_640=seed % 4 == 1)
    fast = gca_sample_fast(fg, alpha, own, draws, 96)
    reference = T.gca_sample_reference(fg, alpha.astype(np.float32) / 255, own, draws, 96)
    for key in ("image", "fg", "bg", "alpha", "trimap"):
        assert np.array_equal(fast[key], reference[key]), key


@pytest.mark.slow
def test_training_on_photos_runs_and_logs_them(photos, tmp_path):
    merged, alpha, fg, bg = folders(photos)
    config = write_config(str(tmp_path), None, name="photos", total_step=2, warmup_step=1,
                          data={"train_merged": merged, "train_alpha": alpha, "train_fg": fg, "train_bg": bg,
                                "own_background_prob": 0.5})
    assert main.main(["--config", config]) == 0
    log = open(os.path.join(tmp_path, "logs", "photos", os.listdir(tmp_path / "logs" / "photos")[0])).read()
    assert "4 photos, 6 backgrounds" in log and "[2/2]" in log
    assert torch.load(tmp_path / "ckpt" / "photos" / "latest_model.pth", weights_only=True)["iter"] == 1


def test_one_trimap_per_foreground_serves_all_its_composites(tmp_path):
    for name in ("merged", "alpha", "trimaps"):
        (tmp_path / name).mkdir()
    for k in range(2):
        cv2.imwrite(str(tmp_path / "merged" / f"x_{k}.png"), np.zeros((4, 4, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "merged" / "y_0.png"), np.zeros((4, 4, 3), np.uint8))
    for name in ("x", "y"):
        cv2.imwrite(str(tmp_path / "alpha" / f"{name}.png"), np.zeros((4, 4), np.uint8))
    cv2.imwrite(str(tmp_path / "trimaps" / "x.png"), np.zeros((4, 4), np.uint8))
    cv2.imwrite(str(tmp_path / "trimaps" / "y_0.png"), np.zeros((4, 4), np.uint8))  # its own name first
    cv2.imwrite(str(tmp_path / "trimaps" / "y.png"), np.zeros((4, 4), np.uint8))
    files = eval_list(*(str(tmp_path / name) for name in ("merged", "alpha", "trimaps")))
    assert [os.path.basename(t) for t in files.trimap] == ["x.png", "x.png", "y_0.png"]


def test_the_dim_pipeline_takes_an_own_background_too(photos):
    files = photo_training_list(*folders(photos))
    dataset = TrainDataset(files, gca_tensors(1), 64, pipeline="dim", own_background_prob=1.0)
    sample = dataset[(0, 1)]
    assert sample["image"].shape == (3, 64, 64) and sample["trimap"].shape == (1, 64, 64)
    raw = dataset.make_sample(0, 1)
    alpha = raw["alpha"][..., None]
    assert np.allclose(raw["image"], raw["fg"] * alpha + raw["bg"] * (1 - alpha), atol=1e-3)
