import cv2
import numpy as np
import pytest

from dataloader import transforms as T
from dataloader.fast_pipeline import (MIXED_ALPHA, MIXED_BG_MASK, MIXED_FG_MASK, gca_sample_fast,
                                      trimap_uint8)


def draws(rng=None, **changes):
    d = T.draw_gca(rng or np.random.default_rng(0), num_fg=3)
    for key, value in changes.items():
        setattr(d, key, value)
    return d


def disc_alpha(size=200, radius=60, soft=True):
    alpha = np.zeros((size, size), np.float32)
    cv2.circle(alpha, (size // 2, size // 2), radius, 1.0, -1)
    return cv2.GaussianBlur(alpha, (0, 0), 3) if soft else alpha


def band_width(mask_before, mask_after):
    """Largest distance an eroded-away pixel has to the surviving... i.e. the erosion depth."""
    removed = mask_before & ~mask_after
    if not removed.any():
        return 0
    distance = cv2.distanceTransform(mask_before.astype(np.uint8), cv2.DIST_L2, 5)
    return float(distance[removed].max())


@pytest.mark.parametrize("fg_size,bg_size", [(1, 1), (5, 29), (29, 9), (15, 15)])
def test_gen_trimap_bands_lie_within_the_kernel_bounds(fg_size, bg_size):
    alpha = disc_alpha()
    trimap = T.gen_trimap(alpha, fg_size, bg_size)
    assert set(np.unique(trimap)) <= {0.0, 128.0, 255.0}
    fg_mask, bg_mask = alpha >= 1 - 1e-5, alpha <= 1e-5
    assert ((trimap == 255) <= fg_mask).all() and ((trimap == 0) <= bg_mask).all()
    assert (trimap[(alpha > 1e-5) & (alpha < 1 - 1e-5)] == 128).all()  # soft pixels are always unknown
    # erosion by a kernel of size k moves each mask's edge inwards by at most k // 2 (+1 for the
    # discrete distance), and by at least k // 2 - 1 where the edge is straight enough
    assert band_width(fg_mask, trimap == 255) <= fg_size // 2 + 1
    assert band_width(bg_mask, trimap == 0) <= bg_size // 2 + 1
    if fg_size >= 5:
        assert band_width(fg_mask, trimap == 255) >= fg_size // 2 - 1


def test_crop_is_centred_on_an_unknown_pixel_when_there_are_enough():
    trimap = np.zeros((600, 700), np.float32)
    trimap[300:340, 400:440] = 128  # 100 unknown pixels at 1/4 scale
    for pick in np.linspace(0, 0.999, 25):
        top, left = T.crop_origin(trimap, 256, draws(crop_pick=float(pick)))
        assert trimap[top + 128, left + 128] == 128
        assert 0 <= top <= 600 - 256 and 0 <= left <= 700 - 256


def test_crop_is_uniform_when_unknown_pixels_are_few():
    trimap = np.zeros((600, 700), np.float32)
    trimap[300:304, 400:404] = 128  # 1 unknown pixel at 1/4 scale
    assert T.crop_origin(trimap, 256, draws(crop_y=0.0, crop_x=0.0)) == (0, 0)
    assert T.crop_origin(trimap, 256, draws(crop_y=0.9999, crop_x=0.9999)) == (600 - 256, 700 - 256)


def test_affine_keeps_alpha_in_range_and_samples_nearest():
    rng = np.random.default_rng(3)
    alpha = (rng.integers(0, 256, (1100, 1050)).astype(np.float32) / 255)  # >= 1024: rotation on
    fg = rng.integers(0, 256, (1100, 1050, 3), dtype=np.uint8)
    for _ in range(5):
        d = T.draw_gca(rng, 3)
        warped_fg, warped_alpha = T.random_affine(fg, alpha, d)
        assert warped_alpha.min() >= 0 and warped_alpha.max() <= 1
        # nearest sampling creates no new values: every output is an input value or the 0 border
        assert set(np.unique(warped_alpha)) <= set(np.unique(alpha)) | {0.0}
        assert warped_fg.dtype == np.uint8


def test_affine_without_rotation_for_small_images_and_flip():
    alpha = np.zeros((64, 64), np.float32)
    alpha[:, :10] = 1
    d = draws(angle=25.0, scale=(1.0, 1.0), shear=0.0, flip=(-1, 1))
    _, flipped = T.random_affine(np.zeros((64, 64, 3), np.uint8), alpha, d)
    # mirrored, not rotated, about the published centre w/2 + 0.5 = 32.5: output x reads input
    # 65 - x, so input columns 2..9 land in 56..63 (the published map is one pixel off centre)
    assert (flipped[:, 56:] == 1).all() and (flipped[:, :56] == 0).all()


def test_jitter_keeps_hue_in_range_and_skips_empty_alpha():
    rng = np.random.default_rng(4)
    fg = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    alpha = np.ones((32, 32), np.float32)
    for hue in (-40, 39):
        out = T.random_jitter(fg, alpha, draws(hue_shift=hue, saturation_u=1.0, value_u=0.0))
        hsv = cv2.cvtColor((out / 255).astype(np.float32), cv2.COLOR_BGR2HSV)
        assert hsv[:, :, 0].min() >= 0 and hsv[:, :, 0].max() < 360
        assert out.min() >= -1e-3 and out.max() <= 255 + 1e-3
    assert T.random_jitter(fg, np.zeros((32, 32), np.float32), draws()) is fg


def test_composite_equals_fg_alpha_plus_bg_one_minus_alpha():
    fg = np.array([[[200.0, 100.0, 300.0]]])
    bg = np.array([[[10.0, -5.0, 30.0]]])
    alpha = np.array([[0.25]], np.float32)
    image, fg_c, bg_c, alpha_c = T.composite(fg, bg, alpha)
    assert np.allclose(image, [[[0.25 * 200 + 0.75 * 10, 0.25 * 100, 0.25 * 255 + 0.75 * 30]]])
    assert fg_c.max() == 255 and bg_c.min() == 0
    _, _, _, clipped = T.composite(fg, bg, np.array([[1.5]], np.float32))
    assert clipped[0, 0] == 1


def test_mixed_alpha_tables_equal_the_float_formula():
    k1, k2 = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    a1, a2 = k1.astype(np.float32) / 255, k2.astype(np.float32) / 255
    combined = 1 - (1 - a1) * (1 - a2)
    assert np.array_equal(MIXED_ALPHA.reshape(256, 256), combined)
    fg_mask = (combined + 1e-5).astype(int) == 1
    bg_mask = (1 - combined + 1e-5).astype(int) == 1
    assert np.array_equal(MIXED_FG_MASK.reshape(256, 256), fg_mask)
    assert np.array_equal(MIXED_BG_MASK.reshape(256, 256), bg_mask)


def test_uint8_trimap_equals_the_float_gen_trimap():
    rng = np.random.default_rng(5)
    alpha8 = cv2.GaussianBlur((disc_alpha(soft=False) * 255).astype(np.uint8), (0, 0), 4)
    alpha8[rng.random(alpha8.shape) < 0.01] = 255
    for fg_e, bg_e in ((1, 1), (7, 23), (29, 29)):
        assert np.array_equal(trimap_uint8(alpha8, fg_e, bg_e), T.gen_trimap(alpha8.astype(np.float32) / 255, fg_e, bg_e))


def random_fg(rng, h, w):
    fg = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    alpha = np.zeros((h, w), np.float32)
    cv2.ellipse(alpha, (w // 2, h // 2), (w // 3, h // 3), float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), float(rng.uniform(1, 6)))
    return fg, (alpha * 255).round().astype(np.uint8)


CASES = [
    # (fg size range, bg size, crop, forced draws)
    ((500, 700), (300, 400), 256, {}),
    ((500, 700), (300, 400), 256, {"mix": True}),
    ((500, 700), (300, 400), 256, {"mix": True, "resize_640": True}),
    ((1030, 1100), (300, 400), 512, {"mix": True}),  # rotation on
    ((200, 300), (150, 200), 256, {}),  # smaller than the crop: upscaled
    ((200, 300), (150, 200), 256, {"mix": True}),
    ((400, 500), (300, 400), 128, {"fg_erosion": 1, "bg_erosion": 1}),
]


@pytest.mark.parametrize("fg_size,bg_size,crop,forced", CASES)
def test_fast_pipeline_equals_the_reference_on_the_same_draws(fg_size, bg_size, crop, forced):
    rng = np.random.default_rng(hash((fg_size, crop, tuple(forced))) % 2**32)
    for _ in range(4):
        h, w = (int(rng.integers(*fg_size)) for _ in range(2))
        fg, alpha8 = random_fg(rng, h, w)
        fg2, alpha2_8 = random_fg(rng, int(rng.integers(*fg_size)), int(rng.integers(*fg_size)))
        bg = rng.integers(0, 256, (bg_size[0], bg_size[1], 3), dtype=np.uint8)
        d = draws(rng, **forced)
        ref = T.gca_sample_reference(fg, alpha8.astype(np.float32) / 255, bg, d, crop, True,
                                     fg2, alpha2_8.astype(np.float32) / 255)
        fast = gca_sample_fast(fg, alpha8, bg, d, crop, True, fg2, alpha2_8)
        for key in ref:
            assert ref[key].dtype == fast[key].dtype and np.array_equal(ref[key], fast[key]), key


def test_fast_pipeline_equals_the_reference_without_unknown_and_without_augmentation():
    rng = np.random.default_rng(9)
    fg = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    bg = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
    for alpha8 in (np.full((300, 300), 255, np.uint8), np.zeros((300, 300), np.uint8)):
        for augmentation in (True, False):
            d = draws(rng, mix=False)
            ref = T.gca_sample_reference(fg, alpha8.astype(np.float32) / 255, bg, d, 256, augmentation)
            fast = gca_sample_fast(fg, alpha8, bg, d, 256, augmentation)
            for key in ref:
                assert np.array_equal(ref[key], fast[key]), key
            assert ref["image"].shape == (256, 256, 3)


def test_random_interp_draws_other_interpolations():
    d = T.draw_gca(np.random.default_rng(0), 3, random_interp=True)
    assert set(d.interp.values()) <= set(T.INTERPOLATIONS) and d.interp != T.INTERP_SITES
