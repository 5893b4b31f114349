"""The ``ray`` backend (issue 13): Ray Data replicas score through the same hand-off as the local worker.

The Ray tests run a real local Ray: one started here for the tiny random-weight model's runs (the worker connects
to it with --ray-address, as to any existing cluster), and one the CLI starts itself for the embedded model. They
skip, saying why, where ray is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clear_core import backends, handoff, runs
from clear_core.confidence import ScoringConfig
from clear_core.data import load_dataset
from clear_core.errors import InvalidInput
from clear_core.store import Store

from .conftest import REPO, gsm8k_records

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="ray is not installed (requirements.txt pins ray[data]; `make setup` installs it)",
)
# One row per block, so a run has a dozen blocks to spread, kill and retry; no sampling, 4-token proposals.
FAST = ScoringConfig(samples=0, max_new_tokens=4, batch_size=1)
TIMEOUT_S = 240  # generous: Ray and the replicas start slowly on a busy 2-core machine


def cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clear_core", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_ray_options_are_checked_before_anything_starts(tmp_path, gsm8k_file):
    with pytest.raises(InvalidInput, match="--replicas must be at least 1"):
        backends.RayOptions(replicas=0)
    with pytest.raises(InvalidInput, match="--gpus-per-replica must be 0 or more"):
        backends.RayOptions(gpus_per_replica=-1)
    assert backends.RayOptions.from_job({"replicas": 2, "unknown": 1}) == backends.RayOptions(replicas=2)
    db = tmp_path / "c.duckdb"
    out = cli("score", str(gsm8k_file), "--db", str(db), "--replicas", "2", timeout=120)
    assert out.returncode == 2 and "--replicas needs --engine ray" in out.stderr
    assert not db.exists()  # refused before the file was read into a new database


def test_importing_the_core_loads_no_ray():
    code = "import sys, clear_core, clear_core.cli, clear_core.runs, clear_core.backends, clear_core.worker; "
    code += "loaded = {'ray', 'torch'} & set(sys.modules); assert not loaded, loaded"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


# -- a real local Ray ---------------------------------------------------------------------------------------------


@needs_ray
@pytest.mark.model
def test_the_cli_scores_real_rows_on_a_local_ray_with_the_embedded_model(tmp_path):
    """No --ray-address: the worker starts Ray on this machine, one replica loads the embedded model and scores 3 of
    4 real GSM8K rows; the owner stores them exactly as from the local worker."""
    path = tmp_path / "gsm8k4.json"
    path.write_text(json.dumps(gsm8k_records(4)), encoding="utf-8")
    db = tmp_path / "c.duckdb"
    args = ["score", str(path), "--db", str(db), "--engine", "ray", "--replicas", "1", "--samples", "0"]
    out = cli(*args, "--limit", "3", "--device", "cpu")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Scored 3 of 4 rows" in out.stdout
    with Store(db) as store:
        run = store.latest_run(int(store.list_datasets()["dataset_id"].iloc[0]))
        scores = store.scores(run["run_id"])
        job = json.loads((Path(run["work_dir"]) / "job.json").read_text())
    assert sorted(scores["row_index"]) == [0, 1, 2]
    assert scores["confidence"].between(0, 1).all() and scores["logprob_mean"].notna().all()
    assert "error" not in scores or scores["error"].isna().all()
    assert job["backend"] == "ray" and job["backend_options"] == {"address": None, "replicas": 1, "gpus_per_replica": 0}


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray started in this process, torn down after the module: the existing cluster the runs connect to."""
    ray = pytest.importorskip("ray", reason="ray is not installed")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    context = ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()


def _alive_replicas() -> list[dict]:
    from ray._private import state

    actors = state.actors(actor_state_name="ALIVE").values()
    return [a for a in actors if "Replica" in a["ActorClassName"]]


def _wait_for(condition, what: str, timeout_s: float = TIMEOUT_S):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _start(store, db, dataset_id, model, address, replicas):
    options = backends.RayOptions(address=address, replicas=replicas).to_job()
    run_id = runs.start_run(
        store, db, dataset_id, model=model, device="cpu", config=FAST, backend="ray", backend_options=options
    )
    return run_id, runs.run_dir(store, run_id)


def _scored_once(store, run_id: int, n: int) -> None:
    """Every row of the dataset stored once, scored, none failed."""
    scores = store.scores(run_id)
    assert sorted(scores["row_index"]) == list(range(n))
    assert scores["confidence"].notna().all()
    assert store.failed_count(run_id) == 0


