"""Import and validation: every schema in every format, and every error names file, line (or row) and column."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clear_core.data import (
    MAX_PROBLEMS,
    ColumnMapping,
    DataError,
    detect_format,
    detect_schema,
    load_dataset,
    preview_records,
    read_records,
    render_prompt,
    validate,
)

DEV = Path("/work/shared/data/dev")
FORMATS = ("jsonl", "json", "csv", "parquet")


def write_input(path: Path, records: list[dict]) -> Path:
    """Write records the way other tools would (stdlib json/csv, pyarrow); CSV cells hold nested values as JSON."""
    fmt = path.suffix.lstrip(".")
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    elif fmt == "json":
        path.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    elif fmt == "csv":
        columns = list(dict.fromkeys(k for r in records for k in r))
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            for r in records:
                writer.writerow({k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in r.items()})
    else:
        pq.write_table(pa.Table.from_pylist(records), path)
    return path


def user(text: str) -> dict:
    return {"role": "user", "content": text}


# Each case: input records, then the expected (prompt_messages, response) of every row after flattening.
CASES = {
    "alpaca": (
        [
            {"instruction": "Add 2 and 3.", "input": "", "output": "5"},
            {"instruction": "Translate to French.", "input": "the cat", "output": "le chat"},
        ],
        [([user("Add 2 and 3.")], "5"), ([user("Translate to French.\n\nthe cat")], "le chat")],
    ),
    "prompt_response": (
        [{"prompt": "Capital of France?", "response": "Paris", "source": "geo"}],
        [([user("Capital of France?")], "Paris")],
    ),
    "prompt_completion": (
        [{"prompt": "Once upon a time", "completion": " there was a fox."}],
        [([user("Once upon a time")], " there was a fox.")],
    ),
    "messages": (
        [
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello"},
                    {"role": "user", "content": "2+2?"},
                    {"role": "assistant", "content": "4"},
                ]
            }
        ],
        [
            (
                [
                    {"role": "system", "content": "Be brief."},
                    user("Hi"),
                    {"role": "assistant", "content": "Hello"},
                    user("2+2?"),
                ],
                "4",
            )
        ],
    ),
    "sharegpt": (
        [
            {
                "id": "c1",
                "conversations": [
                    {"from": "system", "value": "You are kind."},
                    {"from": "human", "value": "Thanks!"},
                    {"from": "gpt", "value": "You're welcome."},
                ],
            }
        ],
        [([{"role": "system", "content": "You are kind."}, user("Thanks!")], "You're welcome.")],
    ),
    "self_instruct": (
        [
            {
                "id": "t0",
                "instruction": "Sort the words.",
                "instances": [{"input": "b a", "output": "a b"}, {"input": "d c", "output": "c d"}],
            },
            {"id": "t1", "instruction": "Name a colour.", "instances": [{"input": "", "output": "red"}]},
        ],
        [
            ([user("Sort the words.\n\nb a")], "a b"),
            ([user("Sort the words.\n\nd c")], "c d"),
            ([user("Name a colour.")], "red"),
        ],
    ),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("schema", CASES)
def test_every_schema_loads_in_every_format(tmp_path, schema, fmt):
    records, expected = CASES[schema]
    path = write_input(tmp_path / f"data.{fmt}", records)
    ds = load_dataset(path)
    assert (ds.schema, ds.file_format, ds.name) == (schema, fmt, "data")
    assert [(r.prompt_messages, r.response) for r in ds.rows] == expected
    assert [r.row_index for r in ds.rows] == list(range(len(expected)))
    assert ds.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ds.columns == list(dict.fromkeys(k for r in records for k in r))
    for row in ds.rows:
        json.dumps(row.record)  # the store keeps records as JSON


def test_chat_prompt_display_prefixes_earlier_turns():
    turns = CASES["messages"][1][0][0]
    assert render_prompt(turns) == "system: Be brief.\n\nuser: Hi\n\nassistant: Hello\n\n2+2?"
    assert render_prompt([user("only")]) == "only"


def test_alpaca_prompt_is_instruction_then_input(tmp_path):
    ds = load_dataset(write_input(tmp_path / "a.jsonl", CASES["alpaca"][0]))
    assert ds.rows[1].prompt == "Translate to French.\n\nthe cat"
    assert ds.rows[0].record == CASES["alpaca"][0][0]


def test_self_instruct_rows_keep_what_export_needs_to_regroup(tmp_path):
    records = CASES["self_instruct"][0]
    ds = load_dataset(write_input(tmp_path / "s.jsonl", records))
    positions = [(r.record["_source_index"], r.record["_instance_index"]) for r in ds.rows]
    assert positions == [(0, 0), (0, 1), (1, 0)]
    assert ds.rows[1].record["instances"] == [records[0]["instances"][1]]
    assert ds.rows[1].record["id"] == "t0"


def test_real_self_instruct_file_flattens_every_instance():
    path = DEV / "self_instruct_seed_tasks.jsonl"
    tasks = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    ds = load_dataset(path)
    assert ds.schema == "self_instruct"
    assert len(tasks) == 175
    assert len(ds.rows) == sum(len(t["instances"]) for t in tasks)
    first_rows = {r.record["_source_index"]: r for r in reversed(ds.rows)}
    assert len(first_rows) == len(tasks)
    for index, task in enumerate(tasks):
        assert first_rows[index].prompt.startswith(task["instruction"])
        assert first_rows[index].response == task["instances"][0]["output"]


def test_real_gsm8k_file_loads_as_alpaca():
    path = DEV / "gsm8k_train.json"
    rows = json.loads(path.read_text(encoding="utf-8"))
    ds = load_dataset(path)
    assert (ds.schema, ds.file_format, len(ds.rows)) == ("alpaca", "json", len(rows))
    assert ds.rows[-1].response == rows[-1]["output"]
    assert ds.rows[-1].prompt == rows[-1]["instruction"]


def test_mapping_joins_prompt_columns_input_and_system(tmp_path):
    records = [{"title": "Fractions", "question": "What is 1/2 + 1/4?", "ctx": "Exact.", "sys": "Tutor", "ans": "3/4"}]
    path = write_input(tmp_path / "m.csv", records)
    mapping = ColumnMapping(prompt=["title", "question"], response="ans", input="ctx", system="sys")
    ds = load_dataset(path, mapping=mapping)
    assert ds.schema == "mapped" and ds.mapping == mapping
    assert ds.rows[0].prompt_messages == [
        {"role": "system", "content": "Tutor"},
        user("Fractions\n\nWhat is 1/2 + 1/4?\n\nExact."),
    ]
    assert ds.rows[0].response == "3/4"


def test_mapping_overrides_recognised_schema(tmp_path):
    path = write_input(tmp_path / "a.jsonl", [{"instruction": "i", "input": "", "output": "o", "alt": "x"}])
    ds = load_dataset(path, mapping=ColumnMapping(prompt="instruction", response="alt"))
    assert ds.schema == "mapped" and ds.rows[0].response == "x"


def test_empty_response_is_allowed_for_review(tmp_path):
    path = write_input(tmp_path / "d.csv", [{"prompt": "Say something", "response": ""}])
    assert load_dataset(path).rows[0].response == ""


def test_csv_with_commas_quotes_newlines_and_crlf(tmp_path):
    path = tmp_path / "q.csv"
    path.write_bytes(
        b'prompt,response\r\n"Say ""hi"", twice","hi,\r\nhi"\r\n"Two\nlines",ok\r\n\r\nlast,"quoted ""end"""\r\n'
    )
    ds = load_dataset(path)
    assert [(r.prompt, r.response) for r in ds.rows] == [
        ('Say "hi", twice', "hi,\r\nhi"),
        ("Two\nlines", "ok"),
        ("last", 'quoted "end"'),
    ]


