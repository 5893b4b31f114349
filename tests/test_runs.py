"""Runs through the real worker process (tiny model): chunks ingested, killed runs resume without re-scoring."""

from __future__ import annotations

import json
import os
import signal
import time

from clear_core import handoff, runs, workspace
from clear_core.confidence import ScoringConfig
from clear_core.store import Store

FAST = ScoringConfig(samples=1, max_new_tokens=4, batch_size=2)


def wait_for_chunks(directory, n: int, timeout_s: float = 120) -> None:
    """Wait until the worker has written n chunk files that are not yet ingested."""
    deadline = time.time() + timeout_s
    while time.time() < deadline and len(handoff.pending_chunks(directory)) < n:
        time.sleep(0.05)


def test_run_scores_every_row_through_the_worker(tmp_path, gsm8k_file, tiny_model_path):
    db = tmp_path / "c.duckdb"
    with Store(db) as store:
        dataset_id = workspace.import_file(store, gsm8k_file)
        run_id = runs.start_run(store, db, dataset_id, model=str(tiny_model_path), device="cpu", config=FAST)
        final = runs.wait(store, run_id, poll_s=0.2)
        assert final.status == "done", final.error
        assert final.rows_done == final.rows_total == 12
        scores = store.scores(run_id)
        assert sorted(scores["row_index"]) == list(range(12))
        assert scores["confidence"].between(0, 1).all()
        assert handoff.pending_chunks(runs.run_dir(store, run_id)) == []  # everything ingested
        # starting it again finds nothing to do and leaves the run, and its timing, as it was
        finished = store.latest_run(dataset_id)["finished_at"]
        time.sleep(0.01)
        again = runs.start_run(store, db, dataset_id, model=str(tiny_model_path), device="cpu", config=FAST)
        assert again == run_id
        assert store.latest_run(dataset_id)["finished_at"] == finished


def test_limit_then_larger_limit_extends_the_same_run(tmp_path, gsm8k_file, tiny_model_path):
    db = tmp_path / "c.duckdb"
    with Store(db) as store:
        dataset_id = workspace.import_file(store, gsm8k_file)
        model = str(tiny_model_path)
        first = runs.start_run(store, db, dataset_id, model=model, device="cpu", config=FAST, limit=3)
        assert runs.wait(store, first, poll_s=0.2).status == "done"
        scored_at = store.scores(first).set_index("row_index")["scored_at"]
        assert sorted(scored_at.index) == [0, 1, 2]
        second = runs.start_run(store, db, dataset_id, model=model, device="cpu", config=FAST, limit=5)
        assert second == first
        assert runs.wait(store, second, poll_s=0.2).status == "done"
        after = store.scores(first).set_index("row_index")["scored_at"]
        assert sorted(after.index) == [0, 1, 2, 3, 4]
        assert (after.loc[[0, 1, 2]] == scored_at).all()  # the first rows were not scored again


def test_killed_worker_resumes_without_rescoring(tmp_path, gsm8k_file, tiny_model_path):
    db = tmp_path / "c.duckdb"
    with Store(db) as store:
        dataset_id = workspace.import_file(store, gsm8k_file)
        config = ScoringConfig(samples=1, max_new_tokens=4, batch_size=1)
        run_id = runs.start_run(store, db, dataset_id, model=str(tiny_model_path), device="cpu", config=config)
        directory = runs.run_dir(store, run_id)
        wait_for_chunks(directory, 2)
        os.kill(handoff.read_progress(directory)["pid"], signal.SIGKILL)  # no chance to say goodbye
        while handoff.worker_state(directory) == "running":
            time.sleep(0.05)
        state = runs.progress(store, run_id)
        assert state.status == "failed" and "resume" in state.error
        partial = store.scores(run_id).set_index("row_index")["scored_at"]
        assert 2 <= len(partial) < 12

        resumed = runs.start_run(store, db, dataset_id, model=str(tiny_model_path), device="cpu", config=config)
        assert resumed == run_id
        job_rows = [json.loads(line)["row_index"] for line in (directory / "rows.jsonl").read_text().splitlines()]
        assert set(job_rows).isdisjoint(partial.index)  # only unscored rows are handed to the new worker
        assert runs.wait(store, run_id, poll_s=0.2).status == "done"
        final = store.scores(run_id).set_index("row_index")["scored_at"]
        assert len(final) == 12
        assert (final.loc[partial.index] == partial).all()


def test_cancel_stops_the_worker_and_keeps_finished_rows(tmp_path, gsm8k_file, tiny_model_path):
    db = tmp_path / "c.duckdb"
    with Store(db) as store:
        dataset_id = workspace.import_file(store, gsm8k_file)
        config = ScoringConfig(samples=1, max_new_tokens=4, batch_size=1)
        run_id = runs.start_run(store, db, dataset_id, model=str(tiny_model_path), device="cpu", config=config)
        directory = runs.run_dir(store, run_id)
        wait_for_chunks(directory, 1)
        runs.cancel(store, run_id)
        assert handoff.worker_state(directory) != "running"
        state = runs.progress(store, run_id)
        assert state.status == "cancelled"
        assert 1 <= state.rows_done < 12


def test_worker_failure_is_reported_with_its_reason(tmp_path, gsm8k_file):
    db = tmp_path / "c.duckdb"
    with Store(db) as store:
        dataset_id = workspace.import_file(store, gsm8k_file)
        run_id = runs.start_run(store, db, dataset_id, model=str(tmp_path / "missing-model"), device="cpu")
        final = runs.wait(store, run_id, poll_s=0.2)
        assert final.status == "failed"
        assert "Could not load model" in final.error
