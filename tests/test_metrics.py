import math

import cv2
import numpy as np
import pytest

from utils.evaluation.metrics import all_metrics, conn, grad, largest_component, mad, mat2gray, mse, sad


def test_sad_mse_mad_by_hand():
    pred = np.array([[0, 255, 100, 30]], np.uint8)
    target = np.array([[0, 0, 50, 0]], np.uint8)
    trimap = np.array([[128, 128, 127, 129]], np.uint8)  # only exactly 128 counts
    assert sad(pred, target, trimap) == pytest.approx(1 / 1000)
    assert mse(pred, target, trimap) == pytest.approx(0.5)
    assert mad(pred, target, trimap) == pytest.approx(0.5)


def test_pixels_outside_the_unknown_region_change_nothing():
    # MMagic-style SAD sums every pixel; the reference sums the unknown region only.
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    target = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    trimap = np.zeros((20, 30), np.uint8)
    trimap[5:15, 5:25] = 128
    before = sad(pred, target, trimap), mse(pred, target, trimap)
    pred[trimap != 128] = 255 - target[trimap != 128]
    assert (sad(pred, target, trimap), mse(pred, target, trimap)) == before


def test_no_unknown_pixel():
    a = np.zeros((4, 4), np.uint8)
    assert sad(a, a, a) == 0
    assert math.isnan(mse(a, a, a))  # 0 / 0, as the reference gives


def test_mat2gray_like_matlab():
    assert mat2gray(np.array([[10, 20, 30]], np.uint8)).tolist() == [[0.0, 0.5, 1.0]]
    assert mat2gray(np.zeros((2, 2), np.uint8)).tolist() == [[0, 0], [0, 0]]
    # constant image: MATLAB returns double(A), clipped to [0, 1]
    assert mat2gray(np.full((2, 2), 77, np.uint8)).tolist() == [[1, 1], [1, 1]]


def reference_grad_amplitude(image):
    """The reference gaussgradient written out with loops: 9x9 kernel, replicate borders."""
    sigma, half = 1.4, 4
    gauss = lambda x: math.exp(-x * x / (2 * sigma * sigma)) / (sigma * math.sqrt(2 * math.pi))
    dgauss = lambda x: -x * gauss(x) / (sigma * sigma)
    hx = np.array([[gauss(i) * dgauss(j) for j in range(-half, half + 1)] for i in range(-half, half + 1)])
    hx /= math.sqrt((hx ** 2).sum())
    hy = hx.T
    h, w = image.shape
    padded = np.pad(image, half, mode="edge")
    gx = np.zeros((h, w))
    gy = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            window = padded[y:y + 9, x:x + 9]
            gx[y, x] = (window * hx).sum()
            gy[y, x] = (window * hy).sum()
    return np.sqrt(gx ** 2 + gy ** 2).astype(np.float32)


def test_grad_equals_the_reference_formula():
    rng = np.random.default_rng(1)
    pred = cv2.GaussianBlur(rng.integers(0, 256, (12, 15)).astype(np.uint8), (5, 5), 2)
    target = rng.integers(40, 200, (12, 15)).astype(np.uint8)
    trimap = np.where(rng.random((12, 15)) < 0.5, 128, 255).astype(np.uint8)
    err = (reference_grad_amplitude(mat2gray(pred)) - reference_grad_amplitude(mat2gray(target))) ** 2
    assert grad(pred, target, trimap) == pytest.approx(err[trimap == 128].sum(dtype=np.float64) / 1000, rel=1e-6)


def test_grad_of_a_constant_prediction():
    target = np.zeros((10, 10), np.uint8)
    target[:, 5:] = 255
    trimap = np.full((10, 10), 128, np.uint8)
    amplitude = reference_grad_amplitude(mat2gray(target))
    expected = (amplitude.astype(np.float64) ** 2).sum() / 1000
    assert expected > 0
    for value in (0, 77, 255):  # every constant has zero gradient after mat2gray
        assert grad(np.full((10, 10), value, np.uint8), target, trimap) == pytest.approx(expected, rel=1e-6)


