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

The review budget reads ``Store.confidence_bins`` instead: rows and expected bad rows (Σ 1 − confidence) per
``BUDGET_BINS`` equal-width confidence bins, from which "review the lowest X% (N rows) → about Y% bad rows left in
the rest" and "the γ a budget of N rows allows" follow at any dataset size.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clear_core import calibration, clear

STEPS = 100  # the sliders' resolution: thresholds k / STEPS
BINS = 50  # histogram bars over [0, 1] (width 0.02, as the page has always drawn them)
AGREEMENT_BUCKETS = 10
GRID_COLUMNS = ("conf_step", "corr_step", "conf_bin", "corr_bin", "bucket", "decision", "n")
BUDGET_BINS = 200  # Store.confidence_bins' bins: width 0.005, so every γ on the 0.01 grid is a bin edge
BUDGET_POINTS = 101  # points of the review-budget curve: every 1% of rows reviewed


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
    n = grid["n"].to_numpy(dtype=np.int64)
    return {action: int(n[actions == action].sum()) for action in clear.ACTIONS}


def with_decisions(scores: pd.DataFrame, decided: pd.DataFrame) -> pd.DataFrame:
    """The grid of ``Store.threshold_grid`` from its two parts: ``scores`` (every row as undecided, rows='scores')
    and ``decided`` (the decided rows alone, rows='decided'). Each decided row leaves its cell's undecided count
    for its decision's cell; cells left empty are dropped; sorted as the store sorts (every column, NULL last)."""
    if decided.empty:
        return scores.copy()
    cells = list(GRID_COLUMNS[:5])
    moved = decided.groupby(cells, dropna=False, as_index=False)["n"].sum().rename(columns={"n": "moved"})
    undecided = scores.merge(moved, on=cells, how="left")
    undecided["n"] = undecided["n"] - undecided["moved"].fillna(0).astype(undecided["n"].dtype)
    undecided = undecided[undecided["n"] > 0].drop(columns="moved")
    grid = pd.concat([undecided, decided], ignore_index=True)[list(GRID_COLUMNS)]
    grid = grid.sort_values(list(GRID_COLUMNS), na_position="last", kind="stable")
    return grid.astype({**scores.dtypes.to_dict(), "decision": decided["decision"].dtype}).reset_index(drop=True)


def histogram(grid: pd.DataFrame, actions: np.ndarray, column: str) -> pd.DataFrame:
    """Bars of the ``column`` histogram ('conf_bin' or 'corr_bin') stacked by action: one row per (action, bar)
    with ``left`` (the bar's lower edge), ``n`` and ``action``; every action has all BINS bars (0 where empty)."""
    bar = grid[column].astype("Float64")
    placed = bar.notna().to_numpy()
    bar = bar.fillna(0).to_numpy(dtype=np.int64)
    n = grid["n"].to_numpy(dtype=np.int64)
    counts = [
        np.bincount(bar[placed & (actions == action)], weights=n[placed & (actions == action)], minlength=BINS)
        for action in clear.ACTIONS
    ]
    return pd.DataFrame(
        {
            "action": np.repeat(list(clear.ACTIONS), BINS),
            "left": np.tile(np.arange(BINS) / BINS, len(clear.ACTIONS)),
            "n": np.concatenate(counts).astype(int),
        }
    )


