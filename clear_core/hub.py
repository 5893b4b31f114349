"""Hugging Face ``datasets`` out: the curated records as a ``save_to_disk`` folder, or pushed to the Hub.

A folder is written whole or not at all: it is saved to a temporary sibling, then renamed into place (an earlier
export at the same path is swapped out and removed only after that). ``push`` never hangs on a machine without a
network or a token: ``push_problem`` says why it cannot push before anything is uploaded.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from clear_core import export
from clear_core.errors import ClearError

HUB_HOST = "huggingface.co"
NETWORK_TIMEOUT_S = 3.0  # how long the reachability check may take before the Hub counts as out of reach


class HubError(ClearError):
    """The curated set cannot be pushed to the Hugging Face Hub (no token, offline, refused); the message says why."""


def _dataset(records: list[dict[str, Any]]):
    """The records as a ``datasets.Dataset``, typed the way the Parquet export types them (same columns, same
    errors for values Arrow cannot hold)."""
    import datasets  # slow to import; only this kind of export needs it

    datasets.disable_progress_bars()
    table = pq.read_table(pa.BufferReader(export.export_bytes(records, "parquet")))
    return datasets.Dataset(table)


def save_folder(records: list[dict[str, Any]], path: str | Path) -> Path:
    """Write ``records`` as a folder that ``datasets.load_from_disk`` reads, atomically. An existing folder at
    ``path`` is replaced only when it is itself a datasets folder (it has a state.json); anything else is refused."""
    path = Path(path)
    if path.exists() and not (path.is_dir() and (path / "state.json").is_file()):
        what = "a file" if path.is_file() else "a folder that is not a Hugging Face datasets folder"
        raise export.ExportError(
            f"Could not write the export to {path}: it is {what}, which a datasets export would replace. Give a new "
            "folder name. Nothing was written."
        )
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    old = path.with_name(f".{path.name}.{secrets.token_hex(4)}.old")
    try:
        _dataset(records).save_to_disk(str(tmp))
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    except OSError as exc:
        raise export.ExportError(f"Could not write the export to {path}: {exc}. Nothing was written.") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return path


def _reachable(host: str, timeout: float) -> bool:
    """Whether a TCP connection to ``host``:443 opens within ``timeout`` seconds (name lookup included: it has no
    timeout of its own, so it runs in a thread that is abandoned when it takes too long)."""

    def connect() -> None:
        socket.create_connection((host, 443), timeout=timeout).close()

    pool = ThreadPoolExecutor(max_workers=1)
    try:
        pool.submit(connect).result(timeout=timeout)
        return True
    except (OSError, FutureTimeout):
        return False
    finally:
        pool.shutdown(wait=False)


def push_problem(token: str | None = None) -> str | None:
    """Why pushing to the Hub cannot work here (no token, offline mode, the Hub out of reach), or None."""
    from huggingface_hub import get_token

    problems = []
    if not (token or get_token()):
        problems.append("no Hugging Face token is set (run `huggingface-cli login` or set HF_TOKEN)")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        problems.append("HF_HUB_OFFLINE is set, so the Hub is off limits")
    elif not _reachable(HUB_HOST, NETWORK_TIMEOUT_S):
        problems.append(f"{HUB_HOST} cannot be reached from this machine (offline or behind a firewall)")
    return "; ".join(problems) or None


def push(records: list[dict[str, Any]], repo_id: str, *, token: str | None = None, private: bool = True) -> str:
    """Push the records to the Hub as dataset ``repo_id`` (private unless told otherwise); returns its URL.
    Raises HubError, saying why, when there is no token or no network, or when the Hub refuses."""
    problem = push_problem(token)
    if problem:
        raise HubError(f"Cannot push to the Hugging Face Hub: {problem}. Nothing was pushed.")
    try:
        _dataset(records).push_to_hub(repo_id, token=token, private=private)
    except (OSError, ValueError) as exc:  # requests' and huggingface_hub's errors derive from these
        raise HubError(f"The Hugging Face Hub refused the push to {repo_id}: {exc}") from exc
    return f"https://{HUB_HOST}/datasets/{repo_id}"
