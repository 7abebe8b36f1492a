import cv2
import numpy as np
import pytest
import torch

from conftest import random_gca
from dataloader.datasets import EvalDataset
from dataloader.file_lists import EvalList
from dataloader.loader import eval_loader
from utils.inference import predict_alpha, predict_eval_batch
from utils.preprocess import (alpha_to_uint8, classes_to_tensor, force_known_regions, image_to_tensor,
                              inference_padding, reflect_pad, trimap_to_classes)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def gca():
    """Random GCA weights whose spectral norms training-mode forwards have converged (random
    u, v give sigma near 0), as test_demo's released_checkpoint makes them. Seed 0 gives a
    model whose single pass is visibly asymmetric on the inputs below."""
    return random_gca(10).eval()


class Pointwise(torch.nn.Module):
    """Alpha from each pixel's colour alone: commutes with every view, whatever the padding."""

    def forward(self, image, trimap):
        return torch.sigmoid(image[:, :1] - image[:, 2:]), None


def square_symmetries(array):
    """The 8 images of an H x W [x C] array under the symmetries of the square."""
    return [np.rot90(a, k) for a in (array, array.swapaxes(0, 1)) for k in range(4)]


def random_pair(rng, height, width):
    """uint8 BGR image and 0/128/255 trimap, foreground on the left, background on the right."""
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    trimap = np.full((height, width), 128, np.uint8)
    trimap[:, : width // 4] = 255
    trimap[:, -width // 4:] = 0
    return image, trimap


def mirror_symmetric(rng, height, width):
    image, trimap = random_pair(rng, height, width // 2)
    return np.concatenate([image, image[:, ::-1]], axis=1), np.concatenate([trimap, trimap[:, ::-1]], axis=1)


def square_symmetric(rng, size):
    image = sum(a.astype(np.int64) for a in square_symmetries(rng.integers(0, 256, (size, size, 3)))) // 8
    ys, xs = np.mgrid[:size, :size] - (size - 1) / 2
    radius = np.hypot(ys, xs)
    trimap = np.where(radius < size / 6, 255, np.where(radius < size / 3, 128, 0))
    return image.astype(np.uint8), trimap.astype(np.uint8)


def levels_apart(a, b) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def test_flip_makes_a_mirror_symmetric_input_give_a_mirror_symmetric_alpha(gca, rng):
    image, trimap = mirror_symmetric(rng, 48, 80)
    single, _ = predict_alpha(gca, image, trimap, 3, CPU)
    flip, _ = predict_alpha(gca, image, trimap, 3, CPU, tta="flip")
    assert levels_apart(single, single[:, ::-1]) > 1
    assert levels_apart(flip, flip[:, ::-1]) <= 1


def test_d8_makes_a_square_symmetric_input_give_a_square_symmetric_alpha(gca, rng):
    image, trimap = square_symmetric(rng, 64)
    assert all(np.array_equal(view, image) for view in square_symmetries(image))
    assert all(np.array_equal(view, trimap) for view in square_symmetries(trimap))
    single, _ = predict_alpha(gca, image, trimap, 3, CPU)
    d8, _ = predict_alpha(gca, image, trimap, 3, CPU, tta="d8")
    assert max(levels_apart(single, view) for view in square_symmetries(single)) > 1
    assert max(levels_apart(d8, view) for view in square_symmetries(d8)) <= 1


def test_none_is_the_published_single_pass_to_the_bit(gca, rng):
    image, trimap = random_pair(rng, 50, 70)
    alpha, info = predict_alpha(gca, image, trimap, 3, CPU, tta="none")
    (top, bottom), (left, right) = padding = inference_padding(50, 70)
    classes = trimap_to_classes(reflect_pad(trimap, padding))
    network_input = image_to_tensor(reflect_pad(image, padding))[None], classes_to_tensor(classes, 3)[None]
    with torch.no_grad():
        raw, expected_info = gca(*network_input)
    raw = force_known_regions(raw, torch.from_numpy(classes)[None, None])[0, 0].numpy()
    assert np.array_equal(alpha, alpha_to_uint8(raw)[top:-bottom, left:-right])
    assert np.array_equal(info["offset_1"][0], expected_info["offset_1"][0])


def test_views_map_back_onto_the_image(rng):
    image, trimap = random_pair(rng, 37, 70)
    single, _ = predict_alpha(Pointwise(), image, trimap, 3, CPU)
    flip, _ = predict_alpha(Pointwise(), image, trimap, 3, CPU, tta="flip")
    d8, info = predict_alpha(Pointwise(), image, trimap, 3, CPU, tta="d8")
    assert np.array_equal(flip, single) and levels_apart(d8, single) <= 1 and info is None


def write_eval_sample(folder, image, trimap):
    paths = [str(folder / f"{name}.png") for name in ("merged", "alpha", "trimap")]
    for path, array in zip(paths, (image, trimap, trimap)):
        cv2.imwrite(path, array)
    return next(iter(eval_loader(EvalDataset(EvalList(*[[p] for p in paths])))))


def test_eval_batch_views_are_padded_each_and_map_back(gca, rng, tmp_path):
    batch = write_eval_sample(tmp_path, *random_pair(rng, 37, 70))
    with torch.no_grad():
        alpha, single, target = predict_eval_batch(Pointwise(), batch, CPU)
        d8_alpha, d8, d8_target = predict_eval_batch(Pointwise(), batch, CPU, "fp32", "d8")
    assert d8_alpha.shape == alpha.shape == (1, 1, 37, 70)
    assert torch.allclose(d8_alpha, alpha, atol=1e-6) and levels_apart(d8, single) <= 1
    assert np.array_equal(d8_target, target)
    batch = write_eval_sample(tmp_path, *mirror_symmetric(rng, 40, 72))
    with torch.no_grad():
        _, single, _ = predict_eval_batch(gca, batch, CPU)
        _, flip, _ = predict_eval_batch(gca, batch, CPU, tta="flip")
    assert levels_apart(single, single[:, ::-1]) > 1 and levels_apart(flip, flip[:, ::-1]) <= 1


def test_an_unknown_tta_is_refused_naming_the_accepted_ones(rng):
    image, trimap = random_pair(rng, 32, 32)
    with pytest.raises(ValueError, match="tta must be one of none, flip, d8, got 'd4'"):
        predict_alpha(Pointwise(), image, trimap, 3, CPU, tta="d4")
    with pytest.raises(ValueError, match="tta must be one of none, flip, d8"):
        predict_eval_batch(Pointwise(), {"alpha_shape": (32, 32)}, CPU, tta="rot")
