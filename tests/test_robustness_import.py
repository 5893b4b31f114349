"""Issue 7, import: no row breaks an import, no import changes data quietly, every refusal says where and why.

One parametrised test runs the generated corpus (tests/robustness/corpus.py); the others cover what a corpus
entry cannot: dropping duplicates, round-tripping the new layouts through export, datasets folders, the CLI.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clear_core import cli, data, export
from clear_core.data import DataError, describe_duplicates, load_dataset, validate
from clear_core.store import Store, StoreError
from tests.conftest import REPO
from tests.robustness.corpus import CASES, Imported, Refused, jsonl

DEV = REPO.parent / "shared" / "data" / "dev"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus(tmp_path, case):
    path = tmp_path / case.name
    path.write_bytes(case.content)
    expected = case.expected
    if isinstance(expected, Imported):
        ds = load_dataset(path)
        assert len(ds.rows) == expected.rows
        assert [r.row_index for r in ds.rows] == list(range(expected.rows))
        assert describe_duplicates(ds.duplicates) == expected.duplicates
        assert expected.notice in " ".join(ds.notices)
        if expected.responses is not None:
            assert tuple(r.response for r in ds.rows) == expected.responses
        if expected.prompts is not None:
            assert tuple(r.prompt for r in ds.rows) == expected.prompts
        assert validate(path) == []
        with Store(tmp_path / "c.duckdb") as store:  # what imports also stores, unchanged
            rows = store.dataset_rows(store.add_dataset(ds))
        assert list(rows["response"]) == [r.response for r in ds.rows]
        return
    assert isinstance(expected, Refused)
    with pytest.raises(DataError) as info:
        load_dataset(path)
    err = info.value
    assert str(err).startswith(f"{case.name}: {expected.where}" if expected.where else f"{case.name}: ")
    assert err.column == expected.column, str(err)
    assert expected.fragment in err.message and expected.hint in err.hint, str(err)
    assert str(validate(path)[0]) == str(err)  # the preview lists the same problem first


def test_unclosed_quote_does_not_merge_lines_and_multiline_cells_still_import(tmp_path):
    """The issue's example used to import as 2 rows, the second response holding 'unclosed\\nq3,a3\\n'."""
    path = tmp_path / "u.csv"
    path.write_bytes(b'prompt,response\nq1,a1\nq2,"unclosed\nq3,a3\n')
    with pytest.raises(DataError) as info:
        load_dataset(path)
    assert str(info.value).startswith(
        'u.csv: line 3, column "response": a quote opens a value here and is never closed'
    )
    path.write_bytes(b'prompt,response\nq1,a1\nq2,"closed\nover two lines"\nq3,a3\n')
    assert [r.response for r in load_dataset(path).rows] == ["a1", "closed\nover two lines", "a3"]


def test_drop_duplicates_keeps_the_first_and_renumbers(tmp_path):
    path = tmp_path / "d.jsonl"
    records = [{"prompt": f"p{i % 3}", "response": "r"} for i in range(7)]  # p0 p1 p2 p0 p1 p2 p0
    path.write_bytes(jsonl(*records))
    kept = load_dataset(path)
    assert len(kept.rows) == 7 and describe_duplicates(kept.duplicates) == "4 exact duplicate rows (lines 4, 5, 6, 7)"
    dropped = load_dataset(path, drop_duplicates=True)
    assert [r.prompt for r in dropped.rows] == ["p0", "p1", "p2"]
    assert [r.row_index for r in dropped.rows] == [0, 1, 2] and dropped.duplicates_dropped
    assert dropped.content_hash != kept.content_hash  # a different dataset from the whole file in the store
    with Store(tmp_path / "c.duckdb") as store:
        a, b = store.add_dataset(kept), store.add_dataset(dropped)
        assert a != b and store.get_dataset(b)["n_rows"] == 3


def test_duplicate_summary_lists_the_first_few_places():
    dupes = [data.Duplicate(n, 1, "row") for n in range(2, 10)]
    assert describe_duplicates(dupes) == "8 exact duplicate rows (rows 2, 3, 4, 5, 6 and 3 more)"
    assert describe_duplicates([]) == ""


def test_self_instruct_duplicates_regroup_after_dropping(tmp_path):
    task = {"instruction": "Sort.", "instances": [{"input": "b a", "output": "a b"}, {"input": "b a", "output": "a b"}]}
    path = tmp_path / "si.jsonl"
    path.write_bytes(jsonl(task, {"instruction": "Name one.", "instances": [{"input": "", "output": "x"}]}))
    ds = load_dataset(path, drop_duplicates=True)
    assert [r.row_index for r in ds.rows] == [0, 1]
    curated = export.curate(ds.rows, None, None, export.ExportPolicy(gamma=0.5, eta=0.7))
    records = export.to_records("self_instruct", "jsonl", curated)
    assert [len(r["instances"]) for r in records] == [1, 1]


