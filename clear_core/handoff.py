"""The file hand-off between the database owner and the scoring worker process.

DuckDB allows one writing process per file, so the worker never opens the database. A run directory holds:

    job.json        what to score with (model, device, ScoringConfig params)          written by the owner
    rows.jsonl      the rows still to score                                             written by the owner
    chunks/         chunk-000001.jsonl … one per scored batch                          written by the worker
    progress.json   rows done, rows/s, pid, status, error                              written by the worker
    cancel          present = stop after the current batch                             written by the owner
    worker.log      the worker's stdout/stderr

Every file is written to a temporary name and renamed into place, so a reader never sees half a file and a
killed worker loses at most the batch in flight.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    """Write text to path via a temporary file in the same directory and an atomic rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonl(records: Iterable[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


# ---------------------------------------------------------------------------------------------------------------
# Owner side


def prepare_run_dir(run_dir: Path, job: dict, rows: Iterable[dict]) -> Path:
    """Write the job and the rows to score; chunks already in the directory (an interrupted run) are kept."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "chunks").mkdir(exist_ok=True)
    (run_dir / "cancel").unlink(missing_ok=True)
    write_atomic(run_dir / "job.json", json.dumps(job, indent=2))
    write_atomic(run_dir / "rows.jsonl", _jsonl(rows))
    write_atomic(
        run_dir / "progress.json",
        json.dumps({"status": "starting", "updated_at": time.time()}),
    )
    return run_dir


def start_worker(run_dir: Path) -> int:
    """Launch `python -m clear_core.worker RUN_DIR` detached from this process; returns its pid.

    It gets its own session so it survives the app's page reloads, a closed tab, and a Ctrl-C in a terminal.
    """
    log = open(run_dir / "worker.log", "ab")
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "clear_core.worker", str(run_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
    )
    log.close()
    write_atomic(run_dir / "worker.pid", str(proc.pid))
    return proc.pid


def pending_chunks(run_dir: Path) -> list[Path]:
    """Chunk files not yet ingested, oldest first."""
    return sorted((run_dir / "chunks").glob("chunk-*.jsonl"))


def read_chunk(path: Path) -> list[dict]:
    """The records of a chunk; [] when another ingesting caller already consumed and removed it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def request_cancel(run_dir: Path) -> None:
    """Ask the worker to stop after its current batch; signal it too so a long batch is not waited out."""
    write_atomic(run_dir / "cancel", "")
    pid = read_progress(run_dir).get("pid") or _launched_pid(run_dir)  # still loading: only worker.pid exists
    if pid and pid_alive(pid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)


def read_progress(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "progress.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child (exited, not yet reaped) still answers signal 0; check its state where /proc exists.
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().split(") ", 1)[1][:1] != "Z"
        except (OSError, IndexError):
            return True
    return True


def _launched_pid(run_dir: Path) -> int | None:
    try:
        return int((run_dir / "worker.pid").read_text())
    except (OSError, ValueError):
        return None


def worker_state(run_dir: Path) -> str:
    """'running', 'done', 'failed', 'cancelled' or 'dead' (the worker vanished without saying how it ended)."""
    progress = read_progress(run_dir)
    status = progress.get("status", "starting")
    if status in ("done", "failed", "cancelled"):
        return status
    pid = progress.get("pid") or _launched_pid(run_dir)
    if pid is None:
        return "dead"
    # Liveness rests on the process alone: a batch on a busy CPU can take many minutes between heartbeats.
    return "running" if pid_alive(pid) else "dead"


# ---------------------------------------------------------------------------------------------------------------
# Worker side


def read_job(run_dir: Path) -> tuple[dict, list[dict]]:
    job = json.loads((run_dir / "job.json").read_text(encoding="utf-8"))
    rows = read_chunk(run_dir / "rows.jsonl")
    return job, rows


def done_row_indices(run_dir: Path) -> set[int]:
    """Rows already written to chunk files that the owner has not ingested yet (so a restart skips them)."""
    return {r["row_index"] for path in pending_chunks(run_dir) for r in read_chunk(path)}


def write_chunk(run_dir: Path, records: list[dict]) -> Path:
    """Write one scored batch as the next chunk file, atomically."""
    chunks = run_dir / "chunks"
    seq = int(time.time() * 1000)  # monotonic enough and unique per worker; sorted order = write order
    path = chunks / f"chunk-{seq:015d}-{os.getpid()}.jsonl"
    write_atomic(path, _jsonl(records))
    return path


def write_progress(run_dir: Path, **fields) -> None:
    write_atomic(
        run_dir / "progress.json",
        json.dumps({**fields, "pid": os.getpid(), "updated_at": time.time()}),
    )


def cancel_requested(run_dir: Path) -> bool:
    return (run_dir / "cancel").exists()
