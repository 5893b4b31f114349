"""score_rows with a tiny random model: every stored field present and in range; proposals only where they matter."""

from __future__ import annotations

import dataclasses
import math

import pytest

from clear_core import engine, prompts
from clear_core.confidence import ScoringConfig
from clear_core.engine import EXAMPLE_MAX_TOKENS, choose_examples, score_rows
from clear_core.model import continuation_logprobs
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


def test_calibration_copies_get_no_proposal_generated(tiny_model, monkeypatch):
    """A run's corrupted copies (row_index < 0) are scored only for the calibration: generating a proposal for them
    would be thrown away, so none is generated."""
    prompted = []
    real_generate = engine.generate

    def counting_generate(lm, prompts_ids, *args, **kwargs):
        if kwargs.get("greedy"):  # the proposals' pass (the samples' pass is not greedy)
            prompted.extend(prompts_ids)
        return real_generate(lm, prompts_ids, *args, **kwargs)

    monkeypatch.setattr(engine, "generate", counting_generate)
    rows = _rows()
    copies = [{**r, "row_index": -(i + 1)} for i, r in enumerate(rows[:2])]
    scored = score_rows(tiny_model, copies + rows, ScoringConfig(samples=0, max_new_tokens=4, propose_below=1.01))
    assert [s["row_index"] for s in scored] == [-1, -2, 0, 1, 2, 3]
    assert len(prompted) == len(rows)  # one proposal prompt per dataset row, none for the two copies


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


def _examples(rows):
    """The example rows in order (as choose_examples returns them): three shown, one spare."""
    return [rows[3], rows[0], rows[1], rows[2]]


def test_context_examples_are_shown_before_each_prompt_in_the_likelihood_pass(tiny_model):
    lm = tiny_model
    rows = _rows()
    extra = {"row_index": 9, "prompt_messages": [{"role": "user", "content": "Say hi."}], "prompt": "Say hi."}
    extra["response"] = "Hi there."
    config = ScoringConfig(samples=0, self_reflection=False, propose=False, context_examples=2)
    examples = _examples(rows)
    scored = score_rows(lm, [extra], config, examples=examples)[0]
    turns = []
    for e in examples[:2]:
        turns += [*e["prompt_messages"], {"role": "assistant", "content": e["response"]}]
    response = lm.encode_text(extra["response"])
    cond, uncond = continuation_logprobs(
        lm,
        [lm.encode_prompt(turns + extra["prompt_messages"]), lm.encode_prompt(turns + prompts.UNCONDITIONAL)],
        [response, response],
    )
    assert scored["logprob_mean"] == pytest.approx(sum(cond.token_logprobs) / len(response), abs=1e-4)
    assert scored["logprob_uncond_mean"] == pytest.approx(sum(uncond.token_logprobs) / len(response), abs=1e-4)
    assert scored["pmi"] == scored["logprob_mean"] - scored["logprob_uncond_mean"]
    assert scored["stop_prob"] == pytest.approx(math.exp(cond.stop_logprob), abs=1e-4)
    plain = score_rows(lm, [extra], dataclasses.replace(config, context_examples=0), examples=examples)[0]
    assert plain == score_rows(lm, [extra], dataclasses.replace(config, context_examples=0))[0]  # 0: no examples
    assert abs(plain["logprob_mean"] - scored["logprob_mean"]) > 1e-6


def test_a_row_never_sees_itself_among_the_examples(tiny_model):
    rows = _rows()
    config = ScoringConfig(samples=0, self_reflection=False, propose=False, context_examples=2)
    examples = _examples(rows)
    together = score_rows(tiny_model, rows, config, examples=examples)
    # row 3 is the first example: it is shown rows 0 and 1 (the next two), as if the examples were only those
    alone = score_rows(tiny_model, [rows[3]], config, examples=[rows[0], rows[1]])[0]
    assert together[3]["logprob_mean"] == pytest.approx(alone["logprob_mean"], abs=1e-4)
    assert together[3]["pmi"] == pytest.approx(alone["pmi"], abs=1e-4)
    # row 2 is only the spare: it sees rows 3 and 0, like every row that is not an example
    others = score_rows(tiny_model, [rows[2]], config, examples=[rows[3], rows[0]])[0]
    assert together[2]["logprob_mean"] == pytest.approx(others["logprob_mean"], abs=1e-4)


def test_choose_examples_takes_the_most_confident_short_rows_and_one_spare(tiny_model):
    rows = _rows()
    long_text = "word " * (EXAMPLE_MAX_TOKENS + 10)
    rows.append({"row_index": 4, "prompt_messages": [{"role": "user", "content": "Long?"}], "prompt": "Long?"})
    rows[-1]["response"] = long_text
    config = ScoringConfig(samples=0, self_reflection=False, propose=False, context_examples=2)
    chosen = choose_examples(tiny_model, rows, config)
    assert len(chosen) == 3 and all(r["row_index"] != 4 for r in chosen)  # the long row is never shown
    plain = score_rows(tiny_model, rows[:4], dataclasses.replace(config, context_examples=0))
    by_confidence = sorted(range(4), key=lambda i: (-plain[i]["confidence"], i))
    assert [r["row_index"] for r in chosen] == by_confidence[:3]
    assert choose_examples(tiny_model, rows, dataclasses.replace(config, context_examples=0)) == []
    assert choose_examples(tiny_model, [], config) == []
