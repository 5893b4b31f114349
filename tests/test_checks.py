"""The deterministic checks: wrong arithmetic and repeated sentences, on real GSM8K text and hand-made cases."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clear_core import checks
from clear_core.checks import arithmetic_errors, repetition

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev" / "gsm8k_train.json"


@pytest.mark.parametrize(
    ("text", "wrong"),
    [
        ("Natalia sold 48/2 = 24 clips in May.", 0),
        ("Total earned = 96 + 125 = $222", 1),
        ("Jasper spent $10 + $5 + $20 = $35 on the ingredients.", 0),  # a chain is one equation
        ("2 + 3 * 4 = 14 and 2 + 3 * 4 = 20", 1),  # usual precedence
        ("Accommodation is 15% * $1000=$150", 0),  # percent of an amount
        ("So 100/4=25% of them", 0),  # a ratio written as a percent
        ("It is 10/3 = 3.33 hours", 0),  # rounding the text itself shows
        ("It is 10/3 = 3.5 hours", 1),
        ("3 boxes x 4 = 13", 1),  # "x" between numbers is a times sign, a unit word may follow a number
        ("There are 60 students x 2/3 = 40 students", 0),
        ("Half of a half is 1/2 * 1/2 = 1/4", None),  # a fractional result is not guessed at
        ("The proportion is 3/7.", None),
        ("No equations here, just words.", None),
        ("Divide: 5 / 0 = 0", None),
    ],
)
def test_arithmetic_errors_count_wrong_equations(text, wrong):
    assert arithmetic_errors(text) == wrong


LONG_TEXTS = [
    ("The total cost is $15.00" + " + 4" * 60 + " dollars.", None),  # a proposal like this hung a run (no "=")
    ("4" + " x 4" * 60, None),
    ("1" + " + 1" * 60 + " = 61", 0),
    ("1" + "  +  1" * 60 + " = 60", 1),
    ("1 + 1 = 2. " * 5000, 0),  # thousands of equations, each checked for a word or sign just before it
    ("1 + 1 = 3. " * 5000, 5000),
]


def test_arithmetic_errors_read_long_chains_and_many_equations():
    """A chain of 60 terms with no "=" once took 2^60 regex steps, and a text of 5000 equations was read once per
    equation. Run in a child process with a generous limit, so a regression fails here instead of hanging CI."""
    script = (
        "import json, sys; from clear_core.checks import arithmetic_errors; "
        "print(json.dumps([arithmetic_errors(t) for t in json.load(sys.stdin)]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps([text for text, _ in LONG_TEXTS]),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert json.loads(done.stdout) == [wrong for _, wrong in LONG_TEXTS]


def test_arithmetic_errors_rarely_fire_on_real_gsm8k_solutions():
    """Real solutions contain a few genuine slips; the check must not flag ordinary notation by the hundred."""
    rows = json.loads(GSM8K.read_text(encoding="utf-8"))[:1000]
    results = [arithmetic_errors(row["output"]) for row in rows]
    checked = [r for r in results if r is not None]
    assert len(checked) > 0.8 * len(rows)  # most solutions state at least one equation
    assert sum(r > 0 for r in checked) < 0.02 * len(rows)


def test_repetition_is_the_share_of_repeated_sentences():
    assert repetition("The sky is blue. Grass is green.") == 0.0
    assert repetition("He ran to the shop.\nHe ran to the shop.\nhe ran  to the shop!\nHe ran to the shop.") == 0.75
    assert repetition("Yes. Yes. Yes.") == 0.0  # short answers repeated are not a loop
    assert repetition("") == 0.0


def test_prompt_copy_is_high_for_an_echo_and_low_for_an_answer_that_quotes_its_input():
    prompt = "Extract the city from this sentence.\n\nI flew from Paris to Rome on a rainy Monday morning."
    assert checks.prompt_copy(prompt, prompt) == 1.0
    assert checks.prompt_copy(prompt, "The task is: " + prompt) > 0.8  # a lead-in costs a few 4-grams
    assert checks.prompt_copy(prompt, "I flew from Paris to Rome") < 0.5  # quotes the input, but not the prompt
    assert checks.prompt_copy(prompt, "Rome.") == 0.0
    assert checks.prompt_copy("", "anything") == 0.0


def test_unclosed_brackets_counts_what_a_cut_leaves_open_and_nothing_in_complete_text():
    assert checks.unclosed_brackets("int f(int n) {\n    for (int i") == 2  # cut inside the loop header
    assert checks.unclosed_brackets('lines=$(cat "$file" |') == 1
    assert checks.unclosed_brackets("```python\nx = [1, 2,") == 2  # the list and the code fence
    assert checks.unclosed_brackets("def f(x):\n    return {'a': [x]}\n") == 0
    assert checks.unclosed_brackets("```python\nprint('(')\n```") == 0  # a bracket inside a string
    assert checks.unclosed_brackets("1) mix 2) bake. It's (very) easy, isn't it?") == 0  # closers alone are fine
    assert checks.unclosed_brackets("if 1 + (Michael's age - 1) x 2 = 15 then Michael's age = 8") == 0  # apostrophes
    assert checks.unclosed_brackets("") == 0
