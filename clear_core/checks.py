"""Deterministic checks of a response's form and arithmetic: failures a model's likelihood cannot see.

A small model finds repeated text *more* likely, not less (each copy predicts the next), and cannot add
three-digit numbers; so a loop of repeated lines or a stated sum that is wrong both look fine to it. These checks
are exact, cheap and explainable, and they are stored as their own signals so a reviewer sees why a row scored low.
"""

from __future__ import annotations

import re

_NUM = r"\$?\s?(?:\d[\d,]*(?:\.\d+)?|\.\d+)%?"
_UNIT = r"(?:\s(?!(?:x|times|of|by|per)\b)[a-z]+)?"  # "48 apples + 12 apples = 60": one lowercase word may follow
_TERM = _NUM + _UNIT
# "x" as a times sign, never the x inside "boxes". The spaces are possessive (*+): a space after a sign belongs to
# the sign, never to the next number's optional space, so a chain has one reading and a long one without "=" fails
# in linear time instead of trying 2^n ways to split its spaces ("$15 + 4 + 4 + ... + 4", 60 terms, hung a run).
_OP = r"\s*+(?:[-+*/×÷]|(?<![a-z])x(?![a-z]))\s*+"
# An expression of two or more numbers joined by + - * / (x, ×, ÷ too), "=", and the stated result. The result
# must not continue as an expression itself ("= 1/4", "= 3 * 5"), and nothing arithmetic may come just before
# (nor a sign and a space or two: a chain is tried from its first number only, not again from each of its terms).
_EQUATION = re.compile(
    r"(?<![\d.,)(*/+×÷-])(?<!\$)(?<![-+*/×÷]\s)(?<![-+*/×÷]\s\s)(?<!\bx)(?<!\bx\s)"
    rf"({_TERM}(?:{_OP}{_TERM})++)\s*=\s*({_NUM})(?![\d,]*\.?\d)(?!\s*[-+*/x×÷(]\s*[\d$(.])"
)
_LEFT_CONTINUES = re.compile(r"(?:[-+*/×÷(]|\bx|\bof|\btimes|\bby)$", re.IGNORECASE)  # before spaces and "$"
_SEGMENT = re.compile(r"[^\n.!?]+[.!?]?")
_MIN_SEGMENT_WORDS = 3  # "Yes." twice is not a loop; only repeated sentences or lines of some length count


def _number(text: str) -> float:
    text = re.sub(r"[a-z]+$", "", text.strip()).replace("$", "").replace(",", "").strip()
    return float(text[:-1]) / 100 if text.endswith("%") else float(text)


def _evaluate(expression: str) -> float | None:
    """Value of a flat expression of numbers and + - * / with the usual precedence; None when it divides by 0."""
    parts = re.split(rf"({_OP})", expression)
    numbers = [_number(p) for p in parts[0::2]]
    ops = [p.strip().replace("x", "*").replace("×", "*").replace("÷", "/") for p in parts[1::2]]
    terms, signs, current = [], [], numbers[0]
    for op, value in zip(ops, numbers[1:]):
        if op == "*":
            current *= value
        elif op == "/":
            if value == 0:
                return None
            current /= value
        else:
            terms.append(current)
            signs.append(op)
            current = value
    terms.append(current)
    total = terms[0]
    for sign, term in zip(signs, terms[1:]):
        total = total + term if sign == "+" else total - term
    return total


def _matches(stated_text: str, computed: float) -> bool:
    """The stated result equals the computation, up to the rounding its own decimals show."""
    stated = _number(stated_text)
    digits = stated_text.replace("%", "").partition(".")[2]
    tolerance = 0.5 * 10 ** -len(digits) if digits else 0.5
    scale = 100 if stated_text.strip().endswith("%") else 1  # "= 25%" states 0.25 at percent precision
    return abs(stated - computed) * scale <= tolerance + 1e-9 * max(1.0, abs(computed)) * scale


def _left_continues(text: str, start: int) -> bool:
    """Whether an operator, "(" or "x", "of", "times", "by" comes just before ``start``, past spaces and "$". Only
    the few characters there are read, so a text of thousands of equations is checked in linear time."""
    end = start
    while end > 0 and (text[end - 1].isspace() or text[end - 1] == "$"):
        end -= 1
    return _LEFT_CONTINUES.search(text[max(0, end - 8) : end]) is not None


