"""The curated dataset: automatic actions plus human decisions applied to rows, written in the input's own schema.

``curate`` decides, row by row, what survives and with which response; ``to_records`` writes those rows back in
the input's schema (every original column verbatim, only the response replaced); ``write_records`` serialises them
in memory first and then replaces the target file atomically, so a failed export never leaves a half-written file.
"""

from __future__ import annotations

import copy
import csv
import errno
import functools
import io
import json
import math
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from clear_core.clear import decide
from clear_core.data import (
    CHAT_KEYS,
    EXPORT_FORMAT_OF,
    RESPONSE_COLUMNS,
    ColumnMapping,
    Row,
    content_like,
    detect_format,
    response_turn_index,
)
from clear_core.errors import ClearError, InvalidInput

EXPORT_FORMATS = ("jsonl", "json", "csv", "parquet")
# Score fields written as ``clear_<name>`` with include_scores (confidence, action, proposal come first).
SIGNALS = (
    "consistency",
    "self_reflection",
    "logprob_mean",
    "logprob_min",
    "logprob_uncond_mean",
    "pmi",
    "eos_prob",
    "stop_prob",
    "final_number_logprob",
    "repetition",
    "arithmetic_errors",
    "judge_prob",
    "correction_confidence",
    "confidence_bsdetector",
    "n_response_tokens",
)
HUMAN_DECISIONS = ("accept", "reject", "remove", "edit")
# What an export does with rows that have no scores (not scored yet, or scoring failed) and no human decision.
UNSCORED_CHOICES = ("fail", "keep", "drop")
_SELF_INSTRUCT_KEYS = ("_source_index", "_instance_index")


class ExportError(ClearError):
    """The curated records cannot be written in the chosen format or place."""


class UnscoredRowsError(ExportError):
    """The export would pass rows without scores as kept, and the policy says to refuse (``unscored="fail"``)."""

    def __init__(self, unscored: list[int], failed: list[int], total: int):
        self.unscored, self.failed, self.total = unscored, failed, total
        self.them = "it" if len(unscored) + len(failed) == 1 else "them"  # for messages that go on about the rows
        super().__init__(describe_unscored(unscored, failed, total))


@dataclass(kw_only=True)
class ExportPolicy:
    """What the export applies. gamma (γ) and eta (η) are the CLEAR Auto-Filter / Auto-Correct thresholds.

    ``curate`` uses apply_auto, gamma, eta, apply_decisions, only_reviewed and unscored; ``include_scores`` and
    ``all_rows`` are passed on to ``to_records`` (they choose what is written, not what is kept).

    ``unscored`` is for rows that automatic actions cannot decide because they have no scores (the run stopped
    early, was limited to the first N rows, or scoring the row failed) and that no annotator decided: 'keep'
    writes them unchanged, 'drop' leaves them out, 'fail' keeps them in the preview but ``check_scored``
    refuses the export. It applies only with apply_auto and without only_reviewed (which already drops them).
    """

    apply_auto: bool = True  # apply automatic actions: filter drops rows, correct replaces responses
    gamma: float
    eta: float
    apply_decisions: bool = True
    only_reviewed: bool = False  # keep only rows with a human decision
    all_rows: bool = False  # write dropped rows too, with clear_kept / clear_action
    include_scores: bool = False  # add clear_* score columns
    unscored: str = "fail"  # one of UNSCORED_CHOICES

    def __post_init__(self) -> None:
        if self.unscored not in UNSCORED_CHOICES:
            raise InvalidInput(f"unscored={self.unscored!r}; expected one of {', '.join(UNSCORED_CHOICES)}.")


@dataclass
class CuratedRow:
    """A row after curation: action is 'keep' | 'filter' | 'correct' after decisions; source is who chose it
    ('human', 'auto', or 'none' when the row is unscored or automatic actions are off); scoring is 'scored',
    'unscored' (no score row) or 'failed' (a score row whose scoring raised: its ``error`` is set)."""

    row_index: int
    record: dict[str, Any]
    original_response: str
    final_response: str
    action: str
    source: str
    kept: bool
    scores: dict[str, Any] = field(default_factory=dict)
    decision: str | None = None
    annotator: str | None = None
    scoring: str = "scored"
    reason: str | None = None  # why a remove or reject decision was made (store.REASONS)
    note: str | None = None  # the annotator's free-text note on that decision

    @property
    def pending(self) -> bool:
        """No scores and no human decision: nothing has decided this row."""
        return self.scoring != "scored" and self.source != "human"


# -- curation -----------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A scalar from pandas as a plain Python value; NaN / NA / NaT become None."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _by_row_index(frame: pd.DataFrame | None) -> dict[int, dict[str, Any]]:
    """Frame rows keyed by row_index (a later row for the same index wins), values made plain."""
    if frame is None or frame.empty:
        return {}
    out = {}
    for record in frame.to_dict("records"):
        out[int(record["row_index"])] = {k: _plain(v) for k, v in record.items() if k != "row_index"}
    return out