def test_unicode_and_byte_order_marks(tmp_path):
    text = "Übersetze: 猫 🐈 — مرحبا\u2028next"
    jsonl = tmp_path / "u.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + json.dumps({"prompt": text, "response": "ok ✓"}, ensure_ascii=False).encode())
    csv_path = tmp_path / "u.csv"
    csv_path.write_bytes("\ufeffprompt,response\n".encode() + f'"{text}",ok ✓\n'.encode())
    for path in (jsonl, csv_path):
        ds = load_dataset(path)
        assert (ds.rows[0].prompt, ds.rows[0].response) == (text, "ok ✓")
        assert ds.columns == ["prompt", "response"]


def test_parquet_values_become_json_values(tmp_path):
    table = pa.table(
        {
            "prompt": ["p1", "p2"],
            "response": ["r1", "r2"],
            "score": [1.5, float("nan")],
            "when": pa.array([0, 86_400_000_000], type=pa.timestamp("us")),
        }
    )
    pq.write_table(table, tmp_path / "v.parquet")
    ds = load_dataset(tmp_path / "v.parquet")
    assert ds.rows[1].record["score"] is None
    assert ds.rows[1].record["when"].startswith("1970-01-02")
    json.dumps([r.record for r in ds.rows], allow_nan=False)


