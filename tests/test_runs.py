"""Runs through the real worker process (tiny model): chunks ingested, killed runs resume without re-scoring,
one bad row never fails a run, and a worker that dies says where its log is and what it last said."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from clear_core import engine, handoff, runs, worker, workspace
from clear_core.confidence import ScoringConfig
from clear_core.store import ReviewQuery, Store
from tests.conftest import gsm8k_records

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


def test_killed_worker_resumes_and_scores_every_row_exactly_once(tmp_path, tiny_model_path):
    """The standing crash test: SIGKILL the real worker after its first chunks and before its last, resume, and
    every row of the dataset ends with exactly one score, the rows scored before the kill untouched."""
    source = tmp_path / "gsm8k_16.json"
    source.write_text(json.dumps(gsm8k_records(16)), encoding="utf-8")
    db = tmp_path / "c.duckdb"
    with Store(db) as store:
        dataset_id = workspace.import_file(store, source)
        config = ScoringConfig(samples=0, max_new_tokens=4, batch_size=1)
        run_id = runs.start_run(store, db, dataset_id, model=str(tiny_model_path), device="cpu", config=config)
        directory = runs.run_dir(store, run_id)
        wait_for_chunks(directory, 2)
        pid = handoff.read_progress(directory)["pid"]
        os.kill(pid, signal.SIGKILL)  # no chance to say goodbye
        while handoff.worker_state(directory) == "running":
            time.sleep(0.05)
        assert handoff.read_progress(directory)["status"] == "running"  # killed mid-run, not after it finished
        state = runs.progress(store, run_id)
        assert state.status == "failed" and "Start the run again to resume" in state.error
        assert str(directory.resolve() / "worker.log") in state.error
        partial = store.scores(run_id).set_index("row_index")["scored_at"]
        assert 2 <= len(partial) < 16

        resumed = runs.start_run(store, db, dataset_id, model=str(tiny_model_path), device="cpu", config=config)
        assert resumed == run_id
        job_rows = [
            json.loads(line)["row_index"] for line in (directory / "rows.jsonl").read_text().split("\n") if line
        ]
        assert set(job_rows).isdisjoint(partial.index)  # only unscored rows are handed to the new worker
        assert set(job_rows) | set(partial.index) == set(range(16))
        assert runs.wait(store, run_id, poll_s=0.2).status == "done"
        final = store.scores(run_id).set_index("row_index")["scored_at"]
        assert (final.loc[partial.index] == partial).all()  # not scored again
        # exactly once: the rows table and the scores table hold the same rows, one score each, none failed
        counts = store._df(
            "SELECT r.row_index, count(s.row_index) AS n FROM rows r LEFT JOIN scores s "
            "ON s.row_index = r.row_index AND s.run_id = ? WHERE r.dataset_id = ? GROUP BY r.row_index",
            [run_id, dataset_id],
        )
        assert len(counts) == 16 and (counts["n"] == 1).all()
        assert store.failed_count(run_id) == 0 and store.scored_count(run_id) == 16


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


# -- one bad row never fails a run --------------------------------------------------------------------------------


def _rows(n: int) -> list[dict]:
    return [{"row_index": i, "prompt": f"q{i}", "response": f"a{i}"} for i in range(n)]


def test_a_batch_that_raises_is_split_until_the_bad_row_stands_alone():
    calls = []

    def score(lm, rows, config):
        calls.append([r["row_index"] for r in rows])
        if any(r["row_index"] == 5 for r in rows):
            raise ValueError("cannot tokenize row 5")
        return [{"row_index": r["row_index"], "confidence": 0.5} for r in rows]

    out = engine.score_isolating(score, None, _rows(8), None)
    assert [r["row_index"] for r in out] == list(range(8))
    assert out[5] == {"row_index": 5, "error": "ValueError: cannot tokenize row 5"}
    assert all(r.get("confidence") == 0.5 for i, r in enumerate(out) if i != 5)
    assert calls == [list(range(8)), [0, 1, 2, 3], [4, 5, 6, 7], [4, 5], [4], [5], [6, 7]]


def test_score_batches_yields_length_sorted_batches_and_stops_when_asked():
    rows = [{"row_index": i, "prompt": "q" * (10 - i), "response": "a"} for i in range(5)]
    config = ScoringConfig(batch_size=2)

    def score(lm, batch, config):
        return [{"row_index": r["row_index"]} for r in batch]

    batches = [[r["row_index"] for r in b] for b in engine.score_batches(None, rows, config, score=score)]
    assert batches == [[4, 3], [2, 1], [0]]
    asked = iter([False, True])
    with pytest.raises(handoff.Cancelled):
        list(engine.score_batches(None, rows, config, score=score, stop_requested=lambda: next(asked)))


def test_a_gpu_gets_more_rows_per_call_and_a_cpu_keeps_the_configured_batches():
    class OnDevice:
        def __init__(self, kind):
            self.device = SimpleNamespace(type=kind)

    rows = [{"row_index": i, "prompt": "q", "response": "a"} for i in range(300)]
    config = ScoringConfig(batch_size=8)

    def score(lm, batch, config):
        return [{"row_index": r["row_index"]} for r in batch]

    on_cpu = [len(b) for b in engine.score_batches(OnDevice("cpu"), rows, config, score=score)]
    on_gpu = [len(b) for b in engine.score_batches(OnDevice("cuda"), rows, config, score=score)]
    assert on_cpu == [8] * 37 + [4]
    assert on_gpu == [engine.GPU_ROWS_PER_CALL, 300 - engine.GPU_ROWS_PER_CALL]
    assert config.batch_size == 8  # the caller's config is left as it was


def test_a_cancel_or_a_full_disk_is_not_a_row_problem():
    def cancelled(lm, rows, config):
        raise handoff.Cancelled()

    def disk_full(lm, rows, config):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(handoff.Cancelled):
        engine.score_isolating(cancelled, None, _rows(4), None)
    with pytest.raises(OSError):
        engine.score_isolating(disk_full, None, _rows(4), None)


def test_a_row_the_engine_cannot_score_is_stored_as_failed_and_retried(
    tmp_path, tiny_model_path, monkeypatch, in_process_worker
):
    records = gsm8k_records(6)
    records[2]["output"] += "\u2028Line two\u2029para\u0085next"  # these once broke the hand-off files
    source = tmp_path / "six.json"
    source.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    real_score_rows = engine.score_rows

    def poisoned(lm, rows, config):
        if any(r["row_index"] == 4 for r in rows):
            raise RuntimeError("probability tensor contains inf")
        return real_score_rows(lm, rows, config)

    monkeypatch.setattr(engine, "score_rows", poisoned)
    db = tmp_path / "c.duckdb"
    config = ScoringConfig(samples=0, max_new_tokens=4, batch_size=4)
    with Store(db) as store:
        dataset_id = workspace.import_file(store, source)
        run_id = runs.start_run(store, db, dataset_id, model=str(tiny_model_path), device="cpu", config=config)
        state = runs.progress(store, run_id)
        assert state.status == "done"
        assert (state.rows_done, state.rows_failed, state.rows_total) == (5, 1, 6)
        assert state.error.startswith(
            "1 row could not be scored (first: row 4, RuntimeError: probability tensor contains inf). "
            "It is listed in Review under 'scoring failed'"
        )
        assert state.error.endswith("Starting the run again retries only it.")
        assert "resume" not in state.error
        assert store.scored_count(run_id) == 5 and store.failed_count(run_id) == 1
        failed = store.scores(run_id).set_index("row_index").loc[4]
        assert failed["error"] == "RuntimeError: probability tensor contains inf" and pd_isna(failed["confidence"])
        assert store.scores(run_id).set_index("row_index").loc[2, "confidence"] >= 0  # the U+2028 row is scored
        # never labelled by thresholds: not in the queue, the action counts or the plots; listed as failed
        queue, total = store.review_queue(ReviewQuery(run_id, 0.5, 0.7), limit=10)
        assert total == 5 and 4 not in set(queue["row_index"])
        assert sum(store.action_counts(run_id, 0.5, 0.7).values()) == 5
        assert 4 not in set(store.confidence_values(run_id)["row_index"])
        listed, n = store.review_queue(ReviewQuery(run_id, 0.5, 0.7, status="failed"), limit=10)
        assert n == 1 and listed.loc[0, "error"].startswith("RuntimeError") and listed.loc[0, "action"] is None

        monkeypatch.setattr(engine, "score_rows", real_score_rows)  # the cause is fixed: start again
        assert runs.start_run(store, db, dataset_id, model=str(tiny_model_path), device="cpu", config=config) == run_id
        handed = [json.loads(line)["row_index"] for line in (runs.run_dir(store, run_id) / "rows.jsonl").open()]
        assert handed == [4]  # only the failed row is retried
        state = runs.progress(store, run_id)
        assert state.status == "done" and state.error is None
        assert store.scored_count(run_id) == 6 and store.failed_count(run_id) == 0


def pd_isna(value) -> bool:
    return value is None or value != value


def test_a_run_where_no_row_can_be_scored_fails(tmp_path, gsm8k_file, tiny_model_path, monkeypatch, in_process_worker):
    def broken(lm, rows, config):
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(engine, "score_rows", broken)
    db = tmp_path / "c.duckdb"
    with Store(db) as store:
        dataset_id = workspace.import_file(store, gsm8k_file)
        config = ScoringConfig(samples=0, max_new_tokens=4, batch_size=4)
        run_id = runs.start_run(store, db, dataset_id, model=str(tiny_model_path), device="cpu", config=config)
        state = runs.progress(store, run_id)
        assert state.status == "failed" and state.rows_failed == 12
        assert state.error.startswith("No row could be scored: 12 rows failed (first: row 0, RuntimeError: CUDA")


# -- a worker that dies -------------------------------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _running_run(store, db, source) -> tuple[int, Path]:
    """A run marked running whose run directory looks as a vanished worker left it (progress.json: 'starting')."""
    dataset_id = workspace.import_file(store, source)
    run_id = store.create_run(dataset_id, "m", {})
    directory = runs.work_root(db) / f"run-{run_id}"
    store.set_run_work_dir(run_id, str(directory))
    rows = [
        {"row_index": int(r.row_index), "prompt": r.prompt, "response": r.response}
        for r in store.unscored_rows(run_id).itertuples()
    ]
    handoff.prepare_run_dir(directory, {"run_id": run_id, "model": "m", "params": {}}, rows)
    handoff.write_atomic(directory / "worker.pid", str(_dead_pid()))
    store.set_run_status(run_id, "running")
    return run_id, directory


def test_a_worker_gone_after_a_cancel_request_was_cancelled_and_one_gone_without_failed(tmp_path, gsm8k_file):
    """A cancel's SIGTERM can end the worker before it writes "cancelled" (while it loads the model): it dies, or
    fails on the signal. Either way that run was cancelled. A worker that failed without a cancel request failed."""
    for n, worker_said in enumerate([None, {"status": "failed", "error": "KeyboardInterrupt"}]):
        db = tmp_path / f"c{n}.duckdb"
        with Store(db) as store:
            run_id, directory = _running_run(store, db, gsm8k_file)
            if worker_said:
                handoff.write_atomic(directory / "progress.json", json.dumps(worker_said))
            handoff.request_cancel(directory)  # the worker is already gone: only the request is left
            assert runs.progress(store, run_id).status == "cancelled"
    db = tmp_path / "failed.duckdb"
    with Store(db) as store:
        run_id, directory = _running_run(store, db, gsm8k_file)
        handoff.write_atomic(directory / "progress.json", json.dumps({"status": "failed", "error": "boom"}))
        state = runs.progress(store, run_id)
        assert state.status == "failed" and "boom" in state.error


ENOSPC_TRACEBACK = """\
Loading model...
Traceback (most recent call last):
  File "clear_core/worker.py", line 97, in run
    handoff.write_chunk(run_dir, scored)
