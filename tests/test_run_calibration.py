"""A run calibrates on corrupted copies of its dataset's own rows (runs.py, calibration.py, store.py): the copies are
scored with the run through the real worker (tiny model), stored apart from the dataset, and a calibration is saved
and applied; reviewers' decisions can refit it (a lead's action)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clear_core import calibration, handoff, noise, permissions, runs, workspace
from clear_core.confidence import ScoringConfig
from clear_core.permissions import NotAllowed
from clear_core.store import Store
from tests.conftest import gsm8k_records

FAST = ScoringConfig(samples=0, self_reflection=False, propose=False, batch_size=8)
LEAD = permissions.Actor("lee", "lee", "lead")
ANNOTATOR = permissions.Actor("ann", "ann", "annotator")


@pytest.fixture
def gsm8k_80(tmp_path):
    path = tmp_path / "gsm8k_80.json"
    path.write_text(json.dumps(gsm8k_records(80)), encoding="utf-8")
    return path


def test_a_run_scores_corrupted_copies_apart_from_the_dataset_and_saves_a_calibration(
    tmp_path, gsm8k_80, tiny_model_path
):
    db = tmp_path / "c.duckdb"
    with Store(db) as store:
        dataset_id = workspace.import_file(store, gsm8k_80)
        run_id = runs.start_run(store, db, dataset_id, model=str(tiny_model_path), device="cpu", config=FAST)
        directory = runs.run_dir(store, run_id)
        job, rows = handoff.read_job(directory)
        assert job["form"]  # the dataset's form model travels with the job
        copies = [r for r in rows if r["row_index"] < 0]
        n_copies = min(runs.CALIBRATION_COPIES, 80)  # as many as the dataset's sample holds, if fewer
        assert sorted(r["row_index"] for r in copies) == list(range(-n_copies, 0))
        final = runs.wait(store, run_id, poll_s=0.2)
        assert final.status == "done", final.error
        assert final.rows_done == final.rows_total == 80

        scores = store.scores(run_id)
        assert sorted(scores["row_index"]) == list(range(80))  # no copy among the dataset's scores
        assert scores["raw_logit"].notna().all() and scores["form_score"].notna().all()
        stored = store.calibration_rows(run_id)
        assert len(stored) == n_copies and all(r["raw_logit"] is not None for r in stored)
        assert {r["kind"] for r in stored} <= set(noise.CLASSIC_KINDS)
        by_index = store.dataset_rows(dataset_id).set_index("row_index")
        for copy in stored:  # each copy is its source row with the response corrupted
            assert copy["prompt"] == by_index.loc[copy["source_row_index"], "prompt"]
            assert copy["response"] != by_index.loc[copy["source_row_index"], "response"]

        saved = store.calibration(run_id)
        assert saved is not None and saved["n_bad"] == n_copies and saved["n_good"] == 80
        # whatever the tiny model's scores say, every stored confidence is the saved map of the raw logit
        expected = calibration.Calibration.from_json(saved).confidence(scores["raw_logit"])
        assert np.allclose(scores["confidence"], expected)

        # starting again has nothing to do: the copies are not made or sent twice
        assert runs.start_run(store, db, dataset_id, model=str(tiny_model_path), device="cpu", config=FAST) == run_id
        assert len(store.calibration_rows(run_id)) == n_copies


def test_a_small_dataset_gets_no_copies_and_keeps_the_shipped_map(tmp_path, gsm8k_file, tiny_model_path):
    db = tmp_path / "c.duckdb"
    with Store(db) as store:
        dataset_id = workspace.import_file(store, gsm8k_file)  # 12 rows: too few to calibrate on
        run_id = runs.start_run(store, db, dataset_id, model=str(tiny_model_path), device="cpu", config=FAST)
        assert runs.wait(store, run_id, poll_s=0.2).status == "done"
        assert store.calibration_rows(run_id) == [] and store.calibration(run_id) is None
        assert runs.current_calibration(store, run_id).source == "shipped"


def _scored_store(tmp_path, n: int = 60):
    """A store with n GSM8K rows scored with raw logits spread from -3 to 3 (no model needed)."""
    store = Store(tmp_path / "s.duckdb")
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(gsm8k_records(n)), encoding="utf-8")
    dataset_id = workspace.import_file(store, path)
    run_id = store.create_run(dataset_id, "m", {}, work_dir=None)
    logits = np.linspace(-3, 3, n)
    store.add_scores(run_id, [{"row_index": i, "raw_logit": float(s), "confidence": 0.5} for i, s in enumerate(logits)])
    return store, dataset_id, run_id, logits


def test_a_saved_calibration_applies_to_stored_rows_and_to_rows_stored_later(tmp_path):
    store, dataset_id, run_id, logits = _scored_store(tmp_path)
    with store:
        store.save_calibration(run_id, calibration.Calibration(2.0, 1.0, "synthetic", 0.2, 60, 32))
        scores = store.scores(run_id)
        assert np.allclose(scores["confidence"], 1 / (1 + np.exp(-(2.0 * logits + 1.0))))
        store.add_scores(run_id, [{"row_index": 0, "raw_logit": 0.5, "confidence": 0.01, "judge_prob": 0.4}])
        row = store.scores(run_id).set_index("row_index").loc[0]
        confidence = 1 / (1 + np.exp(-2.0))
        assert row["confidence"] == pytest.approx(confidence)
        assert row["correction_confidence"] == pytest.approx(0.8 * (1 - confidence))
        # a proposal's own confidence is mapped the same way and multiplies the correction confidence
        store.add_scores(run_id, [{"row_index": 1, "raw_logit": 0.5, "judge_prob": 0.4, "proposal_raw_logit": 1.0}])
        row = store.scores(run_id).set_index("row_index").loc[1]
        proposal = 1 / (1 + np.exp(-3.0))
        assert row["correction_confidence"] == pytest.approx(0.8 * (1 - confidence) * proposal)


def test_reviewers_refit_is_a_leads_action_and_needs_decisions_of_both_kinds(tmp_path):
    store, dataset_id, run_id, logits = _scored_store(tmp_path)
    with store:
        with pytest.raises(NotAllowed):
            runs.refit_from_reviewers(store, run_id, actor=ANNOTATOR)
        early = runs.refit_from_reviewers(store, run_id, actor=LEAD)
        assert early.source == "shipped" and "needs" in early.note and store.calibration(run_id) is None
        for i in range(60):  # reviewers remove the rows below raw logit 0 and keep the rest
            store.record_decision(dataset_id, i, "remove" if logits[i] < 0 else "reject", run_id=run_id, actor=LEAD)
        fitted = runs.refit_from_reviewers(store, run_id, actor=LEAD)
        assert fitted.source == "reviewers" and (fitted.n_good, fitted.n_bad) == (30, 30)
        assert store.calibration(run_id)["source"] == "reviewers"
        confidence = store.scores(run_id)["confidence"].to_numpy()
        crossing = logits[np.argmin(np.abs(confidence - 0.5))]
        assert -1 < crossing < 1  # P(good) = 0.5 where the reviewers' decisions switch (the shipped map: -1.45)
        assert confidence[logits < -1].mean() < 0.2 and confidence[logits > 1].mean() > 0.8
        assert "recalibrate" in set(store.audit_log()["action"])
