"""The review budget and the calibration's wording on the Thresholds page, without Streamlit or a database:
``histograms``' budget numbers from confidence bins (as ``Store.confidence_bins`` counts them) and ``ui_state``'s
sentences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clear_core import calibration, histograms, ui_state
from clear_core.calibration import Calibration


def bins_of(confidence, n_bins: int = histograms.BUDGET_BINS) -> pd.DataFrame:
    """``Store.confidence_bins``' SQL in numpy: rows and Σ(1 − confidence) per bin, 1.0 in the last bin."""
    c = np.asarray(confidence, dtype=float)
    index = np.minimum(np.floor(c * n_bins), n_bins - 1).astype(int)
    frame = pd.DataFrame({"bin": index, "rows": 1, "expected_bad": 1 - c})
    return frame.groupby("bin", as_index=False).sum()


confidence = np.random.default_rng(0).beta(4, 1.5, 5000)  # most rows confident, a tail of doubtful ones
bins = bins_of(confidence)


@pytest.mark.parametrize("gamma", [0.0, 0.05, 0.3, 0.5, 0.77, 0.99])
def test_rows_below_gamma_is_exact_on_the_sliders_grid(gamma):
    assert histograms.rows_below(bins, gamma) == pytest.approx((confidence < gamma).sum())


@pytest.mark.parametrize("gamma", [0.2, 0.5, 0.8])
def test_bad_share_left_after_reviewing_the_rows_below_gamma(gamma):
    rest = confidence[confidence >= gamma]
    reviewed = histograms.rows_below(bins, gamma)
    assert histograms.bad_share_left(bins, reviewed) == pytest.approx(np.mean(1 - rest))


def test_bad_share_left_agrees_with_the_budget_curve_and_only_falls():
    curve = histograms.budget_curve(bins, points=21)
    assert list(curve.columns) == ["share", "rows", "bad_share_left"]
    assert curve["rows"].iloc[-1] == len(confidence)
    expected = calibration.review_budget_from_bins(
        list(bins.itertuples(index=False, name=None)), histograms.BUDGET_BINS, 21
    )
    assert curve["bad_share_left"].tolist() == pytest.approx([bad for _, bad in expected])
    at_points = [histograms.bad_share_left(bins, rows) for rows in curve["rows"]]
    assert at_points == pytest.approx(curve["bad_share_left"].tolist())
    values = curve["bad_share_left"].to_numpy()
    assert (np.diff(values[:-1]) <= 1e-12).all() and values[-1] == 0.0
    assert values[0] == pytest.approx(np.mean(1 - confidence))  # nothing reviewed: the mean chance of being bad


@pytest.mark.parametrize("budget", [0, 1, 250, 1000, 4999, 5000])
def test_gamma_for_a_budget_is_the_smallest_grid_gamma_that_spends_it(budget):
    gamma = histograms.gamma_for_budget(bins, budget)
    assert histograms.on_grid(gamma) is not None
    flagged = (confidence < gamma).sum()
    assert flagged <= budget
    on_grid = [(confidence < k / 100).sum() for k in range(101)]
    assert flagged == max(n for n in on_grid if n <= budget)  # no γ within the budget flags more rows
    if gamma > 0:  # one step down flags fewer rows
        assert (confidence < round(gamma - 0.01, 2)).sum() < flagged


def test_gamma_for_a_budget_on_a_few_rows():
    few = bins_of([0.05, 0.15, 0.3, 0.9])
    assert histograms.gamma_for_budget(few, 0) == 0.0
    assert histograms.gamma_for_budget(few, 1) == 0.06  # just above the least confident row
    assert histograms.gamma_for_budget(few, 2) == 0.16
    assert histograms.gamma_for_budget(few, 3.5) == 0.31
    assert histograms.gamma_for_budget(few, 4) == 0.91


def test_percent_keeps_small_shares_visible():
    assert [ui_state.percent(x) for x in (0, 0.0004, 0.034, 0.0996, 0.23, 1)] == [
        "0%",
        "<0.1%",
        "3.4%",
        "10%",
        "23%",
        "100%",
    ]


def test_budget_reading():
    assert ui_state.budget_reading(1234, 10_000, 0.034) == (
        "Reviewing the lowest 12% (1,234 rows) leaves about 3.4% bad rows in the rest."
    )
    assert ui_state.budget_reading(1234, 10_000, 0.034, gamma=0.5) == (
        "Reviewing the 1,234 rows below γ = 0.50 (the lowest 12%) leaves about 3.4% bad rows in the rest."
    )
    assert ui_state.budget_reading(0, 10, 0.2, gamma=0.05) == (
        "No row is below γ = 0.05. Reviewing no rows leaves about 20% bad rows among all 10 rows."
    )
    assert ui_state.budget_reading(10, 10, 0.0) == "Reviewing all 10 rows leaves no row unreviewed."
    assert ui_state.budget_reading(0, 0, 0.0) == "No scored rows yet."