def _row_triples(rows: list[Row] | pd.DataFrame) -> list[tuple[int, dict[str, Any], str]]:
    """(row_index, record, response) from Row objects or a frame (a JSON-text record is decoded)."""
    if isinstance(rows, pd.DataFrame):
        triples = zip(rows["row_index"], rows["record"], rows["response"], strict=True)
        return [(int(i), json.loads(r) if isinstance(r, str) else r, s) for i, r, s in triples]
    return [(r.row_index, r.record, r.response) for r in rows]


def _usable(text: Any) -> bool:
    return isinstance(text, str) and bool(text.strip())


def _scoring(scores: dict[str, Any]) -> str:
    """'scored', 'unscored' (no score row) or 'failed' (the score row records an error)."""
    if not scores:
        return "unscored"
    return "failed" if scores.get("error") else "scored"


def _automatic(response: str, scores: dict[str, Any] | None, policy: ExportPolicy) -> tuple[str, str, str]:
    """(action, final_response, source) from the scores alone; a correction needs a non-empty proposal."""
    if _scoring(scores or {}) != "scored" or not policy.apply_auto:
        return "keep", response, "none"
    proposal = scores.get("proposed_response")
    correction = scores.get("correction_confidence") if _usable(proposal) else None
    action = decide(scores.get("confidence"), correction, policy.gamma, policy.eta)
    return action, proposal if action == "correct" else response, "auto"


def _human(row_index: int, response: str, scores: dict[str, Any], decision: dict[str, Any]) -> tuple[str, str]:
    """(action, final_response) for a human decision; raises ValueError when it cannot be applied."""
    kind, text = decision.get("decision"), decision.get("final_response")
    if kind == "reject":
        return "keep", response
    if kind == "remove":
        return "filter", response
    if kind == "accept":
        text = text if isinstance(text, str) else scores.get("proposed_response")
        if not isinstance(text, str):
            raise ValueError(f"Row {row_index} was accepted but has no proposed response to accept.")
        return "correct", text
    if kind == "edit":
        if not isinstance(text, str):
            raise ValueError(f"Row {row_index} was edited but its decision has no final_response.")
        return "correct", text
    raise ValueError(f"Row {row_index} has decision {kind!r}; expected one of {', '.join(HUMAN_DECISIONS)}.")


def curate(
    rows: list[Row] | pd.DataFrame,
    scores: pd.DataFrame | None,
    decisions: pd.DataFrame | None,
    policy: ExportPolicy,
) -> list[CuratedRow]:
    """Every row, in input order, with its final action and response; a human decision overrides the automatic one.

    ``scores``: one row per scored row_index (docs/architecture.md score fields). ``decisions``: the current
    decision per row (row_index, decision, final_response, annotator); with duplicates the last one wins.
    Dropped rows are returned too (``kept=False``) so the result can be summarised and previewed. Rows without
    scores follow ``policy.unscored`` (see ExportPolicy); ``check_scored`` enforces 'fail'.
    """
    score_rows = _by_row_index(scores)
    decision_rows = _by_row_index(decisions) if policy.apply_decisions else {}
    curated = []
    for row_index, record, response in _row_triples(rows):
        row_scores = score_rows.get(row_index, {})
        action, final, source = _automatic(response, row_scores, policy)
        decision = decision_rows.get(row_index)
        if decision is not None:
            action, final = _human(row_index, response, row_scores, decision)
            source = "human"
        kept = action != "filter" and (decision is not None or not policy.only_reviewed)
        scoring = _scoring(row_scores)
        if decision is None and scoring != "scored" and policy.apply_auto and policy.unscored == "drop":
            kept = False
        curated.append(
            CuratedRow(
                row_index=row_index,
                record=record,
                original_response=response,
                final_response=final,
                action=action,
                source=source,
                kept=kept,
                scores=row_scores,
                decision=None if decision is None else decision.get("decision"),
                annotator=None if decision is None else decision.get("annotator"),
                scoring=scoring,
                reason=None if decision is None else decision.get("reason"),
                note=None if decision is None else decision.get("note"),
            )
        )
    return curated


def summarize(curated: list[CuratedRow]) -> dict[str, int]:
    """Counts for the export screen; kept = corrected_auto + corrected_human + edited + unchanged.

    ``unscored`` and ``failed`` count rows that nothing decided (no scores, no human decision), kept or not.
    """
    kept = [c for c in curated if c.kept]
    counts = {
        "total": len(curated),
        "kept": len(kept),
        "removed": len(curated) - len(kept),
        "corrected_auto": sum(c.action == "correct" and c.source == "auto" for c in kept),
        "corrected_human": sum(c.decision == "accept" for c in kept),
        "edited": sum(c.decision == "edit" for c in kept),
        "unchanged": sum(c.action == "keep" for c in kept),
    }
    counts["corrected"] = counts["corrected_auto"] + counts["corrected_human"]
    unscored, failed = pending_rows(curated)
    counts["unscored"], counts["failed"] = len(unscored), len(failed)
    return counts