@needs_ray
def test_a_killed_driver_resumes_and_a_killed_replica_loses_nothing(
    tmp_path, gsm8k_file, tiny_model_path, tiny_model, ray_address
):
    """A replica scores 12 one-row blocks. The worker driving Ray is killed (SIGKILL) after the first rows: its
    replica goes with its Ray job and the run fails with the worker's death message. Started again on two replicas,
    the run scores only the rest, and a replica killed after the first of those is restarted by Ray, its block
    retried: every row arrives once and is stored once, with the scores the in-process loop gives."""
    from ray._private import state as ray_state

    from clear_core.engine import score_batches

    db = tmp_path / "c.duckdb"
    with Store(db) as store:
        dataset_id = store.add_dataset(load_dataset(gsm8k_file))
        run_id, directory = _start(store, db, dataset_id, str(tiny_model_path), ray_address, replicas=1)
        progress = _wait_for(
            lambda: (p := handoff.read_progress(directory)).get("rows_done", 0) >= 1 and p, "the first scored rows"
        )
        os.kill(progress["pid"], signal.SIGKILL)
        state = _wait_for(lambda: (s := runs.progress(store, run_id)).status != "running" and s, "the run to fail")
        assert state.status == "failed" and "Start the run again to resume" in state.error
        first = store.scored_count(run_id)
        assert 1 <= first < 12
        _wait_for(lambda: not _alive_replicas(), "the dead driver's replicas to go", timeout_s=60)

        again, directory = _start(store, db, dataset_id, str(tiny_model_path), ray_address, replicas=2)
        assert again == run_id and len(handoff.read_job(directory)[1]) == 12 - first  # only the rest
        _wait_for(lambda: handoff.read_progress(directory).get("rows_done", 0) >= 1, "the resumed run's first rows")
        victim = _wait_for(_alive_replicas, "a live replica")[0]
        before = handoff.read_progress(directory)
        os.kill(victim["Pid"], signal.SIGKILL)
        assert before["status"] == "running" and before["rows_done"] < 12 - first  # the kill lands mid-run
        state = runs.wait(store, run_id, poll_s=0.2)
        assert state.status == "done", state.error
        assert handoff.read_progress(directory)["rows_done"] == 12 - first  # no block delivered twice
        _scored_once(store, run_id, 12)
        stored = store.scores(run_id).set_index("row_index")
        table = store.dataset_rows(dataset_id)[["row_index", "prompt_messages", "prompt", "response"]]
        rows = [{**r, "row_index": int(r["row_index"])} for r in table.to_dict("records")]
    assert ray_state.actors(actor_id=victim["ActorID"])["NumRestarts"] >= 1  # Ray restarted the killed replica
    local = {r["row_index"]: r for batch in score_batches(tiny_model, rows, FAST) for r in batch}
    for field in ("confidence", "logprob_mean", "self_reflection", "eos_prob"):
        for i, record in local.items():
            assert stored.loc[i, field] == pytest.approx(record[field], rel=1e-4, abs=1e-6), (field, i)


class RecordingRay:
    """Stands in for the ray backend on the Run page: the job as the page wrote it, a running Ray job's progress."""

    name = "ray"

    def start(self, run_dir: Path, rows_stored: int = 0) -> None:
        _, rows = handoff.read_job(run_dir)
        progress = {"rows_done": 0, "rows_total": len(rows), "device": "cpu", "replicas": 2, "replicas_alive": 2}
        handoff.write_progress(run_dir, status="running", **progress)

    def state(self, run_dir: Path) -> str:
        return handoff.read_progress(run_dir)["status"]

    def cancel(self, run_dir: Path) -> None:
        handoff.write_progress(run_dir, status="cancelled")


def test_the_run_page_starts_a_ray_run_and_shows_its_replicas(tmp_path, gsm8k_file, monkeypatch, app):
    from clear_core import workspace

    path = tmp_path / "run.duckdb"
    monkeypatch.setenv("CLEAR_DB", str(path))
    monkeypatch.setenv("CLEAR_NO_DEMO", "1")
    monkeypatch.setitem(backends.BACKENDS, "ray", RecordingRay())
    with Store(path) as store:
        dataset_id = workspace.import_file(store, gsm8k_file)
    at = app("app_pages/run.py")
    assert at.number_input(key="run_replicas").disabled  # Ray's settings wait for the Ray engine
    at.selectbox(key="run_engine").select("Ray").run()
    at.number_input(key="run_replicas").set_value(2)
    at.text_input(key="run_ray_address").input("auto")
    at.run()
    next(b for b in at.button if b.label == "Start scoring").click().run()
    assert not at.exception and not at.error
    with Store(path) as store:
        run = store.latest_run(dataset_id)
    job = json.loads((Path(run["work_dir"]) / "job.json").read_text())
    assert job["backend"] == "ray"
    assert job["backend_options"] == {"address": "auto", "replicas": 2, "gpus_per_replica": 0.0}
    at.run()
    assert any("Ray, 2 of 2 replicas alive, cpu" in c.value for c in at.caption)
