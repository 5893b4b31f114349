"""Thresholds (for leads): where γ and η cut the confidence distributions, how many rows each action gets, and how
often reviewers agreed with the automatic action at each confidence, to pick γ/η from evidence.

CLEAR's symbols: γ (gamma) is the Auto-Filter threshold on confidence, η (eta) the Auto-Correct threshold on
correction confidence. They are stored per dataset, so moving them re-labels rows at once, without re-scoring.

The page reads no row values: DuckDB counts the run's rows per cell of a small grid (``Store.threshold_grid``) and
per confidence bin (``Store.confidence_bins``, for the review budget) and picks a stratified sample for the scatter
(``Store.threshold_sample``), all cached until a row is scored or decided or the calibration changes; moving γ or η
re-counts the grid (``clear_core.histograms``). What depends on the scores alone (the grid's scores part, the bins,
the scatter's candidate rows) the store keeps in the database per scores version (``Store.threshold_summary``), so
a first open reads a few hundred KB, and after a decision only the decided rows are read again, in one join that
gives their grid cells, the scatter's decided rows and the reviewed rows' raw logits for the calibration section
(``Store.threshold_decided``). Everything read is kept per ``Store.threshold_version`` (``threshold_view``). The
browser gets bars, not points, as plotly's JSON built directly (``app_pages/_charts.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
from plotly.graph_objects import Figure

from app_pages._charts import figure
from app_pages._components import (
    actor,
    db_path,
    get_store,
    html_line,
    plain,
    require_dataset,
    require_scores,
    safe_callback,
)
from clear_core import calibration, clear, histograms, metrics, runs, ui_state
from clear_core.permissions import allowed
from clear_core.store import REASON_DECISIONS
from clear_core.ui_state import ACTION_LABELS, DECISION_LABELS, REASON_LABELS, SIGNAL_HELP

COLORS = {"filter": "#d1495b", "correct": "#2a9d8f", "keep": "#8d99ae"}
RELIABILITY_BINS = 5  # few bins: reviewers decide hundreds of rows, not the tens of thousands a fine chart needs
REASON_COLORS = {"remove": "#d1495b", "reject": "#8d99ae"}
SCATTER_POINTS = 2_000  # a stratified sample: each confidence decile, decided or not, keeps at least 60 points
SCATTER_X = {
    "response_length": "Response length (characters)",
    "n_response_tokens": "Response length (tokens)",
    "logprob_mean": "Mean log-probability",
    "pmi": "PMI (prompt explains response)",
    "eos_prob": "End-of-response probability",
    "stop_prob": "Stop probability (low = truncated)",
    "final_number_logprob": "Final number log-probability",
    "repetition": "Repeated sentences (share)",
    "self_reflection": "Self-reflection",
    "consistency": "Observed consistency",
    "judge_prob": "Judge probability",
    "correction_confidence": "Correction confidence",
}
MARGIN = {"t": 40, "b": 10, "l": 10, "r": 10}
state = st.session_state


@safe_callback
def save(dataset_id: int, gamma: float | None = None) -> None:
    """Save γ and η as the sliders show them, or γ = ``gamma`` (the review budget's), the slider following."""
    gamma = state.th_gamma if gamma is None else gamma
    get_store().set_thresholds(dataset_id, gamma, state.th_eta, actor=actor())
    state.th_gamma = gamma


@safe_callback
def reset(dataset_id: int) -> None:
    state.th_gamma, state.th_eta = clear.DEFAULT_GAMMA, clear.DEFAULT_ETA
    save(dataset_id)


@safe_callback
def refit(run_id: int) -> None:
    """Refit the run's calibration on reviewers' decisions (leads only: ``runs.refit_from_reviewers`` refuses
    anyone else) and keep what to tell the lead for the next draw."""
    store = get_store()
    before = runs.current_calibration(store, run_id)
    after = runs.refit_from_reviewers(store, run_id, actor=actor())
    state.th_refit = ui_state.refit_outcome(before, after)


@st.cache_data(max_entries=8, show_spinner=False)
def threshold_view(path: str, run_id: int, dataset_id: int, version: tuple) -> dict:
    """What the page reads of the run, kept while ``version`` (``Store.threshold_version``: the scores, the
    calibrations, the latest decision) stands: 'grid' (``Store.threshold_grid``), 'bins' (the review budget's
    ``confidence_bins``) and its 'curve', the scatter's 'sample', the 'reviewed' rows' (raw logit, bad), the saved
    'calibration' and the 'reasons' table. The scores part is ``Store.threshold_summary``'s (kept in the database
    per scores version, so a fresh process reads a few hundred KB); the decided rows are read in one join
    (``Store.threshold_decided``)."""
    store = get_store()
    scores = scores_version(version)  # read just now with the decision: the store need not read it again
    summary = store.threshold_summary(run_id, SCATTER_POINTS, scores_version=scores)
    decided = store.threshold_decided(run_id, SCATTER_POINTS, scores_version=scores)
    return {
        "grid": histograms.with_decisions(summary["grid"], decided["grid"]),
        "bins": summary["bins"],
        "curve": histograms.budget_curve(summary["bins"]),
        "sample": decided["sample"],
        "reviewed": decided["reviewed"],
        "calibration": store.calibration(run_id),
        "reasons": reason_table(store.reason_counts(dataset_id)),
    }


def scores_version(version: tuple) -> tuple:
    """What of ``Store.threshold_version`` the scores alone depend on: all but the latest decision (its last field)."""
    return version[:-1]


def vline(x: float, color: str, text: str, axis: str = "", anchor: str = "left") -> tuple[dict, dict]:
    """A dashed vertical line at ``x`` across subplot ``axis`` ('' or '2') and its label at the top, as plotly's
    ``add_vline`` draws them (``anchor`` 'right' puts the label left of the line)."""
    line = {
        "type": "line",
        "line": {"color": color, "dash": "dash"},
        "x0": x,
        "x1": x,
        "xref": f"x{axis}",
        "y0": 0,
        "y1": 1,
        "yref": f"y{axis} domain",
    }
    label = {"showarrow": False, "text": text, "x": x, "xanchor": anchor, "xref": f"x{axis}", "y": 1}
    return line, {**label, "yanchor": "top", "yref": f"y{axis} domain"}


def bars(grid: pd.DataFrame, actions, column: str, axis: str) -> list[dict]:
    """One stacked histogram (``histograms.histogram`` of ``column``) on subplot ``axis`` ('' or '2')."""
    counts = histograms.histogram(grid, actions, column)
    width = 1 / histograms.BINS
    traces = []
    for action in clear.ACTIONS:
        picked = counts[counts["action"] == action]
        traces.append(
            {
                "type": "bar",
                "x": picked["left"].to_numpy(dtype=float) + width / 2,
                "y": picked["n"].to_numpy(),
                "width": width,
                "name": ACTION_LABELS[action],
                "marker": {"color": COLORS[action]},
                "legendgroup": action,
                "showlegend": axis == "",
                "hovertemplate": "%{x:.2f}: %{y:,} rows<extra>" + ACTION_LABELS[action] + "</extra>",
                "xaxis": f"x{axis}",
                "yaxis": f"y{axis}",
            }
        )
    return traces


def histograms_figure(grid: pd.DataFrame, actions, gamma: float, eta: float) -> Figure:
    """Confidence and correction confidence side by side, bars stacked by action, γ and η marked (the layout
    plotly's ``make_subplots(rows=1, cols=2, subplot_titles=...)`` gives)."""
    gamma_line, gamma_label = vline(gamma, "#b23a48", f"γ = {gamma:.2f}", "", "right")
    eta_line, eta_label = vline(eta, "#1f7a70", f"η = {eta:.2f}", "2", "right")
    titles = [
        {"text": text, "x": x, "xanchor": "center", "xref": "paper", "y": 1.0, "yanchor": "bottom", "yref": "paper"}
        for text, x in (("Confidence (γ filters below)", 0.225), ("Correction confidence (η corrects above)", 0.775))
    ]
    layout = {
        "xaxis": {"anchor": "y", "domain": [0.0, 0.45], "range": [0, 1]},
        "yaxis": {"anchor": "x", "domain": [0.0, 1.0], "title": {"text": "rows"}},
        "xaxis2": {"anchor": "y2", "domain": [0.55, 1.0], "range": [0, 1]},
        "yaxis2": {"anchor": "x2", "domain": [0.0, 1.0]},
        "annotations": [{**t, "font": {"size": 16}, "showarrow": False} for t in titles] + [gamma_label, eta_label],
        "shapes": [gamma_line, eta_line],
        "barmode": "stack",
        "bargap": 0,
        "height": 330,
        "margin": MARGIN,
        "legend": {"orientation": "h", "y": -0.15},
    }
    return figure(bars(grid, actions, "conf_bin", "") + bars(grid, actions, "corr_bin", "2"), layout)


def agreement_chart(buckets: pd.DataFrame, gamma: float) -> Figure:
    decided = buckets[buckets["n_decided"] > 0]
    labels = [f"{r.n_agree} of {r.n_decided}" for r in decided.itertuples()]
    line, label = vline(gamma, "#b23a48", f"γ = {gamma:.2f}")
    bar = {
        "type": "bar",
        "x": ((decided["lower"] + decided["upper"]) / 2).to_numpy(dtype=float),
        "y": decided["agreement"].to_numpy(dtype=float),
        "width": 0.09,
        "text": labels,
        "textposition": "outside",
        "marker": {"color": "#457b9d"},
        "hovertemplate": "confidence %{x:.2f}<br>agreement %{y:.0%}<extra></extra>",
    }
    layout = {
        "shapes": [line],
        "annotations": [label],
        "height": 300,
        "margin": {**MARGIN, "t": 20},
        "xaxis": {"range": [0, 1], "title": {"text": "confidence bucket"}},
        "yaxis": {"range": [0, 1.15], "tickformat": ".0%", "title": {"text": "reviewers agreed"}},
    }
    return figure([bar], layout)


def budget_chart(curve: pd.DataFrame, gamma: float, gamma_rows: float, gamma_bad: float) -> Figure:
    """Expected share of bad rows left against the share of rows reviewed (least confident first), γ marked."""
    total = max(float(curve["rows"].max()) if len(curve) else 0.0, 1.0)  # no curve: no row has a confidence
    line, label = vline(gamma_rows / total, "#b23a48", f"rows below γ = {gamma:.2f}")
    traces = [
        {
            "type": "scatter",
            "x": curve["share"].to_numpy(dtype=float),
            "y": curve["bad_share_left"].to_numpy(dtype=float),
            "customdata": curve["rows"].round().to_numpy(dtype=float),
            "mode": "lines",
            "line": {"color": "#457b9d", "width": 3},
            "hovertemplate": "review the lowest %{x:.0%} (%{customdata:,} rows)<br>"
            "about %{y:.1%} bad rows left<extra></extra>",
        },
        {
            "type": "scatter",
            "x": [gamma_rows / total],
            "y": [gamma_bad],
            "mode": "markers",
            "marker": {"color": "#b23a48", "size": 11},
            "hovertemplate": f"rows below γ = {gamma:.2f}: %{{x:.0%}}<br>about %{{y:.1%}} bad rows left<extra></extra>",
        },
    ]
    layout = {
        "shapes": [line],
        "annotations": [label],
        "height": 300,
        "showlegend": False,
        "margin": {**MARGIN, "t": 20},
        "xaxis": {"range": [0, 1], "tickformat": ".0%", "title": {"text": "rows reviewed, least confident first"}},
        "yaxis": {
            "rangemode": "tozero",
            "tickformat": ".0%",
            "title": {"text": "bad rows left in the rest (expected)"},
        },
    }
    return figure(traces, layout)


def reliability_chart(table: pd.DataFrame) -> Figure:
    """Per confidence bin, the share of reviewed rows kept as they were (bars, labelled 'k of n kept') and the mean
    calibrated confidence (diamonds): a calibrated confidence puts each diamond on its bar's top."""
    filled = table[table["count"] > 0]
    kept = (filled["observed_good_rate"] * filled["count"]).round().astype(int)
    middle = ((filled["bin_lower"] + filled["bin_upper"]) / 2).to_numpy(dtype=float)
    traces = [
        {
            "type": "bar",
            "x": middle,
            "y": filled["observed_good_rate"].to_numpy(dtype=float),
            "width": 0.9 / RELIABILITY_BINS,
            "text": [f"{k} of {n} kept" for k, n in zip(kept, filled["count"])],
            "textposition": "outside",
            "marker": {"color": "#8d99ae"},
            "name": "reviewers kept",
            "hovertemplate": "confidence %{x:.1f}: %{y:.0%} kept<extra></extra>",
        },
        {
            "type": "scatter",
            "x": middle,
            "y": filled["mean_confidence"].to_numpy(dtype=float),
            "mode": "markers",
            "marker": {"symbol": "diamond", "size": 11, "color": "#457b9d"},
            "name": "mean confidence",
            "hovertemplate": "mean confidence %{y:.2f}<extra></extra>",
        },
    ]
    layout = {
        "height": 260,
        "margin": {**MARGIN, "t": 20},
        "legend": {"orientation": "h", "y": -0.3},
        "xaxis": {"range": [0, 1], "title": {"text": "calibrated confidence"}},
        "yaxis": {"range": [0, 1.2], "tickformat": ".0%", "title": {"text": "share kept"}},
    }
    return figure(traces, layout)


def reason_table(counts: pd.DataFrame) -> pd.DataFrame:
    """``Store.reason_counts`` (one row per reason and decision) as one row per reason, a column per decision."""
    table = counts.pivot(index="reason", columns="decision", values="n").reindex(
        index=list(REASON_LABELS), columns=list(REASON_DECISIONS)
    )
    table = table.fillna(0).astype(int).rename(index=REASON_LABELS, columns=DECISION_LABELS)
    return table.rename_axis(index="Reason", columns=None).reset_index()


def reason_chart(table: pd.DataFrame) -> Figure:
    traces = [
        {
            "type": "bar",
            "x": table["Reason"].tolist(),
            "y": table[DECISION_LABELS[decision]].to_numpy(),
            "name": DECISION_LABELS[decision],
            "marker": {"color": REASON_COLORS[decision]},
            "hovertemplate": "%{x}: %{y} rows<extra></extra>",
        }
        for decision in REASON_DECISIONS
    ]
    layout = {
        "barmode": "stack",
        "height": 300,
        "margin": {**MARGIN, "t": 20},
        "legend": {"orientation": "h"},
        "yaxis": {"title": {"text": "rows"}},
    }
    return figure(traces, layout)


def scatter(sample: pd.DataFrame, actions, x: str) -> Figure:
    traces = []
    for action in clear.ACTIONS:
        picked = sample[np.asarray(actions) == action]
        traces.append(
            {
                "type": "scattergl",
                "x": picked[x].to_numpy(),
                "y": picked["confidence"].to_numpy(),
                "mode": "markers",
                "name": ACTION_LABELS[action],
                "marker": {"color": COLORS[action], "size": 6, "opacity": 0.7},
                "customdata": picked["row_index"].to_numpy(),
                "hovertemplate": "row %{customdata}<br>x %{x}<br>confidence %{y:.3f}<extra></extra>",
            }
        )
    layout = {
        "height": 360,
        "margin": {**MARGIN, "t": 20},
        "legend": {"orientation": "h", "y": -0.2},
        "xaxis": {"title": {"text": SCATTER_X[x]}},
        "yaxis": {"title": {"text": "confidence"}, "range": [0, 1]},
    }
    return figure(traces, layout)


store = get_store()
dataset = require_dataset(store)
run = require_scores(store, dataset, counts=False)  # the grid counts the scored rows
dataset_id, run_id = dataset["dataset_id"], run["run_id"]
version = store.threshold_version(run_id)  # a refit of the calibration changes it too
view = threshold_view(str(db_path()), run_id, dataset_id, version)
fitted = runs.calibration_from(view["calibration"])
grid = view["grid"]
n_scored = int(grid["n"].sum())
st.title("Thresholds")
html_line(
    f"“{plain(dataset['name'])}”, run #{run_id}: {n_scored:,} scored rows. Rows with confidence below <b>γ</b> "
    "are filtered; rows whose proposal has correction confidence above <b>η</b> are corrected (a confident fix "
    "wins over removal); the rest are kept. Changes are saved at once and relabel the Review queue."
)
if grid.empty:
    st.info("No rows are scored yet. They appear here as the run scores them.", icon=":material/hourglass_top:")
    st.stop()

if "th_gamma" not in state:
    state.th_gamma, state.th_eta = store.get_thresholds(dataset_id)
locked = not allowed(actor(), "set_thresholds")
c1, c2, c3 = st.columns([2, 2, 1], vertical_alignment="bottom")
gamma = c1.slider(
    "γ: filter below this confidence",
    0.0,
    1.0,
    step=0.01,
    key="th_gamma",
    on_change=save,
    args=(dataset_id,),
    disabled=locked,
)
eta = c2.slider(
    "η: correct above this correction confidence",
    0.0,
    1.0,
    step=0.01,
    key="th_eta",
    on_change=save,
    args=(dataset_id,),
    disabled=locked,
)
c3.button(
    "Reset to defaults",
    on_click=reset,
    args=(dataset_id,),
    disabled=locked,
    help=f"γ = {clear.DEFAULT_GAMMA}, η = {clear.DEFAULT_ETA}",
)

# γ/η from the 0.01 sliders re-count the cached grid; any other stored value (set through the API) asks the store.
actions = histograms.cell_actions(grid, gamma, eta)
if actions is None:
    gamma_grid, eta_grid = round(gamma, 2), round(eta, 2)
    actions = histograms.cell_actions(grid, gamma_grid, eta_grid)
    counts = store.action_counts(run_id, gamma, eta)
else:
    counts = histograms.counts_at(grid, gamma, eta)
total = max(sum(counts.values()), 1)
for column, action in zip(st.columns(3), clear.ACTIONS):
    column.metric(
        f"{ACTION_LABELS[action]}",
        f"{counts[action]:,}",
        f"{counts[action] / total:.0%} of scored",
        delta_color="off",
        delta_arrow="off",
        border=True,
    )

st.plotly_chart(histograms_figure(grid, actions, gamma, eta), config={"displaylogo": False})

budget_side, calibration_side = st.columns(2, gap="large")
with budget_side:
    st.subheader("Review budget")
    bins = view["bins"]
    n_rated = int(bins["rows"].sum())  # scored rows with a confidence
    gamma_rows = histograms.rows_below(bins, gamma)
    gamma_bad = histograms.bad_share_left(bins, gamma_rows)
    html_line(ui_state.budget_reading(gamma_rows, n_rated, gamma_bad, gamma=gamma), kind="line")
    st.plotly_chart(budget_chart(view["curve"], gamma, gamma_rows, gamma_bad), config={"displaylogo": False})
    state.setdefault("th_budget", round(gamma_rows))
    state.th_budget = min(state.th_budget, n_rated)
    c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
    budget = c1.number_input("I can review N rows", 0, n_rated, step=max(1, n_rated // 100), key="th_budget")
    budget_gamma = histograms.gamma_for_budget(bins, budget)
    budget_rows = histograms.rows_below(bins, budget_gamma)
    fits = round(budget_rows) == round(gamma_rows)  # the current γ flags the same rows
    c2.button(
        f"Set γ to {gamma if fits else budget_gamma:.2f}",
        on_click=save,
        args=(dataset_id, budget_gamma),
        disabled=locked or fits,
        help="Only a lead sets γ." if locked else "The confidence of the budget's last row, on the slider's grid.",
    )
    if fits:
        html_line(f"The current γ = {gamma:.2f} fits that budget.")
    else:
        budget_bad = histograms.bad_share_left(bins, budget_rows)
        html_line(ui_state.budget_reading(budget_rows, n_rated, budget_bad, gamma=budget_gamma))
with calibration_side:
    st.subheader("Calibration")
    html_line(ui_state.calibration_basis(fitted, saved=view["calibration"] is not None), kind="line")
    estimate = fitted.noise_share if fitted.source == "synthetic" else None  # the fit's own estimate
    if estimate is None:
        estimate = histograms.bad_share_left(bins, 0)  # mean(1 − confidence) over every scored row
    html_line(ui_state.bad_rows_estimate(estimate, n_rated, fitted.source))
    logits, bad = view["reviewed"]
    if len(logits):
        confidence = fitted.confidence(logits)
        table = calibration.reliability_against(confidence, ~bad, bins=RELIABILITY_BINS)
        gap = metrics.expected_calibration_error(confidence, ~bad, bins=RELIABILITY_BINS)
        st.plotly_chart(reliability_chart(table), config={"displaylogo": False})
        n_good, n_bad = int((~bad).sum()), int(bad.sum())
        html_line(
            ui_state.reliability_reading(n_good, n_bad, gap, fitted.source, calibration.MIN_REVIEWED_EACH)
            + " Reviewers see the least confident rows first, so the low bins fill first."
        )
    else:
        html_line("No reviewed rows yet: as reviewers decide, a chart here compares confidence with what they kept.")
    st.button(
        "Refit from reviewers' decisions",
        on_click=refit,
        args=(run_id,),
        disabled=locked,
        help="Only a lead refits the calibration."
        if locked
        else f"Fits confidence to what reviewers kept and removed; needs {calibration.MIN_REVIEWED_EACH} of each.",
    )
    if outcome := state.pop("th_refit", None):
        refitted, message = outcome
        (st.success if refitted else st.info)(message, icon=":material/tune:")

left, right = st.columns(2, gap="large")
with left:
    st.subheader("Did reviewers agree?")
    exact = histograms.on_grid(gamma) is not None and histograms.on_grid(eta) is not None
    buckets = histograms.agreement(grid, actions) if exact else store.agreement_by_bucket(run_id, gamma, eta, bins=10)
    if buckets["n_decided"].sum() == 0:
        st.info(
            "No review decisions yet. As reviewers decide, this shows per confidence bucket how often they "
            "agreed with the automatic action at these thresholds.",
            icon=":material/groups:",
        )
    else:
        st.caption(
            "Share of reviewed rows per confidence bucket where the decision matched the automatic action "
            "(filter ~ remove, correct ~ accept or edit, keep ~ reject)."
        )
        st.plotly_chart(agreement_chart(buckets, gamma), config={"displaylogo": False})
with right:
    st.subheader("Signals")
    x = st.selectbox(
        "Confidence against",
        list(SCATTER_X),
        format_func=SCATTER_X.get,
        key="th_scatter_x",
        help=SIGNAL_HELP.get("confidence"),
    )
    sample = view["sample"]
    sample_actions = clear.decide_many(sample["confidence"], sample["correction_confidence"], gamma, eta)
    st.plotly_chart(scatter(sample, sample_actions, x), config={"displaylogo": False})
    if len(sample) < n_scored:
        st.caption(
            f"{len(sample):,} of {n_scored:,} rows, sampled per confidence decile; decided rows and sparse "
            "deciles keep at least 60 points each, so rare rows stay visible."
        )

st.subheader("Why rows were removed or kept")
reasons = view["reasons"]
if reasons.drop(columns="Reason").to_numpy().sum() == 0:
    st.info(
        "No reasons recorded yet. On Review, keys 1-6 give a Remove or Reject its reason; the counts per reason "
        "show here.",
        icon=":material/label:",
    )
else:
    st.caption("Current Remove and Reject decisions per reason (decisions without a reason are left out).")
    chart, numbers = st.columns([3, 2], gap="large")
    chart.plotly_chart(reason_chart(reasons), config={"displaylogo": False})
    numbers.dataframe(reasons, hide_index=True)