def pending_rows(curated: list[CuratedRow]) -> tuple[list[int], list[int]]:
    """Row indices that nothing decided: (not scored, scoring failed), both without a human decision."""
    unscored = [c.row_index for c in curated if c.pending and c.scoring == "unscored"]
    failed = [c.row_index for c in curated if c.pending and c.scoring == "failed"]
    return unscored, failed


def row_list(indices: list[int], shown: int = 5) -> str:
    """'row 3', 'rows 8, 9, 10' or 'rows 8, 9, 10, 11, 12 and 17 more' (row indices as the Review page shows them)."""
    head = ", ".join(str(i) for i in indices[:shown])
    more = f" and {len(indices) - shown:,} more" if len(indices) > shown else ""
    return f"{'row' if len(indices) == 1 else 'rows'} {head}{more}"


def describe_unscored(unscored: list[int], failed: list[int], total: int) -> str:
    """'22 of 30 rows are not scored (rows 8, 9, 10, 11, 12 and 17 more) and 1 failed scoring (row 3)'."""
    failed_part = f"failed scoring ({row_list(failed)})"
    if not unscored:
        return f"{len(failed):,} of {total:,} rows {failed_part}"
    verb = "is" if len(unscored) == 1 else "are"
    text = f"{len(unscored):,} of {total:,} rows {verb} not scored ({row_list(unscored)})"
    return f"{text} and {len(failed):,} {failed_part}" if failed else text


def check_scored(curated: list[CuratedRow], policy: ExportPolicy) -> None:
    """Raise UnscoredRowsError when ``policy.unscored`` is 'fail' and automatic actions would leave rows
    without scores undecided (they would pass as kept without anyone having looked at them)."""
    if policy.unscored != "fail" or not policy.apply_auto or policy.only_reviewed:
        return
    unscored, failed = pending_rows(curated)
    if unscored or failed:
        raise UnscoredRowsError(unscored, failed, len(curated))


# -- records in the input's schema --------------------------------------------------------------------------


def _with_response(schema: str, record: dict[str, Any], response: str, mapping: ColumnMapping | None) -> dict:
    """A copy of ``record`` whose response (wherever the schema keeps it) is ``response``."""
    out = dict(record)
    if schema in RESPONSE_COLUMNS:
        out[RESPONSE_COLUMNS[schema]] = response
    elif schema == "mapped":
        if mapping is None:
            raise ValueError("Exporting a 'mapped' dataset needs its ColumnMapping (mapping=dataset.mapping).")
        out[mapping.response] = response
    elif schema in CHAT_KEYS:
        key, _, text_key = CHAT_KEYS[schema]
        turns = copy.deepcopy(record[key])
        turn = turns[response_turn_index(schema, turns)]
        turn[text_key] = content_like(turn.get(text_key), response)  # a list of parts stays a list of parts
        out[key] = turns
    elif schema == "self_instruct":
        out["instances"] = [{**record["instances"][0], "output": response}]
    else:
        raise ValueError(f"Unknown dataset schema {schema!r}.")
    return out


def _annotations(row: CuratedRow, include_scores: bool, all_rows: bool) -> dict[str, Any]:
    """The clear_* fields added to a written row."""
    out: dict[str, Any] = {}
    if all_rows:
        out["clear_kept"] = row.kept
        out["clear_action"] = row.action
    if include_scores:
        out["clear_confidence"] = row.scores.get("confidence")
        out["clear_action"] = row.action
        out["clear_proposed_response"] = row.scores.get("proposed_response")
        out.update({f"clear_{name}": row.scores.get(name) for name in SIGNALS})
        out["clear_decision"] = row.decision
        out["clear_annotator"] = row.annotator
        out["clear_reason"] = row.reason
        out["clear_note"] = row.note
    return out


