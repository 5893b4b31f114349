"""The hand-off files between owner and worker: any text round-trips, and a full disk says which disk and what to do.

The property tests draw arbitrary Unicode (every category except lone surrogates, Cs, which cannot exist in a UTF-8
file) mixed with the characters that broke line-based readers before: U+2028, U+2029, U+0085, \\r, NUL, the
information separators \\x1c-\\x1e that ``str.splitlines`` also splits on, and a BOM.
"""

from __future__ import annotations

import errno
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clear_core import data, export, handoff, runs, workspace
from clear_core.store import ReviewQuery, Store

LINE_BREAKERS = ["\u2028", "\u2029", "\u0085", "\r", "\r\n", "\n", "\x00", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"]
ANY_CHAR = st.characters(exclude_categories=("Cs",))
TEXT = st.lists(
    st.one_of(st.text(ANY_CHAR, max_size=12), st.sampled_from([*LINE_BREAKERS, "\ufeff", '"', ","])), max_size=6
).map("".join)
PROMPT = TEXT.filter(lambda s: s.strip())  # an import refuses a blank prompt (data.py), by design


def _row(i: int, prompt: str, response: str) -> dict:
    return {
        "row_index": i,
        "prompt_messages": [{"role": "user", "content": prompt}],
        "prompt": prompt,
        "response": response,
    }


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(TEXT, TEXT, TEXT), min_size=1, max_size=4))
@example([("a\u2028b", "c\u2029d\u0085e", "f\r\ng\x00h")])
def test_any_text_round_trips_through_rows_jsonl_and_a_chunk(triples):
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        rows = [_row(i, p, r) for i, (p, r, _) in enumerate(triples)]
        handoff.prepare_run_dir(run_dir, {"run_id": 1, "model": "m", "params": {}}, rows)
        job, read = handoff.read_job(run_dir)
        assert read == rows
        raw = (run_dir / "rows.jsonl").read_bytes()
        assert raw.isascii() and raw.count(b"\n") == len(rows)  # one line per row, whatever the text

        records = [{"row_index": i, "proposed_response": q, "confidence": 0.5} for i, (_, _, q) in enumerate(triples)]
        chunk = handoff.write_chunk(run_dir, records)
        assert handoff.read_chunk(chunk) == records
        assert handoff.done_row_indices(run_dir) == set(range(len(triples)))


