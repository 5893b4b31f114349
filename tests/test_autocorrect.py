"""Auto-Correct (issue 8): proposals get the checks a response gets, cut-off responses are continued, and the offer
is ranked by the model's confidence in its own answer. Pure rules first; then the engine's plumbing with the tiny
random-weight model and canned generations."""

from __future__ import annotations

import pytest

from clear_core import checks, engine, prompts
from clear_core.confidence import ScoringConfig, correction_confidence, is_cut_off
from clear_core.model import Generations, continuation_logprobs

PROMPT = "Explain in one sentence why the sky looks blue during the day."


@pytest.mark.parametrize(
    ("proposal", "cut_off", "problem"),
    [
        ("", False, "blank"),
        ("  \n ", False, "blank"),
        (None, False, "blank"),
        ("The sky is blue because air scatters blue light. " * 4, False, "loops"),
        ("Air molecules scatter blue light more than red light, so", True, "cut off"),
        ("Explain in one sentence why the sky looks blue during the day.", False, "echoes the prompt"),
        ("Air scatters short blue wavelengths of sunlight far more than red ones.", False, None),
    ],
)
def test_a_proposal_gets_the_checks_a_response_gets(proposal, cut_off, problem):
    assert checks.proposal_problem(PROMPT, proposal, cut_off=cut_off) == problem


def test_an_answer_quoting_part_of_its_prompt_is_not_an_echo():
    prompt = "Rewrite this sentence in the past tense: The cat sits on the warm mat and sleeps."
    assert checks.proposal_problem(prompt, "The cat sat on the warm mat and slept.", cut_off=False) is None


def test_correction_confidence_needs_confidence_in_the_proposal():
    assert correction_confidence(None, 0.1, 0.9) is None
    assert correction_confidence(0.5, 0.2) == pytest.approx(0.8)  # rows scored before proposal confidence existed
    assert correction_confidence(0.5, 0.2, 0.9) == pytest.approx(0.72)
    assert correction_confidence(0.9, 0.2, 0.3) == pytest.approx(0.24)  # a doubtful proposal is not offered at 0.7
    for judge in (0.0, 0.3, 0.5, 1.0):
        for conf in (0.0, 0.4, 0.99):
            for own in (0.0, 0.5, 1.0):
                assert 0.0 <= correction_confidence(judge, conf, own) <= 1.0 - conf + 1e-12


def test_cut_off_is_a_low_stop_probability():
    assert is_cut_off({"stop_prob": 0.001})
    assert not is_cut_off({"stop_prob": 0.6})
    assert not is_cut_off({})  # unknown: not cut off


@pytest.mark.parametrize(
    ("response", "continuation", "joined"),
    [
        ("He had 5 apples", "and ate 2.", "He had 5 apples and ate 2."),
        ("He had 5 apples", ", so he ate 2.", "He had 5 apples, so he ate 2."),
        ("Step 1: add\n", "the numbers.", "Step 1: add\nthe numbers."),
        ("Done", "", "Done"),
    ],
)
def test_a_continuation_joins_its_response(response, continuation, joined):
    assert engine.join_continuation(response, continuation) == joined


# -- the engine, with the tiny random-weight model ----------------------------------------------------------------

ROWS = [
    ("What is the capital of France?", "Berlin is the capital of France."),  # 0: rewritten, offered
    ("Explain gravity in one sentence.", "Gravity pulls masses"),  # 1: cut off, continued
    ("Is water wet?", "Water is wet."),  # 2: the proposal loops
    ("Name three primary colours of light.", "Blue."),  # 3: the proposal echoes the prompt
    ("Write a word.", "Word"),  # 4: the proposal is blank
]
CANNED = {
    0: "The capital of France is Paris.",
    1: "toward each other.",
    2: "Water is wet. Water is wet. Water is wet.",
    3: "Name three primary colours of light.",
    4: "   ",
}


@pytest.fixture
def canned(monkeypatch, tiny_model):
    """engine.generate answers the greedy proposals from CANNED (in the order asked) and records the prompts; row 1
    counts as cut off."""
    asked: list[list[int]] = []
    real = engine.generate

    def generate(lm, prompts, *, samples, greedy, **kwargs):
        if not greedy:
            return real(lm, prompts, samples=samples, greedy=greedy, **kwargs)
        asked.extend(list(kwargs.get("shared", ())) + list(p) for p in prompts)  # what the model reads
        return Generations([CANNED[i] for i in range(len(prompts))], [[] for _ in prompts])

    monkeypatch.setattr(engine, "generate", generate)
    monkeypatch.setattr(engine, "is_cut_off", lambda raw: raw.get("row_index") == 1)
    rows = [
        {"row_index": i, "prompt_messages": [{"role": "user", "content": p}], "prompt": p, "response": r}
        for i, (p, r) in enumerate(ROWS)
    ]
    return rows, asked


def test_only_checked_proposals_are_offered_and_stored(canned, tiny_model):
    rows, _ = canned
    config = ScoringConfig(samples=0, self_reflection=False, propose_below=1.01, max_new_tokens=64)
    scored = engine.score_rows(tiny_model, rows, config)
    assert scored[0]["proposed_response"] == CANNED[0]
    assert scored[1]["proposed_response"] == "Gravity pulls masses toward each other."
    for s in scored[:2]:
        assert 0.0 <= s["judge_prob"] <= 1.0
        assert 0.0 <= s["correction_confidence"] <= 1.0 - s["confidence"] + 1e-9
    for s in scored[2:]:  # loops, echoes the prompt, blank: nothing stored, so nothing to accept or recalibrate
        assert s["proposed_response"] is None and s["judge_prob"] is None and s["correction_confidence"] is None


