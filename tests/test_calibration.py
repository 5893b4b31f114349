"""Calibration on the dataset's own rows (clear_core/calibration.py), on synthetic scores with a known truth."""

import numpy as np
import pytest

from clear_core import calibration, metrics
from clear_core.calibration import Calibration

SHIPPED = calibration.shipped(1.0, 0.0)


def dataset(n: int, noise_share: float, seed: int = 0):
    """Raw logits of a dataset (good ~ N(3, 1), bad ~ N(-1, 1)) with its truth, and of corrupted copies (bad)."""
    rng = np.random.default_rng(seed)
    bad = rng.random(n) < noise_share
    logits = np.where(bad, rng.normal(-1, 1, n), rng.normal(3, 1, n))
    corrupted = rng.normal(-1, 1, 64)
    return logits, bad, corrupted


@pytest.mark.parametrize("share", [0.1, 0.3, 0.5])
def test_synthetic_fit_recovers_the_noise_share(share):
    logits, bad, corrupted = dataset(4000, share)
    fitted = calibration.fit_synthetic(logits, corrupted, SHIPPED)
    assert fitted.noise_share == pytest.approx(bad.mean(), abs=0.05)


@pytest.mark.parametrize("share", [0.1, 0.3])
def test_synthetic_fit_reads_as_p_good_on_the_dataset(share):
    logits, bad, corrupted = dataset(3000, share, seed=1)
    fitted = calibration.fit_synthetic(logits, corrupted, SHIPPED)
    assert fitted.source == "synthetic" and fitted.a > 0
    confidence = fitted.confidence(logits)
    assert metrics.expected_calibration_error(confidence, ~bad) < 0.05
    # the shipped map (identity here) is off on this dataset: that is what the fit is for
    assert metrics.expected_calibration_error(SHIPPED.confidence(logits), ~bad) > 0.05


def test_synthetic_fit_falls_back_with_a_reason():
    logits, _, corrupted = dataset(200, 0.3)
    few = calibration.fit_synthetic(logits, corrupted[:5], SHIPPED)
    assert (few.a, few.b, few.source) == (SHIPPED.a, SHIPPED.b, "shipped") and "too few" in few.note
    backwards = calibration.fit_synthetic(logits, logits[:64] + 10, SHIPPED)  # copies score higher: no information
    assert backwards.source == "shipped" and "did not score lower" in backwards.note


def test_reviewers_refit_needs_both_kinds_then_follows_the_decisions():
    rng = np.random.default_rng(2)
    prior = Calibration(1.0, -2.0, "synthetic")  # badly off: says P(good) = 0.5 at logit 2
    points = rng.normal(2, 2, 500)
    few = calibration.fit_reviewed(np.array([0.0, 1.0]), np.array([True, False]), prior, points)
    assert few.source == "synthetic" and "needs" in few.note
    logits = rng.normal(1, 2, 400)
    truth_bad = rng.random(400) > metrics.sigmoid(2 * logits)  # the truth: P(good) = σ(2·s)
    fitted = calibration.fit_reviewed(logits, truth_bad, prior, points)
    assert fitted.source == "reviewers" and (fitted.n_good, fitted.n_bad) == (
        int((~truth_bad).sum()),
        int(truth_bad.sum()),
    )
    assert metrics.expected_calibration_error(fitted.confidence(logits), ~truth_bad) < 0.06
    at_zero = fitted.confidence(np.array([0.0]))[0]  # the truth there is 0.5; the prior said 0.12
    assert abs(at_zero - 0.5) < abs(prior.confidence(np.array([0.0]))[0] - 0.5) / 2


def test_review_budget_is_the_expected_bad_share_left_after_reviewing_the_lowest():
    confidence = np.array([0.1, 0.2, 0.9, 0.9, 1.0])
    curve = calibration.review_budget(confidence, points=6)  # 0%, 20%, ... 100% reviewed
    assert [share for share, _ in curve] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert curve[0][1] == pytest.approx((0.9 + 0.8 + 0.1 + 0.1 + 0.0) / 5)
    assert curve[2][1] == pytest.approx(0.2 / 3)  # the two least confident reviewed: 0.1, 0.1 and 0 expected bad
    assert curve[-1][1] == 0.0
    values = [v for _, v in calibration.review_budget(np.random.default_rng(0).random(1000))]
    assert values == sorted(values, reverse=True)  # reviewing more never leaves more bad rows


def test_calibration_round_trips_through_json():
    fitted = Calibration(1.5, -0.2, "synthetic", 0.3, 100, 32, "note")
    assert Calibration.from_json(fitted.to_json()) == fitted


def test_decisions_on_the_least_confident_rows_move_the_map_but_keep_its_slope():
    """Reviewers start at the bottom. A few clean rows score low in any dataset; among the bottom rows they would
    flatten a free slope, and the confident rows nobody reviewed would lose confidence they deserve."""
    rng = np.random.default_rng(5)
    n = 320
    bad = rng.random(n) < 0.3
    odd_clean = ~bad & (rng.random(n) < 0.08)  # clean rows that look bad: the floor under P(good | s)
    logits = np.where(bad | odd_clean, rng.normal(-2.5, 1.5, n), rng.normal(2.5, 1.0, n))
    prior = calibration.fit_synthetic(logits, rng.normal(-2.5, 1.5, 128), SHIPPED)
    bottom = np.argsort(logits)[: int(0.3 * n)]
    fitted = calibration.fit_reviewed(logits[bottom], bad[bottom], prior, logits)
    assert fitted.source == "reviewers" and fitted.a == prior.a  # moved, not flattened
    top = np.argsort(logits)[n // 2 :]  # the confident half: nobody reviewed it, nearly all of it is clean
    assert fitted.confidence(logits[top]).mean() > 0.95  # a free slope gave them 0.88
