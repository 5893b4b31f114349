"""Detection, calibration and text metrics against brute force, hand computation and synthetic known answers."""

import math
import warnings

import numpy as np
import pytest

from clear_core.metrics import (
    auroc,
    closer_to_clean,
    expected_calibration_error,
    final_number,
    fit_logistic,
    normalize_tokens,
    platt_scale,
    precision_recall,
    reliability_table,
    sigmoid,
    text_similarity,
    token_f1,
)


def brute_force_auroc(scores, is_bad) -> float:
    bad = [s for s, b in zip(scores, is_bad, strict=True) if b]
    good = [s for s, b in zip(scores, is_bad, strict=True) if not b]
    wins = sum((sb < sg) + 0.5 * (sb == sg) for sb in bad for sg in good)
    return wins / (len(bad) * len(good))


@pytest.mark.parametrize("seed", range(6))
def test_auroc_matches_pairwise_count_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 120))
    scores = rng.integers(0, 6, n).astype(float)  # few distinct values: many ties
    is_bad = rng.random(n) < 0.4
    is_bad[0], is_bad[1] = True, False
    assert auroc(scores, is_bad) == pytest.approx(brute_force_auroc(scores, is_bad))
    continuous = rng.normal(size=n)
    assert auroc(continuous, is_bad) == pytest.approx(brute_force_auroc(continuous, is_bad))


def test_auroc_orientation_and_edge_cases():
    is_bad = [True, True, False, False, False]
    assert auroc([0.1, 0.2, 0.7, 0.8, 0.9], is_bad) == 1.0  # bad rows score low
    assert auroc([0.9, 0.8, 0.1, 0.2, 0.3], is_bad) == 0.0
    assert auroc([0.5] * 5, is_bad) == 0.5
    assert math.isnan(auroc([0.1, 0.2], [False, False]))
    assert math.isnan(auroc([0.1, 0.2], [True, True]))
    with pytest.raises(ValueError, match="NaN"):
        auroc([0.1, float("nan")], [True, False])
    with pytest.raises(ValueError, match="length"):
        auroc([0.1, 0.2], [True])


def test_precision_recall_by_hand():
    flagged = [1, 1, 0, 0, 1, 0]
    is_bad = [1, 0, 1, 0, 1, 0]
    assert precision_recall(flagged, is_bad) == (2 / 3, 2 / 3)
    assert precision_recall([1, 0, 0, 0], [1, 1, 0, 0]) == (1.0, 0.5)
    precision, recall = precision_recall([0, 0], [1, 0])
    assert math.isnan(precision) and recall == 0.0
    precision, recall = precision_recall([1, 0], [0, 0])
    assert precision == 0.0 and math.isnan(recall)


def test_reliability_table_by_hand():
    table = reliability_table([0.05, 0.15, 0.15, 0.95, 1.0], [0, 1, 0, 1, 1], bins=10)
    assert list(table.columns) == [
        "bin",
        "bin_lower",
        "bin_upper",
        "mean_confidence",
        "observed_good_rate",
        "count",
    ]
    assert len(table) == 10 and table["count"].sum() == 5
    assert table.loc[1, "count"] == 2
    assert table.loc[1, "observed_good_rate"] == 0.5
    assert table.loc[9, "count"] == 2  # 1.0 falls in the last bin
    assert table.loc[9, "mean_confidence"] == pytest.approx(0.975)
    assert np.isnan(table.loc[5, "observed_good_rate"])
    # ECE by hand: (1*|0.05-0| + 2*|0.15-0.5| + 2*|0.975-1|) / 5
    expected = (0.05 + 2 * 0.35 + 2 * 0.025) / 5
    assert expected_calibration_error([0.05, 0.15, 0.15, 0.95, 1.0], [0, 1, 0, 1, 1]) == pytest.approx(expected)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reliability_table([1.2], [1])


def test_ece_small_when_calibrated_large_when_not():
    rng = np.random.default_rng(0)
    confidence = rng.random(50_000)
    calibrated = rng.random(50_000) < confidence
    overconfident = rng.random(50_000) < confidence**3
    assert expected_calibration_error(confidence, calibrated) < 0.015
    assert expected_calibration_error(confidence, overconfident) > 0.15


def synthetic_logistic(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.normal(5.0, 2.0, n), rng.normal(-1.0, 0.1, n), rng.normal(0.0, 1.0, n)])
    weights, bias = np.array([0.8, -10.0, 0.5]), -14.0
    labels = rng.random(n) < sigmoid(x @ weights + bias)
    return x, labels.astype(float), weights, bias


def test_fit_logistic_recovers_known_weights():
    x, y, true_w, true_b = synthetic_logistic()
    fit = fit_logistic(x, y, l2=0.0)
    weights, bias = fit  # unpacks as (weights, bias)
    assert fit.converged
    np.testing.assert_allclose(weights, true_w, rtol=0.1)
    assert bias == pytest.approx(true_b, rel=0.1)
    np.testing.assert_allclose(fit.standardized_weights, weights * fit.scale)
    np.testing.assert_allclose(fit.mean, x.mean(axis=0))
    np.testing.assert_allclose(fit.predict_proba(x), sigmoid(x @ weights + bias), atol=1e-12)
    # Deterministic: the same data gives bit-identical results.
    again = fit_logistic(x, y, l2=0.0)
    assert np.array_equal(again.weights, fit.weights) and again.bias == fit.bias