def test_conn_threshold_met_exactly_at_153_over_255():
    # 153/255 equals the 0.6 threshold in float32; compared in double against 0:0.1:1 it would
    # fall below it (0.6000000000000001) and give 0.5 / 1000 instead of 0.4 / 1000.
    pred = np.array([[153, 255]], np.uint8)
    target = np.array([[255, 255]], np.uint8)
    trimap = np.full((1, 2), 128, np.uint8)
    assert conn(pred, target, trimap) == pytest.approx(0.4 / 1000, abs=1e-9)


def test_conn_ties_go_to_the_first_component_in_column_major_order():
    # Two one-pixel components: X at row 0, col 2 and Y at row 2, col 0. MATLAB's bwconncomp
    # labels Y first (column 0), so Y is Omega; a row-major labelling would pick X.
    pred = np.zeros((3, 3), np.uint8)
    target = np.zeros((3, 3), np.uint8)
    pred[0, 2] = target[0, 2] = 255
    pred[2, 0], target[2, 0] = 179, 153
    trimap = np.full((3, 3), 128, np.uint8)
    assert conn(pred, target, trimap) == pytest.approx(0.0, abs=1e-12)
    # Transposed, X comes first in column-major order; Y then leaves Omega at 0.1 (l = 0):
    # phi_pred = 1 - 179/255, phi_gt = 1 - 153/255.
    expected = abs((1 - np.float32(179) / 255) - (1 - np.float32(153) / 255)) / 1000
    assert conn(pred.T.copy(), target.T.copy(), trimap) == pytest.approx(expected, rel=1e-6)


def test_largest_component_is_4_connected():
    mask = np.array([[1, 0, 0], [0, 1, 1], [0, 1, 0]], bool)
    assert largest_component(mask).tolist() == [[0, 0, 0], [0, 1, 1], [0, 1, 0]]
    assert not largest_component(np.zeros((3, 3), bool)).any()


def test_conn_of_a_perfect_prediction_is_zero():
    rng = np.random.default_rng(2)
    alpha = cv2.GaussianBlur(rng.integers(0, 256, (30, 30)).astype(np.uint8), (7, 7), 3)
    assert conn(alpha, alpha, np.full((30, 30), 128, np.uint8)) == 0


def test_all_metrics_checks_sizes():
    with pytest.raises(ValueError, match="sizes differ"):
        all_metrics(np.zeros((2, 2)), np.zeros((2, 3)), np.zeros((2, 2)))
    result = all_metrics(np.zeros((2, 2)), np.zeros((2, 2)), np.full((2, 2), 128), fast=True)
    assert set(result) == {"sad", "mse", "mad"}


def bfs_largest_component_matlab_order(mask):
    """Plain BFS labelling in MATLAB's order (scan columns, then rows); first largest wins."""
    h, w = mask.shape
    label = -np.ones((h, w), int)
    sizes = []
    for x in range(w):
        for y in range(h):
            if mask[y, x] and label[y, x] < 0:
                stack, label[y, x], size = [(y, x)], len(sizes), 0
                while stack:
                    cy, cx = stack.pop()
                    size += 1
                    for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                        if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and label[ny, nx] < 0:
                            label[ny, nx] = len(sizes)
                            stack.append((ny, nx))
                sizes.append(size)
    if not sizes:
        return np.zeros_like(mask)
    return label == int(np.argmax(sizes))


@pytest.mark.parametrize("seed", range(20))
def test_largest_component_equals_a_bfs_in_matlab_order(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((int(rng.integers(1, 12)), int(rng.integers(1, 12)))) < rng.uniform(0.2, 0.6)
    assert np.array_equal(largest_component(mask), bfs_largest_component_matlab_order(mask))