def test_calibration_basis_names_what_the_map_was_fitted_on():
    shipped = calibration.shipped(1.0, 0.0)
    assert "may not read as P(good)" in ui_state.calibration_basis(shipped, saved=False)
    failed = Calibration(1.0, 0.0, "shipped", note="the corrupted copies did not score lower than the dataset's rows")
    assert ui_state.calibration_basis(failed, saved=True).endswith(
        "calibrating on this dataset failed (the corrupted copies did not score lower than the dataset's rows)."
    )
    synthetic = Calibration(1.5, -0.2, "synthetic", 0.3, 2000, 32)
    assert ui_state.calibration_basis(synthetic, saved=True).startswith(
        "Calibrated on 32 corrupted copies of this dataset's own rows against 2,000 of its rows"
    )
    reviewers = Calibration(1.5, -0.2, "reviewers", 0.3, 25, 15)
    assert ui_state.calibration_basis(reviewers, saved=True) == (
        "Calibrated on reviewers' 40 decisions (25 kept as they were, 15 removed or corrected), with the earlier "
        "map as a prior."
    )


def test_bad_rows_estimate_hedges_the_shipped_map():
    assert ui_state.bad_rows_estimate(0.25, 12_000, "synthetic") == (
        "Estimated share of bad rows: 25%, about 3,000 of the 12,000 rows scored."
    )
    assert ui_state.bad_rows_estimate(0.25, 12_000, "shipped").startswith("If it does, 25% of the rows are bad")


def test_reliability_reading_says_when_there_are_too_few_decisions():
    few = ui_state.reliability_reading(3, 12, 0.2, "shipped", min_each=10)
    assert few == (
        "15 rows reviewed so far (3 kept as they were, 12 removed or corrected): too few to judge the calibration; "
        "it takes 10 of each."
    )
    enough = ui_state.reliability_reading(30, 12, 0.08, "synthetic", min_each=10)
    assert enough == (
        "On the 42 rows reviewed, confidence and the share kept differ by 8 points on average (ECE 0.08): somewhat off."
    )
    best = ui_state.reliability_reading(30, 12, 0.01, "reviewers", min_each=10)
    assert "differ by 1 point on average (ECE 0.01): close. The map was fitted on these decisions" in best
    assert "differ by under 1 point" in ui_state.reliability_reading(30, 12, 0.004, "synthetic", min_each=10)


def test_refit_outcome():
    before = calibration.shipped(1.0, 0.0)
    after = Calibration(1.5, -0.2, "reviewers", None, 25, 15, "40 reviewers' decisions")
    assert ui_state.refit_outcome(before, after) == (
        True,
        "Refitted on reviewers' 40 decisions (25 kept as they were, 15 removed or corrected), replacing the "
        "shipped map: every row's confidence, the counts and the charts use it now.",
    )
    moved = Calibration(1.0, 0.4, "reviewers", None, 25, 15, "40 reviewers' decisions")  # the slope kept
    refitted, message = ui_state.refit_outcome(before, moved)
    assert refitted and message.endswith(
        "The decisions moved the map but kept its slope: they say where confidence should cross one half; once 10 of "
        "the most confident 25% of rows are decided, they will also set how sure the confident rows should be."
    )
    kept = Calibration(1.0, 0.0, "shipped", note="3 kept and 1 removed or corrected rows so far; needs 10 of each")
    assert ui_state.refit_outcome(before, kept) == (
        False,
        "Not refitted: 3 kept and 1 removed or corrected rows so far; needs 10 of each. Confidence keeps the "
        "shipped map.",
    )


def walk(bins, points: int) -> list[tuple[float, float]]:
    """The review budget by its definition: per point, take the bins least confident first, whole until the last."""
    table = sorted((int(b), int(n), float(e)) for b, n, e in bins)
    total, bad_total = sum(n for _, n, _ in table), sum(e for _, _, e in table)
    if total == 0:
        return []
    out = []
    for share in np.linspace(0.0, 1.0, points):
        to_review, reviewed_bad = share * total, 0.0
        for _, n, e in table:
            take = min(n, to_review)
            reviewed_bad += e * take / n if n else 0.0
            to_review -= take
            if to_review <= 0:
                break
        rest = total - share * total
        out.append((float(share), float((bad_total - reviewed_bad) / rest) if rest > 1e-9 else 0.0))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_the_budget_curve_is_the_walk_through_the_bins_to_the_last_bit(seed):
    """``review_budget_from_bins`` shares the whole bins' sums between points: the same floats as walking the bins
    for every point, with empty bins, bins in any order, one bin, and sizes up to a million rows."""
    rng = np.random.default_rng(seed)
    n_bins = int(rng.integers(1, 250))
    n = rng.integers(0, (1, 7, 1_000, 1_000_000)[seed % 4] + 1, n_bins)
    if seed % 3 == 0:
        n[rng.random(n_bins) < 0.4] = 0
    bins = [(b, int(k), float(k * rng.random())) for b, k in zip(rng.permutation(n_bins), n)]
    for points in (2, 21, histograms.BUDGET_POINTS):
        assert calibration.review_budget_from_bins(bins, n_bins, points) == walk(bins, points)
    assert calibration.review_budget_from_bins([(0, 0, 0.0)], 1, 21) == []