def test_detect_format_and_schema():
    assert [detect_format(f"x.{e}") for e in ("csv", "JSONL", "ndjson", "json", "parquet", "pq")] == [
        "csv",
        "jsonl",
        "jsonl",
        "json",
        "parquet",
        "parquet",
    ]
    assert detect_schema(["instruction", "output"]) == "alpaca"
    assert detect_schema([{"prompt": "a"}, {"completion": "b"}]) == "prompt_completion"
    assert detect_schema(["question", "answer"]) == "question_answer"
    assert detect_schema(["instruction", "input", "response"]) == "instruction_response"
    assert detect_schema(["instruction", "context", "response", "category"]) == "dolly"
    assert detect_schema(["query", "reply"]) is None


def test_preview_and_read_records(tmp_path):
    records = [{"prompt": f"p{i}", "response": f"r{i}", "n": i} for i in range(30)]
    path = write_input(tmp_path / "p.jsonl", records)
    frame = preview_records(path, n=5)
    assert list(frame.columns) == ["prompt", "response", "n"]
    assert frame["prompt"].tolist() == [f"p{i}" for i in range(5)]
    assert read_records(path) == records


# -- errors -------------------------------------------------------------------------------------------------


def load_error(path: Path, mapping: ColumnMapping | None = None) -> DataError:
    """The DataError load_dataset raises; it must also be the first problem validate lists."""
    with pytest.raises(DataError) as info:
        load_dataset(path, mapping=mapping)
    problems = validate(path, mapping=mapping)
    assert problems and str(problems[0]) == str(info.value)
    return info.value


def test_non_text_response_message_reads_as_one_line(tmp_path):
    path = tmp_path / "data.jsonl"
    lines = [{"prompt": "a", "response": "b"}, {"prompt": "c", "response": "d"}, {"prompt": "e", "response": 5}]
    write_input(path, lines)
    err = load_error(path)
    assert str(err) == (
        'data.jsonl: line 3, column "response": value is a number, expected text. Fix the value or map another column.'
    )
    assert (err.line, err.column, err.path) == (3, "response", str(path))


def test_invalid_json_line_names_line_and_character(tmp_path):
    bad = '{"prompt": "a" "response": "b"}'
    path = tmp_path / "broken.jsonl"
    path.write_text('{"prompt": "x", "response": "y"}\n\n' + bad + "\n")
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(bad)
    err = load_error(path)
    assert (err.line, err.column) == (3, expected.value.colno)
    assert str(err).startswith(f"broken.jsonl: line 3, column {expected.value.colno}: invalid JSON")


def test_json_array_syntax_error_uses_file_line(tmp_path):
    path = tmp_path / "arr.json"
    path.write_text('[\n  {"prompt": "a", "response": "b"},\n  {"prompt": "c", "response": "d",}\n]\n')
    err = load_error(path)
    assert err.line == 3 and isinstance(err.column, int)
    assert str(err).startswith(f"arr.json: line 3, column {err.column}: invalid JSON")


