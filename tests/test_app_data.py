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
    assert any("Imported 12 rows." in s.value for s in at.success)
    table = datasets(empty_db)
    assert list(table["name"]) == ["gsm8k twelve"] and int(table["n_rows"].iloc[0]) == 12
    assert at.sidebar.selectbox(key="dataset_id").value == int(table["dataset_id"].iloc[0])
    assert not list((empty_db.parent / "uploads").rglob("*")), "the uploaded copy is deleted once imported"
    assert not at.file_uploader[0].value  # the widget is emptied, so the next run does not save the copy again
    assert any("kept only until it is imported" in (u.help or "") for u in at.file_uploader)


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
    source.write_text("id,query,context,answer\n1,What is 2+2?,maths,4\n2,Capital of France?,geo,Paris\n", "utf-8")
    at = app(DATA)
    at.file_uploader[0].upload("qa.csv", source.read_bytes(), "text/csv").run()
    assert any("match no known format" in w.value for w in at.warning)
    assert at.selectbox(key="map_prompt").value == "query"
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
    at.file_uploader[0].upload("qa.csv", b"query,reply\nWhat?,This.\n", "text/csv").run()
    at.selectbox(key="map_response").select("query").run()
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


def test_exact_duplicates_are_reported_and_can_be_dropped(empty_db, app):
    lines = [{"prompt": "p1", "response": "r1"}, {"prompt": "p2", "response": "r2"}] * 2 + [
        {"prompt": "p3", "response": "r3"}
    ]
    content = "".join(json.dumps(r) + "\n" for r in lines).encode()
    at = app(DATA)
    at.file_uploader[0].upload("dupes.jsonl", content, "application/jsonl").run()
    assert any("2 exact duplicate rows (lines 3, 4)" in w.value for w in at.warning)
    at.checkbox[0].check().run()
    next(b for b in at.button if b.label == "Import").click().run()
    assert any("Dropped 2 exact duplicate rows (lines 3, 4)" in i.value for i in at.info)
    with Store(empty_db) as store:
        dataset_id = int(store.list_datasets()["dataset_id"].iloc[0])
        rows = store.dataset_rows(dataset_id)
    assert list(rows["row_index"]) == [0, 1, 2] and list(rows["prompt"]) == ["p1", "p2", "p3"]


def test_duplicates_are_kept_unless_dropped(empty_db, app):
    content = (json.dumps({"prompt": "p", "response": "r"}) + "\n") * 3
    at = app(DATA)
    at.file_uploader[0].upload("same.jsonl", content.encode(), "application/jsonl").run()
    next(b for b in at.button if b.label == "Import").click().run()
    assert any("Kept 2 exact duplicate rows (lines 2, 3)" in i.value for i in at.info)
    assert int(datasets(empty_db)["n_rows"].iloc[0]) == 3


@pytest.mark.parametrize(
    ("name", "content", "where"),
    [
        ("wide.jsonl", '{"prompt": "a", "response": "b"}'.encode("utf-16"), "line 1"),
        ("empty.csv", b"prompt,response\n", "file"),
        ("deep.json", b"[" * 3000 + b"]" * 3000, "line 1"),
    ],
)
def test_a_file_that_cannot_be_previewed_says_why(empty_db, app, name, content, where):
    at = app(DATA)
    at.file_uploader[0].upload(name, content, "application/octet-stream").run()
    assert not at.exception
    assert any("cannot be imported" in e.value for e in at.error)
    assert list(at.dataframe[0].value["Where"]) == [where]
    assert not [b for b in at.button if b.label == "Import"]


def test_unclosed_quote_is_listed_where_it_opens(empty_db, app):
    at = app(DATA)
    at.file_uploader[0].upload("q.csv", b'prompt,response\nq1,a1\nq2,"unclosed\nq3,a3\n', "text/csv").run()
    problems = at.dataframe[1].value
    assert list(problems["Where"]) == ["line 3"] and list(problems["Column"]) == ["response"]
    assert "never closed" in problems["Problem"].iloc[0]
    assert next(b for b in at.button if b.label == "Import").disabled


def test_values_read_in_another_form_are_listed(empty_db, app):
    content = b'{"prompt": "p", "response": "r", "score": NaN}\n'
    at = app(DATA)
    at.file_uploader[0].upload("nan.jsonl", content, "application/jsonl").run()
    notices = at.dataframe[1].value
    assert list(notices.columns) == ["Read in another form"]
    assert "1 NaN or Infinity value (the first on line 1)" in notices.iloc[0, 0]
