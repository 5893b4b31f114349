"""Import's fast path: a plain JSON Lines file in a flat schema is checked and read by DuckDB (``data._plain_jsonl``,
``store.jsonl_check``, ``Store.add_dataset`` with ``Dataset.jsonl_rows``). It must store exactly what the Python
reader stores, report the same duplicates, and leave every file it does not vouch for to the Python reader, whose
message names the file, line and column of the first problem."""

from __future__ import annotations

import json
import os

import pytest

from clear_core import data, workspace
from clear_core.data import DataError
from clear_core.store import Store, StoreError

# Text that JSON writers escape in different ways: quotes, backslashes, control characters, a line separator,
# accents and an emoji (escaped as a surrogate pair by ensure_ascii writers), and blanks that str.strip() removes.
HOSTILE = [
    'say "hi" \\ back',
    "tab\there\nnew line\r\n",
    "control \x01\x08 and DEL \x7f",
    "line\u2028separator \u00e9t\u00e9 \U0001f600",
    "\u00a0non-breaking prompt\u3000",
]


def _rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        text = HOSTILE[i % len(HOSTILE)]
        row = {"instruction": f"{text} #{i}", "input": "" if i % 3 else f"ctx {text}", "output": f"{text} -> {i}"}
        if i % 4 == 1:
            row["input"] = None
        if i % 7 == 2:
            del row["input"]
        if i % 5 == 3:
            row["meta"] = {"id": i, "tags": ["a", text], "score": 0.5, "ok": True}
        rows.append(row)
    return rows


def _write(path, rows: list, *, ensure_ascii: bool = False, sep: str = "\n", prefix: str = "") -> str:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=ensure_ascii) for r in rows]
    path.write_text(prefix + sep.join(lines) + sep, encoding="utf-8", newline="")
    return str(path)


def _python_reader(monkeypatch) -> None:
    monkeypatch.setattr(data, "_plain_jsonl", lambda *args: None)


def _stored(db, path, monkeypatch=None, **options) -> tuple[dict, list[tuple]]:
    """Import ``path`` into a new database ``db``: the dataset's metadata and its rows, in order."""
    with Store(db) as store:
        dataset_id = store.add_dataset(data.load_dataset(path, staging_dir=db.parent / "staged", **options))
        meta = store.get_dataset(dataset_id)
        rows = store._df(
            "SELECT row_index, record_json, prompt, response FROM rows WHERE dataset_id = ? ORDER BY row_index",
            [dataset_id],
        )
        messages = store.dataset_rows(dataset_id)["prompt_messages"].tolist()  # as every reader decodes them
    return meta, [
        (i, record, prompt, turns, response)
        for (i, record, prompt, response), turns in zip(rows.itertuples(index=False, name=None), messages, strict=True)
    ]


def _both(tmp_path, monkeypatch, path, **options):
    """(fast path, Python reader) results for the same file."""
    (tmp_path / "fast").mkdir()
    (tmp_path / "python").mkdir()
    fast = _stored(tmp_path / "fast" / "db.duckdb", path, **options)
    with monkeypatch.context() as patch:
        _python_reader(patch)
        slow = _stored(tmp_path / "python" / "db.duckdb", path, **options)
    return fast, slow


def _assert_same(fast, slow) -> None:
    (fast_meta, fast_rows), (slow_meta, slow_rows) = fast, slow
    for key in ("schema", "columns", "content_hash", "n_rows", "file_format"):
        assert fast_meta[key] == slow_meta[key], key
    assert len(fast_rows) == len(slow_rows)
    for mine, theirs in zip(fast_rows, slow_rows, strict=True):
        assert mine[0] == theirs[0]
        assert json.loads(mine[1]) == json.loads(theirs[1])  # the line's own text; the same record
        assert mine[2:] == theirs[2:]  # prompt, prompt messages (as the store's readers give them), response


