"""The Run page in AppTest with real worker processes and the tiny random-weight model: start on the first N rows,
follow progress, resume the rest, cancel, and a failing model shown as a message."""

from __future__ import annotations

import time

import pytest

from clear_core import workspace
from clear_core.store import Store
from tests.conftest import synthetic_scores

RUN = "app_pages/run.py"


@pytest.fixture
def unscored_db(tmp_path, monkeypatch, gsm8k_file):
    path = tmp_path / "run.duckdb"
    monkeypatch.setenv("CLEAR_DB", str(path))
    monkeypatch.setenv("CLEAR_NO_DEMO", "1")
    with Store(path) as store:
        dataset_id = workspace.import_file(store, gsm8k_file)
    return path, dataset_id


def click(at, label: str):
    next(b for b in at.button if b.label.startswith(label)).click().run()
    return at


def latest_run(path, dataset_id):
    with Store(path) as store:
        return store.latest_run(dataset_id)


def wait_until_stopped(at, path, dataset_id, timeout_s: float = 240):
    """Rerun the page (each run ingests finished chunks) until the latest run is no longer running."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        at.run()
        run = latest_run(path, dataset_id)
        if run["status"] != "running":
            return run
        time.sleep(1)
    raise AssertionError(f"the run did not finish in {timeout_s} s")


def settings(at, model: str, samples: int = 0, first_n: int | None = None):
    at.text_input(key="run_model").input(model)
    at.number_input(key="run_samples").set_value(samples)
    at.selectbox(key="run_device").select("cpu")
    if first_n is not None:
        at.radio(key="run_rows").set_value("First N rows").run()
        at.number_input(key="run_limit").set_value(first_n)
    at.run()


def test_score_the_first_rows_then_resume_the_rest(unscored_db, tiny_model_path, app):
    path, dataset_id = unscored_db
    at = app(RUN)
    assert at.text_input(key="run_model").value == "embedded:SmolLM2-135M-Instruct"
    settings(at, str(tiny_model_path), samples=0, first_n=4)
    click(at, "Start scoring")
    assert not at.error
    run = latest_run(path, dataset_id)
    assert run["model"] == str(tiny_model_path) and run["params"]["samples"] == 0
    assert next(b for b in at.button if b.label == "Start scoring").disabled  # one run at a time
    run = wait_until_stopped(at, path, dataset_id)
    assert run["status"] == "done" and run["n_scored"] == 4
    assert any(p.proto.text.startswith("4 of 4 rows scored") for p in at.get("progress"))
    # done with the rows it was asked for, not with the dataset
    assert at.warning[0].value.startswith(
        "Run #1 is done with the first 4 rows only. The dataset: 4 of 12 rows scored, 8 not scored, 0 failed."
    )

    at.radio(key="run_rows").set_value("All rows").run()
    click(at, "Resume run #")
    run = wait_until_stopped(at, path, dataset_id)
    assert run["status"] == "done" and run["n_scored"] == 12 and run["run_id"] == 1
    assert not [b for b in at.button if b.label.startswith("Resume")]
    assert any(p.proto.text.startswith("12 of 12 rows scored") for p in at.get("progress"))
    assert not at.warning and "The dataset: 12 of 12 rows scored, 0 not scored, 0 failed." in [
        c.value for c in at.caption
    ]
    assert at.dataframe[0].value["n_scored"].tolist() == [12]


def test_a_run_done_with_its_first_rows_says_how_many_are_not_scored(unscored_db, app):
    path, dataset_id = unscored_db
    with Store(path) as store:
        run_id = store.create_run(dataset_id, "synthetic", {"samples": 0})
        records = synthetic_scores(6)
        records[2] = {"row_index": 2, "error": "RuntimeError: CUDA out of memory"}
        store.add_scores(run_id, records)
        store.set_run_status(run_id, "done")
    at = app(RUN)
    assert not at.exception
    assert at.warning[0].value == (
        "Run #1 is done with the first 6 rows only. The dataset: 5 of 12 rows scored, 6 not scored, 1 failed. "
        "“Resume run #1” below scores the rest."
    )
    assert any(b.label.startswith("Resume run #1") for b in at.button)


def test_cancel_stops_the_worker(unscored_db, tiny_model_path, app):
    path, dataset_id = unscored_db
    at = app(RUN)
    settings(at, str(tiny_model_path), samples=2)
    click(at, "Start scoring")
    click(at, "Cancel run")
    run = latest_run(path, dataset_id)
    assert run["status"] == "cancelled"
    assert any("cancelled" in c.value for c in at.caption)
    assert not next(b for b in at.button if b.label == "Start scoring").disabled


def test_a_failing_model_is_reported_without_a_traceback(unscored_db, tmp_path, app):
    path, dataset_id = unscored_db
    at = app(RUN)
    settings(at, str(tmp_path / "no-such-model"))
    click(at, "Start scoring")
    run = wait_until_stopped(at, path, dataset_id, timeout_s=120)
    assert run["status"] == "failed"
    assert not at.exception
    assert at.error and "no-such-model" in at.code[0].value  # the run's error, verbatim


def test_the_page_shows_what_auto_picks_and_lets_people_override_it(unscored_db, app):
    at = app(RUN)
    at.selectbox(key="run_device").select("cpu").run()

    def this_run() -> str:
        return next(c.value for c in at.caption if c.value.startswith("This run:"))

    assert at.radio(key="run_profile").value == "auto"
    fast = "This run: fast (auto: CPU): k = 0, no self-reflection, 3 context examples, proposals on."
    assert this_run().startswith(fast)
    at.radio(key="run_profile").set_value("paper").run()
    assert this_run().startswith("This run: paper: k = 5, self-reflection, proposals on.")
    at.number_input(key="run_samples").set_value(2).run()
    at.selectbox(key="run_reflection").select("off").run()
    assert this_run().startswith("This run: custom: k = 2, no self-reflection, proposals on.")
