"""The DuckDB store on real files in tmp_path: migrations, datasets, runs, scores, review queries, decisions."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from clear_core import clear
from clear_core import store as store_module
from clear_core.errors import InvalidInput
from clear_core.migrations import MIGRATIONS
from clear_core.permissions import Actor, NotAllowed
from clear_core.store import (
    ERROR_FIELD,
    SCORE_FIELDS,
    NotFoundError,
    ReviewQuery,
    Store,
    StoreError,
    StoreLockedError,
)

REPO = Path(__file__).resolve().parents[1]


def annotator(name: str) -> Actor:
    return Actor(name, name, "annotator")


def lead(name: str) -> Actor:
    return Actor(name, name, "lead")


# Stand-ins for data.ColumnMapping / Row / Dataset: the store only reads their attributes.
@dataclass
class Mapping:
    instruction: str = "instruction"
    input: str | None = "input"
    output: str = "output"


@dataclass
class Row:
    row_index: int
    record: dict
    prompt_messages: list[dict]
    prompt: str
    response: str


@dataclass
class Dataset:
    name: str
    source_path: str
    file_format: str
    schema: str
    mapping: Mapping | None
    rows: list[Row]
    content_hash: str
    columns: list[str] = field(default_factory=lambda: ["instruction", "input", "output"])


def make_row(i: int, response: str | None = None) -> Row:
    instruction = f"Question {i}: what is {i} + {i}?"
    return Row(
        row_index=i,
        record={"instruction": instruction, "input": "", "output": response or f"It is {2 * i}."},
        prompt_messages=[{"role": "user", "content": instruction}],
        prompt=instruction,
        response=response or f"It is {2 * i}.",
    )


def make_dataset(n: int = 10, content_hash: str = "hash-1", mapping: Mapping | None = None) -> Dataset:
    return Dataset(
        name="tiny.jsonl",
        source_path="/data/tiny.jsonl",
        file_format="jsonl",
        schema="alpaca",
        mapping=mapping or Mapping(),
        rows=[make_row(i) for i in range(n)],
        content_hash=content_hash,
    )


def score(i: int, confidence: float | None, correction: float | None = 0.0, proposal: str | None = None) -> dict:
    return {
        "row_index": i,
        "confidence": confidence,
        "correction_confidence": correction,
        "proposed_response": proposal if proposal is not None else f"Proposal {i}",
        "n_response_tokens": 5,
    }


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "curation.duckdb"


@pytest.fixture
def store(db_path: Path):
    with Store(db_path) as s:
        yield s


@pytest.fixture
def scored(store: Store):
    """A 10-row dataset with a run whose scores give each action, for review-queue tests."""
    dataset_id = store.add_dataset(make_dataset(10))
    run_id = store.create_run(dataset_id, "tiny-model", {"k": 0})
    confidences = [0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, None]
    corrections = [0.0, 0.9, 0.0, 0.0, 0.95, 0.0, 0.85, 0.0, 0.0, 0.0]
    store.add_scores(run_id, [score(i, c, k) for i, (c, k) in enumerate(zip(confidences, corrections, strict=True))])
    return store, dataset_id, run_id


# -- migrations -------------------------------------------------------------------------------------------------


def test_new_file_gets_every_migration_and_reopen_is_idempotent(db_path):
    with Store(db_path) as store:
        assert store.schema_versions() == [v for v, _ in MIGRATIONS]
        dataset_id = store.add_dataset(make_dataset(3))
    with Store(db_path) as store:
        assert store.schema_versions() == [v for v, _ in MIGRATIONS]
        assert store.get_dataset(dataset_id)["n_rows"] == 3
    con = duckdb.connect(str(db_path))
    assert con.execute("SELECT count(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)
    con.close()


def test_version_1_file_upgrades_and_keeps_its_data(db_path):
    con = duckdb.connect(str(db_path))
    con.execute("CREATE TABLE _migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP)")
    con.execute(MIGRATIONS[0][1])
    con.execute("INSERT INTO _migrations VALUES (1, now()::TIMESTAMP)")
    con.execute(
        "INSERT INTO datasets (name, content_hash, n_rows, created_at, columns_json) "
        "VALUES ('old.csv', 'old-hash', 1, now()::TIMESTAMP, '[\"a\"]')"
    )
    con.execute("INSERT INTO rows VALUES (1, 0, '{\"a\": 1}', 'p', '[]', 'r')")
    con.close()

    with Store(db_path) as store:
        assert store.schema_versions() == [v for v, _ in MIGRATIONS]
        assert store.get_dataset(1)["name"] == "old.csv"
        assert store.dataset_rows(1)["record"].tolist() == [{"a": 1}]
        run_id = store.create_run(1, "m", {})  # tables from later migrations work
        store.add_scores(run_id, [score(0, 0.2)])
        store.record_decision(1, 0, "remove", actor=annotator("ann"))
        assert len(store.current_decisions(1)) == 1
        new_id = store.add_dataset(make_dataset(2))
        assert new_id == 2  # the sequence from version 1 keeps counting


def test_a_file_with_decisions_from_before_groups_upgrades_and_undoes_them_one_by_one(db_path):
    """A file that applied every migration but 8 (decision_groups) keeps its decisions, each outside any group."""
    with Store(db_path) as store:
        dataset_id = store.add_dataset(make_dataset(2))
        store.record_decision(dataset_id, 0, "remove", actor=annotator("ann"))
    con = duckdb.connect(str(db_path))
    con.execute("DROP TABLE decision_groups; DROP SEQUENCE group_id_seq; ALTER TABLE decisions DROP COLUMN group_id")
    con.execute("DELETE FROM _migrations WHERE version = 8")
    con.close()
    with Store(db_path) as store:
        assert store.schema_versions() == [v for v, _ in MIGRATIONS]
        assert store.decision_log(dataset_id)["group_id"].isna().all() and store.decision_groups(dataset_id) == []
        assert store.undo_last_decision(dataset_id, annotator("ann"))["row_index"] == 0
        assert store.current_decisions(dataset_id).empty


def test_file_from_a_newer_version_is_refused(db_path):
    Store(db_path).close()
    con = duckdb.connect(str(db_path))
    con.execute("INSERT INTO _migrations VALUES (999, now()::TIMESTAMP)")
    con.close()
    with pytest.raises(StoreError, match="newer CLEAR Review"):
        Store(db_path)


def test_read_only_store_reads(db_path):
    with Store(db_path) as store:
        store.add_dataset(make_dataset(2))
    with Store(db_path, read_only=True) as store:
        assert store.list_datasets()["n_rows"].tolist() == [2]


def test_a_file_that_is_not_a_curation_database(tmp_path):
    other = tmp_path / "other.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE datasets (x INTEGER)")
    con.close()
    with pytest.raises(StoreError, match="Is it a CLEAR Review database"):
        Store(other)
    not_duckdb = tmp_path / "data.csv"
    not_duckdb.write_text("a,b\n1,2\n")
    with pytest.raises(StoreError, match="not a DuckDB database"):
        Store(not_duckdb)
    assert not_duckdb.read_text() == "a,b\n1,2\n"


def test_read_only_missing_file_says_so(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "absent.duckdb", read_only=True)


def test_scores_table_matches_score_fields_and_the_architecture_doc(store):
    columns = store._df("SELECT * FROM scores LIMIT 0").columns.tolist()
    # columns added by later migrations come after scored_at
    assert sorted(columns) == sorted(["run_id", "row_index", *SCORE_FIELDS, ERROR_FIELD, "scored_at"])
    doc = (REPO / "docs" / "architecture.md").read_text()
    section = doc.split("Score fields", 1)[1].split("\n\n", 2)[1]
    documented = [line.split("`")[1] for line in section.splitlines() if line.startswith("| `")]
    assert documented == ["row_index", *SCORE_FIELDS, ERROR_FIELD]


# -- locking and durability -------------------------------------------------------------------------------------


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_second_process_gets_a_clear_lock_error(db_path):
    Store(db_path).close()
    holder = subprocess.Popen(
        _python(
            f"""
            import sys, time
            from clear_core.store import Store
            store = Store({str(db_path)!r})
            print("ready", flush=True)
            sys.stdin.read()
            """
        ),
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError) as excinfo:
            Store(db_path)
        message = str(excinfo.value)
        assert str(db_path) in message
        assert "another process" in message
        assert f"PID {holder.pid}" in message
        assert "python -m clear_core" in message
    finally:
        holder.communicate(input="", timeout=10)
    with Store(db_path) as store:  # free again once the holder exits
        assert store.list_datasets().empty


def test_decision_survives_a_crash(db_path):
    with Store(db_path) as store:
        dataset_id = store.add_dataset(make_dataset(3))
    crashed = subprocess.run(
        _python(
            f"""
            import os
            from clear_core.permissions import Actor
            from clear_core.store import Store
            store = Store({str(db_path)!r})
            ann = Actor("ann", "ann", "annotator")
            store.record_decision({dataset_id}, 1, "edit", final_response="Fixed.", actor=ann)
            os._exit(0)  # no close(), no checkpoint
            """
        ),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert crashed.returncode == 0, crashed.stderr
    with Store(db_path) as store:
        current = store.current_decisions(dataset_id)
        assert current[["row_index", "decision", "final_response"]].values.tolist() == [[1, "edit", "Fixed."]]


def test_concurrent_threads_read_and_write(store):
    dataset_id = store.add_dataset(make_dataset(40))
    run_id = store.create_run(dataset_id, "m", {})
    store.add_scores(run_id, [score(i, i / 40) for i in range(40)])
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(worker * 5, worker * 5 + 5):
                store.record_decision(dataset_id, i, "reject", actor=annotator(f"a{worker}"))
                page, total = store.review_queue(ReviewQuery(run_id, 0.5, 0.8), limit=5)
                assert total == 40 and len(page) == 5
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.review_progress(run_id) == (40, 40)


# -- datasets ---------------------------------------------------------------------------------------------------


def test_add_dataset_round_trip(store):
    dataset_id = store.add_dataset(make_dataset(4))
    info = store.get_dataset(dataset_id)
    assert info["name"] == "tiny.jsonl"
    assert info["schema"] == "alpaca"
    assert info["mapping"] == {"instruction": "instruction", "input": "input", "output": "output"}
    assert info["columns"] == ["instruction", "input", "output"]
    assert info["n_rows"] == 4
    rows = store.dataset_rows(dataset_id)
    assert rows.columns.tolist() == ["row_index", "record", "prompt_messages", "prompt", "response"]
    assert rows["row_index"].tolist() == [0, 1, 2, 3]
    assert rows["record"][2] == make_row(2).record
    assert list(rows["record"][2]) == ["instruction", "input", "output"]  # key order kept for export
    assert rows["prompt_messages"][2] == make_row(2).prompt_messages
    assert store.dataset_rows(dataset_id, [3, 1])["row_index"].tolist() == [1, 3]
    with pytest.raises(NotFoundError):
        store.get_dataset(999)


def test_same_content_and_mapping_is_not_duplicated(store):
    first = store.add_dataset(make_dataset(3))
    assert store.add_dataset(make_dataset(3)) == first
    other_mapping = store.add_dataset(make_dataset(3, mapping=Mapping(input=None)))
    other_content = store.add_dataset(make_dataset(3, content_hash="hash-2"))
    assert len({first, other_mapping, other_content}) == 3
    assert len(store.list_datasets()) == 3


def test_add_dataset_is_all_or_nothing(db_path):
    with Store(db_path) as store:
        broken = make_dataset(5)
        broken.rows[3] = make_row(1)  # duplicate row_index: fails inside the transaction, after the dataset row
        with pytest.raises(StoreError, match="same row_index"):
            store.add_dataset(broken)
        unserialisable = make_dataset(5, content_hash="hash-2")
        unserialisable.rows[2].record["x"] = object()
        with pytest.raises(TypeError, match="cannot be stored as JSON"):
            store.add_dataset(unserialisable)
        assert store.list_datasets().empty
        assert store.add_dataset(make_dataset(5)) > 0  # the store is still usable
    con = duckdb.connect(str(db_path))
    assert con.execute("SELECT count(*), count(DISTINCT dataset_id) FROM rows").fetchone() == (5, 1)
    con.close()


def test_numpy_values_in_records_are_stored(store):
    ds = make_dataset(2)
    ds.rows[0].record = {"score": np.int64(3), "vec": np.array([1.5, 2.5])}
    dataset_id = store.add_dataset(ds)
    assert store.dataset_rows(dataset_id, [0])["record"][0] == {"score": 3, "vec": [1.5, 2.5]}


def test_list_datasets_counts(scored):
    store, dataset_id, run_id = scored
    store.record_decision(dataset_id, 0, "remove", actor=annotator("ann"))
    store.record_decision(dataset_id, 0, "reject", actor=annotator("ann"))  # same row: still one decided row
    store.record_decision(dataset_id, 1, "reject", actor=annotator("ann"))
    listed = store.list_datasets().set_index("dataset_id").loc[dataset_id]
    assert (listed["n_rows"], listed["latest_run_id"], listed["n_scored"], listed["n_decided"]) == (10, run_id, 10, 2)
    assert listed["latest_run_status"] == "pending"
    bare = store.list_datasets(counts=False)  # the sidebar's: the same datasets and runs, nothing counted
    pd.testing.assert_frame_equal(bare, store.list_datasets().drop(columns=["n_scored", "n_decided"]))
    assert store.get_run(run_id, counts=False) == store.latest_run(dataset_id, counts=False)


def test_delete_dataset_removes_everything(store):
    keep_id = store.add_dataset(make_dataset(2, content_hash="keep"))
    dataset_id = store.add_dataset(make_dataset(3))
    run_id = store.create_run(dataset_id, "m", {}, work_dir="/runs/1")
    store.add_scores(run_id, [score(0, 0.1)])
    store.record_decision(dataset_id, 0, "remove", actor=annotator("ann"))
    store.set_thresholds(dataset_id, 0.4, 0.9, actor=lead("lee"))
    assert store.delete_dataset(dataset_id) == ["/runs/1"]
    assert store.list_datasets()["dataset_id"].tolist() == [keep_id]
    assert store.list_runs().empty
    assert store.scores(run_id).empty
    assert store.decision_log(dataset_id).empty
    assert store.get_thresholds(dataset_id) == (clear.DEFAULT_GAMMA, clear.DEFAULT_ETA)
    assert store.dataset_rows(dataset_id).empty


# -- runs -------------------------------------------------------------------------------------------------------


def test_run_lifecycle(store):
    dataset_id = store.add_dataset(make_dataset(3))
    run_id = store.create_run(dataset_id, "smollm2", {"k": 3, "temperature": 1.0}, work_dir=None)
    run = store.get_run(run_id)
    assert (run["status"], run["rows_total"], run["params"], run["n_scored"]) == (
        "pending",
        3,
        {"k": 3, "temperature": 1.0},
        0,
    )
    assert run["started_at"] is None and run["finished_at"] is None

    store.set_run_status(run_id, "running")
    started = store.get_run(run_id)["started_at"]
    assert started is not None
    store.set_run_status(run_id, "failed", error="CUDA out of memory")
    failed = store.get_run(run_id)
    assert (failed["status"], failed["error"]) == ("failed", "CUDA out of memory")
    assert failed["finished_at"] is not None

    store.set_run_status(run_id, "running")  # resumed: first start kept, error and finish cleared
    resumed = store.get_run(run_id)
    assert (resumed["started_at"], resumed["finished_at"], resumed["error"]) == (started, None, None)
    store.set_run_work_dir(run_id, Path("/tmp/run-1"))
    assert store.get_run(run_id)["work_dir"] == "/tmp/run-1"

    with pytest.raises(ValueError, match="Unknown run status"):
        store.set_run_status(run_id, "paused")
    with pytest.raises(NotFoundError):
        store.set_run_status(999, "done")
    with pytest.raises(NotFoundError):
        store.get_run(999)
    with pytest.raises(NotFoundError):
        store.create_run(999, "m", {})


def test_find_resumable_and_latest_run(store):
    dataset_id = store.add_dataset(make_dataset(3))
    assert store.latest_run(dataset_id) is None
    first = store.create_run(dataset_id, "m", {"k": 3, "seed": 0})
    assert store.find_resumable_run(dataset_id, "m", {"seed": 0, "k": 3})["run_id"] == first  # key order ignored
    assert store.find_resumable_run(dataset_id, "m", {"k": 4, "seed": 0}) is None
    assert store.find_resumable_run(dataset_id, "other", {"k": 3, "seed": 0}) is None
    store.set_run_status(first, "done")
    assert store.find_resumable_run(dataset_id, "m", {"k": 3, "seed": 0})["run_id"] == first  # done runs extend
    second = store.create_run(dataset_id, "m", {"k": 3, "seed": 0})
    store.set_run_status(second, "cancelled")
    assert store.find_resumable_run(dataset_id, "m", {"k": 3, "seed": 0})["run_id"] == second
    assert store.latest_run(dataset_id)["run_id"] == second
    bare = store.latest_run(dataset_id, counts=False)  # the same run, without counting its scores
    counted = store.latest_run(dataset_id)
    assert bare == {k: v for k, v in counted.items() if k not in ("n_scored", "n_failed")}
    assert "n_scored" not in bare and counted["n_scored"] == 0
    runs = store.list_runs(dataset_id)
    assert runs["run_id"].tolist() == [second, first]
    assert runs["params"].tolist() == [{"k": 3, "seed": 0}] * 2
    assert store.list_runs(dataset_id + 1).empty


def test_unscored_rows_and_scored_count(store):
    dataset_id = store.add_dataset(make_dataset(5))
    run_id = store.create_run(dataset_id, "m", {})
    store.add_scores(run_id, [score(1, 0.5), score(3, 0.5)])
    unscored = store.unscored_rows(run_id)
    assert unscored.columns.tolist() == ["row_index", "prompt_messages", "prompt", "response"]
    assert unscored["row_index"].tolist() == [0, 2, 4]
    assert unscored["prompt_messages"][1] == make_row(2).prompt_messages
    assert store.scored_count(run_id) == 2
    assert store.get_run(run_id)["n_scored"] == 2


# -- scores -----------------------------------------------------------------------------------------------------


def test_add_scores_is_idempotent(store):
    dataset_id = store.add_dataset(make_dataset(4))
    run_id = store.create_run(dataset_id, "m", {})
    chunk = [score(i, 0.1 * i) for i in range(4)]
    assert store.add_scores(run_id, chunk) == 4
    assert store.add_scores(run_id, chunk) == 4
    assert store.scored_count(run_id) == 4
    store.add_scores(run_id, [score(2, 0.99, proposal="Better")])
    scores = store.scores(run_id).set_index("row_index")
    assert scores.loc[2, "confidence"] == 0.99
    assert scores.loc[2, "proposed_response"] == "Better"
    assert pd.isna(scores.loc[2, "consistency"])  # missing fields are NULL
    assert scores.columns.tolist() == [*SCORE_FIELDS, ERROR_FIELD, "scored_at"]
    assert store.add_scores(run_id, []) == 0


def test_failed_rows_are_stored_apart_from_scored_rows_and_retried(store):
    """A row the worker could not score: kept with its reason, never labelled by thresholds, rescored on restart."""
    dataset_id = store.add_dataset(make_dataset(4))
    run_id = store.create_run(dataset_id, "m", {})
    failure = {"row_index": 2, "error": "RuntimeError: probability tensor contains inf"}
    assert store.add_scores(run_id, [score(0, 0.1), score(1, 0.9, correction=0.95, proposal="p"), failure]) == 3
    assert (store.scored_count(run_id), store.failed_count(run_id)) == (2, 1)
    run = store.get_run(run_id)
    assert (run["n_scored"], run["n_failed"]) == (2, 1)
    assert store.list_datasets().loc[0, "n_scored"] == 2
    other = store.create_run(dataset_id, "m2", {})  # get_run counts its own run's scores, not another's
    store.add_scores(other, [score(3, 0.4), {"row_index": 0, "error": "E"}, {"row_index": 1, "error": "E"}])
    assert [(store.get_run(r)["n_scored"], store.get_run(r)["n_failed"]) for r in (run_id, other)] == [(2, 1), (1, 2)]
    listed = store.list_runs(dataset_id).set_index("run_id")  # the count of every run's scores at once
    assert listed.loc[[run_id, other], ["n_scored", "n_failed"]].values.tolist() == [[2, 1], [1, 2]]
    assert store.get_run(store.create_run(dataset_id, "m3", {}))["n_scored"] == 0
    assert store.unscored_rows(run_id)["row_index"].tolist() == [2, 3]  # a failed row is handed out again
    scores = store.scores(run_id).set_index("row_index")
    assert scores.loc[2, ERROR_FIELD] == failure["error"] and pd.isna(scores.loc[2, "confidence"])
    assert scores.loc[[0, 1], ERROR_FIELD].isna().all()
    assert store.failures(run_id)[["row_index", "error"]].values.tolist() == [[2, failure["error"]]]

    # no automatic action for it: not counted, not plotted, not in the queue but under its own status
    assert store.action_counts(run_id, 0.5, 0.7) == {"filter": 1, "correct": 1, "keep": 0}
    assert store.confidence_values(run_id)["row_index"].tolist() == [0, 1]
    assert store.agreement_by_bucket(run_id, 0.5, 0.7)["n_rows"].sum() == 2
    queue, total = store.review_queue(ReviewQuery(run_id, 0.5, 0.7))
    assert total == 2 and sorted(queue["row_index"]) == [0, 1]
    failed, total = store.review_queue(ReviewQuery(run_id, 0.5, 0.7, status="failed"))
    assert total == 1 and failed.loc[0, "row_index"] == 2
    assert failed.loc[0, "error"] == failure["error"] and failed.loc[0, "action"] is None
    assert store.review_queue(ReviewQuery(run_id, 0.5, 0.7, status="undecided"))[1] == 2

    store.add_scores(run_id, [score(2, 0.7)])  # the retry scored it: the failure is replaced
    assert (store.scored_count(run_id), store.failed_count(run_id)) == (3, 0)
    assert pd.isna(store.scores(run_id).set_index("row_index").loc[2, ERROR_FIELD])
    with pytest.raises(ValueError, match="marked failed but carries signals"):
        store.add_scores(run_id, [{**score(3, 0.5), "error": "ValueError: x"}])


def test_add_scores_rejects_unknown_fields_and_runs(store):
    dataset_id = store.add_dataset(make_dataset(2))
    run_id = store.create_run(dataset_id, "m", {})
    with pytest.raises(ValueError, match="'bogus'.*'confidnce'"):
        store.add_scores(run_id, [{"row_index": 0, "confidnce": 0.3, "bogus": 1}])
    with pytest.raises(ValueError, match="row_index"):
        store.add_scores(run_id, [{"confidence": 0.3}])
    with pytest.raises(ValueError, match=r"rows \[2, 7\]"):
        store.add_scores(run_id, [score(0, 0.3), score(7, 0.3), score(2, 0.3)])
    with pytest.raises(NotFoundError):
        store.add_scores(999, [score(0, 0.3)])
    assert store.scored_count(run_id) == 0


def test_add_scores_10k_rows_in_one_call(store):
    dataset_id = store.add_dataset(make_dataset(10_000))
    run_id = store.create_run(dataset_id, "m", {})
    rng = np.random.default_rng(0)
    records = [
        {"row_index": i, **dict.fromkeys(SCORE_FIELDS, None), "confidence": float(c), "proposed_response": "x"}
        for i, c in enumerate(rng.random(10_000))
    ]
    start = time.perf_counter()
    store.add_scores(run_id, records)
    store.add_scores(run_id, records)
    print(f"add_scores 2 x 10k rows: {time.perf_counter() - start:.3f}s")
    assert store.scored_count(run_id) == 10_000
    assert store.unscored_rows(run_id).empty


# -- review -----------------------------------------------------------------------------------------------------


def test_review_queue_actions_and_sorting(scored):
    store, _, run_id = scored
    page, total = store.review_queue(ReviewQuery(run_id, 0.5, 0.8))
    assert total == 10
    # Sorted by confidence ascending, NULL confidence last.
    assert page["row_index"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert page["action"].tolist() == [
        "filter",
        "correct",
        "filter",
        "filter",
        "correct",
        "keep",
        "correct",
        "keep",
        "keep",
        "keep",
    ]
    assert page["prompt_messages"][0] == make_row(0).prompt_messages
    assert page["decision"].isna().all()

    page, total = store.review_queue(ReviewQuery(run_id, 0.5, 0.8, action="filter"))
    assert (page["row_index"].tolist(), total) == ([0, 2, 3], 3)
    page, total = store.review_queue(
        ReviewQuery(run_id, 0.5, 0.8, action=["keep", "correct"], order_by="correction_confidence")
    )
    assert page["row_index"].tolist()[-3:] == [6, 1, 4]
    page, _ = store.review_queue(ReviewQuery(run_id, 0.5, 0.8, ascending=False))
    assert page["row_index"].tolist() == [8, 7, 6, 5, 4, 3, 2, 1, 0, 9]  # NULLs last either way
    # Moving a threshold relabels rows without re-scoring.
    assert store.review_queue(ReviewQuery(run_id, 0.3, 0.99, action="filter"))[1] == 3
    with pytest.raises(ValueError, match="Cannot sort"):
        store.review_queue(ReviewQuery(run_id, 0.5, 0.8, order_by="prompt; DROP TABLE rows"))
    with pytest.raises(ValueError, match="Unknown action"):
        store.review_queue(ReviewQuery(run_id, 0.5, 0.8, action="delete"))


def test_review_queue_filters_search_and_pages(scored):
    store, dataset_id, run_id = scored
    store.record_decision(dataset_id, 0, "remove", actor=annotator("ann"))
    store.record_decision(dataset_id, 5, "edit", final_response="Edited", actor=annotator("ann"), run_id=run_id)
    store.add_scores(run_id, [score(7, 0.75, proposal="The ANSWER is fourteen")])

    page, total = store.review_queue(ReviewQuery(run_id, 0.5, 0.8, status="decided"))
    assert (page["row_index"].tolist(), total) == ([0, 5], 2)
    assert page["final_response"].tolist()[1] == "Edited"
    assert store.review_queue(ReviewQuery(run_id, 0.5, 0.8, status="undecided"))[1] == 8
    assert store.review_queue(ReviewQuery(run_id, 0.5, 0.8, status="edit"))[0]["row_index"].tolist() == [5]
    with pytest.raises(ValueError, match="review status"):
        store.review_queue(ReviewQuery(run_id, 0.5, 0.8, status="maybe"))

    page, total = store.review_queue(ReviewQuery(run_id, 0.5, 0.8, min_confidence=0.25, max_confidence=0.55))
    assert (page["row_index"].tolist(), total) == ([2, 3, 4, 5], 4)

    def search(text: str) -> tuple[pd.DataFrame, int]:
        return store.review_queue(ReviewQuery(run_id, 0.5, 0.8, search=text))

    assert search("answer is")[0]["row_index"].tolist() == [7]  # proposal
    assert search("QUESTION 3:")[0]["row_index"].tolist() == [3]  # prompt
    assert search("it is 8.")[0]["row_index"].tolist() == [4]  # response
    assert search("100%")[1] == 0  # no LIKE wildcards

    pages = [store.review_queue(ReviewQuery(run_id, 0.5, 0.8), limit=4, offset=o) for o in (0, 4, 8, 12)]
    assert [p["row_index"].tolist() for p, _ in pages] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9], []]
    assert {t for _, t in pages} == {10}


def test_review_queue_on_100k_rows(store):
    n = 100_000
    rng = np.random.default_rng(1)
    ds = make_dataset(0, content_hash="big")
    ds.rows = [Row(i, {"i": i}, [{"role": "user", "content": f"q{i}"}], f"q{i}", f"a{i}") for i in range(n)]
    dataset_id = store.add_dataset(ds)
    run_id = store.create_run(dataset_id, "m", {})
    confidence = rng.random(n)
    correction = rng.random(n)
    store.add_scores(
        run_id,
        [
            {"row_index": i, "confidence": c, "correction_confidence": k, "proposed_response": f"p{i}"}
            for i, (c, k) in enumerate(zip(confidence.tolist(), correction.tolist(), strict=True))
        ],
    )
    for i in range(0, 500, 5):
        store.record_decision(dataset_id, i, "reject", actor=annotator("ann"))

    start = time.perf_counter()
    page, total = store.review_queue(
        ReviewQuery(run_id, 0.5, 0.8, action="filter", status="undecided"), limit=50, offset=100
    )
    elapsed = time.perf_counter() - start
    counts = store.action_counts(run_id, 0.5, 0.8)
    print(f"review_queue page over {n} rows: {elapsed:.3f}s")

    actions = clear.decide_many(confidence, correction, 0.5, 0.8)
    expected = pd.DataFrame({"row_index": np.arange(n), "confidence": confidence, "action": actions})
    expected = expected[(expected["action"] == "filter") & ~expected["row_index"].isin(range(0, 500, 5))]
    expected = expected.sort_values(["confidence", "row_index"])
    assert total == len(expected)
    assert page["row_index"].tolist() == expected["row_index"].iloc[100:150].tolist()
    assert counts == clear.action_counts(confidence, correction, 0.5, 0.8)


# -- the review query as a value (pure: no database) ------------------------------------------------------------


def test_review_query_where_binds_every_value_as_a_parameter():
    where, params = ReviewQuery(7, 0.5, 0.8).where()
    assert (where, params) == ("TRUE AND error IS NULL", {"run_id": 7, "gamma": 0.5, "eta": 0.8})
    query = ReviewQuery(
        7, 0.5, 0.8, action="filter", status="remove", min_confidence=0.2, max_confidence=0.6, search="'; DROP --"
    )
    where, params = query.where()
    assert params == {
        "run_id": 7,
        "gamma": 0.5,
        "eta": 0.8,
        "actions": ["filter"],
        "status": "remove",
        "min_confidence": 0.2,
        "max_confidence": 0.6,
        "search": "'; DROP --",
    }
    assert "DROP" not in where and set(re.findall(r"\$(\w+)", where)) == set(params) - {"run_id", "gamma", "eta"}
    for condition in ("list_contains($actions, action)", "decision = $status", "confidence >= $min_confidence"):
        assert condition in where


@pytest.mark.parametrize(
    ("status", "condition"),
    [
        (None, "TRUE AND error IS NULL"),
        ("undecided", "TRUE AND decision IS NULL AND error IS NULL"),
        ("decided", "TRUE AND decision IS NOT NULL AND error IS NULL"),
        ("failed", "TRUE AND error IS NOT NULL"),  # only the rows that could not be scored
    ],
)
def test_review_query_status(status, condition):
    assert ReviewQuery(1, 0.5, 0.8, status=status).where()[0] == condition


def test_review_query_checks_its_values_and_is_hashable():
    with pytest.raises(InvalidInput, match="Cannot sort"):
        ReviewQuery(1, 0.5, 0.8, order_by="prompt; DROP TABLE rows")
    with pytest.raises(InvalidInput, match="Unknown action"):
        ReviewQuery(1, 0.5, 0.8, action=["keep", "delete"])
    with pytest.raises(InvalidInput, match="review status"):
        ReviewQuery(1, 0.5, 0.8, status="maybe")
    query = ReviewQuery(1, 1, 0, action=["keep", "correct"])
    assert query == ReviewQuery(1, 1.0, 0.0, action=("keep", "correct")) and len({query, query}) == 1
    assert query.order() == "confidence ASC NULLS LAST, row_index"
    assert ReviewQuery(1, 0.5, 0.8, order_by="decided_at", ascending=False).order() == (
        "decided_at DESC NULLS LAST, row_index"
    )


def test_review_count_and_accepting_the_proposals_a_query_selects(scored):
    store, dataset_id, run_id = scored
    corrections = ReviewQuery(run_id, 0.5, 0.8, action="correct", status="undecided")
    assert store.review_count(corrections) == store.review_queue(corrections)[1] == 3  # rows 1, 4 and 6
    assert store.queue_total(corrections) == 3
    store.add_scores(run_id, [score(4, 0.45, 0.95, proposal="  \n")])  # nothing to accept
    store.record_decision(dataset_id, 6, "reject", actor=annotator("ann"))
    assert store.accept_proposals(corrections, actor=lead("bob")) == 1
    current = store.current_decisions(dataset_id)
    assert current[["row_index", "decision", "annotator"]].values.tolist() == [
        [1, "accept", "bob"],
        [6, "reject", "ann"],
    ]
    assert (current.loc[0, "final_response"], current.loc[0, "run_id"]) == ("Proposal 1", run_id)
    assert store.review_queue(corrections)[0]["row_index"].tolist() == [4]
    assert store.queue_total(corrections) == store.review_count(corrections) == 1  # after the decisions
    assert store.accept_proposals(corrections, actor=lead("bob")) == 0
    with pytest.raises(InvalidInput, match="annotator"):
        store.accept_proposals(corrections, actor=lead(" "))


def test_action_counts_and_confidence_values(scored):
    store, dataset_id, run_id = scored
    assert store.action_counts(run_id, 0.5, 0.8) == {"filter": 3, "correct": 3, "keep": 4}
    assert store.action_counts(run_id, 0.0, 1.0) == {"filter": 0, "correct": 0, "keep": 10}
    store.record_decision(dataset_id, 2, "remove", actor=annotator("ann"))
    values = store.confidence_values(run_id)
    assert len(values) == 10
    assert {"row_index", "confidence", "correction_confidence", "pmi", "response_length", "decision"} <= set(values)
    assert "proposed_response" not in values
    assert values.set_index("row_index").loc[2, "decision"] == "remove"
    assert values["response_length"][0] == len(make_row(0).response)


def test_agreement_by_bucket(scored):
    store, dataset_id, run_id = scored
    # Row 0 (conf 0.05, filter): remove agrees. Row 1 (0.15, correct): edit agrees.
    # Row 2 (0.25, filter): reject disagrees. Row 8 (0.85, keep): reject agrees. Row 7 (0.75, keep): accept disagrees.
    store.record_decision(dataset_id, 0, "remove", actor=annotator("ann"))
    store.record_decision(dataset_id, 1, "edit", final_response="x", actor=annotator("ann"))
    store.record_decision(dataset_id, 2, "reject", actor=annotator("ann"))
    store.record_decision(dataset_id, 8, "reject", actor=annotator("ann"))
    store.record_decision(dataset_id, 7, "accept", run_id=run_id, actor=annotator("ann"))
    table = store.agreement_by_bucket(run_id, 0.5, 0.8, bins=2).set_index("bucket")
    assert table["lower"].tolist() == [0.0, 0.5] and table["upper"].tolist() == [0.5, 1.0]
    assert table["n_rows"].tolist() == [5, 4]  # row 9 has no confidence
    assert table["n_decided"].tolist() == [3, 2]
    assert table["n_agree"].tolist() == [2, 1]
    assert table["agreement"].tolist() == pytest.approx([2 / 3, 1 / 2])
    ten = store.agreement_by_bucket(run_id, 0.5, 0.8)
    assert len(ten) == 10 and ten["n_rows"].sum() == 9
    assert ten["agreement"].isna().sum() == 10 - 5  # buckets with no decision have no agreement


# -- decisions --------------------------------------------------------------------------------------------------


def test_record_decision_validates(scored):
    store, dataset_id, run_id = scored
    with pytest.raises(ValueError, match="Unknown decision"):
        store.record_decision(dataset_id, 0, "delete", actor=annotator("ann"))
    with pytest.raises(ValueError, match="Unknown decision"):
        store.record_decision(dataset_id, 0, "undo", actor=annotator("ann"))
    with pytest.raises(ValueError, match="annotator"):
        store.record_decision(dataset_id, 0, "remove", actor=annotator("  "))
    with pytest.raises(ValueError, match="edit needs final_response"):
        store.record_decision(dataset_id, 0, "edit", actor=annotator("ann"))
    with pytest.raises(ValueError, match="no proposed response"):
        store.record_decision(dataset_id, 0, "accept", actor=annotator("ann"))
    with pytest.raises(ValueError, match="keeps no final_response"):
        store.record_decision(dataset_id, 0, "remove", final_response="x", actor=annotator("ann"))
    with pytest.raises(NotFoundError, match="no row 99"):
        store.record_decision(dataset_id, 99, "remove", actor=annotator("ann"))
    with pytest.raises(NotFoundError):
        store.record_decision(dataset_id, 0, "remove", run_id=999, actor=annotator("ann"))
    assert store.decision_log(dataset_id).empty


def test_accept_records_the_proposed_text(scored):
    store, dataset_id, run_id = scored
    store.record_decision(dataset_id, 4, "accept", run_id=run_id, actor=annotator("ann"))
    current = store.current_decisions(dataset_id)
    assert current[["row_index", "decision", "final_response", "run_id"]].values.tolist() == [
        [4, "accept", "Proposal 4", run_id]
    ]


def test_undo_semantics(scored):
    store, dataset_id, run_id = scored
    assert store.undo_last_decision(dataset_id, lead("lee"), of_anyone=True) is None
    first = store.record_decision(dataset_id, 0, "remove", actor=annotator("alice"))
    second = store.record_decision(dataset_id, 0, "reject", actor=annotator("bob"))
    third = store.record_decision(dataset_id, 1, "edit", final_response="Mine", actor=annotator("alice"))
    assert store.current_decisions(dataset_id)[["row_index", "decision"]].values.tolist() == [
        [0, "reject"],
        [1, "edit"],
    ]
    assert store.review_progress(run_id) == (2, 10)

    undone = store.undo_last_decision(dataset_id, annotator("alice"))
    assert (undone["decision_id"], undone["decision"], undone["final_response"]) == (third, "edit", "Mine")
    undone = store.undo_last_decision(dataset_id, annotator("bob"))
    assert undone["decision_id"] == second
    # Row 0 falls back to the earlier decision that was not undone.
    assert store.current_decisions(dataset_id)[["row_index", "decision_id"]].values.tolist() == [[0, first]]
    assert store.review_progress(run_id) == (1, 10)

    log = store.decision_log(dataset_id)
    assert log["decision"].tolist() == ["remove", "reject", "edit", "undo", "undo"]
    assert log["undoes"].tolist()[-2:] == [third, second]
    assert log["annotator"].tolist()[-2:] == ["alice", "bob"]

    assert store.undo_last_decision(dataset_id, annotator("bob")) is None  # bob's only decision is undone
    assert store.undo_last_decision(dataset_id, annotator("alice"))["decision_id"] == first
    assert store.undo_last_decision(dataset_id, lead("lee"), of_anyone=True) is None
    assert store.current_decisions(dataset_id).empty


def test_decisions_are_per_dataset(store):
    a = store.add_dataset(make_dataset(2, content_hash="a"))
    b = store.add_dataset(make_dataset(2, content_hash="b"))
    store.record_decision(a, 0, "remove", actor=annotator("ann"))
    store.record_decision(b, 0, "reject", actor=annotator("ann"))
    assert store.undo_last_decision(a, annotator("ann"))["decision"] == "remove"
    assert store.current_decisions(b)["decision"].tolist() == ["reject"]


def test_the_store_refuses_what_an_annotators_role_does_not_allow(scored):
    store, dataset_id, run_id = scored
    ann, lee = annotator("ann"), lead("lee")
    store.record_decision(dataset_id, 0, "remove", actor=ann)  # deciding and editing: allowed
    store.record_decision(dataset_id, 1, "edit", final_response="Mine", actor=ann)
    theirs = store.record_decision(dataset_id, 2, "reject", actor=lee)
    with pytest.raises(NotAllowed, match=r"ann \(annotator\) may not change the thresholds"):
        store.set_thresholds(dataset_id, 0.3, 0.9, actor=ann)
    with pytest.raises(NotAllowed, match="may not accept proposals in bulk"):
        store.accept_proposals(ReviewQuery(run_id, 0.5, 0.8, action="correct"), actor=ann)
    with pytest.raises(NotAllowed, match="may not undo other people's decisions"):
        store.undo_last_decision(dataset_id, ann, of_anyone=True)
    assert store.get_thresholds(dataset_id) == (clear.DEFAULT_GAMMA, clear.DEFAULT_ETA)
    assert len(store.decision_log(dataset_id)) == 3  # nothing written by the refusals
    assert store.undo_last_decision(dataset_id, ann)["row_index"] == 1  # their own latest, not lee's later one
    # A lead may do all of it; their undo of anyone's decision records the lead's name.
    assert store.undo_last_decision(dataset_id, lee, of_anyone=True)["decision_id"] == theirs
    store.set_thresholds(dataset_id, 0.3, 0.9, actor=lee)
    assert store.accept_proposals(ReviewQuery(run_id, 0.3, 0.9, action="correct"), actor=lee) == 1  # row 4
    log = store.decision_log(dataset_id)
    assert log[["decision", "annotator"]].values.tolist()[-3:] == [["undo", "ann"], ["undo", "lee"], ["accept", "lee"]]


def test_a_query_wide_decision_is_one_group_and_one_undo_reverts_it(scored):
    store, dataset_id, run_id = scored
    ann, lee = annotator("ann"), lead("lee")
    earlier = store.record_decision(dataset_id, 0, "reject", actor=ann)
    store.record_decision(dataset_id, 1, "edit", final_response="Mine", actor=ann)
    query = ReviewQuery(run_id, 0.5, 0.8, max_confidence=0.3)  # rows 0, 1 and 2
    assert store.review_count(query, "remove") == store.review_count(query) == 3  # the dry run

    group_id, n = store.decide_query(query, "remove", actor=lee)
    assert n == 3
    current = store.current_decisions(dataset_id)
    assert current[["row_index", "decision", "annotator"]].values.tolist() == [
        [0, "remove", "lee"],
        [1, "remove", "lee"],
        [2, "remove", "lee"],
    ]
    log = store.decision_log(dataset_id)
    assert log["group_id"].isna().tolist() == [True, True, False, False, False]
    assert set(log["group_id"].dropna()) == {group_id} and set(log["run_id"].iloc[2:]) == {run_id}
    (group,) = store.decision_groups(dataset_id)
    assert (group["group_id"], group["decision"], group["n_rows"], group["actor"]) == (group_id, "remove", 3, "lee")
    assert (group["run_id"], group["undone_at"], group["undone_by"]) == (run_id, None, None)
    assert group["query"]["max_confidence"] == 0.3 and group["query"]["run_id"] == run_id  # the query, as JSON
    assert store.last_group(dataset_id) == group
    assert store.undo_last_decision(dataset_id, lee) is None  # a group's decisions are undone as a group
    later = store.record_decision(dataset_id, 2, "reject", actor=ann)  # decided again after the group

    assert store.undo_group(group_id, actor=lee) == 3
    current = store.current_decisions(dataset_id)
    assert current[["row_index", "decision", "annotator"]].values.tolist() == [
        [0, "reject", "ann"],  # back to the decisions the rows had before the group
        [1, "edit", "ann"],
        [2, "reject", "ann"],  # the later decision stands
    ]
    assert current["decision_id"].tolist()[::2] == [earlier, later]
    log = store.decision_log(dataset_id)
    undos = log[log["decision"] == "undo"]
    assert (
        undos["undoes"].tolist()
        == log.loc[log["group_id"].eq(group_id) & log["decision"].eq("remove"), "decision_id"].tolist()
    )
    assert set(undos["group_id"]) == {group_id} and set(undos["annotator"]) == {"lee"}
    assert store.last_group(dataset_id) is None
    assert store.decision_groups(dataset_id)[0]["undone_by"] == "lee"
    with pytest.raises(InvalidInput, match="undone already"):
        store.undo_group(group_id, actor=lee)
    with pytest.raises(NotFoundError, match="no decision group"):
        store.undo_group(group_id + 1, actor=lee)
    store.delete_dataset(dataset_id)
    assert store.decision_groups(dataset_id) == []


def test_a_query_wide_accept_skips_blank_proposals_and_keep_stores_no_text(scored):
    store, dataset_id, run_id = scored
    lee = lead("lee")
    store.add_scores(run_id, [score(4, 0.45, 0.95, proposal=" \u2003\n")])  # blank in Python's eyes too
    corrections = ReviewQuery(run_id, 0.5, 0.8, action="correct")  # rows 1, 4 and 6
    assert (store.review_count(corrections), store.review_count(corrections, "accept")) == (3, 2)
    group_id, n = store.decide_query(corrections, "accept", actor=lee)
    assert n == 2
    keep = ReviewQuery(run_id, 0.5, 0.8, min_confidence=0.8)  # row 8 (row 9 has no confidence)
    assert store.decide_query(keep, "reject", actor=lee)[1] == 1
    current = store.current_decisions(dataset_id)
    assert current[["row_index", "decision"]].values.tolist() == [[1, "accept"], [6, "accept"], [8, "reject"]]
    assert current["final_response"].tolist()[:2] == ["Proposal 1", "Proposal 6"]
    assert pd.isna(current["final_response"].iloc[2])  # keeping the original stores no text
    assert [g["decision"] for g in store.decision_groups(dataset_id)] == ["reject", "accept"]
    assert store.accept_proposals(corrections, actor=lee) == 2  # bulk accept is the accept case, one group more
    assert store.decide_query(ReviewQuery(run_id, 0.5, 0.8, search="no such text"), "remove", actor=lee) == (None, 0)
    assert len(store.decision_groups(dataset_id)) == 3  # selecting nothing records no group
    with pytest.raises(InvalidInput, match="query-wide decision 'edit'"):
        store.decide_query(corrections, "edit", actor=lee)
    blank = {c for c in map(chr, range(0x110000)) if c.isspace()}
    assert set(store_module._WHITESPACE) == blank  # SQL's idea of a blank proposal is Python's str.strip()


def test_query_wide_decisions_are_for_leads(scored):
    store, dataset_id, run_id = scored
    ann, lee, other = annotator("ann"), lead("lee"), lead("other")
    query = ReviewQuery(run_id, 0.5, 0.8, action="filter")
    with pytest.raises(NotAllowed, match=r"ann \(annotator\) may not remove or keep every row a filter selects"):
        store.decide_query(query, "remove", actor=ann)
    with pytest.raises(NotAllowed, match="may not accept proposals in bulk"):
        store.decide_query(query, "accept", actor=ann)
    group_id, _ = store.decide_query(query, "remove", actor=lee)
    with pytest.raises(NotAllowed, match="may not remove or keep every row"):
        store.undo_group(group_id, actor=ann)
    assert len(store.decision_log(dataset_id)) == 3 and store.decision_groups(dataset_id)[0]["undone_at"] is None
    assert store.undo_group(group_id, actor=other) == 3  # another lead may undo it (undo_any)
    assert store.current_decisions(dataset_id).empty


# -- thresholds -------------------------------------------------------------------------------------------------


def test_thresholds(db_path):
    with Store(db_path) as store:
        dataset_id = store.add_dataset(make_dataset(2))
        assert store.get_thresholds(dataset_id) == (clear.DEFAULT_GAMMA, clear.DEFAULT_ETA)
        store.set_thresholds(dataset_id, 0.3, 0.9, actor=lead("ann"))
        store.set_thresholds(dataset_id, 0, 1, actor=lead(""))
        for gamma, eta in [(-0.1, 0.5), (0.5, 1.5), (float("nan"), 0.5), ("0.5", 0.5), (True, 0.5)]:
            with pytest.raises(ValueError, match="between 0 and 1"):
                store.set_thresholds(dataset_id, gamma, eta, actor=lead("ann"))
        assert store.get_thresholds(dataset_id + 1) == (clear.DEFAULT_GAMMA, clear.DEFAULT_ETA)
    with Store(db_path) as store:
        assert store.get_thresholds(dataset_id) == (0.0, 1.0)


def test_threshold_version_moves_its_last_field_on_a_decision_and_the_rest_on_new_scores(scored):
    """The Thresholds page keeps the grid's scores part while all but the last field stand (``scores_version``)."""
    store, dataset_id, run_id = scored
    before = store.threshold_version(run_id)
    store.record_decision(dataset_id, 0, "remove", actor=annotator("ann"))
    decided = store.threshold_version(run_id)
    assert decided[:-1] == before[:-1] and decided[-1] != before[-1]
    store.add_scores(run_id, [score(9, 0.5, 0.0)])  # row 9 scored again
    rescored = store.threshold_version(run_id)
    assert rescored[:-1] != decided[:-1] and rescored[-1] == decided[-1]