@pytest.mark.parametrize("ensure_ascii", [False, True])
def test_plain_jsonl_is_read_by_duckdb_and_stores_what_the_python_reader_stores(tmp_path, monkeypatch, ensure_ascii):
    path = _write(tmp_path / "data.jsonl", _rows(200), ensure_ascii=ensure_ascii)
    assert data.load_dataset(path, staging_dir=tmp_path / "staged").jsonl_rows is not None
    _assert_same(*_both(tmp_path, monkeypatch, path))


def test_crlf_bom_and_blank_lines_read_alike(tmp_path, monkeypatch):
    rows = _rows(30)
    lines = [json.dumps(r) if i % 6 else "   " for i, r in enumerate(rows)]  # some whitespace-only lines
    path = _write(tmp_path / "data.jsonl", [*lines, lines[1], ""], sep="\r\n", prefix="\ufeff")
    fast = data.load_dataset(path, staging_dir=tmp_path / "staged")
    assert fast.jsonl_rows is not None
    assert [(d.location, d.first_location) for d in fast.duplicates] == [(31, 2)]  # file lines, blank ones counted
    _assert_same(*_both(tmp_path, monkeypatch, path))


@pytest.mark.parametrize("drop", [False, True])
def test_duplicates_found_and_dropped_as_the_python_reader_does(tmp_path, monkeypatch, drop):
    rows = _rows(40)
    repeat = {"output": rows[5]["output"], **{k: v for k, v in rows[5].items() if k != "output"}}  # key order
    near = {**rows[6], "extra": 1}  # same prompt, input and response, another column: not a duplicate
    lines = [json.dumps(r) for r in rows]
    lines[10:10] = [json.dumps(repeat, indent=None, separators=(",", ":")), "", json.dumps(near), lines[6]]
    lines.insert(3, "  ")
    lines += [lines[0], json.dumps({**rows[0], "input": rows[0].get("input")})]
    path = _write(tmp_path / "data.jsonl", lines)

    staged = tmp_path / "staged"
    fast = data.load_dataset(path, staging_dir=staged)
    with monkeypatch.context() as patch:
        _python_reader(patch)
        slow = data.load_dataset(path, staging_dir=staged)
    assert fast.jsonl_rows is not None and slow.jsonl_rows is None
    assert fast.duplicates == slow.duplicates
    assert len(fast.duplicates) == 4
    assert data.describe_duplicates(fast.duplicates) == data.describe_duplicates(slow.duplicates)
    (tmp_path / "a").mkdir()
    _assert_same(*_both(tmp_path / "a", monkeypatch, path, drop_duplicates=drop))


def test_prepare_then_with_options_stores_without_reading_again(tmp_path, monkeypatch):
    rows = _rows(20)
    path = _write(tmp_path / "data.jsonl", [*rows, rows[2]])
    inspection, dataset = data.prepare(path, staging_dir=tmp_path / "staged")
    assert inspection.problems == [] and len(inspection.duplicates) == 1
    assert dataset.staged and dataset.jsonl_rows is not None
    monkeypatch.setattr(data, "_read_pass", None)  # the Python reader is not used again
    with Store(tmp_path / "db.duckdb") as store:
        dataset_id = store.add_dataset(data.with_options(dataset, "mine", drop_duplicates=True))
        assert store.get_dataset(dataset_id)["n_rows"] == 20
        assert store.get_dataset(dataset_id)["name"] == "mine"


def test_a_file_changed_after_its_check_is_refused_and_nothing_is_stored(tmp_path):
    path = _write(tmp_path / "data.jsonl", _rows(10))
    dataset = data.load_dataset(path, staging_dir=tmp_path / "staged")
    with open(path, "a", encoding="utf-8") as file:
        file.write(json.dumps({"instruction": "late", "output": 1}) + "\n")
    assert not dataset.staged
    with Store(tmp_path / "db.duckdb") as store:
        with pytest.raises(StoreError, match="changed after it was checked"):
            store.add_dataset(dataset)
        assert store.list_datasets().empty


