"""score_rows with a tiny random model: every stored field present and in range; proposals only where they matter."""

from __future__ import annotations

import math

from clear_core.confidence import ScoringConfig
from clear_core.engine import score_rows
from clear_core.store import SCORE_FIELDS


def _rows():
    texts = [
        ("What is 2+2?", "2+2 is 4."),
        ("Name a fruit.", "Apple"),
        ("Write a haiku about the sea.", ""),  # empty responses are bad data, not errors
        ("Explain gravity in one sentence.", "Gravity pulls masses toward each other."),
    ]
    return [
        {"row_index": i, "prompt_messages": [{"role": "user", "content": p}], "prompt": p, "response": r}
        for i, (p, r) in enumerate(texts)
    ]


def test_every_score_field_is_produced_and_in_range(tiny_model):
    scored = score_rows(tiny_model, _rows(), ScoringConfig(samples=2, max_new_tokens=6, propose_below=1.01))
    assert [s["row_index"] for s in scored] == [0, 1, 2, 3]
    for s in scored:
        assert set(SCORE_FIELDS) <= set(s)
        for name in ("confidence", "confidence_bsdetector", "self_reflection", "consistency", "eos_prob"):
            assert 0.0 <= s[name] <= 1.0, name
        assert s["logprob_mean"] <= 0.0 and math.isfinite(s["logprob_mean"])
        assert s["pmi"] == s["logprob_mean"] - s["logprob_uncond_mean"]
        # a random model's proposals run to the token cap, so they are not offered (tests/test_autocorrect.py)
        assert (s["proposed_response"] is None) == (s["correction_confidence"] is None)
        if s["judge_prob"] is not None:
            assert 0.0 <= s["judge_prob"] <= 1.0
            assert s["correction_confidence"] <= 1.0 - s["confidence"] + 1e-9
    assert scored[2]["n_response_tokens"] == 0


def test_no_proposals_above_propose_below_and_none_when_disabled(tiny_model):
    rows = _rows()
    scored = score_rows(tiny_model, rows, ScoringConfig(samples=0, max_new_tokens=4, propose_below=0.0))
    assert all(s["proposed_response"] is None and s["correction_confidence"] is None for s in scored)
    assert all(s["consistency"] is None for s in scored)  # k = 0: no samples, BSDetector falls back to S
    assert all(s["confidence_bsdetector"] == s["self_reflection"] for s in scored)
    scored = score_rows(tiny_model, rows, ScoringConfig(samples=0, propose=False))
    assert all(s["proposed_response"] is None for s in scored)


def test_scores_do_not_depend_on_batch_composition(tiny_model):
    rows = _rows()
    config = ScoringConfig(samples=0, propose=False)
    together = score_rows(tiny_model, rows, config)
    alone = [score_rows(tiny_model, [r], config)[0] for r in rows]
    for a, b in zip(together, alone):
        for name in ("logprob_mean", "pmi", "eos_prob", "self_reflection", "confidence"):
            assert abs(a[name] - b[name]) < 1e-4, name


def test_without_self_reflection_its_signal_is_absent_and_the_rest_unchanged(tiny_model):
    rows = _rows()
    paper = score_rows(tiny_model, rows, ScoringConfig(samples=0, propose=False))
    fast = score_rows(tiny_model, rows, ScoringConfig(samples=0, self_reflection=False, propose=False))
    for a, b in zip(paper, fast):
        assert b["self_reflection"] is None and b["confidence_bsdetector"] is None  # no O, no S: no BSDetector
        for name in ("logprob_mean", "pmi", "stop_prob", "final_number_logprob", "repetition"):
            assert a[name] == b[name], name
        assert 0.0 <= b["confidence"] <= 1.0
    with_samples = score_rows(tiny_model, rows, ScoringConfig(samples=2, self_reflection=False, max_new_tokens=4))
    assert all(s["confidence_bsdetector"] == s["consistency"] for s in with_samples)  # O alone