def _regroup_self_instruct(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-instance records back into tasks, in order; a task with no instance left is dropped."""
    tasks: dict[int, dict[str, Any]] = {}
    for row in rows:
        source = row["_source_index"]
        if source not in tasks:
            tasks[source] = {k: v for k, v in row.items() if k not in _SELF_INSTRUCT_KEYS} | {"instances": []}
        tasks[source]["instances"].extend(row["instances"])
    return list(tasks.values())


def to_records(
    dataset_schema: str,
    file_format: str,
    curated: list[CuratedRow],
    include_scores: bool = False,
    all_rows: bool = False,
    *,
    mapping: ColumnMapping | None = None,
) -> list[dict[str, Any]]:
    """Curated rows as records in the input's own schema, original columns verbatim, only the response replaced.

    ``all_rows`` writes dropped rows too (with clear_kept / clear_action); ``include_scores`` adds clear_* columns
    (inside each instance for self-instruct). ``mapping`` is required for the 'mapped' schema. ``file_format`` is
    accepted for a stable call signature: records are format-neutral and ``write_records`` handles the format.
    """
    del file_format
    out = []
    for row in curated:
        if not (row.kept or all_rows):
            continue
        record = row.record
        if row.final_response != row.original_response:
            record = _with_response(dataset_schema, record, row.final_response, mapping)
        extra = _annotations(row, include_scores, all_rows)
        if dataset_schema == "self_instruct":
            record = {**record, "instances": [{**record["instances"][0], **extra}]}
        else:
            record = {**record, **extra}
        out.append(record)
    return _regroup_self_instruct(out) if dataset_schema == "self_instruct" else out


# -- writing ------------------------------------------------------------------------------------------------


def resolve_format(fmt: str, input_format: str | None = None, path: str | Path | None = None) -> str:
    """The concrete output format: 'original' means the input's format (or, failing that, the path's extension);
    an input format with no writer (a datasets folder) is written as ``EXPORT_FORMAT_OF`` says (Parquet)."""
    if fmt == "original":
        fmt = input_format or (detect_format(path) if path is not None else "")
        fmt = EXPORT_FORMAT_OF.get(fmt, fmt)
    if fmt not in EXPORT_FORMATS:
        raise InvalidInput(f"Unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)} or 'original'.")
    return fmt


def _columns(records: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(key for record in records for key in record))


def _csv_cell(value: Any) -> str:
    """A CSV cell: nested values as JSON text, None as an empty cell, booleans as true/false."""
    if value is None:
        return ""
    if isinstance(value, list | dict | bool):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str | int | float):
        return str(value)
    raise TypeError(f"a {type(value).__name__} value is not text, a number or JSON")


def _csv_bytes(records: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    # csv quotes a cell holding "\n" but not one holding a lone "\r", which a reader then takes for a line break
    quoting = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    columns = _columns(records)
    for cells in [columns, *([_csv_cell(record.get(c)) for c in columns] for record in records)]:
        (quoting if any("\r" in cell for cell in cells) else writer).writerow(cells)
    return buffer.getvalue().encode("utf-8")


def _parquet_bytes(records: list[dict[str, Any]]) -> bytes:
    arrays = {}
    for column in _columns(records):
        try:
            arrays[column] = pa.array([record.get(column) for record in records])
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise ExportError(f'Cannot write column "{column}" as Parquet: {exc}') from exc
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(arrays), sink)
    return sink.getvalue().to_pybytes()


def export_bytes(records: list[dict[str, Any]], fmt: str, *, input_format: str | None = None) -> bytes:
    """The records serialised as 'jsonl' | 'json' | 'csv' | 'parquet' (or 'original' with input_format)."""
    fmt = resolve_format(fmt, input_format)
    try:
        if fmt == "jsonl":
            return "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in records).encode()
        if fmt == "json":
            return (json.dumps(records, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()
        if fmt == "csv":
            return _csv_bytes(records)
        return _parquet_bytes(records)
    except (TypeError, ValueError) as exc:
        raise ExportError(f"Cannot write the records as {fmt}: {exc}") from exc


def _write_atomic(path: Path, payload: bytes) -> None:
    """Write a sibling temp file, then rename it over ``path``: readers see the old file or the new one."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _why_not_written(path: Path, exc: OSError) -> str:
    """The cause of a failed write in plain words."""
    folder = path.parent.resolve()
    if isinstance(exc, IsADirectoryError) or path.is_dir():
        return "it is a folder; give a file name"
    if exc.errno == errno.ENOENT:
        return f"the folder {folder} does not exist"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied: you cannot write to the folder {folder} (or replace the file)"
    if exc.errno == errno.EROFS:
        return f"the file system holding {folder} is read-only"
    if exc.errno == errno.ENOSPC:
        return f"the disk holding {folder} is full"
    if exc.errno == errno.EDQUOT:
        return f"your disk quota on {folder} is used up"
    if exc.errno == errno.EFBIG:
        return "the file would exceed the largest file size allowed here"
    return exc.strerror or str(exc)


def write_records(
    records: list[dict[str, Any]], path: str | Path, fmt: str = "original", *, input_format: str | None = None
) -> Path:
    """Write records to ``path`` atomically; fmt 'original' uses ``input_format`` (else the path's extension).

    A failed write raises ExportError naming the path and the cause; it leaves no temporary file and keeps any
    previous file at ``path`` as it was.
    """
    path = Path(path)
    payload = export_bytes(records, resolve_format(fmt, input_format, path))
    try:
        _write_atomic(path, payload)
    except OSError as exc:
        raise ExportError(
            f"Could not write the export to {path}: {_why_not_written(path, exc)}. Nothing was written."
        ) from exc
    return path


