"""Noise injection: every recipe corrupts, counts and labels are exact, runs are reproducible; demo data is valid."""

import json
import math
import random
import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from clear_core.metrics import final_number, normalize_tokens
from clear_core.noise import (
    NOISE_KINDS,
    OFF_TOPIC_POOL,
    RECIPES,
    NoiseContext,
    NoiseNotApplicable,
    inject_noise,
    load_dev_rows,
)

DEV = Path("/work/shared/data/dev")
GSM8K = DEV / "gsm8k_train.json"
SELF_INSTRUCT = DEV / "self_instruct_seed_tasks.jsonl"
DEMO = Path(__file__).resolve().parents[1] / "clear_core" / "samples" / "demo.jsonl"

needs_dev_data = pytest.mark.skipif(not GSM8K.exists() or not SELF_INSTRUCT.exists(), reason="dev data not present")


def synthetic_rows(n: int = 60) -> list[dict]:
    """Distinct multi-line worked answers: every recipe applies to every row."""
    rng = random.Random(123)
    rows = []
    for i in range(n):
        a, b = rng.randint(2, 90), rng.randint(2, 90)
        rows.append(
            {
                "prompt": f"Row {i}: Ana has {a} apples and buys {b} more. How many apples does she have?",
                "response": f"Ana starts with {a} apples and buys {b} more.\n"
                f"So she has {a} + {b} = {a + b} apples in total.",
            }
        )
    return rows


def corrupt_directly(kind: str, rows: list[dict], index: int, seed: int = 0) -> str:
    context = NoiseContext([r["prompt"] for r in rows], [r["response"] for r in rows], index)
    return RECIPES[kind](rows[index], random.Random(seed), context)


def test_noise_kinds_are_the_recipes_in_order():
    assert NOISE_KINDS == (
        "swapped",
        "truncated",
        "off_topic",
        "format_broken",
        "numbers_changed",
        "paper_style",
        "house_format",
        "prompt_echo",
    )
    assert set(RECIPES) == set(NOISE_KINDS)


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_every_recipe_corrupts_every_row(kind):
    rows = synthetic_rows()
    df = inject_noise(rows, fraction=1.0, kinds=(kind,), seed=5)
    assert df["is_noisy"].all()
    assert (df["noise_kind"] == kind).all(), df["noise_kind"].value_counts()
    for noisy, clean in zip(df["response"], df["clean_response"], strict=True):
        assert noisy.strip() != clean.strip()
        assert noisy.split() != clean.split() or kind == "house_format"  # a layout break may be whitespace only


@pytest.mark.parametrize("n", [0, 1, 7, 10, 33, 100])
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.3, 0.5, 1.0])
def test_exactly_round_fraction_rows_are_noisy(n, fraction):
    df = inject_noise(synthetic_rows(n), fraction=fraction, seed=1)
    assert len(df) == n
    assert int(df["is_noisy"].sum()) == round(fraction * n)


def test_kinds_are_spread_evenly():
    df = inject_noise(synthetic_rows(100), fraction=0.47, seed=2)  # 47 noisy rows
    counts = Counter(df.loc[df["is_noisy"], "noise_kind"])
    assert set(counts) == set(NOISE_KINDS)
    assert max(counts.values()) - min(counts.values()) <= 1
    assert sum(counts.values()) == 47


def test_same_seed_same_result_other_seed_differs():
    rows = synthetic_rows()
    first = inject_noise(rows, fraction=0.3, seed=11)
    pd.testing.assert_frame_equal(first, inject_noise(rows, fraction=0.3, seed=11))
    other = inject_noise(rows, fraction=0.3, seed=12)
    assert list(first["is_noisy"]) != list(other["is_noisy"])
    assert list(first["response"]) != list(other["response"])


def test_labels_and_columns_are_consistent():
    rows = synthetic_rows()
    df = inject_noise(rows, fraction=0.4, seed=3)
    assert list(df.columns) == [
        "row_index",
        "prompt",
        "response",
        "clean_response",
        "is_noisy",
        "noise_kind",
    ]
    assert list(df["row_index"]) == list(range(len(rows)))
    assert list(df["prompt"]) == [r["prompt"] for r in rows]
    assert list(df["clean_response"]) == [r["response"] for r in rows]
    assert df["is_noisy"].dtype == bool
    assert (df["is_noisy"] == df["noise_kind"].notna()).all()
    clean = df[~df["is_noisy"]]
    assert all(k is None for k in clean["noise_kind"])
    assert (clean["response"] == clean["clean_response"]).all()
    noisy = df[df["is_noisy"]]
    assert (noisy["response"] != noisy["clean_response"]).all()
    assert set(noisy["noise_kind"]) <= set(NOISE_KINDS)