def test_gpteacher_dev_file_is_recognised():
    ds = load_dataset(DEV / "gpteacher_codegen.json")
    records = json.loads((DEV / "gpteacher_codegen.json").read_text(encoding="utf-8"))
    assert ds.schema == "instruction_response" and len(ds.rows) == len(records)
    first = records[0]
    assert ds.rows[0].prompt == data.join_instruction(first["instruction"], first["input"])
    assert ds.rows[0].response == first["response"]


# -- export writes each new layout back in its own shape ---------------------------------------------------


def _edited_export(ds: data.Dataset, fmt: str, out: Path, new_response: str = "EDITED") -> list[dict]:
    """Curate with a human edit of row 0, write the file in ``fmt``, and return the records written."""
    import pandas as pd

    decisions = pd.DataFrame([{"row_index": 0, "decision": "edit", "final_response": new_response, "annotator": "t"}])
    curated = export.curate(ds.rows, None, decisions, export.ExportPolicy(gamma=0.5, eta=0.7))
    records = export.to_records(ds.schema, ds.file_format, curated, mapping=ds.mapping)
    export.write_records(records, out, fmt, input_format=ds.file_format)
    return records


LAYOUTS = {
    "instruction_response": [
        {"instruction": "Sum.", "input": "1 2", "response": "3"},
        {"instruction": "Hi", "input": "", "response": "Hello"},
    ],
    "dolly": [{"instruction": "Who?", "context": "Ada wrote it.", "response": "Ada", "category": "closed_qa"}],
    "question_answer": [{"question": "2+2?", "answer": "4"}, {"question": "3+3?", "answer": "6"}],
}


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet"])
@pytest.mark.parametrize("schema", LAYOUTS)
def test_new_layouts_round_trip_through_export(tmp_path, schema, fmt):
    from tests.test_data import write_input

    source = write_input(tmp_path / f"in.{fmt}", LAYOUTS[schema])
    ds = load_dataset(source)
    assert ds.schema == schema
    out = tmp_path / f"out.{fmt}"
    _edited_export(ds, "original", out)
    back = load_dataset(out)
    assert back.schema == schema and back.columns == ds.columns
    assert back.rows[0].response == "EDITED" and back.rows[0].prompt == ds.rows[0].prompt
    assert [r.record for r in back.rows[1:]] == [r.record for r in ds.rows[1:]]


def test_content_parts_response_is_written_back_as_a_text_part(tmp_path):
    record = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "2+2?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "5"}, {"type": "text", "text": "(maybe)"}]},
        ]
    }
    source = tmp_path / "parts.jsonl"
    source.write_bytes(jsonl(record))
    ds = load_dataset(source)
    assert ds.rows[0].response == "5\n(maybe)"
    records = _edited_export(ds, "original", tmp_path / "out.jsonl", "4")
    assert records[0]["messages"][1]["content"] == [{"type": "text", "text": "4"}]
    assert records[0]["messages"][0] == record["messages"][0]
    assert load_dataset(tmp_path / "out.jsonl").rows[0].response == "4"


def test_sharegpt_capitalised_speaker_keeps_its_name_on_export(tmp_path):
    record = {"conversations": [{"from": "Human", "value": "hi"}, {"from": "GPT", "value": "yo"}]}
    source = tmp_path / "sg.jsonl"
    source.write_bytes(jsonl(record))
    ds = load_dataset(source)
    assert ds.rows[0].prompt_messages == [{"role": "user", "content": "hi"}]
    records = _edited_export(ds, "original", tmp_path / "out.jsonl", "hello")
    assert records[0]["conversations"] == [{"from": "Human", "value": "hi"}, {"from": "GPT", "value": "hello"}]


# -- Hugging Face datasets folders -----------------------------------------------------------------------------


@pytest.fixture
def datasets_folder(tmp_path) -> Path:
    import datasets

    rows = [{"question": f"{i}+{i}?", "answer": str(2 * i)} for i in range(4)] + [{"question": "0+0?", "answer": "0"}]
    folder = tmp_path / "qa_ds"
    datasets.Dataset.from_list(rows).save_to_disk(str(folder))
    return folder


def test_datasets_folder_loads_and_exports_as_parquet(tmp_path, datasets_folder):
    ds = load_dataset(datasets_folder)
    assert (ds.schema, ds.file_format, ds.name, len(ds.rows)) == ("question_answer", "datasets", "qa_ds", 5)
    assert describe_duplicates(ds.duplicates) == "1 exact duplicate row (row 5)"
    assert any("export writes its curated set as Parquet" in n for n in ds.notices)
    assert ds.content_hash == load_dataset(datasets_folder).content_hash
    out = tmp_path / "curated.parquet"
    _edited_export(ds, "original", out)
    assert export.resolve_format("original", "datasets") == "parquet"
    assert pq.read_table(out).column_names == ["question", "answer"]
    back = load_dataset(out)
    assert back.schema == "question_answer" and back.rows[0].response == "EDITED" and len(back.rows) == 5