# -- streamed from the store --------------------------------------------------------------------------------
# The same curation and the same bytes as curate -> to_records -> write_records, for datasets of any size: the
# store applies the rule in SQL (Store.curation_summary, Store.curated_batches) and the writers below take the rows
# a batch at a time, so memory stays bounded. tests/test_export_stream.py checks both paths give the same files.

BATCH_ROWS = 50_000  # rows per query and per write; a batch of long chat records stays well under 100 MB
# DuckDB's memory in the export command (Store's memory_limit): without it DuckDB keeps every block the export reads
# in its cache, +0.5 GB at a million rows; at 320 MB a million-row export peaks near 0.75 GB, interpreter included.
DUCKDB_MEMORY_LIMIT = "320MB"


class _JSONText(str):
    """A stored record's JSON text, written as it is: the store keeps every record as ``json.dumps(record,
    ensure_ascii=False)``, which is what export writes for a row that nothing changed."""


def _clean(value: Any) -> Any:
    """A score from the store as export writes it: NaN becomes None (as ``_plain`` does)."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _plain_export(schema: str, policy: ExportPolicy) -> bool:
    """Records written as they are stored but for the response: no clear_* columns, no tasks to regroup."""
    return not (policy.include_scores or policy.all_rows) and schema != "self_instruct"


def _record(columns: dict[str, list], i: int, schema: str, mapping: ColumnMapping | None, policy: ExportPolicy):
    """Row ``i`` of a ``store.curated_batches`` table (as ``to_pydict``) as ``to_records`` writes it; a
    self-instruct record is one instance of its task (``curated_batches`` regroups them)."""
    original, final = columns["original_response"][i], columns["final_response"][i]
    record = json.loads(columns["record_json"][i])
    if final != original:
        record = _with_response(schema, record, final, mapping)
    if not (policy.include_scores or policy.all_rows):
        return record
    row = CuratedRow(
        row_index=columns["row_index"][i],
        record=record,
        original_response=original,
        final_response=final,
        action=columns["action"][i],
        source=columns["source"][i],
        kept=columns["kept"][i],
        scores={name: _clean(columns[name][i]) for name in columns if name in _SCORE_COLUMNS},
        decision=columns["decision"][i],
        annotator=columns["annotator"][i],
        reason=columns["reason"][i],
        note=columns["note"][i],
    )
    extra = _annotations(row, policy.include_scores, policy.all_rows)
    if schema == "self_instruct":
        return {**record, "instances": [{**record["instances"][0], **extra}]}
    return {**record, **extra}


def _stored_as_written(table: pa.Table) -> pa.ChunkedArray:
    """True where a plain export writes the row's stored JSON text as it is: nothing changed its response, and the
    text holds no NaN or Infinity (which ``json.dumps(allow_nan=False)`` refuses)."""
    if "changed" in table.column_names:  # a records_only table
        return pc.and_(pc.invert(table["changed"]), pc.invert(table["unsafe"]))
    same = pc.equal(table["final_response"], table["original_response"]).fill_null(False)
    return pc.and_(same, pc.invert(table["unsafe"]))


def curated_batches(
    store: Any,
    dataset: dict[str, Any],
    run_id: int | None,
    policy: ExportPolicy,
    *,
    raw_json: bool = False,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[list[dict[str, Any]]]:
    """The export's records in order, a list per batch of rows, built as ``to_records`` builds them from
    ``store.curated_batches``. ``raw_json``: a row written unchanged comes as its stored JSON text (a ``str``) and
    is not decoded at all. Self-instruct instances are regrouped into their tasks across batches."""
    schema = dataset["schema"]
    mapping = _mapping(dataset)
    raw_json = raw_json and _plain_export(schema, policy)
    task: dict[str, Any] | None = None  # the self-instruct task being regrouped
    for table in _curated_tables(store, dataset, run_id, policy, batch_rows):
        columns = table.to_pydict()
        as_stored = _stored_as_written(table).to_pylist() if raw_json else None
        records: list[dict[str, Any]] = []
        for i, text in enumerate(columns["record_json"]):
            if as_stored is not None and as_stored[i]:
                records.append(_JSONText(text))
                continue
            record = _record(columns, i, schema, mapping, policy)
            if schema != "self_instruct":
                records.append(record)
            elif task is not None and task["source"] == record["_source_index"]:
                task["record"]["instances"].extend(record["instances"])
            else:
                if task is not None:
                    records.append(task["record"])
                kept = {k: v for k, v in record.items() if k not in _SELF_INSTRUCT_KEYS}
                task = {"source": record["_source_index"], "record": kept | {"instances": list(record["instances"])}}
        yield records
    if task is not None:
        yield [task["record"]]


def _curated_tables(
    store: Any,
    dataset: dict[str, Any],
    run_id: int | None,
    policy: ExportPolicy,
    batch_rows: int,
    *,
    records_only: bool = False,
) -> Iterator[pa.Table]:
    return store.curated_batches(
        dataset["dataset_id"],
        run_id,
        policy,
        all_rows=policy.all_rows,
        include_scores=policy.include_scores,
        records_only=records_only,
        batch_rows=batch_rows,
    )


_SCORE_COLUMNS = frozenset(("confidence", "proposed_response", *SIGNALS))


def _export_columns(
    store: Any, dataset: dict[str, Any], run_id: int | None, policy: ExportPolicy
) -> tuple[list[str], dict[str, set[str]]]:
    """The columns of the export in order of first appearance, as ``_columns`` finds them in the records, and the
    JSON types of each stored column's values (``Store.curated_keys``), read by the store (no record is decoded
    here)."""
    keys, first_row_keys, kinds = store.curated_keys(dataset["dataset_id"], run_id, policy, all_rows=policy.all_rows)
    if dataset["schema"] == "self_instruct":  # the annotations go inside each instance
        return [k for k in keys if k not in _SELF_INSTRUCT_KEYS], kinds
    blank = CuratedRow(0, {}, "", "", "", "", True)
    extra = [k for k in _annotations(blank, policy.include_scores, policy.all_rows) if k not in keys]
    return ([*keys[:first_row_keys], *extra, *keys[first_row_keys:]] if keys else []), kinds


def _response_column(dataset: dict[str, Any]) -> str | None:
    """The record key holding the response where it is a top-level column (not inside chat turns or instances)."""
    if dataset["schema"] in RESPONSE_COLUMNS:
        return RESPONSE_COLUMNS[dataset["schema"]]
    mapping = _mapping(dataset)
    return mapping.response if dataset["schema"] == "mapped" and mapping else None


def _mapping(dataset: dict[str, Any]) -> ColumnMapping | None:
    """The column mapping the dataset was imported with, or None."""
    return ColumnMapping(**dataset["mapping"]) if dataset.get("mapping") else None


def _text_columns(dataset: dict[str, Any], policy: ExportPolicy, columns: list[str], kinds: dict) -> dict | None:
    """{column: Arrow type} when a plain export's columns are all text (or null): each column's type is then what
    ``pa.array`` gives its values (string, or null where no record holds a text), and the rows can be parsed by
    Arrow's JSON reader instead of Python; None when some column holds numbers, booleans or nested values."""
    response = _response_column(dataset)
    if not (_plain_export(dataset["schema"], policy) and columns and response in columns):
        return None
    if any(kinds[c] - {"VARCHAR", "NULL"} for c in columns) or kinds[response] == {"NULL"}:
        return None
    return {c: pa.string() if "VARCHAR" in kinds[c] else pa.null() for c in columns}


