"""clear_core.ui_state: the pure helpers behind the app's screens (no Streamlit needed)."""

from __future__ import annotations

import pandas as pd
import pytest

from clear_core import ui_state
from clear_core.data import Problem
from clear_core.export import CuratedRow
from clear_core.permissions import local_actor
from clear_core.store import Store


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "—"),
        (float("nan"), "—"),
        (-1, "—"),
        (0, "0 s"),
        (42.4, "42 s"),
        (185, "3 min 05 s"),
        (7800, "2 h 10 min"),
    ],
)
def test_format_duration(seconds, text):
    assert ui_state.format_duration(seconds) == text


def test_progress_text():
    assert ui_state.progress_text(3, 10, None, None) == "3 of 10 rows scored"
    assert (
        ui_state.progress_text(1200, 5000, 2.5, 1520)
        == "1,200 of 5,000 rows scored · 2.50 rows/s · about 25 min 20 s left"
    )


def test_run_bar_reads_a_starting_worker_as_starting():
    assert ui_state.run_bar("running", 0, 0, None, None) == (0.0, "Starting the worker and loading the model…")
    assert ui_state.run_bar("running", 2, 8, 1.0, 6.0) == (0.25, "2 of 8 rows scored · 1.00 rows/s · about 6 s left")
    assert ui_state.run_bar("done", 8, 8, None, None) == (1.0, "8 of 8 rows scored")


@pytest.mark.parametrize(
    ("page", "position", "rows", "pages", "delta", "expected"),
    [
        (1, 0, 50, 3, +1, (1, 1)),
        (1, 49, 50, 3, +1, (2, 0)),  # the end of a page opens the next one
        (3, 9, 10, 3, +1, (3, 9)),  # the end of the queue stops
        (2, 0, 50, 3, -1, (1, -1)),  # before the start: the previous page's last row
        (1, 0, 50, 3, -1, (1, 0)),
        (1, 0, 0, 1, +1, (1, 0)),
    ],
)
def test_step_through_a_paginated_queue(page, position, rows, pages, delta, expected):
    assert ui_state.step(page, position, rows, pages, delta) == expected


def test_n_pages_and_stays_in_queue():
    assert [ui_state.n_pages(n, 50) for n in (0, 1, 50, 51)] == [1, 1, 1, 2]
    assert ui_state.stays_in_queue("all", "accept") and ui_state.stays_in_queue("accept", "accept")
    assert not ui_state.stays_in_queue("undecided", "accept") and not ui_state.stays_in_queue("reject", "accept")


def test_shorten_and_format_score():
    assert ui_state.shorten("a\n  b", 10) == "a b"
    assert ui_state.shorten("x" * 20, 10) == "x" * 9 + "…"
    assert ui_state.shorten(None) == ""
    assert ui_state.format_score(None) == "—" and ui_state.format_score(float("nan")) == "—"
    assert ui_state.format_score(0.12345) == "0.123" and ui_state.format_score(7) == "7"


def test_save_upload_keeps_the_name_and_separates_contents(tmp_path):
    first = ui_state.save_upload(tmp_path, "../../etc/data set.json", b"[1]")
    again = ui_state.save_upload(tmp_path, "data set.json", b"[1]")
    other = ui_state.save_upload(tmp_path, "data set.json", b"[2]")
    assert first == again and first.name == "data set.json" and first.parent.parent == tmp_path
    assert other != first and other.read_bytes() == b"[2]" and first.read_bytes() == b"[1]"
    assert ui_state.save_upload(tmp_path, "a<b>.csv", b"x").name == "a_b_.csv"


def test_sample_files_lists_importable_files(tmp_path):
    (tmp_path / "a.jsonl").write_text("{}")
    (tmp_path / "b.txt").write_text("")
    (tmp_path / "c.parquet").write_bytes(b"")
    assert [p.name for p in ui_state.sample_files(tmp_path, tmp_path / "missing")] == ["a.jsonl", "c.parquet"]


