"""The scoring process: `python -m clear_core.worker RUN_DIR`.

Loads the model once, scores the run directory's rows in length-sorted batches, and writes each batch as an atomic
chunk file with a progress heartbeat (see handoff.py). It never opens the database. Rows already present in
un-ingested chunks are skipped, so a restarted worker resumes where a killed one stopped.
"""

from __future__ import annotations

import signal
import sys
import time
import traceback
from pathlib import Path

from clear_core import handoff


class _Cancelled(Exception):
    pass


def _on_sigterm(signum, frame):
    raise _Cancelled()


def run(run_dir: Path) -> str:
    """Score everything in run_dir; returns the final status ('done', 'cancelled' or 'failed')."""
    from clear_core.confidence import (
        ScoringConfig,
    )  # imported here so `--help`-style failures stay cheap
    from clear_core.engine import score_rows
    from clear_core.model import load_model

    job, rows = handoff.read_job(run_dir)
    skip = handoff.done_row_indices(run_dir)
    rows = [r for r in rows if r["row_index"] not in skip]
    config = ScoringConfig.from_params(job["params"])
    total, done, tokens = len(rows), 0, 0
    started = time.time()
    handoff.write_progress(run_dir, status="loading", rows_done=0, rows_total=total, model=job["model"])
    try:
        lm = load_model(job["model"], job.get("device", "auto"))
        handoff.write_progress(
            run_dir,
            status="running",
            rows_done=0,
            rows_total=total,
            device=str(lm.device),
        )
        # Similar lengths together keeps padding (wasted compute) low.
        rows.sort(key=lambda r: len(r["prompt"]) + len(r["response"]))
        for start in range(0, total, config.batch_size):
            if handoff.cancel_requested(run_dir):
                raise _Cancelled()
            batch = rows[start : start + config.batch_size]
            scored = score_rows(lm, batch, config)
            handoff.write_chunk(run_dir, scored)
            done += len(batch)
            tokens += sum(s["n_response_tokens"] for s in scored)
            elapsed = time.time() - started
            handoff.write_progress(
                run_dir,
                status="running",
                rows_done=done,
                rows_total=total,
                device=str(lm.device),
                rows_per_s=done / elapsed,
                response_tokens_per_s=tokens / elapsed,
                eta_s=(total - done) * elapsed / done,
            )
    except _Cancelled:
        handoff.write_progress(run_dir, status="cancelled", rows_done=done, rows_total=total)
        return "cancelled"
    except Exception as exc:  # noqa: BLE001 - any failure is reported to the owner, with the traceback in the log
        traceback.print_exc()
        handoff.write_progress(
            run_dir,
            status="failed",
            rows_done=done,
            rows_total=total,
            error=f"{type(exc).__name__}: {exc}",
        )
        return "failed"
    handoff.write_progress(
        run_dir,
        status="done",
        rows_done=done,
        rows_total=total,
        elapsed_s=time.time() - started,
    )
    return "done"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0], "job.json").exists():
        print("usage: python -m clear_core.worker RUN_DIR  (a directory prepared by the app or the CLI)")
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    return 0 if run(Path(args[0])) == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
