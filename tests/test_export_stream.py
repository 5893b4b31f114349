"""The streamed export (store.curated_batches -> export.write_curated) writes the same files as the in-memory one
(curate -> to_records -> export_bytes) for every schema, format and policy; the SQL curation counts what
export.summarize counts."""

from __future__ import annotations

import json
import random

import pyarrow.parquet as pq
import pytest

from clear_core import export, workspace
from clear_core.data import load_dataset
from clear_core.export import ExportPolicy, UnscoredRowsError
from clear_core.permissions import local_actor
from clear_core.store import Store
from tests.test_export import CASES, FIX, MAPPING, write_input

FORMATS = ("jsonl", "json", "csv", "parquet")
SCORES = [
    {"row_index": 0, "confidence": 0.9, "correction_confidence": 0.1, "proposed_response": "same", "judge_prob": 0.2},
    {"row_index": 1, "confidence": 0.2, "correction_confidence": 0.1, "proposed_response": "other"},
    {
        "row_index": 2,
        "confidence": 0.3,
        "correction_confidence": 0.95,
        "proposed_response": FIX,
        "n_response_tokens": 7,
    },
]
POLICIES = [
    ExportPolicy(gamma=0.5, eta=0.8),
    ExportPolicy(gamma=0.5, eta=0.8, include_scores=True),
    ExportPolicy(gamma=0.5, eta=0.8, all_rows=True, include_scores=True),
    ExportPolicy(gamma=0.1, eta=0.99, all_rows=True),
    ExportPolicy(gamma=0.5, eta=0.8, apply_auto=False),
    ExportPolicy(gamma=0.5, eta=0.8, only_reviewed=True),
    ExportPolicy(gamma=0.5, eta=0.8, apply_decisions=False, unscored="keep"),
]


def in_memory(store: Store, dataset_id: int, policy: ExportPolicy, fmt: str) -> tuple[bytes, dict]:
    """What the export wrote before it was streamed: every row and score in memory."""
    ds = store.get_dataset(dataset_id)
    run = store.latest_run(dataset_id)
    scores = store.scores(run["run_id"]) if run else None
    curated = export.curate(store.dataset_rows(dataset_id), scores, store.current_decisions(dataset_id), policy)
    mapping = MAPPING if ds["schema"] == "mapped" else None
    records = export.to_records(ds["schema"], fmt, curated, policy.include_scores, policy.all_rows, mapping=mapping)
    fmt = export.resolve_format(fmt, ds["file_format"])
    return export.export_bytes(records, fmt), export.summarize(curated) | {"pending": export.pending_rows(curated)}


def streamed(store: Store, dataset_id: int, policy: ExportPolicy, fmt: str, path, batch_rows: int) -> bytes:
    export.write_curated(store, dataset_id, policy, path, fmt, batch_rows=batch_rows)
    return path.read_bytes()


def assert_same_file(old: bytes, new_path, fmt: str, tmp_path) -> None:
    if fmt != "parquet":
        assert new_path.read_bytes() == old
        return
    (tmp_path / "old.parquet").write_bytes(old)
    expected, got = pq.read_table(tmp_path / "old.parquet"), pq.read_table(new_path)
    assert got.schema == expected.schema
    assert got.to_pylist() == expected.to_pylist()


def stored(tmp_path, schema: str, fmt: str, *, decisions: bool = True, scored: int = 3):
    path = write_input(tmp_path / f"in.{fmt}", CASES[schema][0])
    ds = load_dataset(path, mapping=MAPPING if schema == "mapped" else None)
    store = Store(tmp_path / "s.duckdb")
    dataset_id = store.add_dataset(ds)
    run_id = store.create_run(dataset_id, "synthetic", {})
    store.add_scores(run_id, SCORES[:scored])
    if decisions and len(ds.rows) > 2:
        store.record_decision(dataset_id, 1, "reject", run_id=run_id, actor=local_actor("ann"))
        store.record_decision(
            dataset_id, 0, "edit", run_id=run_id, final_response="Edited «x»\r\nnew", actor=local_actor("bob")
        )
        store.record_decision(dataset_id, 2, "remove", run_id=run_id, reason="wrong", actor=local_actor("ann"))
        store.undo_last_decision(dataset_id, actor=local_actor("ann"))  # row 2 falls back to its automatic action
    return store, dataset_id


# every schema from JSONL; two schemas from every other format
INPUTS = [(schema, "jsonl") for schema in CASES] + [(s, f) for s in ("alpaca", "messages") for f in FORMATS[1:]]


