"""Starting, following, ingesting and cancelling scoring runs, from the side that owns the database.

The app and the CLI both use these functions: they create (or resume) a run in the store, hand the unscored
rows to a worker process through a run directory, and pull finished chunks into the store as they appear.

How a run ends, and what it tells the user: ``done`` (every row it was given was handled; rows the worker could not
score are stored as failed, named in the run's message, and retried by starting the run again), ``cancelled``,
``failed`` with the worker's reason (e.g. the model did not load), or ``failed`` because the worker died without a
word (killed, segfault, out of memory): then the message names worker.log's full path and quotes its last error,
and a worker that died twice in a row without storing a new row is not sent back with "start again to resume".
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from clear_core import EMBEDDED_MODEL, backends, calibration, handoff, noise, permissions
from clear_core.confidence import DEFAULT_COMBINER, ScoringConfig
from clear_core.form import FormModel

if TYPE_CHECKING:
    from clear_core.store import Store


@dataclass
class RunProgress:
    """What a progress bar needs: rows scored of rows wanted, speed, ETA, status and any error.

    rows_failed: rows of the run that could not be scored (stored as failed; retried when the run is started
    again). They count in rows_total, not in rows_done.
    """

    run_id: int
    status: str  # pending | running | done | failed | cancelled
    rows_done: int
    rows_total: int
    rows_per_s: float | None
    eta_s: float | None
    error: str | None
    device: str | None = None
    rows_failed: int = 0
    replicas: int | None = None  # the ray backend: model replicas asked for, and how many are alive now
    replicas_alive: int | None = None

    @property
    def fraction(self) -> float:
        return self.rows_done / self.rows_total if self.rows_total else 1.0

    @property
    def where(self) -> str | None:
        """Where rows are scored, for a progress line: 'cpu', or 'Ray, 2 of 2 replicas alive, cpu'."""
        if self.replicas is None:
            return self.device
        alive = "?" if self.replicas_alive is None else self.replicas_alive
        replicas = f"Ray, {alive} of {self.replicas} replica{'s' if self.replicas != 1 else ''} alive"
        return f"{replicas}, {self.device}" if self.device else replicas


def work_root(db_path: str | Path) -> Path:
    """Run directories live beside the database: `<db>.work/run-<id>/`."""
    return Path(f"{db_path}.work")


def run_dir(store: Store, run_id: int) -> Path:
    return Path(store.get_run(run_id)["work_dir"])


def start_run(
    store: Store,
    db_path: str | Path,
    dataset_id: int,
    *,
    model: str | None = None,
    device: str = "auto",
    config: ScoringConfig | None = None,
    limit: int | None = None,
    backend: str = backends.DEFAULT_BACKEND,
    backend_options: dict | None = None,
    actor: permissions.Actor | None = None,
) -> int:
    """Start scoring a dataset, resuming the latest run with the same model and settings if there is one.

    `limit` scores only the first N rows of the dataset. `backend` names what scores the rows (backends.py); it is
    not part of what identifies the run, so a run resumes on any backend; `backend_options` are its own settings
    (e.g. ``backends.RayOptions(...).to_job()``), kept in job.json. Returns the run id; scoring goes on in the
    background. ``actor`` must be allowed to start runs (None: the file's owner); a started worker is audited.
    """
    actor = actor or permissions.owner_actor()
    permissions.require(actor, "start_run")
    model = model or EMBEDDED_MODEL
    config = config or ScoringConfig()
    params = config.to_params()
    run = store.find_resumable_run(dataset_id, model, params)
    if run is None:
        run_id = store.create_run(dataset_id, model, params, work_dir=None, actor=actor)
        store.set_run_work_dir(run_id, str(work_root(db_path) / f"run-{run_id}"))
    else:
        run_id = run["run_id"]
    directory = run_dir(store, run_id)
    ingest(store, run_id)
    if directory.exists() and backends.of_run(directory).state(directory) == "running":
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
    sample = store.sample_rows(dataset_id, SAMPLE_ROWS)
    rows = _calibration_rows(store, run_id, sample) + rows  # scored with the run, stored apart (ingest)
    scorer = backends.get(backend)  # an unknown name fails here, before anything is written
    job = {"run_id": run_id, "model": model, "device": device, "params": params, "backend": scorer.name}
    job["backend_options"] = backend_options or {}
    if len(sample) >= FORM_MIN_ROWS:
        job["form"] = FormModel.fit(list(sample["response"])).to_json()
    if config.context_examples > 0:  # the worker picks the most confident of these (engine.choose_examples)
        pool = sample.head(EXAMPLE_POOL_ROWS)
        fields = ("prompt_messages", "prompt", "response")
        job["example_pool"] = [
            {"row_index": int(r.row_index), **{f: getattr(r, f) for f in fields}} for r in pool.itertuples()
        ]
    handoff.prepare_run_dir(directory, job, rows)  # a full disk raises handoff.DiskFullError, naming the directory
    store.set_run_status(run_id, "running")
    scorer.start(directory, rows_stored=store.scored_count(run_id))
    detail = {"model": model, "rows": len(rows), "limit": limit, "resumed": run is not None, "device": device}
    store.record_audit(actor, "start_run", dataset_id=dataset_id, run_id=run_id, detail=detail)
    return run_id


# A run learns the dataset's own form (form.py) and calibrates on corrupted copies of its own rows (calibration.py),
# both from a fixed sample of the dataset; below these sizes there is too little to learn from and neither is done.
SAMPLE_ROWS = 2000
FORM_MIN_ROWS = 50
# Rows of that sample from which a run with --context-examples picks the ones shown before each prompt: scored once
# more at its start (about a minute on a CPU), a whole small dataset (bench/form_context.py chose from 60 rows).
EXAMPLE_POOL_ROWS = 64
# Corrupted copies scored with each run of a dataset of at least CALIBRATION_MIN_ROWS rows (as many as the sample
# holds, if fewer). 128 rather than 32: the spread of the fitted map's ECE from draw to draw shrinks 2-3×, and a copy
# costs one row of the likelihood pass (no proposal is made for it); bench/results/calibration-copies-*.md.
CALIBRATION_COPIES = 128
CALIBRATION_MIN_ROWS = 2 * calibration.MIN_ORIGINALS
CALIBRATION_SAMPLE = 5000  # the dataset's scored rows a synthetic fit reads at most


def _calibration_rows(store: Store, run_id: int, sample) -> list[dict]:
    """The run's corrupted copies still to score (made and stored on its first start): the first CALIBRATION_COPIES
    rows of the sample, each corrupted with one of the classic noise kinds in turn, with row indices -1, -2, ..."""
    if store.get_run(run_id)["rows_total"] < CALIBRATION_MIN_ROWS or len(sample) < CALIBRATION_MIN_ROWS:
        return []
    if not store.calibration_rows(run_id):
        context = noise.NoiseContext(list(sample["prompt"]), list(sample["response"]))
        copies = []
        for j, r in enumerate(sample.head(CALIBRATION_COPIES).itertuples()):
            kind = noise.CLASSIC_KINDS[j % len(noise.CLASSIC_KINDS)]
            row = {"prompt": r.prompt, "response": r.response}
            rng = random.Random(f"calibration:{run_id}:{r.row_index}")
            text, used = noise.corrupt(row, kind, rng, context.for_row(j), noise.CLASSIC_KINDS)
            copies.append(
                {
                    "row_index": -(j + 1),
                    "source_row_index": int(r.row_index),
                    "kind": used,
                    "prompt_messages": r.prompt_messages,
                    "prompt": r.prompt,
                    "response": text,
                }
            )
        store.add_calibration_rows(run_id, copies)
    return [
        {key: r[key] for key in ("row_index", "prompt_messages", "prompt", "response")}
        for r in store.calibration_rows(run_id, unscored_only=True)
    ]


def recalibrate(store: Store, run_id: int) -> calibration.Calibration | None:
    """Fit the run's calibration on its corrupted copies when enough are scored and there is news since the last fit
    (more copies, or a quarter more of the dataset's rows); a run whose map reviewers fitted keeps it. Returns the
    new calibration, or None when nothing changed."""
    n_originals, n_copies, _ = store.calibration_counts(run_id)  # counted first: every ingest asks
    if n_copies < calibration.MIN_SYNTHETIC or n_originals < calibration.MIN_ORIGINALS:
        return None
    current = store.calibration(run_id)
    if current is not None and current["source"] == "reviewers":
        return None
    sampled = min(n_originals, CALIBRATION_SAMPLE)  # what calibration_inputs will read
    if current is not None and current["n_bad"] == n_copies and sampled < 1.25 * current["n_good"]:
        return None
    originals, corrupted = store.calibration_inputs(run_id, sample=CALIBRATION_SAMPLE)
    shipped = calibration.shipped(DEFAULT_COMBINER.platt_a, DEFAULT_COMBINER.platt_b)
    fitted = calibration.fit_synthetic(originals, corrupted, shipped)
    # a fallback is saved too, with the counts it saw, so the page can say why and the next ingest does not refit
    fitted = dataclasses.replace(fitted, n_good=len(originals), n_bad=len(corrupted))
    store.save_calibration(run_id, fitted)
    return fitted


def current_calibration(store: Store, run_id: int) -> calibration.Calibration:
    """The run's calibration: the latest it saved, or the combiner's shipped map."""
    return calibration_from(store.calibration(run_id))


def calibration_from(saved: dict | None) -> calibration.Calibration:
    """``current_calibration`` from what ``Store.calibration`` returned (a page that has it kept)."""
    if saved is None:
        return calibration.shipped(DEFAULT_COMBINER.platt_a, DEFAULT_COMBINER.platt_b)
    return calibration.Calibration.from_json(saved)


def refit_from_reviewers(store: Store, run_id: int, *, actor: permissions.Actor) -> calibration.Calibration:
    """Refit the run's calibration on reviewers' decisions (a lead's action, like moving γ/η), with the current map
    as the prior; saved and applied to every row when there are enough decisions of each kind. Returns the fit (its
    ``note`` says why it was not used when it was not)."""
    permissions.require(actor, "set_thresholds")
    prior = current_calibration(store, run_id)
    logits, bad = store.reviewed_labels(run_id)
    points, _ = store.calibration_inputs(run_id, sample=500)
    fitted = calibration.fit_reviewed(logits, bad, prior, points)
    if fitted.source == "reviewers":
        store.save_calibration(run_id, fitted, actor=actor)
        detail = {"a": fitted.a, "b": fitted.b, "kept": fitted.n_good, "removed_or_corrected": fitted.n_bad}
        store.record_audit(actor, "recalibrate", run_id=run_id, detail=detail)
    return fitted


# Score rows that one ingest transaction takes at most: a backlog of chunk files (the owner was away, or the worker
# is fast) goes into the store in a few set-based transactions instead of one per chunk, in bounded memory.
INGEST_BATCH_ROWS = 50_000


def ingest(store: Store, run_id: int) -> int:
    """Move finished chunks into the store (idempotent), then bring the run's status up to date; returns rows added.

    Chunks go in oldest first, up to ``INGEST_BATCH_ROWS`` rows per transaction (``Store.add_scores``; a row in two
    chunks keeps the later record); each batch's files are deleted once it is committed."""
    run = store.get_run(run_id, counts=False)  # its status and folder; progress() counts
    if not run.get("work_dir"):
        return 0
    directory = Path(run["work_dir"])
    if not directory.exists():
        return 0
    # The worker's state is read before the chunks are listed: a worker that says it stopped has written its last
    # chunk, so the listing below is complete. Read after, a worker finishing in between would end the run with
    # its last chunk left unread.
    state = backends.of_run(directory).state(directory) if run["status"] == "running" else None
    added = 0
    batch: list[Path] = []
    records: list[dict] = []
    for chunk in handoff.pending_chunks(directory):
        records += handoff.read_chunk(chunk)
        batch.append(chunk)
        if len(records) >= INGEST_BATCH_ROWS:
            added += _store_chunks(store, run_id, batch, records)
            batch, records = [], []
    if batch:
        added += _store_chunks(store, run_id, batch, records)
    if state is not None:
        if state in ("dead", "failed") and handoff.cancel_requested(directory):
            # a worker stopped by Cancel while still starting up dies, or fails on the signal, before it can say so
            state = "cancelled"
        if state != "running":
            status, error = _ending(store, run_id, directory, state)
            store.set_run_status(run_id, status, error=error)
    return added


def _store_chunks(store: Store, run_id: int, chunks: list[Path], records: list[dict]) -> int:
    """Store the records of ``chunks`` in one transaction, then delete the files; returns the rows stored (corrupted
    copies, row_index < 0, go to the run's calibration instead, which is refitted when they bring news)."""
    copies = [r for r in records if handoff.is_calibration_copy(r)]
    records = [r for r in records if not handoff.is_calibration_copy(r)]
    try:
        if copies:
            store.add_calibration_scores(run_id, copies)
        added = store.add_scores(run_id, records)
        recalibrate(store, run_id)
    except Exception as exc:
        if handoff.is_disk_full(exc):  # DuckDB reports a full disk as text
            raise handoff.DiskFullError(Path(store.path).resolve().parent) from exc
        raise
    # only after the scores are committed: a crash in between just re-ingests the same rows (idempotent)
    for chunk in chunks:
        chunk.unlink(missing_ok=True)
    return added


def _ending(store: Store, run_id: int, directory: Path, state: str) -> tuple[str, str | None]:
    """(status, message) for a run whose worker stopped in `state` (done, cancelled, failed or dead)."""
    attempt = handoff.read_attempt(directory)
    stalled = 0
    if state == "dead" and store.scored_count(run_id) <= int(attempt.get("rows_stored", 0)):
        stalled = int(attempt.get("stalled_deaths", 0)) + 1
    with contextlib.suppress(OSError):  # best effort: on a full disk the run must still end with the message
        handoff.write_attempt(directory, stalled_deaths=stalled)
    if state == "cancelled":
        return "cancelled", None
    if state == "done":
        return _done(store, run_id, directory)
    log = handoff.worker_log(directory)
    if state == "failed":
        error = handoff.read_progress(directory).get("error") or "The scoring worker failed without a reason."
        return "failed", f"{error} (details in {log})"
    return "failed", death_message(directory, stalled)


def _done(store: Store, run_id: int, directory: Path) -> tuple[str, str | None]:
    """A worker that handled every row: done, with a word on the rows that could not be scored."""
    failures = store.failures(run_id)
    if failures.empty:
        return "done", None
    first = failures.iloc[0]
    n = len(failures)
    rows = "1 row" if n == 1 else f"{n:,} rows"
    where = (
        f"{'It is' if n == 1 else 'They are'} listed in Review under 'scoring failed'; details in "
        f"{handoff.worker_log(directory)}."
    )
    if store.scored_count(run_id) == 0:
        return "failed", (
            f"No row could be scored: {rows} failed (first: row {int(first.row_index)}, {first.error}). {where} "
            "Starting the run again retries them; check the model and the device first."
        )
    return "done", (
        f"{rows} could not be scored (first: row {int(first.row_index)}, {first.error}). {where} "
        f"Starting the run again retries only {'it' if n == 1 else 'them'}."
    )


def death_message(directory: Path, stalled: int = 1) -> str:
    """What to tell the user when the worker vanished without a final status (killed, crashed, out of memory).

    Names worker.log's full path and quotes its last error line; a full disk gets its own message; `stalled` is
    how many starts in a row died without storing a new row, and from 2 on the user is not told to start again.
    """
    log = handoff.worker_log(directory)
    if handoff.log_says_disk_full(directory):
        return f"{handoff.disk_full_message(directory)} (worker.log: {log})"
    line = handoff.last_error_line(directory)
    said = (
        f"Its last error in {log}: {line}"
        if line
        else f"It wrote no error to {log}, so it was most likely killed from outside (out of memory, kill -9)."
    )
    if stalled >= 2:
        return (
            f"The scoring worker died {stalled} times in a row without scoring a new row, so starting the run again "
            f"will most likely fail the same way. {said} Fix the cause (memory, device, model) first; finished rows "
            "are kept."
        )
    return f"The scoring worker stopped unexpectedly. {said} Start the run again to resume; finished rows are kept."


def progress(store: Store, run_id: int) -> RunProgress:
    """Ingest what is ready and report progress against the rows this run was asked to score."""
    ingest(store, run_id)
    run = store.get_run(run_id)
    directory = Path(run["work_dir"]) if run.get("work_dir") else None
    worker = handoff.read_progress(directory) if directory and directory.exists() else {}
    done, failed = int(run["n_scored"]), int(run["n_failed"])  # counted by get_run, no second scan
    if run["status"] == "running":  # rows this worker has yet to handle, and those it could not score
        handled = int(worker.get("rows_done", 0))
        wanted = done + int(worker.get("rows_failed", 0)) + int(worker.get("rows_total", 0)) - handled
        wanted -= store.calibration_counts(run_id)[2]  # copies still to score are not dataset rows
    elif run["status"] == "pending":
        wanted = done + store.unscored_count(run_id)
    else:
        wanted = done + failed
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
        rows_failed=failed,
        replicas=worker.get("replicas") if run["status"] == "running" else None,
        replicas_alive=worker.get("replicas_alive"),
    )


def cancel(store: Store, run_id: int, wait_s: float = 10.0, *, actor: permissions.Actor | None = None) -> None:
    """Stop the run's worker (the batch in flight is lost, finished batches are kept) and mark it cancelled.
    ``actor`` must be allowed to cancel runs (None: the file's owner); a cancelled run is audited."""
    actor = actor or permissions.owner_actor()
    permissions.require(actor, "cancel_run")
    run = store.get_run(run_id)
    directory = Path(run["work_dir"]) if run.get("work_dir") else None
    if directory and directory.exists():
        scorer = backends.of_run(directory)
        scorer.cancel(directory)
        deadline = time.time() + wait_s
        while time.time() < deadline and scorer.state(directory) == "running":
            time.sleep(0.2)
    ingest(store, run_id)
    if store.get_run(run_id)["status"] in ("running", "pending"):
        store.set_run_status(run_id, "cancelled")
        store.record_audit(actor, "cancel_run", dataset_id=run["dataset_id"], run_id=run_id)


def wait(store: Store, run_id: int, on_progress=None, poll_s: float = 0.5) -> RunProgress:
    """Block until the run stops, ingesting as chunks arrive; `on_progress(RunProgress)` is called each poll."""
    while True:
        state = progress(store, run_id)
        if on_progress:
            on_progress(state)
        if state.status != "running":
            return state
        time.sleep(poll_s)


def clean_run_dir(store: Store, run_id: int) -> None:
    """Delete a finished run's directory (its chunks are all in the database by then)."""
    run = store.get_run(run_id)
    if run.get("work_dir") and run["status"] == "done":
        shutil.rmtree(run["work_dir"], ignore_errors=True)
