"""Reasons in the app (AppTest on a real database): choosing a reason and note on Review, seeing and filtering by
it, and the counts per reason plotted on the Thresholds page."""

from __future__ import annotations

import pandas as pd

from clear_core.permissions import local_actor
from clear_core.store import Store
from tests.test_app_review import REVIEW, button, click, current_row, decisions

THRESHOLDS = "app_pages/thresholds.py"


def test_a_reason_and_note_go_with_remove_and_show_on_the_decided_row(app_db, app):
    path, dataset_id, _ = app_db
    at = app(REVIEW)
    assert current_row(at) == 3
    assert [button(at, label).proto.shortcut for label in ("Wrong", "Truncated", "Other")] == ["1", "2", "6"]
    click(at, "Truncated")
    assert button(at, "Truncated").proto.type == "primary"
    at.text_input(key="review_note").input("**cut** at https://example.com").run()
    click(at, "Remove")
    assert not at.exception and not at.error
    assert current_row(at) == 5
    assert button(at, "Truncated").proto.type == "secondary" and at.text_input(key="review_note").value == ""
    click(at, "Reject")  # no reason picked: none recorded
    assert list(at.dataframe[0].value["Decision"][:2]) == ["Removed · Truncated", "Kept original"]
    current = decisions(path, dataset_id)
    assert current.loc[3, ["decision", "reason", "note"]].tolist() == [
        "remove",
        "truncated",
        "**cut** at https://example.com",
    ]
    assert current.loc[5, "decision"] == "reject" and pd.isna(current.loc[5, "reason"])

    click(at, "Prev")
    click(at, "Prev")
    assert current_row(at) == 3
    line = next(h.value for h in at.html if "by <b>alice</b>" in h.value)
    assert "reason <b>Truncated</b>" in line and "note: “**cut** at https://example.com”" in line


def test_the_queue_filters_by_reason(app_db, app):
    path, dataset_id, run_id = app_db
    with Store(path) as store:
        store.record_decision(dataset_id, 0, "remove", reason="unsafe", actor=local_actor("alice"))
        store.record_decision(dataset_id, 1, "reject", run_id=run_id, reason="unsafe", actor=local_actor("alice"))
        store.record_decision(dataset_id, 2, "remove", reason="format", actor=local_actor("alice"))
    at = app(REVIEW)
    at.selectbox(key="review_reason_filter").select("unsafe").run()
    assert not at.exception and not at.error
    assert list(at.dataframe[0].value["Row"]) == [0, 1]
    click(at, "Next")
    assert current_row(at) == 1
    click(at, "Wrong")
    click(at, "Remove")  # the last row of the queue leaves it for another reason; the one left shows
    assert not at.exception and not at.error
    assert list(at.dataframe[0].value["Row"]) == [0] and current_row(at) == 0
    assert decisions(path, dataset_id).loc[1, ["decision", "reason"]].tolist() == ["remove", "wrong"]
    at.selectbox(key="review_reason_filter").select("wrong").run()
    assert list(at.dataframe[0].value["Row"]) == [1]
    at.selectbox(key="review_reason_filter").select("truncated").run()
    assert any("No rows match these filters" in i.value for i in at.info)


def test_thresholds_plots_the_counts_per_reason(app_db, app):
    path, dataset_id, run_id = app_db
    alice = local_actor("alice")
    with Store(path) as store:
        store.record_decision(dataset_id, 0, "remove", reason="wrong", actor=alice)
        store.record_decision(dataset_id, 1, "remove", reason="wrong", actor=alice)
        store.record_decision(dataset_id, 2, "reject", run_id=run_id, reason="wrong", actor=alice)
        store.record_decision(dataset_id, 3, "remove", reason="unsafe", note="n", actor=alice)
    at = app(THRESHOLDS)
    assert not at.exception and not at.error
    assert len(at.get("plotly_chart")) == 5  # histograms, review budget, agreement, signals and the reasons
    table = next(d.value for d in at.dataframe if "Reason" in d.value.columns).set_index("Reason")
    assert list(table.index) == ["Wrong", "Truncated", "Off-topic", "Unsafe", "Format", "Other"]
    assert table.loc["Wrong", ["Removed", "Kept original"]].tolist() == [2, 1]
    assert table.loc["Unsafe", ["Removed", "Kept original"]].tolist() == [1, 0]
    assert table["Removed"].sum() + table["Kept original"].sum() == 4


def test_thresholds_says_when_no_reason_is_recorded(app_db, app):
    at = app(THRESHOLDS)
    assert not at.exception and not at.error
    assert any("No reasons recorded yet" in i.value for i in at.info)