def _lines(text: pa.ChunkedArray | pa.Array) -> Iterator[memoryview]:
    """Each value of a string array followed by a newline, as contiguous bytes (no Python string per value)."""
    if text.type != pa.string():  # the offsets read below are 32-bit (a batch's text is far under 2 GB)
        text = text.cast(pa.string())
    joined = pc.binary_join_element_wise(text, "", "\n")
    for chunk in joined.chunks if isinstance(joined, pa.ChunkedArray) else [joined]:
        if len(chunk):
            _, offsets, data = chunk.buffers()
            ends = np.frombuffer(offsets, dtype=np.int32, count=len(chunk) + 1, offset=chunk.offset * 4)
            yield memoryview(data)[ends[0] : ends[-1]]


def _plain_jsonl_writer(tables: Iterator[pa.Table], out: BinaryIO, dataset: dict) -> None:
    """JSON Lines of a plain export from ``records_only`` tables: a row written as stored is its stored text,
    copied by Arrow; only the rows whose response changed (or whose text holds NaN) are decoded and encoded again,
    as ``to_records`` does."""
    mapping = _mapping(dataset)
    for table in tables:
        text = table["record_json"]
        redone = pc.invert(_stored_as_written(table))
        if pc.any(redone).as_py():
            rows = table.filter(redone).to_pydict()
            lines = []
            for stored, changed, final in zip(
                rows["record_json"], rows["changed"], rows["final_response"], strict=True
            ):
                record = json.loads(stored)
                if changed:
                    record = _with_response(dataset["schema"], record, final, mapping)
                lines.append(json.dumps(record, ensure_ascii=False, allow_nan=False))
            text = pc.replace_with_mask(text.combine_chunks(), redone.combine_chunks(), pa.array(lines, pa.string()))
        for piece in _lines(text):
            out.write(piece)


