"""networks.aim.skimage_resize against hand-computed cases and, for the 0.19 behaviour, SciPy's ndimage
(from the cutout extra) called as scikit-image 0.19+ calls it."""
import numpy as np
import pytest

from networks.aim.skimage_resize import clip_to_input, gaussian_prefilter, resize_like_skimage, resize_transform_014

CORNER = np.array([[0.0, 1.0], [1.0, 1.0]])


def test_skimage_014_samples_zeros_beyond_the_border():
    # positions 0.5 i - 0.25 along each axis: -0.25 and 1.25 reach outside, where mode 'constant' reads 0
    expected = np.array([[0, 0.1875, 0.5625, 0.5625],
                         [0.1875, 0.4375, 0.8125, 0.75],
                         [0.5625, 0.8125, 0.9375, 0.75],
                         [0.5625, 0.75, 0.75, 0.5625]])
    # skimage 0.14 estimates its transform through an SVD, so its positions carry rounding
    assert np.abs(resize_like_skimage(CORNER, 4, 4, "skimage-0.14") - expected).max() < 1e-15


def test_skimage_019_mirrors_at_the_border():
    # -0.25 mirrors to 0.25; 1.25 stays and its right neighbour mirrors back onto pixel 0
    column = np.array([[0.0], [1.0]])
    assert np.array_equal(resize_like_skimage(column, 4, 1, "skimage-0.19")[:, 0], [0.25, 0.25, 0.75, 0.75])
    assert np.abs(resize_like_skimage(column, 4, 1, "skimage-0.14")[:, 0] - [0, 0.25, 0.75, 0.75]).max() < 1e-15


def test_uint8_is_scaled_by_one_255th_and_the_output_clipped_to_the_input_range():
    white = np.full((1, 1), 255, np.uint8)
    for behaviour in ("skimage-0.14", "skimage-0.19"):
        out = resize_like_skimage(white, 2, 3, behaviour)
        assert out.dtype == np.float64 and np.array_equal(out, np.ones((2, 3)))  # 0.5625 before the clip
    image = np.array([[3, 200], [90, 17]], np.uint8)
    assert resize_like_skimage(image, 2, 2, "skimage-0.19")[1, 0] == np.multiply(90, 1 / 255)


def test_skimage_014s_transform_is_the_scale_and_offset_up_to_its_rounding():
    transform = resize_transform_014((517, 771), (128, 192))
    exact = [[771 / 192, 0, 771 / 192 / 2 - 0.5], [0, 517 / 128, 517 / 128 / 2 - 0.5], [0, 0, 1]]
    assert np.abs(transform - exact).max() < 1e-12


def test_the_clip_keeps_exact_zeros_of_mode_constant():
    image = np.array([0.6, 0.9])
    assert np.array_equal(clip_to_input(np.array([0.0, 0.5, 2.0]), image, keep_zeros=True), [0, 0.6, 0.9])
    assert np.array_equal(clip_to_input(np.array([0.0, 0.5, 2.0]), image, keep_zeros=False), [0.6, 0.6, 0.9])


def test_downscaling_a_constant_image_gives_it_back():
    image = np.full((97, 131, 3), 77, np.uint8)
    for behaviour in ("skimage-0.14", "skimage-0.19"):
        assert np.array_equal(resize_like_skimage(image, 32, 32, behaviour) * 255, np.full((32, 32, 3), 77.0))


def test_an_unknown_behaviour_is_refused():
    with pytest.raises(ValueError, match="skimage-0.14, skimage-0.19"):
        resize_like_skimage(CORNER, 3, 3, "skimage-0.16")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_skimage_019_upscaling_is_scipys_zoom_to_the_bit(dtype):
    ndimage = pytest.importorskip("scipy.ndimage")
    image = np.random.default_rng(0).random((13, 17)).astype(dtype)
    ours = resize_like_skimage(image, 53, 40, "skimage-0.19")
    theirs = ndimage.zoom(image, (53 / 13, 40 / 17), order=1, mode="mirror", grid_mode=True)
    assert ours.dtype == dtype and np.array_equal(ours, np.clip(theirs, image.min(), image.max()))


def test_skimage_019_antialiasing_is_scipys_gaussian_filter():
    ndimage = pytest.importorskip("scipy.ndimage")
    image = np.random.default_rng(1).random((40, 9, 3))
    sigmas = (1.3, 0.0)
    theirs = ndimage.gaussian_filter(image, sigmas + (0.0,), mode="mirror")
    assert np.abs(gaussian_prefilter(image, sigmas) - theirs).max() < 1e-15
    ours = resize_like_skimage(image, 10, 3, "skimage-0.19")
    scales = np.array([40 / 10, 9 / 3])
    filtered = ndimage.gaussian_filter(image, tuple((scales - 1) / 2) + (0.0,), mode="mirror")
    theirs = ndimage.zoom(filtered, (10 / 40, 3 / 9, 1), order=1, mode="mirror", grid_mode=True)
    assert np.abs(ours - np.clip(theirs, image.min(), image.max())).max() < 1e-15