def test_inputs_are_not_mutated_and_bad_arguments_are_rejected():
    rows = synthetic_rows(10)
    snapshot = json.dumps(rows)
    inject_noise(rows, fraction=0.5, seed=0)
    assert json.dumps(rows) == snapshot
    with pytest.raises(ValueError, match="fraction"):
        inject_noise(rows, fraction=1.5)
    with pytest.raises(ValueError, match="unknown noise kinds"):
        inject_noise(rows, kinds=("typos",))
    with pytest.raises(TypeError, match="row 0"):
        inject_noise([{"prompt": "p"}])


def check_truncation(noisy: str, clean: str) -> None:
    words, clean_words = noisy.split(), clean.split()
    n, k = len(clean_words), len(words)
    assert clean.startswith(noisy)
    assert words == clean_words[:k]
    assert min(max(1, math.ceil(0.2 * n)), n - 1) <= k <= max(1, min(math.floor(0.7 * n), n - 1))


def test_truncated_is_a_word_prefix_cut_mid_sentence():
    rows = synthetic_rows()
    for i in range(len(rows)):
        noisy = corrupt_directly("truncated", rows, i, seed=i)
        check_truncation(noisy, rows[i]["response"])
        assert not re.search(r"[.!?]$", noisy)  # each row has mid-sentence cut points


def test_truncated_on_a_one_word_answer_falls_back_and_says_so():
    rows = [{"prompt": f"Label {i}", "response": w} for i, w in enumerate(["Yes", "No", "Maybe"])]
    with pytest.raises(NoiseNotApplicable):
        corrupt_directly("truncated", rows, 0)
    df = inject_noise(rows, fraction=1.0, kinds=("truncated",), seed=0)
    assert df["is_noisy"].all()
    assert "truncated" not in set(df["noise_kind"])
    assert (df["response"] != df["clean_response"]).all()


def test_swapped_takes_another_rows_response():
    rows = synthetic_rows()
    responses = [r["response"] for r in rows]
    for i in range(10):
        noisy = corrupt_directly("swapped", rows, i, seed=i)
        assert noisy in responses and noisy != responses[i]


def test_swapped_with_a_single_row_falls_back_to_off_topic():
    df = inject_noise([{"prompt": "Hi", "response": "Hello there."}], 1.0, ("swapped",))
    assert df.loc[0, "noise_kind"] == "off_topic"
    assert df.loc[0, "response"] in OFF_TOPIC_POOL


def test_off_topic_comes_from_the_varied_pool():
    rows = synthetic_rows()
    assert len(set(OFF_TOPIC_POOL)) >= 10
    seen = {corrupt_directly("off_topic", rows, 0, seed=s) for s in range(200)}
    assert seen <= set(OFF_TOPIC_POOL)
    assert len(seen) >= 8


def test_format_broken_uses_several_sub_styles():
    rows = synthetic_rows()
    clean = rows[0]["response"]
    outputs = {corrupt_directly("format_broken", rows, 0, seed=s) for s in range(80)}
    assert all(o.split() != clean.split() for o in outputs)
    styles = set()
    for o in outputs:
        if o == clean.upper():
            styles.add("caps")
        elif o.startswith(("{", "<", "[INST]", "```")):
            styles.add("markup")
        elif "\n" not in o and len(o.split()) < len(clean.split()):
            styles.add("jammed")
        elif len(o.split("\n")) > len(clean.split("\n")):
            styles.add("repeated")
    assert styles == {"caps", "markup", "jammed", "repeated"}


def test_numbers_changed_changes_only_the_final_number():
    rows = synthetic_rows()
    for i in range(len(rows)):
        clean = rows[i]["response"]
        noisy = corrupt_directly("numbers_changed", rows, i, seed=i)
        assert final_number(noisy) != final_number(clean)
        a, b = normalize_tokens(noisy), normalize_tokens(clean)
        assert len(a) == len(b)
        assert sum(x != y for x, y in zip(a, b, strict=True)) == 1


@pytest.mark.parametrize(
    ("clean", "check"),
    [
        ("Positive", lambda out: out == "Negative"),
        ("Yes, it is true.", lambda out: "No" in out or "false" in out or "not" in out),
        ("The sky is blue.", lambda out: out == "The sky is not blue."),
        ("You cannot do that.", lambda out: out == "You can do that."),
        ("It costs $1,250 in total.", lambda out: final_number(out) != "1250"),
    ],
)
def test_numbers_changed_without_numbers_changes_a_fact_word(clean, check):
    rows = [
        {"prompt": "Q", "response": clean},
        {"prompt": "R", "response": "We met Alice in Paris."},
    ]
    for seed in range(5):
        out = corrupt_directly("numbers_changed", rows, 0, seed=seed)
        assert out != clean and check(out), out


