"""End to end with the real embedded SmolLM2: 20 real GSM8K rows scored through the CLI, stored, exported, read back."""

from __future__ import annotations

import json
import math

import pytest

from clear_core.clear import decide
from clear_core.store import SCORE_FIELDS, Store
from tests.conftest import gsm8k_records
from tests.test_cli import cli

pytestmark = pytest.mark.model


def test_embedded_model_scores_real_rows_and_export_round_trips(tmp_path, embedded_model_path, cli_here):
    rows = gsm8k_records(20)
    rows[4]["output"] = "I'm sorry, but I can't help with that request."  # off-topic refusal
    rows[9]["output"] = rows[9]["output"][: len(rows[9]["output"]) // 3]  # truncated mid-answer
    rows[14]["output"] = rows[0]["output"]  # another row's answer
    source = tmp_path / "gsm8k20.json"
    source.write_text(json.dumps(rows, indent=2))
    db = tmp_path / "c.duckdb"

    # the score command and its worker as real processes; the exports read the database in this process (cli_here)
    # the default profile: auto picks fast for the embedded model on any device (k = 0, no self-reflection)
    scored = cli("score", str(source), "--db", str(db), timeout=1200)
    assert scored.returncode == 0, scored.stderr
    assert "Scored 20 of 20 rows" in scored.stdout
    assert "Scoring profile: fast (auto: " in scored.stdout

    with Store(db, read_only=True) as store:
        dataset_id = int(store.list_datasets()["dataset_id"].iloc[0])
        run = store.latest_run(dataset_id)
        assert run["model"] == "embedded:SmolLM2-135M-Instruct" and run["status"] == "done"
        assert run["params"]["samples"] == 0 and run["params"]["self_reflection"] is False  # resolved, not "auto"
        scores = store.scores(run["run_id"]).set_index("row_index").sort_index()
        gamma, eta = store.get_thresholds(dataset_id)
    assert list(scores.index) == list(range(20))
    for name in ("confidence", "eos_prob", "stop_prob"):
        assert scores[name].between(0, 1).all(), name
    for name in ("self_reflection", "consistency", "confidence_bsdetector"):  # the paper profile's signals
        assert scores[name].isna().all(), name
    # the confidence still ranks the planted problems below the clean rows' median
    assert scores.loc[[4, 9, 14], "confidence"].max() < scores.drop(index=[4, 9, 14])["confidence"].median()
    assert scores[["logprob_mean", "logprob_uncond_mean", "pmi"]].notna().all().all()
    assert set(SCORE_FIELDS) <= set(scores.columns)
    # the signals see the planted problems: a refusal and a swapped answer are not explained by their prompts,
    # and a response cut mid-sentence is unlikely to end where it ends
    clean = scores.drop(index=[4, 9, 14])
    assert scores.loc[4, "pmi"] < clean["pmi"].median()
    assert scores.loc[14, "pmi"] < clean["pmi"].median()
    assert scores.loc[9, "eos_prob"] < clean["eos_prob"].median()
    assert scores.loc[9, "stop_prob"] < clean["stop_prob"].median()
    assert clean["final_number_logprob"].notna().all()  # every clean GSM8K solution states a final number
    assert math.isnan(scores.loc[4, "final_number_logprob"])  # the refusal states no number
    assert scores["repetition"].between(0, 1).all()

    out = tmp_path / "curated.json"
    exported = cli_here("export", "--db", str(db), "--out", str(out), "--include-scores", "--all-rows")
    assert exported.returncode == 0, exported.stderr
    records = json.loads(out.read_text())
    assert len(records) == 20
    for i, (record, original) in enumerate(zip(records, rows)):
        assert record["instruction"] == original["instruction"] and record["input"] == original["input"]
        expected = decide(scores.loc[i, "confidence"], scores.loc[i, "correction_confidence"], gamma, eta)
        assert record["clear_action"] == expected
        assert record["clear_confidence"] == pytest.approx(scores.loc[i, "confidence"])
        assert record["clear_kept"] == (expected != "filter")
        if expected == "correct":
            assert record["output"] == record["clear_proposed_response"] != original["output"]
        else:
            assert record["output"] == original["output"]

    curated = tmp_path / "curated_only.json"
    assert cli_here("export", "--db", str(db), "--out", str(curated)).returncode == 0
    kept = json.loads(curated.read_text())
    assert len(kept) == sum(r["clear_kept"] for r in records)
    assert all(set(r) == {"instruction", "input", "output"} for r in kept)  # the input's own schema, no extras
