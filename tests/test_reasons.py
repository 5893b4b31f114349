"""Reasons for a removal or rejection on real DuckDB files: the migration, validation, round trip, the queue filter,
the counts per reason and the exported columns."""

from __future__ import annotations

import io
import json

import duckdb
import pandas as pd
import pytest

from clear_core import export, workspace
from clear_core.errors import InvalidInput
from clear_core.migrations import MIGRATIONS
from clear_core.store import REASONS, ReviewQuery, Store
from clear_core.ui_state import changed_rows
from tests.test_store import annotator, make_dataset, score


@pytest.fixture
def scored(tmp_path):
    with Store(tmp_path / "curation.duckdb") as store:
        dataset_id = store.add_dataset(make_dataset(6))
        run_id = store.create_run(dataset_id, "tiny-model", {"k": 0})
        store.add_scores(run_id, [score(i, 0.1 * (i + 1)) for i in range(6)])
        yield store, dataset_id, run_id


def test_a_version_6_file_gains_reason_and_note_and_keeps_its_decisions(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE _migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP)")
    for version, sql in MIGRATIONS[:6]:
        con.execute(sql)
        con.execute("INSERT INTO _migrations VALUES (?, now()::TIMESTAMP)", [version])
    con.execute("INSERT INTO rows VALUES (1, 0, '{}', 'p', '[]', 'r')")
    con.execute(
        "INSERT INTO decisions (dataset_id, row_index, decision, annotator, decided_at) "
        "VALUES (1, 0, 'remove', 'ann', now()::TIMESTAMP)"
    )
    con.close()
    with Store(path) as store:
        assert 7 in store.schema_versions()
        old = store.current_decisions(1).iloc[0]
        assert old["decision"] == "remove" and pd.isna(old["reason"]) and pd.isna(old["note"])


def test_reasons_are_validated(scored):
    store, dataset_id, _ = scored
    with pytest.raises(InvalidInput, match="wrong, truncated, off-topic, unsafe, format, other"):
        store.record_decision(dataset_id, 0, "remove", reason="boring", actor=annotator("ann"))
    with pytest.raises(InvalidInput, match="Only a remove or reject"):
        store.record_decision(dataset_id, 0, "edit", final_response="x", reason="wrong", actor=annotator("ann"))
    with pytest.raises(InvalidInput, match="Only a remove or reject"):
        store.record_decision(dataset_id, 0, "edit", final_response="x", note="why", actor=annotator("ann"))
    with pytest.raises(InvalidInput, match="Unknown reason"):
        ReviewQuery(1, 0.5, 0.8, reason="boring")
    assert store.decision_log(dataset_id).empty


def test_reason_and_note_round_trip_through_log_current_and_queue(scored):
    store, dataset_id, run_id = scored
    note = "**not bold** <b>x</b> https://example.com"
    store.record_decision(dataset_id, 0, "remove", reason="truncated", note=f"  {note} ", actor=annotator("ann"))
    store.record_decision(dataset_id, 1, "reject", reason="other", note="   ", actor=annotator("ann"))
    store.record_decision(dataset_id, 2, "remove", actor=annotator("ann"))
    log = store.decision_log(dataset_id).set_index("row_index")
    assert log.loc[0, "reason"] == "truncated" and log.loc[0, "note"] == note
    assert log.loc[1, "reason"] == "other" and pd.isna(log.loc[1, "note"])  # a blank note is none
    assert pd.isna(log.loc[2, "reason"])
    current = store.current_decisions(dataset_id).set_index("row_index")
    assert current.loc[0, ["reason", "note"]].tolist() == ["truncated", note]
    page, _ = store.review_queue(ReviewQuery(run_id, 0.5, 0.8, order_by="row_index"))
    assert page.set_index("row_index").loc[0, ["reason", "note"]].tolist() == ["truncated", note]


