"""Scoring backends: what runs the batch loop for a run directory, behind one small protocol.

Every backend reads the same run directory (job.json, rows.jsonl) and writes the same chunks and progress.json
(handoff.py), so the owner ingests results the same way whichever backend produced them. The backend's name is
recorded in job.json, not in the run's parameters: it is how rows get scored, not what a score means, so a run
started on one backend resumes on another.

Today there is one backend, ``local``: a worker process on this machine (``python -m clear_core.worker``). A Ray
backend (issue 13) is a second implementation of ``ScoringBackend``, registered in ``BACKENDS``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

from clear_core import handoff
from clear_core.errors import InvalidInput

DEFAULT_BACKEND = "local"


class ScoringBackend(Protocol):
    """Starts, follows and stops the scoring of one run directory."""

    name: str

    def start(self, run_dir: Path, rows_stored: int = 0) -> None:
        """Begin scoring the directory's rows in the background; ``rows_stored`` = rows of the run already stored."""

    def state(self, run_dir: Path) -> str:
        """'running', 'done', 'failed', 'cancelled' or 'dead' (gone without saying how it ended)."""

    def cancel(self, run_dir: Path) -> None:
        """Ask the scoring to stop after the batch in flight."""


class LocalProcess:
    """A detached worker process on this machine, one per run (``python -m clear_core.worker RUN_DIR``)."""

    name = "local"

    def start(self, run_dir: Path, rows_stored: int = 0) -> None:
        handoff.start_worker(run_dir, rows_stored=rows_stored)

    def state(self, run_dir: Path) -> str:
        return handoff.worker_state(run_dir)

    def cancel(self, run_dir: Path) -> None:
        handoff.request_cancel(run_dir)


BACKENDS: dict[str, ScoringBackend] = {LocalProcess.name: LocalProcess()}


def get(name: str = DEFAULT_BACKEND) -> ScoringBackend:
    """The backend called ``name``; an unknown name is the user's error and lists the known ones."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise InvalidInput(f"Unknown scoring backend {name!r}; choose one of {', '.join(BACKENDS)}.") from None


def of_run(run_dir: Path) -> ScoringBackend:
    """The backend named in the run directory's job.json (runs from before backends existed: local)."""
    try:
        job = json.loads((Path(run_dir) / "job.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        job = {}
    return get(job.get("backend", DEFAULT_BACKEND))
