"""The file hand-off between the database owner and the scoring worker process.

DuckDB allows one writing process per file, so the worker never opens the database. A run directory holds:

    job.json        what to score with (model, device, ScoringConfig params)          written by the owner
    rows.jsonl      the rows still to score                                             written by the owner
    chunks/         chunk-000001.jsonl … one per scored batch                          written by the worker
    progress.json   rows done, rows/s, pid, status, error                              written by the worker
    cancel          present = stop after the current batch                             written by the owner
    attempt.json    per start: where worker.log began, rows stored, deaths in a row     written by the owner
    worker.log      the worker's stdout/stderr (appended to by every start)

Every file is written to a temporary name and renamed into place, so a reader never sees half a file and a
killed worker loses at most the batch in flight.

rows.jsonl and the chunks are JSON Lines written ASCII-only (``ensure_ascii=True``) and read back by splitting on
"\n" alone. JSON escapes every control character and, ASCII-only, every non-ASCII one (U+2028, U+2029, U+0085,
lone surrogates…), so the only raw "\n" in a file is the record separator; splitting on "\n" alone (never
``str.splitlines``, which also splits on U+2028 and friends) keeps even a file written without the escapes readable.
So no text in a prompt, response or proposal can break a line or the file's encoding. JSON Lines rather than
Parquet keeps the files readable with `head` while a run is debugged; the escapes cost space only for non-ASCII
text, in files that live until the owner ingests them.

A full disk anywhere in the hand-off raises ``DiskFullError``, whose message names the directory and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from clear_core.errors import ClearError


class DiskFullError(ClearError, OSError):
    """A hand-off file could not be written because the disk is full; the message says which disk and what to do."""

    def __init__(self, directory: Path | str):
        super().__init__(errno.ENOSPC, disk_full_message(directory))
        self.directory = str(directory)

    def __str__(self) -> str:
        return self.strerror


def disk_full_message(directory: Path | str) -> str:
    return (
        f"The disk holding {directory} is full (no space left on device). Free space and start the run again; "
        "finished rows are kept."
    )


def is_disk_full(exc: BaseException) -> bool:
    """True for ENOSPC (errno 28) and for errors whose text says so (DuckDB reports it as text)."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return _mentions_disk_full(str(exc))


def _mentions_disk_full(text: str) -> bool:
    return "no space left on device" in text.lower() or "[errno 28]" in text.lower()


def write_atomic(path: Path, text: str) -> None:
    """Write text to path via a temporary file in the same directory and an atomic rename.

    A full disk raises DiskFullError naming the directory; the temporary file is removed either way.
    """
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, DiskFullError) and is_disk_full(exc):
            raise DiskFullError(path.parent) from exc
        raise


def _jsonl(records: Iterable[dict]) -> str:
    """JSON Lines, ASCII-only: every line break and non-ASCII character inside a value is escaped (see above)."""
    return "".join(json.dumps(r, ensure_ascii=True) + "\n" for r in records)


def _read_jsonl(text: str) -> list[dict]:
    # split on "\n" only: str.splitlines would also split on U+2028, U+2029, U+0085, \r, \x1c... inside strings
    return [json.loads(line) for line in text.split("\n") if line.strip()]


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


def start_worker(run_dir: Path, rows_stored: int = 0) -> int:
    """Launch `python -m clear_core.worker RUN_DIR` detached from this process; returns its pid.

    It gets its own session so it survives the app's page reloads, a closed tab, and a Ctrl-C in a terminal.
    `rows_stored` (rows of the run already in the database) goes to attempt.json with where this start's part of
    worker.log begins, so the owner can tell a worker that died without scoring anything new.
    """
    log = open(run_dir / "worker.log", "ab")
    log_offset = os.fstat(log.fileno()).st_size
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "clear_core.worker", str(run_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=Path(__file__).resolve().parent.parent,
            env=env,
        )
    finally:
        log.close()
    write_atomic(run_dir / "worker.pid", str(proc.pid))
    write_attempt(run_dir, log_offset=log_offset, rows_stored=int(rows_stored), started_at=time.time())
    return proc.pid


