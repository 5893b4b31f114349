"""The pure confidence functions: paper formulas, the combiner, and the correction rule."""

from __future__ import annotations

import math

import pytest

from clear_core.confidence import (
    DEFAULT_COMBINER,
    Combiner,
    ScoringConfig,
    answers_match,
    bsdetector_confidence,
    combined_confidence,
    correction_confidence,
    observed_consistency,
    option_score,
)


def test_config_defaults_are_the_papers_and_round_trip_through_params():
    config = ScoringConfig()
    assert (config.samples, config.temperature, config.alpha, config.beta) == (5, 1.0, 0.8, 0.7)
    assert ScoringConfig.from_params({**config.to_params(), "unknown": 1}) == config


def test_answers_match_compares_final_numbers_else_text():
    assert answers_match("so she has 72 clips", "Natalia sold 72 clips altogether") == 1.0
    assert answers_match("the answer is 70", "Natalia sold 72 clips") == 0.0
    assert answers_match("Paris", "  paris ") == 1.0
    assert answers_match("Paris", "Lyon") == 0.0


def test_observed_consistency_is_the_mean_of_alpha_weighted_agreements():
    response = "The capital of France is Paris."
    samples = ["The capital of France is Paris.", "Lyon"]
    expected = (0.8 * 1.0 + 0.2 * 1.0 + 0.8 * 0.0 + 0.2 * 0.0) / 2
    assert observed_consistency(samples, response, alpha=0.8) == pytest.approx(expected)
    assert observed_consistency([], response, alpha=0.8) is None


def test_option_score_is_expected_score_over_renormalised_options():
    # A = 1, B = 0, C = 0.5 (BSDetector); probabilities need not sum to one (other tokens take mass)
    assert option_score([0.2, 0.2, 0.0], [1.0, 0.0, 0.5]) == pytest.approx(0.5)
    assert option_score([0.0, 0.0, 0.4], [1.0, 0.0, 0.5]) == pytest.approx(0.5)
    assert option_score([0.3, 0.0, 0.0], [1.0, 0.0, 0.5]) == pytest.approx(1.0)
    assert option_score([0.0, 0.0, 0.0], [1.0, 0.0, 0.5]) == 0.5


def test_bsdetector_confidence_weights_consistency_by_beta():
    assert bsdetector_confidence(1.0, 0.0, beta=0.7) == pytest.approx(0.7)
    assert bsdetector_confidence(None, 0.4, beta=0.7) == pytest.approx(0.4)


def test_combined_confidence_is_a_probability_and_monotone_in_each_signal():
    base = {"logprob_mean": -1.5, "pmi": 0.5, "eos_prob": 0.1, "self_reflection": 0.5, "consistency": 0.3}
    c = combined_confidence(base)
    assert 0.0 < c < 1.0
    for name, higher in [("logprob_mean", -0.5), ("pmi", 2.0), ("eos_prob", 0.9)]:
        assert combined_confidence({**base, name: higher}) > c, name
    # a missing signal counts as its mean value: it neither raises nor lowers the confidence
    at_mean = DEFAULT_COMBINER.means["consistency"]
    assert combined_confidence({**base, "consistency": None}) == pytest.approx(
        combined_confidence({**base, "consistency": at_mean})
    )


def test_combiner_ignores_missing_signals():
    combiner = Combiner(weights={"a": 2.0}, means={"a": 0.0}, scales={"a": 1.0}, bias=0.0)
    assert combiner({"a": None}) == pytest.approx(0.5)
    assert combiner({"a": float("nan")}) == pytest.approx(0.5)
    assert combiner({"a": 1.0}) == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert set(DEFAULT_COMBINER.weights) <= set(DEFAULT_COMBINER.means) & set(DEFAULT_COMBINER.scales)


def test_correction_confidence_never_exceeds_doubt_in_the_original():
    assert correction_confidence(None, 0.1) is None
    assert correction_confidence(0.5, 0.2) == pytest.approx(0.8)  # indifferent judge: 1 - confidence
    assert correction_confidence(0.9, 0.2) == pytest.approx(0.8)
    assert correction_confidence(0.1, 0.2) == pytest.approx(0.16)
    assert correction_confidence(1.0, 0.95) <= 0.05 + 1e-12
