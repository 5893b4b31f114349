"""The Thresholds page in AppTest: live counts, plots with γ and η, saving thresholds, reviewer agreement, the
calibration (what it is fitted on, how it compares with reviewers, a lead's refit) and the review budget."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clear_core import clear, permissions, runs, workspace
from clear_core.calibration import Calibration
from clear_core.permissions import local_actor
from clear_core.store import Store
from clear_core.ui_state import ACTION_LABELS
from tests.conftest import gsm8k_records

THRESHOLDS = "app_pages/thresholds.py"


def counts(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_counts_and_plots_follow_the_sliders_and_are_saved(app_db, app):
    path, dataset_id, _ = app_db
    at = app(THRESHOLDS)
    assert not at.exception and not at.error
    assert counts(at) == {"Filter": "4", "Correct": "1", "Keep": "7"}
    assert len(at.get("plotly_chart")) == 3  # histograms (γ, η), the review budget and the signals scatter
    assert any("No review decisions yet" in i.value for i in at.info)

    at.slider(key="th_gamma").set_value(0.2).run()
    assert counts(at) == {"Filter": "1", "Correct": "1", "Keep": "10"}
    at.slider(key="th_eta").set_value(0.5).run()
    assert counts(at) == {"Filter": "0", "Correct": "2", "Keep": "10"}
    with Store(path) as store:
        assert store.get_thresholds(dataset_id) == (0.2, 0.5)

    next(b for b in at.button if b.label == "Reset to defaults").click().run()
    assert counts(at) == {"Filter": "4", "Correct": "1", "Keep": "7"}
    with Store(path) as store:
        assert store.get_thresholds(dataset_id) == (clear.DEFAULT_GAMMA, clear.DEFAULT_ETA)


def test_agreement_appears_once_reviewers_decide(app_db, app):
    path, dataset_id, run_id = app_db
    alice = local_actor("alice")
    with Store(path) as store:
        store.record_decision(dataset_id, 3, "accept", run_id=run_id, actor=alice)  # agrees with 'correct'
        store.record_decision(dataset_id, 0, "reject", run_id=run_id, actor=alice)  # disagrees with 'filter'
    at = app(THRESHOLDS)
    assert not at.exception and not at.error
    assert not any("No review decisions yet" in i.value for i in at.info)
    assert len(at.get("plotly_chart")) == 4  # + agreement (the reviewed rows have no raw logit: no reliability)


def test_scatter_axis_can_be_changed(app_db, app):
    at = app(THRESHOLDS)
    at.selectbox(key="th_scatter_x").select("logprob_mean").run()
    assert not at.exception and not at.error


# -- calibration and the review budget ------------------------------------------------------------------------


def button(at, label: str):
    return next(b for b in at.button if b.label == label)


def lines(at) -> list[str]:
    return [h.value for h in at.get("html")]


def line_with(at, text: str) -> str:
    return next(line for line in lines(at) if text in line)


@pytest.fixture
def reviewed_db(tmp_path, monkeypatch):
    """40 GSM8K rows scored with raw logits from -4 to 3.8 (confidence through the shipped map), the 14 least
    confident removed but one, the rest kept as they were but two: enough of each kind to refit."""
    return _reviewed_db(tmp_path, monkeypatch, reviewed=40)


@pytest.fixture
def bottom_reviewed_db(tmp_path, monkeypatch):
    """The same rows with only the 30 least confident decided (13 removed, 17 kept): none of the top quarter."""
    return _reviewed_db(tmp_path, monkeypatch, reviewed=30)


def _reviewed_db(tmp_path, monkeypatch, reviewed: int):
    source = tmp_path / "gsm8k_40.json"
    source.write_text(json.dumps(gsm8k_records(40)), encoding="utf-8")
    path = tmp_path / "reviewed.duckdb"
    alice = local_actor("alice")
    with Store(path) as store:
        dataset_id = workspace.import_file(store, source)
        run_id = store.create_run(dataset_id, "synthetic", {"samples": 0})
        logits = [(i - 20) / 5 for i in range(40)]
        mapping = runs.current_calibration(store, run_id)  # the shipped map: the run has none of its own
        records = [
            {"row_index": i, "raw_logit": s, "confidence": float(mapping.confidence(s))} for i, s in enumerate(logits)
        ]
        store.add_scores(run_id, records)
        store.set_run_status(run_id, "done")
        for i in range(reviewed):
            removed = (i < 14) != (i in (5, 30, 31))  # 15 removed, 25 kept: not separable, so the fit is finite
            store.record_decision(dataset_id, i, "remove" if removed else "reject", run_id=run_id, actor=alice)
    monkeypatch.setenv("CLEAR_DB", str(path))
    monkeypatch.setenv("CLEAR_NO_DEMO", "1")
    return path, dataset_id, run_id


def test_calibration_with_the_shipped_map_and_no_decisions(app_db, app):
    at = app(THRESHOLDS)
    assert not at.exception and not at.error
    assert "shipped map" in line_with(at, "fitted on the project's dev datasets")
    assert "If it does" in line_with(at, "rows are bad")
    assert any("No reviewed rows yet" in line for line in lines(at))
    button(at, "Refit from reviewers' decisions").click().run()  # nothing to learn from: it says so
    assert not at.error
    assert [i.value for i in at.info if "Not refitted" in i.value] == [
        "Not refitted: 0 kept and 0 removed or corrected rows so far; needs 10 of each. Confidence keeps the "
        "shipped map."
    ]
    with Store(app_db[0]) as store:
        assert store.calibration(app_db[2]) is None


def test_calibration_on_corrupted_copies_is_named_with_its_noise_share(app_db, app):
    path, _, run_id = app_db
    with Store(path) as store:
        fitted = Calibration(1.2, 0.3, "synthetic", noise_share=0.25, n_good=2000, n_bad=32, note="copies")
        store.save_calibration(run_id, fitted)
    at = app(THRESHOLDS)
    assert not at.exception and not at.error
    assert "against 2,000 of its rows" in line_with(at, "Calibrated on 32 corrupted copies of this dataset's own rows")
    assert "Estimated share of bad rows: 25%, about 3 of the 12 rows scored." in line_with(at, "Estimated share")


def test_the_review_budget_reads_at_gamma_and_sets_gamma_from_a_budget(app_db, app):
    path, dataset_id, _ = app_db
    at = app(THRESHOLDS)
    assert len(at.get("plotly_chart")) == 3  # histograms, the review budget, the signals scatter
    # confidences 0.05, 0.15, 0.3, 0.35, 0.4 below γ = 0.5
    assert "Reviewing the 5 rows below γ = 0.50 (the lowest 42%) leaves about" in line_with(at, "Reviewing the 5")
    assert at.number_input(key="th_budget").value == 5
    assert button(at, "Set γ to 0.50").disabled  # the budget's γ, 0.41, flags the same rows as the current one
    assert any("The current γ = 0.50 fits that budget." in line for line in lines(at))

    at.number_input(key="th_budget").set_value(2).run()
    assert "(the lowest 17%) leaves about" in line_with(at, "Reviewing the 2 rows below γ = 0.16")
    button(at, "Set γ to 0.16").click().run()  # just above the second least confident row (0.15)
    assert not at.exception and not at.error
    assert at.slider(key="th_gamma").value == 0.16
    assert counts(at) == {"Filter": "1", "Correct": "1", "Keep": "10"}
    with Store(path) as store:
        assert store.get_thresholds(dataset_id) == (0.16, clear.DEFAULT_ETA)


def test_a_lead_refits_from_reviewers_decisions(reviewed_db, app):
    path, _, run_id = reviewed_db
    at = app(THRESHOLDS)
    assert not at.exception and not at.error
    before = counts(at)
    assert len(at.get("plotly_chart")) == 5  # + reliability and agreement
    assert "On the 40 rows reviewed, confidence and the share kept differ by" in line_with(at, "ECE")

    button(at, "Refit from reviewers' decisions").click().run()
    assert not at.exception and not at.error
    assert [s.value for s in at.success] == [
        "Refitted on reviewers' 40 decisions (25 kept as they were, 15 removed or corrected), replacing the "
        "shipped map: every row's confidence, the counts and the charts use it now."
    ]
    assert "with the earlier map as a prior" in line_with(at, "Calibrated on reviewers' 40 decisions (25 kept as")
    assert "this is its best case" in line_with(at, "ECE")
    assert counts(at) != before
    with Store(path) as store:  # the counts were re-read with the new map, not taken from the cache
        now = store.action_counts(run_id, clear.DEFAULT_GAMMA, clear.DEFAULT_ETA)
        assert counts(at) == {ACTION_LABELS[action]: f"{n:,}" for action, n in now.items()}
        saved = store.calibration(run_id)
        assert (saved["source"], saved["n_good"], saved["n_bad"], saved["fitted_by"]) == ("reviewers", 25, 15, "alice")
        assert "recalibrate" in set(store.audit_log()["action"])


def test_a_refit_from_the_least_confident_rows_keeps_the_slope_and_says_so(bottom_reviewed_db, app):
    """Decisions only on the least confident rows move the map; the page says its slope waits for confident rows."""
    path, _, run_id = bottom_reviewed_db
    with Store(path) as store:
        before = runs.current_calibration(store, run_id)
    at = app(THRESHOLDS)
    button(at, "Refit from reviewers' decisions").click().run()
    assert not at.exception and not at.error
    [message] = [s.value for s in at.success]
    assert message.startswith("Refitted on reviewers' 30 decisions (17 kept as they were, 13 removed or corrected)")
    assert "kept its slope" in message and "10 of the most confident 25% of rows" in message
    with Store(path) as store:
        saved = store.calibration(run_id)
        assert saved["source"] == "reviewers" and saved["a"] == pytest.approx(before.a)
        assert saved["b"] != pytest.approx(before.b)


def test_an_annotator_cannot_refit_or_set_gamma_from_the_budget(reviewed_db, app, monkeypatch):
    path, dataset_id, run_id = reviewed_db
    annotator = permissions.Actor("u1", "alice", "annotator")
    lead = permissions.local_actor
    monkeypatch.setattr(permissions, "local_actor", lambda name: annotator)
    at = app(THRESHOLDS)
    refit = button(at, "Refit from reviewers' decisions")
    assert refit.disabled and refit.help == "Only a lead refits the calibration."
    assert next(b for b in at.button if b.label.startswith("Set γ to")).disabled

    monkeypatch.setattr(permissions, "local_actor", lead)  # drawn for a lead, then made an annotator: the server
    at.run()  # refuses the click
    monkeypatch.setattr(permissions, "local_actor", lambda name: annotator)
    button(at, "Refit from reviewers' decisions").click().run()
    assert [e.value for e in at.error] == ["alice (annotator) may not change the thresholds γ and η; ask a lead."]
    with Store(path) as store:
        assert store.calibration(run_id) is None


ARRAYS = {
    "float64": np.array([0.1, np.nan, -2.5e300, 1 / 3]),
    "float32": np.array([0.5, 1.25], dtype=np.float32),
    "int64 small": np.array([0, -3, 127]),
    "int64 int16": np.array([-129, 30_000]),
    "int64 int32": np.array([70_000, -(2**31)]),
    "int64 wide": np.array([2**40, 1]),
    "uint64": np.array([1, 2**20], dtype=np.uint64),
    "int32": np.array([5, -5], dtype=np.int32),
    "empty": np.array([], dtype=float),
    "object": np.array([1.5, None], dtype=object),
    "bool": np.array([True, False]),
    "strings": ["a", "b"],
}


@pytest.mark.parametrize("name", list(ARRAYS))
def test_a_chart_sends_each_array_as_plotly_itself_would(name):
    """``_charts.figure`` gives numeric arrays as plotly.js typed arrays itself: the JSON st.plotly_chart sends is
    the same as for the arrays handed to plotly."""
    import plotly.graph_objects as go
    import plotly.io
    import plotly.tools

    from app_pages._charts import figure, typed_array

    def sent(fig) -> str:  # what st.plotly_chart puts in its message
        return plotly.io.to_json(plotly.tools.return_figure_from_figure_or_data(fig, True), validate=False)

    trace = {"type": "scatter", "x": ARRAYS[name], "customdata": ARRAYS[name], "mode": "markers"}
    layout = {"height": 300}
    assert sent(figure([trace], layout)) == sent(go.Figure({"data": [dict(trace)], "layout": layout}, _validate=False))
    encoded = isinstance(typed_array(ARRAYS[name]), dict)  # done here, not left to plotly
    assert encoded == (name not in ("int64 wide", "empty", "object", "bool", "strings"))
