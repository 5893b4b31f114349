"""Scoring backends: what runs the batch loop for a run directory, behind one small protocol.

Every backend reads the same run directory (job.json, rows.jsonl) and writes the same chunks and progress.json
(handoff.py), so the owner ingests results the same way whichever backend produced them. The backend's name is
recorded in job.json, not in the run's parameters: it is how rows get scored, not what a score means, so a run
started on one backend resumes on another.

Two backends, both driven by the same detached worker process (``python -m clear_core.worker RUN_DIR``), so the
owner starts, follows and cancels them alike: ``local`` loads the model in that process; ``ray`` makes it the driver
of a Ray Data job whose replicas (actors, one model each) score the rows on a Ray cluster, local or remote
(``ray_backend.py``, imported only by the worker). A backend's own options (``RayOptions``) go to job.json's
``backend_options``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
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


class RayBackend(LocalProcess):
    """Ray Data replicas on a Ray cluster, driven by the same detached worker process as ``local``: the worker reads
    ``backend: ray`` in job.json and drives the job (ray_backend.py), so starting, following and cancelling it is
    the local worker's."""

    name = "ray"


@dataclass(frozen=True)
class RayOptions:
    """How the ``ray`` backend spreads a run (job.json's ``backend_options``).

    address: an existing cluster (``auto``, ``HOST:PORT``, ``ray://HOST:10001``); None starts Ray on this machine
    with its cores. replicas: model replicas (Ray actors) scoring at once; None means 1 on CPUs, or as many as the
    cluster's GPUs allow when ``gpus_per_replica`` > 0. gpus_per_replica: GPUs each replica reserves (0: CPU).
    """

    address: str | None = None
    replicas: int | None = None
    gpus_per_replica: float = 0.0

    def __post_init__(self):
        if self.replicas is not None and self.replicas < 1:
            raise InvalidInput(f"--replicas must be at least 1, not {self.replicas}.")
        if self.gpus_per_replica < 0:
            raise InvalidInput(f"--gpus-per-replica must be 0 or more, not {self.gpus_per_replica:g}.")

    def to_job(self) -> dict:
        return asdict(self)

    @classmethod
    def from_job(cls, options: dict | None) -> RayOptions:
        known = {k: v for k, v in (options or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)


BACKENDS: dict[str, ScoringBackend] = {LocalProcess.name: LocalProcess(), RayBackend.name: RayBackend()}


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