BAD_LINES = [
    ('{"instruction": "q", "input": "", "output": 7}', "output"),
    ('{"instruction": "   ", "input": "", "output": "a"}', "instruction"),
    ('{"instruction": "q", "input": 3, "output": "a"}', "input"),
    ('{"instruction": "q", "output": null}', "output"),
    ('{"instruction": "q", "input": "", "output": "a", "output": "b"}', "output"),
    ('{"instruction": "q", "input": "", "output": "\\ud800"}', "output"),
    ('{"instruction": "q", "input": "", "output": "a",}', 49),
    ('{"instruction": "q", "input": "", "output": "a"', 48),
    ('["not", "an", "object"]', None),
]


@pytest.mark.parametrize(("line", "column"), BAD_LINES)
def test_a_bad_line_deep_in_a_large_file_is_named_exactly_and_nothing_is_imported(tmp_path, monkeypatch, line, column):
    rows = [json.dumps({"instruction": f"q{i}", "input": "", "output": f"a{i}"}) for i in range(20_000)]
    rows.insert(17_342, line)  # file line 17,343
    path = _write(tmp_path / "big.jsonl", rows)
    with pytest.raises(DataError) as fast:
        data.load_dataset(path, staging_dir=tmp_path / "staged")
    with monkeypatch.context() as patch:
        _python_reader(patch)
        with pytest.raises(DataError) as slow:
            data.load_dataset(path, staging_dir=tmp_path / "staged")
    assert str(fast.value) == str(slow.value)
    assert (fast.value.line, fast.value.column) == (17_343, column)
    assert str(fast.value).startswith("big.jsonl: line 17343")
    with Store(tmp_path / "db.duckdb") as store:
        with pytest.raises(DataError):
            workspace.import_file(store, path)
        assert store.list_datasets().empty
        assert store._scalar("SELECT count(*) FROM rows") == 0


def test_a_control_character_duckdb_escapes_otherwise_goes_to_the_python_reader(tmp_path, monkeypatch):
    rows = [{"instruction": "unit\x1fseparator", "output": "a"}, {"instruction": "q", "output": "x\x0b"}]
    path = _write(tmp_path / "data.jsonl", rows)
    assert data.load_dataset(path, staging_dir=tmp_path / "staged").jsonl_rows is None
    _assert_same(*_both(tmp_path, monkeypatch, path))


def test_nan_goes_to_the_python_reader_which_reads_it_as_null_with_a_notice(tmp_path):
    rows = [json.dumps(r) for r in _rows(5)] + ['{"instruction": "q", "output": "a", "score": NaN}']
    path = _write(tmp_path / "data.jsonl", rows)
    dataset = data.load_dataset(path, staging_dir=tmp_path / "staged")
    assert dataset.jsonl_rows is None and dataset.rows_file is not None
    assert any("NaN or Infinity" in notice for notice in dataset.notices)


def test_a_column_met_later_that_changes_the_schema_is_checked_with_it(tmp_path, monkeypatch):
    rows = [{"instruction": "q1", "response": "a1"}, {"instruction": "q2", "response": "a2", "context": "c"}]
    path = _write(tmp_path / "data.jsonl", rows)  # instruction/response (GPTeacher), then Dolly's context
    dataset = data.load_dataset(path, staging_dir=tmp_path / "staged")
    assert dataset.schema == "dolly" and dataset.jsonl_rows is not None
    _assert_same(*_both(tmp_path, monkeypatch, path))


def test_other_schemas_and_formats_keep_the_python_reader(tmp_path):
    chat = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    path = _write(tmp_path / "chat.jsonl", [chat])
    assert data.load_dataset(path, staging_dir=tmp_path / "staged").jsonl_rows is None
    assert data.load_dataset(path).jsonl_rows is None  # no staging_dir: rows in memory, as before
    lone_cr = tmp_path / "cr.jsonl"
    lone_cr.write_bytes(b'{"prompt": "q", "response": "a"}\r{"prompt": "q2", "response": "b"}\n')
    dataset = data.load_dataset(lone_cr, staging_dir=tmp_path / "staged")
    assert dataset.jsonl_rows is None and dataset.n_rows == 2
    assert os.path.exists(dataset.rows_file)