def _text_tables(
    tables: Iterator[pa.Table], dataset: dict, columns: list[str], types: dict[str, pa.DataType]
) -> Iterator[pa.Table]:
    """The written columns of each batch of a plain export whose columns are all text (``_text_columns``): the
    stored JSON parsed by Arrow's JSON reader with every column as a string, the changed responses put in."""
    response = _response_column(dataset)
    schema = pa.schema([(c, types[c]) for c in columns])
    parse = pa_json.ParseOptions(
        explicit_schema=pa.schema([(c, pa.string()) for c in columns]), unexpected_field_behavior="error"
    )
    for table in tables:
        if not table.num_rows:
            continue
        text = b"".join(_lines(table["record_json"]))
        longest = pc.max(pc.binary_length(table["record_json"])).as_py()
        options = pa_json.ReadOptions(block_size=max(1 << 20, 2 * longest + 2))  # a block holds whole lines
        parsed = pa_json.read_json(pa.BufferReader(text), read_options=options, parse_options=parse)
        parsed = parsed.combine_chunks()  # one chunk per column, as pa.array makes: the same Parquet pages
        arrays = []
        for c in columns:
            if c == response:
                arrays.append(pc.if_else(table["changed"], table["final_response"], parsed[c]))
            else:
                arrays.append(parsed[c] if types[c] == pa.string() else pa.nulls(table.num_rows))
        yield pa.Table.from_arrays(arrays, schema=schema)


def _plain_parquet_writer(tables: Iterator[pa.Table], out: BinaryIO, schema: pa.Schema) -> None:
    """Parquet of ``_text_tables``, written with the one schema known before the first row (nothing spilled)."""
    with pq.ParquetWriter(out, schema) as writer:
        for table in tables:
            writer.write_table(table)


