"""The command line as a user runs it: its exit code, its one-line messages and the files it writes.

Tests about processes (a signal, a worker that keeps scoring, file permissions, the installed script, what an import
loads) run the real command in a subprocess (`cli`); the others run the same entry point in this process
(`cli_here`, tests/conftest.py), with the worker's loop in this process too, sparing a Python and a torch start-up
per command."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clear_core import handoff, workspace
from clear_core.store import Store
from tests.conftest import REPO, gsm8k_records, synthetic_scores


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clear_core", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    for fragment in fragments:
        assert fragment in message


def test_score_export_status_round_trip(tmp_path, gsm8k_file, tiny_model_path, cli_here):
    db = tmp_path / "c.duckdb"
    scored = cli_here("score", str(gsm8k_file), "--db", str(db), "--model", str(tiny_model_path), "--limit", "6",
                 "--samples", "1")  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    assert "Scored 6 of 12 rows" in scored.stdout
    assert "6 rows not scored (--limit); export asks what to do with them." in scored.stdout

    status = cli_here("status", "--db", str(db))
    assert status.returncode == 0
    assert "12 rows (alpaca, json)" in status.stdout
    # a --limit run is done with the rows it was asked for, not with the dataset
    assert f"run 1 (done, --limit 6) {tiny_model_path}: 6 of 12 rows scored, 6 not scored, 0 failed" in status.stdout

    out = tmp_path / "curated.json"
    exported = cli_here("export", "--db", str(db), "--out", str(out), "--all-rows", "--include-scores", "--gamma", "0",
                   "--unscored", "keep")  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert "6 of 12 rows are not scored (rows 6, 7, 8, 9, 10 and 1 more): written unchanged" in exported.stdout
    records = json.loads(out.read_text())
    original = json.loads(gsm8k_file.read_text())
    assert len(records) == 12  # --all-rows with gamma 0: nothing is filtered
    for record, source in zip(records, original):
        assert record["instruction"] == source["instruction"]
        assert record["clear_action"] in ("keep", "correct")
        if record["clear_action"] == "keep":
            assert record["output"] == source["output"]
        else:
            assert record["output"] == record["clear_proposed_response"]
    assert all(0 <= r["clear_confidence"] <= 1 for r in records[:6])
    assert all(r["clear_confidence"] is None for r in records[6:])  # beyond --limit: unscored

    jsonl = tmp_path / "curated.jsonl"
    args = ("export", "--db", str(db), "--out", str(jsonl), "--gamma", "1", "--eta", "1")
    assert cli_here(*args, "--unscored", "keep").returncode == 0
    kept = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["instruction"] for r in kept] == [s["instruction"] for s in original[6:]]  # scored rows filtered
    dropped = cli_here(*args, "--unscored", "drop")
    assert dropped.returncode == 0 and jsonl.read_text() == ""
    assert "0 of 12 rows kept, 12 removed" in dropped.stdout and "left out (--unscored drop)" in dropped.stdout


def test_export_refuses_unscored_rows_and_says_how_to_score_them(tmp_path, gsm8k_file, tiny_model_path, cli_here):
    db = tmp_path / "c.duckdb"
    args = ("--db", str(db), "--model", str(tiny_model_path), "--profile", "fast", "--no-propose")
    assert cli_here("score", str(gsm8k_file), *args, "--limit", "4").returncode == 0
    out = tmp_path / "curated.json"
    refused = cli_here("export", "--db", str(db), "--out", str(out))
    command = f"python -m clear_core score {gsm8k_file} {' '.join(args)}"
    assert_one_line_error(
        refused,
        "8 of 12 rows are not scored (rows 4, 5, 6, 7, 8 and 3 more)",
        "Nothing was written",
        "--unscored keep",
        "--unscored drop",
        f"score them first: {command}",
    )
    assert not out.exists()

    status = cli_here("status", "--db", str(db)).stdout
    assert f"to score the rest: {command}" in status
    # the command that both messages give scores the rest, in the same run; then the export goes through
    assert command.startswith("python -m clear_core score ")
    rest = cli_here(*command.split()[3:])
    assert rest.returncode == 0, rest.stderr
    assert (
        f"run 1 (done) {tiny_model_path}: 12 of 12 rows scored, 0 not scored, 0 failed"
        in cli_here("status", "--db", str(db)).stdout
    )
    exported = cli_here("export", "--db", str(db), "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert "not scored" not in exported.stdout and out.exists()


def test_export_and_status_of_a_database_never_scored(tmp_path, gsm8k_file, cli_here):
    db = tmp_path / "c.duckdb"
    with Store(db) as store:
        workspace.import_file(store, gsm8k_file)
    status = cli_here("status", "--db", str(db))
    assert "no scoring run yet: 12 rows not scored" in status.stdout
    assert f"to score them: python -m clear_core score {gsm8k_file} --db {db}" in status.stdout
    assert_one_line_error(cli_here("export", "--db", str(db), "--out", str(tmp_path / "o.json")), "12 of 12 rows")


# -- a database that cannot be written, or is held by another process ---------------------------------------


def without_root_override() -> list[str]:
    """A command prefix under which file permissions apply: root normally ignores them (CAP_DAC_OVERRIDE)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file permissions cannot be made to apply")
    caps = "-dac_override,-dac_read_search,-fowner"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"]