def test_numbers_changed_replaces_a_named_entity_with_another_rows():
    rows = [
        {"prompt": "Q", "response": "I travelled with my sister to Rome."},
        {"prompt": "R", "response": "We met her in Lisbon."},
    ]
    assert corrupt_directly("numbers_changed", rows, 0) == ("I travelled with my sister to Lisbon.")


def test_numbers_changed_falls_back_to_swapped_when_impossible():
    rows = [
        {"prompt": "Say hi", "response": "Hello there."},
        {"prompt": "Say bye", "response": "Goodbye, friend."},
    ]
    df = inject_noise(rows, fraction=1.0, kinds=("numbers_changed",), seed=0)
    assert list(df["noise_kind"]) == ["swapped", "swapped"]
    assert list(df["response"]) == ["Goodbye, friend.", "Hello there."]


def test_a_number_too_large_for_a_float_falls_back_to_another_kind():
    """Calibration copies are made from the user's own rows when a run starts: a 400-digit number (infinity as a
    float) once left numbers_changed nothing to choose from, and the error stopped the run."""
    huge = "9" * 400
    rows = [{"prompt": "Q", "response": f"The answer is {huge}"}, {"prompt": "R", "response": "Something else."}]
    df = inject_noise(rows, fraction=1.0, kinds=("numbers_changed",), seed=0)
    assert df["noise_kind"].iloc[0] != "numbers_changed"
    assert df["response"].iloc[0] != rows[0]["response"]


HOSTILE_RESPONSES = [
    "The total is $15.00" + " + 4" * 2000,
    " " * 20000 + "x",
    "\t- " * 5000 + "1. x",
    "(" * 5000,
    "\n" * 5000,
    "9" * 400 + ".5",
    "😀" * 500,
    "a\x00b",
]


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_every_kind_corrupts_hostile_text(kind):
    """No response stops a run's calibration copies: every kind corrupts these (or falls back to one that can)."""
    rows = [{"prompt": f"Question {i}?", "response": text} for i, text in enumerate(HOSTILE_RESPONSES)]
    df = inject_noise(rows, fraction=1.0, kinds=(kind,), seed=0)
    assert set(df["noise_kind"]) <= set(NOISE_KINDS)
    assert all(isinstance(text, str) for text in df["response"])


def test_numbers_changed_leaves_list_numbering_alone():
    rows = [{"prompt": "Q", "response": "1. Buy 3 apples\n2. Eat them"}]
    for seed in range(10):
        out = corrupt_directly("numbers_changed", rows, 0, seed=seed)
        assert out.startswith("1. Buy ") and "\n2. Eat them" in out
        assert final_number(out.split("\n")[0]) != "3"


def test_paper_style_picks_a_plausible_answer_to_a_similar_prompt():
    rows = [
        {"prompt": "Classify the sentiment of this film review: a wonderful film", "response": "Positive"},
        {"prompt": "Classify the sentiment of this film review: a dull, awful film", "response": "Negative"},
        {"prompt": "What is the capital of France?", "response": "Paris"},
        {"prompt": "Name a primary colour.", "response": "Red"},
        {"prompt": "Write a long story.", "response": " ".join(["word"] * 40)},
    ]
    for seed in range(5):
        assert corrupt_directly("paper_style", rows, 0, seed=seed) == "Negative"


def test_paper_style_prefers_responses_of_similar_length():
    rows = synthetic_rows(40)
    rows.append({"prompt": rows[0]["prompt"], "response": "Eleven."})  # same prompt, wrong length class
    lengths = [len(r["response"].split()) for r in rows]
    for i in range(10):
        out = corrupt_directly("paper_style", rows, i, seed=i)
        assert out != rows[i]["response"]
        assert lengths[i] / 1.5 <= len(out.split()) <= lengths[i] * 1.5


@needs_dev_data
def test_load_dev_rows_reads_both_formats_reproducibly():
    gsm = load_dev_rows(GSM8K, 200, seed=0)
    assert len(gsm) == 200
    assert gsm == load_dev_rows(GSM8K, 200, seed=0)
    assert gsm != load_dev_rows(GSM8K, 200, seed=1)
    assert all(r["prompt"].strip() and r["response"].strip() for r in gsm)
    assert [r["source_index"] for r in gsm] == sorted(r["source_index"] for r in gsm)

    seed_tasks = load_dev_rows(SELF_INSTRUCT, 200, seed=0)  # the file has fewer: all of them
    raw = [json.loads(line) for line in SELF_INSTRUCT.read_text().splitlines() if line.strip()]
    assert len(seed_tasks) == sum(len(r["instances"]) for r in raw)
    with_input = next((r, inst) for r in raw for inst in r["instances"] if inst["input"].strip())
    expected = with_input[0]["instruction"] + "\n\n" + with_input[1]["input"]
    assert expected in {r["prompt"] for r in seed_tasks}