OSError: [Errno 28] No space left on device
clear-worker: could not write progress.json ([Errno 28] No space left on device); status failed: OSError
"""


def _disk_full(path, text):
    raise handoff.DiskFullError(path.parent)


def test_a_worker_that_died_of_a_full_disk_says_which_disk(tmp_path, gsm8k_file, monkeypatch):
    db = tmp_path / "c.duckdb"
    with Store(db) as store:
        run_id, directory = _running_run(store, db, gsm8k_file)
        (directory / "worker.log").write_text(ENOSPC_TRACEBACK, encoding="utf-8")
        monkeypatch.setattr(handoff, "write_atomic", _disk_full)  # the owner cannot write to that disk either
        state = runs.progress(store, run_id)
        assert state.status == "failed"
        assert state.error.startswith(f"The disk holding {directory} is full (no space left on device).")
        assert "Free space and start the run again; finished rows are kept." in state.error
        assert str(directory.resolve() / "worker.log") in state.error


def test_a_worker_that_cannot_write_anything_still_gets_the_disk_full_message(tmp_path, gsm8k_file, monkeypatch):
    """The worker itself on a full disk: not even progress.json can be written, so worker.log carries the news."""
    db = tmp_path / "c.duckdb"
    with Store(db) as store:
        run_id, directory = _running_run(store, db, gsm8k_file)

        monkeypatch.setattr(handoff, "write_atomic", _disk_full)
        with open(directory / "worker.log", "w") as log, contextlib.redirect_stderr(log):
            assert worker.run(directory) == "failed"
        monkeypatch.undo()
        assert handoff.read_progress(directory)["status"] == "starting"  # the owner's last word, not the worker's
        assert "clear-worker: could not write progress.json" in (directory / "worker.log").read_text()
        state = runs.progress(store, run_id)
        assert state.status == "failed" and state.error.startswith(f"The disk holding {directory} is full")


def test_a_worker_death_names_the_log_and_quotes_its_last_error(tmp_path, gsm8k_file):
    db = tmp_path / "c.duckdb"
    with Store(db) as store:
        run_id, directory = _running_run(store, db, gsm8k_file)
        (directory / "worker.log").write_text(
            'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: an old, handled error\n'
            "Fatal Python error: Segmentation fault\n\nCurrent thread 0x00007f (most recent call first):\n"
            '  File "torch/nn/modules/module.py", line 1553 in _call_impl\n',
            encoding="utf-8",
        )
        error = runs.progress(store, run_id).error
        log = directory.resolve() / "worker.log"
        assert f"Its last error in {log}: Fatal Python error: Segmentation fault" in error
        assert error.endswith("Start the run again to resume; finished rows are kept.")


def test_a_worker_that_dies_twice_without_progress_is_not_sent_back_to_resume(tmp_path, gsm8k_file, tiny_model_path):
    """Killed from outside (as the out-of-memory killer does) right after each start: the second time, the message
    says so plainly instead of "start again to resume"."""
    db = tmp_path / "c.duckdb"
    with Store(db) as store:
        dataset_id = workspace.import_file(store, gsm8k_file)
        errors = []
        for _ in range(2):
            run_id = runs.start_run(store, db, dataset_id, model=str(tiny_model_path), device="cpu", config=FAST)
            directory = runs.run_dir(store, run_id)
            os.kill(int((directory / "worker.pid").read_text()), signal.SIGKILL)  # still importing: no row scored
            while handoff.worker_state(directory) == "running":
                time.sleep(0.05)
            errors.append(runs.progress(store, run_id).error)
        log = directory.resolve() / "worker.log"
        assert f"It wrote no error to {log}" in errors[0] and "Start the run again to resume" in errors[0]
        assert errors[1].startswith("The scoring worker died 2 times in a row without scoring a new row")
        assert f"It wrote no error to {log}" in errors[1] and "resume" not in errors[1]
        assert store.scored_count(run_id) == 0
