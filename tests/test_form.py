"""The dataset's own form model (clear_core/form.py): a break of the house format scores lower than the house form."""

import json

import pytest

from clear_core.form import MARGIN, FormModel, shape
from clear_core.noise import load_dev_rows
from tests.test_noise import GSM8K, SELF_INSTRUCT, needs_dev_data


def test_shape_keeps_layout_and_markup_and_drops_words():
    assert shape("Hi there,\n  x = 42;") == "Aa aaaaa,\n  a = 00;"
    assert shape("naïve ✓") == "aaaaa ~"


CODE = [f"def f{i}(x):\n    y = x + {i}\n    return y * {i + 1}" for i in range(60)]


def test_a_house_format_break_scores_far_below_the_house_form():
    model = FormModel.fit(CODE)
    typical = [model.score(text) for text in CODE[:10]]
    chatty = model.score("Sure! Here is the code:\n\n```\n" + CODE[3] + "\n```\nHope it helps!")
    one_line = model.score(CODE[4].replace("\n    ", " "))
    assert max(chatty, one_line) < min(typical) - 5
    assert all(score <= 0 for score in typical)  # 0 is typical; only shortfalls count


STEPS = [f"Tom has {i} apples.\nHe buys {i + 2} more.\nNow he has {2 * i + 2} apples." for i in range(60)]
RUN_ON = "Ann has 7 pears. She buys 3 more. Now she has 10 pears."


def test_sentences_run_into_one_line_are_odd_only_where_the_dataset_breaks_the_line_after_each():
    steps = FormModel.fit(STEPS)
    typical = [steps.score(text) for text in STEPS[:10]]
    assert steps.parts(RUN_ON)["breaks"] < min(steps.parts(text)["breaks"] for text in STEPS[:10])
    assert steps.score(RUN_ON) < min(typical) - 3
    prose = FormModel.fit([text.replace("\n", " ") for text in STEPS])  # the same steps, one line each
    own = [prose.parts(text.replace("\n", " "))["breaks"] for text in STEPS[:10]]
    assert prose.parts(RUN_ON)["breaks"] >= min(own)
    assert prose.score(RUN_ON) > steps.score(RUN_ON) + 3


def test_a_decimal_point_is_not_a_sentence_end():
    model = FormModel.fit(STEPS)
    assert model.parts("It costs 1.50 dollars")["breaks"] == 0.0  # no sentence end: nothing to judge
    assert model.parts("It costs 1.50 dollars. Pay now")["breaks"] != 0.0


def test_leaving_a_text_out_removes_its_own_counts():
    odd = "<<<weird>>> {{{markup}}}"
    model = FormModel.fit(CODE + [odd])
    assert model.logprob(odd, leave_out=True) < model.logprob(odd, leave_out=False)


def test_the_model_round_trips_through_json():
    model = FormModel.fit(CODE)
    again = FormModel.from_json(model.to_json())
    assert again.score(CODE[0]) == pytest.approx(model.score(CODE[0]))
    with pytest.raises(ValueError, match="order"):
        FormModel.from_json(json.dumps({**json.loads(model.to_json()), "order": 3}))


@needs_dev_data
def test_on_real_gsm8k_rows_chatter_and_lost_lines_score_low():
    responses = [r["response"] for r in load_dev_rows(GSM8K, 400, seed=0)]
    model = FormModel.fit(responses)
    clean = sorted(model.score(t) for t in responses[:100])
    broken = [model.score("Sure! Here is the answer:\n\n```\n" + t + "\n```") for t in responses[:20]]
    broken += [model.score(t.replace("\n", " ")) for t in responses[20:40] if "\n" in t]
    median_clean = clean[len(clean) // 2]
    # most breaks fall below the typical clean row (a two-line solution run into one line can stay typical)
    assert sum(b < median_clean for b in broken) >= 0.75 * len(broken)


@needs_dev_data
def test_on_real_gsm8k_rows_most_solutions_run_into_one_line_fall_among_the_least_typical_tenth():
    """GSM8K writes one step per line. Run into one line, a solution keeps its words and most of its shapes; what
    gives it away is a space where the dataset breaks the line after a sentence (before that was read, 9 in 100
    fell below the least typical tenth of clean rows)."""
    responses = [r["response"] for r in load_dev_rows(GSM8K, 400, seed=0)]
    model = FormModel.fit(responses)
    clean = sorted(model.score(t) for t in responses[:100])
    run_on = [model.score(t.replace("\n", " ")) for t in responses[100:200] if "\n" in t]
    assert len(run_on) >= 50
    assert sum(score < clean[10] for score in run_on) >= 0.6 * len(run_on)


@needs_dev_data
def test_on_real_self_instruct_rows_short_answers_are_not_odd_for_being_short():
    """A short answer averages over a few symbols, so its opening and ending vary more by chance. Among
    Self-Instruct's paragraphs, "No", "yes" or "negative" are not format breaks; the same answers wrapped in stray
    markup still are. (Before sizes were weighed, "D" scored -113 and "No" -50, beyond most markup.)"""
    responses = [r["response"] for r in load_dev_rows(SELF_INSTRUCT)]
    model = FormModel.fit(responses)
    short = [t for t in responses if len(t.split()) <= 2]
    least_odd_break = max(model.score("<div><p><b>" + t + "</i></span>") for t in short)
    as_odd = [t for t in short if model.score(t) <= least_odd_break]
    assert len(short) >= 20
    assert len(as_odd) <= len(short) // 8, as_odd


PROSE = [f"The {w} of a city shapes how people move.\nPlanners study it closely." for w in ("layout", "economy")] * 20


def test_a_model_saved_before_typical_sizes_scores_as_it_did():
    """Form models travel in run files as JSON; one written before the typical sizes were kept (two numbers a part)
    still loads and scores every part at full weight, as it did then."""
    model = FormModel.fit(PROSE)
    saved = json.loads(model.to_json())
    saved["reference"] = {name: value[:2] for name, value in saved["reference"].items()}
    old = FormModel.from_json(json.dumps(saved))
    parts = old.parts("No")
    expected = sum(min(0.0, (parts[n] - m) / s + MARGIN) for n, (m, s, _) in old.reference.items())
    assert old.score("No") == pytest.approx(expected)
    assert old.score("No") < model.score("No")


def test_a_model_saved_before_sentence_ends_were_read_scores_without_them():
    """A run file's form model from before the `breaks` part has no reference for it, and scores as it did then."""
    model = FormModel.fit(STEPS)
    saved = json.loads(model.to_json())
    del saved["reference"]["breaks"]
    old = FormModel.from_json(json.dumps(saved))
    median, spread, _ = model.reference["breaks"]
    breaks = min(0.0, (model.parts(RUN_ON)["breaks"] - median) / spread + MARGIN)
    assert breaks < 0
    assert old.score(RUN_ON) == pytest.approx(model.score(RUN_ON) - breaks)  # every other part as before