def test_datasets_dict_folder_and_plain_folder_are_refused_with_what_to_give(tmp_path, datasets_folder):
    import datasets

    splits = tmp_path / "splits"
    datasets.DatasetDict({"train": datasets.load_from_disk(str(datasets_folder))}).save_to_disk(str(splits))
    with pytest.raises(DataError) as info:
        load_dataset(splits)
    assert "several splits (train)" in str(info.value) and str(splits / "train") in info.value.hint
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(DataError, match="not a Hugging Face datasets folder"):
        load_dataset(plain)


# -- the command line ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "fragments"),
    [
        ("s.jsonl", b'{"prompt": "p", "response": "x\\ud800"}\n', ['s.jsonl: line 1, column "response"', "\\ud800"]),
        ("deep.json", b"[" + b"[" * 5000 + b"]" * 5000 + b"]", ["deep.json: line 1, column 102", "nests more than"]),
    ],
)
def test_cli_refuses_hidden_causes_in_one_line_and_creates_no_database(tmp_path, name, content, fragments, cli_here):
    path = tmp_path / name
    path.write_bytes(content)
    db = tmp_path / "c.duckdb"
    result = cli_here("score", str(path), "--db", str(db))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert all(f in result.stderr for f in fragments), result.stderr
    assert not list(tmp_path.glob("c.duckdb*"))


def test_cli_removes_the_database_it_created_when_storing_fails(tmp_path, monkeypatch):
    path = tmp_path / "d.jsonl"
    path.write_bytes(jsonl({"prompt": "p", "response": "r"}))
    db = tmp_path / "new.duckdb"

    def refuse(self, dataset):
        raise StoreError("disk full")

    monkeypatch.setattr(Store, "add_dataset", refuse)
    result = CliRunner().invoke(cli.main, ["score", str(path), "--db", str(db)])
    assert result.exit_code == 1 and "disk full" in result.output
    assert not list(tmp_path.glob("new.duckdb*"))
    existing = tmp_path / "old.duckdb"
    Store(existing).close()
    CliRunner().invoke(cli.main, ["score", str(path), "--db", str(existing)])
    assert existing.exists()  # a database that was there before is left alone


def test_cli_import_summary_counts_duplicates(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("prompt,response\nq1,a1\nq2,a2\nq1,a1\nq1,a1\n", encoding="utf-8")
    assert cli._import_summary(load_dataset(path)) == (
        "Read 4 rows of d.csv (prompt_response, csv). Kept 2 exact duplicate rows (lines 4, 5); "
        "--drop-duplicates drops them."
    )
    assert cli._import_summary(load_dataset(path, drop_duplicates=True)) == (
        "Read 2 rows of d.csv (prompt_response, csv). Dropped 2 exact duplicate rows (lines 4, 5)."
    )


def test_cli_scores_a_datasets_folder_without_its_duplicates(tmp_path, datasets_folder, tiny_model_path, cli_here):
    db = tmp_path / "c.duckdb"
    common = ["--model", str(tiny_model_path), "--limit", "1", "--samples", "0", "--no-propose"]
    result = cli_here("score", str(datasets_folder), "--db", str(db), "--drop-duplicates", *common)
    assert result.returncode == 0, result.stderr
    assert "Read 4 rows of qa_ds (question_answer, datasets). Dropped 1 exact duplicate row (row 5)." in result.stdout
    assert "as Parquet unless you choose JSONL, JSON or CSV" in result.stdout
    with Store(db) as store:
        assert list(store.list_datasets()["n_rows"]) == [4]


# -- property: whatever text a well-formed file holds comes back unchanged -----------------------------------

_texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(_texts.filter(str.strip), _texts), min_size=1, max_size=6))
def test_written_text_imports_unchanged(tmp_path, rows):
    """Quotes, commas, every kind of line break, NUL and U+2028 survive CSV (as the csv module writes it) and
    JSON Lines: the strict CSV reading refuses broken quoting only, never a well-formed file."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["prompt", "response"])
    writer.writerows(rows)
    (tmp_path / "p.csv").write_text(buffer.getvalue(), encoding="utf-8", newline="")
    (tmp_path / "p.jsonl").write_bytes(jsonl(*[{"prompt": p, "response": r} for p, r in rows]))
    for name in ("p.csv", "p.jsonl"):
        ds = load_dataset(tmp_path / name)
        assert [(r.prompt, r.response) for r in ds.rows] == rows
