"""Near-duplicates in the app (AppTest, real database): the Review expander lists a row's duplicates, the apply
button records the decision on each of them, and the Data page reports the count after import."""

from __future__ import annotations

import json

import pytest

from clear_core import workspace
from clear_core.store import Store
from tests.conftest import synthetic_scores

REVIEW = "app_pages/review.py"
DATA = "app_pages/data.py"


def with_duplicates(gsm8k_file):
    """The 12-row GSM8K file with rows 8 and 10 answering like row 3 (the refusal, first in the queue): row 8 a
    copy in capitals, row 10 with extra spaces; rows 0 and 7 ask the same question."""
    rows = json.loads(gsm8k_file.read_text(encoding="utf-8"))
    rows[8]["output"] = rows[3]["output"].upper()
    rows[10]["output"] = rows[3]["output"].replace(" ", "   ")
    rows[7]["instruction"] = rows[0]["instruction"]
    gsm8k_file.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return gsm8k_file


@pytest.fixture
def dup_db(tmp_path, gsm8k_file, monkeypatch):
    path = tmp_path / "dups.duckdb"
    monkeypatch.setenv("CLEAR_DB", str(path))
    monkeypatch.setenv("CLEAR_NO_DEMO", "1")
    with Store(path) as store:
        dataset_id = workspace.import_file(store, with_duplicates(gsm8k_file))
        run_id = store.create_run(dataset_id, "synthetic", {"samples": 0})
        scores = synthetic_scores(12)
        scores[10].update(proposed_response="A proposal of its own.", correction_confidence=0.7)
        store.add_scores(run_id, scores)
        store.set_run_status(run_id, "done")
    return path, dataset_id, run_id


def expander(at, start: str):
    return next(e for e in at.expander if e.label.startswith(start))


def test_review_lists_a_rows_duplicates_and_applies_a_decision_to_them(dup_db, app):
    path, dataset_id, _ = dup_db
    at = app(REVIEW)
    assert not at.exception and not at.error
    box = expander(at, "2 near-duplicate responses")
    table = box.dataframe[0].value
    assert list(table["Row"]) == [8, 10] and list(table["Similarity"]) == [1.0, 1.0]
    assert list(table["Confidence"].round(2)) == [0.7, 0.8] and list(table["Decision"]) == ["", ""]
    assert "I&#x27;M SORRY" not in table["Response"].iloc[0] and table["Response"].iloc[0].startswith("I'M SORRY")
    apply = next(b for b in box.button if b.label == "Apply this decision to its 2 duplicates")
    assert apply.disabled  # nothing chosen yet: the list comes first, then a decision

    box.radio[0].set_value("remove").run()
    next(b for b in at.button if b.label == "Apply this decision to its 2 duplicates").click().run()
    assert not at.exception and not at.error
    with Store(path) as store:
        log = store.decision_log(dataset_id)
    assert list(log["row_index"]) == [8, 10] and set(log["decision"]) == {"remove"}
    assert set(log["annotator"]) == {"alice"}
    assert list(expander(at, "2 near-duplicate responses").dataframe[0].value["Decision"]) == ["Removed"] * 2

    # accept carries only where the duplicate has a proposal of its own (row 10), never row 3's
    expander(at, "2 near-duplicate responses").radio[0].set_value("accept").run()
    assert any("1 of 2 have one" in c.value for c in at.caption)
    next(b for b in at.button if b.label == "Apply this decision to its 2 duplicates").click().run()
    with Store(path) as store:
        current = store.current_decisions(dataset_id).set_index("row_index")
    assert current.loc[10, "decision"] == "accept" and current.loc[10, "final_response"] == "A proposal of its own."
    assert current.loc[8, "decision"] == "remove" and 3 not in current.index


def test_same_question_is_listed_and_a_row_without_duplicates_shows_none(dup_db, app):
    at = app(REVIEW)
    next(b for b in at.button if b.label == "Next").click().run()  # row 5: no duplicates
    assert not [e for e in at.expander if "near-duplicate" in e.label or "same question" in e.label]
    at = app(REVIEW)
    at.session_state["review_row"] = 0
    at.run()
    box = expander(at, "1 other row ask")
    assert list(box.dataframe[0].value["Row"]) == [7]


def test_apply_needs_an_annotator_name(dup_db, app):
    at = app(REVIEW, annotator=None)
    box = expander(at, "2 near-duplicate responses")
    box.radio[0].set_value("reject").run()
    assert next(b for b in at.button if b.label.startswith("Apply this decision")).disabled


def test_data_page_reports_near_duplicates_after_import(tmp_path, gsm8k_file, monkeypatch, app):
    path = tmp_path / "empty.duckdb"
    monkeypatch.setenv("CLEAR_DB", str(path))
    monkeypatch.setenv("CLEAR_NO_DEMO", "1")
    source = with_duplicates(gsm8k_file)
    at = app(DATA)
    at.file_uploader[0].upload(source.name, source.read_bytes(), "application/json").run()
    next(b for b in at.button if b.label == "Import").click().run()
    assert not at.exception and not at.error
    assert any(
        "3 rows have near-duplicate responses (1 group); 2 rows have near-duplicate prompts (1 group)." in i.value
        for i in at.info
    )
