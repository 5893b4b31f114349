"""The scoring process: `python -m clear_core.worker RUN_DIR`.

Loads the model once, runs the shared batch loop (``engine.score_batches``: length-sorted batches, a row that
raises isolated and returned as ``{"row_index", "error"}``) and writes each batch as an atomic chunk file with a
progress heartbeat (see handoff.py). It never opens the database. Rows already present in un-ingested chunks are
skipped, so a restarted worker resumes where a killed one stopped. Only what no row can survive fails the run: the
model not loading, the run directory unreadable, a full disk.
"""

from __future__ import annotations

import contextlib
import faulthandler
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

from clear_core import handoff


def _on_sigterm(signum, frame):
    raise handoff.Cancelled()


def _final_progress(run_dir: Path, **fields) -> None:
    """The last progress.json; when even that cannot be written (a full disk), say it in worker.log instead,
    where the owner looks when the worker is gone without a final status."""
    try:
        handoff.write_progress(run_dir, **fields)
    except OSError as exc:
        print(
            f"clear-worker: could not write progress.json ({exc}); status {fields.get('status')}: "
            f"{fields.get('error') or ''}",
            file=sys.stderr,
        )


def run(run_dir: Path) -> str:
    """Score everything in run_dir; returns the final status ('done', 'cancelled' or 'failed')."""
    total = done = failed = tokens = 0
    started = time.time()
    try:
        from clear_core.confidence import ScoringConfig

        job, rows = handoff.read_job(run_dir)
        skip = handoff.done_row_indices(run_dir)
        rows = [r for r in rows if r["row_index"] not in skip]
        config = ScoringConfig.from_params(job["params"])
        total = len(rows)
        handoff.write_progress(run_dir, status="loading", rows_done=0, rows_total=total, model=job["model"])
        where: dict = {}  # device, and for Ray the replicas: filled in by the scorer, reported with each batch

        def ready() -> None:
            handoff.write_progress(run_dir, status="running", rows_done=0, rows_total=total, **where)

        stop = lambda: handoff.cancel_requested(run_dir)  # noqa: E731
        # closed on any exit, so a Ray job shuts down however the loop ends
        with contextlib.closing(_scored_batches(job, rows, config, where, ready, stop)) as batches:
            for scored in batches:
                handoff.write_chunk(run_dir, scored)
                done += len(scored)
                failed += sum(1 for s in scored if s.get("error"))
                tokens += sum(s.get("n_response_tokens") or 0 for s in scored)
                elapsed = time.time() - started
                handoff.write_progress(
                    run_dir,
                    status="running",
                    rows_done=done,
                    rows_failed=failed,
                    rows_total=total,
                    **where,
                    rows_per_s=done / elapsed,
                    response_tokens_per_s=tokens / elapsed,
                    eta_s=(total - done) * elapsed / done,
                )
    except handoff.Cancelled:
        _final_progress(run_dir, status="cancelled", rows_done=done, rows_failed=failed, rows_total=total)
        return "cancelled"
    except Exception as exc:  # noqa: BLE001 - any failure is reported to the owner, with the traceback in the log
        traceback.print_exc()
        error = handoff.disk_full_message(run_dir) if handoff.is_disk_full(exc) else handoff.describe(exc)
        _final_progress(run_dir, status="failed", rows_done=done, rows_failed=failed, rows_total=total, error=error)
        return "failed"
    _final_progress(
        run_dir,
        status="done",
        rows_done=done,
        rows_failed=failed,
        rows_total=total,
        elapsed_s=time.time() - started,
    )
    return "done"


def _scored_batches(job: dict, rows: list[dict], config, where: dict, ready, stop) -> Iterator[list[dict]]:
    """The run's score records, one list per batch, from the backend job.json names: here (``local``: the model
    loaded in this process) or on Ray. ``where`` gets the device (and replicas); ``ready()`` is called once scoring
    begins; ``stop()`` says the owner asked to cancel."""
    if job.get("backend") == "ray":
        from clear_core import ray_backend

        yield from ray_backend.score_batches(job, rows, config, where=where, ready=ready, stop_requested=stop)
        return
    # imported here so `--help`-style failures stay cheap
    from clear_core.engine import choose_examples, score_batches
    from clear_core.form import FormModel
    from clear_core.model import load_model

    lm = load_model(job["model"], job.get("device", "auto"))
    where["device"] = str(lm.device)
    form = FormModel.from_json(job["form"]) if job.get("form") else None  # fitted by the owner (runs.start_run)
    examples = choose_examples(lm, job.get("example_pool") or [], config, form)  # [] unless context_examples
    ready()
    yield from score_batches(lm, rows, config, stop_requested=stop, form=form, examples=examples)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0], "job.json").exists():
        print("usage: python -m clear_core.worker RUN_DIR  (a directory prepared by the app or the CLI)")
        return 2
    faulthandler.enable()  # a segfault or fatal error still leaves its reason in worker.log
    signal.signal(signal.SIGTERM, _on_sigterm)
    return 0 if run(Path(args[0])) == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