def cli_as_user(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*without_root_override(), sys.executable, "-m", "clear_core", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("read_only", ["file", "folder"])
def test_a_read_only_database_is_named_before_any_worker_starts(tmp_path, gsm8k_file, read_only):
    folder = tmp_path / "db"
    folder.mkdir()
    db = folder / "c.duckdb"
    with Store(db) as store:
        workspace.import_file(store, gsm8k_file)
    (db if read_only == "file" else folder).chmod(0o444 if read_only == "file" else 0o555)
    try:
        scored = cli_as_user("score", str(gsm8k_file), "--db", str(db), "--model", str(tmp_path / "no-model"))
        named = str(db) if read_only == "file" else f"The folder {folder} that holds the curation database {db}"
        assert_one_line_error(scored, named, "is read-only for this user (Permission denied)", "chmod u+w")
        assert not Path(f"{db}.work").exists()  # no run directory, no worker
        # reading still works: status and export open the database read-only
        status = cli_as_user("status", "--db", str(db))
        assert status.returncode == 0, status.stderr
        assert "read-only for this user" in status.stdout and "12 rows (alpaca, json)" in status.stdout
        out = tmp_path / "curated.json"
        exported = cli_as_user("export", "--db", str(db), "--out", str(out), "--unscored", "keep")
        assert exported.returncode == 0, exported.stderr
        assert len(json.loads(out.read_text())) == 12
    finally:
        folder.chmod(0o755)
        db.chmod(0o644)


def test_export_into_an_unwritable_folder_names_the_folder(tmp_path, gsm8k_file):
    db = tmp_path / "c.duckdb"
    with Store(db) as store:
        workspace.import_file(store, gsm8k_file)
    locked = tmp_path / "out"
    locked.mkdir(mode=0o555)
    try:
        result = cli_as_user("export", "--db", str(db), "--out", str(locked / "c.json"), "--unscored", "keep")
        assert_one_line_error(
            result, f"Could not write the export to {locked / 'c.json'}: permission denied", "Nothing was written"
        )
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


@pytest.fixture
def lock_holder():
    """Start a second process that opens a DuckDB file for writing (as the app does) and keeps it open."""
    holders = []

    def hold(db: Path) -> subprocess.Popen:
        code = "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('open', flush=True); time.sleep(300)"
        holder = subprocess.Popen([sys.executable, "-c", code, str(db)], stdout=subprocess.PIPE, text=True)
        holders.append(holder)
        assert holder.stdout.readline().strip() == "open"
        return holder

    yield hold
    for holder in holders:
        holder.kill()
        holder.wait()


def test_status_and_export_while_another_process_holds_the_database(tmp_path, gsm8k_file, tiny_model_path,
                                                                   lock_holder, cli_here):  # fmt: skip
    db = tmp_path / "c.duckdb"
    args = ("--db", str(db), "--model", str(tiny_model_path), "--samples", "0", "--no-propose")
    assert cli_here("score", str(gsm8k_file), *args, "--limit", "5").returncode == 0
    holder = lock_holder(db)

    status = cli_here("status", "--db", str(db))
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].startswith(f"{db} is open in another process (PID {holder.pid})")
    assert "decisions are not shown" in lines[0]
    assert lines[1] == f"  run-1 (done) {tiny_model_path}: 5 of the 5 rows it was given scored"

    exported = cli_here("export", "--db", str(db), "--out", str(tmp_path / "c.json"))
    assert_one_line_error(exported, f"{db} is open in another process (PID {holder.pid})", "Export page")


