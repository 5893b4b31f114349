"""The owner's ingest of worker chunks: many chunks per transaction, exactly once, failures kept, nothing
half-written; and ``Store.add_scores`` as one set-based insert (types, NaN, the last record of a row wins)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from clear_core import handoff, runs
from clear_core.store import ERROR_FIELD, NotFoundError, ReviewQuery, Store
from tests.test_store import make_dataset


def scored(i: int, confidence: float = 0.5, proposal: str | None = None) -> dict:
    return {"row_index": i, "confidence": confidence, "correction_confidence": 0.1, "proposed_response": proposal}


def failed(i: int) -> dict:
    return {"row_index": i, ERROR_FIELD: "RuntimeError: out of memory"}


@pytest.fixture
def run(tmp_path):
    """A store with a 40-row dataset and a pending run whose run directory exists: (store, run_id, directory)."""
    with Store(tmp_path / "c.duckdb") as store:
        dataset_id = store.add_dataset(make_dataset(40))
        run_id = store.create_run(dataset_id, "m", {})
        directory = tmp_path / "run"
        (directory / "chunks").mkdir(parents=True)
        store.set_run_work_dir(run_id, str(directory))
        yield store, run_id, directory


def write_chunks(directory: Path, chunks: list[list[dict]]) -> list[Path]:
    """Chunk files in the worker's format, named so that they sort in the given order."""
    paths = []
    for n, records in enumerate(chunks):
        path = directory / "chunks" / f"chunk-{n:015d}-1.jsonl"
        handoff.write_atomic(path, handoff._jsonl(records))
        paths.append(path)
    return paths


def test_a_backlog_of_chunks_goes_in_a_few_transactions_and_every_file_is_removed(run, monkeypatch):
    store, run_id, directory = run
    monkeypatch.setattr(runs, "INGEST_BATCH_ROWS", 12)
    calls = []
    add_scores = store.add_scores
    monkeypatch.setattr(
        store, "add_scores", lambda rid, records: calls.append(len(records)) or add_scores(rid, records)
    )
    chunks = [[scored(i) for i in range(k, k + 4)] for k in range(0, 36, 4)]  # 9 chunks of 4 rows
    chunks[2][1] = failed(9)
    write_chunks(directory, chunks)

    assert runs.ingest(store, run_id) == 36
    assert calls == [12, 12, 12]  # three chunks per transaction, not one each
    assert handoff.pending_chunks(directory) == []
    assert (store.scored_count(run_id), store.failed_count(run_id)) == (35, 1)
    assert store.failures(run_id)["row_index"].tolist() == [9]
    assert store.unscored_count(run_id) == len(store.unscored_rows(run_id)) == 5  # rows 36-39 and the failed row
    assert runs.ingest(store, run_id) == 0


def test_a_row_in_two_chunks_of_one_batch_keeps_the_later_record(run):
    """A retried row: its failure in an older chunk, its score in a newer one, both ingested together."""
    store, run_id, directory = run
    write_chunks(directory, [[scored(0), failed(1)], [scored(1, 0.9, "Better"), scored(2)]])
    assert runs.ingest(store, run_id) == 3
    scores = store.scores(run_id).set_index("row_index")
    assert (store.scored_count(run_id), store.failed_count(run_id)) == (3, 0)
    assert scores.loc[1, "confidence"] == 0.9 and scores.loc[1, "proposed_response"] == "Better"


def test_ingesting_the_same_chunks_again_after_a_crash_changes_nothing(run, tmp_path):
    """A crash after the commit and before the files are removed: the next ingest stores the same rows again."""
    store, run_id, directory = run
    chunks = [[scored(i, i / 40) for i in range(k, k + 5)] for k in range(0, 20, 5)]
    write_chunks(directory, [*chunks, [failed(20), scored(21, 0.3, "p")]])
    kept = tmp_path / "kept"
    shutil.copytree(directory / "chunks", kept)
    runs.ingest(store, run_id)
    before = store.scores(run_id).drop(columns="scored_at")

    for path in kept.iterdir():  # the files come back as if the unlink never happened
        shutil.copy(path, directory / "chunks" / path.name)
    assert runs.ingest(store, run_id) == 22
    after = store.scores(run_id).drop(columns="scored_at")
    assert after.equals(before)
    assert (store.scored_count(run_id), store.failed_count(run_id)) == (21, 1)


