"""The Data page in AppTest: upload, preview, validation problems with line numbers, column mapping, import."""

from __future__ import annotations

import json

import pytest

from clear_core import workspace
from clear_core.store import Store

DATA = "app_pages/data.py"


@pytest.fixture
def empty_db(tmp_path, monkeypatch):
    path = tmp_path / "empty.duckdb"
    monkeypatch.setenv("CLEAR_DB", str(path))
    monkeypatch.setenv("CLEAR_NO_DEMO", "1")
    return path


def datasets(path):
    with Store(path) as store:
        return store.list_datasets()


def test_upload_preview_and_import(empty_db, gsm8k_file, app):
    at = app(DATA)
    assert any("No dataset yet" in c.value for c in at.sidebar.caption)
    at.file_uploader[0].upload(gsm8k_file.name, gsm8k_file.read_bytes(), "application/json").run()
    assert not at.exception and not at.error
    preview = at.dataframe[0].value
    assert list(preview.columns) == ["instruction", "input", "output"] and len(preview) == 12
    assert any("alpaca" in c.value for c in at.caption)
    assert any("Every row checks out" in s.value for s in at.success)
    at.text_input(key=next(k for k in at.session_state if k.startswith("name_"))).input("gsm8k twelve").run()
    next(b for b in at.button if b.label == "Import").click().run()
    assert any("Imported “gsm8k twelve”: 12 rows" in s.value for s in at.success)
    table = datasets(empty_db)
    assert list(table["name"]) == ["gsm8k twelve"] and int(table["n_rows"].iloc[0]) == 12
    assert at.sidebar.selectbox(key="dataset_id").value == int(table["dataset_id"].iloc[0])
    uploaded = list((empty_db.parent / "uploads").glob("*/gsm8k_small.json"))
    assert len(uploaded) == 1 and uploaded[0].read_bytes() == gsm8k_file.read_bytes()


def test_problems_are_listed_with_line_numbers_before_import(empty_db, app):
    lines = [
        json.dumps({"instruction": "Add 2 and 2.", "input": "", "output": "4"}),
        "{not json",
        json.dumps({"instruction": "Name a colour.", "input": "", "output": 7}),
        json.dumps({"instruction": "Say hi.", "input": "", "output": "Hi!"}),
    ]
    at = app(DATA)
    at.file_uploader[0].upload("broken.jsonl", ("\n".join(lines) + "\n").encode(), "application/jsonl").run()
    assert any("2 problems found" in e.value for e in at.error)
    problems = at.dataframe[1].value
    assert list(problems["Where"]) == ["line 2", "line 3"]
    assert list(problems["Column"]) == ["character 2", "output"]
    assert next(b for b in at.button if b.label == "Import").disabled
    assert datasets(empty_db).empty


def test_unknown_columns_are_mapped_before_import(empty_db, tmp_path, app):
    source = tmp_path / "qa.csv"
    source.write_text("id,question,context,answer\n1,What is 2+2?,maths,4\n2,Capital of France?,geo,Paris\n", "utf-8")
    at = app(DATA)
    at.file_uploader[0].upload("qa.csv", source.read_bytes(), "text/csv").run()
    assert any("match no known format" in w.value for w in at.warning)
    assert at.selectbox(key="map_prompt").value == "question"
    assert at.selectbox(key="map_response").value == "answer"
    at.selectbox(key="map_input").select("context").run()
    next(b for b in at.button if b.label == "Import").click().run()
    assert not at.error
    with Store(empty_db) as store:
        dataset = store.get_dataset(int(store.list_datasets()["dataset_id"].iloc[0]))
        rows = store.dataset_rows(dataset["dataset_id"])
    assert dataset["schema"] == "mapped" and dataset["mapping"]["input"] == "context"
    assert rows["prompt"].iloc[0] == "What is 2+2?\n\nmaths" and rows["response"].iloc[1] == "Paris"


def test_same_column_for_prompt_and_response_is_refused(empty_db, tmp_path, app):
    at = app(DATA)
    at.file_uploader[0].upload("qa.csv", b"question,answer\nWhat?,This.\n", "text/csv").run()
    at.selectbox(key="map_response").select("question").run()
    assert any("must be different columns" in e.value for e in at.error)
    assert not [b for b in at.button if b.label == "Import"]


def test_bundled_demo_sample_imports(empty_db, app):
    at = app(DATA)
    at.segmented_control(key="data_source").set_value("Use a sample").run()
    sample = at.selectbox[-1]
    sample.select(workspace.DEMO_DATASET).run()
    next(b for b in at.button if b.label == "Import").click().run()
    table = datasets(empty_db)
    assert list(table["name"]) == ["demo"] and int(table["n_rows"].iloc[0]) == 52