def arithmetic_errors(text: str) -> int | None:
    """How many plain equations "a + b * c = d" in the text state a wrong result; None when it states none.

    Only numbers, operators and single unit words count ("48 apples + 12 = 60"); an equation with more words
    between its numbers is skipped, not guessed, and so is one whose result is itself an expression
    ("1/2 * 1/2 = 1/4").
    """
    checked = wrong = 0
    for match in _EQUATION.finditer(text):
        if _left_continues(text, match.start()):
            continue  # "60 students x 2/3 = 40": the written equation starts further left, past a word
        expression, stated = match.groups()
        try:
            computed = _evaluate(expression)
        except ValueError:  # a number the regex admits but float() does not ("1,,2")
            continue
        if computed is None:
            continue
        checked += 1
        # A percent sign is used both ways ("100/4 = 25%", "1.2 x 100% = 120"): either reading passes.
        readings = (computed, computed * 100, computed / 100) if "%" in match.group(0) else (computed,)
        wrong += not any(_matches(stated, value) for value in readings)
    return wrong if checked else None


def repetition(text: str) -> float:
    """Share of the response's sentences and lines (of 3+ words) that repeat an earlier one word for word.

    0 for text without repeats; 0.75 for one sentence written four times. Case and spacing are ignored.
    """
    seen: set[str] = set()
    total = repeats = 0
    for segment in _SEGMENT.findall(text):
        words = segment.lower().split()
        if len(words) < _MIN_SEGMENT_WORDS:
            continue
        key = " ".join(words).rstrip(".!?")
        total += 1
        if key in seen:
            repeats += 1
        seen.add(key)
    return repeats / total if total else 0.0


_WORD = re.compile(r"\w+")
_ECHO_GRAM = 4  # words per n-gram when comparing response and prompt
ECHO_SHARE = 0.5  # a prompt_copy above this: the prompt given back instead of answered


def prompt_copy(prompt: str, response: str) -> float:
    """How much the response is the prompt again: the smaller of (share of the response's word 4-grams found in the
    prompt) and (share of the prompt's found in the response). About 1 for a prompt echoed back instead of answered;
    low for an answer that quotes part of its input (an extraction, code using the given example), since most of
    the prompt is then not in the response. A small model finds an echo very likely; this check does not."""
    p = _WORD.findall(prompt.lower())
    r = _WORD.findall(response.lower())
    if not p or not r:
        return 0.0
    return min(_covered(r, p), _covered(p, r))


def _covered(text: list[str], other: list[str]) -> float:
    """Share of `text`'s word n-grams that also occur in `other` (for a text shorter than n: all of it, or none)."""
    n = _ECHO_GRAM
    if len(text) < n:
        return 1.0 if " ".join(text) in " ".join(other) else 0.0
    grams = {tuple(other[i : i + n]) for i in range(len(other) - n + 1)}
    mine = [tuple(text[i : i + n]) for i in range(len(text) - n + 1)]
    return sum(g in grams for g in mine) / len(mine)


_PAIRS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = {v: k for k, v in _PAIRS.items()}
# One-line string literals and inline code; a single quote between letters is an apostrophe ("Michael's"), not one.
_QUOTED = re.compile(r"\"[^\"\n]*\"|(?<![A-Za-z])'[^'\n]*'(?![A-Za-z])|`[^`\n]*`")


def unclosed_brackets(text: str) -> int:
    """How many brackets ( [ { and markdown code fences the text opens and never closes: code or a formula cut
    off mid-way. Brackets inside one-line quotes are ignored, and a closer without its opener ("1)" in a list) is
    not counted. 0 for any complete text; a model's stop probability misses a cut at the end of a statement."""
    depth: list[str] = []
    for ch in _QUOTED.sub("", text.replace("```", "")):
        if ch in _PAIRS:
            depth.append(ch)
        elif ch in _CLOSERS and depth and depth[-1] == _CLOSERS[ch]:
            depth.pop()
    return len(depth) + text.count("```") % 2


def proposal_problem(prompt: str, proposal: str | None, *, cut_off: bool) -> str | None:
    """Why a proposed correction must not be offered, or None when it passes: the checks a response gets, applied to
    the model's own answer. A 135M model's greedy answer often loops until the token cap or repeats the question;
    such a proposal is never better than a doubtful original, however the judge rates it.

    ``cut_off``: the proposal stopped at the token cap, or ends where the model would not stop (the engine knows).
    """
    if proposal is None or not proposal.strip():
        return "blank"
    if repetition(proposal) > 0:
        return "loops"
    if cut_off:
        return "cut off"
    if prompt_copy(prompt, proposal) > ECHO_SHARE:
        return "echoes the prompt"
    return None
