import cv2
import numpy as np
import pytest

from utils.trimaps.from_mask import default_unknown_width, mask_problem, mask_to_trimap


def disc_mask(size: int, centre, radius: float):
    """uint8 0/255 mask of a disc and each pixel's distance from the disc's edge (< 0 inside)."""
    ys, xs = np.mgrid[:size, :size]
    signed = np.hypot(ys - centre[0], xs - centre[1]) - radius
    return np.where(signed <= 0, 255, 0).astype(np.uint8), signed


def test_disc_gets_a_band_of_the_width_on_either_side_of_its_edge():
    mask, signed = disc_mask(200, (100, 100), 60)
    trimap = mask_to_trimap(mask, unknown_width=12)
    assert trimap.dtype == np.uint8 and trimap.shape == (200, 200)
    assert set(np.unique(trimap)) == {0, 128, 255}
    assert (trimap[np.abs(signed) <= 10] == 128).all()
    assert (trimap[signed < -14] == 255).all()
    assert (trimap[signed > 14] == 0).all()


def test_equals_erosion_and_dilation_by_a_disc_with_the_border_replicated(rng):
    noise = cv2.GaussianBlur(rng.random((90, 70)).astype(np.float32), (0, 0), 6)
    mask = np.where(noise > np.median(noise), 255, 0).astype(np.uint8)
    width = 7
    ys, xs = np.mgrid[-width:width + 1, -width:width + 1]
    disc = (ys ** 2 + xs ** 2 <= width ** 2).astype(np.uint8)
    eroded = cv2.erode(mask, disc, borderType=cv2.BORDER_REPLICATE)
    dilated = cv2.dilate(mask, disc, borderType=cv2.BORDER_REPLICATE)
    expected = np.where(eroded == 255, 255, np.where(dilated == 0, 0, 128))
    assert np.array_equal(mask_to_trimap(mask, width), expected)


def test_a_mask_touching_the_border_stays_known_along_it():
    mask = np.zeros((100, 100), np.uint8)
    mask[:, :40] = 255
    trimap = mask_to_trimap(mask, unknown_width=5)
    # Only the mask's own edge, columns 35..44, is unknown: not the image's top and bottom rows.
    assert (trimap[:, :35] == 255).all() and (trimap[:, 35:45] == 128).all() and (trimap[:, 45:] == 0).all()
    corner, signed = disc_mask(100, (0, 0), 50)
    trimap = mask_to_trimap(corner, unknown_width=5)
    assert (trimap[signed < -7] == 255).all() and trimap[0, 0] == 255
    assert (trimap[signed > 7] == 0).all() and trimap[-1, -1] == 0


def test_soft_masks_threshold_at_half():
    ramp = np.tile(np.linspace(0, 255, 101, dtype=np.float32), (30, 1))
    binary = np.where(ramp >= 127.5, 255, 0).astype(np.uint8)
    assert 0 < binary.mean() < 255
    expected = mask_to_trimap(binary, 4)
    assert np.array_equal(mask_to_trimap(ramp, 4), expected)
    assert np.array_equal(mask_to_trimap(ramp >= 127.5, 4), expected)
    uint8 = np.full((20, 20), 127, np.uint8)
    uint8[:, 10:] = 128
    assert (mask_to_trimap(uint8, 2)[:, :8] == 0).all() and (mask_to_trimap(uint8, 2)[:, 13:] == 255).all()


def test_default_width_is_one_percent_of_the_diagonal_and_at_least_3_px():
    assert default_unknown_width(1000, 1000) == 14
    assert default_unknown_width(1080, 1920) == 22
    assert default_unknown_width(40, 30) == 3
    mask, _ = disc_mask(400, (200, 200), 100)
    assert np.array_equal(mask_to_trimap(mask), mask_to_trimap(mask, default_unknown_width(400, 400)))
    with pytest.raises(ValueError, match="at least 1 px"):
        mask_to_trimap(mask, 0)


def test_empty_and_full_masks_are_problems():
    empty, full = np.zeros((30, 40), np.uint8), np.full((30, 40), 255, np.uint8)
    assert mask_problem(empty) == "nothing to matte: the mask is empty"
    assert mask_problem(np.full((30, 40), 127, np.uint8)) == "nothing to matte: the mask is empty"
    assert mask_problem(full) == "nothing to matte: the mask covers the whole image"
    assert mask_problem(disc_mask(50, (25, 25), 10)[0]) == ""
    assert (mask_to_trimap(empty) == 0).all() and (mask_to_trimap(full) == 255).all()
