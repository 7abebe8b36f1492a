"""The AIM-500 whole-image metrics on hand-computed cases, and against the authors' SciPy code."""
import math

import numpy as np
import pytest

from utils.evaluation import metrics_aim500 as aim
from utils.evaluation.aim500_reference import authors_conn, authors_grad
from utils.evaluation.metrics import conn as matlab_conn


def u8(rows):
    return np.array(rows, dtype=np.uint8)


def unit(rows):
    return np.array(rows, dtype=np.float64) / 255


def test_whole_image_sad_mse_mad():
    # |p - g| = 0, 0.2, 0.2, 0 (51 / 255 = 0.2)
    metrics = aim.aim500_metrics(u8([[255, 0], [51, 102]]), u8([[255, 51], [0, 102]]), u8([[128] * 2] * 2))
    assert metrics["sad"] == pytest.approx(0.4 / 1000, rel=1e-12)
    assert metrics["mse"] == pytest.approx(0.08 / 4, rel=1e-12)
    assert metrics["mad"] == pytest.approx(0.4 / 4, rel=1e-12)


def test_trimap_figures_force_the_known_regions_and_count_ground_truth_there():
    pred, target = u8([[204, 0], [51, 102]]), u8([[255, 51], [0, 102]])
    metrics = aim.aim500_metrics(pred, target, u8([[255, 0], [128, 128]]))
    # forced p = 1, 0, 0.2, 0.4 against g = 1, 0.2, 0, 0.4: the ground truth's 0.2 under trimap 0 counts
    assert metrics["sad_trimap"] == pytest.approx(0.4 / 1000, rel=1e-12)
    assert metrics["mse_trimap"] == pytest.approx(0.08 / 2, rel=1e-12)  # over the two 128 pixels
    assert metrics["mad_trimap"] == pytest.approx(0.4 / 2, rel=1e-12)
    # SAD-FG and SAD-BG use the prediction as it is: |0.8 - 1| under 255, |0 - 0.2| under 0
    assert metrics["sad_fg"] == pytest.approx(0.2 / 1000, rel=1e-12)
    assert metrics["sad_bg"] == pytest.approx(0.2 / 1000, rel=1e-12)


def test_a_trimap_without_128_counts_the_pixels_neither_0_nor_255():
    pred, target = u8([[51, 0], [51, 0]]), u8([[255, 51], [0, 102]])
    metrics = aim.aim500_metrics(pred, target, u8([[255, 0], [100, 0]]))
    # forced p = 1, 0, 0.2, 0 against g = 1, 0.2, 0, 0.4; n = 1 (the pixel of value 100)
    assert metrics["sad_trimap"] == pytest.approx(0.8 / 1000, rel=1e-12)
    assert metrics["mse_trimap"] == pytest.approx(0.04 + 0.04 + 0.16, rel=1e-12)
    assert metrics["mad_trimap"] == pytest.approx(0.8, rel=1e-12)


def test_a_trimap_with_no_unknown_pixel_leaves_the_trimap_means_undefined():
    metrics = aim.aim500_metrics(u8([[51, 0]]), u8([[255, 51]]), u8([[255, 0]]))
    assert math.isnan(metrics["mse_trimap"]) and math.isnan(metrics["mad_trimap"])
    assert metrics["sad_trimap"] == pytest.approx(0.2 / 1000, rel=1e-12)


def test_thresholds_are_double_multiples_of_a_tenth():
    thresholds = aim.conn_thresholds()
    assert len(thresholds) == 11 and thresholds[6] == 0.6000000000000001 and thresholds[3] == 0.30000000000000004
    assert 153 / 255 < thresholds[6]


def test_conn_t6_lies_above_153():
    # min(p, g) = 1, 0.6, 0: pixel 2 leaves at t_1 (l = 0); 0.6 < t_6, so pixel 1 leaves there with
    # l = t_5 = 0.5; pixel 0 never leaves (l = 1). phi_p = 1, 1, 1 (d = 0.1); phi_g = 1, 0.5, 1.
    assert aim.conn(unit([[255, 153, 0]]), unit([[255, 255, 0]])) == pytest.approx(0.5 / 1000, rel=1e-12)


def test_conn_skips_a_threshold_with_no_component_unlike_matlab():
    # min(p, g) = 0.2, 0: from t_3 on no pixel passes; those thresholds are skipped, so pixel 0 keeps
    # l = -1 -> 1 and both phi are 1: Conn 0. The MATLAB rule would set l = t_2 there: phi_g = 0.2.
    pred, target = u8([[51, 0]]), u8([[255, 0]])
    assert aim.conn(pred / 255, target / 255) == 0
    assert matlab_conn(pred, target, u8([[128, 128]])) == pytest.approx(0.8 / 1000, rel=1e-6)


def test_conn_tie_goes_to_the_first_component_in_row_major_order():
    # Two components of 2 pixels at t_1: A = (0,2),(1,2) comes first in row-major order, B =
    # (2,0),(2,1) in column-major order. A wins: B leaves at t_1 (l = 0) and g's 0.6 there gives
    # phi_g 0.4 against phi_p 0. Had B won, the error would be 0.5.
    pred = u8([[0, 0, 255], [0, 0, 255], [255, 255, 0]])
    target = u8([[0, 0, 255], [0, 0, 255], [255, 153, 0]])
    assert aim.conn(pred / 255, target / 255) == pytest.approx(0.4 / 1000, rel=1e-12)
    # in one row: {0, 1} before {3, 4}
    assert aim.conn(unit([[255, 255, 0, 255, 255]]), unit([[255, 153, 0, 255, 255]])) == pytest.approx(
        0.5 / 1000, rel=1e-12)