@pytest.mark.parametrize(
    ("content", "name", "fragments"),
    [
        (
            '{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": }\n',
            "bad.jsonl",
            ["bad.jsonl", "line 2"],
        ),
        ('[{"instruction": "a", "output": 3}]', "num.json", ["num.json", "row 1", '"output"']),
        ("a,b\n1,2\n", "cols.csv", ["cols.csv", "--prompt-column"]),
        ("hello", "data.txt", ["data.txt"]),
    ],
)
def test_bad_input_exits_with_one_line_naming_the_place(tmp_path, content, name, fragments, cli_here):
    path = tmp_path / name
    path.write_text(content)
    db = tmp_path / "c.duckdb"
    result = cli_here("score", str(path), "--db", str(db))
    assert_one_line_error(result, *fragments)
    if db.exists():
        status = cli_here("status", "--db", str(db))
        assert "no datasets" in status.stdout  # nothing half-imported


def test_missing_input_and_unknown_dataset(tmp_path, cli_here):
    assert_one_line_error(
        cli_here("score", str(tmp_path / "nope.json"), "--db", str(tmp_path / "c.duckdb")), "nope.json"
    )
    assert_one_line_error(cli_here("export", "--db", str(tmp_path / "none.duckdb"), "--out", "x.json"), "none.duckdb")


# -- the worker when the command that started it ends early ---------------------------------------------------


