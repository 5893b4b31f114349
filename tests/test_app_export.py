"""The Export page in AppTest: what is applied, the summary of changes, the download in the chosen format."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from clear_core import workspace
from clear_core.export import ExportPolicy
from clear_core.permissions import local_actor
from clear_core.store import Store
from tests.conftest import synthetic_scores

EXPORT = "app_pages/export.py"


def summary(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_default_export_applies_automatic_actions(app_db, app):
    at = app(EXPORT)
    assert not at.exception and not at.error
    # γ = 0.5: rows 0, 1, 2 and 5 are filtered; η = 0.8: row 3 takes the proposal
    assert summary(at) == {
        "Rows in": "12",
        "Rows out": "8",
        "Removed": "4",
        "Corrected": "1",
        "Edited": "0",
        "Unchanged": "7",
    }
    assert at.download_button[0].label == "Download gsm8k_small.curated.json"
    changes = at.dataframe[0].value
    assert list(changes["Row"]) == [0, 1, 2, 3, 5]
    assert list(changes["Why"]) == ["Automatic (filter)"] * 3 + ["Automatic (correct)", "Automatic (filter)"]


def test_decisions_override_and_only_reviewed_rows(app_db, app):
    path, dataset_id, run_id = app_db
    with Store(path) as store:
        store.record_decision(dataset_id, 0, "reject", run_id=run_id, actor=local_actor("alice"))
        store.record_decision(
            dataset_id, 5, "edit", run_id=run_id, final_response="She earned $10.", actor=local_actor("bob")
        )
        store.record_decision(dataset_id, 9, "remove", run_id=run_id, actor=local_actor("bob"))
    at = app(EXPORT)
    assert summary(at)["Rows out"] == "9" and summary(at)["Edited"] == "1" and summary(at)["Removed"] == "3"
    changes = at.dataframe[0].value.set_index("Row")
    assert changes.loc[5, "Why"] == "Edited" and changes.loc[5, "Annotator"] == "bob"
    assert changes.loc[9, "Why"] == "Removed" and 0 not in changes.index

    at.checkbox(key="ex_only").check().run()
    assert summary(at)["Rows out"] == "2"  # rows 0 (kept original) and 5 (edited)
    at.checkbox(key="ex_auto").uncheck().run()
    at.checkbox(key="ex_only").uncheck().run()
    assert summary(at)["Rows out"] == "11" and summary(at)["Corrected"] == "0"


def test_format_choice_names_the_file(app_db, app):
    at = app(EXPORT)
    for choice, name in [("jsonl", "jsonl"), ("csv", "csv"), ("parquet", "parquet")]:
        at.segmented_control(key="ex_format").set_value(choice).run()
        assert not at.exception and not at.error
        assert at.download_button[0].label == f"Download gsm8k_small.curated.{name}"
    at.checkbox(key="ex_scores").check().run()
    at.checkbox(key="ex_all").check().run()
    assert not at.exception and not at.error


@pytest.fixture
def limited_db(tmp_path, gsm8k_file, monkeypatch):
    """A run that scored only the first 8 of 12 rows, and row 6 of them failed (all signals NULL, error set)."""
    path = tmp_path / "limited.duckdb"
    monkeypatch.setenv("CLEAR_DB", str(path))
    monkeypatch.setenv("CLEAR_NO_DEMO", "1")
    with Store(path) as store:
        dataset_id = workspace.import_file(store, gsm8k_file)
        run_id = store.create_run(dataset_id, "synthetic", {"samples": 0})
        records = synthetic_scores(8)
        records[6] = {"row_index": 6, "error": "RuntimeError: CUDA out of memory"}
        store.add_scores(run_id, records)
        store.set_run_status(run_id, "done")
    return path


def test_rows_without_scores_block_the_download_until_a_choice_is_made(limited_db, app):
    at = app(EXPORT)
    assert not at.exception
    assert at.radio(key="ex_unscored").value == "fail"
    assert summary(at)["Not scored"] == "5"
    assert len(at.error) == 1
    assert at.error[0].value.startswith(
        "4 of 12 rows are not scored (rows 8, 9, 10, 11) and 1 failed scoring (row 6), so no automatic action "
        "decides them. Score them on the Run page (“Resume run #1”)"
    )
    assert at.download_button[0].proto.disabled and at.button(key="ex_build").disabled

    at.radio(key="ex_unscored").set_value("keep").run()
    assert not at.error and not at.button(key="ex_build").disabled
    assert at.download_button[0].proto.disabled  # nothing built yet
    at.button(key="ex_build").click().run()
    assert not at.error and not at.download_button[0].proto.disabled
    assert at.warning[0].value == (
        "4 of 12 rows are not scored (rows 8, 9, 10, 11) and 1 failed scoring (row 6): written unchanged."
    )
    rows_out = int(summary(at)["Rows out"])

    at.radio(key="ex_unscored").set_value("drop").run()
    assert not at.error and at.download_button[0].proto.disabled  # built for "keep": build again
    at.button(key="ex_build").click().run()
    assert not at.download_button[0].proto.disabled
    assert at.warning[0].value.endswith(": left out.")
    assert int(summary(at)["Rows out"]) == rows_out - 5
    why = at.dataframe[0].value.set_index("Row")["Why"]
    assert why[6] == "Scoring failed" and why[8] == "Not scored"


def test_the_file_is_built_on_demand_streamed_and_replaced_when_a_choice_changes(app_db, app):
    """Nothing is written until Build; the built file is the curated set (here JSON, the input's format); another
    format discards it; no file outlives what it was built for."""
    path, dataset_id, _ = app_db
    at = app(EXPORT)
    assert at.download_button[0].proto.disabled and "ex_built" not in at.session_state
    at.button(key="ex_build").click().run()
    assert not at.exception and not at.error and not at.download_button[0].proto.disabled
    built = at.session_state["ex_built"]
    with Store(path) as store:
        result = workspace.curated_export(store, dataset_id, ExportPolicy(gamma=0.5, eta=0.8, unscored="fail"), "json")
    assert built["records"] == len(result.records) == 8
    assert json.loads(Path(built["path"]).read_text()) == result.records
    at.segmented_control(key="ex_format").set_value("parquet").run()
    assert at.download_button[0].proto.disabled and not Path(built["path"]).exists()
    at.button(key="ex_build").click().run()
    assert pq.read_table(at.session_state["ex_built"]["path"]).num_rows == 8