@needs_dev_data
@pytest.mark.parametrize("path", [GSM8K, SELF_INSTRUCT], ids=["gsm8k", "self_instruct"])
def test_injection_on_real_dev_rows(path):
    rows = load_dev_rows(path, 200, seed=4)
    df = inject_noise(rows, fraction=0.6, seed=4)
    assert int(df["is_noisy"].sum()) == round(0.6 * len(rows))
    noisy = df[df["is_noisy"]]
    for noisy_text, clean, kind in zip(noisy["response"], noisy["clean_response"], noisy["noise_kind"], strict=True):
        assert noisy_text != clean
        assert noisy_text.split() != clean.split() or kind == "house_format"  # a layout break may be whitespace only
    for row in noisy[noisy["noise_kind"] == "truncated"].itertuples():
        check_truncation(row.response, row.clean_response)
    counts = Counter(noisy["noise_kind"])
    assert set(counts) == set(NOISE_KINDS)
    if path == GSM8K:  # every GSM8K solution has numbers and words: no fallbacks
        assert max(counts.values()) - min(counts.values()) <= 1
        changed = noisy[noisy["noise_kind"] == "numbers_changed"]
        assert len(changed) == len(noisy) // len(NOISE_KINDS)  # 120 noisy rows, 8 kinds: 15 each
        for row in changed.itertuples():
            assert final_number(row.response) != final_number(row.clean_response)


def test_demo_dataset_is_valid():
    lines = DEMO.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert 45 <= len(rows) <= 60
    for row in rows:
        assert set(row) == {"instruction", "input", "output"}
        assert isinstance(row["instruction"], str) and row["instruction"].strip()
        assert isinstance(row["input"], str)
        assert isinstance(row["output"], str) and row["output"].strip()
    assert len({(r["instruction"], r["input"]) for r in rows}) == len(rows)


def test_a_recipe_that_changes_nothing_is_never_labelled_noisy(monkeypatch):
    """The safety net: output equal to the clean text (up to whitespace) triggers the fallback."""
    calls = []

    def lazy(row, rng, context):
        calls.append(context.index)
        return row["response"] + "  \n"

    monkeypatch.setitem(RECIPES, "truncated", lazy)
    rows = synthetic_rows(10)
    df = inject_noise(rows, fraction=1.0, kinds=("truncated",), seed=0)
    assert calls  # the lazy recipe was tried ...
    assert "truncated" not in set(df["noise_kind"])  # ... and never credited
    for noisy, clean in zip(df["response"], df["clean_response"], strict=True):
        assert noisy.split() != clean.split()


def test_house_format_breaks_the_form_and_keeps_the_words():
    rows = [{"prompt": "Write a loop.", "response": "for i in range(3):\n    print(i)\n    total += i"}]
    seen = set()
    for seed in range(40):
        out = corrupt_directly("house_format", rows, 0, seed)
        assert out.strip() != rows[0]["response"]
        assert "print(i)" in out  # the content is still there: only its form changed
        seen.add(out)
    assert len(seen) >= 3  # several sub-styles apply to multi-line code
    one_line = [o for o in seen if "\n" not in o and not o.startswith("{")]
    assert one_line  # the lines run together is one of them


def test_house_format_refuses_an_empty_response():
    with pytest.raises(NoiseNotApplicable):
        corrupt_directly("house_format", [{"prompt": "p", "response": "  "}], 0)


def test_prompt_echo_repeats_the_prompt_instead_of_answering():
    rows = [{"prompt": "Name three primary colours.", "response": "Red, yellow and blue."}]
    for seed in range(10):
        out = corrupt_directly("prompt_echo", rows, 0, seed)
        assert "Name three primary colours." in out
        assert out.split() != rows[0]["response"].split()


def test_load_dev_rows_reads_gpteacher_response_field(tmp_path):
    path = tmp_path / "codegen.json"
    path.write_text(
        json.dumps([{"instruction": "Add.", "input": "1, 2", "response": "def add(a, b):\n    return a + b"}])
    )
    rows = load_dev_rows(path)
    assert rows == [{"prompt": "Add.\n\n1, 2", "response": "def add(a, b):\n    return a + b", "source_index": 0}]
