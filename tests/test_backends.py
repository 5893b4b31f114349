"""The scoring-backend seam: a run names its backend in job.json, and runs.py starts, follows and cancels it only
through the ScoringBackend protocol, so a second backend (Ray, issue 13) plugs in without touching the owner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clear_core import backends, handoff, runs
from clear_core.data import load_dataset
from clear_core.errors import InvalidInput
from clear_core.store import Store


class InlineBackend:
    """Scores every row at once with a fixed confidence, in this process, through the ordinary hand-off files."""

    name = "inline"

    def __init__(self):
        self.calls: list[str] = []

    def start(self, run_dir: Path, rows_stored: int = 0) -> None:
        self.calls.append("start")
        _, rows = handoff.read_job(run_dir)
        handoff.write_chunk(run_dir, [{"row_index": r["row_index"], "confidence": 0.9} for r in rows])
        handoff.write_progress(run_dir, status="done", rows_done=len(rows), rows_total=len(rows))

    def state(self, run_dir: Path) -> str:
        self.calls.append("state")
        return handoff.read_progress(run_dir).get("status", "dead")

    def cancel(self, run_dir: Path) -> None:
        self.calls.append("cancel")


@pytest.fixture
def inline(monkeypatch):
    backend = InlineBackend()
    monkeypatch.setitem(backends.BACKENDS, backend.name, backend)
    return backend


def test_a_second_backend_scores_through_the_same_hand_off(tmp_path, gsm8k_file, inline):
    db = tmp_path / "c.duckdb"
    with Store(db) as store:
        dataset_id = store.add_dataset(load_dataset(gsm8k_file))
        run_id = runs.start_run(store, db, dataset_id, backend="inline", limit=4)
        state = runs.wait(store, run_id, poll_s=0.01)
        assert state.status == "done" and state.rows_done == 4
        assert store.scores(run_id)["confidence"].tolist() == [0.9] * 4
        job = json.loads((runs.run_dir(store, run_id) / "job.json").read_text())
        assert job["backend"] == "inline" and "backend" not in job["params"]
        # the backend is not part of what identifies the run: the same settings on the local backend resume it
        assert store.find_resumable_run(dataset_id, job["model"], job["params"])["run_id"] == run_id
        runs.cancel(store, run_id, wait_s=0)
    assert inline.calls[0] == "start" and "cancel" in inline.calls


def test_an_unknown_backend_is_the_users_error_and_names_the_known_ones(tmp_path, gsm8k_file):
    db = tmp_path / "c.duckdb"
    with Store(db) as store:
        dataset_id = store.add_dataset(load_dataset(gsm8k_file))
        with pytest.raises(InvalidInput, match="Unknown scoring backend 'nope'; choose one of local"):
            runs.start_run(store, db, dataset_id, backend="nope")


def test_a_run_directory_from_before_backends_is_local(tmp_path):
    handoff.prepare_run_dir(tmp_path / "run-1", {"run_id": 1, "model": "m", "params": {}}, [])
    assert backends.of_run(tmp_path / "run-1").name == "local"
