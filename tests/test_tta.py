import cv2
import numpy as np
import pytest
import torch

from conftest import GCA_ARCH, arch_spec, random_gca
from dataloader.datasets import EvalDataset
from dataloader.file_lists import EvalList
from dataloader.loader import eval_loader
from networks.gca_matting import family as gca_matting
from utils.inference.predict import evaluate_sample, predict_alpha
from utils.inference.preprocess import image_to_tensor, trimap_to_classes, trimap_to_tensor

CPU = torch.device("cpu")
DEMO, TEST = gca_matting.recipes(arch_spec("gca-matting", GCA_ARCH, 3))


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


@pytest.mark.slow
def test_flip_makes_a_mirror_symmetric_input_give_a_mirror_symmetric_alpha(gca, rng):
    image, trimap = mirror_symmetric(rng, 48, 80)
    single, _ = predict_alpha(gca, DEMO, image, trimap, CPU)
    flip, _ = predict_alpha(gca, DEMO, image, trimap, CPU, tta="flip")
    assert levels_apart(single, single[:, ::-1]) > 1
    assert levels_apart(flip, flip[:, ::-1]) <= 1


@pytest.mark.slow
def test_d8_makes_a_square_symmetric_input_give_a_square_symmetric_alpha(gca, rng):
    image, trimap = square_symmetric(rng, 64)
    assert all(np.array_equal(view, image) for view in square_symmetries(image))
    assert all(np.array_equal(view, trimap) for view in square_symmetries(trimap))
    single, _ = predict_alpha(gca, DEMO, image, trimap, CPU)
    d8, _ = predict_alpha(gca, DEMO, image, trimap, CPU, tta="d8")
    assert max(levels_apart(single, view) for view in square_symmetries(single)) > 1
    assert max(levels_apart(d8, view) for view in square_symmetries(d8)) <= 1


def test_none_is_the_published_single_pass_to_the_bit(gca, rng):
    # GCA-Matting's demo: numpy reflect padding of 32 px plus bottom/right to a multiple of 32,
    # classes by the thresholds, forced on the padded classes, cropped, alpha x 255 truncated
    image, trimap = random_pair(rng, 50, 70)
    alpha, info = predict_alpha(gca, DEMO, image, trimap, CPU, tta="none")
    padding = ((32, 32 + 14), (32, 32 + 26))
    classes = trimap_to_classes(np.pad(trimap, padding, mode="reflect"))
    network_input = (image_to_tensor(np.pad(image, padding + ((0, 0),), mode="reflect"))[None],
                     trimap_to_tensor(np.pad(trimap, padding, mode="reflect"), 3)[None])
    with torch.no_grad():
        raw, expected_info = gca(*network_input)
    raw = raw[0, 0].numpy()
    raw[classes == 2], raw[classes == 0] = 1, 0
    assert np.array_equal(alpha, (raw * 255).astype(np.uint8)[32:-46, 32:-58])
    assert np.array_equal(info["offset_1"][0], expected_info["offset_1"][0])


def test_views_map_back_onto_the_image(rng):
    image, trimap = random_pair(rng, 37, 70)
    single, _ = predict_alpha(Pointwise(), DEMO, image, trimap, CPU)
    flip, _ = predict_alpha(Pointwise(), DEMO, image, trimap, CPU, tta="flip")
    d8, info = predict_alpha(Pointwise(), DEMO, image, trimap, CPU, tta="d8")
    assert np.array_equal(flip, single) and levels_apart(d8, single) <= 1 and info is None


def write_eval_sample(folder, image, trimap):
    paths = [str(folder / f"{name}.png") for name in ("merged", "alpha", "trimap")]
    for path, array in zip(paths, (image, trimap, trimap)):
        cv2.imwrite(path, array)
    return next(iter(eval_loader(EvalDataset(EvalList(*[[p] for p in paths])))))


def test_eval_sample_views_are_padded_each_and_map_back(gca, rng, tmp_path):
    sample = write_eval_sample(tmp_path, *random_pair(rng, 37, 70))
    alpha, single, target = evaluate_sample(Pointwise(), TEST, sample, CPU)
    d8_alpha, d8, d8_target = evaluate_sample(Pointwise(), TEST, sample, CPU, "fp32", "d8")
    assert d8_alpha.shape == alpha.shape == (37, 70)
    assert np.allclose(d8_alpha, alpha, atol=1e-6) and levels_apart(d8, single) <= 1
    assert np.array_equal(d8_target, target)
    sample = write_eval_sample(tmp_path, *mirror_symmetric(rng, 40, 72))
    _, single, _ = evaluate_sample(gca, TEST, sample, CPU)
    _, flip, _ = evaluate_sample(gca, TEST, sample, CPU, tta="flip")
    assert levels_apart(single, single[:, ::-1]) > 1 and levels_apart(flip, flip[:, ::-1]) <= 1


def test_an_unknown_tta_is_refused_naming_the_accepted_ones(rng):
    image, trimap = random_pair(rng, 32, 32)
    with pytest.raises(ValueError, match="tta must be one of none, flip, d8, d8-uint8, got 'd4'"):
        predict_alpha(Pointwise(), DEMO, image, trimap, CPU, tta="d4")
    with pytest.raises(ValueError, match="tta must be one of none, flip, d8"):
        evaluate_sample(Pointwise(), TEST, {"image": image, "trimap": trimap, "alpha": trimap}, CPU, tta="rot")


@pytest.mark.slow
def test_d8_uint8_truncates_the_mean_of_the_views_quantised_alphas(gca, rng, tmp_path):
    # AEMatter's eval_tta.py for any family: each view as the recipe quantises it (GCA's demo
    # truncates, its test phase rounds), mapped back, the 8 averaged and the mean truncated; the
    # demo recipe pads the views to 96 x 128 and 128 x 96
    image, trimap = random_pair(rng, 25, 40)
    for recipe in (DEMO, TEST):
        total = np.zeros(trimap.shape, np.int64)
        for mirrored in (False, True):
            for turns in range(4):
                view = lambda a: np.ascontiguousarray(np.rot90(a[:, ::-1] if mirrored else a, turns))  # noqa: E731
                alpha = np.rot90(predict_alpha(gca, recipe, view(image), view(trimap), CPU)[0], -turns)
                total += alpha[:, ::-1] if mirrored else alpha
        combined, _ = predict_alpha(gca, recipe, image, trimap, CPU, tta="d8-uint8")
        assert np.array_equal(combined, total // 8)
    float_d8, _ = predict_alpha(gca, TEST, image, trimap, CPU, tta="d8")
    assert levels_apart(float_d8, combined) <= 2
    sample = write_eval_sample(tmp_path, image, trimap)
    alpha, quantised, _ = evaluate_sample(gca, TEST, sample, CPU, tta="d8-uint8")
    assert np.array_equal(quantised, total // 8) and np.allclose(alpha * 255 * 8, total, atol=1e-3)
