"""dedupe.py: exact and near-duplicate groups from MinHash/LSH, verified by Jaccard; pure and deterministic."""

from __future__ import annotations

import time

import pytest

from clear_core import dedupe
from tests.conftest import GSM8K, gsm8k_records

BASE = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "Natalia sold 48/2 = 24 clips in May. Natalia sold 48+24 = 72 clips altogether in April and May. #### 72"
)
OTHER = (
    "Weng earns 12 an hour for babysitting. Yesterday she did 50 minutes of babysitting, so she earned "
    "12/60 = 0.2 per minute and 0.2 x 50 = 10 dollars in all. #### 10"
)


def test_planted_near_duplicates_and_exact_copies_are_grouped():
    near = BASE.replace("altogether", "in total")  # one word changed in 40
    exact = "  " + BASE.upper().replace(" ", "\n ") + " "  # same text after case and whitespace normalisation
    texts = [BASE, OTHER, near, "", None, exact, "Something else entirely, about trains and their timetables."]
    assert dedupe.duplicate_groups(texts) == [[0, 2, 5]]
    assert dedupe.similarity(BASE, near) >= dedupe.DEFAULT_THRESHOLD
    assert dedupe.similarity(BASE, OTHER) < 0.1


def test_threshold_one_is_exact_duplicates_only():
    near = BASE.replace("altogether", "in total")
    assert dedupe.duplicate_groups([BASE, near, BASE.lower()], threshold=1.0) == [[0, 2]]


def test_groups_are_transitive_and_empty_texts_never_match():
    words = [f"w{i}" for i in range(60)]
    a = " ".join(words)
    b = " ".join(words[:59] + ["x"])  # a ~ b
    c = " ".join(words[:58] + ["x", "y"])  # b ~ c, a ~ c less so
    assert dedupe.duplicate_groups([a, "", b, None, c, "", "  "]) == [[0, 2, 4]]


def test_unrelated_real_responses_are_not_grouped_and_the_result_is_deterministic():
    texts = [r["output"] for r in gsm8k_records(500)]
    first = dedupe.duplicate_groups(texts)
    assert first == [] and dedupe.duplicate_groups(texts) == first
    planted = texts + [texts[10], texts[20].replace(" ", "  ").upper()]
    assert dedupe.duplicate_groups(planted) == [[10, 500], [20, 501]]
    assert (dedupe.signatures([{"a b c"}]) == dedupe.signatures([{"a b c"}])).all()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="threshold"):
        dedupe.duplicate_groups(["a"], threshold=0)
    with pytest.raises(ValueError, match="multiple"):
        dedupe.duplicate_groups(["a"], num_perm=10, bands=3)


@pytest.mark.skipif(not GSM8K.exists(), reason="the GSM8K dev file is not here")
def test_the_7473_row_gsm8k_file_takes_seconds():
    texts = [r["output"] for r in gsm8k_records(10_000)]
    started = time.perf_counter()
    groups = dedupe.duplicate_groups(texts)
    assert time.perf_counter() - started < 20  # about 1.2 s on a loaded 2-core machine
    assert len(texts) == 7473 and all(len(g) >= 2 for g in groups)


def test_similarities_equal_similarity_to_each_text_repeats_included():
    text = "Natalia sold 48 clips in April and half as many in May."
    others = [text, "Natalia sold 48 clips in April.", None, text.upper(), "Natalia sold 48 clips in April."]
    assert dedupe.similarities(text, others) == [dedupe.similarity(text, other) for other in others]
    assert dedupe.similarities(text, []) == []