def _plain_csv_writer(tables: Iterator[pa.Table], out: BinaryIO, columns: list[str]) -> None:
    """CSV of ``_text_tables`` with the bytes the csv module writes (see ``_csv_bytes``), quoted by Arrow: a cell
    is quoted (its quotes doubled) when it holds a comma, a quote or a newline, every cell of a row holding a
    carriage return is quoted, a null is an empty cell, and the one empty cell of a one-column row is quoted."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    quoting = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    (quoting if any("\r" in c for c in columns) else writer).writerow(columns)
    out.write(buffer.getvalue().encode("utf-8"))
    for table in tables:
        cells = [pc.fill_null(col.cast(pa.string()), "") for col in table.columns]
        carriage_return = functools.reduce(pc.or_, [pc.match_substring(c, "\r") for c in cells])
        written = []
        for cell in cells:
            quote = pc.or_(pc.match_substring_regex(cell, '[\n",]'), carriage_return)
            if len(cells) == 1:
                quote = pc.or_(quote, pc.equal(cell, ""))
            quoted = pc.binary_join_element_wise('"', pc.replace_substring(cell, '"', '""'), '"', "")
            written.append(pc.if_else(quote, quoted, cell))
        for piece in _lines(pc.binary_join_element_wise(*written, ",")):
            out.write(piece)


def _jsonl_writer(batches: Iterator[list], out: BinaryIO) -> None:
    for records in batches:
        lines = [r if isinstance(r, _JSONText) else json.dumps(r, ensure_ascii=False, allow_nan=False) for r in records]
        if lines:
            out.write(("\n".join(lines) + "\n").encode())


def _json_writer(batches: Iterator[list], out: BinaryIO) -> None:
    """``json.dumps(records, indent=2)`` written a record at a time."""
    empty = True
    for records in batches:
        for record in records:
            text = json.dumps(record, indent=2, ensure_ascii=False, allow_nan=False).replace("\n", "\n  ")
            out.write((("[\n  " if empty else ",\n  ") + text).encode())
            empty = False
    out.write(b"[]\n" if empty else b"\n]\n")


def _csv_writer(batches: Iterator[list], out: BinaryIO, columns: list[str]) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    quoting = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)  # see _csv_bytes
    writer.writerow(columns)
    for records in batches:
        for record in records:
            cells = [_csv_cell(record.get(c)) for c in columns]
            (quoting if any("\r" in cell for cell in cells) else writer).writerow(cells)
        out.write(buffer.getvalue().encode("utf-8"))
        buffer.seek(0)
        buffer.truncate()
    out.write(buffer.getvalue().encode("utf-8"))


def _parquet_writer(batches: Iterator[list], out: BinaryIO, columns: list[str], spill: Path) -> None:
    """Parquet with each column typed as ``pa.array`` types the whole column (as ``_parquet_bytes``): every batch
    is converted and spilled to an Arrow file; a column whose batches disagree (nulls aside) is typed from all its
    values; then the batches are written with that one schema."""
    spilled, types = [], {c: set() for c in columns}
    for number, records in enumerate(batches):
        if not records:
            continue
        arrays = {}
        for column in columns:
            try:
                arrays[column] = pa.array([record.get(column) for record in records])
            except (pa.ArrowException, TypeError, ValueError) as exc:
                raise ExportError(f'Cannot write column "{column}" as Parquet: {exc}') from exc
            types[column].add(arrays[column].type)
        table = pa.table(arrays)
        spilled.append(spill / f"{number}.arrow")
        with pa.OSFile(str(spilled[-1]), "wb") as sink, pa.ipc.new_file(sink, table.schema) as ipc:
            ipc.write_table(table)
    if not spilled:
        pq.write_table(pa.table({c: pa.array([], pa.null()) for c in columns}), out)
        return
    final = {c: _column_type(c, found, spilled) for c, found in types.items()}
    schema = pa.schema([(c, final[c]) for c in columns])
    with pq.ParquetWriter(out, schema) as writer:
        for file in spilled:
            with pa.memory_map(str(file)) as source:
                table = pa.ipc.open_file(source).read_all()
                arrays = [
                    table[c] if table[c].type == final[c] else pa.array(table[c].to_pylist(), final[c]) for c in columns
                ]
                writer.write_table(pa.table(arrays, schema=schema))
            file.unlink()


def _column_type(column: str, found: set[pa.DataType], spilled: list[Path]) -> pa.DataType:
    """The type ``pa.array`` gives the whole column: the one type its batches share (nulls aside), or else the
    type inferred from every value (read back from the spilled batches; only such a column is held whole)."""
    typed = {t for t in found if t != pa.null()}
    if len(typed) <= 1:
        return next(iter(typed), pa.null())
    values = []
    for file in spilled:
        with pa.memory_map(str(file)) as source:
            values.extend(pa.ipc.open_file(source).read_all()[column].to_pylist())
    try:
        return pa.array(values).type
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise ExportError(f'Cannot write column "{column}" as Parquet: {exc}') from exc


def write_curated(
    store: Any,
    dataset_id: int,
    policy: ExportPolicy,
    path: str | Path,
    fmt: str = "original",
    *,
    progress: Callable[[int, int], None] | None = None,
    batch_rows: int = BATCH_ROWS,
) -> int:
    """Write the curated dataset (latest run's scores, current decisions) to ``path`` atomically, streamed from
    the store in batches; returns how many records were written. The file equals ``write_records`` of the
    records ``curate`` and ``to_records`` give (byte for byte but for Parquet's row groups). ``progress(rows done,
    rows in all)`` is called after each batch. Errors as ``write_records``; ``check_pending`` is the caller's."""
    path = Path(path)
    dataset = store.get_dataset(dataset_id)
    run = store.latest_run(dataset_id)
    run_id = run["run_id"] if run else None
    fmt = resolve_format(fmt, dataset["file_format"], path)
    total, written = int(dataset["n_rows"]), 0

    def counted(batches: Iterator) -> Iterator:
        """The batches (record lists or tables) passed on, counting records and reporting progress."""
        nonlocal written
        done = 0
        for batch in batches:
            written += len(batch)
            done = min(total, done + batch_rows)
            yield batch
            if progress is not None:
                progress(done, total)

    def write(out: BinaryIO) -> None:
        plain = _plain_export(dataset["schema"], policy)
        if fmt == "jsonl" and plain:
            tables = _curated_tables(store, dataset, run_id, policy, batch_rows, records_only=True)
            _plain_jsonl_writer(counted(tables), out, dataset)
            return
        columns, kinds = _export_columns(store, dataset, run_id, policy) if fmt in ("csv", "parquet") else ([], {})
        if fmt in ("csv", "parquet") and (types := _text_columns(dataset, policy, columns, kinds)) is not None:
            tables = _curated_tables(store, dataset, run_id, policy, batch_rows, records_only=True)
            tables = _text_tables(counted(tables), dataset, columns, types)
            if fmt == "csv":
                _plain_csv_writer(tables, out, columns)
            else:
                _plain_parquet_writer(tables, out, pa.schema([(c, types[c]) for c in columns]))
            return
        batches = counted(
            curated_batches(store, dataset, run_id, policy, raw_json=fmt == "jsonl", batch_rows=batch_rows)
        )
        if fmt == "jsonl":
            _jsonl_writer(batches, out)
        elif fmt == "json":
            _json_writer(batches, out)
        elif fmt == "csv":
            _csv_writer(batches, out, columns)
        else:
            with tempfile.TemporaryDirectory(prefix=".export-", dir=path.parent) as spill:
                _parquet_writer(batches, out, columns, Path(spill))

    try:
        _write_streamed(path, write)
    except OSError as exc:
        raise ExportError(
            f"Could not write the export to {path}: {_why_not_written(path, exc)}. Nothing was written."
        ) from exc
    except (TypeError, ValueError) as exc:
        raise ExportError(f"Cannot write the records as {fmt}: {exc}") from exc
    return written


def _write_streamed(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """``_write_atomic`` for a file written piece by piece: a sibling temp file renamed over ``path``."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_pending(summary: dict[str, Any], policy: ExportPolicy) -> None:
    """``check_scored`` for a store's ``curation_summary``: raise UnscoredRowsError when the policy refuses rows
    that nothing decided."""
    if policy.unscored != "fail" or not policy.apply_auto or policy.only_reviewed:
        return
    if summary["unscored_rows"] or summary["failed_rows"]:
        raise UnscoredRowsError(summary["unscored_rows"], summary["failed_rows"], summary["total"])
