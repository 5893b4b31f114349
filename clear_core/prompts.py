"""Every prompt the model sees, in one place.

The self-reflection wording follows BSDetector (arXiv 2308.16175, section 3.2); instead of asking for a sampled
explanation and parsing the letter out of it, the assistant turn is opened with "Answer: (" and the probabilities
of the next token being A, B or C are read directly: an expected score rather than a coin flip.
"""

from __future__ import annotations

# Self-reflection options and their scores (paper: A = 1, B = 0, C = 0.5).
REFLECTION_OPTIONS = ("A", "B", "C")
REFLECTION_SCORES = (1.0, 0.0, 0.5)
ANSWER_PREFIX = "Answer: ("

_OPTIONS_BLOCK = "(A) Correct\n(B) Incorrect\n(C) I am not sure"


def _qa(prompt: str, response: str) -> str:
    return f"Question: {prompt}\n\nProposed Answer: {response}\n\n"


def reflection_first(prompt: str, response: str) -> list[dict]:
    """BSDetector's first self-reflection question."""
    text = _qa(prompt, response) + f"Is the proposed answer:\n{_OPTIONS_BLOCK}\n\nAnswer with the letter of one choice."
    return [{"role": "user", "content": text}]


def reflection_second(prompt: str, response: str) -> list[dict]:
    """BSDetector's follow-up question, asked as a fresh conversation so both reads are batched together."""
    text = (
        _qa(prompt, response)
        + f"Are you really sure the proposed answer is correct? Choose again:\n{_OPTIONS_BLOCK}\n\n"
        "Answer with the letter of one choice."
    )
    return [{"role": "user", "content": text}]


# Pairwise judgement for Auto-Correct: which of two responses is better. Asked in both orders to cancel the
# strong position bias small models have; the two option probabilities are renormalised over {A, B}.
JUDGE_OPTIONS = ("A", "B")


def judge(prompt: str, first: str, second: str) -> list[dict]:
    """Ask which of two responses to `prompt` is better."""
    text = (
        f"Question: {prompt}\n\nResponse (A): {first}\n\nResponse (B): {second}\n\n"
        "Which response answers the question better: more correct, complete and on topic? "
        "Answer with the letter A or B."
    )
    return [{"role": "user", "content": text}]


# The 'no prompt' context for the unconditional log-probability of a response: an empty user turn keeps the
# chat formatting identical, so the difference to the conditional log-probability isolates the prompt's effect.
UNCONDITIONAL = [{"role": "user", "content": ""}]