def read_attempt(run_dir: Path) -> dict:
    """attempt.json: log_offset, rows_stored and started_at of the latest start, and stalled_deaths (how many
    starts in a row ended with the worker dead and no new row stored)."""
    try:
        return json.loads((run_dir / "attempt.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_attempt(run_dir: Path, **fields) -> None:
    """Update attempt.json with the given fields, keeping the others."""
    write_atomic(run_dir / "attempt.json", json.dumps({**read_attempt(run_dir), **fields}))


def worker_log(run_dir: Path) -> Path:
    """The full path of the run's worker.log (for messages that send the user there)."""
    return (run_dir / "worker.log").resolve()


# The lines of worker.log that say what went wrong: an exception's last traceback line ("OSError: [Errno 28] ..."),
# faulthandler's "Fatal Python error: Segmentation fault", and the worker's own "clear-worker: ..." notes.
_ERROR_LINE = re.compile(
    r"^(?:[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b|Fatal Python error|Killed|Segmentation fault"
    r"|clear-worker: (?:failed|could not))"
)
_LOG_TAIL_BYTES = 64 * 1024
HANDLED_MARK = "clear-worker: handled; the other rows are scored"  # written after a row's isolated traceback


def _log_lines(run_dir: Path) -> list[str]:
    """The lines this start of the worker wrote to worker.log (at most its last 64 KiB)."""
    since = int(read_attempt(run_dir).get("log_offset", 0))
    try:
        with open(run_dir / "worker.log", "rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, since, size - _LOG_TAIL_BYTES)
            if start > size:  # the log was replaced since: read it all
                start = max(0, size - _LOG_TAIL_BYTES)
            f.seek(start)
            data = f.read()
    except OSError:
        return []
    return [line.strip() for line in data.decode("utf-8", errors="replace").split("\n")]


def last_error_line(run_dir: Path, limit: int = 300) -> str | None:
    """The last line in which the worker's latest start reported an error, cut to `limit` characters; None if none."""
    for line in reversed(_log_lines(run_dir)):
        if line == HANDLED_MARK:  # everything before it was a row's failure, handled by the worker
            return None
        if _ERROR_LINE.match(line):
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return None


def log_says_disk_full(run_dir: Path) -> bool:
    """Whether the worker's latest start logged a full disk (ENOSPC) anywhere."""
    return any(_mentions_disk_full(line) for line in _log_lines(run_dir))


def pending_chunks(run_dir: Path) -> list[Path]:
    """Chunk files not yet ingested, oldest first."""
    return sorted((run_dir / "chunks").glob("chunk-*.jsonl"))


def read_chunk(path: Path) -> list[dict]:
    """The records of a chunk; [] when another ingesting caller already consumed and removed it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return _read_jsonl(text)


def describe(exc: BaseException) -> str:
    """'ExceptionType: message', the form of a failed row's reason in a chunk and of a failed run's error."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Cancelled(Exception):  # noqa: N818 - it names what happened, as KeyboardInterrupt does
    """The owner asked the worker to stop (the cancel file, or SIGTERM): not a row's problem, never isolated."""


def is_calibration_copy(row: dict) -> bool:
    """A run's corrupted copy of one of its dataset's rows (row_index -1, -2, ...), scored only for its calibration."""
    return int(row["row_index"]) < 0


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


_chunks_written = itertools.count()


def write_chunk(run_dir: Path, records: list[dict]) -> Path:
    """Write one scored batch as the next chunk file, atomically."""
    chunks = run_dir / "chunks"
    seq = int(time.time() * 1000)  # monotonic enough; sorted order = write order
    # the counter keeps two chunks of one millisecond apart (a Ray driver can receive several blocks at once)
    path = chunks / f"chunk-{seq:015d}-{os.getpid()}-{next(_chunks_written):06d}.jsonl"
    write_atomic(path, _jsonl(records))
    return path


def write_progress(run_dir: Path, **fields) -> None:
    write_atomic(
        run_dir / "progress.json",
        json.dumps({**fields, "pid": os.getpid(), "updated_at": time.time()}),
    )


def cancel_requested(run_dir: Path) -> bool:
    return (run_dir / "cancel").exists()
