"""The scoring process: `python -m clear_core.worker RUN_DIR`.

Loads the model once, scores the run directory's rows in length-sorted batches, and writes each batch as an atomic
chunk file with a progress heartbeat (see handoff.py). It never opens the database. Rows already present in
un-ingested chunks are skipped, so a restarted worker resumes where a killed one stopped.

One bad row never fails a run: when scoring a batch raises, the batch is split in halves and each half retried,
down to single rows; a row that fails alone is written to its chunk as ``{"row_index", "error"}`` (the owner stores
it as a failed row, retried when the run is started again) and the other rows are scored. Only what no row can
survive fails the run: the model not loading, the run directory unreadable, a full disk.
"""

from __future__ import annotations

import faulthandler
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from clear_core import handoff


class _Cancelled(Exception):
    pass


def _on_sigterm(signum, frame):
    raise _Cancelled()


def describe(exc: BaseException) -> str:
    """'ExceptionType: message', the form stored as a failed row's reason and a failed run's error."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def score_isolating(score: Callable, lm, rows: Sequence[dict], config) -> list[dict]:
    """``score(lm, rows, config)``, isolating rows that make it raise.

    A failing batch is split in halves and each half scored again, recursively, so n good rows and one bad one cost
    about 2·log2(n) extra calls. A single row that still fails comes back as ``{"row_index", "error"}``. A full disk
    and a cancel are not about a row and propagate.
    """
    try:
        return score(lm, rows, config)
    except _Cancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - any error of the model or engine on these rows is isolated
        if handoff.is_disk_full(exc):
            raise
        if len(rows) == 1:
            print(f"clear-worker: row {rows[0]['row_index']} could not be scored:", file=sys.stderr)
            traceback.print_exc()
            print(handoff.HANDLED_MARK, file=sys.stderr)  # so the owner never quotes this error as a crash's cause
            return [{"row_index": int(rows[0]["row_index"]), "error": describe(exc)}]
        reason = describe(exc)
    # retried outside the handler, so a row's traceback in worker.log is not chained to the batch's
    print(f"clear-worker: a batch of {len(rows)} rows failed ({reason}); scoring it in halves", file=sys.stderr)
    middle = len(rows) // 2
    return score_isolating(score, lm, rows[:middle], config) + score_isolating(score, lm, rows[middle:], config)


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
        # imported here so `--help`-style failures stay cheap
        from clear_core.confidence import ScoringConfig
        from clear_core.engine import score_rows
        from clear_core.model import load_model

        job, rows = handoff.read_job(run_dir)
        skip = handoff.done_row_indices(run_dir)
        rows = [r for r in rows if r["row_index"] not in skip]
        config = ScoringConfig.from_params(job["params"])
        total = len(rows)
        handoff.write_progress(run_dir, status="loading", rows_done=0, rows_total=total, model=job["model"])
        lm = load_model(job["model"], job.get("device", "auto"))
        handoff.write_progress(run_dir, status="running", rows_done=0, rows_total=total, device=str(lm.device))
        # Similar lengths together keeps padding (wasted compute) low.
        rows.sort(key=lambda r: len(r["prompt"]) + len(r["response"]))
        for start in range(0, total, config.batch_size):
            if handoff.cancel_requested(run_dir):
                raise _Cancelled()
            batch = rows[start : start + config.batch_size]
            scored = score_isolating(score_rows, lm, batch, config)
            handoff.write_chunk(run_dir, scored)
            done += len(batch)
            failed += sum(1 for s in scored if s.get("error"))
            tokens += sum(s.get("n_response_tokens") or 0 for s in scored)
            elapsed = time.time() - started
            handoff.write_progress(
                run_dir,
                status="running",
                rows_done=done,
                rows_failed=failed,
                rows_total=total,
                device=str(lm.device),
                rows_per_s=done / elapsed,
                response_tokens_per_s=tokens / elapsed,
                eta_s=(total - done) * elapsed / done,
            )
    except _Cancelled:
        _final_progress(run_dir, status="cancelled", rows_done=done, rows_failed=failed, rows_total=total)
        return "cancelled"
    except Exception as exc:  # noqa: BLE001 - any failure is reported to the owner, with the traceback in the log
        traceback.print_exc()
        error = handoff.disk_full_message(run_dir) if handoff.is_disk_full(exc) else describe(exc)
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
