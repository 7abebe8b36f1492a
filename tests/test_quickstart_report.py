import math

from utils.evaluation.quickstart_report import WORKING_SAD_RATIO, verdict


def test_verdict_compares_the_trained_sad_with_the_baseline():
    passed, line = verdict(4.912, 19.959)
    assert passed and line.startswith("verdict: PASS: the trained SAD is 0.25 of the baseline's (4.912 / 19.959)")
    passed, line = verdict(19.0, 19.959)
    assert not passed and line.startswith("verdict: FAIL: the trained SAD is 0.95")
    assert not verdict(WORKING_SAD_RATIO * 10.0, 10.0)[0]
    assert not verdict(1.0, 0.0)[0] and not verdict(math.nan, 10.0)[0]


def test_side_by_side_shows_the_cutout_over_a_checkerboard_and_a_colour(tmp_path):
    import os

    import cv2
    import numpy as np

    from utils.cutouts.foreground import checkerboard, composite, estimate_foreground
    from utils.evaluation.quickstart_report import CUTOUT_COLOUR, side_by_side

    rng = np.random.default_rng(0)
    for folder in ("image", "trimap", "pred", "alpha"):
        os.makedirs(tmp_path / folder)
    image = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    alpha = np.tile(np.linspace(0, 255, 48).astype(np.uint8), (64, 1))
    cv2.imwrite(str(tmp_path / "image" / "a.png"), image)
    for folder in ("trimap", "pred", "alpha"):
        cv2.imwrite(str(tmp_path / folder / "a.png"), alpha)
    triples = [("a.png", str(tmp_path / "pred" / "a.png"), str(tmp_path / "alpha" / "a.png"),
                str(tmp_path / "trimap" / "a.png"))]
    path = str(tmp_path / "side_by_side.png")
    side_by_side(str(tmp_path / "image"), str(tmp_path / "trimap"), str(tmp_path / "pred"), triples, path)
    picture = cv2.imread(path)
    assert picture.shape == (256, 6 * 192, 3)  # six 192 x 256 panels
    foreground = estimate_foreground(image, alpha)
    plain = np.empty_like(image)
    plain[:] = CUTOUT_COLOUR
    for index, background in ((4, checkerboard(64, 48)), (5, plain)):
        expected = cv2.resize(composite(foreground, alpha, background), None, fx=4, fy=4, interpolation=cv2.INTER_AREA)
        assert np.abs(picture[:, index * 192:(index + 1) * 192].astype(int) - expected).max() <= 1