def test_fit_logistic_l2_shrinks_and_separable_data_stays_finite():
    x, y, _, _ = synthetic_logistic(5_000, seed=1)
    mild = fit_logistic(x, y)  # default l2 = 1e-2
    strong = fit_logistic(x, y, l2=1.0)
    assert np.linalg.norm(strong.standardized_weights) < np.linalg.norm(mild.standardized_weights)
    separable_x = np.arange(20, dtype=float)[:, None]
    separable_y = (separable_x[:, 0] >= 10).astype(float)
    fit = fit_logistic(separable_x, separable_y)
    assert np.isfinite(fit.weights).all() and fit.weights[0] > 0
    assert (fit.predict_proba(separable_x) > 0.5).tolist() == separable_y.astype(bool).tolist()


def test_fit_logistic_constant_column_and_sample_weight():
    x, y, _, _ = synthetic_logistic(3_000, seed=2)
    with_constant = np.column_stack([x, np.full(len(x), 7.0)])
    fit = fit_logistic(with_constant, y)
    assert fit.weights[-1] == 0.0 and fit.scale[-1] == 1.0
    # Weight 2 on a row equals listing it twice.
    weights = np.where(np.arange(len(x)) % 3 == 0, 2.0, 1.0)
    repeat = np.where(weights == 2.0, 2, 1)
    # l2 = 0: the penalty acts on standardised weights, and duplicating rows changes the standardisation.
    weighted = fit_logistic(x, y, l2=0.0, sample_weight=weights)
    duplicated = fit_logistic(np.repeat(x, repeat, axis=0), np.repeat(y, repeat), l2=0.0)
    np.testing.assert_allclose(weighted.weights, duplicated.weights, rtol=1e-6)
    with pytest.raises(ValueError, match="NaN"):
        fit_logistic(np.array([[np.nan], [1.0]]), [0, 1])


def test_platt_scale_recovers_slope_and_intercept():
    rng = np.random.default_rng(3)
    scores = rng.normal(0.0, 1.0, 40_000)
    labels = rng.random(40_000) < sigmoid(2.0 * scores - 1.0)
    a, b = platt_scale(scores, labels)
    assert a == pytest.approx(2.0, rel=0.05)
    assert b == pytest.approx(-1.0, abs=0.05)
    # Shifting and scaling the raw score is absorbed by (a, b).
    a2, b2 = platt_scale(10 * scores + 3, labels)
    assert a2 == pytest.approx(a / 10, rel=1e-6)
    assert b2 == pytest.approx(b - 3 * a / 10, rel=1e-6)


def test_platt_scale_on_separable_scores_is_finite_and_oriented():
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    labels = np.array([0, 0, 0, 1, 1, 1])
    a, b = platt_scale(scores, labels)
    assert np.isfinite([a, b]).all() and a > 0
    p = sigmoid(a * scores + b)
    assert (p[3:] > 0.5).all() and (p[:3] < 0.5).all()
    with pytest.raises(ValueError, match="both"):
        platt_scale([0.1, 0.2], [1, 1])


def test_sigmoid_is_stable_at_extremes():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(sigmoid([-1000.0, 0.0, 1000.0]), [0.0, 0.5, 1.0])


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("The cat sat.", "the cat sat", 1.0),
        ("", "", 1.0),
        ("", "cat", 0.0),
        ("cat", "", 0.0),
        ("a an the", "the", 1.0),  # only articles: both normalise to nothing
        ("red green blue", "red green yellow", 2 / 3),
        ("go go go", "go", 0.5),
        ("It costs 1,000 dollars", "it costs 1000 dollars!", 1.0),
        ("0.50", "0.5", 1.0),
        ("apples", "oranges", 0.0),
    ],
)
def test_token_f1(a, b, expected):
    assert token_f1(a, b) == pytest.approx(expected)


def test_normalize_tokens():
    assert normalize_tokens("The 1,000 apples cost $0.20, a LOT!") == [
        "1000",
        "apples",
        "cost",
        "0.2",
        "lot",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Natalia sold 48+24 = 72 clips altogether.", "72"),
        ("He earned $1,000.00 in total", "1000"),
        ("It was -3 degrees", "-3"),
        ("10-3", "3"),
        ("COVID-19", "19"),
        ("Ann has .5 dozen left.", "0.5"),
        ("so 3.50.", "3.5"),
        ("007 agents", "7"),
        ("12,345,678 people", "12345678"),
        ("1,2345", "2345"),
        ("no digits here", None),
        ("", None),
    ],
)
def test_final_number(text, expected):
    assert final_number(text) == expected


def test_closer_to_clean_and_similarity():
    clean = "Natalia sold 48 + 24 = 72 clips in April and May."
    noisy = "Natalia sold 48 + 24 = 75 clips in April and May."
    assert text_similarity(clean, clean) == 1.0
    assert 0.8 < text_similarity(noisy, clean) < 1.0
    assert closer_to_clean(noisy, clean, clean)
    assert not closer_to_clean(noisy, noisy, clean)  # no improvement is not closer
    assert not closer_to_clean(noisy, "I'm sorry, I can't help with that.", clean)
    assert closer_to_clean("As an AI language model, I cannot.", "She sold 72 clips.", clean)