def test_a_cut_off_response_is_continued_from_prompt_and_response(canned, tiny_model):
    rows, asked = canned
    config = ScoringConfig(samples=0, self_reflection=False, propose_below=1.01, max_new_tokens=64)
    engine.score_rows(tiny_model, rows, config)
    prefix = tiny_model.encode_prompt(rows[1]["prompt_messages"])
    assert asked[1] == prefix + tiny_model.encode_text(rows[1]["response"])  # one generation pass for both kinds
    assert asked[0] == tiny_model.encode_prompt(rows[0]["prompt_messages"])


def test_a_cut_off_echo_of_the_prompt_is_rewritten_not_continued(canned, tiny_model, monkeypatch):
    """Continuing a response that gives the prompt back keeps the echo (the check on the proposal no longer sees
    one once the continuation dilutes it): such a row gets a rewrite, even when it reads as cut off."""
    rows, asked = canned
    rows[3]["response"] = rows[3]["prompt"]  # the prompt given back instead of an answer
    monkeypatch.setattr(engine, "is_cut_off", lambda raw: raw.get("row_index") in (1, 3))
    config = ScoringConfig(samples=0, self_reflection=False, propose_below=1.01, max_new_tokens=64)
    engine.score_rows(tiny_model, rows, config)
    prefix = tiny_model.encode_prompt(rows[1]["prompt_messages"])
    assert asked[1] == prefix + tiny_model.encode_text(rows[1]["response"])  # cut off: continued
    assert asked[3] == tiny_model.encode_prompt(rows[3]["prompt_messages"])  # cut-off echo: rewritten


def test_with_examples_a_proposal_is_written_and_scored_after_the_example_turns(canned, tiny_model, monkeypatch):
    """The fast profile scores a response after a few of the dataset's own rows: its proposal is written after them
    too (so it can follow the dataset's form) and scored after them (so its confidence is on the response's scale)."""
    lm = tiny_model
    rows, asked = canned
    examples = [
        {"row_index": 10 + i, "prompt_messages": [{"role": "user", "content": p}], "prompt": p, "response": r}
        for i, (p, r) in enumerate([("Say hi.", "Hi!"), ("Add 1 and 1.", "2"), ("Spell cat.", "C-A-T"), ("?", "!")])
    ]
    turns = []
    for e in examples[:2]:
        turns += [*e["prompt_messages"], {"role": "assistant", "content": e["response"]}]
    config = ScoringConfig(samples=0, self_reflection=False, propose_below=1.01, max_new_tokens=64, context_examples=2)
    captured = []
    real = engine._propose
    monkeypatch.setattr(engine, "_propose", lambda *a, **k: captured.extend(real(*a, **k)) or captured)
    engine.score_rows(lm, rows, config, examples=examples)
    assert asked[0] == lm.encode_prompt(turns + rows[0]["prompt_messages"])  # a rewrite, after the turns
    assert asked[1] == lm.encode_prompt(turns + rows[1]["prompt_messages"]) + lm.encode_text(rows[1]["response"])
    proposal = lm.encode_text(CANNED[0])
    cond, uncond = continuation_logprobs(
        lm,
        [lm.encode_prompt(turns + rows[0]["prompt_messages"]), lm.encode_prompt(turns + prompts.UNCONDITIONAL)],
        [proposal, proposal],
    )
    own = captured[0].signals
    assert own["logprob_mean"] == pytest.approx(sum(cond.token_logprobs) / len(proposal), abs=1e-4)
    assert own["logprob_uncond_mean"] == pytest.approx(sum(uncond.token_logprobs) / len(proposal), abs=1e-4)


def test_the_proposal_confidence_ranks_the_offer(canned, tiny_model, monkeypatch):
    rows, _ = canned
    config = ScoringConfig(samples=0, self_reflection=False, propose_below=1.01, max_new_tokens=64)
    captured = []
    real = engine._propose
    monkeypatch.setattr(engine, "_propose", lambda *a, **k: captured.extend(real(*a, **k)) or captured)
    scored = engine.score_rows(tiny_model, rows, config)
    proposal = captured[0]
    assert proposal.problem is None and not proposal.continues and captured[1].continues
    assert 0.0 <= proposal.confidence <= 1.0
    assert scored[0]["correction_confidence"] == pytest.approx(
        correction_confidence(scored[0]["judge_prob"], scored[0]["confidence"], proposal.confidence)
    )
    assert [p.problem for p in captured[2:]] == ["loops", "echoes the prompt", "blank"]


def test_a_proposal_at_the_token_cap_is_not_offered(canned, tiny_model):
    rows, _ = canned
    config = ScoringConfig(samples=0, self_reflection=False, propose_below=1.01, max_new_tokens=4)
    scored = engine.score_rows(tiny_model, rows, config)
    assert scored[0]["proposed_response"] is None  # "The capital of France is Paris." is 7+ tokens: at the cap