def agreement(grid: pd.DataFrame, actions: np.ndarray) -> pd.DataFrame:
    """Reviewer agreement per confidence bucket, as ``Store.agreement_by_bucket(run, γ, η, bins=10)`` gives it:
    bucket, lower, upper, n_rows, n_decided, n_agree, agreement (NaN where nobody decided)."""
    decision = grid["decision"].astype(object).to_numpy()
    agrees = np.zeros(len(grid), dtype=bool)
    for action, decisions in clear.AGREEING_DECISIONS.items():
        agrees |= (actions == action) & np.isin(decision, list(decisions))
    decided = pd.notna(decision)
    bucket = grid["bucket"].astype("Float64")
    placed = bucket.notna().to_numpy()
    bucket = bucket.fillna(0).to_numpy(dtype=np.int64)[placed]
    n = grid["n"].to_numpy(dtype=np.int64)

    def per_bucket(mask: np.ndarray) -> np.ndarray:
        return np.bincount(bucket, weights=(n * mask)[placed], minlength=AGREEMENT_BUCKETS).astype(int)

    buckets = np.arange(AGREEMENT_BUCKETS)
    out = pd.DataFrame(
        {
            "bucket": buckets,
            "lower": buckets / AGREEMENT_BUCKETS,
            "upper": (buckets + 1) / AGREEMENT_BUCKETS,
            "n_rows": per_bucket(np.ones(len(grid), dtype=bool)),
            "n_decided": per_bucket(decided),
            "n_agree": per_bucket(agrees),
        }
    )
    out["agreement"] = (out["n_agree"] / out["n_decided"].where(out["n_decided"] > 0)).astype(float)
    return out


# -- the review budget, from Store.confidence_bins (bin, rows, expected_bad) -----------------------------------