def test_json_lines_saved_as_json_gets_a_rename_hint(tmp_path):
    path = write_input(tmp_path / "rows.jsonl", CASES["prompt_response"][0] * 2).rename(tmp_path / "rows.json")
    err = load_error(path)
    assert "rows.json: line 2" in str(err) and ".jsonl" in err.hint


@pytest.mark.parametrize(
    ("name", "content", "location"),
    [
        ("top.json", '{"prompt": "a", "response": "b"}', "line 1"),
        ("items.json", '[{"prompt": "a", "response": "b"}, ["not", "an", "object"]]', "row 2"),
        ("list.jsonl", '{"prompt": "a", "response": "b"}\n[1, 2]\n', "line 2"),
    ],
)
def test_rows_that_are_not_objects(tmp_path, name, content, location):
    path = tmp_path / name
    path.write_text(content)
    err = load_error(path)
    assert str(err).startswith(f"{name}: {location}: ")
    assert "object" in err.message


def test_csv_row_with_wrong_value_count_is_located_after_multiline_values(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('prompt,response\n"multi\nline",ok\nfine,also\ntoo,many,values\n', newline="")
    err = load_error(path)
    assert err.line == 5
    assert str(err).startswith("c.csv: line 5: the row has 3 values but the header has 2 columns")


def test_csv_problem_in_a_multiline_row_names_the_line_it_starts_on(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text('prompt,response\nok,fine\n"  ","two\nlines"\n', newline="")
    assert str(load_error(path)).startswith('m.csv: line 3, column "prompt": the prompt is empty.')


def test_csv_empty_prompt(tmp_path):
    path = write_input(tmp_path / "e.csv", [{"prompt": "ok", "response": "a"}, {"prompt": "  ", "response": "b"}])
    err = load_error(path)
    assert str(err).startswith('e.csv: line 3, column "prompt": the prompt is empty.')


def test_not_utf8_names_line_and_offset(tmp_path):
    path = tmp_path / "latin.csv"
    data = b"prompt,response\na,b\n" + "café,x\n".encode("latin-1")
    path.write_bytes(data)
    err = load_error(path)
    assert err.line == 3
    offset = data.index("é".encode("latin-1"))
    assert f"offset {offset}" in str(err) and "latin.csv: line 3" in str(err)
    assert "UTF-8" in err.hint


def test_utf16_file(tmp_path):
    path = tmp_path / "wide.jsonl"
    path.write_bytes('{"prompt": "a", "response": "b"}'.encode("utf-16"))
    assert "UTF-16" in str(load_error(path))


@pytest.mark.parametrize(("name", "content"), [("e.jsonl", ""), ("e.json", "[]"), ("e.csv", ""), ("h.csv", "a,b\n")])
def test_empty_files(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    assert str(load_error(path)) == f"{name}: the file has no rows. Add at least one row and import it again."


def test_unrecognised_columns_list_what_exists_and_suggest_a_mapping(tmp_path):
    path = write_input(tmp_path / "qa.csv", [{"id": "1", "Question": "2+2?", "Answer": "4"}])
    err = load_error(path)
    assert str(err).startswith(
        "qa.csv: line 1: the columns do not match a known format (columns: id, Question, Answer)"
    )
    assert 'map them (for example prompt "Question", response "Answer")' in err.hint
    mapped = load_dataset(path, mapping=ColumnMapping(prompt="Question", response="Answer"))
    assert mapped.rows[0].response == "4"


def test_mapped_column_that_does_not_exist(tmp_path):
    path = write_input(tmp_path / "qa.jsonl", [{"q": "2+2?", "a": "4"}])
    err = load_error(path, ColumnMapping(prompt="q", response="answer"))
    assert str(err).startswith(
        'qa.jsonl: line 1, column "answer": the mapped column is not in the file (columns: q, a)'
    )


@pytest.mark.parametrize(
    ("second_row", "column", "message"),
    [
        ({"instruction": "i"}, "output", "value is missing"),
        ({"instruction": "i", "output": None}, "output", "value is empty (null)"),
        ({"instruction": "i", "output": ["x"]}, "output", "value is a list, expected text"),
        ({"instruction": None, "output": "o"}, "instruction", "value is empty (null)"),
        ({"instruction": "i", "input": 3, "output": "o"}, "input", "value is a number, expected text"),
    ],
)
def test_alpaca_row_problems(tmp_path, second_row, column, message):
    path = write_input(tmp_path / "a.jsonl", [{"instruction": "x", "input": "", "output": "y"}, second_row])
    err = load_error(path)
    assert str(err).startswith(f'a.jsonl: line 2, column "{column}": {message}.')


@pytest.mark.parametrize(
    ("messages", "column", "message"),
    [
        ([{"role": "user", "content": "hi"}], "messages", "the conversation has no assistant turn"),
        ([{"role": "assistant", "content": "hi"}], "messages", "the conversation has no prompt"),
        ([{"role": "user", "content": "hi"}, {"content": "x"}], "messages[1].role", "value is missing"),
        ([{"role": "user", "content": "hi"}, "hello"], "messages[1]", "the turn is text, expected an object"),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": None}], "messages[1].content", "the"),
        (7, "messages", "value is a number, expected a list"),
        ([], "messages", "the list is empty"),
    ],
)
def test_messages_problems(tmp_path, messages, column, message):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    path = write_input(tmp_path / "chat.json", [good, {"messages": messages}])
    err = load_error(path)
    assert str(err).startswith(f'chat.json: row 2, column "{column}": {message}')


def test_sharegpt_without_gpt_turn(tmp_path):
    path = write_input(tmp_path / "sg.jsonl", [{"conversations": [{"from": "human", "value": "hi"}]}])
    assert str(load_error(path)).startswith(
        'sg.jsonl: line 1, column "conversations": the conversation has no assistant'
    )


def test_self_instruct_instance_problems(tmp_path):
    tasks = [
        {"instruction": "a", "instances": [{"input": "", "output": "x"}]},
        {"instruction": "b", "instances": [{"input": "", "output": "y"}, {"input": "", "output": 2}]},
        {"instruction": "c", "instances": []},
    ]
    path = write_input(tmp_path / "si.jsonl", tasks)
    err = load_error(path)
    assert str(err).startswith('si.jsonl: line 2, column "instances[1].output": value is a number, expected text.')
    assert [(p.line, p.column) for p in validate(path)] == [(2, "instances[1].output"), (3, "instances")]


def test_parquet_null_response_uses_row_numbers(tmp_path):
    path = write_input(tmp_path / "n.parquet", [{"prompt": "a", "response": "b"}, {"prompt": "c", "response": None}])
    err = load_error(path)
    assert str(err).startswith('n.parquet: row 2, column "response": value is empty (null).')
    assert err.unit == "row"


@pytest.mark.parametrize(("name", "content"), [("x.txt", b"hello"), ("bad.parquet", b"not parquet at all")])
def test_unreadable_files(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    err = load_error(path)
    assert str(err).startswith(f"{name}: ")
    if name == "x.txt":
        assert ".csv" in err.hint and ".parquet" in err.hint


def test_missing_file(tmp_path):
    assert str(load_error(tmp_path / "gone.csv")).startswith("gone.csv: cannot read the file")


def test_load_raises_the_first_problem_and_validate_lists_all(tmp_path):
    lines = ['{"prompt": "ok", "response": "fine"}', '{"prompt": "", "response": "x"}', "{oops", '{"prompt": "p"}']
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert load_error(path).line == 2
    assert [(p.line, p.column) for p in validate(path)] == [(2, "prompt"), (3, 2), (4, "response")]


def test_validate_stops_at_the_cap(tmp_path):
    path = write_input(tmp_path / "cap.jsonl", [{"prompt": "p", "response": i} for i in range(MAX_PROBLEMS + 50)])
    problems = validate(path)
    assert len(problems) == MAX_PROBLEMS
    assert [p.line for p in problems] == list(range(1, MAX_PROBLEMS + 1))


def test_clean_file_has_no_problems(tmp_path):
    assert validate(write_input(tmp_path / "ok.parquet", CASES["messages"][0])) == []
