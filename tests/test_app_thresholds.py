"""The Thresholds page in AppTest: live counts, plots with γ and η, saving thresholds, reviewer agreement."""

from __future__ import annotations

from clear_core import clear
from clear_core.permissions import local_actor
from clear_core.store import Store

THRESHOLDS = "app_pages/thresholds.py"


def counts(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_counts_and_plots_follow_the_sliders_and_are_saved(app_db, app):
    path, dataset_id, _ = app_db
    at = app(THRESHOLDS)
    assert not at.exception and not at.error
    assert counts(at) == {"Filter": "4", "Correct": "1", "Keep": "7"}
    assert len(at.get("plotly_chart")) == 2  # histograms (γ, η) and the signals scatter
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
    assert len(at.get("plotly_chart")) == 3


def test_scatter_axis_can_be_changed(app_db, app):
    at = app(THRESHOLDS)
    at.selectbox(key="th_scatter_x").select("logprob_mean").run()
    assert not at.exception and not at.error