def _cumulative(bins: pd.DataFrame, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and expected bad rows below each bin edge 0, 1/n_bins, ..., 1 (n_bins + 1 values each)."""
    index = bins["bin"].to_numpy(dtype=np.int64)
    rows = np.bincount(index, weights=bins["rows"].to_numpy(dtype=float), minlength=n_bins)
    bad = np.bincount(index, weights=bins["expected_bad"].to_numpy(dtype=float), minlength=n_bins)
    return np.concatenate([[0.0], np.cumsum(rows)]), np.concatenate([[0.0], np.cumsum(bad)])


def rows_below(bins: pd.DataFrame, gamma: float, n_bins: int = BUDGET_BINS) -> float:
    """Rows with confidence below γ: exact where γ is a bin edge (every γ on the 0.01 grid below 1; a confidence of
    exactly 1.0 sits in the last bin), in proportion inside a bin otherwise."""
    rows_cum, _ = _cumulative(bins, n_bins)
    return float(np.interp(float(gamma) * n_bins, np.arange(n_bins + 1), rows_cum))


def bad_share_left(bins: pd.DataFrame, reviewed: float, n_bins: int = BUDGET_BINS) -> float:
    """Expected share of bad rows among the rows left after reviewing the ``reviewed`` least confident ones (a
    bin's rows taken in proportion, as ``calibration.review_budget_from_bins`` does); 0 when none are left."""
    rows_cum, bad_cum = _cumulative(bins, n_bins)
    total = rows_cum[-1]
    reviewed = min(max(float(reviewed), 0.0), total)
    if total - reviewed <= 1e-9:
        return 0.0
    return float((bad_cum[-1] - np.interp(reviewed, rows_cum, bad_cum)) / (total - reviewed))


def gamma_for_budget(bins: pd.DataFrame, budget: float, n_bins: int = BUDGET_BINS) -> float:
    """The confidence at the budget's quantile on the sliders' 0.01 grid: the smallest γ that puts as many rows
    below it as a budget of ``budget`` rows allows (never more)."""
    rows_cum, _ = _cumulative(bins, n_bins)
    at_steps = rows_cum[:: n_bins // STEPS]  # rows below k / STEPS, k = 0..STEPS
    most = at_steps[np.searchsorted(at_steps, float(budget) + 1e-9, side="right") - 1]
    return float(np.searchsorted(at_steps, most - 1e-9, side="left")) / STEPS


def budget_curve(bins: pd.DataFrame, n_bins: int = BUDGET_BINS, points: int = BUDGET_POINTS) -> pd.DataFrame:
    """``calibration.review_budget_from_bins`` as a frame: share (of rows reviewed, least confident first), rows
    (how many that is) and bad_share_left (expected share of bad rows in the rest)."""
    curve = calibration.review_budget_from_bins(
        list(bins[["bin", "rows", "expected_bad"]].itertuples(index=False, name=None)), n_bins, points
    )
    frame = pd.DataFrame(curve, columns=["share", "bad_share_left"])
    frame.insert(1, "rows", frame["share"] * float(bins["rows"].sum()))
    return frame


def sample_quota(n: np.ndarray | pd.Series, total: int, size: int, floor: int) -> np.ndarray:
    """Rows the scatter sample takes from strata of ``n`` rows each, ``total`` rows in all: a share proportional to
    the stratum's size of a ``size``-row sample, but at least ``floor`` rows, and never more than the stratum has."""
    n = np.asarray(n, dtype=float)
    return np.minimum(n, np.maximum(np.ceil(n * size / max(total, 1)), floor))


def candidate_counts(deciles: pd.Series, size: int, floor: int) -> np.ndarray:
    """How many rows of each confidence decile (``deciles``: rows per decile) ``Store.threshold_summary`` keeps as
    the scatter's candidates: twice the decile's quota, so up to half of them may be decided later before
    ``scatter_sample`` runs short, or the whole decile."""
    quota = sample_quota(deciles, int(deciles.sum()), size, floor)
    return np.minimum(np.asarray(deciles, dtype=float), 2 * quota)


def scatter_sample(
    candidates: pd.DataFrame, deciles: pd.Series, decided: pd.DataFrame, size: int, floor: int
) -> pd.DataFrame | None:
    """The rows of ``Store.threshold_sample`` (with its ``weight``, and its ``decile``, ``decided`` and ``h``) from
    the kept undecided-or-not ``candidates`` and the ``decided`` rows, or None when the candidates run short.

    A stratum is a confidence decile and decided or not; each takes ``sample_quota`` of its rows, those with the
    smallest (hash ``h``, row_index). ``deciles``: scored rows per decile (the grid's buckets), decided or not;
    ``candidates``: per decile, the rows with the smallest hashes (``candidate_counts`` of them, the whole decile
    where that is all), decided or not; ``decided``: every decided row with a confidence, its decision, decile and
    hash. The undecided rows of a decile are its candidates less the decided ones, enough unless so many of them
    were decided that fewer than the stratum's quota are left (then None: ask the store to scan)."""
    deciles = deciles[deciles > 0]
    total = int(deciles.sum())
    n_all = _per_decile(deciles.index, deciles.to_numpy())
    n_decided = np.bincount(decided["decile"].to_numpy(dtype=np.int64), minlength=10)[:10].astype(float)
    n_undecided = n_all - n_decided
    undecided = candidates[~candidates["row_index"].isin(decided["row_index"])]
    kept = np.bincount(candidates["decile"].to_numpy(dtype=np.int64), minlength=10)[:10]
    left = np.bincount(undecided["decile"].to_numpy(dtype=np.int64), minlength=10)[:10]
    quota = sample_quota(n_undecided, total, size, floor)
    if ((left < quota) & (kept < n_all)).any():
        return None
    parts = []
    for rows, n, is_decided in ((undecided, n_undecided, False), (decided, n_decided, True)):
        quota = sample_quota(n, total, size, floor)
        picked = rows.iloc[_first_by_hash(rows, quota)]
        weight = (n / np.where(quota > 0, quota, np.nan))[picked["decile"].to_numpy(dtype=np.int64)]
        parts.append(picked.assign(decided=is_decided, weight=weight))
    return pd.concat(parts, ignore_index=True)


def _per_decile(index: pd.Index, values: np.ndarray) -> np.ndarray:
    """``values`` (one per decile in ``index``) as an array over the deciles 0-9, 0 where missing."""
    out = np.zeros(10)
    out[index.to_numpy(dtype=np.int64)] = values
    return out


def _first_by_hash(rows: pd.DataFrame, quota: np.ndarray) -> np.ndarray:
    """Positions in ``rows`` of the first ``quota[decile]`` rows of each decile by (h, row_index)."""
    decile = rows["decile"].to_numpy(dtype=np.int64)
    order = np.lexsort((rows["row_index"].to_numpy(), rows["h"].to_numpy(), decile))
    sorted_deciles = decile[order]
    rank = np.arange(len(order)) - np.searchsorted(sorted_deciles, sorted_deciles, side="left")
    return order[rank < quota[sorted_deciles]]
