"""The Thresholds page's numbers from pre-binned counts: moving γ or η re-counts a grid of a few thousand cells
instead of re-reading a million rows (pure: no database, no Streamlit).

``Store.threshold_grid`` counts a run's scored rows per cell in DuckDB. A cell is a combination of:

- ``conf_step``: how many of the slider's thresholds 0.00, 0.01, ..., 1.00 the confidence reaches (``>=``), 0-101;
  so ``confidence < γ`` exactly when ``conf_step <= round(100 γ)`` for any γ on the slider's 0.01 grid. NULL for
  a missing or NaN confidence, which never filters (``clear.action_sql``).
- ``corr_step``: how many of those thresholds the correction confidence exceeds (``>``), 0-101; so
  ``correction_confidence > η`` exactly when ``corr_step > round(100 η)``. NULL when missing or NaN (never corrects).
- ``conf_bin``, ``corr_bin``: the histogram bar (``BINS`` bars of width 1 / ``BINS`` over [0, 1]; 1.0 in the last
  one; NULL outside [0, 1], which the charts leave out).
- ``bucket``: the agreement chart's confidence bucket, as ``Store.agreement_by_bucket`` computes it for
  ``AGREEMENT_BUCKETS`` buckets (NULL without a confidence).
- ``decision``: the row's current human decision (NULL when undecided).

and ``n``, how many rows fall in it. Counts from the grid equal the SQL's (``Store.action_counts``,
``Store.agreement_by_bucket``) for every γ and η on the 0.01 grid; for any other value ``on_grid`` says None and
callers ask the store.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clear_core import clear

STEPS = 100  # the sliders' resolution: thresholds k / STEPS
BINS = 50  # histogram bars over [0, 1] (width 0.02, as the page has always drawn them)
AGREEMENT_BUCKETS = 10
GRID_COLUMNS = ("conf_step", "corr_step", "conf_bin", "corr_bin", "bucket", "decision", "n")


def on_grid(value: float) -> int | None:
    """k when ``value`` is exactly the double k / STEPS (what a 0.01 slider gives), else None."""
    k = round(float(value) * STEPS)
    return k if 0 <= k <= STEPS and k / STEPS == float(value) else None


def cell_actions(grid: pd.DataFrame, gamma: float, eta: float) -> np.ndarray | None:
    """The automatic action of each cell's rows at (γ, η), or None when γ or η is off the 0.01 grid.

    ``clear.decide``'s rule: 'correct' when correction confidence > η, else 'filter' when confidence < γ, else
    'keep'; a missing or NaN value never passes its test."""
    g, e = on_grid(gamma), on_grid(eta)
    if g is None or e is None:
        return None
    conf = grid["conf_step"].astype("Float64")
    corr = grid["corr_step"].astype("Float64")
    correct = (corr > e).fillna(False).to_numpy(dtype=bool)
    filtered = (conf <= g).fillna(False).to_numpy(dtype=bool)
    return np.where(correct, "correct", np.where(filtered, "filter", "keep"))


def counts_at(grid: pd.DataFrame, gamma: float, eta: float) -> dict[str, int] | None:
    """Rows per automatic action at (γ, η), as ``Store.action_counts`` gives them; None off the 0.01 grid."""
    actions = cell_actions(grid, gamma, eta)
    if actions is None:
        return None
    counts = dict.fromkeys(clear.ACTIONS, 0)
    for action, n in grid["n"].groupby(actions).sum().items():
        counts[str(action)] = int(n)
    return counts


def histogram(grid: pd.DataFrame, actions: np.ndarray, column: str) -> pd.DataFrame:
    """Bars of the ``column`` histogram ('conf_bin' or 'corr_bin') stacked by action: one row per (action, bar)
    with ``left`` (the bar's lower edge), ``n`` and ``action``; every action has all BINS bars (0 where empty)."""
    frame = pd.DataFrame({"bar": grid[column], "action": actions, "n": grid["n"]}).dropna(subset=["bar"])
    counts = frame.groupby(["action", "bar"])["n"].sum()
    index = pd.MultiIndex.from_product([list(clear.ACTIONS), range(BINS)], names=["action", "bar"])
    bars = counts.reindex(index, fill_value=0).reset_index()
    bars["left"] = bars["bar"] / BINS
    bars["n"] = bars["n"].astype(int)
    return bars[["action", "left", "n"]]


def agreement(grid: pd.DataFrame, actions: np.ndarray) -> pd.DataFrame:
    """Reviewer agreement per confidence bucket, as ``Store.agreement_by_bucket(run, γ, η, bins=10)`` gives it:
    bucket, lower, upper, n_rows, n_decided, n_agree, agreement (NaN where nobody decided)."""
    decision = grid["decision"]
    agrees = np.array(
        [isinstance(d, str) and d in clear.AGREEING_DECISIONS[a] for a, d in zip(actions, decision, strict=True)],
        dtype=bool,
    )
    frame = pd.DataFrame(
        {
            "bucket": grid["bucket"],
            "n_rows": grid["n"],
            "n_decided": grid["n"].where(decision.notna(), 0),
            "n_agree": grid["n"].where(agrees, 0),
        }
    ).dropna(subset=["bucket"])
    sums = frame.groupby("bucket")[["n_rows", "n_decided", "n_agree"]].sum()
    out = sums.reindex(range(AGREEMENT_BUCKETS), fill_value=0).astype(int).rename_axis("bucket").reset_index()
    out.insert(1, "lower", out["bucket"] / AGREEMENT_BUCKETS)
    out.insert(2, "upper", (out["bucket"] + 1) / AGREEMENT_BUCKETS)
    out["agreement"] = (out["n_agree"] / out["n_decided"].where(out["n_decided"] > 0)).astype(float)
    return out
