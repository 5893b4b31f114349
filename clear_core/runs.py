"""Starting, following, ingesting and cancelling scoring runs, from the side that owns the database.

The app and the CLI both use these functions: they create (or resume) a run in the store, hand the unscored
rows to a worker process through a run directory, and pull finished chunks into the store as they appear.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from clear_core import EMBEDDED_MODEL, handoff
from clear_core.confidence import ScoringConfig


@dataclass
class RunProgress:
    """What a progress bar needs: rows scored of rows wanted, speed, ETA, status and any error."""

    run_id: int
    status: str  # pending | running | done | failed | cancelled
    rows_done: int
    rows_total: int
    rows_per_s: float | None
    eta_s: float | None
    error: str | None
    device: str | None = None

    @property
    def fraction(self) -> float:
        return self.rows_done / self.rows_total if self.rows_total else 1.0


def work_root(db_path: str | Path) -> Path:
    """Run directories live beside the database: `<db>.work/run-<id>/`."""
    return Path(f"{db_path}.work")


def run_dir(store, run_id: int) -> Path:
    return Path(store.get_run(run_id)["work_dir"])


def start_run(
    store,
    db_path: str | Path,
    dataset_id: int,
    *,
    model: str | None = None,
    device: str = "auto",
    config: ScoringConfig | None = None,
    limit: int | None = None,
) -> int:
    """Start scoring a dataset, resuming the latest run with the same model and settings if there is one.

    `limit` scores only the first N rows of the dataset. Returns the run id; the worker runs in the background.
    """
    model = model or EMBEDDED_MODEL
    config = config or ScoringConfig()
    params = config.to_params()
    run = store.find_resumable_run(dataset_id, model, params)
    if run is None:
        run_id = store.create_run(dataset_id, model, params, work_dir=None)
        store.set_run_work_dir(run_id, str(work_root(db_path) / f"run-{run_id}"))
    else:
        run_id = run["run_id"]
    directory = run_dir(store, run_id)
    ingest(store, run_id)
    if directory.exists() and handoff.worker_state(directory) == "running":
        return run_id  # already being scored (e.g. a second click, or a reload)
    todo = store.unscored_rows(run_id)
    if limit is not None:
        todo = todo[todo["row_index"] < limit]  # row indices are 0..n-1 in input order
    if todo.empty:
        if run is None or run["status"] != "done":
            store.set_run_status(run_id, "done")  # a finished run keeps its finish time: there was nothing to do
        return run_id
    rows = [
        {
            "row_index": int(r.row_index),
            "prompt_messages": r.prompt_messages,
            "prompt": r.prompt,
            "response": r.response,
        }
        for r in todo.itertuples()
    ]
    job = {"run_id": run_id, "model": model, "device": device, "params": params}
    handoff.prepare_run_dir(directory, job, rows)
    store.set_run_status(run_id, "running")
    handoff.start_worker(directory)
    return run_id


def ingest(store, run_id: int) -> int:
    """Move finished chunks into the store (idempotent), then bring the run's status up to date; returns rows added."""
    run = store.get_run(run_id)
    if not run.get("work_dir"):
        return 0
    directory = Path(run["work_dir"])
    if not directory.exists():
        return 0
    added = 0
    for chunk in handoff.pending_chunks(directory):
        added += store.add_scores(run_id, handoff.read_chunk(chunk))
        # only after the scores are committed: a crash in between just re-ingests the same rows (idempotent)
        chunk.unlink(missing_ok=True)
    if run["status"] == "running":
        state = handoff.worker_state(directory)
        if state == "done":  # the worker scored every row it was given (all rows, or the first --limit)
            store.set_run_status(run_id, "done")
        elif state == "cancelled" or (state == "dead" and handoff.cancel_requested(directory)):
            # a worker stopped by Cancel while still starting up dies before it can say so
            store.set_run_status(run_id, "cancelled")
        elif state == "failed":
            store.set_run_status(run_id, "failed", error=handoff.read_progress(directory).get("error"))
        elif state == "dead":
            store.set_run_status(
                run_id,
                "failed",
                error="The scoring worker stopped unexpectedly (see worker.log in the run directory). "
                "Start the run again to resume; finished rows are kept.",
            )
    return added


def progress(store, run_id: int) -> RunProgress:
    """Ingest what is ready and report progress against the rows this run was asked to score."""
    ingest(store, run_id)
    run = store.get_run(run_id)
    directory = Path(run["work_dir"]) if run.get("work_dir") else None
    worker = handoff.read_progress(directory) if directory and directory.exists() else {}
    done = store.scored_count(run_id)
    wanted = done + int(worker.get("rows_total", 0)) - int(worker.get("rows_done", 0))
    if run["status"] != "running":
        wanted = max(
            done,
            done + len(store.unscored_rows(run_id)) if run["status"] == "pending" else done,
        )
    rate = worker.get("rows_per_s")
    return RunProgress(
        run_id=run_id,
        status=run["status"],
        rows_done=done,
        rows_total=max(wanted, done),
        rows_per_s=rate,
        eta_s=worker.get("eta_s") if run["status"] == "running" else None,
        error=run.get("error"),
        device=worker.get("device"),
    )


def cancel(store, run_id: int, wait_s: float = 10.0) -> None:
    """Stop the run's worker (the batch in flight is lost, finished batches are kept) and mark it cancelled."""
    run = store.get_run(run_id)
    directory = Path(run["work_dir"]) if run.get("work_dir") else None
    if directory and directory.exists():
        handoff.request_cancel(directory)
        deadline = time.time() + wait_s
        while time.time() < deadline and handoff.worker_state(directory) == "running":
            time.sleep(0.2)
    ingest(store, run_id)
    if store.get_run(run_id)["status"] in ("running", "pending"):
        store.set_run_status(run_id, "cancelled")


def wait(store, run_id: int, on_progress=None, poll_s: float = 0.5) -> RunProgress:
    """Block until the run stops, ingesting as chunks arrive; `on_progress(RunProgress)` is called each poll."""
    while True:
        state = progress(store, run_id)
        if on_progress:
            on_progress(state)
        if state.status != "running":
            return state
        time.sleep(poll_s)


def clean_run_dir(store, run_id: int) -> None:
    """Delete a finished run's directory (its chunks are all in the database by then)."""
    run = store.get_run(run_id)
    if run.get("work_dir") and run["status"] == "done":
        shutil.rmtree(run["work_dir"], ignore_errors=True)