def start_scoring(tmp_path: Path, model: Path) -> tuple[subprocess.Popen, Path, Path, int]:
    """`score` on 200 real rows in the background, once its worker is scoring: (command, db, run dir, worker pid)."""
    data = tmp_path / "gsm8k_200.json"
    data.write_text(json.dumps(gsm8k_records(200)), encoding="utf-8")
    db = tmp_path / "c.duckdb"
    command = subprocess.Popen(
        [sys.executable, "-m", "clear_core", "score", str(data), "--db", str(db), "--model", str(model)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_dir = Path(f"{db}.work") / "run-1"
    deadline = time.time() + 240
    while handoff.read_progress(run_dir).get("status") != "running":
        assert command.poll() is None, command.communicate()
        assert time.time() < deadline, "the worker did not start scoring"
        time.sleep(0.5)
    return command, db, run_dir, int(handoff.read_progress(run_dir)["pid"])


def wait_for_exit(pid: int, timeout_s: float = 60) -> bool:
    deadline = time.time() + timeout_s
    while handoff.pid_alive(pid) and time.time() < deadline:
        time.sleep(0.5)
    return not handoff.pid_alive(pid)


def test_a_terminated_score_command_stops_its_worker(tmp_path, tiny_model_path):
    command, db, run_dir, worker = start_scoring(tmp_path, tiny_model_path)
    try:
        # meanwhile, from another terminal: status reads the run's progress without the database
        status = cli("status", "--db", str(db))
        assert f"is open in another process (PID {command.pid})" in status.stdout
        assert f"  run-1 (running, worker pid {worker}" in status.stdout

        command.send_signal(signal.SIGTERM)  # a CI timeout, `kill`, or a closed terminal (SIGHUP) alike
        _, stderr = command.communicate(timeout=120)
        assert command.returncode == 1
        assert "Scoring stopped after" in stderr and "run the same command again to resume" in stderr
        assert wait_for_exit(worker)
        assert handoff.read_progress(run_dir)["status"] == "cancelled"
        with Store(db) as store:
            assert store.get_run(1)["status"] == "cancelled"
    finally:
        if handoff.pid_alive(worker):
            os.kill(worker, signal.SIGKILL)


def test_a_failing_score_command_says_that_its_worker_keeps_scoring(tmp_path, tiny_model_path):
    command, db, run_dir, worker = start_scoring(tmp_path, tiny_model_path)
    try:
        # a chunk the store cannot take in stands for any failure while following the run
        (run_dir / "chunks" / "chunk-000000000000000-0.jsonl").write_text("{not json\n", encoding="utf-8")
        _, stderr = command.communicate(timeout=120)
        assert command.returncode == 1
        assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
        assert stderr.startswith("Error: JSONDecodeError")
        assert (
            f"The scoring worker (pid {worker}) keeps scoring in the background into {run_dir}; run the same command "
            f"again to pick up its results, or stop it with: kill {worker}"
        ) in stderr
        assert handoff.pid_alive(worker)
    finally:
        if handoff.pid_alive(worker):
            os.kill(worker, signal.SIGTERM)
            wait_for_exit(worker)


def test_rows_whose_scoring_failed_are_counted_and_named(tmp_path, gsm8k_file, cli_here):
    db = tmp_path / "c.duckdb"
    with Store(db) as store:
        dataset_id = workspace.import_file(store, gsm8k_file)
        run_id = store.create_run(dataset_id, "some-model", {"samples": 0})
        records = synthetic_scores(9)
        records[3] = {"row_index": 3, "error": "RuntimeError: CUDA out of memory"}
        store.add_scores(run_id, records)
        store.set_run_status(run_id, "done")
    status = cli_here("status", "--db", str(db)).stdout
    assert "run 1 (done, --limit 9) some-model: 8 of 12 rows scored, 3 not scored, 1 failed" in status
    out = tmp_path / "c.json"
    refused = cli_here("export", "--db", str(db), "--out", str(out))
    assert_one_line_error(refused, "3 of 12 rows are not scored (rows 9, 10, 11) and 1 failed scoring (row 3)")
    kept = cli_here("export", "--db", str(db), "--out", str(out), "--unscored", "drop", "--gamma", "0", "--eta", "1")
    assert kept.returncode == 0, kept.stderr
    assert "8 of 12 rows kept, 4 removed" in kept.stdout
    assert len(json.loads(out.read_text())) == 8


def test_help_documents_the_new_options(cli_here):
    export_help = cli_here("export", "--help").stdout
    assert "--unscored [fail|keep|drop]" in export_help and "[default: fail]" in export_help
    assert "Export page" in export_help
    assert "not scored and failed" in cli_here("status", "--help").stdout
    assert "DB.work/" in cli_here("status", "--help").stdout


def test_importing_the_core_loads_no_torch():
    """The CLI, the app and a public API import clear_core without torch; only the worker process loads the model."""
    modules = "clear_core, clear_core.cli, clear_core.store, clear_core.data, clear_core.export, clear_core.runs"
    code = f"import {modules}, clear_core.workspace, clear_core.ui_state, clear_core.errors; import sys; "
    code += "loaded = {'torch', 'transformers'} & set(sys.modules); assert not loaded, loaded"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


def test_the_installed_clear_review_command_has_the_same_subcommands_and_shows_defaults():
    """`pip install -e .` (make setup) puts `clear-review` beside the venv's python: the same command line."""
    from clear_core.cli import main

    script = Path(sys.executable).parent / "clear-review"
    assert script.is_file(), f"{script} is missing: run `{sys.executable} -m pip install --no-deps -e .`"
    top = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert top.returncode == 0, top.stderr
    assert top.stdout.startswith("Usage: clear-review ")
    for command in main.commands:
        assert f"  {command} " in top.stdout
    score = subprocess.run([str(script), "score", "--help"], capture_output=True, text=True, timeout=120)
    score_help = " ".join(score.stdout.split())  # help wraps at the terminal's width
    assert "[default: auto]" in score_help and "--profile [auto|fast|paper]" in score_help
    export = subprocess.run([str(script), "export", "--help"], capture_output=True, text=True, timeout=120)
    assert "[default: fail]" in export.stdout
    wrong = subprocess.run([str(script), "status"], capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 2 and "see: clear-review status --help" in wrong.stderr


def test_score_reports_near_duplicates_and_stores_their_groups(tmp_path, gsm8k_file, tiny_model_path, cli_here):
    rows = json.loads(gsm8k_file.read_text(encoding="utf-8"))
    rows[8]["output"] = rows[3]["output"].upper()
    gsm8k_file.write_text(json.dumps(rows), encoding="utf-8")
    db = tmp_path / "c.duckdb"
    args = ("--db", str(db), "--model", str(tiny_model_path), "--samples", "0", "--no-propose", "--limit", "1")
    scored = cli_here("score", str(gsm8k_file), *args)
    assert scored.returncode == 0, scored.stderr
    assert "Near-duplicates: 2 rows have near-duplicate responses (1 group); 0 rows" in scored.stdout
    with Store(db) as store:
        assert list(store.duplicates_of(1, 3)["row_index"]) == [8]