def test_a_batch_with_a_bad_chunk_stores_nothing_and_keeps_its_files(run):
    store, run_id, directory = run
    paths = write_chunks(directory, [[scored(0), scored(1)], [scored(2), scored(99)]])  # the dataset has 40 rows
    with pytest.raises(ValueError, match=r"rows \[99\]"):
        runs.ingest(store, run_id)
    assert store.scored_count(run_id) == 0  # the good chunk's rows were in the same rolled-back transaction
    assert all(path.exists() for path in paths)


def test_add_scores_stores_nan_as_null_and_casts_integer_signals(tmp_path):
    with Store(tmp_path / "c.duckdb") as store:
        run_id = store.create_run(store.add_dataset(make_dataset(3)), "m", {})
        records = [
            {"row_index": 0, "confidence": math.nan, "pmi": 1.5, "n_response_tokens": 7, "arithmetic_errors": 0},
            {"row_index": 1, "confidence": 0.25, "proposed_response": "a\u2028b\x00c"},
            {"row_index": 0, "confidence": 0.75, "n_response_tokens": 9},  # the later record of row 0 wins
        ]
        assert store.add_scores(run_id, records) == 2
        scores = store.scores(run_id).set_index("row_index")
        assert scores.loc[0, "confidence"] == 0.75 and scores.loc[0, "n_response_tokens"] == 9
        assert math.isnan(scores.loc[0, "pmi"])  # the later record has no pmi: NULL, read back as NaN
        assert scores.loc[1, "proposed_response"] == "a\u2028b\x00c"
        store.add_scores(run_id, [{"row_index": 2, "confidence": math.nan}])
        assert store.scored_count(run_id) == 3
        # NULL sorts last either way; a stored NaN would sort above every number, so first in descending order
        queue, _ = store.review_queue(ReviewQuery(run_id, 0.5, 0.8, order_by="confidence", ascending=False))
        assert queue["row_index"].tolist() == [0, 1, 2]


def test_add_scores_refuses_values_of_the_wrong_type_and_writes_nothing(tmp_path):
    with Store(tmp_path / "c.duckdb") as store:
        run_id = store.create_run(store.add_dataset(make_dataset(3)), "m", {})
        with pytest.raises(ValueError, match="'confidence'"):
            store.add_scores(run_id, [{"row_index": 0, "confidence": 0.5}, {"row_index": 1, "confidence": "high"}])
        with pytest.raises(ValueError, match="'proposed_response'"):
            store.add_scores(run_id, [{"row_index": 0, "proposed_response": 42}])
        with pytest.raises(ValueError, match="marked failed"):
            store.add_scores(run_id, [{**failed(0), "confidence": math.nan}])
        with pytest.raises(NotFoundError):
            store.add_scores(run_id + 1, [scored(0)])
        assert store.scores(run_id).empty


def test_a_worker_finishing_while_its_chunks_are_listed_does_not_end_the_run_short(run, monkeypatch):
    """The worker writes its last chunk and says done just after ingest listed the chunks (the race CI met once):
    the run stays running until the next ingest has read that chunk, and then ends done with every row."""
    store, run_id, directory = run
    store.set_run_status(run_id, "running")
    write_chunks(directory, [[scored(i) for i in range(20)]])
    handoff.write_progress(directory, status="running", rows_done=20, rows_total=40)
    listing = handoff.pending_chunks

    def list_then_finish(run_dir):
        found = listing(run_dir)
        if not (directory / "chunks" / "last.done").exists():  # the worker finishes once, right after this listing
            (directory / "chunks" / "last.done").touch()
            handoff.write_chunk(directory, [scored(i) for i in range(20, 40)])
            handoff.write_progress(directory, status="done", rows_done=40, rows_total=40)
        return found

    monkeypatch.setattr(handoff, "pending_chunks", list_then_finish)
    assert runs.ingest(store, run_id) == 20
    assert store.get_run(run_id)["status"] == "running"  # the last chunk is still to be read
    assert runs.ingest(store, run_id) == 20
    assert store.get_run(run_id)["status"] == "done"
    assert store.scored_count(run_id) == 40