def test_a_chunk_written_without_escapes_still_reads():
    """Files written before the escapes (raw U+2028 inside strings) split on "\\n" only, so they read too."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chunk-000000000000001-1.jsonl"
        records = [{"row_index": 0, "proposed_response": "a\u2028b\u0085c\x1cd"}, {"row_index": 1}]
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        assert handoff.read_chunk(path) == records


def _read_back(records: list[dict], fmt: str, directory: Path) -> list[dict]:
    path = export.write_records(records, directory / f"out.{fmt}", fmt)
    assert path.read_bytes() == export.export_bytes(records, fmt)
    return data.read_records(path, fmt)


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    """One database for every example (opening a new one per example would dominate the test's time)."""
    with Store(tmp_path_factory.mktemp("db") / "c.duckdb") as store:
        yield store


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(PROMPT, TEXT, TEXT), min_size=1, max_size=3))
@example([("q\u2028r", "a\u2029b\u0085c\r\nd\x00", "p\rq\x1e\ufeff")])
def test_any_text_round_trips_from_import_through_scoring_to_every_export_format(shared_store, triples):
    """prompt, response and proposal: input file -> store -> rows.jsonl -> chunk -> store -> review -> export."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = tmp / "in.jsonl"
        source.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r, _ in triples), "utf-8")
        store = shared_store
        dataset_id = workspace.import_file(store, source)
        run_id = store.create_run(dataset_id, "m", {})
        directory = tmp / "run"
        store.set_run_work_dir(run_id, str(directory))
        todo = store.unscored_rows(run_id)
        rows = [_row(int(r.row_index), r.prompt, r.response) for r in todo.itertuples()]
        assert [(r["prompt"], r["response"]) for r in rows] == [(p, r) for p, r, _ in triples]
        assert [r["prompt_messages"][0]["content"] for r in rows] == [p for p, _, _ in triples]

        handoff.prepare_run_dir(directory, {"run_id": run_id, "model": "m", "params": {}}, rows)
        _, handed = handoff.read_job(directory)
        assert handed == rows
        # the worker's chunk: a confident proposal for each row, so the export replaces the response with it
        handoff.write_chunk(
            directory,
            [
                {
                    "row_index": r["row_index"],
                    "confidence": 0.9,
                    "proposed_response": q,
                    "correction_confidence": 1.0,
                }
                for r, (_, _, q) in zip(handed, triples, strict=True)
            ],
        )
        runs.ingest(store, run_id)  # the owner's side: chunk -> store
        assert handoff.pending_chunks(directory) == []

        proposals = [q for _, _, q in triples]
        assert store.scores(run_id)["proposed_response"].tolist() == proposals
        queue, _ = store.review_queue(ReviewQuery(run_id, 0.5, 0.7, order_by="row_index"), limit=10)
        assert queue["prompt"].tolist() == [p for p, _, _ in triples]
        assert queue["response"].tolist() == [r for _, r, _ in triples]
        assert queue["proposed_response"].tolist() == proposals

        policy = export.ExportPolicy(gamma=0.5, eta=0.7, include_scores=True)
        records = workspace.curated_export(store, dataset_id, policy, "jsonl").records
        # a blank proposal is never applied (export.py), so the response stays
        expected = [
            {"prompt": p, "response": q if q.strip() else r, "clear_proposed_response": q} for p, r, q in triples
        ]
        assert [{k: rec[k] for k in expected[0]} for rec in records] == expected
        for fmt in export.EXPORT_FORMATS:
            back = _read_back(records, fmt, tmp)
            texts = [{k: rec[k] for k in expected[0]} for rec in back]
            assert texts == expected, fmt
            if fmt != "csv":  # CSV cells are text, so numbers come back as text there
                assert back == records, fmt


# -- a full disk ------------------------------------------------------------------------------------------------


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_writing_a_hand_off_file_names_the_disk_and_leaves_no_temp_file(tmp_path, monkeypatch):
    monkeypatch.setattr(handoff.os, "replace", _enospc)
    with pytest.raises(handoff.DiskFullError) as caught:
        handoff.write_atomic(tmp_path / "progress.json", "{}")
    message = str(caught.value)
    assert message.startswith(f"The disk holding {tmp_path} is full")
    assert "Free space and start the run again; finished rows are kept." in message
    assert caught.value.errno == errno.ENOSPC and isinstance(caught.value, OSError)
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone


def test_a_full_disk_when_a_run_starts_says_so(tmp_path, gsm8k_file, monkeypatch):
    db = tmp_path / "c.duckdb"
    with Store(db) as store:
        dataset_id = workspace.import_file(store, gsm8k_file)
        monkeypatch.setattr(handoff.os, "replace", _enospc)
        with pytest.raises(handoff.DiskFullError, match=r"The disk holding .*run-1 is full"):
            runs.start_run(store, db, dataset_id, model="m", device="cpu")


# -- what worker.log says ---------------------------------------------------------------------------------------


def test_the_last_error_line_is_from_this_start_and_not_a_handled_row(tmp_path):
    log = tmp_path / "worker.log"
    log.write_text("Traceback (most recent call last):\nRuntimeError: from an earlier start\n", encoding="utf-8")
    handoff.write_attempt(tmp_path, log_offset=log.stat().st_size)
    assert handoff.last_error_line(tmp_path) is None  # an earlier start's error is not this one's
    with log.open("a", encoding="utf-8") as f:
        f.write("clear-worker: row 3 could not be scored:\nTraceback (most recent call last):\n")
        f.write(f'  File "engine.py", line 9\nValueError: a bad row\n{handoff.HANDLED_MARK}\nloading...\n')
    assert handoff.last_error_line(tmp_path) is None  # the worker handled it and went on
    with log.open("a", encoding="utf-8") as f:
        f.write(
            'Traceback (most recent call last):\n  File "model.py", line 3\n'
            "torch.OutOfMemoryError: CUDA out of memory\n"
        )
    assert handoff.last_error_line(tmp_path) == "torch.OutOfMemoryError: CUDA out of memory"
    assert not handoff.log_says_disk_full(tmp_path)
