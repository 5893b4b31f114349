"""The Auto-Filter / Auto-Correct rule: Python and SQL forms agree, ties and missing values behave."""

import math
import random

import duckdb
import numpy as np
import pandas as pd
import pytest

from clear_core import clear


@pytest.mark.parametrize(
    ("confidence", "correction_confidence", "expected"),
    [
        (0.9, 0.1, "keep"),
        (0.1, 0.1, "filter"),
        (0.1, 0.95, "correct"),  # a confident fix beats deleting the row
        (0.9, 0.95, "correct"),
        (0.5, 0.1, "keep"),  # confidence == gamma is not below it
        (0.1, 0.8, "filter"),  # correction_confidence == eta is not above it
        (None, 0.1, "keep"),  # no confidence: never filter
        (math.nan, 0.1, "keep"),
        (0.1, None, "filter"),  # no correction confidence: never correct
        (0.1, math.nan, "filter"),
        (None, None, "keep"),
        (pd.NA, pd.NA, "keep"),  # nullable pandas columns
    ],
)
def test_decide(confidence, correction_confidence, expected):
    assert clear.decide(confidence, correction_confidence, gamma=0.5, eta=0.8) == expected


def test_defaults_are_valid_thresholds():
    assert 0 <= clear.DEFAULT_GAMMA <= 1
    assert 0 <= clear.DEFAULT_ETA <= 1
    assert clear.decide(0.0, 0.0) == "filter"
    assert clear.decide(1.0, 1.0) == "correct"


def _random_values(rng: random.Random, n: int) -> list[float | None]:
    ties = [0.0, 0.3, 0.5, 0.8, 1.0]
    values: list[float | None] = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.1:
            values.append(None)
        elif kind < 0.15:
            values.append(math.nan)
        elif kind < 0.4:
            values.append(rng.choice(ties))
        else:
            values.append(rng.random())
    return values


def test_decide_many_matches_decide():
    rng = random.Random(0)
    confidences = _random_values(rng, 500)
    corrections = _random_values(rng, 500)
    actions = clear.decide_many(confidences, corrections, gamma=0.5, eta=0.8)
    assert list(actions) == [clear.decide(c, k, 0.5, 0.8) for c, k in zip(confidences, corrections, strict=True)]
    assert set(actions) == {"filter", "correct", "keep"}


def test_decide_many_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="shape"):
        clear.decide_many([0.1, 0.2], [0.3], 0.5, 0.8)


def test_action_counts_has_every_key():
    assert clear.action_counts([], [], 0.5, 0.8) == {"filter": 0, "correct": 0, "keep": 0}
    counts = clear.action_counts(np.array([0.1, 0.9, 0.1, np.nan]), [0.0, 0.0, 0.9, 0.0], 0.5, 0.8)
    assert counts == {"filter": 1, "correct": 1, "keep": 2}


@pytest.mark.parametrize(("gamma", "eta"), [(0.5, 0.8), (0.3, 0.3), (0.0, 1.0), (1.0, 0.0)])
def test_sql_and_python_agree(gamma, eta):
    rng = random.Random(int(gamma * 10 + eta * 100))
    confidences = _random_values(rng, 400)
    corrections = _random_values(rng, 400)
    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INTEGER, confidence DOUBLE, correction_confidence DOUBLE)")
    con.executemany(
        "INSERT INTO t VALUES (?, ?, ?)",
        [[i, c, k] for i, (c, k) in enumerate(zip(confidences, corrections, strict=True))],
    )
    assert con.execute("SELECT count(*) FROM t WHERE isnan(confidence)").fetchone()[0] > 0  # NaN really stored
    expression = clear.action_sql("confidence", "correction_confidence", "$gamma", "$eta")
    sql_actions = [
        a for (a,) in con.execute(f"SELECT {expression} FROM t ORDER BY i", {"gamma": gamma, "eta": eta}).fetchall()
    ]
    python_actions = [clear.decide(c, k, gamma, eta) for c, k in zip(confidences, corrections, strict=True)]
    assert sql_actions == python_actions


def test_agreeing_decisions_cover_every_action():
    assert set(clear.AGREEING_DECISIONS) == set(clear.ACTIONS)
