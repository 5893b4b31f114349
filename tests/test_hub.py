"""Hugging Face datasets out: `export --out FOLDER` writes a save_to_disk folder that load_from_disk reads back,
atomically; `--push-to-hub` without a token or a network says so at once and writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from clear_core import export, hub, workspace
from clear_core.store import Store
from tests.conftest import REPO, synthetic_scores


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clear_core", *args], cwd=REPO, capture_output=True, text=True, timeout=300, env=env
    )


@pytest.fixture
def scored_db(tmp_path, gsm8k_file):
    """The 12-row GSM8K file with synthetic scores: row 3 corrected, rows 0, 1, 2 and 5 filtered at γ 0.5."""
    path = tmp_path / "c.duckdb"
    with Store(path) as store:
        dataset_id = workspace.import_file(store, gsm8k_file)
        run_id = store.create_run(dataset_id, "synthetic", {"samples": 0})
        store.add_scores(run_id, synthetic_scores(12))
        store.set_run_status(run_id, "done")
    return path


def test_a_folder_export_reads_back_with_load_from_disk(tmp_path, scored_db, cli_here):
    from datasets import load_from_disk

    folder, jsonl = tmp_path / "curated", tmp_path / "curated.jsonl"
    written = cli_here("export", "--db", str(scored_db), "--out", str(folder), "--include-scores")
    assert written.returncode == 0, written.stderr
    assert f"to {folder} (datasets folder)" in written.stdout
    assert cli_here("export", "--db", str(scored_db), "--out", str(jsonl), "--include-scores").returncode == 0
    expected = [json.loads(line) for line in jsonl.read_text().splitlines()]
    rows = load_from_disk(str(folder)).to_list()
    assert len(rows) == 8 and rows == expected  # the same curated rows as the file export
    assert rows[[r["clear_action"] for r in rows].index("correct")]["output"] == "<b>72</b> clips\nin all."

    # --format datasets to the same folder replaces the earlier export whole, leaving no temporary folder behind
    again = cli_here("export", "--db", str(scored_db), "--out", str(folder), "--format", "datasets", "--gamma", "0")
    assert again.returncode == 0, again.stderr
    assert len(load_from_disk(str(folder))) == 12
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_folder_that_is_not_a_datasets_folder_is_never_replaced(tmp_path):
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    with pytest.raises(export.ExportError, match="not a Hugging Face datasets folder, which a datasets export would"):
        hub.save_folder([{"a": 1}], mine)
    assert (mine / "keep.txt").read_text() == "mine"


def test_push_to_hub_offline_or_without_a_token_says_so_at_once(tmp_path, scored_db):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env |= {"HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "pushed.jsonl"
    started = time.monotonic()
    pushed = cli("export", "--db", str(scored_db), "--out", str(out), "--push-to-hub", "me/curated", env=env)
    assert time.monotonic() - started < 60
    assert pushed.returncode == 1 and "Traceback" not in pushed.stderr
    message = pushed.stderr.strip()
    assert message.startswith("Error: Cannot push to the Hugging Face Hub: no Hugging Face token is set")
    assert "HF_HUB_OFFLINE is set" in message and message.endswith("Nothing was written.")
    assert not out.exists()

    env["HF_TOKEN"] = "hf_not_a_real_token"  # a token, but offline: still refused before any upload
    with_token = cli("export", "--db", str(scored_db), "--push-to-hub", "me/curated", env=env)
    assert with_token.returncode == 1
    assert "no Hugging Face token" not in with_token.stderr and "HF_HUB_OFFLINE is set" in with_token.stderr


def test_an_unreachable_hub_is_named_within_the_timeout(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "HUB_HOST", "hub.invalid")  # .invalid never resolves (RFC 2606)
    started = time.monotonic()
    problem = hub.push_problem(token="hf_not_a_real_token")
    assert time.monotonic() - started < hub.NETWORK_TIMEOUT_S + 2
    assert problem == "hub.invalid cannot be reached from this machine (offline or behind a firewall)"
    with pytest.raises(hub.HubError, match="Cannot push to the Hugging Face Hub: hub.invalid cannot be reached"):
        hub.push([{"a": 1}], "me/curated", token="hf_not_a_real_token")


def test_export_needs_an_out_or_a_hub_repo(scored_db, cli_here):
    neither = cli_here("export", "--db", str(scored_db))
    assert neither.returncode == 2 and "Give --out FILE (or FOLDER), --push-to-hub REPO_ID, or both." in neither.stderr
