"""The public API, in cleanlab's one-call shape: ``score`` a dataset in this process, then ``curate`` it.

Data comes first and positional, options keyword-only. Nothing here imports torch: ``score`` loads the model (and
with it torch) when it is called, so ``import clear_core`` stays light. ``score`` runs the same batch loop as the
worker process (``engine.score_batches``) and ``curate`` the same curation as the export (``export.curate``), so a
notebook gets the numbers and the curated rows the app and the CLI would.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clear_core import export, profiles
from clear_core.clear import DEFAULT_ETA, DEFAULT_GAMMA, decide_many
from clear_core.confidence import ScoringConfig
from clear_core.data import ColumnMapping, Dataset, load_dataset
from clear_core.errors import InvalidInput

# score's columns, in order: what a row is, its two confidences, the proposal and the action, then the signals.
LEADING_COLUMNS = ("row_index", "prompt", "response", "confidence", "correction_confidence", "proposed_response")
SIGNAL_COLUMNS = tuple(name for name in export.SIGNALS if name != "correction_confidence")

Data = pd.DataFrame | Sequence[dict] | str | Path


def _dataset(data: Data, mapping: ColumnMapping | None) -> Dataset:
    """``data`` read and validated as ``data.load_dataset`` reads a file: a frame or a list of dicts goes through
    a temporary JSON Lines file, so every schema, mapping and validation rule of the import applies unchanged."""
    if isinstance(data, str | Path):
        return load_dataset(data, mapping=mapping)
    if isinstance(data, pd.DataFrame):
        text = data.to_json(orient="records", lines=True, force_ascii=False, date_format="iso")
    elif isinstance(data, Sequence) and all(isinstance(record, dict) for record in data):
        text = "".join(json.dumps(record, ensure_ascii=False, default=str) + "\n" for record in data)
    else:
        raise InvalidInput(
            f"data is a {type(data).__name__}; give a pandas DataFrame, a list of dicts, or a path to a file "
            "(.csv, .jsonl, .json, .parquet) or a Hugging Face datasets folder."
        )
    with tempfile.TemporaryDirectory(prefix="clear-api-") as folder:
        path = Path(folder) / "data.jsonl"
        path.write_text(text, encoding="utf-8")
        return load_dataset(path, mapping=mapping, name="data")


def _mapping(prompt_column: str | None, response_column: str | None, input_column: str | None):
    if not (prompt_column or response_column):
        return None
    if not (prompt_column and response_column):
        raise InvalidInput("Give both prompt_column and response_column to map data of no known schema.")
    return ColumnMapping(prompt=prompt_column, response=response_column, input=input_column)


def score(
    data: Data,
    *,
    model: str | None = None,
    device: str = "auto",
    profile: str = "auto",
    samples: int | None = None,
    self_reflection: bool | None = None,
    propose: bool = True,
    limit: int | None = None,
    gamma: float = DEFAULT_GAMMA,
    eta: float = DEFAULT_ETA,
    prompt_column: str | None = None,
    response_column: str | None = None,
    input_column: str | None = None,
    config: ScoringConfig | None = None,
) -> pd.DataFrame:
    """Score every (prompt, response) row of ``data`` with a language model, in this process.

    Parameters
    ----------
    data : a pandas DataFrame, a list of dicts, or a path to a CSV/JSONL/JSON/Parquet file or a Hugging Face
        ``datasets`` folder. Alpaca, prompt/response, question/answer, OpenAI ``messages``, ShareGPT and the other
        layouts the README lists are recognised; for any other, name ``prompt_column`` and ``response_column``.
    model : a local model directory or an HF id in the local cache; None is the embedded SmolLM2-135M-Instruct.
    device : "auto" (CUDA when present), "cpu" or "cuda".
    profile : which passes run (``clear_core.profiles``): "fast" (k = 0, no self-reflection), "paper" (BSDetector:
        k = 5 and self-reflection) or "auto": paper on a CUDA GPU with a model other than the embedded one, else fast.
    samples, self_reflection : k sampled answers for observed consistency, and whether to ask the self-reflection
        questions; None takes the profile's.
    propose : generate the model's own answer for low-confidence rows and judge it (Auto-Correct).
    limit : score only the first N rows.
    gamma, eta : the Auto-Filter (γ) and Auto-Correct (η) thresholds that the ``action`` column is computed at.
    config : a full ``ScoringConfig``; overrides ``profile``, ``samples``, ``self_reflection`` and ``propose``.

    Returns
    -------
    A DataFrame with one row per scored input row, in input order: ``row_index`` (0-based position in ``data``),
    ``prompt``, ``response``, ``confidence`` (in [0, 1], calibrated to read as P(response is good): **higher means
    a better row**, lower a likelier error), ``correction_confidence`` (in [0, 1]: higher means the model's
    ``proposed_response`` more likely beats the response; null where nothing was proposed), ``proposed_response``,
    ``action`` ('correct' if correction_confidence > eta, else 'filter' if confidence < gamma, else 'keep'), the
    raw signals of docs/architecture.md, and ``error``: why a row could not be scored (its signals and action are
    then null); one bad row never fails the others.
    """
    from clear_core.engine import score_batches  # torch is loaded here, not at import
    from clear_core.model import load_model

    dataset = _dataset(data, _mapping(prompt_column, response_column, input_column))
    if limit is not None and limit < 1:
        raise InvalidInput(f"limit={limit}; give a positive number of rows, or None for all.")
    if config is None:
        config = profiles.resolve(
            profile, device=device, model=model, samples=samples, self_reflection=self_reflection, propose=propose
        ).config
    rows = [asdict(row) for row in dataset.rows[:limit]]
    lm = load_model(model, device)
    scored = [record for batch in score_batches(lm, rows, config) for record in batch]
    return _score_frame(rows, scored, gamma, eta)


def _score_frame(rows: list[dict], scored: list[dict], gamma: float, eta: float) -> pd.DataFrame:
    """score's result: the rows' text joined with their score records, in input order, with the action."""
    frame = pd.DataFrame(
        [{"row_index": r["row_index"], "prompt": r["prompt"], "response": r["response"]} for r in rows]
    )
    signals = pd.DataFrame(scored).reindex(columns=[*LEADING_COLUMNS[3:], *SIGNAL_COLUMNS, "error", "row_index"])
    frame = frame.merge(signals, on="row_index", how="left").sort_values("row_index", ignore_index=True)
    # a correction needs a proposal with text in it, as in export.curate
    usable = frame["proposed_response"].map(lambda text: isinstance(text, str) and bool(text.strip()))
    correction = frame["correction_confidence"].where(usable).astype(float)
    actions = decide_many(frame["confidence"].astype(float), correction, gamma, eta)
    frame.insert(6, "action", np.where(frame["error"].notna(), None, actions))
    return frame


def curate(
    data: Data,
    scores: pd.DataFrame,
    *,
    gamma: float = DEFAULT_GAMMA,
    eta: float = DEFAULT_ETA,
    unscored: str = "fail",
    include_scores: bool = False,
    prompt_column: str | None = None,
    response_column: str | None = None,
    input_column: str | None = None,
) -> pd.DataFrame:
    """The curated dataset: rows whose ``confidence < gamma`` dropped, confident corrections
    (``correction_confidence > eta``) applied, every other row as it was, in ``data``'s own columns.

    ``data`` is what was given to ``score`` (same column options); ``scores`` is what ``score`` returned (or any
    frame with its ``row_index``, ``confidence``, ``correction_confidence``, ``proposed_response`` and, for failed
    rows, ``error`` columns). Rows without scores (after ``limit``, or whose scoring failed): ``unscored="fail"``
    raises ``export.UnscoredRowsError`` naming them, ``"keep"`` keeps them unchanged, ``"drop"`` leaves them out.
    ``include_scores`` adds the export's provenance columns (``clear_confidence``, ``clear_action``, ...).
    """
    missing = {"row_index", "confidence"} - set(scores.columns)
    if missing:
        raise InvalidInput(f"scores has no {', '.join(sorted(missing))} column; pass what clear_core.score returned.")
    dataset = _dataset(data, _mapping(prompt_column, response_column, input_column))
    policy = export.ExportPolicy(gamma=gamma, eta=eta, unscored=unscored, include_scores=include_scores)
    fields = [c for c in scores.columns if c not in ("prompt", "response", "action")]
    curated = export.curate(dataset.rows, scores[fields], None, policy)
    export.check_scored(curated, policy)
    records: list[dict[str, Any]] = export.to_records(
        dataset.schema, dataset.file_format, curated, include_scores, mapping=dataset.mapping
    )
    if not records:  # every row filtered: still ``data``'s own columns, so code downstream finds them
        first = dataset.rows[0].record if dataset.rows else {}
        return pd.DataFrame(columns=list(first) if isinstance(first, dict) else None)
    return pd.DataFrame(records)
