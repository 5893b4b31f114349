"""The pure confidence functions: paper formulas, the combiner, and the correction rule."""

from __future__ import annotations

import math

import pytest

from clear_core.confidence import (
    DEFAULT_COMBINER,
    Combiner,
    LogisticScore,
    ScoringConfig,
    answers_match,
    bsdetector_confidence,
    combined_confidence,
    correction_confidence,
    final_number_tokens,
    is_cut_off,
    observed_consistency,
    option_score,
    pmi_evidence,
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


BASE_SIGNALS = {
    "logprob_mean": -1.5,
    "logprob_min": -8.0,
    "pmi": 0.5,
    "final_number_logprob": -3.0,
    "stop_prob": 0.3,
    "self_reflection": 0.5,
    "consistency": 0.3,
    "repetition": 0.0,
    "arithmetic_errors": None,
}


def test_combined_confidence_is_a_probability_and_monotone_in_each_signal():
    c = combined_confidence(BASE_SIGNALS)
    assert 0.0 < c < 1.0
    for name, higher in [("logprob_mean", -0.5), ("pmi", 2.0), ("stop_prob", 0.9), ("consistency", 0.8)]:
        assert combined_confidence({**BASE_SIGNALS, name: higher}) > c, name
    # a missing signal counts as its mean value: it neither raises nor lowers the confidence
    at_mean = DEFAULT_COMBINER.content.means["consistency"]
    assert combined_confidence({**BASE_SIGNALS, "consistency": None}) == pytest.approx(
        combined_confidence({**BASE_SIGNALS, "consistency": at_mean})
    )


def test_pmi_evidence_grows_with_the_tokens_that_fit_the_prompt():
    """The same mean PMI over more tokens is surer evidence that the prompt explains the response (√n, as a
    t-statistic); a long answer that fits its prompt outranks a one-liner with the same mean, and a response that
    fits another prompt (mean PMI near 0 or below) gains nothing from its length."""
    assert pmi_evidence(0.5, 100) == pytest.approx(5.0)
    assert pmi_evidence(0.5, 0) == pytest.approx(0.5)  # an empty response counts as one token
    assert pmi_evidence(None, 10) is None and pmi_evidence(0.5, None) is None
    long_fit = {**BASE_SIGNALS, "pmi": 0.4, "n_response_tokens": 200}
    one_liner = {**BASE_SIGNALS, "pmi": 0.4, "n_response_tokens": 4}
    assert combined_confidence(long_fit) > combined_confidence(one_liner)
    off_prompt = {**BASE_SIGNALS, "pmi": -0.05}
    assert combined_confidence({**off_prompt, "n_response_tokens": 200}) <= combined_confidence(
        {**off_prompt, "n_response_tokens": 4}
    )
    # rows stored without a token count: the evidence term is left out, as any missing signal
    assert combined_confidence(BASE_SIGNALS) == pytest.approx(
        combined_confidence({**BASE_SIGNALS, "n_response_tokens": None})
    )


def test_a_cut_short_looping_or_miscalculated_response_is_doubtful_however_likely_its_words():
    """The factors multiply: excellent content cannot buy back a response that stops mid-sentence, repeats itself
    or states a wrong sum."""
    excellent = {**BASE_SIGNALS, "logprob_mean": -0.3, "pmi": 2.5, "consistency": 0.9, "stop_prob": 0.9}
    assert combined_confidence(excellent) > 0.8
    assert combined_confidence({**excellent, "arithmetic_errors": 0}) == pytest.approx(
        combined_confidence(excellent), abs=0.05
    )
    for flaw in ({"stop_prob": 1e-4}, {"repetition": 0.75}, {"arithmetic_errors": 1}):
        assert combined_confidence({**excellent, **flaw}) < 0.5, flaw


def test_code_cut_at_the_end_of_a_statement_is_cut_off_though_the_model_would_stop_there():
    """`stop_prob` sees nothing wrong with code that stops after a complete line inside an open block; the open
    bracket does, and makes the row cut off (so Auto-Correct asks for a continuation)."""
    ends_a_line = {**BASE_SIGNALS, "logprob_mean": -0.3, "pmi": 2.5, "consistency": 0.9, "stop_prob": 0.99}
    assert not is_cut_off({**ends_a_line, "unclosed_brackets": 0})
    assert not is_cut_off(ends_a_line)  # rows scored before the check: nothing changes
    assert is_cut_off({**ends_a_line, "unclosed_brackets": 1})
    assert combined_confidence({**ends_a_line, "unclosed_brackets": 2}) < combined_confidence(ends_a_line) - 0.3


def test_logistic_score_ignores_missing_signals():
    score = LogisticScore(weights={"a": 2.0}, means={"a": 0.0}, scales={"a": 1.0}, bias=0.0)
    assert score({"a": None}) == pytest.approx(0.5)
    assert score({"a": float("nan")}) == pytest.approx(0.5)
    assert score({"a": 1.0}) == pytest.approx(1 / (1 + math.exp(-2.0)))
    for factor in (DEFAULT_COMBINER.content, DEFAULT_COMBINER.complete, DEFAULT_COMBINER.checks):
        assert set(factor.weights) <= set(factor.means) & set(factor.scales)


def test_combiner_is_a_calibrated_product_that_round_trips_through_json():
    content = LogisticScore(weights={"a": 1.0}, means={"a": 0.0}, scales={"a": 1.0}, bias=0.0)
    complete = LogisticScore(weights={"b": 1.0}, means={"b": 0.0}, scales={"b": 1.0}, bias=0.0)
    checks = LogisticScore(weights={}, means={}, scales={}, bias=0.0)
    plain = Combiner(content, complete, checks)
    assert plain({"a": 0.0, "b": 0.0}) == pytest.approx(0.125)  # 0.5 * 0.5 * 0.5, identity Platt map
    calibrated = Combiner(content, complete, checks, platt_a=2.0, platt_b=0.5)
    values = [{"a": a, "b": b} for a, b in [(-2, 1), (0, 0), (1, 3), (3, -1)]]
    # Platt scaling is monotone: it changes the numbers, never the ranking
    assert sorted(values, key=plain) == sorted(values, key=calibrated)
    assert Combiner.from_json(calibrated.to_json()) == calibrated


def test_final_number_tokens_finds_the_tokens_of_the_last_number():
    text = "She had 48 clips and sold 24, so 72 in all."
    spans = [(m.start(), m.end()) for m in __import__("re").finditer(r"\d|[^\d\s]+|\s+", text)]
    picked = final_number_tokens(text, spans)
    assert "".join(text[a:b] for a, b in (spans[i] for i in picked)) == "72"
    assert final_number_tokens("no digits here", spans) is None
    assert final_number_tokens(text, None) is None


def test_correction_confidence_never_exceeds_doubt_in_the_original():
    assert correction_confidence(None, 0.1) is None
    assert correction_confidence(0.5, 0.2) == pytest.approx(0.8)  # indifferent judge: 1 - confidence
    assert correction_confidence(0.9, 0.2) == pytest.approx(0.8)
    assert correction_confidence(0.1, 0.2) == pytest.approx(0.16)
    assert correction_confidence(1.0, 0.95) <= 0.05 + 1e-12