def test_preview_and_problem_tables():
    frame = ui_state.preview_table(pd.DataFrame({"output": ["a", 7, None], "turns": [[1], {"k": "v"}, "x"]}))
    assert list(frame["output"]) == ["a", "7", ""] and list(frame["turns"]) == ["[1]", '{"k": "v"}', "x"]
    problems = [
        Problem("f.jsonl", 2, 5, "invalid JSON", "Fix the line."),
        Problem("f.json", 3, "output", "value is a number", "", unit="row"),
        Problem("f.csv", None, None, "the file has no rows"),
    ]
    table = ui_state.problems_table(problems)
    assert list(table["Where"]) == ["line 2", "row 3", "file"]
    assert list(table["Column"]) == ["character 5", "output", ""]


def test_export_file_name():
    assert ui_state.export_file_name("gsm8k small", "jsonl") == "gsm8k small.curated.jsonl"
    assert ui_state.export_file_name("a/b:c", "csv") == "a_b_c.curated.csv"


def test_changed_rows_explains_each_change():
    def row(i, kept, action, source, final="same", decision=None, annotator=None):
        return CuratedRow(i, {}, "same", final, action, source, kept, decision=decision, annotator=annotator)

    curated = [
        row(0, True, "keep", "auto"),
        row(1, False, "filter", "auto"),
        row(2, True, "correct", "human", final="new", decision="edit", annotator="ann"),
        row(3, False, "keep", "none"),  # left out by "only reviewed rows"
    ]
    table, total = ui_state.changed_rows(curated, limit=2)
    assert total == 3 and list(table["Row"]) == [1, 2]
    assert list(table["Why"]) == ["Automatic (filter)", "Edited"]
    assert list(table["New response"]) == ["", "new"] and list(table["Annotator"]) == ["", "ann"]
    assert ui_state.changed_rows(curated)[0]["Why"].iloc[-1] == "Not reviewed"


def test_bulk_accept_takes_undecided_rows_with_a_proposal_above_the_threshold(app_db):
    path, dataset_id, run_id = app_db

    def rows(min_correction: float) -> list[int]:
        return store.review_queue(ui_state.bulk_accept_query(run_id, 0.5, min_correction))[0]["row_index"].tolist()

    with Store(path) as store:
        assert rows(0.8) == [3]
        assert rows(0.5) == [3, 5]
        assert store.review_count(ui_state.bulk_accept_query(run_id, 0.5, 0.5)) == 2
        assert store.queue_total(ui_state.bulk_accept_query(run_id, 0.5, 0.5)) == 2  # Bulk accept's count
        store.record_decision(dataset_id, 5, "reject", run_id=run_id, actor=local_actor("ann"))
        assert rows(0.0) == [3]
        for threshold in (0.0, 0.5, 0.8, 0.95):  # after a decision too: the same count as in SQL
            query = ui_state.bulk_accept_query(run_id, 0.5, threshold)
            assert store.queue_total(query) == store.review_count(query) == len(rows(threshold))
        assert store.accept_proposals(ui_state.bulk_accept_query(run_id, 0.5, 0.0), actor=local_actor("ann")) == 1
        assert store.current_decisions(dataset_id).set_index("row_index").loc[3, "decision"] == "accept"
        assert rows(0.0) == []


def test_the_wording_of_query_wide_decisions():
    assert set(ui_state.GROUP_ACTIONS) == {"remove", "accept", "reject"}
    assert ui_state.group_wording("remove", 1) == "Remove 1 row"
    assert ui_state.group_wording("accept", 1234) == "Accept the proposals of 1,234 rows"
    assert ui_state.group_wording("reject", 2) == "Keep the original response of 2 rows"
    assert ui_state.group_dry_run("remove", 5, 5) == (
        "5 rows match the filters; 5 rows would be recorded as “Remove”, as one group that one undo reverts."
    )
    assert ui_state.group_dry_run("accept", 2, 12).startswith(
        "12 rows match the filters; 2 rows would be recorded as “Accept proposals” (10 rows without a proposal skipped)"
    )
    assert ui_state.undo_group_label({"n_rows": 1}) == "Undo last group (1 row)"