def test_plain_jsonl_stores_no_prompt_messages_and_every_reader_gives_the_user_turn(tmp_path):
    """The fast path leaves prompt_messages_json NULL (migration 15) instead of writing each prompt a third time;
    every reader of rows gives the prompt as one user turn, exactly as the Python reader stores it."""
    path = _write(tmp_path / "data.jsonl", _rows(12))
    with Store(tmp_path / "db.duckdb") as store:
        dataset_id = store.add_dataset(data.load_dataset(path, staging_dir=tmp_path / "staged"))
        assert store._scalar("SELECT count(*) FROM rows WHERE prompt_messages_json IS NOT NULL") == 0
        expected = {
            int(r.row_index): [{"role": "user", "content": r.prompt}]
            for r in store.dataset_rows(dataset_id).itertuples()
        }
        assert len(expected) == 12 and expected[0][0]["content"].startswith(HOSTILE[0])
        for df in (store.dataset_rows(dataset_id), store.sample_rows(dataset_id, 5)):
            assert {int(i): m for i, m in zip(df["row_index"], df["prompt_messages"], strict=True)} == {
                int(i): expected[int(i)] for i in df["row_index"]
            }
        run_id = store.create_run(dataset_id, "m", {})
        todo = store.unscored_rows(run_id)
        assert [expected[int(i)] for i in todo["row_index"]] == todo["prompt_messages"].tolist()


def test_a_database_from_before_migration_15_keeps_its_rows_and_takes_a_plain_jsonl_import(tmp_path):
    import duckdb

    from clear_core.migrations import MIGRATIONS

    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE _migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP)")
    for version, sql in MIGRATIONS:
        if version < 15:
            con.execute(sql)
            con.execute("INSERT INTO _migrations VALUES (?, now()::TIMESTAMP)", [version])
    con.execute(
        "INSERT INTO datasets (name, content_hash, n_rows, created_at, columns_json) "
        "VALUES ('old', 'old-hash', 1, now()::TIMESTAMP, '[\"q\", \"a\"]')"
    )
    turns = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "p"}]
    con.execute("INSERT INTO rows VALUES (1, 0, '{}', 'p', ?, 'r')", [json.dumps(turns)])
    con.close()
    path = _write(tmp_path / "data.jsonl", _rows(3))
    with Store(db) as store:
        assert 15 in store.schema_versions()
        assert store.dataset_rows(1)["prompt_messages"].tolist() == [turns]  # stored text still read as it is
        dataset_id = store.add_dataset(data.load_dataset(path, staging_dir=tmp_path / "staged"))
        prompts = store.dataset_rows(dataset_id)["prompt"].tolist()
        assert store.dataset_rows(dataset_id)["prompt_messages"].tolist() == [
            [{"role": "user", "content": p}] for p in prompts
        ]


def test_import_leaves_the_database_settings_as_they_were(tmp_path):
    """The insert writes text uncompressed under a memory cap (Store._bulk_text); both are the database's settings,
    so they are DuckDB's own again afterwards, whether the store was opened with a limit or not."""
    path = _write(tmp_path / "data.jsonl", _rows(5))
    for limit in (None, "2GB"):
        db = tmp_path / f"db-{limit}.duckdb"
        with Store(db, memory_limit=limit) as store:
            setting = "SELECT current_setting('force_compression'), current_setting('memory_limit')"
            before = store._df(setting).iloc[0].tolist()
            store.add_dataset(data.load_dataset(path, staging_dir=tmp_path / "staged"))
            assert store._df(setting).iloc[0].tolist() == before
            assert store.get_dataset(1)["n_rows"] == 5