def test_conn_levels_are_float32():
    # Pixel 1 (0.698) leaves at t_7, so l = t_6 stored as float32 = 0.6000000238418579: phi_g = 1 - (1 - l).
    level = aim.connectivity_levels(unit([[255, 178, 0]]), unit([[255, 255, 0]]))
    assert level.dtype == np.float32 and level[0, 1] == np.float32(0.6000000000000001)
    expected = (1 - float(np.float32(0.6000000000000001))) / 1000
    assert aim.conn(unit([[255, 178, 0]]), unit([[255, 255, 0]])) == pytest.approx(expected, rel=1e-13)
    assert abs(expected - 0.4 / 1000) > 1e-11  # a float64 l would give 0.4 / 1000


def reflect(index, size):
    """SciPy's 'reflect' border (d c b a | a b c d), repeated for indices far outside."""
    period = 2 * size
    index %= period
    return index if index < size else period - 1 - index


def filter_by_hand(image, taps, axis):
    """Correlation along `axis` with reflected borders, in float64 loops, stored as float32."""
    radius = len(taps) // 2
    out = np.zeros(image.shape, np.float64)
    for i in range(image.shape[0]):
        for j in range(image.shape[1]):
            for k, tap in enumerate(taps):
                if axis == 0:
                    out[i, j] += tap * image[reflect(i + k - radius, image.shape[0]), j]
                else:
                    out[i, j] += tap * image[i, reflect(j + k - radius, image.shape[1])]
    return out.astype(np.float32)


def test_gaussian_taps_are_scipys():
    smoothing, derivative = aim.gaussian_taps()
    assert len(smoothing) == 13 and smoothing.sum() == pytest.approx(1, abs=1e-15)
    offsets = np.arange(-6, 7)
    np.testing.assert_allclose(smoothing, np.exp(-offsets ** 2 / (2 * 1.4 ** 2)) / np.exp(
        -offsets ** 2 / (2 * 1.4 ** 2)).sum(), rtol=1e-14)
    np.testing.assert_allclose(derivative, offsets / 1.4 ** 2 * smoothing, rtol=1e-14)


@pytest.mark.parametrize("shape", [(1, 1), (3, 4), (5, 17), (20, 9)])
def test_gradient_magnitude_reflects_borders_and_stores_float32(rng, shape):
    image = rng.integers(0, 256, shape) / 255
    smoothing, derivative = aim.gaussian_taps()
    gx = filter_by_hand(filter_by_hand(image, derivative, 0), smoothing, 1)
    gy = filter_by_hand(filter_by_hand(image, smoothing, 0), derivative, 1)
    expected = np.sqrt(gx ** 2 + gy ** 2)
    magnitude = aim.gradient_magnitude(image)
    assert magnitude.dtype == np.float32
    np.testing.assert_allclose(magnitude, expected, rtol=2e-6, atol=1e-7)


def test_gradient_magnitude_differs_from_replicated_borders_at_the_edge():
    image = np.zeros((9, 9))
    image[:, :2] = 1  # a step near the left border: 'reflect' and 'replicate' see different pixels
    magnitude = aim.gradient_magnitude(image)
    reflected = np.concatenate([image[:, :6][:, ::-1], image], axis=1)
    replicated = np.concatenate([np.repeat(image[:, :1], 6, axis=1), image], axis=1)
    assert not np.array_equal(reflected, replicated)
    assert magnitude[4, 0] == pytest.approx(float(aim.gradient_magnitude(reflected)[4, 6]), rel=1e-6)


def test_grad_is_the_float32_sum_of_squared_differences_over_ten(rng):
    pred, target = rng.random((6, 7)), rng.random((6, 7))
    error = (aim.gradient_magnitude(pred) - aim.gradient_magnitude(target)) ** 2
    assert aim.grad(pred, target) == float(error.sum(dtype=np.float32) / np.float32(10))
    assert aim.grad(pred, pred) == 0


def test_sizes_must_match():
    with pytest.raises(ValueError, match="sizes differ"):
        aim.aim500_metrics(u8([[0, 0]]), u8([[0]]), u8([[0]]))


@pytest.mark.parametrize("shape", [(1, 7), (4, 3), (37, 52), (120, 90)])
def test_grad_and_conn_equal_the_authors_scipy_code(rng, shape):
    pytest.importorskip("scipy", reason="scipy (from requirements-cutout.txt) runs the authors' code")
    import cv2
    target = rng.integers(0, 256, shape).astype(np.uint8)
    if min(shape) > 4:
        target = cv2.GaussianBlur(target, (0, 0), 2)
    pred = np.clip(target.astype(int) + rng.integers(-40, 41, shape), 0, 255).astype(np.uint8)
    p, g = pred / 255, target / 255
    expected_grad, expected_magnitude = authors_grad(p, g)
    assert np.array_equal(aim.gradient_magnitude(p), expected_magnitude)  # bit for bit
    assert aim.grad(p, g) == float(expected_grad)
    assert aim.conn(p, g) == pytest.approx(float(authors_conn(p, g)), rel=1e-12, abs=1e-15)


def test_the_float32_intermediate_is_what_makes_the_gradient_bit_exact(rng):
    scipy_ndimage = pytest.importorskip("scipy.ndimage", reason="scipy (from requirements-cutout.txt)")
    image = rng.random((64, 64))
    staged = scipy_ndimage.gaussian_filter(image, sigma=1.4, order=[1, 0], output=np.float32)
    unstaged = scipy_ndimage.gaussian_filter(image, sigma=1.4, order=[1, 0]).astype(np.float32)
    assert not np.array_equal(staged, unstaged)  # the float32 between the axes changes some bits
    smoothing, derivative = aim.gaussian_taps()
    ours = aim.filter_axis(aim.filter_axis(image, derivative, 0), smoothing, 1)
    assert np.array_equal(ours, staged)