@pytest.mark.parametrize(("schema", "fmt"), INPUTS, ids=[f"{s}-{f}" for s, f in INPUTS])
def test_streamed_export_equals_the_in_memory_one(tmp_path, schema, fmt):
    store, dataset_id = stored(tmp_path, schema, fmt)
    with store:
        # every policy in the input's format, and one in each other format
        for number, (policy, out_fmt) in enumerate([*((p, "original") for p in POLICIES), *zip(POLICIES, FORMATS)]):
            old, counts = in_memory(store, dataset_id, policy, out_fmt)
            out_path = tmp_path / f"out{number}.{export.resolve_format(out_fmt, fmt)}"
            export.write_curated(store, dataset_id, policy, out_path, out_fmt, batch_rows=2)  # batches split tasks
            assert_same_file(old, out_path, export.resolve_format(out_fmt, fmt), tmp_path)
            summary = store.curation_summary(dataset_id, store.latest_run(dataset_id)["run_id"], policy)
            for name in counts.keys() - {"pending"}:
                assert summary[name] == counts[name], name
            assert (summary["unscored_rows"], summary["failed_rows"]) == counts["pending"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_unscored_and_failed_rows_stream_as_they_curate(tmp_path, fmt):
    store, dataset_id = stored(tmp_path, "alpaca", fmt, decisions=False, scored=1)
    with store:
        run_id = store.latest_run(dataset_id)["run_id"]
        store.add_scores(run_id, [{"row_index": 1, "error": "RuntimeError: out of memory"}])
        for unscored in ("keep", "drop", "fail"):
            policy = ExportPolicy(gamma=0.5, eta=0.8, unscored=unscored, include_scores=True)
            old, counts = in_memory(store, dataset_id, policy, fmt)
            summary = store.curation_summary(dataset_id, run_id, policy)
            assert (summary["unscored_rows"], summary["failed_rows"]) == counts["pending"] == ([2], [1])
            assert summary["kept"] == counts["kept"]
            export.write_curated(store, dataset_id, policy, tmp_path / f"o.{fmt}", fmt, batch_rows=1)
            assert_same_file(old, tmp_path / f"o.{fmt}", fmt, tmp_path)
            if unscored == "fail":
                with pytest.raises(UnscoredRowsError, match="1 of 3 rows is not scored"):
                    export.check_pending(summary, policy)
            else:
                export.check_pending(summary, policy)


def test_a_column_typed_differently_across_batches_is_typed_as_a_whole(tmp_path):
    """Nulls in the first batch, numbers that need a float in a later one: Parquet types the column as pa.array
    types it whole (double), and JSONL writes every record byte for byte."""
    records = [{"prompt": f"p{i}", "response": "r", "n": None if i < 2 else (1 if i < 4 else 2.5)} for i in range(6)]
    with Store(tmp_path / "s.duckdb") as store:
        dataset_id = store.add_dataset(load_dataset(write_input(tmp_path / "in.jsonl", records)))
        policy = ExportPolicy(gamma=0.5, eta=0.8, apply_auto=False)
        for fmt in FORMATS:
            old, _ = in_memory(store, dataset_id, policy, fmt)
            export.write_curated(store, dataset_id, policy, tmp_path / f"o.{fmt}", fmt, batch_rows=2)
            assert_same_file(old, tmp_path / f"o.{fmt}", fmt, tmp_path)
        assert pq.read_table(tmp_path / "o.parquet").schema.field("n").type == "double"


def test_the_unchanged_jsonl_export_is_the_input_byte_for_byte(tmp_path, gsm8k_file):
    source = tmp_path / "g.jsonl"
    source.write_text("".join(json.dumps(r.record, ensure_ascii=False) + "\n" for r in load_dataset(gsm8k_file).rows))
    with Store(tmp_path / "s.duckdb") as store:
        dataset_id = workspace.import_file(store, source)
        policy = ExportPolicy(gamma=0.5, eta=0.8, apply_auto=False)
        assert export.write_curated(store, dataset_id, policy, tmp_path / "o.jsonl") == 12
    assert (tmp_path / "o.jsonl").read_bytes() == source.read_bytes()


def test_an_empty_export_writes_valid_files(tmp_path):
    store, dataset_id = stored(tmp_path, "alpaca", "jsonl", decisions=False)
    with store:
        policy = ExportPolicy(gamma=0.5, eta=0.8, only_reviewed=True)
        for fmt in FORMATS:
            old, _ = in_memory(store, dataset_id, policy, fmt)
            assert export.write_curated(store, dataset_id, policy, tmp_path / f"o.{fmt}", fmt) == 0
            if fmt == "parquet":
                assert pq.read_table(tmp_path / "o.parquet").num_rows == 0
            else:
                assert (tmp_path / f"o.{fmt}").read_bytes() == old


def test_a_failed_streamed_write_leaves_nothing_behind(tmp_path):
    store, dataset_id = stored(tmp_path, "alpaca", "jsonl", decisions=False)
    with store:
        target = tmp_path / "out.jsonl"
        target.write_text("earlier export")
        with pytest.raises(export.ExportError, match="Could not write the export to .*the folder .* does not exist"):
            export.write_curated(store, dataset_id, ExportPolicy(gamma=0.5, eta=0.8), tmp_path / "no" / "o.jsonl")
        assert target.read_text() == "earlier export"
        assert not list((tmp_path / "no").parent.glob(".*.tmp"))


# Text that JSON or CSV escapes or that a byte-level copy could get wrong: quotes, backslashes, control characters,
# a line separator, accents and a character outside the BMP, commas, a lone carriage return; a key with a quote.
TRICKY = ['say "hi"\\', "tab\there\nnew line\r\n", "\u2028 «é» 👍 \x00", "", "plain", "a, b", "lone\rreturn"]


def text_records(n: int) -> list[dict]:
    """Alpaca rows whose every column is text or null: the case the Arrow writers take (a key missing in some
    rows, a column that is null in every row, and one holding nulls among texts)."""
    records = []
    for i in range(n):
        record = {"instruction": f"{TRICKY[i % len(TRICKY)]} #{i}", "input": None if i % 3 else TRICKY[i % 5]}
        record["output"] = f"answer {TRICKY[(i + 2) % len(TRICKY)]} {i}"
        record["always null"] = None
        if i % 4 == 1:
            record['odd "key"'] = TRICKY[i % 5]
        records.append(record)
    return records


def text_store(tmp_path, n: int = 9) -> tuple[Store, int]:
    ds = load_dataset(write_input(tmp_path / "in.jsonl", text_records(n)))
    store = Store(tmp_path / "s.duckdb")
    dataset_id = store.add_dataset(ds)
    run_id = store.create_run(dataset_id, "synthetic", {})
    scores = [
        {"row_index": i, "confidence": 0.2 if i % 4 == 0 else 0.9, "correction_confidence": 0.95 if i % 3 == 0 else 0.1}
        | ({"proposed_response": f"fixed {TRICKY[i % len(TRICKY)]} {i}"} if i % 2 == 0 else {})
        for i in range(n)
    ]
    store.add_scores(run_id, scores)
    store.record_decision(dataset_id, 1, "edit", run_id=run_id, final_response="Edited «x»\r\n", actor=local_actor("a"))
    store.record_decision(dataset_id, 2, "remove", run_id=run_id, reason="wrong", actor=local_actor("a"))
    return store, dataset_id


def test_text_columns_take_the_arrow_writers_and_write_the_same_files(tmp_path, monkeypatch):
    """A plain export whose columns are all text is written from Arrow (JSON Lines copied; CSV and Parquet parsed
    by Arrow's JSON reader) and gives the files of the in-memory export: JSONL and CSV byte for byte, Parquet value
    for value."""

    def record_path(*args, **kwargs):
        raise AssertionError("the record-by-record writer ran")

    store, dataset_id = text_store(tmp_path)
    with store:
        for policy in (POLICIES[0], POLICIES[3], POLICIES[4], POLICIES[5]):
            for fmt in ("jsonl", "csv", "parquet"):
                old, _ = in_memory(store, dataset_id, policy, fmt)
                plain = not (policy.all_rows or policy.include_scores)
                with monkeypatch.context() as patched:
                    if plain:
                        patched.setattr(export, "curated_batches", record_path)
                    export.write_curated(store, dataset_id, policy, tmp_path / f"o.{fmt}", fmt, batch_rows=4)
                assert_same_file(old, tmp_path / f"o.{fmt}", fmt, tmp_path)
        table = pq.read_table(tmp_path / "o.parquet")
        assert table.schema.field("always null").type == "null"
        assert table.column_names[:3] == ["instruction", "input", "output"]


def test_a_column_of_numbers_takes_the_record_writer(tmp_path):
    """Parquet types a column of numbers as ``pa.array`` does, so such a dataset is written record by record."""
    records = [{"prompt": f"p{i}", "response": "r", "n": i} for i in range(5)]
    with Store(tmp_path / "s.duckdb") as store:
        dataset_id = store.add_dataset(load_dataset(write_input(tmp_path / "in.jsonl", records)))
        policy = ExportPolicy(gamma=0.5, eta=0.8, apply_auto=False)
        ds = store.get_dataset(dataset_id)
        columns, kinds = export._export_columns(store, ds, None, policy)
        assert columns == ["prompt", "response", "n"] and kinds["n"] == {"UBIGINT"}
        assert export._text_columns(ds, policy, columns, kinds) is None
        old, _ = in_memory(store, dataset_id, policy, "parquet")
        export.write_curated(store, dataset_id, policy, tmp_path / "o.parquet", "parquet")
        assert_same_file(old, tmp_path / "o.parquet", "parquet", tmp_path)


def test_curation_in_windows_counts_and_lists_what_one_window_does(tmp_path, monkeypatch):
    """curation_summary and curated_keys read a large dataset a window of rows at a time; with windows of 2 rows
    they give what one window gives."""
    store, dataset_id = text_store(tmp_path)
    with store:
        run_id = store.latest_run(dataset_id)["run_id"]
        store.add_scores(run_id, [{"row_index": 5, "error": "RuntimeError: out of memory"}])
        for policy in POLICIES:
            whole = store.curation_summary(dataset_id, run_id, policy), store.curated_keys(dataset_id, run_id, policy)
            with monkeypatch.context() as patched:
                patched.setattr("clear_core.store.CURATION_WINDOW_ROWS", 2)
                windowed = (
                    store.curation_summary(dataset_id, run_id, policy),
                    store.curated_keys(dataset_id, run_id, policy),
                )
            assert windowed == whole
        assert whole[0]["failed_rows"] == [5]
        assert whole[1][0] == ["instruction", "input", "output", "always null", 'odd "key"']


def test_a_store_opened_with_a_memory_limit_exports_the_same_files(tmp_path):
    """The export command caps DuckDB's memory (export.DUCKDB_MEMORY_LIMIT); a read-only store with a cap spills
    to the system's temporary folder, not beside a database it may not write."""
    store, dataset_id = text_store(tmp_path)
    with store:
        expected = {fmt: in_memory(store, dataset_id, POLICIES[0], fmt)[0] for fmt in FORMATS}
    for read_only in (False, True):
        with Store(tmp_path / "s.duckdb", read_only=read_only, memory_limit="64MB") as capped:
            limit, spill = capped._conn.execute(
                "SELECT current_setting('memory_limit'), current_setting('temp_directory')"
            ).fetchone()
            assert limit == "61.0 MiB"
            assert (spill != str(tmp_path / "s.duckdb.tmp")) == read_only
            for fmt in FORMATS:
                export.write_curated(capped, dataset_id, POLICIES[0], tmp_path / f"o.{fmt}", fmt)
                assert_same_file(expected[fmt], tmp_path / f"o.{fmt}", fmt, tmp_path)


def test_random_text_takes_the_arrow_writers_and_writes_the_same_files(tmp_path):
    """300 rows of seeded random text over every ASCII control character, quotes, commas, backslashes, separators
    and characters outside the BMP: the Arrow writers write what the in-memory export writes."""
    rng = random.Random(11)
    alphabet = [chr(c) for c in range(0x80)] + ["\u2028", "\u2029", "\u00a0", "é", "\ufeff", "👍", "𝔘"]
    text = lambda: "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))  # noqa: E731
    records = [
        {"prompt": text() + "?", "response": text() + "!", "extra": rng.choice([None, text()])} for _ in range(300)
    ]
    with Store(tmp_path / "s.duckdb") as store:
        dataset_id = store.add_dataset(load_dataset(write_input(tmp_path / "in.jsonl", records)))
        run_id = store.create_run(dataset_id, "synthetic", {})
        store.add_scores(
            run_id,
            [
                {"row_index": i, "confidence": 0.3, "correction_confidence": 0.9, "proposed_response": text() + "."}
                for i in range(0, 300, 3)
            ],
        )
        policy = ExportPolicy(gamma=0.1, eta=0.8, unscored="keep")
        ds = store.get_dataset(dataset_id)
        assert export._text_columns(ds, policy, *export._export_columns(store, ds, run_id, policy)) is not None
        for fmt in ("jsonl", "csv", "parquet"):
            old, counts = in_memory(store, dataset_id, policy, fmt)
            assert counts["corrected"] == 100
            export.write_curated(store, dataset_id, policy, tmp_path / f"o.{fmt}", fmt, batch_rows=64)
            assert_same_file(old, tmp_path / f"o.{fmt}", fmt, tmp_path)
