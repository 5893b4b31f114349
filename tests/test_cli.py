"""The command line as a user runs it: a subprocess, its exit code, its one-line messages and the files it writes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO


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


def test_score_export_status_round_trip(tmp_path, gsm8k_file, tiny_model_path):
    db = tmp_path / "c.duckdb"
    scored = cli("score", str(gsm8k_file), "--db", str(db), "--model", str(tiny_model_path), "--limit", "6",
                 "--samples", "1")  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    assert "Scored 6 of 12 rows" in scored.stdout

    status = cli("status", "--db", str(db))
    assert status.returncode == 0
    assert "12 rows (alpaca, json)" in status.stdout and "[done]" in status.stdout

    out = tmp_path / "curated.json"
    exported = cli("export", "--db", str(db), "--out", str(out), "--all-rows", "--include-scores", "--gamma", "0")
    assert exported.returncode == 0, exported.stderr
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
    assert cli("export", "--db", str(db), "--out", str(jsonl), "--gamma", "1", "--eta", "1").returncode == 0
    kept = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["instruction"] for r in kept] == [s["instruction"] for s in original[6:]]  # scored rows filtered


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
def test_bad_input_exits_with_one_line_naming_the_place(tmp_path, content, name, fragments):
    path = tmp_path / name
    path.write_text(content)
    db = tmp_path / "c.duckdb"
    result = cli("score", str(path), "--db", str(db))
    assert_one_line_error(result, *fragments)
    if db.exists():
        status = cli("status", "--db", str(db))
        assert "no datasets" in status.stdout  # nothing half-imported


def test_missing_input_and_unknown_dataset(tmp_path):
    assert_one_line_error(cli("score", str(tmp_path / "nope.json"), "--db", str(tmp_path / "c.duckdb")), "nope.json")
    assert_one_line_error(cli("export", "--db", str(tmp_path / "none.duckdb"), "--out", "x.json"), "none.duckdb")
