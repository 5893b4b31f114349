"""The public API (clear_core.score / clear_core.curate) as a notebook uses it: the README's example run as written,
with the tiny random-weight model instead of the embedded one (same plumbing, seconds instead of minutes)."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

import clear_core
from clear_core import engine
from clear_core.errors import InvalidInput
from clear_core.export import UnscoredRowsError
from tests.conftest import REPO, gsm8k_records


def readme_example() -> str:
    section = (REPO / "README.md").read_text(encoding="utf-8").split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_readme_example_runs_and_returns_scores_and_the_curated_set(tmp_path, monkeypatch, tiny_model_path):
    code = readme_example()
    call = "clear_core.score(df, samples=0)"
    assert call in code
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(
        code.replace(call, f"clear_core.score(df, samples=0, model={str(tiny_model_path)!r}, device='cpu')"), namespace
    )

    scores, curated, df = namespace["scores"], namespace["curated"], namespace["df"]
    assert list(scores["row_index"]) == [0, 1]
    assert list(scores.columns[:7]) == [
        "row_index", "prompt", "response", "confidence", "correction_confidence", "proposed_response", "action",
    ]  # fmt: skip
    assert {"self_reflection", "logprob_mean", "pmi", "eos_prob", "error"} <= set(scores.columns)
    assert list(scores["prompt"]) == list(df["prompt"]) and list(scores["response"]) == list(df["response"])
    assert scores["confidence"].between(0, 1).all() and scores["error"].isna().all()
    assert set(scores["action"]) <= {"keep", "filter", "correct"}

    # curate keeps df's own columns; a filtered row is gone, a corrected row carries the proposal
    assert list(curated.columns) == ["prompt", "response"]
    kept = scores[scores["action"] != "filter"]
    assert len(curated) == len(kept)
    for (_, score_row), (_, out) in zip(kept.iterrows(), curated.iterrows()):
        assert out["prompt"] == score_row["prompt"]
        expected = score_row["proposed_response"] if score_row["action"] == "correct" else score_row["response"]
        assert out["response"] == expected
    lines = (tmp_path / "curated.jsonl").read_text().splitlines()
    written = [json.loads(line) for line in lines if line]  # pandas writes an empty frame as one blank line
    assert written == curated.to_dict("records")


def test_curate_at_thresholds_that_filter_everything_or_nothing(tiny_model_path):
    rows = [{"question": r["instruction"], "answer": r["output"]} for r in gsm8k_records(3)]
    scores = clear_core.score(rows, model=str(tiny_model_path), device="cpu", samples=0, propose=False)
    assert scores["correction_confidence"].isna().all() and scores["proposed_response"].isna().all()
    nothing = clear_core.curate(rows, scores, gamma=1.0)  # every confidence is below 1
    assert len(nothing) == 0 and list(nothing.columns) == ["question", "answer"]  # the data's own columns still
    everything = clear_core.curate(rows, scores, gamma=0.0, include_scores=True)
    assert everything[["question", "answer"]].to_dict("records") == rows
    assert list(everything["clear_confidence"]) == pytest.approx(list(scores["confidence"]))
    assert set(everything["clear_action"]) == {"keep"}


def test_a_limited_or_failed_row_is_never_curated_silently(tmp_path, tiny_model_path, monkeypatch):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(gsm8k_records(4)), encoding="utf-8")  # Alpaca, read from a file
    real = engine.score_rows

    def failing_on_row_1(lm, rows, config):
        if any(r["row_index"] == 1 for r in rows):
            raise RuntimeError("row 1 breaks the model")
        return real(lm, rows, config)

    monkeypatch.setattr(engine, "score_rows", failing_on_row_1)
    scores = clear_core.score(path, model=str(tiny_model_path), device="cpu", samples=0, limit=3, propose=False)
    assert list(scores["row_index"]) == [0, 1, 2]  # --limit 3: the first three rows
    failed = scores.set_index("row_index").loc[1]
    assert failed["error"] == "RuntimeError: row 1 breaks the model"
    assert pd.isna(failed["action"]) and pd.isna(failed["confidence"])

    with pytest.raises(UnscoredRowsError, match=r"1 of 4 rows is not scored \(row 3\) and 1 failed scoring \(row 1\)"):
        clear_core.curate(path, scores, gamma=0.0)
    kept = clear_core.curate(path, scores, gamma=0.0, unscored="keep")
    assert list(kept["output"]) == [r["output"] for r in gsm8k_records(4)]
    dropped = clear_core.curate(path, scores, gamma=0.0, unscored="drop")
    assert list(dropped["output"]) == [gsm8k_records(4)[i]["output"] for i in (0, 2)]


def test_bad_arguments_say_what_to_give():
    with pytest.raises(InvalidInput, match="give a pandas DataFrame, a list of dicts, or a path"):
        clear_core.score(42)
    frame = pd.DataFrame({"text": ["a"], "label": ["b"]})
    with pytest.raises(InvalidInput, match="pass what clear_core.score returned"):
        clear_core.curate(frame, pd.DataFrame({"x": [1]}))
    with pytest.raises(InvalidInput, match="both prompt_column and response_column"):
        clear_core.score(frame, prompt_column="text")
