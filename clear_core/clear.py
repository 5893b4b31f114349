"""Auto-Filter / Auto-Correct: the automatic action for a scored row, from its confidences and two thresholds.

Paper symbols (CLEAR): ``gamma`` is γ, the Auto-Filter threshold on ``confidence`` (rows below it are filtered);
``eta`` is η, the Auto-Correct threshold on ``correction_confidence`` (rows above it get the model's proposal).
A confident fix is preferred to deleting the row, so ``correct`` is checked first. A missing confidence (None or
NaN) never triggers an action: no confidence -> never filter, no correction confidence -> never correct.

The rule is written twice, once in Python (``decide``/``decide_many``) and once as SQL (``action_sql``, used by
``store.py`` so that queries label rows without loading them); tests check that the two agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# Chosen from bench/quality.py on noisy dev rows (docs/quality.md, fresh seed-3 rows). The confidence is calibrated,
# so γ = 0.5 reads "more likely bad than good" (precision 0.74, recall 0.70 there). η = 0.7 proposes a correction
# for 58% of noisy rows and 4% of clean ones; the 135M model's proposals beat the noisy response less than half the
# time, so a correction has to be rarer than a filter, and a person reviews each one.
DEFAULT_GAMMA = 0.5  # γ: filter when confidence < gamma
DEFAULT_ETA = 0.7  # η: correct when correction_confidence > eta

ACTIONS = ("filter", "correct", "keep")

# Which human decisions agree with each automatic action (used for the agreement-by-confidence plot).
# `edit` replaces the response, as `correct` would, so it agrees with `correct` and disagrees with the others.
AGREEING_DECISIONS = {
    "filter": ("remove",),
    "correct": ("accept", "edit"),
    "keep": ("reject",),
}


def _present(value: float | None) -> bool:
    if value is None:
        return False
    try:
        return not math.isnan(value)
    except TypeError:  # pandas.NA and other missing-value markers
        return False


def decide(
    confidence: float | None,
    correction_confidence: float | None,
    gamma: float = DEFAULT_GAMMA,
    eta: float = DEFAULT_ETA,
) -> str:
    """Return 'correct' if correction_confidence > eta, else 'filter' if confidence < gamma, else 'keep'."""
    if _present(correction_confidence) and correction_confidence > eta:
        return "correct"
    if _present(confidence) and confidence < gamma:
        return "filter"
    return "keep"


def decide_many(
    confidences: Sequence[float | None] | np.ndarray,
    correction_confidences: Sequence[float | None] | np.ndarray,
    gamma: float = DEFAULT_GAMMA,
    eta: float = DEFAULT_ETA,
) -> np.ndarray:
    """Vectorised ``decide``: an array of 'filter' / 'correct' / 'keep', one per row (None counts as NaN)."""
    confidence = np.asarray(confidences, dtype=float)
    correction = np.asarray(correction_confidences, dtype=float)
    if confidence.shape != correction.shape:
        raise ValueError(
            f"confidences and correction_confidences differ in shape: {confidence.shape} vs {correction.shape}"
        )
    # NaN compares False both ways, so absent values fall through to 'keep' exactly as in decide().
    with np.errstate(invalid="ignore"):
        return np.select([correction > eta, confidence < gamma], ["correct", "filter"], default="keep")


def action_counts(
    confidences: Sequence[float | None] | np.ndarray,
    correction_confidences: Sequence[float | None] | np.ndarray,
    gamma: float = DEFAULT_GAMMA,
    eta: float = DEFAULT_ETA,
) -> dict[str, int]:
    """How many rows each action gets: {'filter': n, 'correct': n, 'keep': n} (every key present)."""
    actions = decide_many(confidences, correction_confidences, gamma, eta)
    return {action: int(np.count_nonzero(actions == action)) for action in ACTIONS}


def action_sql(confidence_col: str, correction_col: str, gamma_param: str, eta_param: str) -> str:
    """SQL CASE expression equivalent to ``decide`` (arguments are SQL snippets: column names, parameters).

    NULL comparisons are never true, matching Python's None; NaN is excluded explicitly because DuckDB orders
    NaN above every number.
    """
    return (
        f"CASE WHEN {correction_col} > {eta_param} AND NOT isnan({correction_col}) THEN 'correct' "
        f"WHEN {confidence_col} < {gamma_param} AND NOT isnan({confidence_col}) THEN 'filter' "
        "ELSE 'keep' END"
    )