def test_the_queue_filters_by_reason_and_undo_drops_it(scored):
    store, dataset_id, run_id = scored
    store.record_decision(dataset_id, 0, "remove", reason="wrong", actor=annotator("ann"))
    store.record_decision(dataset_id, 3, "reject", reason="wrong", actor=annotator("ann"))
    store.record_decision(dataset_id, 4, "remove", reason="unsafe", actor=annotator("ann"))
    wrong = ReviewQuery(run_id, 0.5, 0.8, reason="wrong", order_by="row_index")
    assert "reason = $reason" in wrong.where()[0] and wrong.where()[1]["reason"] == "wrong"
    assert store.review_queue(wrong)[0]["row_index"].tolist() == [0, 3]
    assert store.review_count(ReviewQuery(run_id, 0.5, 0.8, reason="wrong", status="remove")) == 1
    store.record_decision(dataset_id, 3, "remove", reason="format", actor=annotator("ann"))  # a later decision wins
    assert store.review_count(wrong) == 1
    store.undo_last_decision(dataset_id, annotator("ann"))
    assert store.review_count(wrong) == 2


def test_reason_counts_are_per_reason_and_decision(scored):
    store, dataset_id, _ = scored
    store.record_decision(dataset_id, 0, "remove", reason="wrong", actor=annotator("ann"))
    store.record_decision(dataset_id, 1, "remove", reason="wrong", actor=annotator("ann"))
    store.record_decision(dataset_id, 2, "reject", reason="wrong", actor=annotator("ann"))
    store.record_decision(dataset_id, 3, "remove", reason="unsafe", actor=annotator("ann"))
    store.record_decision(dataset_id, 4, "remove", actor=annotator("ann"))  # no reason: not counted
    counts = store.reason_counts(dataset_id)
    assert counts["reason"].tolist() == [r for r in REASONS for _ in range(2)]
    table = counts.set_index(["reason", "decision"])["n"]
    assert table[("wrong", "remove")] == 2 and table[("wrong", "reject")] == 1 and table[("unsafe", "remove")] == 1
    assert table.sum() == 4


def test_export_with_scores_writes_reason_and_note(scored, tmp_path):
    store, dataset_id, run_id = scored
    store.record_decision(dataset_id, 0, "remove", reason="off-topic", note="about cats", actor=annotator("ann"))
    store.record_decision(dataset_id, 1, "reject", reason="format", actor=annotator("ann"))
    store.record_decision(dataset_id, 2, "edit", final_response="Edited.", actor=annotator("ann"))
    policy = export.ExportPolicy(gamma=0.0, eta=1.0, all_rows=True, include_scores=True)
    curated = export.curate(
        store.dataset_rows(dataset_id), store.scores(run_id), store.current_decisions(dataset_id), policy
    )
    records = export.to_records("alpaca", "jsonl", curated, include_scores=True, all_rows=True)
    by_row = dict(enumerate(records))
    assert (by_row[0]["clear_reason"], by_row[0]["clear_note"]) == ("off-topic", "about cats")
    assert (by_row[1]["clear_reason"], by_row[1]["clear_note"]) == ("format", None)
    assert (by_row[2]["clear_reason"], by_row[2]["clear_note"]) == (None, None)
    assert by_row[3]["clear_reason"] is None  # undecided
    plain = export.to_records("alpaca", "jsonl", curated)
    assert not any(key.startswith("clear_") for key in json.loads(json.dumps(plain[1])))


def test_the_export_the_cli_and_export_page_share_writes_reason_and_note_in_csv(app_db):
    path, dataset_id, _ = app_db
    note = 'says "hi",\nthen'
    with Store(path) as store:
        store.record_decision(dataset_id, 4, "remove", reason="unsafe", note=note, actor=annotator("ann"))
        policy = export.ExportPolicy(gamma=0.0, eta=1.0, all_rows=True, include_scores=True)
        result = workspace.curated_export(store, dataset_id, policy, "csv")
    table = pd.read_csv(io.BytesIO(export.export_bytes(result.records, "csv")))
    assert table.loc[4, ["clear_decision", "clear_reason", "clear_note"]].tolist() == ["remove", "unsafe", note]
    assert table["clear_reason"].isna().sum() == 11
    preview, _ = changed_rows(result.curated)  # the Export page's "What changed"
    assert preview.set_index("Row").loc[4, "Why"] == "Removed · Unsafe"
