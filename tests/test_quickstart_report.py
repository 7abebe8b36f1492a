import math

from utils.quickstart_report import WORKING_SAD_RATIO, verdict


def test_verdict_compares_the_trained_sad_with_the_baseline():
    passed, line = verdict(4.912, 19.959)
    assert passed and line.startswith("verdict: PASS: the trained SAD is 0.25 of the baseline's (4.912 / 19.959)")
    passed, line = verdict(19.0, 19.959)
    assert not passed and line.startswith("verdict: FAIL: the trained SAD is 0.95")
    assert not verdict(WORKING_SAD_RATIO * 10.0, 10.0)[0]
    assert not verdict(1.0, 0.0)[0] and not verdict(math.nan, 10.0)[0]
