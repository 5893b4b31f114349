"""The DuckDB curation database: every SQL statement in CLEAR Review but the schema's history (``migrations``).

One ``Store`` owns one DuckDB connection to one file. Reads and writes return plain dicts and pandas DataFrames
with JSON columns decoded (``record_json`` -> ``record``, ``prompt_messages_json`` -> ``prompt_messages``,
``params_json`` -> ``params``, ``mapping_json`` -> ``mapping``, ``columns_json`` -> ``columns``).
Timestamps are naive ``TIMESTAMP`` values in UTC. Writes that record a person (decisions, undos, decision
groups, thresholds) take a ``permissions.Actor``, record its name and refuse what its role may not do (``NotAllowed``).

Threading: Streamlit calls from several threads. Every call runs on its own ``connection.cursor()`` (a DuckDB
cursor is a separate connection to the same database, safe to use from one thread), so reads run concurrently;
writes additionally hold one lock, so write transactions never conflict with each other.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import datetime as dt
import enum
import glob
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from clear_core import clear, dedupe, histograms, migrations, permissions, search_index
from clear_core.errors import ClearError, InvalidInput


class StoreError(ClearError):
    """A problem with the curation database that the user can act on."""


class StoreLockedError(StoreError):
    """The database file is open for writing in another process."""


class StoreReadOnlyError(StoreError):
    """The database file, or the folder holding it, cannot be written by this user."""


class NotFoundError(StoreError, LookupError):
    """A dataset, run or row id that is not in the database."""


# Score columns in the order of docs/architecture.md ("Score fields"), row_index excluded.
# Rows per query of the whole-dataset curation queries (curation_summary, curated_keys): a window's join of rows,
# scores and decisions takes about 0.1 GB at 250k rows, so a million rows never hold the whole join in memory.
CURATION_WINDOW_ROWS = 250_000
SCORE_FIELDS = (
    "confidence",
    "confidence_bsdetector",
    "consistency",
    "self_reflection",
    "logprob_mean",
    "logprob_uncond_mean",
    "pmi",
    "eos_prob",
    "n_response_tokens",
    "proposed_response",
    "judge_prob",
    "correction_confidence",
    "logprob_min",
    "stop_prob",
    "final_number_logprob",
    "repetition",
    "arithmetic_errors",
    "prompt_copy",
    "form_score",
    "raw_logit",
    "proposal_raw_logit",
    "unclosed_brackets",
)
NUMERIC_SCORE_FIELDS = tuple(f for f in SCORE_FIELDS if f != "proposed_response")
# A score row whose `error` is set is a row the worker could not score ("ExceptionType: message"): every signal is
# NULL, it gets no automatic action, and starting the run again retries it.
ERROR_FIELD = "error"

RUN_STATUSES = ("pending", "running", "done", "failed", "cancelled")
# What one query-wide action records on every row it selects (Store.decide_query): use the proposal, keep the
# original, drop the row.
GROUP_DECISIONS = ("accept", "reject", "remove")
# Every character Python's str.strip() removes: a proposal made only of these is blank, as on the Review page.
_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# A regular expression (RE2) matching any character str.strip() keeps: a text it does not match is blank. It stops at
# the first such character, where trim() with a character set decodes every text in full (50x slower at 1M rows).
_NOT_BLANK = "[^" + "".join(f"\\x{{{ord(c):04X}}}" for c in _WHITESPACE) + "]"
DECISIONS = ("accept", "reject", "remove", "edit", "undo")
# Why a row was removed or its proposal rejected (labels: ui_state.REASON_LABELS); only those two decisions take one.
REASONS = ("wrong", "truncated", "off-topic", "unsafe", "format", "other")
REASON_DECISIONS = ("remove", "reject")
REVIEW_STATUSES = ("undecided", "decided", *DECISIONS[:-1], "failed")  # failed: the row could not be scored
ORDER_COLUMNS = ("row_index", *SCORE_FIELDS, "action", "decision", "decided_at", "response_length")
DUPLICATE_KINDS = ("response", "prompt")  # the rows columns dedupe.py groups (duplicate_groups.kind)
DUPLICATE_DECISIONS = ("remove", "reject", "accept")  # what decide_duplicates applies to a row's duplicates
# Many annotators at once (issue 9): a row the Review queue hands out is leased for this long unless the dataset's
# review settings say otherwise; overlap asks for up to this many different people per row.
DEFAULT_LEASE_SECONDS = 600
MAX_OVERLAP = 10


@dataclasses.dataclass(frozen=True)
class ReviewQuery:
    """Which scored rows of a run the review queue holds, and in what order: one value shared by the queue, its
    count and bulk actions, so a new filter is a new field here.

    gamma (γ, Auto-Filter) and eta (η, Auto-Correct) give each row its automatic action. action: 'filter' |
    'correct' | 'keep' or several of them. status: 'undecided', 'decided' or a decision name, or 'failed' for the
    rows the worker could not score (only those: their ``error`` says why, their action is None); every other status
    leaves failed rows out. Confidence bounds are inclusive. search: case-insensitive substring of prompt, response
    or proposed_response. reason: one of ``REASONS``, the rows whose current decision gives it. reviewer (a name):
    only the rows still to review for that person, i.e. not decided by them and decided by fewer than ``overlap``
    different people (overlap 1: the undecided rows; issue 9's agreement studies ask for more). decided_by (a name):
    the decision that status, reason and the decision sorts read, and that the queue shows, is that person's own
    latest one, not the row's current one, so a blind reviewer under overlap learns nothing of the others' decisions
    by filtering. Sorting puts NULLs last and breaks ties by row_index. A bad value is InvalidInput here.
    """

    run_id: int
    gamma: float
    eta: float
    action: str | Sequence[str] | None = None
    status: str | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None
    search: str | None = None
    reason: str | None = None
    order_by: str = "confidence"
    ascending: bool = True
    reviewer: str | None = None
    overlap: int = 1
    decided_by: str | None = None

    def __post_init__(self) -> None:
        if self.order_by not in ORDER_COLUMNS:
            raise InvalidInput(f"Cannot sort by {self.order_by!r}; choose one of {', '.join(ORDER_COLUMNS)}.")
        if self.action is not None:
            actions = (self.action,) if isinstance(self.action, str) else tuple(self.action)
            bad = [a for a in actions if a not in clear.ACTIONS]
            if bad:
                raise InvalidInput(f"Unknown action(s) {bad}; expected {', '.join(clear.ACTIONS)}.")
            object.__setattr__(self, "action", actions)  # a tuple keeps the value hashable
        if self.status is not None and self.status not in REVIEW_STATUSES:
            raise InvalidInput(f"Unknown review status {self.status!r}; expected one of {', '.join(REVIEW_STATUSES)}.")
        if self.reason is not None and self.reason not in REASONS:
            raise InvalidInput(f"Unknown reason {self.reason!r}; expected one of {', '.join(REASONS)}.")
        if isinstance(self.overlap, bool) or not isinstance(self.overlap, int) or not 1 <= self.overlap <= MAX_OVERLAP:
            raise InvalidInput(f"overlap must be a whole number from 1 to {MAX_OVERLAP}, got {self.overlap!r}.")
        for name in ("gamma", "eta", "min_confidence", "max_confidence"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, float(getattr(self, name)))

    def where(self) -> tuple[str, dict[str, Any]]:
        """The condition on the queue's columns (``Store._queue_sql``) and its named parameters, $run_id, $gamma
        and $eta included; the store adds $dataset_id, the run's dataset."""
        params: dict[str, Any] = {"run_id": self.run_id, "gamma": self.gamma, "eta": self.eta}
        where = ["TRUE"]
        if self.action is not None:
            params["actions"] = list(self.action)
            where.append("list_contains($actions, action)")
        if self.status == "failed":
            where.append("error IS NOT NULL")
        elif self.status == "undecided":
            where.append("decision IS NULL")
        elif self.status == "decided":
            where.append("decision IS NOT NULL")
        elif self.status is not None:
            params["status"] = self.status
            where.append("decision = $status")
        if self.status != "failed":
            where.append("error IS NULL")
        if self.min_confidence is not None:
            params["min_confidence"] = self.min_confidence
            where.append("confidence >= $min_confidence")
        if self.max_confidence is not None:
            params["max_confidence"] = self.max_confidence
            where.append("confidence <= $max_confidence")
        if self.search:
            params["search"] = self.search
            where.append(_search_any())
        if self.reason is not None:
            params["reason"] = self.reason
            where.append("reason = $reason")
        if self.reviewer is not None:
            params["reviewer"], params["overlap"] = self.reviewer, self.overlap
            where.append(f"row_index NOT IN ({_REVIEWED_ENOUGH})")
        if self.decided_by is not None:
            params["decided_by"] = self.decided_by  # read by _queue_sql's and _queue_page's decisions
        return " AND ".join(where), params

    def order(self) -> str:
        """The ORDER BY terms: the chosen column (checked against ORDER_COLUMNS), NULLs last, then row_index."""
        return f"{self.order_by} {'ASC' if self.ascending else 'DESC'} NULLS LAST, row_index"


# A case-insensitive RE2 literal that matches every text whose DuckDB lower() contains lower($search): RE2's case
# folding covers each character's DuckDB lowercase except U+0130 (İ, lowercase i), added to every i (checked over
# every code point). lower() leaves no 'E', so '\E' cannot occur inside the quoted text.
_SEARCH_PATTERN = r"'(?i)\Q' || replace(lower($search), 'i', '\E[iİ]\Q') || '\E'"


_SEARCH_CACHE = 4  # searches whose matching rows a Store keeps (Store._search_rows)
# Word indexes a Store keeps (Store._word_index): a dataset's prompts and responses, and a run's proposals at one
# scores version; about 450 MB and 230 MB at 1M rows of GSM8K-like text (words, their edges and pairs).
_WORD_INDEXES = 2
# From this many rows the Review page has the word indexes built before the first search (Store.warm_search); a
# smaller dataset's texts are read in well under half a second.
_WARM_SEARCH_ROWS = 100_000
_INDEX_BATCH_ROWS = 8_192  # rows of text per batch a word index is built from (a closing store stops between two)
# A search checks the rows its word index leaves (Store._search_part) with the exact test when they are at most this
# share of the rows; more, and one scan of every text costs about as much.
_CHECK_SHARE = 0.1
# Up to _CHECK_BY_KEY such rows, and at most one per _ROWS_PER_KEY rows of the table, are looked up by key, in IN
# lists of up to _INDEX_SCAN_KEYS constants (DuckDB's index_scan_max_count: each list an index scan of migration 12's
# row_index index; about 35-50 us per key); more are checked in one scan with the rows as a join filter, which costs
# what the table's size says more than what the rows' count does. At 1M rows: 132-3,000 proposals 140-400 ms by
# scan, 10-160 ms by key; as many prompts and responses 15-30 ms by scan, 15-70 ms by key.
_INDEX_SCAN_KEYS = 2_048
_CHECK_BY_KEY = 4_096
_ROWS_PER_KEY = 250
_ORDER_CACHE = 4  # sorted key orders a Store keeps (Store._base_order): up to 8 MB each at 1M rows
_INSERT_COMPRESSION = "uncompressed"  # how Store.add_dataset writes the text of a JSON Lines file (see _bulk_text)
_INSERT_MEMORY = "700MB"  # what DuckDB may hold meanwhile
_LENGTH_CACHE = 2  # datasets whose response lengths a Store keeps (Store._response_lengths): 8 MB at 1M rows


# The same prefilter for the longest piece of lower($search) without an 'i' ($piece, never empty): a pattern that
# starts with a literal lets RE2 skip ahead with memchr, where '[iİ]' first made "it's" 2-3 times slower to scan.
_PIECE_PATTERN = r"'(?i)\Q' || $piece || '\E'"


def _search_sql(column: str, pattern: str = _SEARCH_PATTERN) -> str:
    """``column`` contains $search, case-insensitively: the RE2 prefilter (about twice as fast as lowering every
    text), then the exact test on the texts it lets through. A CASE, not an AND: DuckDB pushes an AND's terms into
    the table scan and ran the exact test first there, lowering every text (half the time of a search at 1M rows)."""
    return (
        f"CASE WHEN regexp_matches({column}, {pattern}) THEN contains(lower({column}), lower($search)) ELSE FALSE END"
    )


# Stores whose index build may be running in a background thread: stopped when the interpreter exits, as a daemon
# thread still streaming text to its child aborts Python's finalization ("PyGILState_Release").
_BUILDING: weakref.WeakSet[Store] = weakref.WeakSet()


@atexit.register
def _stop_index_builds() -> None:
    for store in list(_BUILDING):
        store._stop_building(timeout=10)


def _search_any() -> str:
    """prompt, response or proposed_response contains $search (``ReviewQuery.search``)."""
    return f"({' OR '.join(_search_sql(c) for c in ('prompt', 'response', 'proposed_response'))})"


def _scores_version(cursor: duckdb.DuckDBPyConnection, run_id: int) -> tuple:
    """What a run's scores look like, cheap to read: (rows scored, latest scored_at, calibrations). New or replaced
    scores and a recalibration (which rewrites every confidence) change it."""
    return tuple(
        cursor.execute(
            "SELECT (SELECT count(*) FROM scores WHERE run_id = $run_id), "
            "(SELECT max(scored_at) FROM scores WHERE run_id = $run_id), "
            "(SELECT count(*) FROM calibrations WHERE run_id = $run_id)",
            {"run_id": run_id},
        ).fetchall()[0]
    )


def _threshold_grid(
    cursor: duckdb.DuckDBPyConnection,
    run_id: int,
    rows: str,
    dataset_id: int | None,
    decided: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """``Store.threshold_grid`` on ``cursor`` (``dataset_id``: the run's, unless ``rows`` is 'scores'); with
    ``decided`` (``_decided_scores``' rows, ``rows`` 'decided'), counted from those instead of a join."""
    if rows not in ("all", "scores", "decided"):
        raise InvalidInput(f"Unknown grid rows {rows!r}; expected 'all', 'scores' or 'decided'.")
    decisions = {
        "all": f"LEFT JOIN ({_CURRENT_DECISIONS}) c ON c.row_index = s.row_index",
        "scores": "LEFT JOIN (SELECT NULL::BIGINT AS row_index, NULL::VARCHAR AS decision) c ON FALSE",
        "decided": f"JOIN ({_CURRENT_DECISIONS}) c ON c.row_index = s.row_index",
    }[rows]
    decision, rows_sql = "c.decision", f"FROM scores s {decisions} WHERE s.run_id = $run_id AND s.error IS NULL"
    params = {"run_id": run_id, **({"dataset_id": dataset_id} if rows != "scores" else {})}
    if decided is not None:  # the same rows, read before: their scores and decisions as lists, not a join again
        scored = decided[decided["scored"].to_numpy(dtype=bool)]
        decision = "s.decision"
        rows_sql = (
            "FROM (SELECT unnest($x::DOUBLE[]) AS confidence, unnest($y::DOUBLE[]) AS correction_confidence, "
            "unnest($decision::VARCHAR[]) AS decision) s"
        )
        params = {
            "x": scored["confidence"].to_numpy(dtype=float).tolist(),  # NULL read as NaN: the grid takes both as NULL
            "y": scored["correction_confidence"].to_numpy(dtype=float).tolist(),
            "decision": scored["decision"].astype(object).tolist(),
        }
    steps, bins, buckets = histograms.STEPS, histograms.BINS, histograms.AGREEMENT_BUCKETS
    # conf_step / corr_step: floor/ceil of 100·x, then corrected by the very comparisons the action rule makes
    # (x >= k/100, x > k/100), so a value on a threshold lands on the right side whatever 100·x rounds to.
    return cursor.execute(
        f"""
        WITH v AS (
            SELECT CASE WHEN NOT isnan(s.confidence) THEN s.confidence END AS x,
                   CASE WHEN NOT isnan(s.correction_confidence) THEN s.correction_confidence END AS y,
                   {decision} AS decision
            {rows_sql}
        ), k AS (
            SELECT x, y, decision, CAST(least(greatest(floor(x * {steps}), 0), {steps}) AS INTEGER) AS fx,
                   CAST(least(greatest(ceil(y * {steps}), 1), {steps}) AS INTEGER) AS cy
            FROM v
        )
        SELECT CASE WHEN x IS NULL THEN NULL WHEN x < 0 THEN 0 WHEN x >= 1 THEN {steps + 1}
                    ELSE fx + 1 + CAST(x >= (fx + 1) / {steps} AS INTEGER) - CAST(x < fx / {steps} AS INTEGER)
               END AS conf_step,
               CASE WHEN y IS NULL THEN NULL WHEN y <= 0 THEN 0 WHEN y > 1 THEN {steps + 1}
                    ELSE cy + CAST(y > cy / {steps} AS INTEGER) - CAST(y <= (cy - 1) / {steps} AS INTEGER)
               END AS corr_step,
               CASE WHEN x BETWEEN 0 AND 1 THEN CAST(least(floor(x * {bins}), {bins - 1}) AS INTEGER)
               END AS conf_bin,
               CASE WHEN y BETWEEN 0 AND 1 THEN CAST(least(floor(y * {bins}), {bins - 1}) AS INTEGER)
               END AS corr_bin,
               CASE WHEN x IS NOT NULL
                    THEN least(greatest(CAST(floor(x * {buckets}) AS BIGINT), 0), {buckets - 1}) END AS bucket,
               decision, count(*) AS n
        FROM k GROUP BY ALL ORDER BY ALL
        """,
        params,
    ).df()


def _confidence_bins(cursor: duckdb.DuckDBPyConnection, run_id: int, bins: int) -> pd.DataFrame:
    """``Store.confidence_bins`` on ``cursor``."""
    return cursor.execute(
        "SELECT least(floor(confidence * $bins), $bins - 1)::INTEGER AS bin, count(*) AS rows, "
        "sum(1 - confidence) AS expected_bad FROM scores WHERE run_id = $run_id AND confidence IS NOT NULL "
        "GROUP BY ALL ORDER BY bin",
        {"run_id": run_id, "bins": bins},
    ).df()


SUMMARY_FRAMES = ("grid", "bins", "candidates")  # Store.threshold_summary's frames
# A scored row's confidence decile, and the rows the Thresholds scatter can place (scored, with a confidence).
_DECILE = "least(greatest(CAST(floor(s.confidence * 10) AS BIGINT), 0), 9)"
_PLACED = "FROM scores s WHERE s.run_id = $run_id AND s.error IS NULL AND NOT isnan(s.confidence)"


def _keep_rate(quota, n):
    """The hash filter's share of a stratum of ``n`` rows to keep so that at least ``quota`` pass: (quota + margin)
    / n, where fewer than quota passing is a > 4 sigma event."""
    return np.minimum(1.0, (quota + 4 * np.sqrt(quota) + 10) / np.maximum(n, 1))


def _response_lengths(cursor: duckdb.DuckDBPyConnection, dataset_id: int, keys: Sequence[int]) -> pd.DataFrame:
    """row_index, response_length of the dataset's rows ``keys``."""
    return cursor.execute(
        "SELECT row_index, length(response) AS response_length FROM rows "
        "WHERE dataset_id = $dataset_id AND row_index IN (SELECT unnest($keys))",
        {"dataset_id": dataset_id, "keys": list(keys)},
    ).df()


def _deciles(grid: pd.DataFrame) -> pd.Series:
    """Rows per confidence decile (the scatter's strata, decided or not) from a ``threshold_grid``: its agreement
    buckets (``histograms.AGREEMENT_BUCKETS`` = 10) are the deciles, and it counts the same rows (scored, with a
    confidence that is not NaN)."""
    placed = grid[grid["bucket"].notna()]
    return placed.groupby(placed["bucket"].astype("int64"))["n"].sum().astype("int64").rename_axis("decile")


def _decided_scores(cursor: duckdb.DuckDBPyConnection, run_id: int, dataset_id: int) -> pd.DataFrame:
    """The run's score rows that have a current decision, in one join of the scores with the decisions: row_index,
    the numeric score fields, ``decision``, ``scored`` (no error), ``has_logit`` (raw_logit not NULL), ``placed``
    (scored, with a confidence: the scatter's) and, where placed, ``decile`` and ``h`` (``threshold_sample``'s
    strata and hash). The decided grid, the reviewed labels and the scatter's decided rows are all taken from it."""
    return cursor.execute(
        f"""
        SELECT s.row_index, {", ".join(f"s.{f}" for f in NUMERIC_SCORE_FIELDS)}, c.decision,
               s.error IS NULL AS scored, s.raw_logit IS NOT NULL AS has_logit,
               coalesce(s.error IS NULL AND NOT isnan(s.confidence), false) AS placed,
               CASE WHEN s.error IS NULL AND NOT isnan(s.confidence) THEN {_DECILE} END AS decile,
               hash(s.row_index) AS h
        FROM scores s JOIN ({_CURRENT_DECISIONS}) c ON c.row_index = s.row_index
        WHERE s.run_id = $run_id
        """,
        {"run_id": run_id, "dataset_id": dataset_id},
    ).df()


def _placed_decided(decided: pd.DataFrame) -> pd.DataFrame:
    """``_decided_scores``' placed rows as ``histograms.scatter_sample`` takes them (row_index, the numeric score
    fields, decision, decile, h), typed as a query of those rows alone types them: DuckDB gives an integer column a
    nullable type only when it holds a NULL (here perhaps in a failed row, which is not placed)."""
    placed = decided.loc[
        decided["placed"].to_numpy(dtype=bool), ["row_index", *NUMERIC_SCORE_FIELDS, "decision", "decile", "h"]
    ]
    masked = [c for c, t in placed.dtypes.items() if isinstance(t, pd.core.dtypes.dtypes.BaseMaskedDtype)]
    types = {c: placed[c].dtype.numpy_dtype for c in masked if not placed[c].isna().any()}
    return placed.astype({**types, "decile": "int64"}).reset_index(drop=True)


def _frame_to_bytes(frame: pd.DataFrame) -> bytes:
    """A frame as an Arrow IPC stream, zstd-compressed (``score_summaries.frame``)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _frame_from_bytes(blob: bytes) -> pd.DataFrame:
    return pa.ipc.open_stream(blob).read_all().to_pandas()


def _members(keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Whether each of ``keys`` is one of ``rows`` (row indices): one look-up per key in a bitmap of ``rows``,
    whatever the order of either."""
    rows = np.asarray(rows, dtype=np.int64)
    flags = np.zeros(int(max(keys.max(initial=-1), rows.max(initial=-1))) + 1, dtype=bool)
    flags[rows] = True
    return flags[keys]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _json_default(value: Any) -> Any:
    # Parquet/pandas readers hand over numpy scalars, arrays and timestamps; JSON has no such types.
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} value {value!r} cannot be stored as JSON")


def _dumps(value: Any, canonical: bool = False) -> str:
    """JSON text; ``canonical`` sorts keys so equal params/mappings compare equal as text. Records keep their
    key order, which export needs to write the input's own schema back."""
    return json.dumps(value, ensure_ascii=False, sort_keys=canonical, default=_json_default)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _plain(value: Any) -> Any:
    """A JSON-ready form of a dataset attribute (dataclass, enum, dict, list, str or None)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


def _first(cursor: duckdb.DuckDBPyConnection) -> tuple | None:
    """The first row of the cursor's result, or None. Uses fetchall() because DuckDB 2 treats a result left
    half-read by fetchone() as unfinished and refuses further work (register, ...) on that connection."""
    rows = cursor.fetchall()
    return rows[0] if rows else None


def _is_other_file(path: str) -> bool:
    """True for an existing non-empty file without DuckDB's magic bytes (DuckDB 2 would open a CSV in memory)."""
    try:
        with open(path, "rb") as f:
            header = f.read(12)
    except OSError:
        return False
    return len(header) > 0 and header[8:12] != b"DUCK"


def _check_writable(path: str) -> None:
    """Raise StoreReadOnlyError when the database file or its folder cannot be written.

    DuckDB would open such a file and fail only at the first commit (a bare TransactionException about the
    ``.wal`` file), after a scoring worker may already have started; trying the writes up front names the cause.
    """
    file, folder = Path(path), Path(path).resolve().parent
    try:
        if file.exists():
            os.close(os.open(path, os.O_RDWR))  # opening for writing changes nothing in the file
        with tempfile.TemporaryFile(dir=folder):  # where DuckDB writes <db>.wal and runs write <db>.work/
            pass
    except OSError as exc:
        if exc.filename == path:
            what, where = f"The curation database {path}", path
        else:
            what, where = f"The folder {folder} that holds the curation database {path}", folder
        raise StoreReadOnlyError(
            f"{what} is read-only for this user ({exc.strerror}). CLEAR Review writes scores and decisions into "
            f"the database, with its journal {path}.wal and scoring runs in {path}.work/ beside it. Make it "
            f"writable (chmod u+w {where}) or copy the database to a folder you can write to and use the copy."
        ) from exc


def _lock_message(path: str, exc: Exception) -> str:
    pid = re.search(r"PID (\d+)", str(exc))
    holder = f" (PID {pid.group(1)})" if pid else ""
    return (
        f"The curation database {path} is open in another process{holder}: the CLEAR Review app or a "
        "`python -m clear_core` command. DuckDB allows one writer per file. Close that process or wait for it to "
        "finish, or do this from the running app instead."
    )


def _df_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as dicts with missing values as None (pandas gives NaN/NaT)."""
    return [{k: (None if _is_missing(v) else v) for k, v in row.items()} for row in df.to_dict("records")]


def _with_messages(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its ``prompt_messages_json`` decoded as ``prompt_messages``. NULL stands for the prompt as one
    user turn (what an import of a plain JSON Lines file stores instead of writing each prompt a third time)."""
    df["prompt_messages_json"] = [
        json.loads(text) if isinstance(text, str) else [{"role": "user", "content": prompt}]
        for text, prompt in zip(df["prompt_messages_json"], df["prompt"], strict=True)
    ]
    return df.rename(columns={"prompt_messages_json": "prompt_messages"})


def _annotator(actor: permissions.Actor) -> str:
    """The name a decision-log write records for ``actor``; every such write needs one."""
    if not actor.name or not actor.name.strip():
        raise InvalidInput("Every decision needs an annotator name.")
    return actor.name.strip()


_FILE_LOCKS: dict[str, threading.RLock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def _file_lock(path: str) -> threading.RLock:
    """The write lock of every Store on ``path`` in this process (DuckDB lets one process write a file; inside it,
    two Stores on one file are two connections that would otherwise race, e.g. for the same lease)."""
    if path == ":memory:":
        return threading.RLock()  # each in-memory Store is its own database
    key = os.path.realpath(path)
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(key, threading.RLock())


def _lease_holder(actor: permissions.Actor) -> str:
    """Who holds a lease: the actor's id. Every browser session of local mode shares one id, so there the name
    is part of it: one person sees no leases, two names on one local server get different rows."""
    if not actor.name or not actor.name.strip():
        raise InvalidInput("Enter your name before opening rows to review.")
    return f"{actor.id}:{actor.name.strip()}" if actor.id == permissions.LOCAL_ID else actor.id


def _record_value(value: Any) -> Any:
    """A value DuckDB returned as a record's value from a DataFrame holds it (``_df_records``): NULL and NaN as None,
    a timestamp as a pandas Timestamp."""
    if isinstance(value, dt.datetime):
        return pd.Timestamp(value)
    return None if _is_missing(value) else value


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NaT or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


# The Arrow type of each column a score record may carry (add_scores); the integer signals are cast on insert.
_SCORE_TYPES = {
    "row_index": pa.int64(),
    **{field: pa.float64() for field in NUMERIC_SCORE_FIELDS},
    "proposed_response": pa.string(),
    ERROR_FIELD: pa.string(),
}


def _score_table(records: Sequence[dict[str, Any]]) -> pa.Table:
    """Score records as one Arrow table with a column per ``_SCORE_TYPES`` key, one row per row_index (its last
    record); NaN and missing fields are NULL. Raises ValueError for what ``Store.add_scores`` refuses."""
    keys: set[str] = set()
    latest: dict[Any, dict[str, Any]] = {}
    for record in records:
        keys.update(record)
        row_index = record.get("row_index")
        if row_index is None:
            raise ValueError("Every score record needs a row_index.")
        if record.get(ERROR_FIELD) is not None and any(record.get(f) is not None for f in SCORE_FIELDS):
            raise ValueError(f"Row {row_index} is marked failed but carries signals.")
        latest[row_index] = record
    unknown = sorted(keys - _SCORE_TYPES.keys())
    if unknown:
        raise ValueError(f"Unknown score fields {unknown}; expected row_index, {ERROR_FIELD} and {list(SCORE_FIELDS)}.")
    rows = list(latest.values())
    columns = {}
    for field, kind in _SCORE_TYPES.items():
        values = [r.get(field) for r in rows]
        try:
            try:
                column = pa.array(values, kind)
            except (pa.ArrowInvalid, pa.ArrowTypeError):  # a NaN where text belongs: from_pandas reads it as NULL
                column = pa.array(values, kind, from_pandas=True)  # (several times slower, so not the first try)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise ValueError(f"Score field {field!r} holds a value that is not {kind}: {exc}") from exc
        if pa.types.is_floating(kind) and pc.any(pc.is_nan(column)).as_py():
            column = pc.if_else(pc.is_nan(column), pa.scalar(None, kind), column)
        columns[field] = column
    return pa.table(columns)


def _lower_this_threads_priority() -> None:
    """Make the calling thread the last to get a core (niceness 19, Linux): an index built in the background then
    gives way to the pages a person is waiting for. Elsewhere, or where refused, it runs as it is."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


class Store:
    """The curation database in one DuckDB file; use as a context manager or call ``close()``."""

    def __init__(self, path: str | os.PathLike[str], read_only: bool = False, *, memory_limit: str | None = None):
        """``memory_limit`` (e.g. '320MB') caps DuckDB's memory in this process, its cache of the file's blocks
        included, which otherwise grows with every block a query reads (up to 80% of the machine's memory): what
        a command that reads a whole large dataset once (export) passes. Work that does not fit spills to disk,
        beside the database, or in the system's temporary folder for a read-only one."""
        self.path = str(path)
        self.read_only = read_only
        self._memory_limit = memory_limit
        self._write_lock = _file_lock(self.path)
        self._cursor_lock = threading.Lock()
        if self.path != ":memory:" and read_only and not Path(self.path).exists():
            raise StoreError(f"The curation database {self.path} does not exist; import a dataset first.")
        if self.path != ":memory:" and not read_only:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        if _is_other_file(self.path):
            raise StoreError(
                f"{self.path} is not a DuckDB database; give the path of a curation database (e.g. curation.duckdb)."
            )
        if self.path != ":memory:" and not read_only:
            _check_writable(self.path)
        try:
            config = {} if memory_limit is None else {"memory_limit": memory_limit}
            if memory_limit is not None and read_only:  # the database's folder may not be writable
                config["temp_directory"] = os.path.join(tempfile.gettempdir(), "clear-review-duckdb")
            self._conn = duckdb.connect(self.path, read_only=read_only, config=config)
        except duckdb.Error as exc:
            if isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower():
                raise StoreLockedError(_lock_message(self.path, exc)) from exc
            raise StoreError(f"Could not open the curation database {self.path}: {exc}") from exc
        try:
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; every write was already committed. An index being built in the background stops
        at its next batch of text and is waited for: DuckDB refuses to close a connection a cursor is reading."""
        self._stop_building()
        self._conn.close()

    # -- plumbing -------------------------------------------------------------------------------------------

    @contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._cursor_lock:
            cursor = self._conn.cursor()
        try:
            yield cursor
        finally:
            cursor.close()

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor inside one committed-or-rolled-back transaction, holding the write lock."""
        with self._write_lock, self._cursor() as cursor:
            cursor.begin()
            try:
                yield cursor
            except BaseException:
                cursor.rollback()
                raise
            cursor.commit()

    def _df(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pd.DataFrame:
        with self._cursor() as cursor:
            return cursor.execute(sql, params).df()

    def _one(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The first row as a dict, its values as ``_df_records`` gives them (NULL and NaN as None, timestamps as
        pandas Timestamps), read without a DataFrame: building one took 5-15 ms a row at 1M rows' load (its text
        columns), and the sidebar and pages read several such rows on every rerun."""
        with self._cursor() as cursor:
            result = cursor.execute(sql, params)
            row = result.fetchone()
            names = [column[0] for column in result.description]
        if row is None:
            return None
        return {name: _record_value(value) for name, value in zip(names, row, strict=True)}

    def _scalar(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        with self._cursor() as cursor:
            row = _first(cursor.execute(sql, params))
        return None if row is None else row[0]

    def _migrate(self) -> None:
        """Bring the file's schema up to date (``migrations``), refusing a newer or a read-only file that needs it."""
        with self._cursor() as cursor:
            applied = migrations.applied_versions(cursor)
        if migrations.unknown(applied):
            raise StoreError(
                f"The curation database {self.path} was written by a newer CLEAR Review (schema version "
                f"{max(applied)}); upgrade CLEAR Review to open it."
            )
        pending = migrations.pending(applied)
        if pending and self.read_only:
            raise StoreError(
                f"The curation database {self.path} needs upgrading (schema versions "
                f"{[v for v, _ in pending]}); open it once without read-only mode."
            )
        for version, sql in pending:
            try:
                with self._transaction() as cursor:
                    migrations.apply(cursor, version, sql, applied_at=_now())
            except duckdb.Error as exc:
                raise StoreError(
                    f"Could not upgrade the curation database {self.path} to schema version {version}: {exc}. "
                    "Is it a CLEAR Review database?"
                ) from exc

    def schema_versions(self) -> list[int]:
        """Migration versions applied to this file, ascending."""
        with self._cursor() as cursor:
            return sorted(migrations.applied_versions(cursor))

    # -- datasets -------------------------------------------------------------------------------------------

    def add_dataset(self, ds: Any, *, actor: permissions.Actor | None = None) -> int:
        """Store a loaded dataset and all its rows in one transaction; an identical dataset returns its id.

        ``ds`` is any object with ``name, source_path, file_format, schema, mapping, columns, content_hash`` and
        ``rows`` (objects with ``row_index, record, prompt_messages, prompt, response``), e.g. ``data.Dataset``.
        Identical means same ``content_hash`` and same column mapping. ``actor`` must be allowed to import (None:
        the file's owner, ``permissions.owner_actor``); a new dataset's import goes into the audit log.
        """
        actor = actor or permissions.owner_actor()
        permissions.require(actor, "import")
        mapping_json = None if ds.mapping is None else _dumps(_plain(ds.mapping), canonical=True)
        rows_file = getattr(ds, "rows_file", None)  # rows staged as Parquet by data.load_dataset(staging_dir=)
        jsonl_rows = getattr(ds, "jsonl_rows", None)  # or a JSON Lines file DuckDB reads itself (JsonlRows)
        if jsonl_rows is not None and not jsonl_rows.unchanged():
            raise StoreError(f"{jsonl_rows.path} changed after it was checked; import it again.")
        rows = None
        if rows_file is None and jsonl_rows is None:
            rows = pd.DataFrame(
                {
                    "row_index": [int(r.row_index) for r in ds.rows],
                    "record_json": [_dumps(r.record) for r in ds.rows],
                    "prompt": [r.prompt for r in ds.rows],
                    "prompt_messages_json": [_dumps(r.prompt_messages) for r in ds.rows],
                    "response": [r.response for r in ds.rows],
                },
                columns=["row_index", "record_json", "prompt", "prompt_messages_json", "response"],
            )
        n_rows = len(rows) if rows is not None else int(ds.n_rows)
        with self._bulk_text(rows is None), self._transaction() as cursor:
            existing = _first(
                cursor.execute(
                    "SELECT dataset_id FROM datasets WHERE content_hash = ? AND mapping_json IS NOT DISTINCT FROM ? "
                    "ORDER BY dataset_id LIMIT 1",
                    [ds.content_hash, mapping_json],
                )
            )
            if existing:
                return int(existing[0])
            schema = _plain(ds.schema)
            dataset_id = cursor.execute(
                "INSERT INTO datasets (name, source_path, file_format, schema, mapping_json, columns_json, "
                "content_hash, n_rows, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING dataset_id",
                [
                    ds.name,
                    None if ds.source_path is None else str(ds.source_path),
                    _plain(ds.file_format),
                    schema if schema is None or isinstance(schema, str) else _dumps(schema),
                    mapping_json,
                    _dumps(list(ds.columns) if ds.columns is not None else None),
                    ds.content_hash,
                    n_rows,
                    _now(),
                ],
            ).fetchall()[0][0]
            try:
                if rows is not None:
                    cursor.register("incoming_rows", rows)  # dropped with the cursor at the end of the call
                    cursor.execute(
                        "INSERT INTO rows SELECT ?, row_index, record_json, prompt, prompt_messages_json, response "
                        "FROM incoming_rows",
                        [dataset_id],
                    )
                elif jsonl_rows is not None:  # DuckDB reads the JSON Lines file itself (see JsonlRows)
                    drop = bool(ds.duplicates_dropped) and bool(jsonl_rows.repeats)
                    cursor.execute(
                        "INSERT INTO rows SELECT $dataset_id, row_index, record_json, prompt, prompt_messages_json, "
                        f"response FROM ({_jsonl_rows_sql(jsonl_rows, drop)})",
                        {"dataset_id": dataset_id, **({"repeats": list(jsonl_rows.repeats)} if drop else {})},
                    )
                else:  # DuckDB streams the file; without the duplicates, rows take kept_index (0..n-1)
                    cursor.execute(
                        "INSERT INTO rows SELECT $dataset_id, CASE WHEN $drop THEN kept_index ELSE row_index END, "
                        "record_json, prompt, prompt_messages_json, response FROM read_parquet($file) "
                        "WHERE NOT ($drop AND repeat)",
                        {"dataset_id": dataset_id, "file": str(rows_file), "drop": bool(ds.duplicates_dropped)},
                    )
            except duckdb.ConstraintException as exc:
                raise StoreError(f"Dataset {ds.name!r} has two rows with the same row_index: {exc}") from exc
            source = None if ds.source_path is None else str(ds.source_path)
            _audit(cursor, actor, "import", dataset_id=int(dataset_id), detail={"name": ds.name, "file": source})
        return int(dataset_id)

    @contextmanager
    def _bulk_text(self, on: bool = True) -> Iterator[None]:
        """While on: DuckDB writes the rows' text uncompressed and holds at most ``_INSERT_MEMORY`` (unless the
        store was opened with a limit of its own). Its default analysis tries every method on each segment (38.9 s
        of a 1M-row insert); zstd alone took 21-25 s and uncompressed 14 s, and a search then scans the text about
        as fast or faster (the numbers: bench/results/import.md), for 1.06 GB on disk instead of 0.38 GB at 1M
        rows. The cap is needed because the written blocks stay in DuckDB's cache: 1.5-2.1 GB peak without it,
        0.84 GB with it. Both settings are the database's: a query from another thread meanwhile gets them too. It
        ends with a checkpoint, so that rows the insert left in the write-ahead log (fewer than about 120k) are
        written the same way now rather than at close (2.6 s of a 100k-row import otherwise)."""
        if not on:
            yield
            return
        with self._cursor() as cursor:
            before = cursor.execute("SELECT current_setting('force_compression')").fetchall()[0]
            cursor.execute(f"SET force_compression = {_quote(_INSERT_COMPRESSION)}")
            capped = self._memory_limit is None
            if capped:
                try:
                    cursor.execute(f"SET memory_limit = {_quote(_INSERT_MEMORY)}")
                except duckdb.Error:  # it holds more than that now (another query's cached blocks): no cap then
                    capped = False
        try:
            yield
            with self._write_lock, self._cursor() as cursor, contextlib.suppress(duckdb.Error):
                cursor.execute("CHECKPOINT")  # refused while another transaction writes: the next one does it
        finally:
            with self._cursor() as cursor:
                cursor.execute(f"SET force_compression = {_quote(str(before[0]))}")
                if capped:  # opened without a limit: DuckDB's default again (setting the text read back rounds it)
                    cursor.execute("RESET memory_limit")

    def list_datasets(self, counts: bool = True) -> pd.DataFrame:
        """Every dataset, newest first, with its latest run and counts of rows, scored rows and decided rows
        (``counts=False``: without ``n_scored`` and ``n_decided``, which read every score of the latest runs; the
        sidebar, drawn on every page, needs names and sizes only)."""
        if not counts:
            return self._df(
                """
                WITH latest AS (SELECT dataset_id, max(run_id) AS run_id FROM runs GROUP BY dataset_id)
                SELECT d.dataset_id, d.name, d.source_path, d.file_format, d.schema, d.content_hash, d.n_rows,
                       d.created_at, latest.run_id AS latest_run_id, runs.status AS latest_run_status
                FROM datasets d
                LEFT JOIN latest USING (dataset_id)
                LEFT JOIN runs ON runs.run_id = latest.run_id
                ORDER BY d.dataset_id DESC
                """
            )
        return self._df(
            f"""
            WITH latest AS (SELECT dataset_id, max(run_id) AS run_id FROM runs GROUP BY dataset_id),
            scored AS (SELECT run_id, count(*) FILTER (WHERE error IS NULL) AS n FROM scores GROUP BY run_id),
            decided AS (SELECT dataset_id, count(*) AS n FROM ({_CURRENT_DECISIONS_ALL}) GROUP BY dataset_id)
            SELECT d.dataset_id, d.name, d.source_path, d.file_format, d.schema, d.content_hash, d.n_rows,
                   d.created_at, latest.run_id AS latest_run_id, runs.status AS latest_run_status,
                   coalesce(scored.n, 0) AS n_scored, coalesce(decided.n, 0) AS n_decided
            FROM datasets d
            LEFT JOIN latest USING (dataset_id)
            LEFT JOIN runs ON runs.run_id = latest.run_id
            LEFT JOIN scored ON scored.run_id = latest.run_id
            LEFT JOIN decided ON decided.dataset_id = d.dataset_id
            ORDER BY d.dataset_id DESC
            """
        )

    def get_dataset(self, dataset_id: int) -> dict[str, Any]:
        """One dataset's metadata as a dict (``mapping`` and ``columns`` decoded); NotFoundError if absent."""
        row = self._one("SELECT * FROM datasets WHERE dataset_id = ?", [dataset_id])
        if row is None:
            raise NotFoundError(f"There is no dataset with id {dataset_id}.")
        row["mapping"] = _loads(row.pop("mapping_json"))
        row["columns"] = _loads(row.pop("columns_json"))
        return row

    def sample_rows(self, dataset_id: int, n: int) -> pd.DataFrame:
        """Up to ``n`` rows (row_index, prompt_messages, prompt, response) in a fixed pseudo-random order (by a hash
        of row_index), so the same dataset always gives the same sample: what a run fits its form model and
        calibration copies on, reproducibly on resume."""
        df = self._df(
            "SELECT row_index, prompt_messages_json, prompt, response FROM rows WHERE dataset_id = ? "
            "ORDER BY hash(row_index), row_index LIMIT ?",
            [dataset_id, int(n)],
        )
        return _with_messages(df)

    def dataset_rows(self, dataset_id: int, row_indices: Iterable[int] | None = None) -> pd.DataFrame:
        """Rows (row_index, record, prompt_messages, prompt, response) ordered by row_index; all or the given ones."""
        sql = (
            "SELECT row_index, record_json, prompt_messages_json, prompt, response FROM rows "
            "WHERE dataset_id = $dataset_id"
        )
        params: dict[str, Any] = {"dataset_id": dataset_id}
        if row_indices is not None:
            sql += " AND list_contains($row_indices, row_index)"
            params["row_indices"] = [int(i) for i in row_indices]
        df = self._df(sql + " ORDER BY row_index", params)
        df["record_json"] = [json.loads(t) for t in df["record_json"]]
        return _with_messages(df).rename(columns={"record_json": "record"})

    # -- curation (the export's rule in SQL; export.curate is the same rule in Python) -------------------------

    def _curation_params(self, dataset_id: int, run_id: int | None, policy: Any) -> dict[str, Any]:
        """$-parameters of ``_CURATED`` for an ``export.ExportPolicy`` (read by attribute; the store imports no
        export code)."""
        return {
            "dataset_id": dataset_id,
            "run_id": run_id,
            "gamma": float(policy.gamma),
            "eta": float(policy.eta),
            "apply_auto": bool(policy.apply_auto),
            "apply_decisions": bool(policy.apply_decisions),
            "only_reviewed": bool(policy.only_reviewed),
            "unscored_drop": policy.unscored == "drop",
            "lo": 0,
            "hi": 2**62,
        }

    def _row_windows(self, dataset_id: int, size: int) -> list[tuple[int, int]]:
        """[lo, hi) ranges of ``size`` row indices covering the dataset: the curation queries run one window at a
        time, so their joins and the blocks they read stay bounded whatever the dataset's size."""
        n_rows = self._scalar("SELECT max(row_index) + 1 FROM rows WHERE dataset_id = ?", [dataset_id]) or 0
        return [(lo, lo + size) for lo in range(0, int(n_rows), size)]

    def curation_summary(self, dataset_id: int, run_id: int | None, policy: Any) -> dict[str, Any]:
        """What ``policy`` makes of every row, counted in SQL as ``export.summarize`` counts it, plus ``changed``
        (rows dropped or rewritten), and ``unscored_rows``/``failed_rows``: the row indices nothing decided (no
        scores and no human decision), as ``export.pending_rows`` lists them. Raises ValueError as
        ``export.curate`` does for a decision that cannot be applied."""
        params = self._curation_params(dataset_id, run_id, policy)
        counts, pending = np.zeros(7, dtype=np.int64), []
        for lo, hi in self._row_windows(dataset_id, CURATION_WINDOW_ROWS):
            window = {**params, "lo": lo, "hi": hi}
            with self._cursor() as cursor:
                bad = _first(
                    cursor.execute(
                        f"SELECT row_index, decision FROM ({_curated_sql()}) WHERE decision IN ('accept', 'edit') "
                        "AND final_response IS NULL ORDER BY row_index LIMIT 1",
                        window,
                    )
                )
                if bad is not None:
                    what = {
                        "accept": "accepted but has no proposed response to accept",
                        "edit": "edited but its decision has no final_response",
                    }[bad[1]]
                    raise ValueError(f"Row {bad[0]} was {what}.")
                counts += cursor.execute(
                    f"""
                    SELECT count(*), count(*) FILTER (WHERE kept),
                           count(*) FILTER (WHERE kept AND action = 'correct' AND source = 'auto'),
                           count(*) FILTER (WHERE kept AND decision = 'accept'),
                           count(*) FILTER (WHERE kept AND decision = 'edit'),
                           count(*) FILTER (WHERE kept AND action = 'keep'),
                           count(*) FILTER (WHERE NOT kept OR final_response IS DISTINCT FROM original_response)
                    FROM ({_curated_sql()})
                    """,
                    window,
                ).fetchall()[0]
                pending.append(
                    cursor.execute(
                        f"SELECT row_index, scoring FROM ({_curated_sql()}) "
                        "WHERE scoring <> 'scored' AND source <> 'human' ORDER BY row_index",
                        window,
                    ).fetchnumpy()
                )
        names = ("total", "kept", "corrected_auto", "corrected_human", "edited", "unchanged", "changed")
        out: dict[str, Any] = {name: int(n) for name, n in zip(names, counts, strict=True)}
        out["removed"] = out["total"] - out["kept"]
        out["corrected"] = out["corrected_auto"] + out["corrected_human"]
        row_index = np.concatenate([p["row_index"] for p in pending]) if pending else np.zeros(0, np.int64)
        scoring = np.concatenate([p["scoring"] for p in pending]) if pending else np.zeros(0, object)
        out["unscored_rows"] = row_index[scoring == "unscored"].tolist()
        out["failed_rows"] = row_index[scoring == "failed"].tolist()
        out["unscored"], out["failed"] = len(out["unscored_rows"]), len(out["failed_rows"])
        return out

    def curation_changes(self, dataset_id: int, run_id: int | None, policy: Any, limit: int = 200) -> pd.DataFrame:
        """The first ``limit`` rows that ``policy`` drops or rewrites, in row order, with the fields of
        ``export.CuratedRow`` that describe the change (no records, no scores)."""
        params = {**self._curation_params(dataset_id, run_id, policy), "limit": int(limit)}
        return self._df(
            f"""
            SELECT row_index, kept, action, source, scoring, decision, annotator, reason, note, original_response,
                   final_response
            FROM ({_curated_sql()})
            WHERE NOT kept OR final_response IS DISTINCT FROM original_response
            ORDER BY row_index LIMIT $limit
            """,
            params,
        )

    def curated_batches(
        self,
        dataset_id: int,
        run_id: int | None,
        policy: Any,
        *,
        all_rows: bool = False,
        include_scores: bool = False,
        records_only: bool = False,
        batch_rows: int = 50_000,
    ) -> Iterator[pa.Table]:
        """The curated rows in row order, ``batch_rows`` row indices at a time (one query each, so memory stays
        bounded whatever the dataset's size), as Arrow tables: row_index, record_json, original_response,
        final_response, kept, action, source, scoring, decision, annotator, reason, note, ``unsafe`` (the record's
        JSON holds NaN or Infinity, which export refuses), and with ``include_scores`` every score field.
        ``records_only``: row_index, record_json, ``changed`` (the final response is not the stored one),
        final_response where changed (else NULL) and unsafe, what an export without clear_* columns reads (a
        third less to sort and pass on at a million rows). Only kept rows unless ``all_rows``; a decision that
        cannot be applied raises ValueError (see ``curation_summary``, which callers run first)."""
        params = self._curation_params(dataset_id, run_id, policy)
        scores = f", {', '.join(SCORE_FIELDS)}" if include_scores else ""
        if records_only:
            columns = """row_index, record_json, final_response IS DISTINCT FROM original_response AS changed,
                CASE WHEN final_response IS DISTINCT FROM original_response THEN final_response END AS final_response"""
        else:
            columns = """row_index, record_json, original_response, final_response, kept, action, source, scoring,
                decision, annotator, reason, note"""
        # the regular expression runs only on the few records that hold the words at all
        sql = f"""
            SELECT {columns},
                   (contains(record_json, 'NaN') OR contains(record_json, 'Infinity'))
                   AND regexp_matches(record_json, '[:,\\[]\\s*-?(NaN|Infinity)\\b') AS unsafe{scores}
            FROM ({_curated_sql(include_scores, with_record=True)})
            WHERE kept OR $all_rows
            ORDER BY row_index
        """
        for lo, hi in self._row_windows(dataset_id, batch_rows):
            with self._cursor() as cursor:
                window = {**params, "all_rows": bool(all_rows), "lo": lo, "hi": hi}
                table = cursor.sql(sql, params=window).to_arrow_table()
            yield table

    def decisions_version(self, dataset_id: int) -> tuple[int, int]:
        """(how many decisions, the latest decision_id) of a dataset, undos included: it changes with every
        decision, so whatever was built from the decisions can tell it is out of date."""
        with self._cursor() as cursor:
            count, latest = cursor.execute(
                "SELECT count(*), coalesce(max(decision_id), 0) FROM decisions WHERE dataset_id = ?", [dataset_id]
            ).fetchall()[0]
        return int(count), int(latest)

    def curated_keys(
        self, dataset_id: int, run_id: int | None, policy: Any, *, all_rows: bool = False
    ) -> tuple[list[str], int, dict[str, set[str]]]:
        """The keys of the stored records that the export writes (kept rows, or all with ``all_rows``), in order of
        first appearance; how many of them the first such record holds; and the JSON types each key's values take
        in those records ('VARCHAR', 'NULL', 'BIGINT', 'UBIGINT', 'DOUBLE', 'BOOLEAN', 'ARRAY', 'OBJECT'), read by
        DuckDB's JSON functions. Records are grouped by their structure first, so the work in Python is per
        distinct structure (one for a uniform file), not per row."""
        params = {**self._curation_params(dataset_id, run_id, policy), "all_rows": bool(all_rows)}
        structures: dict[str, int] = {}  # each distinct structure with the first row that has it
        for lo, hi in self._row_windows(dataset_id, CURATION_WINDOW_ROWS):
            with self._cursor() as cursor:
                found = cursor.execute(
                    f"""
                    SELECT json_structure(record_json) AS structure, min(row_index) AS first_row
                    FROM ({_curated_sql(with_record=True)}) WHERE kept OR $all_rows
                    GROUP BY structure ORDER BY first_row
                    """,
                    {**params, "lo": lo, "hi": hi},
                ).fetchall()
            for structure, first_row in found:
                structures.setdefault(structure, first_row)  # windows come in row order
        keys: dict[str, set[str]] = {}
        for structure in sorted(structures, key=structures.__getitem__):
            for key, kind in json.loads(structure).items():
                kinds = keys.setdefault(key, set())
                kinds.add(kind if isinstance(kind, str) else "ARRAY" if isinstance(kind, list) else "OBJECT")
        first_row_keys = len(json.loads(min(structures, key=structures.__getitem__))) if structures else 0
        return list(keys), first_row_keys, keys

    def delete_dataset(self, dataset_id: int) -> list[str]:
        """Delete a dataset with its rows, runs, scores, decisions and thresholds; returns the runs' work dirs.

        The work dirs are returned, not removed: files on disk belong to ``runs.py``. Its saved word indexes (the
        store's own files) are removed.
        """
        with self._transaction() as cursor:
            runs = cursor.execute(
                "SELECT run_id, work_dir FROM runs WHERE dataset_id = ? ORDER BY run_id", [dataset_id]
            ).fetchall()
            work_dirs = [w for _, w in runs if w is not None]
            for table in ("scores", "score_summaries"):
                cursor.execute(
                    f"DELETE FROM {table} WHERE run_id IN (SELECT run_id FROM runs WHERE dataset_id = ?)", [dataset_id]
                )
            for table in ("runs", "decisions", "decision_groups", "duplicate_groups", "thresholds", "rows", "datasets"):
                cursor.execute(f"DELETE FROM {table} WHERE dataset_id = ?", [dataset_id])
            for table in ("leases", "review_settings"):
                cursor.execute(f"DELETE FROM {table} WHERE dataset_id = ?", [dataset_id])
        if self.path != ":memory:" and not self.read_only:  # its saved word indexes (_index_folder, _proposals_folder)
            path = Path(self.path)
            kinds = [f"rows-{dataset_id}", *(f"proposals-{run_id}" for run_id, _ in runs)]
            for kind in kinds:
                for folder in (path.parent / ".search").glob(f"{glob.escape(path.name)}-{kind}-*"):
                    shutil.rmtree(folder, ignore_errors=True)
        return work_dirs

    # -- runs -----------------------------------------------------------------------------------------------

    def create_run(
        self,
        dataset_id: int,
        model: str,
        params: dict[str, Any],
        work_dir: str | None = None,
        *,
        actor: permissions.Actor | None = None,
    ) -> int:
        """Register a pending scoring run over every row of a dataset; returns its run_id. ``actor`` must be allowed
        to start runs (None: the file's owner)."""
        permissions.require(actor or permissions.owner_actor(), "start_run")
        with self._transaction() as cursor:
            n_rows = _first(cursor.execute("SELECT n_rows FROM datasets WHERE dataset_id = ?", [dataset_id]))
            if n_rows is None:
                raise NotFoundError(f"There is no dataset with id {dataset_id}.")
            return int(
                cursor.execute(
                    "INSERT INTO runs (dataset_id, model, params_json, status, rows_total, created_at, work_dir) "
                    "VALUES (?, ?, ?, 'pending', ?, ?, ?) RETURNING run_id",
                    [
                        dataset_id,
                        model,
                        _dumps(params, canonical=True),
                        n_rows[0],
                        _now(),
                        None if work_dir is None else str(work_dir),
                    ],
                ).fetchall()[0][0]
            )

    _RUNS_SQL = """
        SELECT runs.*, coalesce(scored.n, 0) AS n_scored, coalesce(scored.n_failed, 0) AS n_failed
        FROM runs LEFT JOIN (
            SELECT run_id, count(*) FILTER (WHERE error IS NULL) AS n, count(error) AS n_failed
            FROM scores GROUP BY run_id
        ) scored USING (run_id)
    """

    def _run_record(self, record: dict[str, Any]) -> dict[str, Any]:
        record["params"] = _loads(record.pop("params_json"))
        return record

    def get_run(self, run_id: int, counts: bool = True) -> dict[str, Any]:
        """One run as a dict (``params`` decoded, plus ``n_scored`` and ``n_failed`` unless ``counts=False``: see
        ``latest_run``); NotFoundError if absent."""
        sql = "SELECT * FROM runs WHERE run_id = $run_id"
        if counts:  # this run's scores only (not _RUNS_SQL's count of every run's): 3-6 ms instead of 20-60 at 1M
            sql = """
                SELECT runs.*, scored.n_scored, scored.n_failed
                FROM runs, (SELECT count(*) - count(error) AS n_scored, count(error) AS n_failed
                            FROM scores WHERE run_id = $run_id) scored
                WHERE runs.run_id = $run_id
            """
        row = self._one(sql, {"run_id": run_id})
        if row is None:
            raise NotFoundError(f"There is no scoring run with id {run_id}.")
        return self._run_record(row)

    def list_runs(self, dataset_id: int | None = None) -> pd.DataFrame:
        """Runs, newest first, optionally of one dataset; ``params`` decoded, with ``n_scored`` and ``n_failed``."""
        if dataset_id is None:
            df = self._df(self._RUNS_SQL + " ORDER BY run_id DESC")
        else:
            df = self._df(self._RUNS_SQL + " WHERE dataset_id = ? ORDER BY run_id DESC", [dataset_id])
        df["params_json"] = [json.loads(t) for t in df["params_json"]]
        return df.rename(columns={"params_json": "params"})

    def latest_run(self, dataset_id: int, counts: bool = True) -> dict[str, Any] | None:
        """The most recently created run of a dataset, or None. ``counts=False`` leaves out ``n_scored`` and
        ``n_failed``, which count the run's scores (25-65 ms at 1M rows, on every redraw of a page that needs
        only the run's id and status)."""
        sql = self._RUNS_SQL if counts else "SELECT * FROM runs"
        row = self._one(sql + " WHERE dataset_id = ? ORDER BY run_id DESC LIMIT 1", [dataset_id])
        return None if row is None else self._run_record(row)

    def find_resumable_run(self, dataset_id: int, model: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """The newest run of this dataset with the same model and params, or None.

        Any status: an interrupted run resumes, and a done run (e.g. scored with --limit) extends to more rows.
        """
        row = self._one(
            self._RUNS_SQL + " WHERE dataset_id = ? AND model = ? AND params_json = ? ORDER BY run_id DESC LIMIT 1",
            [dataset_id, model, _dumps(params, canonical=True)],
        )
        return None if row is None else self._run_record(row)

    def set_run_status(self, run_id: int, status: str, error: str | None = None) -> None:
        """Move a run to ``status``; 'running' keeps the first started_at, done/failed/cancelled set finished_at."""
        if status not in RUN_STATUSES:
            raise ValueError(f"Unknown run status {status!r}; expected one of {', '.join(RUN_STATUSES)}.")
        with self._transaction() as cursor:
            updated = cursor.execute(
                """
                UPDATE runs SET status = $status, error = $error,
                    started_at = CASE WHEN $status = 'running' THEN coalesce(started_at, $now) ELSE started_at END,
                    finished_at = CASE WHEN $status IN ('done', 'failed', 'cancelled') THEN $now END
                WHERE run_id = $run_id RETURNING run_id
                """,
                {"status": status, "error": error, "run_id": run_id, "now": _now()},
            ).fetchall()
            if not updated:
                raise NotFoundError(f"There is no scoring run with id {run_id}.")
        if status == "done":  # the Thresholds page's first open then reads this, not every score
            self.threshold_summary(run_id)

    def set_run_work_dir(self, run_id: int, work_dir: str | os.PathLike[str] | None) -> None:
        """Record where the run's files (job.json, chunks, progress.json) live."""
        with self._transaction() as cursor:
            updated = cursor.execute(
                "UPDATE runs SET work_dir = ? WHERE run_id = ? RETURNING run_id",
                [None if work_dir is None else str(work_dir), run_id],
            ).fetchall()
            if not updated:
                raise NotFoundError(f"There is no scoring run with id {run_id}.")

    def unscored_rows(self, run_id: int) -> pd.DataFrame:
        """Rows of the run's dataset not scored in this run (failed rows included, so they are retried):
        row_index, prompt_messages, prompt, response."""
        df = self._df(
            """
            SELECT r.row_index, r.prompt_messages_json, r.prompt, r.response
            FROM runs JOIN rows r USING (dataset_id)
            WHERE runs.run_id = $run_id
              AND NOT EXISTS (
                  SELECT 1 FROM scores s WHERE s.run_id = $run_id AND s.row_index = r.row_index AND s.error IS NULL
              )
            ORDER BY r.row_index
            """,
            {"run_id": run_id},
        )
        return _with_messages(df)

    def unscored_count(self, run_id: int) -> int:
        """How many rows ``unscored_rows`` gives, counted without reading them (a progress bar polls it)."""
        return int(
            self._scalar(
                "SELECT datasets.n_rows - (SELECT count(*) FROM scores WHERE run_id = $run_id AND error IS NULL) "
                "FROM runs JOIN datasets USING (dataset_id) WHERE runs.run_id = $run_id",
                {"run_id": run_id},
            )
            or 0
        )

    def scored_count(self, run_id: int) -> int:
        """How many rows of the run were scored (failed rows not counted)."""
        return int(self._scalar("SELECT count(*) FROM scores WHERE run_id = ? AND error IS NULL", [run_id]))

    def failed_count(self, run_id: int) -> int:
        """How many rows of the run the worker could not score (their latest attempt failed)."""
        return int(self._scalar("SELECT count(*) FROM scores WHERE run_id = ? AND error IS NOT NULL", [run_id]))

    def failures(self, run_id: int) -> pd.DataFrame:
        """The run's failed rows, ordered by row_index: row_index, error (why), scored_at (when it failed)."""
        return self._df(
            "SELECT row_index, error, scored_at FROM scores WHERE run_id = ? AND error IS NOT NULL ORDER BY row_index",
            [run_id],
        )

    # -- scores ---------------------------------------------------------------------------------------------

    def add_scores(self, run_id: int, records: Sequence[dict[str, Any]]) -> int:
        """Insert or replace score records (row_index + SCORE_FIELDS keys, or row_index + error) for a run;
        returns how many rows they cover.

        Idempotent: re-ingesting a chunk replaces the same rows, and a row scored after it failed replaces the
        failure; of several records for one row the last wins. A record with ``error`` (why the row could not be
        scored) is a failed row and carries no signals. Missing fields and NaN are stored as NULL; unknown keys,
        values of the wrong type or row indices outside the run's dataset raise ValueError, since they mean the
        worker and the store disagree. Set-based whatever the number of records (one Arrow table, one
        INSERT ... SELECT, one transaction), so ``runs.ingest`` passes many chunks at once.
        """
        if not records:
            return 0
        incoming = _score_table(records)
        with self._transaction() as cursor:
            run = _first(cursor.execute("SELECT dataset_id FROM runs WHERE run_id = ?", [run_id]))
            if run is None:
                raise NotFoundError(f"There is no scoring run with id {run_id}.")
            cursor.register("incoming_scores", incoming)  # dropped with the cursor at the end of the call
            strays = cursor.execute(
                "SELECT row_index FROM incoming_scores ANTI JOIN (SELECT row_index FROM rows WHERE dataset_id = ?) "
                "USING (row_index) ORDER BY row_index LIMIT 5",
                [run[0]],
            ).fetchall()
            if strays:
                raise ValueError(
                    f"Scores for rows {[r for (r,) in strays]} that dataset {run[0]} does not have (run {run_id})."
                )
            columns = ", ".join(incoming.column_names)
            cursor.execute(
                f"INSERT OR REPLACE INTO scores (run_id, {columns}, scored_at) "
                f"SELECT $run_id, {columns}, $now FROM incoming_scores",
                {"run_id": run_id, "now": _now()},
            )
            _apply_calibration(cursor, run_id, "row_index IN (SELECT row_index FROM incoming_scores)")
        return incoming.num_rows

    def scores(self, run_id: int) -> pd.DataFrame:
        """All score rows of a run, ordered by row_index: row_index, SCORE_FIELDS..., error, scored_at.

        Failed rows are included, with every signal NULL and ``error`` saying why (NULL for scored rows).
        """
        return self._df(
            f"SELECT row_index, {', '.join(SCORE_FIELDS)}, {ERROR_FIELD}, scored_at FROM scores WHERE run_id = ? "
            "ORDER BY row_index",
            [run_id],
        )

    # -- calibration on the dataset's own rows (calibration.py) ----------------------------------------------

    def add_calibration_rows(self, run_id: int, rows: Sequence[dict[str, Any]]) -> int:
        """Store a run's corrupted copies (row_index < 0, source_row_index, kind, prompt_messages, prompt, response)
        to be scored with it; rows the run has already are kept as they are. Returns how many were new."""
        if any(int(r["row_index"]) >= 0 for r in rows):
            raise ValueError("calibration rows take negative row indices: they are not rows of the dataset")
        with self._transaction() as cursor:
            before = cursor.execute("SELECT count(*) FROM calibration_rows WHERE run_id = ?", [run_id]).fetchall()[0][0]
            cursor.executemany(
                "INSERT OR IGNORE INTO calibration_rows (run_id, row_index, source_row_index, kind, "
                "prompt_messages_json, prompt, response) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    [
                        run_id,
                        int(r["row_index"]),
                        int(r["source_row_index"]),
                        r["kind"],
                        json.dumps(r["prompt_messages"], ensure_ascii=False),
                        r["prompt"],
                        r["response"],
                    ]
                    for r in rows
                ],
            )
            after = cursor.execute("SELECT count(*) FROM calibration_rows WHERE run_id = ?", [run_id]).fetchall()[0][0]
        return int(after - before)

    def calibration_rows(self, run_id: int, unscored_only: bool = False) -> list[dict[str, Any]]:
        """A run's corrupted copies as the worker takes rows (row_index, prompt_messages, prompt, response), with
        kind, source_row_index and raw_logit; ``unscored_only``: those not scored yet (failed ones are retried)."""
        where = " AND raw_logit IS NULL" if unscored_only else ""
        frame = self._df(
            "SELECT row_index, source_row_index, kind, prompt_messages_json, prompt, response, raw_logit, error "
            f"FROM calibration_rows WHERE run_id = ?{where} ORDER BY row_index DESC",
            [run_id],
        )
        records = _df_records(frame)
        for r in records:
            r["prompt_messages"] = json.loads(r.pop("prompt_messages_json"))
        return records

    def add_calibration_scores(self, run_id: int, records: Sequence[dict[str, Any]]) -> int:
        """Store the raw logits (or errors) the worker sent back for corrupted copies, with every signal as JSON (so a
        changed combiner can recompute them); returns how many it updated."""
        values = [
            [
                None if r.get("error") else r.get("raw_logit"),
                None if r.get("error") else json.dumps(r, ensure_ascii=False, default=str),
                r.get("error"),
                run_id,
                int(r["row_index"]),
            ]
            for r in records
        ]
        with self._transaction() as cursor:
            cursor.executemany(
                "UPDATE calibration_rows SET raw_logit = ?, signals_json = ?, error = ? "
                "WHERE run_id = ? AND row_index = ?",
                values,
            )
        return len(values)

    def calibration_counts(self, run_id: int) -> tuple[int, int, int]:
        """(the run's scored rows with a raw logit, its scored corrupted copies, its copies still to score): counted
        without reading them, so an ingest or a progress poll can tell whether there is anything to do."""
        with self._cursor() as cursor:
            return tuple(
                int(v)
                for v in cursor.execute(
                    "SELECT (SELECT count(raw_logit) FROM scores WHERE run_id = $run_id), "
                    "(SELECT count(raw_logit) FROM calibration_rows WHERE run_id = $run_id), "
                    "(SELECT count(*) - count(raw_logit) FROM calibration_rows WHERE run_id = $run_id)",
                    {"run_id": run_id},
                ).fetchall()[0]
            )

    def calibration_inputs(self, run_id: int, sample: int = 5000) -> tuple[np.ndarray, np.ndarray]:
        """(raw logits of up to ``sample`` of the run's scored rows, raw logits of its scored corrupted copies)."""
        with self._cursor() as cursor:
            originals = cursor.execute(
                "SELECT raw_logit FROM scores WHERE run_id = ? AND raw_logit IS NOT NULL "
                "ORDER BY hash(row_index) LIMIT ?",
                [run_id, sample],
            ).fetchall()
            corrupted = cursor.execute(
                "SELECT raw_logit FROM calibration_rows WHERE run_id = ? AND raw_logit IS NOT NULL", [run_id]
            ).fetchall()
        return np.array([v for (v,) in originals], dtype=float), np.array([v for (v,) in corrupted], dtype=float)

    def reviewed_labels(self, run_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(raw logit, bad) of every row of the run with a standing human decision: removed, corrected (proposal
        accepted) or edited is bad, original kept (proposal rejected) is good."""
        dataset_id = self._dataset_of_run(run_id)
        frame = self._df(
            f"""
            SELECT s.raw_logit, c.decision <> 'reject' AS bad
            FROM scores s JOIN ({_CURRENT_DECISIONS}) c ON c.row_index = s.row_index
            WHERE s.run_id = $run_id AND s.raw_logit IS NOT NULL
            """,
            {"run_id": run_id, "dataset_id": dataset_id},
        )
        return frame["raw_logit"].to_numpy(dtype=float), frame["bad"].to_numpy(dtype=bool)

    def save_calibration(self, run_id: int, calibration, *, actor: permissions.Actor | None = None) -> None:
        """Make ``calibration`` (calibration.Calibration) the run's map: recorded, then applied to every scored row
        (confidence and correction confidence), in one transaction. Rows stored later get it in ``add_scores``."""
        with self._transaction() as cursor:
            cursor.execute(
                "INSERT INTO calibrations (run_id, fitted_at, source, a, b, noise_share, n_good, n_bad, note, "
                "fitted_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    run_id,
                    _now(),
                    calibration.source,
                    calibration.a,
                    calibration.b,
                    calibration.noise_share,
                    calibration.n_good,
                    calibration.n_bad,
                    calibration.note,
                    actor.name if actor else None,
                ],
            )
            _apply_calibration(cursor, run_id, "TRUE")

    def calibration(self, run_id: int) -> dict[str, Any] | None:
        """The run's current calibration (the latest saved) as a dict of its columns, or None: the shipped map."""
        return self._one(
            "SELECT source, a, b, noise_share, n_good, n_bad, note, fitted_at, fitted_by FROM calibrations "
            "WHERE run_id = ? ORDER BY fitted_at DESC, rowid DESC LIMIT 1",
            [run_id],
        )

    def confidence_bins(self, run_id: int, bins: int = 200) -> pd.DataFrame:
        """Scored rows per confidence bin (bin, rows, expected_bad = Σ(1 − confidence)): enough for a review-budget
        curve at any size, computed in DuckDB."""
        with self._cursor() as cursor:
            return _confidence_bins(cursor, run_id, bins)

    # -- review ---------------------------------------------------------------------------------------------

    def _dataset_of_run(self, run_id: int) -> int:
        dataset_id = self._scalar("SELECT dataset_id FROM runs WHERE run_id = ?", [run_id])
        if dataset_id is None:
            raise NotFoundError(f"There is no scoring run with id {run_id}.")
        return int(dataset_id)

    def review_queue(self, query: ReviewQuery, limit: int = 50, offset: int = 0) -> tuple[pd.DataFrame, int]:
        """One page of the rows ``query`` selects, in its order, with their automatic action and current decision,
        plus how many rows it selects in all.

        Two phases, so a page costs the same whatever the queue's length and depth: ``_queue_keys`` gives every
        selected row index in order (a sorted key order the store keeps, filtered), of which the page is a slice;
        then ``_queue_page`` reads prompt, response and scores of those ``limit`` rows."""
        if int(limit) < 0 or int(offset) < 0:
            raise InvalidInput(f"A queue page needs limit and offset of 0 or more, got {limit} and {offset}.")
        dataset_id = self._dataset_of_run(query.run_id)
        keys = self._queue_keys(query, dataset_id)
        params = {"run_id": query.run_id, "dataset_id": dataset_id, "gamma": query.gamma, "eta": query.eta}
        if query.decided_by is not None:
            params["decided_by"] = query.decided_by
        with self._cursor() as cursor:
            page = self._queue_page(cursor, params, keys[int(offset) : int(offset) + int(limit)].tolist())
        return _with_messages(page), len(keys)

    def _queue_keys(self, query: ReviewQuery, dataset_id: int) -> np.ndarray:
        """Every row index ``query`` selects, in its order (``ReviewQuery.where`` and ``order``, as the SQL of
        ``_review_select`` would give them).

        The part of the query that decisions cannot change (the run's scores, action, confidence bounds, failed or
        not, the sort unless it is by decision) is a key order ``_base_order`` keeps per scores version; the search
        (``_search_rows``) and what depends on decisions (status, reason, reviewer, decided_by, a sort by decision or
        decided_at) are applied to it here on every draw, reading only the dataset's decided rows. So a decision,
        an undo or a new search never rebuilds the sorted order, and a deep page costs what the first does."""
        by_decision = query.order_by in ("decision", "decided_at")
        base = dataclasses.replace(
            query,
            status="failed" if query.status == "failed" else None,
            search=None,
            reason=None,
            reviewer=None,
            overlap=1,
            decided_by=None,
            order_by="row_index" if by_decision else query.order_by,
            ascending=True if by_decision else query.ascending,
        )
        keys = self._base_order(base, dataset_id)
        if query.search:
            keys = keys[_members(keys, self._search_rows(query.run_id, dataset_id, query.search))]
        if query.status in (None, "failed") and query.reason is None and query.reviewer is None and not by_decision:
            return keys
        params: dict[str, Any] = {"dataset_id": dataset_id}
        if query.decided_by is not None:
            params["decided_by"] = query.decided_by
        with self._cursor() as cursor:
            decided = cursor.execute(
                f"SELECT row_index, decision, decided_at, reason FROM ({_decisions_sql(query.decided_by is not None)})",
                params,
            ).df()
            if query.reviewer is not None:
                enough = {"dataset_id": dataset_id, "reviewer": query.reviewer, "overlap": query.overlap}
                keys = keys[~_members(keys, cursor.execute(_REVIEWED_ENOUGH, enough).fetchnumpy()["row_index"])]
        decided_rows = decided["row_index"].to_numpy(dtype=np.int64)
        passes = np.ones(len(decided), dtype=bool)  # the decision filters, for the rows with a decision
        if query.status == "undecided":
            passes[:] = False
        elif query.status not in (None, "failed", "decided"):
            passes &= (decided["decision"] == query.status).to_numpy()
        if query.reason is not None:
            passes &= (decided["reason"] == query.reason).to_numpy()
        # A row without a decision passes the decision filters only when they ask for none (or for "undecided").
        undecided_pass = query.status in (None, "failed", "undecided") and query.reason is None
        at = np.flatnonzero(_members(keys, decided_rows))  # where the rows with a decision are among the keys
        by_row = np.argsort(decided_rows)
        slot = by_row[np.searchsorted(decided_rows, keys[at], sorter=by_row)]  # and their rows in `decided`
        if undecided_pass:  # drop the decided rows that fail: usually few of many
            keep = np.ones(len(keys), dtype=bool)
            keep[at] = passes[slot]
            kept_at = (np.cumsum(keep)[at[passes[slot]]] - 1) if by_decision else None
            keys = keys[keep]
        else:  # keep the decided rows that pass
            keys = keys[at[passes[slot]]]
            kept_at = np.arange(len(keys))
        if not by_decision:
            return keys
        # ORDER BY <decision column> NULLS LAST, row_index: the decided rows with a value, by value, then the rest,
        # in row_index order already (the base order of a sort by decision).
        values = decided[query.order_by].to_numpy()[slot[passes[slot]]]
        present = pd.notna(values)
        valued = np.zeros(len(keys), dtype=bool)
        valued[kept_at[present]] = True
        first = pd.DataFrame({"row_index": keys[kept_at[present]], "value": values[present]})
        first = first.sort_values(["value", "row_index"], ascending=[query.ascending, True], kind="stable")
        return np.concatenate([first["row_index"].to_numpy(dtype=keys.dtype), keys[~valued]])

    def _base_order(self, query: ReviewQuery, dataset_id: int) -> np.ndarray:
        """The row indices of the run's scored rows that ``query`` selects, in its order, for a query with no
        search and nothing that reads decisions (``_queue_keys`` applies those). Sorting a million keys costs about
        as much as a whole page draw, so the last ``_ORDER_CACHE`` orders are kept, each for its (run, sort, filters,
        γ/η where the query reads the action) and the run's scores version (rows scored, latest scored_at,
        calibrations), which every new score or recalibration changes."""
        if query.action is None and query.order_by != "action":
            query = dataclasses.replace(query, gamma=0.0, eta=0.0)  # the order does not depend on them
        with self._cursor() as cursor:
            key = (dataset_id, query, _scores_version(cursor, query.run_id))
            kept = self._kept("_order_cache", key)
            if kept is not None:
                return kept
            by_length = query.order_by == "response_length"
            sort = dataclasses.replace(query, order_by="row_index", ascending=True) if by_length else query
            where, params = query.where()  # no search, no decisions: $dataset_id is not read
            order = cursor.execute(
                f"WITH queue AS ({self._queue_sql(sort, decisions=False)}) SELECT row_index FROM queue "
                f"WHERE {where} ORDER BY {sort.order()}",
                params,
            ).fetchnumpy()["row_index"]
        order = np.asarray(order, dtype=np.int64)
        if by_length:  # sorted by the dataset's response lengths, kept apart: reading every response costs more
            lengths = self._response_lengths(dataset_id)[order]
            missing = lengths < 0  # NULL: last, whichever the direction
            sort_key = np.where(missing, np.iinfo(np.int64).max, lengths if query.ascending else -lengths)
            order = order[np.argsort(sort_key, kind="stable")]  # stable: ties stay in row_index order
        return self._keep("_order_cache", key, order, _ORDER_CACHE)

    def _response_lengths(self, dataset_id: int) -> np.ndarray:
        """length(response) of each row of the dataset, indexed by row_index (-1 for NULL): read once, since a
        dataset's text never changes, because reading every response to sort by its length costs 0.3 s at 1M rows."""
        kept = self._kept("_length_cache", dataset_id)
        if kept is not None:
            return kept
        with self._cursor() as cursor:
            found = cursor.execute(
                "SELECT row_index, coalesce(length(response), -1) AS n FROM rows WHERE dataset_id = ?", [dataset_id]
            ).fetchnumpy()
        lengths = np.full(int(found["row_index"].max(initial=-1)) + 1, -1, dtype=np.int64)
        lengths[found["row_index"]] = found["n"]
        return self._keep("_length_cache", dataset_id, lengths, _LENGTH_CACHE)

    def _kept(self, cache: str, key: Any) -> np.ndarray | None:
        """What ``_keep`` kept under ``key`` in the Store's cache named ``cache``, or None."""
        with self._cursor_lock:
            return self.__dict__.get(cache, {}).get(key)

    def _keep(self, cache: str, key: Any, value: np.ndarray, limit: int) -> np.ndarray:
        """Keep ``value`` (made read-only: every draw that reads it shares it) under ``key`` in the Store's cache
        named ``cache``, which holds the last ``limit`` entries (insertion-ordered: the oldest goes first)."""
        value.flags.writeable = False
        with self._cursor_lock:
            kept = self.__dict__.setdefault(cache, {})
            kept[key] = value
            while len(kept) > limit:
                kept.pop(next(iter(kept)))
        return value

    def _queue_page(self, cursor: duckdb.DuckDBPyConnection, params: dict[str, Any], keys: list[int]) -> pd.DataFrame:
        """The queue's full columns for the rows ``keys`` (in that order): text, prompt_messages_json, every score,
        action, response_length and the current decision. The rows are looked up by key: DuckDB answers an IN list
        of constants from migration 12's row_index indexes (up to 2,048 keys) without reading any other text."""
        action = clear.action_sql("s.confidence", "s.correction_confidence", "$gamma", "$eta")
        in_list = ", ".join(str(k) for k in keys) or "NULL"  # ints from the key query: nothing to escape
        return cursor.execute(
            f"""
            WITH s AS (SELECT * FROM scores WHERE run_id = $run_id AND row_index IN ({in_list})),
            r AS (SELECT * FROM rows WHERE dataset_id = $dataset_id AND row_index IN ({in_list}))
            SELECT s.row_index, r.prompt, r.response, r.prompt_messages_json,
                   {", ".join(f"s.{f}" for f in SCORE_FIELDS)}, s.error, s.scored_at,
                   CASE WHEN s.error IS NULL THEN {action} END AS action, length(r.response) AS response_length,
                   c.decision, c.final_response, c.decision_id, c.annotator, c.decided_at, c.reason, c.note
            FROM s JOIN r USING (row_index)
            LEFT JOIN ({_decisions_sql("decided_by" in params)}) c ON c.row_index = s.row_index
            ORDER BY list_position($keys, s.row_index)
            """,
            {
                **{k: params[k] for k in ("run_id", "dataset_id", "gamma", "eta", "decided_by") if k in params},
                "keys": keys,
            },
        ).df()

    def queue_total(self, query: ReviewQuery) -> int:
        """How many rows ``query`` selects, as ``review_count`` counts them and ``review_queue`` reports them, from
        the key order the store keeps (``_queue_keys``): a count that a decision changes, read on every draw, with
        no scan of the scores (about 9 ms instead of 40 ms at 1M rows once the order is kept)."""
        return len(self._queue_keys(query, self._dataset_of_run(query.run_id)))

    def review_count(self, query: ReviewQuery, decision: str | None = None) -> int:
        """How many rows ``query`` selects (a count in SQL, cheap enough for every redraw of a 100k-row queue).

        With a ``decision`` of ``GROUP_DECISIONS``, how many rows ``decide_query`` would decide: the dry run of a
        query-wide action (for 'accept', only the rows with a proposal that is not blank)."""
        if decision is None:
            select, params = self._review_select(query, "row_index")
        else:
            select, params = self._group_select(query, decision)
        return int(self._scalar(f"SELECT count(*) FROM ({select})", params))

    def _group_select(self, query: ReviewQuery, decision: str) -> tuple[str, dict[str, Any]]:
        """SELECT row_index, final_response of the rows a query-wide ``decision`` takes, and its parameters."""
        if decision not in GROUP_DECISIONS:
            raise InvalidInput(
                f"Unknown query-wide decision {decision!r}; expected one of {', '.join(GROUP_DECISIONS)}."
            )
        if decision != "accept":
            return self._review_select(query, "row_index, NULL::VARCHAR AS final_response")
        select, params = self._review_select(query, "row_index, proposed_response AS final_response")
        return f"{select} AND regexp_matches(proposed_response, '{_NOT_BLANK}')", params

    def _review_select(self, query: ReviewQuery, columns: str) -> tuple[str, dict[str, Any]]:
        """SELECT ``columns`` of the queue rows ``query`` selects (unordered), and its parameters. A search is
        the set of rows ``_search_rows`` found (once per search, not on every redraw) rather than a text scan."""
        dataset_id = self._dataset_of_run(query.run_id)
        matches = None
        if query.search:
            matches = self._search_rows(query.run_id, dataset_id, query.search)
            query = dataclasses.replace(query, search=None)
        where, params = query.where()
        params["dataset_id"] = dataset_id
        if matches is not None:
            params["search_rows"] = matches.tolist()
            where += " AND row_index IN (SELECT unnest($search_rows))"
        return f"WITH queue AS ({self._queue_sql(query)}) SELECT {columns} FROM queue WHERE {where}", params

    def _search_rows(self, run_id: int, dataset_id: int, search: str) -> np.ndarray:
        """The row indices, sorted, whose prompt or response (of the dataset) or proposal (of the run) contains
        ``search`` as ``ReviewQuery.search`` defines it. The last ``_SEARCH_CACHE`` searches are kept: the prompt
        and response matches for good (a dataset's text never changes), the proposal matches until the run's scores
        change. Paging, deciding and moving γ/η with a search read no text, and new scores re-read only the
        proposals. Each column is searched in its own table, so no text goes through a join; a new search reads
        the word index of each (``_search_part``) where one is built, and every text where not."""
        with self._cursor() as cursor:
            lowered = cursor.execute("SELECT lower($search)", {"search": search}).fetchone()[0]
            parts = []
            for key, table, columns, table_params in (
                (("rows", dataset_id), "rows WHERE dataset_id = $id", ("prompt", "response"), {"id": dataset_id}),
                (
                    ("proposals", run_id, _scores_version(cursor, run_id)),
                    "scores WHERE run_id = $id",
                    ("proposed_response",),
                    {"id": run_id},
                ),
            ):
                found = self._kept("_search_cache", (*key, search))
                if found is None:
                    found = self._search_part(cursor, key, table, columns, {"search": search, **table_params}, lowered)
                    self._keep("_search_cache", (*key, search), found, 2 * _SEARCH_CACHE)
                parts.append(found)
        # Sorted and deduplicated by hand: np.union1d's hash-based unique took 1.7 s for 0.6M rows at 1M.
        found = np.sort(np.concatenate(parts).astype(np.int64))
        return found[np.concatenate(([True], found[1:] != found[:-1]))] if len(found) else found

    def _search_part(
        self,
        cursor: duckdb.DuckDBPyConnection,
        key: tuple,
        table: str,
        columns: tuple[str, ...],
        params: dict,
        lowered: str,
    ) -> np.ndarray:
        """The row indices of ``table`` (a FROM and WHERE) whose ``columns`` contain $search. With ``key``'s word
        index built, a query that is one word alone is answered by the index, and otherwise only the rows it leaves
        are checked with the exact test (looked up by key when few, ``_CHECK_BY_KEY``; in one scan when at most
        ``_CHECK_SHARE`` of them); without it, or when the query has no letter or digit, every text is read, and
        the index starts building in the background for the next search (``search_index``)."""
        piece = max(lowered.split("i"), key=len)
        if piece:
            params = {**params, "piece": piece}
        match = " OR ".join(_search_sql(c, _PIECE_PATTERN if piece else _SEARCH_PATTERN) for c in columns)
        index = self._word_index(key, table, columns, {"id": params["id"]})
        narrowed = None if index is None else index.candidates(lowered)
        if narrowed is not None:
            candidates, known = narrowed
            rows = candidates[~known]  # the rows the index cannot vouch for: the exact test decides
            if not len(rows):  # none: no query (DuckDB tested 1M proposals for an empty list: 0.5 s)
                return candidates
            found = self._checked(cursor, table, match, params, rows, index.n_rows)
            if found is not None:
                return np.sort(np.concatenate((candidates[known], found.astype(np.int64))))  # disjoint
        sql = f"SELECT row_index FROM {table} AND ({match})"
        return np.asarray(cursor.execute(sql, params).fetchnumpy()["row_index"])

    @staticmethod
    def _checked(
        cursor: duckdb.DuckDBPyConnection, table: str, match: str, params: dict, rows: np.ndarray, n_rows: int
    ) -> np.ndarray | None:
        """Those of ``rows`` (sorted) of ``table`` whose text passes ``match``: looked up by key when few
        (``_CHECK_BY_KEY``), in one scan when at most ``_CHECK_SHARE`` of the table's ``n_rows``; None when more,
        as one scan of every text costs about as much."""
        if len(rows) <= min(_CHECK_BY_KEY, n_rows / _ROWS_PER_KEY):
            keys = rows.tolist()  # ints: nothing to escape
            found = [
                cursor.execute(
                    f"SELECT row_index FROM {table} AND row_index IN ({', '.join(map(str, part))}) AND ({match})",
                    params,
                ).fetchnumpy()["row_index"]
                for part in (keys[i : i + _INDEX_SCAN_KEYS] for i in range(0, len(keys), _INDEX_SCAN_KEYS))
            ]
            return np.sort(np.concatenate(found).astype(np.int64))
        if len(rows) <= _CHECK_SHARE * n_rows:
            sql = f"SELECT row_index FROM {table} AND row_index = ANY($candidates) AND ({match})"
            return np.sort(cursor.execute(sql, {**params, "candidates": rows.tolist()}).fetchnumpy()["row_index"])
        return None

    def _index_folder(self, dataset_id: int) -> Path | None:
        """Where the word index of a dataset's prompts and responses is saved (a dataset's text never changes, so
        it is built once, not once per server start): ``.search/`` beside the database, named for the database
        file, the dataset and a digest of what its text is made from (content, column mapping, row count, its
        first 100 prompts and responses) and the index's layout (``search_index.FORMAT``), so that an index is never
        read for other text or in another layout. None in memory."""
        if self.path == ":memory:":
            return None
        digest = self._scalar(
            """
            SELECT md5(d.content_hash || coalesce(d.mapping_json, '') || d.n_rows || coalesce(t.texts, ''))
            FROM datasets d, (
                SELECT string_agg(prompt || chr(1) || response, chr(2) ORDER BY row_index) AS texts
                FROM (SELECT row_index, prompt, response FROM rows WHERE dataset_id = $id ORDER BY row_index LIMIT 100)
            ) t
            WHERE d.dataset_id = $id
            """,
            {"id": dataset_id},
        )
        path = Path(self.path)
        return path.parent / ".search" / f"{path.name}-rows-{dataset_id}-{str(digest)[:16]}-v{search_index.FORMAT}"

    def _proposals_folder(self, run_id: int, version: tuple) -> Path | None:
        """Where the word index of a run's proposals at one scores version (``_scores_version``) is saved, beside
        ``_index_folder``'s; None in memory. Saving one removes the run's older ones (``_word_index``)."""
        if self.path == ":memory:":
            return None
        digest = hashlib.md5(repr(version).encode()).hexdigest()[:16]
        path = Path(self.path)
        return path.parent / ".search" / f"{path.name}-proposals-{run_id}-{digest}-v{search_index.FORMAT}"

    def _word_index(
        self, key: tuple, table: str, columns: tuple[str, ...], params: dict, wait: bool = False
    ) -> search_index.WordIndex | None:
        """The word index of ``columns`` of ``table`` (``search_index``), kept under ``key`` (the last
        ``_WORD_INDEXES``), or None while it is not built: then one background thread builds it (at most one
        build at a time per Store), or, with ``wait``, this call does. ``key`` holds the scores version for
        proposals, so an index of older proposals is never read. An index is read from its folder (a dataset's
        ``_index_folder``, a run's ``_proposals_folder``) instead of built when saved there; else built by a child
        process that saves it there (``index_builder``), or here, kept in memory only, by a read-only or in-memory
        store or where the folder cannot be written."""
        with self._cursor_lock:
            kept = self.__dict__.setdefault("_word_indexes", {})
            if key in kept:
                return kept[key]
            if not wait and self._index_building():
                return None
        folder = self._index_folder(key[1]) if key[0] == "rows" else self._proposals_folder(key[1], key[2])

        def keep(index: search_index.WordIndex) -> search_index.WordIndex:
            with self._cursor_lock:
                kept[key] = index
                while len(kept) > _WORD_INDEXES:
                    kept.pop(next(iter(kept)))
            return index

        saved = search_index.WordIndex.load(folder) if folder is not None else None
        if saved is not None:
            return keep(saved)

        def build() -> search_index.WordIndex:
            lowered = ", ".join(f"lower({c})" for c in columns)
            sql = f"SELECT row_index, {lowered} FROM {table}"
            with self._cursor() as cursor:
                cursor.begin()  # the words and their pairs from one snapshot of the text
                opened = []

                def texts() -> Iterator[pa.RecordBatch]:
                    reader, batches = self._text_batches(cursor, sql, params)
                    opened.append(reader)
                    yield from batches

                try:
                    index = None
                    if folder is not None and not self.read_only:
                        index = self._build_in_child(texts(), folder)
                    if index is None:  # here: the text read twice, the words' then the pairs'
                        index = search_index.build(search_index.batch_columns(texts()))
                        index = search_index.with_pairs(index, search_index.batch_columns(texts()))
                finally:
                    for reader in opened:  # DuckDB refuses to end the transaction while a result is open
                        reader.close()
                    cursor.rollback()
            if key[0] == "proposals" and folder is not None:  # the run's older proposals: never read again
                run_prefix = folder.name.rsplit("-", 2)[0]  # {database}-proposals-{run_id}
                for old in folder.parent.glob(f"{glob.escape(run_prefix)}-*"):
                    if old != folder:
                        shutil.rmtree(old, ignore_errors=True)
            return keep(index)

        if wait:
            return build()
        self._build_in_background(build, f"search-index-{key[0]}")
        return None

    def _text_batches(
        self, cursor: duckdb.DuckDBPyConnection, sql: str, params: dict
    ) -> tuple[pa.RecordBatchReader, Iterator[pa.RecordBatch]]:
        """The reader of ``sql``'s result (to close, whether read to the end or not) and its batches, for an index
        build: stopped (StoreError) once the store is closing."""
        reader = cursor.sql(sql, params=params).to_arrow_reader(_INDEX_BATCH_ROWS)

        def batches() -> Iterator[pa.RecordBatch]:
            for batch in reader:
                if self.__dict__.get("_closing"):
                    raise StoreError("The store was closed while a search index was being built.")
                yield batch

        return reader, batches()

    def _build_in_child(self, texts: Iterator[pa.RecordBatch], folder: Path) -> search_index.WordIndex | None:
        """Build a word index in a child process (``index_builder``) that saves it into ``folder``, sending it
        ``texts`` as an Arrow stream; the index as mapped from there. None when there is no text or the folder's
        parent cannot be made (then the caller builds it here)."""
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None
        first = next(texts, None)
        if first is None:
            return None
        package_root = str(Path(search_index.__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (package_root, os.environ.get("PYTHONPATH"))))}
        command = [sys.executable, "-m", "clear_core.index_builder", str(folder)]
        with tempfile.TemporaryFile() as errors:
            child = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=errors, env=env)
            try:
                with contextlib.suppress(BrokenPipeError):  # the child ended early: its exit code and error say why
                    with pa.ipc.new_stream(child.stdin, first.schema) as writer:
                        writer.write_batch(first)
                        for batch in texts:
                            writer.write_batch(batch)
                    child.stdin.close()
                while (code := child.poll()) is None:
                    if self.__dict__.get("_closing"):
                        raise StoreError("The store was closed while a search index was being built.")
                    time.sleep(0.1)
            except BaseException:
                child.terminate()  # it removes its spool file and exits
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
                raise
            if code != 0:
                errors.seek(0)
                detail = errors.read()[-2_000:].decode("utf-8", "replace").strip()
                raise StoreError(f"Building the search index in {folder} failed (exit code {code}): {detail}")
        index = search_index.WordIndex.load(folder)
        if index is None:
            raise StoreError(f"The search index built in {folder} could not be read back.")
        return index

    def _index_building(self) -> bool:
        """Whether the Store's one index-building thread is running (call it holding ``_cursor_lock``)."""
        building = self.__dict__.get("_index_thread")
        return building is not None and building.is_alive()

    def _build_in_background(self, build: Callable[[], object], name: str) -> None:
        """Run ``build`` as the Store's one index-building thread, unless that thread is running; an error ends it
        quietly (a closed Store, a deleted dataset: a search scans instead, and the next one builds again)."""

        def quietly() -> None:
            _lower_this_threads_priority()
            with contextlib.suppress(Exception):
                build()

        with self._cursor_lock:
            if self._index_building():
                return
            thread = threading.Thread(target=quietly, name=name, daemon=True)
            self.__dict__["_index_thread"] = thread
        _BUILDING.add(self)
        thread.start()

    def _stop_building(self, timeout: float | None = None) -> None:
        """Stop the index build running in the background, if any (at its next batch of text, its child process
        terminated) and wait up to ``timeout`` seconds for it to end."""
        self.__dict__["_closing"] = True
        building = self.__dict__.get("_index_thread")
        if building is not None and building is not threading.current_thread():
            building.join(timeout)

    def prepare_search(self, run_id: int, proposals: bool = True) -> None:
        """Build now the word indexes a search of ``run_id``'s queue reads (its dataset's prompts and responses,
        and unless not ``proposals`` its proposals at their current scores), so that the next new search reads no
        text; a search builds them in the background otherwise. For benchmarks, tests and ``warm_search``."""
        dataset_id = self._dataset_of_run(run_id)
        self._word_index(
            ("rows", dataset_id), "rows WHERE dataset_id = $id", ("prompt", "response"), {"id": dataset_id}, True
        )
        if proposals:
            with self._cursor() as cursor:
                version = _scores_version(cursor, run_id)
            self._word_index(
                ("proposals", run_id, version),
                "scores WHERE run_id = $id",
                ("proposed_response",),
                {"id": run_id},
                True,
            )

    def warm_search(self, run_id: int) -> None:
        """Start building, in the background, the word indexes a new search of ``run_id``'s queue reads, for a
        dataset of at least ``_WARM_SEARCH_ROWS`` rows: the Review page calls it on each draw, so that a person's
        first search finds them built (about two minutes of one core at 1M rows). The proposals' index only once the
        run has stopped scoring (every chunk of new scores would make it stale). Nothing while a build runs."""
        run = self._one(
            "SELECT r.dataset_id, d.n_rows, r.status FROM runs r JOIN datasets d USING (dataset_id) WHERE r.run_id = ?",
            [run_id],
        )
        if run is None or run["n_rows"] < _WARM_SEARCH_ROWS:
            return
        proposals = run["status"] != "running"
        with self._cursor_lock:
            kept = self.__dict__.setdefault("_word_indexes", {})
            if ("rows", run["dataset_id"]) in kept and (
                not proposals or any(k[:2] == ("proposals", run_id) for k in kept)
            ):
                return  # built (a stale proposals index is rebuilt by the next search that finds it stale)
        self._build_in_background(lambda: self.prepare_search(run_id, proposals), f"search-index-warm-{run_id}")

    def _queue_sql(self, query: ReviewQuery, decisions: bool = True) -> str:
        """The keys of the scored rows of $run_id that ``query`` filters and sorts on: row_index, every score,
        error, action (γ=$gamma, η=$eta; none for a failed row ``error`` set) and the current decision's
        decision, decided_at and reason (``query.decided_by``'s own decision's with that set). The dataset's
        prompt and response (and response_length) are joined only when ``query`` searches or sorts by length: at
        1M rows that join costs more than the rest. Without ``decisions`` there are no decision columns (and no join
        to read them), for a query that reads none."""
        action = clear.action_sql("s.confidence", "s.correction_confidence", "$gamma", "$eta")
        text = bool(query.search) or query.order_by == "response_length"
        decided = f"LEFT JOIN ({_decisions_sql(query.decided_by is not None)}) c ON c.row_index = s.row_index"
        return f"""
            SELECT s.row_index, {", ".join(f"s.{f}" for f in SCORE_FIELDS)}, s.error,
                   CASE WHEN s.error IS NULL THEN {action} END AS action
                   {", c.decision, c.decided_at, c.reason" if decisions else ""}
                   {", r.prompt, r.response, length(r.response) AS response_length" if text else ""}
            FROM scores s
            {"JOIN rows r ON r.dataset_id = $dataset_id AND r.row_index = s.row_index" if text else ""}
            {decided if decisions else ""}
            WHERE s.run_id = $run_id
        """

    def action_counts(self, run_id: int, gamma: float, eta: float) -> dict[str, int]:
        """How many scored rows of the run each automatic action gets: {'filter', 'correct', 'keep'} (failed rows
        get none)."""
        action = clear.action_sql("confidence", "correction_confidence", "$gamma", "$eta")
        with self._cursor() as cursor:
            rows = cursor.execute(
                f"SELECT {action} AS action, count(*) FROM scores WHERE run_id = $run_id AND error IS NULL "
                "GROUP BY action",
                {"run_id": run_id, "gamma": float(gamma), "eta": float(eta)},
            ).fetchall()
        counts = dict.fromkeys(clear.ACTIONS, 0)
        counts.update({name: int(n) for name, n in rows})
        return counts

    def confidence_values(self, run_id: int) -> pd.DataFrame:
        """For plots: row_index, numeric score fields, response_length (characters) and current decision, for the
        scored rows (failed rows have no scores to plot)."""
        return self._df(
            f"""
            SELECT s.row_index, {", ".join(f"s.{f}" for f in NUMERIC_SCORE_FIELDS)},
                   length(r.response) AS response_length, c.decision
            FROM scores s
            JOIN rows r ON r.dataset_id = $dataset_id AND r.row_index = s.row_index
            LEFT JOIN ({_CURRENT_DECISIONS}) c ON c.row_index = s.row_index
            WHERE s.run_id = $run_id AND s.error IS NULL
            ORDER BY s.row_index
            """,
            {"run_id": run_id, "dataset_id": self._dataset_of_run(run_id)},
        )

    def agreement_by_bucket(self, run_id: int, gamma: float, eta: float, bins: int = 10) -> pd.DataFrame:
        """Per equal-width confidence bucket: n_rows, n_decided, n_agree and agreement (share, NaN if none decided).

        A human decision agrees with the automatic action as in ``clear.AGREEING_DECISIONS``: filter~remove,
        correct~accept or edit, keep~reject. Rows without a confidence are left out.
        """
        if int(bins) < 1:
            raise InvalidInput("bins must be at least 1.")
        action = clear.action_sql("s.confidence", "s.correction_confidence", "$gamma", "$eta")
        agree = " ".join(
            f"WHEN action = '{a}' THEN decision IN ({', '.join(repr(d) for d in ds)})"
            for a, ds in clear.AGREEING_DECISIONS.items()
        )
        df = self._df(
            f"""
            WITH labelled AS (
                SELECT least(greatest(CAST(floor(s.confidence * $bins) AS BIGINT), 0), $bins - 1) AS bucket,
                       {action} AS action, c.decision
                FROM scores s LEFT JOIN ({_CURRENT_DECISIONS}) c ON c.row_index = s.row_index
                WHERE s.run_id = $run_id AND s.error IS NULL AND s.confidence IS NOT NULL AND NOT isnan(s.confidence)
            )
            SELECT g.bucket, g.bucket / $bins AS lower, (g.bucket + 1) / $bins AS upper,
                   count(l.action) AS n_rows, count(l.decision) AS n_decided,
                   count(*) FILTER (WHERE CASE {agree} END) AS n_agree
            FROM range($bins) g(bucket) LEFT JOIN labelled l USING (bucket)
            GROUP BY g.bucket ORDER BY g.bucket
            """,
            {
                "run_id": run_id,
                "dataset_id": self._dataset_of_run(run_id),
                "gamma": float(gamma),
                "eta": float(eta),
                "bins": int(bins),
            },
        )
        df["agreement"] = (df["n_agree"] / df["n_decided"].where(df["n_decided"] > 0)).astype(float)
        return df

    def threshold_version(self, run_id: int) -> tuple:
        """What the Thresholds page's counts depend on, cheap to read: the run's scores version (scored rows, latest
        scored_at, calibrations: a recalibration rewrites every confidence), then the dataset's latest decision_id
        as the last field. Equal versions mean equal ``threshold_grid`` and ``threshold_sample``; all but the last
        field equal mean an equal ``threshold_grid(run_id, 'scores')``."""
        with self._cursor() as cursor:
            decision = cursor.execute(
                "SELECT max(decision_id) FROM decisions WHERE dataset_id = ?", [self._dataset_of_run(run_id)]
            ).fetchall()[0][0]
            return (*_scores_version(cursor, run_id), decision)

    def threshold_grid(self, run_id: int, rows: str = "all") -> pd.DataFrame:
        """The run's scored rows counted per cell of ``histograms``' grid (conf_step, corr_step, conf_bin,
        corr_bin, bucket, decision, n), in one pass in DuckDB: a few thousand cells from which the Thresholds page
        re-counts actions, histograms and agreement for any γ/η on the 0.01 grid without reading rows again.

        ``rows``: 'all' (each row with its current decision), 'scores' (every row as undecided: what depends on
        the scores alone, 0.2-0.3 s at 1M rows) or 'decided' (only the rows with a current decision, a join with
        the few decisions). ``histograms.with_decisions(grid('scores'), grid('decided'))`` equals ``grid('all')``,
        so a page can keep the first part until the scores change and re-count only the second after a decision."""
        with self._cursor() as cursor:
            return _threshold_grid(cursor, run_id, rows, None if rows == "scores" else self._dataset_of_run(run_id))

    def threshold_summary(
        self, run_id: int, size: int = 2_000, floor: int = 60, *, scores_version: tuple | None = None
    ) -> dict[str, pd.DataFrame]:
        """What the Thresholds page draws from the run's scores alone, kept in the database per scores version
        (``score_summaries``), so that a fresh process reads a few hundred KB instead of every score:

        - 'grid': ``threshold_grid(run_id, 'scores')``;
        - 'bins': ``confidence_bins(run_id, histograms.BUDGET_BINS)``;
        - 'candidates': the scatter's candidate rows (``histograms.candidate_counts`` per confidence decile of a
          ``size``/``floor`` sample, those with the smallest hash of row_index), decided or not: row_index, the
          numeric score fields, response_length, decile and h (the hash), from which ``threshold_sample`` picks.

        Computed in one snapshot when missing or stale (new or replaced scores or a recalibration change
        ``_scores_version``; so do another size, floor or DuckDB version) and saved unless the store is read-only;
        a run marked done gets it then (``set_run_status``). The frames are shared: do not modify them.
        ``scores_version``: ``threshold_version(run_id)`` but its last field, when the caller has just read it (one
        scan of the scores fewer)."""
        key = (run_id, size, floor)
        with self._cursor() as cursor:
            scores = _scores_version(cursor, run_id) if scores_version is None else tuple(scores_version)
            version = _dumps([*scores, size, floor, duckdb.__version__])
            with self._cursor_lock:
                kept = self.__dict__.setdefault("_summary_cache", {}).get(key)
            if kept is not None and kept[0] == version:
                return kept[1]
            found = cursor.execute(
                "SELECT name, frame FROM score_summaries WHERE run_id = ? AND version = ?", [run_id, version]
            ).fetchall()
        frames = {name: _frame_from_bytes(blob) for name, blob in found}
        if set(frames) != set(SUMMARY_FRAMES):
            frames = self._summarize(run_id, size, floor, version)
        with self._cursor_lock:
            self.__dict__["_summary_cache"][key] = (version, frames)
        return frames

    def _summarize(self, run_id: int, size: int, floor: int, version: str) -> dict[str, pd.DataFrame]:
        """``threshold_summary``'s frames computed from the scores (three passes: the grid, the bins, a hash filter
        as ``_threshold_sample_scan``'s), saved under ``version`` unless the store is read-only."""
        with self._cursor() as cursor:
            cursor.begin()  # one snapshot: the frames and the version they are saved under agree
            if _dumps([*_scores_version(cursor, run_id), size, floor, duckdb.__version__]) != version:
                cursor.rollback()
                return self.threshold_summary(run_id, size, floor)  # scores arrived meanwhile: their version
            grid = _threshold_grid(cursor, run_id, "scores", None)
            bins = _confidence_bins(cursor, run_id, histograms.BUDGET_BINS)
            deciles = _deciles(grid)
            counts = histograms.candidate_counts(deciles, size, floor)
            keep = _keep_rate(counts, deciles.to_numpy())
            candidates = cursor.execute(
                f"""
                WITH rates AS (SELECT r[1]::BIGINT AS decile, r[2]::DOUBLE AS keep FROM (SELECT unnest($rates) AS r)),
                v AS (SELECT s.row_index, {", ".join(f"s.{f}" for f in NUMERIC_SCORE_FIELDS)},
                             {_DECILE} AS decile, hash(s.row_index) AS h {_PLACED})
                SELECT v.* FROM v JOIN rates USING (decile) WHERE v.h <= rates.keep * 18446744073709551615
                """,
                {"run_id": run_id, "rates": [[float(d), float(k)] for d, k in zip(deciles.index, keep)]},
            ).df()
            candidates = candidates.sort_values(["h", "row_index"], kind="stable")
            limit = pd.Series(counts, index=deciles.index).reindex(candidates["decile"]).to_numpy()
            candidates = candidates[candidates.groupby("decile").cumcount().to_numpy() < limit]
            lengths = _response_lengths(cursor, self._dataset_of_run(run_id), candidates["row_index"].tolist())
            cursor.commit()
        candidates = candidates.merge(lengths, on="row_index").sort_values("row_index").reset_index(drop=True)
        frames = {"grid": grid, "bins": bins, "candidates": candidates}
        if not self.read_only:
            with self._transaction() as cursor:
                cursor.execute("DELETE FROM score_summaries WHERE run_id = ?", [run_id])
                for name, frame in frames.items():
                    cursor.execute(
                        "INSERT INTO score_summaries VALUES (?, ?, ?, ?, ?)",
                        [run_id, name, version, _frame_to_bytes(frame), _now()],
                    )
        return frames

    def threshold_sample(self, run_id: int, size: int = 2_000, floor: int = 60) -> pd.DataFrame:
        """About ``size`` scored rows for the Thresholds scatter, stratified so rare rows stay visible: per
        confidence decile and decided/undecided, a share proportional to the stratum's size but at least
        ``floor`` rows (all of a smaller stratum), the rows with the smallest hash of row_index (stable across
        redraws).

        Columns: row_index, numeric score fields, response_length, decision and ``weight`` (rows of its stratum
        per sampled row). Rows without a confidence cannot be placed and are left out, as failed rows are.
        Undecided rows come from ``threshold_summary``'s candidates (kept per scores version), decided rows from a
        join with the current decisions (``histograms.scatter_sample``); when so many candidates were decided that
        a stratum runs short, the scores are read again (``_threshold_sample_scan``, the same rows)."""
        dataset_id = self._dataset_of_run(run_id)
        with self._cursor() as cursor:
            decided = _decided_scores(cursor, run_id, dataset_id)
        return self._threshold_sample_from(run_id, decided, size, floor)

    def threshold_decided(
        self, run_id: int, size: int = 2_000, floor: int = 60, *, scores_version: tuple | None = None
    ) -> dict[str, Any]:
        """What the Thresholds page reads of the run's decided rows, from one join of the scores with the current
        decisions (instead of one per part): 'grid' = ``threshold_grid(run_id, 'decided')``, 'reviewed' =
        ``reviewed_labels(run_id)`` (the same rows, in another order) and 'sample' = ``threshold_sample(run_id,
        size, floor)``. ``scores_version``: ``threshold_version``'s all but last fields, when the caller has read
        it (``threshold_summary``)."""
        dataset_id = self._dataset_of_run(run_id)
        with self._cursor() as cursor:
            decided = _decided_scores(cursor, run_id, dataset_id)
            grid = _threshold_grid(cursor, run_id, "decided", dataset_id, decided)
        labelled = decided[decided["has_logit"].to_numpy(dtype=bool)]
        reviewed = (labelled["raw_logit"].to_numpy(dtype=float), (labelled["decision"] != "reject").to_numpy(bool))
        sample = self._threshold_sample_from(run_id, decided, size, floor, scores_version)
        return {"grid": grid, "reviewed": reviewed, "sample": sample}

    def _threshold_sample_from(
        self, run_id: int, decided: pd.DataFrame, size: int, floor: int, scores_version: tuple | None = None
    ) -> pd.DataFrame:
        """``threshold_sample`` given the run's decided rows (``_decided_scores``)."""
        summary = self.threshold_summary(run_id, size, floor, scores_version=scores_version)
        dataset_id = self._dataset_of_run(run_id)
        decided = _placed_decided(decided)
        picked = histograms.scatter_sample(summary["candidates"], _deciles(summary["grid"]), decided, size, floor)
        if picked is None:
            return self._threshold_sample_scan(run_id, size, floor)
        decision = picked["decision"].astype(object).where(picked["decided"], None)  # as the scan types it
        picked["decision"] = (
            decision if decided["decision"].dtype == object else decision.astype(decided["decision"].dtype)
        )
        # decided rows' lengths (not in the candidates), looked up by key: an IN list of constants is answered from
        # migration 12's index (ints from the query above: nothing to escape)
        need = ", ".join(str(int(k)) for k in picked.loc[picked["decided"], "row_index"])
        if need:  # else every picked row is a candidate, whose length the summary has
            lengths = self._df(
                "SELECT row_index, length(response) AS response_length FROM rows "
                f"WHERE dataset_id = $dataset_id AND row_index IN ({need})",
                {"dataset_id": dataset_id},
            )
            found = picked["row_index"].map(lengths.set_index("row_index")["response_length"])
            picked["response_length"] = picked["response_length"].fillna(found)
        picked["response_length"] = picked["response_length"].astype("int64")
        columns = ["row_index", *NUMERIC_SCORE_FIELDS, "response_length", "decision", "weight"]
        return picked.sort_values("row_index")[columns].reset_index(drop=True)

    def _threshold_sample_scan(self, run_id: int, size: int = 2_000, floor: int = 60) -> pd.DataFrame:
        """``threshold_sample`` from the scores alone, for when the kept candidates run short. Two passes over the
        scores and no sort of them: the strata's sizes, then a hash filter that keeps a few more rows than each
        stratum's share (trimmed here, a join with the strata's rates); response_length is read for the chosen
        rows only."""
        params = {"run_id": run_id, "dataset_id": self._dataset_of_run(run_id)}
        scored = f"""
            FROM scores s LEFT JOIN ({_CURRENT_DECISIONS}) c ON c.row_index = s.row_index
            WHERE s.run_id = $run_id AND s.error IS NULL AND NOT isnan(s.confidence)
        """
        with self._cursor() as cursor:
            strata = cursor.execute(
                f"SELECT {_DECILE} AS decile, c.decision IS NOT NULL AS decided, count(*) AS n {scored} GROUP BY ALL",
                params,
            ).df()
            total = int(strata["n"].sum())
            strata["quota"] = np.minimum(strata["n"], np.maximum(np.ceil(strata["n"] * size / max(total, 1)), floor))
            strata["keep"] = _keep_rate(strata["quota"], strata["n"])
            rates = [[int(d), bool(x), float(k)] for d, x, k in strata[["decile", "decided", "keep"]].to_numpy()]
            # a join with the strata's rates, not a subquery per row: 0.1 s instead of 0.5 s at 1M rows
            picked = cursor.execute(
                f"""
                WITH rates AS (SELECT r[1]::BIGINT AS decile, r[2]::BOOLEAN AS decided, r[3]::DOUBLE AS keep
                               FROM (SELECT unnest($rates) AS r)),
                v AS (SELECT s.row_index, {", ".join(f"s.{f}" for f in NUMERIC_SCORE_FIELDS)}, c.decision,
                             {_DECILE} AS decile, c.decision IS NOT NULL AS decided, hash(s.row_index) AS h
                      {scored})
                SELECT v.* FROM v JOIN rates USING (decile, decided) WHERE v.h <= rates.keep * 18446744073709551615
                """,
                {**params, "rates": rates},
            ).df()
            picked = picked.merge(strata[["decile", "decided", "n", "quota"]], on=["decile", "decided"])
            picked = picked.sort_values(["h", "row_index"], kind="stable")
            picked = picked[picked.groupby(["decile", "decided"]).cumcount() < picked["quota"]]
            lengths = _response_lengths(cursor, params["dataset_id"], picked["row_index"].tolist())
        picked = picked.assign(weight=picked["n"] / picked["quota"]).merge(lengths, on="row_index")
        columns = ["row_index", *NUMERIC_SCORE_FIELDS, "response_length", "decision", "weight"]
        return picked.sort_values("row_index")[columns].reset_index(drop=True)

    # -- decisions ------------------------------------------------------------------------------------------

    def record_decision(
        self,
        dataset_id: int,
        row_index: int,
        decision: str,
        *,
        run_id: int | None = None,
        final_response: str | None = None,
        reason: str | None = None,
        note: str | None = None,
        actor: permissions.Actor,
    ) -> int:
        """Append ``actor``'s decision on a row and commit it; returns its decision_id.

        accept: use the proposal (final_response defaults to the run's proposed_response, so the log keeps the
        exact text accepted); edit: use final_response (required); reject/remove take no final_response, but may
        take a ``reason`` (one of ``REASONS``) and a free-text ``note`` (blank counts as none). The log records the
        actor's name as the annotator; an actor whose role may not decide (or edit) is refused.
        """
        if decision not in DECISIONS or decision == "undo":
            raise InvalidInput(
                f"Unknown decision {decision!r}; expected accept, reject, remove or edit (undo_last_decision undoes)."
            )
        annotator = _annotator(actor)
        if decision == "edit" and not final_response:
            raise InvalidInput("An edit needs final_response, the annotator's text.")
        if decision in ("reject", "remove") and final_response is not None:
            raise InvalidInput(f"A {decision} decision keeps no final_response.")
        note = note.strip() or None if isinstance(note, str) else note
        if (reason is not None or note is not None) and decision not in REASON_DECISIONS:
            raise InvalidInput(f"Only a remove or reject decision takes a reason or note, not {decision!r}.")
        if reason is not None and reason not in REASONS:
            raise InvalidInput(f"Unknown reason {reason!r}; expected one of {', '.join(REASONS)}.")
        permissions.require(actor, "edit" if decision == "edit" else "decide")
        with self._transaction() as cursor:
            row = _first(
                cursor.execute("SELECT 1 FROM rows WHERE dataset_id = ? AND row_index = ?", [dataset_id, row_index])
            )
            if row is None:
                raise NotFoundError(f"Dataset {dataset_id} has no row {row_index}.")
            if run_id is not None:
                run = _first(cursor.execute("SELECT dataset_id FROM runs WHERE run_id = ?", [run_id]))
                if run is None or run[0] != dataset_id:
                    raise NotFoundError(f"Dataset {dataset_id} has no scoring run with id {run_id}.")
            if decision == "accept" and final_response is None and run_id is not None:
                proposal = _first(
                    cursor.execute(
                        "SELECT proposed_response FROM scores WHERE run_id = ? AND row_index = ?", [run_id, row_index]
                    )
                )
                final_response = None if proposal is None else proposal[0]
            if decision == "accept" and final_response is None:
                raise InvalidInput(
                    f"Row {row_index} has no proposed response to accept; pass the run_id of a run that scored it."
                )
            return int(
                cursor.execute(
                    "INSERT INTO decisions (dataset_id, row_index, run_id, decision, final_response, annotator, "
                    "undoes, decided_at, reason, note) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?) RETURNING decision_id",
                    [dataset_id, row_index, run_id, decision, final_response, annotator, _now(), reason, note],
                ).fetchall()[0][0]
            )

    def accept_proposals(self, query: ReviewQuery, *, actor: permissions.Actor) -> int:
        """Accept the run's proposal for every row ``query`` selects that has one (empty or blank proposals are
        skipped), as one group (``decide_query``); returns how many."""
        return self.decide_query(query, "accept", actor=actor)[1]

    def decide_query(self, query: ReviewQuery, decision: str, *, actor: permissions.Actor) -> tuple[int | None, int]:
        """Record ``decision`` (one of ``GROUP_DECISIONS``) on every row ``query`` selects, as one group; returns
        (group_id, how many rows), or (None, 0) when it selects none (no group is recorded).

        accept uses each row's proposal and skips rows without one (or with a blank one); reject keeps the original;
        remove drops the row. The group (``decision_groups``: its query as JSON, its size, the actor's name) and its
        decisions (each with the group's ``group_id``) are written in one transaction, the decisions by one
        INSERT ... SELECT that evaluates the query once, so what is decided is what the query selects at the call,
        and ``review_count(query, decision)`` counted it beforehand. Only a lead may do this (``bulk_accept`` for
        accept, ``bulk_decide`` otherwise); ``undo_group`` reverts the whole group.
        """
        annotator = _annotator(actor)
        select, params = self._group_select(query, decision)
        permissions.require(actor, "bulk_accept" if decision == "accept" else "bulk_decide")
        with self._transaction() as cursor:
            now = _now()
            group_id = int(cursor.execute("SELECT nextval('group_id_seq')").fetchall()[0][0])
            # the query runs once: its rows become the decisions, and their count the group's size
            n_rows = int(
                cursor.execute(
                    "INSERT INTO decisions (dataset_id, row_index, run_id, decision, final_response, annotator, "
                    "undoes, decided_at, group_id) SELECT $dataset_id, row_index, $run_id, $decision, final_response, "
                    f"$annotator, NULL, $now, $group_id FROM ({select}) ORDER BY row_index",
                    {**params, "decision": decision, "annotator": annotator, "now": now, "group_id": group_id},
                ).fetchall()[0][0]
            )
            if not n_rows:
                return None, 0
            cursor.execute(
                "INSERT INTO decision_groups (group_id, dataset_id, run_id, decision, query_json, n_rows, actor, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    group_id,
                    params["dataset_id"],
                    query.run_id,
                    decision,
                    _dumps(dataclasses.asdict(query)),
                    n_rows,
                    annotator,
                    now,
                ],
            )
        return group_id, n_rows

    def undo_group(self, group_id: int, *, actor: permissions.Actor) -> int:
        """Revert every decision of a group at once, in one transaction; returns how many were undone.

        Each decision of the group not undone yet gets an ``undo`` pointing at it (``undoes``), exactly as
        ``undo_last_decision`` writes one, with the group's ``group_id``: each row falls back to the decision it had
        before the group, and a row decided again after the group keeps that later decision. Only a lead may undo a
        group (``bulk_decide``; another person's group needs ``undo_any`` too); a group undone already is refused.
        """
        annotator = _annotator(actor)
        permissions.require(actor, "bulk_decide")
        with self._transaction() as cursor:
            group = _first(
                cursor.execute("SELECT actor, undone_at FROM decision_groups WHERE group_id = ?", [group_id])
            )
            if group is None:
                raise NotFoundError(f"There is no decision group with id {group_id}.")
            if group[1] is not None:
                raise InvalidInput(f"Decision group {group_id} was undone already ({group[1]:%Y-%m-%d %H:%M} UTC).")
            if group[0] != annotator:
                permissions.require(actor, "undo_any")
            now = _now()
            undone = cursor.execute(
                """
                INSERT INTO decisions (dataset_id, row_index, run_id, decision, final_response, annotator, undoes,
                                       decided_at, group_id)
                SELECT d.dataset_id, d.row_index, d.run_id, 'undo', NULL, $annotator, d.decision_id, $now, $group_id
                FROM decisions d
                WHERE d.group_id = $group_id AND d.decision <> 'undo'
                  AND NOT EXISTS (SELECT 1 FROM decisions u WHERE u.undoes = d.decision_id)
                ORDER BY d.decision_id
                """,
                {"annotator": annotator, "now": now, "group_id": group_id},
            ).fetchall()[0][0]
            cursor.execute(
                "UPDATE decision_groups SET undone_at = ?, undone_by = ? WHERE group_id = ?", [now, annotator, group_id]
            )
        return int(undone)

    def decision_groups(self, dataset_id: int) -> list[dict[str, Any]]:
        """The dataset's query-wide decisions, newest first: group_id, run_id, decision, query (the ReviewQuery's
        fields), n_rows, actor, created_at, and undone_at/undone_by (None while it stands)."""
        groups = _df_records(
            self._df("SELECT * FROM decision_groups WHERE dataset_id = ? ORDER BY group_id DESC", [dataset_id])
        )
        for group in groups:
            group["query"] = _loads(group.pop("query_json"))
        return groups

    def last_group(self, dataset_id: int) -> dict[str, Any] | None:
        """The dataset's latest decision group that is not undone (as ``decision_groups`` gives it), or None."""
        return next((g for g in self.decision_groups(dataset_id) if g["undone_at"] is None), None)

    def undo_last_decision(
        self, dataset_id: int, actor: permissions.Actor, *, of_anyone: bool = False
    ) -> dict[str, Any] | None:
        """Undo ``actor``'s latest decision not yet undone, or with ``of_anyone`` anyone's (a lead's right);
        returns the undone decision, or None if there is none. The undo records the actor's name. Decisions made
        for a whole query are left to ``undo_group``, which reverts their group at once."""
        annotator = _annotator(actor)
        permissions.require(actor, "undo_any" if of_anyone else "undo_own")
        with self._transaction() as cursor:
            params: list[Any] = [dataset_id]
            by_annotator = ""
            if not of_anyone:
                by_annotator = "AND d.annotator = ?"
                params.append(annotator)
            target = cursor.execute(
                f"""
                SELECT d.* FROM decisions d
                WHERE d.dataset_id = ? AND d.decision <> 'undo' AND d.group_id IS NULL {by_annotator}
                  AND NOT EXISTS (SELECT 1 FROM decisions u WHERE u.undoes = d.decision_id)
                ORDER BY d.decision_id DESC LIMIT 1
                """,
                params,
            ).df()
            if target.empty:
                return None
            undone = _df_records(target)[0]
            _insert_undo(cursor, undone, annotator)
        return undone

    def undo_decision(self, decision_id: int, *, actor: permissions.Actor) -> dict[str, Any]:
        """Undo one decision, whoever made it; returns it. The actor's own needs ``undo_own``, anyone else's
        ``undo_any`` (a lead's right: the Team page's "Undo a decision"). The row falls back to the decision it had
        before; the undo records the actor's name. An undo, a decision undone already and a decision of a query-wide
        group (``undo_group`` reverts those) are refused."""
        annotator = _annotator(actor)
        with self._transaction() as cursor:
            target = cursor.execute(
                "SELECT d.*, EXISTS (SELECT 1 FROM decisions u WHERE u.undoes = d.decision_id) AS is_undone "
                "FROM decisions d WHERE d.decision_id = ?",
                [decision_id],
            ).df()
            if target.empty:
                raise NotFoundError(f"There is no decision {decision_id}.")
            undone = _df_records(target)[0]
            mine = undone["annotator"] == annotator
            permissions.require(actor, "undo_own" if mine else "undo_any")
            if undone["decision"] == "undo":
                raise InvalidInput(f"Decision {decision_id} is itself an undo; decide the row again instead.")
            if undone.pop("is_undone"):
                raise InvalidInput(f"Decision {decision_id} (row {undone['row_index']}) was undone already.")
            if undone["group_id"] is not None:
                raise InvalidInput(
                    f"Decision {decision_id} was made for a whole query (group {undone['group_id']}); undo the group."
                )
            _insert_undo(cursor, undone, annotator)
        return undone

    def current_decisions(self, dataset_id: int) -> pd.DataFrame:
        """The effective decision per row (latest one not undone), ordered by row_index."""
        return self._df(f"SELECT * FROM ({_CURRENT_DECISIONS}) ORDER BY row_index", {"dataset_id": dataset_id})

    def decision_log(self, dataset_id: int) -> pd.DataFrame:
        """Every decision of a dataset including undos, in the order they were made."""
        return self._df("SELECT * FROM decisions WHERE dataset_id = ? ORDER BY decision_id", [dataset_id])

    def reason_counts(self, dataset_id: int) -> pd.DataFrame:
        """Current remove/reject decisions per reason: one row per (reason, decision) of ``REASONS`` x
        ``REASON_DECISIONS``, in that order, with ``n`` (0 when none), counted in SQL; decisions without a reason
        are left out."""
        return self._df(
            f"""
            SELECT r.reason, d.decision, count(c.row_index) AS n
            FROM (SELECT unnest($reasons) AS reason) r CROSS JOIN (SELECT unnest($decisions) AS decision) d
            LEFT JOIN ({_CURRENT_DECISIONS}) c ON c.reason = r.reason AND c.decision = d.decision
            GROUP BY r.reason, d.decision
            ORDER BY list_position($reasons, r.reason), list_position($decisions, d.decision)
            """,
            {"dataset_id": dataset_id, "reasons": list(REASONS), "decisions": list(REASON_DECISIONS)},
        )

    def review_progress(self, run_id: int) -> tuple[int, int]:
        """(rows with an effective decision, rows in the run's dataset). Drawn with every Review page, so it ranks
        no decisions: a row has an effective decision when any of its decisions stands (no undo, not undone), and
        the dataset's size is the one stored at import."""
        with self._cursor() as cursor:
            found = _first(
                cursor.execute(
                    """
                    SELECT datasets.n_rows, (
                        SELECT count(DISTINCT d.row_index) FROM decisions d
                        WHERE d.dataset_id = $dataset_id AND d.decision <> 'undo'
                          AND NOT EXISTS (
                              SELECT 1 FROM decisions u WHERE u.dataset_id = d.dataset_id AND u.undoes = d.decision_id
                          )
                    )
                    FROM runs JOIN datasets USING (dataset_id) WHERE runs.run_id = $run_id
                    """,
                    {"run_id": run_id, "dataset_id": self._dataset_of_run(run_id)},
                )
            )
        n_total, n_decided = found
        return int(n_decided), int(n_total)

    # -- many annotators at once: leases, overlap, who decided (issue 9) -------------------------------------

    def _write_retried(self, work: Any, attempts: int = 5) -> Any:
        """``work(cursor)`` in one transaction, run again (up to ``attempts`` times) when DuckDB reports a conflict
        with another connection's transaction, so concurrent writers wait their turn instead of failing."""
        for attempt in range(attempts):
            try:
                with self._transaction() as cursor:
                    return work(cursor)
            except duckdb.TransactionException:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def review_settings(self, dataset_id: int) -> dict[str, Any]:
        """How a team reviews the dataset: ``overlap`` (how many different people decide each row; 1 = once),
        ``lease_seconds`` (how long an opened row stays someone's), ``updated_at``/``updated_by`` (None until set)."""
        settings = self._one("SELECT * FROM review_settings WHERE dataset_id = ?", [dataset_id])
        if settings is None:
            return {"overlap": 1, "lease_seconds": DEFAULT_LEASE_SECONDS, "updated_at": None, "updated_by": None}
        return {key: settings[key] for key in ("overlap", "lease_seconds", "updated_at", "updated_by")}

    def set_review_settings(
        self,
        dataset_id: int,
        *,
        overlap: int | None = None,
        lease_seconds: int | None = None,
        actor: permissions.Actor,
    ) -> None:
        """Save the dataset's ``overlap`` (1 to ``MAX_OVERLAP`` different people per row) and/or ``lease_seconds``
        (at least 10); a lead's right (``set_overlap``). What is not given keeps its value."""
        current = self.review_settings(dataset_id)
        overlap = current["overlap"] if overlap is None else overlap
        lease_seconds = current["lease_seconds"] if lease_seconds is None else lease_seconds
        if isinstance(overlap, bool) or not isinstance(overlap, int) or not 1 <= overlap <= MAX_OVERLAP:
            raise InvalidInput(f"overlap must be a whole number from 1 to {MAX_OVERLAP}, got {overlap!r}.")
        if isinstance(lease_seconds, bool) or not isinstance(lease_seconds, int) or lease_seconds < 10:
            raise InvalidInput(f"lease_seconds must be a whole number of seconds, at least 10, got {lease_seconds!r}.")
        permissions.require(actor, "set_overlap")
        self.get_dataset(dataset_id)  # NotFoundError for a dataset that is not there
        with self._transaction() as cursor:
            cursor.execute(
                "INSERT OR REPLACE INTO review_settings VALUES (?, ?, ?, ?, ?)",
                [dataset_id, overlap, lease_seconds, _now(), actor.name.strip() or actor.id],
            )

    def claim(
        self, dataset_id: int, row_index: int, *, actor: permissions.Actor, now: dt.datetime | None = None
    ) -> dict[str, Any]:
        """Open a row for ``actor``: lease it to them unless the other people holding it or having decided it
        already fill the dataset's overlap, and release their other leases in the dataset (one open row each).

        Returns ``granted`` (whether the row is theirs now; a row they decided already needs no lease and counts as
        granted), ``others`` (the names of the other people holding it, for "Also open: row N by X") and
        ``expires_at``. ``now`` (naive UTC, default the clock) is for tests.
        """
        holder, now = _lease_holder(actor), now or _now()
        settings = self.review_settings(dataset_id)

        def work(cursor: duckdb.DuckDBPyConnection) -> dict[str, Any]:
            found = cursor.execute("SELECT 1 FROM rows WHERE dataset_id = ? AND row_index = ?", [dataset_id, row_index])
            if _first(found) is None:
                raise NotFoundError(f"Dataset {dataset_id} has no row {row_index}.")
            return _claim(cursor, dataset_id, row_index, actor, holder, now, settings)

        return self._write_retried(work)

    def claim_next(self, query: ReviewQuery, *, actor: permissions.Actor, now: dt.datetime | None = None) -> int | None:
        """Lease ``actor`` the first row of ``query`` (in its order) that is still theirs to review and that nobody
        else holds, counting the dataset's overlap: a row is free while the people who decided it plus the others
        holding it are fewer than ``overlap``. Their other leases are released. Returns its row_index, or None when
        no row is left. The status filter gives way to "still to review for this actor" (``ReviewQuery.reviewer``).
        Checking and leasing is one transaction under the store's write lock, so two people never get the same row
        from concurrent calls (unless overlap asks for it)."""
        holder, now = _lease_holder(actor), now or _now()
        dataset_id = self._dataset_of_run(query.run_id)
        settings = self.review_settings(dataset_id)
        todo = dataclasses.replace(query, status=None, reviewer=actor.name.strip(), overlap=settings["overlap"])
        select, params = self._review_select(todo, "*")
        sql = f"""
            WITH held AS (
                SELECT row_index, count(*) AS n FROM ({_ACTIVE_LEASES}) WHERE actor_id <> $holder GROUP BY row_index
            ), done AS (
                SELECT row_index, count(*) AS n FROM ({_STANDING_DECISIONS}) GROUP BY row_index
            )
            SELECT q.row_index FROM ({select}) q
            LEFT JOIN held ON held.row_index = q.row_index LEFT JOIN done ON done.row_index = q.row_index
            WHERE coalesce(held.n, 0) + coalesce(done.n, 0) < $overlap
            ORDER BY {", ".join(f"q.{term.strip()}" for term in todo.order().split(","))}
            LIMIT 1
        """

        def work(cursor: duckdb.DuckDBPyConnection) -> int | None:
            found = _first(cursor.execute(sql, {**params, "holder": holder, "now": now}))
            if found is None:
                cursor.execute("DELETE FROM leases WHERE dataset_id = ? AND actor_id = ?", [dataset_id, holder])
                return None
            _claim(cursor, dataset_id, int(found[0]), actor, holder, now, settings)
            return int(found[0])

        return self._write_retried(work)

    def release(self, dataset_id: int, *, actor: permissions.Actor, row_index: int | None = None) -> int:
        """Give back ``actor``'s lease on ``row_index`` (skip), or all their leases in the dataset (leaving the
        queue); returns how many. Deciding a row needs no release: a lease ends once its holder decided the row."""
        holder = _lease_holder(actor)
        params: dict[str, Any] = {"dataset_id": dataset_id, "holder": holder}
        only_row = ""
        if row_index is not None:
            params["row_index"], only_row = row_index, "AND row_index = $row_index"
        return self._write_retried(
            lambda cursor: int(
                cursor.execute(
                    f"DELETE FROM leases WHERE dataset_id = $dataset_id AND actor_id = $holder {only_row}", params
                ).fetchall()[0][0]
            )
        )

    def active_leases(self, dataset_id: int, *, now: dt.datetime | None = None) -> pd.DataFrame:
        """The dataset's rows open right now: row_index, actor_id, actor_name, claimed_at, expires_at, oldest
        first. A lease counts until it expires or its holder decides the row."""
        return self._df(
            f"SELECT * FROM ({_ACTIVE_LEASES}) ORDER BY claimed_at, row_index",
            {"dataset_id": dataset_id, "now": now or _now()},
        )

    def busy_rows(
        self, dataset_id: int, row_indices: Iterable[int], *, actor: permissions.Actor, now: dt.datetime | None = None
    ) -> dict[int, list[str]]:
        """Of ``row_indices``, the rows ``actor`` should skip: not decided by them, and held by others who, with the
        people who decided the row, fill its overlap. Each maps to the names of those holding it."""
        holder, name = _lease_holder(actor), actor.name.strip()
        overlap = self.review_settings(dataset_id)["overlap"]
        frame = self._df(
            f"""
            WITH held AS (
                SELECT row_index, list(actor_name ORDER BY claimed_at) AS names, count(*) AS n
                FROM ({_ACTIVE_LEASES}) WHERE actor_id <> $holder AND list_contains($rows, row_index) GROUP BY row_index
            ), done AS (
                SELECT row_index, count(*) AS n, bool_or(annotator = $name) AS mine
                FROM ({_STANDING_DECISIONS}) WHERE list_contains($rows, row_index) GROUP BY row_index
            )
            SELECT held.row_index, held.names FROM held LEFT JOIN done USING (row_index)
            WHERE NOT coalesce(done.mine, FALSE) AND held.n + coalesce(done.n, 0) >= $overlap
            """,
            {
                "dataset_id": dataset_id,
                "rows": [int(i) for i in row_indices],
                "holder": holder,
                "name": name,
                "now": now or _now(),
                "overlap": overlap,
            },
        )
        return {int(row): list(names) for row, names in zip(frame["row_index"], frame["names"], strict=True)}

    def row_decisions(self, dataset_id: int, row_index: int) -> pd.DataFrame:
        """Who decided the row, one line per person: their latest decision on it that stands (not undone), with
        decision_id, decision, annotator, decided_at, reason, note and group_id, oldest first. The latest of them
        is the row's current decision (the one export uses); the others are kept in the log for agreement."""
        return self._df(
            f"SELECT * FROM ({_STANDING_DECISIONS}) WHERE row_index = $row_index ORDER BY decision_id",
            {"dataset_id": dataset_id, "row_index": row_index},
        )

    def annotator_decisions(self, dataset_id: int) -> pd.DataFrame:
        """Every person's standing decision on every row they decided (as ``row_decisions``, for all rows),
        ordered by decision_id: what ``agreement`` compares between people and with the automatic action."""
        return self._df(f"SELECT * FROM ({_STANDING_DECISIONS}) ORDER BY decision_id", {"dataset_id": dataset_id})

    def rows_decided_by(self, dataset_id: int, annotator: str, row_indices: Iterable[int]) -> set[int]:
        """Which of ``row_indices`` ``annotator`` (a name) has a standing decision on: with overlap, the Review page
        keeps the others' decisions on the rest out of sight until this person has decided (blind review)."""
        frame = self._df(
            f"SELECT DISTINCT row_index FROM ({_STANDING_DECISIONS}) "
            "WHERE annotator = $annotator AND list_contains($rows, row_index)",
            {"dataset_id": dataset_id, "annotator": annotator, "rows": [int(i) for i in row_indices]},
        )
        return {int(i) for i in frame["row_index"]}

    # -- duplicates -----------------------------------------------------------------------------------------

    def find_duplicates(self, dataset_id: int, *, threshold: float = dedupe.DEFAULT_THRESHOLD) -> dict[str, int]:
        """Find the dataset's exact and near-duplicate responses and prompts (``dedupe.duplicate_groups`` at
        ``threshold``) and store every row's group per kind, replacing earlier groups; returns
        ``duplicate_summary``. Called after import; a dataset imported without it gets it on first use."""
        rows = self._df(
            "SELECT row_index, prompt, response FROM rows WHERE dataset_id = ? ORDER BY row_index", [dataset_id]
        )
        row_index = rows["row_index"].to_numpy(dtype=np.int64)
        frames = []
        for kind in DUPLICATE_KINDS:
            group_id = row_index.copy()  # a row without duplicates is its own group
            for group in dedupe.duplicate_groups(list(rows[kind]), threshold=threshold):
                group_id[group] = row_index[group].min()
            frames.append(pd.DataFrame({"kind": kind, "row_index": row_index, "group_id": group_id}))
        groups = pd.concat(frames, ignore_index=True)
        with self._transaction() as cursor:
            if _first(cursor.execute("SELECT 1 FROM datasets WHERE dataset_id = ?", [dataset_id])) is None:
                raise NotFoundError(f"There is no dataset with id {dataset_id}.")
            cursor.execute("DELETE FROM duplicate_groups WHERE dataset_id = ?", [dataset_id])
            cursor.register("incoming_groups", groups)  # dropped with the cursor at the end of the call
            cursor.execute(
                "INSERT INTO duplicate_groups SELECT ?, kind, row_index, group_id FROM incoming_groups", [dataset_id]
            )
        return self.duplicate_summary(dataset_id)

    def _ensure_duplicates(self, dataset_id: int) -> None:
        """Compute the dataset's duplicate groups if this file has none for it yet (a dataset imported before
        duplicates existed, or by ``add_dataset`` alone); a read-only store computes nothing."""
        stored = self._scalar("SELECT count(*) FROM duplicate_groups WHERE dataset_id = ?", [dataset_id])
        if not stored and not self.read_only:
            self.find_duplicates(dataset_id)

    def duplicate_summary(self, dataset_id: int) -> dict[str, int]:
        """How many rows have at least one duplicate and in how many groups, per kind:
        ``{'response_rows', 'response_groups', 'prompt_rows', 'prompt_groups'}``."""
        self._ensure_duplicates(dataset_id)
        with self._cursor() as cursor:
            found = cursor.execute(
                """
                SELECT kind, count(*), count(DISTINCT group_id) FROM (
                    SELECT kind, group_id, count(*) OVER (PARTITION BY kind, group_id) AS size
                    FROM duplicate_groups WHERE dataset_id = ?
                ) WHERE size > 1 GROUP BY kind
                """,
                [dataset_id],
            ).fetchall()
        summary = {f"{kind}_{what}": 0 for kind in DUPLICATE_KINDS for what in ("rows", "groups")}
        for kind, n_rows, n_groups in found:
            summary[f"{kind}_rows"], summary[f"{kind}_groups"] = int(n_rows), int(n_groups)
        return summary

    def duplicates_of(
        self, dataset_id: int, row_index: int, kind: str = "response", run_id: int | None = None
    ) -> pd.DataFrame:
        """The other rows of ``row_index``'s duplicate group (``kind`` 'response' or 'prompt'), by row_index:
        row_index, prompt, response, the run's confidence and proposed_response (NULL without ``run_id``) and the
        current decision. Empty when the row has no duplicates.

        Two phases, as ``review_queue``: the group's keys from ``duplicate_groups`` alone, then text, scores and
        decisions of those rows by key (an IN list of constants, which migration 12's row_index indexes answer).
        One query joining the group to ``rows`` read every prompt and response of the dataset: 270 ms per call at
        1M rows."""
        if kind not in DUPLICATE_KINDS:
            raise InvalidInput(f"Unknown duplicate kind {kind!r}; expected one of {', '.join(DUPLICATE_KINDS)}.")
        return self._duplicates(dataset_id, row_index, (kind,), run_id)[kind]

    def row_duplicates(self, dataset_id: int, row_index: int, run_id: int | None = None) -> dict[str, pd.DataFrame]:
        """``duplicates_of`` for every kind at once, ``{kind: frame}``: what Review draws for a row, in one read of
        the groups and one of the rows (a row's two groups share most of their rows: copies of one GSM8K row)."""
        return self._duplicates(dataset_id, row_index, DUPLICATE_KINDS, run_id)

    def _duplicates(
        self, dataset_id: int, row_index: int, kinds: Iterable[str], run_id: int | None
    ) -> dict[str, pd.DataFrame]:
        kinds = list(kinds)
        self._ensure_duplicates(dataset_id)
        params = {"dataset_id": dataset_id, "row_index": int(row_index), "kinds": kinds}
        with self._cursor() as cursor:
            members = cursor.execute(
                """
                SELECT g.kind, g.row_index FROM duplicate_groups g
                JOIN (SELECT kind, group_id FROM duplicate_groups
                      WHERE dataset_id = $dataset_id AND row_index = $row_index AND list_contains($kinds, kind)
                ) mine USING (kind, group_id)
                WHERE g.dataset_id = $dataset_id AND g.row_index <> $row_index
                """,
                params,
            ).fetchall()
            keys = sorted({int(k) for _, k in members})
            in_list = ", ".join(str(k) for k in keys) or "NULL"  # ints from the table: nothing to escape
            found = cursor.execute(
                f"""
                WITH r AS (SELECT row_index, prompt, response FROM rows
                           WHERE dataset_id = $dataset_id AND row_index IN ({in_list})),
                s AS (SELECT row_index, confidence, proposed_response FROM scores
                      WHERE run_id = $run_id AND row_index IN ({in_list}))
                SELECT r.row_index, r.prompt, r.response, s.confidence, s.proposed_response, c.decision
                FROM r
                LEFT JOIN s USING (row_index)
                LEFT JOIN ({_CURRENT_DECISIONS}) c USING (row_index)
                ORDER BY r.row_index
                """,
                {"dataset_id": dataset_id, "run_id": run_id},
            ).df()
        by_kind = {kind: set() for kind in kinds}
        for kind, key in members:
            by_kind[kind].add(int(key))
        return {kind: found[found["row_index"].isin(rows)].reset_index(drop=True) for kind, rows in by_kind.items()}

    def decide_duplicates(
        self,
        dataset_id: int,
        row_indices: Iterable[int],
        decision: str,
        *,
        run_id: int | None = None,
        actor: permissions.Actor,
    ) -> int:
        """Record ``actor``'s ``decision`` on each of ``row_indices`` (a row's duplicates, as ``duplicates_of``
        lists them), one decision per row in row order, committed together; returns how many were written.

        remove and reject (keep the original) apply to every row. accept needs each row's own proposal: it uses the
        proposal ``run_id`` made for that row and skips rows without one (a proposal is never copied across rows).
        Rows must exist; the run must be the dataset's; the role must allow deciding.
        """
        if decision not in DUPLICATE_DECISIONS:
            raise InvalidInput(
                f"Cannot apply {decision!r} to duplicates; expected one of {', '.join(DUPLICATE_DECISIONS)}."
            )
        annotator = _annotator(actor)
        permissions.require(actor, "decide")
        if decision == "accept" and run_id is None:
            raise InvalidInput("Accepting proposals needs the run_id of the run that proposed them.")
        targets = sorted({int(i) for i in row_indices})
        in_list = ", ".join(str(i) for i in targets)  # ints: nothing to escape; constants let DuckDB use the index
        with self._transaction() as cursor:
            if run_id is not None:
                run = _first(cursor.execute("SELECT dataset_id FROM runs WHERE run_id = ?", [run_id]))
                if run is None or run[0] != dataset_id:
                    raise NotFoundError(f"Dataset {dataset_id} has no scoring run with id {run_id}.")
            if not targets:
                return 0
            found = {
                int(i)
                for (i,) in cursor.execute(
                    f"SELECT row_index FROM rows WHERE dataset_id = ? AND row_index IN ({in_list})", [dataset_id]
                ).fetchall()
            }
            missing = sorted(set(targets) - found)
            if missing:
                raise NotFoundError(f"Dataset {dataset_id} has no row(s) {missing[:5]}.")
            # one INSERT ... SELECT; accept takes each row's own proposal and skips rows whose proposal is blank
            written = cursor.execute(
                f"""
                INSERT INTO decisions (dataset_id, row_index, run_id, decision, final_response, annotator, undoes,
                                       decided_at)
                SELECT $dataset_id, t.row_index, $run_id, $decision,
                       CASE WHEN $decision = 'accept' THEN s.proposed_response END, $annotator, NULL, $now
                FROM (SELECT unnest($targets) AS row_index) t
                LEFT JOIN (SELECT row_index, proposed_response FROM scores
                           WHERE run_id = $run_id AND row_index IN ({in_list})) s USING (row_index)
                WHERE $decision <> 'accept' OR coalesce(regexp_matches(s.proposed_response, '{_NOT_BLANK}'), FALSE)
                ORDER BY t.row_index
                """,
                {
                    "dataset_id": dataset_id,
                    "run_id": run_id,
                    "decision": decision,
                    "annotator": annotator,
                    "now": _now(),
                    "targets": targets,
                },
            ).fetchall()[0][0]
        return int(written)

    # -- thresholds -----------------------------------------------------------------------------------------

    def get_thresholds(self, dataset_id: int) -> tuple[float, float]:
        """(gamma, eta) for a dataset: γ Auto-Filter and η Auto-Correct, defaults from ``clear`` if never set."""
        with self._cursor() as cursor:
            row = _first(cursor.execute("SELECT gamma, eta FROM thresholds WHERE dataset_id = ?", [dataset_id]))
        return (clear.DEFAULT_GAMMA, clear.DEFAULT_ETA) if row is None else (float(row[0]), float(row[1]))

    def set_thresholds(self, dataset_id: int, gamma: float, eta: float, *, actor: permissions.Actor) -> None:
        """Save γ (gamma) and η (eta) for a dataset, each a number in [0, 1], as ``actor`` (recorded as updated_by
        when named); only a role that may set thresholds may do this."""
        for name, value in (("gamma", gamma), ("eta", eta)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise InvalidInput(f"{name} must be a number between 0 and 1, got {value!r}.")
        permissions.require(actor, "set_thresholds")
        with self._transaction() as cursor:
            cursor.execute(
                "INSERT OR REPLACE INTO thresholds VALUES (?, ?, ?, ?, ?)",
                [dataset_id, float(gamma), float(eta), _now(), actor.name.strip() or None],
            )
            _audit(cursor, actor, "set_thresholds", dataset_id=dataset_id, detail={"gamma": gamma, "eta": eta})

    # -- audit log (issue 9) --------------------------------------------------------------------------------

    def record_audit(
        self,
        actor: permissions.Actor,
        action: str,
        *,
        dataset_id: int | None = None,
        run_id: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Append one line to the audit log: ``action`` (one of ``AUDIT_ACTIONS``) by ``actor``. A registered
        action (``permissions.ACTIONS``: start_run, cancel_run, export) is refused to a role that may not do it."""
        with self._transaction() as cursor:
            _audit(cursor, actor, action, dataset_id=dataset_id, run_id=run_id, detail=detail)

    def audit_log(self, dataset_id: int | None = None, limit: int | None = None) -> pd.DataFrame:
        """Who did what, newest first: the audit log's lines together with every review decision and undo
        (``decisions``) and every query-wide decision and its undo (``decision_groups``), one row each, with
        ``acted_at, actor, role, action, dataset_id, run_id, row_index, detail`` (a dict). ``dataset_id``: that
        dataset's lines only (sign-ins have none); ``limit``: the newest N."""
        where = "" if dataset_id is None else "WHERE dataset_id = $dataset_id"
        top = "" if limit is None else f"LIMIT {int(limit)}"
        params = {} if dataset_id is None else {"dataset_id": dataset_id}
        frame = self._df(f"SELECT * FROM ({_AUDIT_SQL}) {where} ORDER BY acted_at DESC, seq DESC {top}", params)
        frame["detail"] = [_loads(text) for text in frame.pop("detail_json")]
        return frame.drop(columns=["seq"])


# What the audit log records besides review decisions (those are in `decisions` and `decision_groups`).
AUDIT_ACTIONS = ("sign_in", "sign_out", "import", "start_run", "cancel_run", "set_thresholds", "recalibrate", "export")


def _audit(
    cursor: duckdb.DuckDBPyConnection,
    actor: permissions.Actor,
    action: str,
    *,
    dataset_id: int | None = None,
    run_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Write one audit line inside the caller's transaction (refusing a registered action the actor may not do)."""
    if action not in AUDIT_ACTIONS:
        raise ValueError(f"Unknown audit action {action!r}; add it to store.AUDIT_ACTIONS.")
    if action in permissions.ACTIONS:
        permissions.require(actor, action)
    cursor.execute(
        "INSERT INTO audit_log (acted_at, actor, role, action, dataset_id, run_id, detail_json) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [_now(), actor.name.strip() or actor.id, actor.role, action, dataset_id, run_id, _dumps(detail or {})],
    )


def _insert_undo(cursor: duckdb.DuckDBPyConnection, undone: dict[str, Any], annotator: str) -> None:
    """Inside the caller's transaction: append ``annotator``'s undo of the decision ``undone`` (a decisions row)."""
    cursor.execute(
        "INSERT INTO decisions (dataset_id, row_index, run_id, decision, final_response, annotator, undoes, "
        "decided_at) VALUES (?, ?, ?, 'undo', NULL, ?, ?, ?)",
        [undone["dataset_id"], undone["row_index"], undone["run_id"], annotator, undone["decision_id"], _now()],
    )


def _decisions_sql(own: bool) -> str:
    """The decision per row a queue reads: the current one, or with ``own`` $decided_by's own
    (``ReviewQuery.decided_by``)."""
    return _OWN_DECISIONS if own else _CURRENT_DECISIONS


# The audit log as one table: audit_log's lines, each decision and undo outside a group, and each group (and its
# undo) as one line. `seq` orders lines with the same timestamp.
_AUDIT_SQL = """
    SELECT acted_at, actor, role, action, dataset_id, run_id, CAST(NULL AS BIGINT) AS row_index, detail_json,
           audit_id AS seq
    FROM audit_log
    UNION ALL
    SELECT decided_at, annotator, NULL, CASE WHEN decision = 'undo' THEN 'undo' ELSE 'decide' END, dataset_id, run_id,
           row_index, to_json({'decision': decision, 'reason': reason, 'undoes': undoes})::VARCHAR, decision_id
    FROM decisions WHERE group_id IS NULL
    UNION ALL
    SELECT created_at, actor, NULL, 'decide_query', dataset_id, run_id, NULL,
           to_json({'group_id': group_id, 'decision': decision, 'rows': n_rows, 'query': json(query_json)})::VARCHAR,
           group_id
    FROM decision_groups
    UNION ALL
    SELECT undone_at, undone_by, NULL, 'undo_group', dataset_id, run_id, NULL,
           to_json({'group_id': group_id, 'decision': decision, 'rows': n_rows})::VARCHAR, group_id
    FROM decision_groups WHERE undone_at IS NOT NULL
"""


# Effective decisions of $dataset_id: the latest non-undo decision per row that no undo points at.
def _apply_calibration(cursor: duckdb.DuckDBPyConnection, run_id: int, rows: str) -> None:
    """Recompute confidence = σ(a·raw_logit + b) and the correction confidence (``confidence.correction_confidence``
    in SQL, the proposal's confidence mapped the same way from proposal_raw_logit) of the run's rows matching the SQL
    condition ``rows``, with the run's latest calibration, if it has one."""
    latest = cursor.execute(
        "SELECT a, b FROM calibrations WHERE run_id = ? ORDER BY fitted_at DESC, rowid DESC LIMIT 1", [run_id]
    ).fetchall()
    if not latest:
        return
    a, b = latest[0]
    cursor.execute(
        f"""
        UPDATE scores SET
            confidence = 1 / (1 + exp(-greatest(least($a * raw_logit + $b, 50), -50))),
            correction_confidence = CASE WHEN judge_prob IS NULL THEN NULL
                ELSE least(1, 2 * judge_prob) * (1 - 1 / (1 + exp(-greatest(least($a * raw_logit + $b, 50), -50))))
                     * coalesce(1 / (1 + exp(-greatest(least($a * proposal_raw_logit + $b, 50), -50))), 1) END
        WHERE run_id = $run_id AND raw_logit IS NOT NULL AND {rows}
        """,
        {"a": a, "b": b, "run_id": run_id},
    )


_CURRENT_DECISIONS = """
    SELECT d.row_index, d.decision, d.final_response, d.run_id, d.annotator, d.decision_id, d.decided_at,
           d.reason, d.note
    FROM decisions d
    WHERE d.dataset_id = $dataset_id AND d.decision <> 'undo'
      AND NOT EXISTS (SELECT 1 FROM decisions u WHERE u.dataset_id = d.dataset_id AND u.undoes = d.decision_id)
    QUALIFY row_number() OVER (PARTITION BY d.row_index ORDER BY d.decision_id DESC) = 1
"""


def _curated_sql(with_scores: bool = False, with_record: bool = False) -> str:
    """Every row of $dataset_id with row_index in [$lo, $hi) as the export curates it (``export.curate``, the same
    rule in Python): its scoring ('scored', 'unscored', 'failed'), the current human decision (when
    $apply_decisions), the automatic action (when $apply_auto; a correction needs a proposal that is not blank),
    then action, final_response, source ('human', 'auto', 'none') and kept (see ``export.ExportPolicy``).
    ``with_record`` adds the stored record_json (read in the same scan of ``rows``)."""
    usable = f"coalesce(regexp_matches(proposed_response, '{_NOT_BLANK}'), FALSE)"
    action = clear.action_sql("confidence", f"CASE WHEN {usable} THEN correction_confidence END", "$gamma", "$eta")
    named = ("confidence", "correction_confidence", "proposed_response")
    extra = "".join(f", s.{f}" for f in SCORE_FIELDS if f not in named) if with_scores else ""
    extra += ", r.record_json" if with_record else ""
    return f"""
        WITH dec AS (
            SELECT d.row_index, d.decision, d.final_response, d.annotator, d.reason, d.note
            FROM decisions d
            WHERE $apply_decisions AND d.dataset_id = $dataset_id AND d.decision <> 'undo'
              AND d.row_index >= $lo AND d.row_index < $hi
              AND NOT EXISTS (SELECT 1 FROM decisions u WHERE u.dataset_id = d.dataset_id AND u.undoes = d.decision_id)
            QUALIFY row_number() OVER (PARTITION BY d.row_index ORDER BY d.decision_id DESC) = 1
        ),
        base AS (
            SELECT r.row_index, r.response AS original_response, s.confidence, s.correction_confidence,
                   s.proposed_response{extra},
                   CASE WHEN s.row_index IS NULL THEN 'unscored' WHEN s.error IS NOT NULL THEN 'failed'
                        ELSE 'scored' END AS scoring,
                   c.decision, c.final_response AS decided_response, c.annotator, c.reason, c.note
            FROM rows r
            LEFT JOIN scores s ON s.run_id = $run_id AND s.row_index = r.row_index
            LEFT JOIN dec c ON c.row_index = r.row_index
            WHERE r.dataset_id = $dataset_id AND r.row_index >= $lo AND r.row_index < $hi
        ),
        auto AS (
            SELECT *, CASE WHEN scoring = 'scored' AND $apply_auto THEN {action} END AS auto_action FROM base
        ),
        decided AS (
            SELECT *,
                   CASE decision WHEN 'reject' THEN 'keep' WHEN 'remove' THEN 'filter' WHEN 'accept' THEN 'correct'
                        WHEN 'edit' THEN 'correct' ELSE coalesce(auto_action, 'keep') END AS action,
                   CASE decision WHEN 'reject' THEN original_response WHEN 'remove' THEN original_response
                        WHEN 'accept' THEN coalesce(decided_response, proposed_response)
                        WHEN 'edit' THEN decided_response
                        ELSE CASE WHEN auto_action = 'correct' THEN proposed_response ELSE original_response END
                   END AS final_response,
                   CASE WHEN decision IS NOT NULL THEN 'human' WHEN auto_action IS NOT NULL THEN 'auto'
                        ELSE 'none' END AS source
            FROM auto
        )
        SELECT *, action <> 'filter' AND (decision IS NOT NULL OR NOT $only_reviewed)
                  AND NOT (decision IS NULL AND scoring <> 'scored' AND $apply_auto AND $unscored_drop) AS kept
        FROM decided
    """


# $decided_by's own effective decision per row of $dataset_id (the columns of _CURRENT_DECISIONS): with overlap, what
# one blind reviewer's queue reads instead of the row's current decision, which may be someone else's.
_OWN_DECISIONS = """
    SELECT d.row_index, d.decision, d.final_response, d.run_id, d.annotator, d.decision_id, d.decided_at,
           d.reason, d.note
    FROM decisions d
    WHERE d.dataset_id = $dataset_id AND d.annotator = $decided_by AND d.decision <> 'undo'
      AND NOT EXISTS (SELECT 1 FROM decisions u WHERE u.dataset_id = d.dataset_id AND u.undoes = d.decision_id)
    QUALIFY row_number() OVER (PARTITION BY d.row_index ORDER BY d.decision_id DESC) = 1
"""

# Each person's standing decision per row of $dataset_id: their latest non-undo decision on it that no undo points
# at (issue 9: with overlap several people decide one row; the latest of them is the row's current decision).
_STANDING_DECISIONS = """
    SELECT d.row_index, d.decision_id, d.decision, d.annotator, d.decided_at, d.reason, d.note, d.group_id
    FROM decisions d
    WHERE d.dataset_id = $dataset_id AND d.decision <> 'undo'
      AND NOT EXISTS (SELECT 1 FROM decisions u WHERE u.dataset_id = d.dataset_id AND u.undoes = d.decision_id)
    QUALIFY row_number() OVER (PARTITION BY d.row_index, d.annotator ORDER BY d.decision_id DESC) = 1
"""

# Rows of $dataset_id that $reviewer has decided, or that $overlap different people have (ReviewQuery.reviewer).
_REVIEWED_ENOUGH = f"""
    SELECT row_index FROM ({_STANDING_DECISIONS}) GROUP BY row_index
    HAVING count(*) >= $overlap OR bool_or(annotator = $reviewer)
"""

# The leases of $dataset_id that count at $now: not expired, and their holder has not decided the row (a decision
# ends its lease, so deciding needs no separate release).
_ACTIVE_LEASES = """
    SELECT l.row_index, l.actor_id, l.actor_name, l.claimed_at, l.expires_at
    FROM leases l
    WHERE l.dataset_id = $dataset_id AND l.expires_at > $now
      AND NOT EXISTS (
          SELECT 1 FROM decisions d
          WHERE d.dataset_id = l.dataset_id AND d.row_index = l.row_index AND d.annotator = l.actor_name
            AND d.decision <> 'undo'
            AND NOT EXISTS (SELECT 1 FROM decisions u WHERE u.dataset_id = d.dataset_id AND u.undoes = d.decision_id)
      )
"""


def _claim(
    cursor: duckdb.DuckDBPyConnection,
    dataset_id: int,
    row_index: int,
    actor: permissions.Actor,
    holder: str,
    now: dt.datetime,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Inside the caller's transaction: drop expired leases and ``holder``'s others, then lease the row to them if
    the overlap leaves room (``Store.claim`` says what it returns)."""
    name = actor.name.strip()
    params = {"dataset_id": dataset_id, "row_index": row_index, "holder": holder, "now": now}
    cursor.execute(
        "DELETE FROM leases WHERE dataset_id = $dataset_id "
        "AND (expires_at <= $now OR (actor_id = $holder AND row_index <> $row_index))",
        params,
    )
    others = [
        other
        for (other,) in cursor.execute(
            f"SELECT actor_name FROM ({_ACTIVE_LEASES}) WHERE row_index = $row_index AND actor_id <> $holder "
            "ORDER BY claimed_at",
            params,
        ).fetchall()
    ]
    n_decided, mine = cursor.execute(
        f"SELECT count(*), count(*) FILTER (WHERE annotator = $name) FROM ({_STANDING_DECISIONS}) "
        "WHERE row_index = $row_index",
        {"dataset_id": dataset_id, "row_index": row_index, "name": name},
    ).fetchall()[0]
    granted = bool(mine) or len(others) + int(n_decided) < settings["overlap"]
    expires = now + dt.timedelta(seconds=settings["lease_seconds"])
    if granted and not mine:  # a row opened again keeps when it was first claimed; its lease is extended
        cursor.execute(
            "INSERT INTO leases VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (dataset_id, row_index, actor_id) DO UPDATE SET expires_at = excluded.expires_at",
            [dataset_id, row_index, holder, name, now, expires],
        )
    else:
        cursor.execute(
            "DELETE FROM leases WHERE dataset_id = ? AND row_index = ? AND actor_id = ?",
            [dataset_id, row_index, holder],
        )
    return {"row_index": row_index, "granted": granted, "others": others, "expires_at": expires if granted else None}


# The same across all datasets (for list_datasets).
_CURRENT_DECISIONS_ALL = """
    SELECT d.dataset_id, d.row_index
    FROM decisions d
    WHERE d.decision <> 'undo'
      AND NOT EXISTS (SELECT 1 FROM decisions u WHERE u.dataset_id = d.dataset_id AND u.undoes = d.decision_id)
    QUALIFY row_number() OVER (PARTITION BY d.dataset_id, d.row_index ORDER BY d.decision_id DESC) = 1
"""


# -- JSON Lines read by DuckDB (import's fast path) ------------------------------------------------------------
# data.prepare/load_dataset hand a flat-schema JSON Lines file to DuckDB when every line is plain (see
# ``jsonl_key_groups``): DuckDB parses it, the checks below run as set-based SQL, and ``Store.add_dataset`` inserts
# the rows straight from the file. Anything these checks do not vouch for is read by data.py's Python reader, which
# names the file, line and column of the first problem; so the SQL only ever answers "plain or not".

# What DuckDB's JSON reader accepts and Python's json refuses or reads otherwise: NaN/Infinity (read as null with a
# notice), a comma before a closing bracket, numbers beyond a double (Python reads 1e400 as infinity). A match
# anywhere in the line, inside a string too, only sends the file to the Python reader. Also the control characters
# that DuckDB's to_json escapes in upper case (\u001F) where json.dumps writes lower case (a JSON line holds them
# only as escapes), so that every stored prompt_messages_json reads as json.dumps wrote it.
_JSONL_UNUSUAL = r"NaN|Infinity|,\s*[\]}]|[eE][-+]?[0-9]{3}|\\u00(?:0[bBeEfF]|1[a-fA-F])"
_JSONL_MAX_OBJECT = 1 << 24  # bytes per line (DuckDB buffers twice this per thread); a longer line errs, and the
# Python reader takes the file


@dataclasses.dataclass(frozen=True)
class JsonlRows:
    """A JSON Lines file in a flat schema whose rows DuckDB reads itself: the record is the line's JSON text, the
    prompt ``prompt`` then ``extra`` after a blank line (when not empty), the response ``response``. ``repeats``:
    0-based positions of rows that exactly repeat an earlier row (dropped, with the rows after them renumbered,
    when the dataset drops duplicates). ``size`` and ``mtime_ns`` are the file's when it was checked."""

    path: str
    prompt: str
    extra: str | None
    response: str
    size: int
    mtime_ns: int
    repeats: tuple[int, ...] = ()

    def unchanged(self) -> bool:
        """Whether the file is still the one that was checked (same size and modification time)."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return False
        return (stat.st_size, stat.st_mtime_ns) == (self.size, self.mtime_ns)


def _jsonl_source(path: str) -> str:
    """The file's non-blank lines as (pos, j): 0-based position and the line's JSON text (surrounding blanks
    trimmed). ``path`` is quoted as a literal: DuckDB takes no parameter for a table function's file name here."""
    return (
        f"SELECT ordinality - 1 AS pos, json AS j FROM read_json_objects({_quote(str(path))}, "
        f"format='newline_delimited', maximum_object_size={_JSONL_MAX_OBJECT}) WITH ORDINALITY"
    )


def _json_path(key: str) -> str:
    return "$." + json.dumps(key)


def _quote(text: str) -> str:
    """``text`` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


@dataclasses.dataclass
class JsonlCheck:
    """What one DuckDB scan of a JSON Lines file found (``jsonl_check``). ``groups``: for each list of keys (in
    order) its lines have, (keys, the first position holding it, how many lines, whether all those lines are plain:
    nothing of ``_JSONL_UNUSUAL`` and fewer than 100 brackets, so not nested 100 levels deep); a line that is not an
    object has no keys (None or []). ``bad``: how many rows fail the flat-schema checks for the columns checked;
    ``candidates``: positions of rows whose prompt, extra and response equal another row's (exact duplicates are
    among them)."""

    rows: JsonlRows
    groups: list[tuple[list[str], int, int, bool]]
    bad: int
    candidates: list[int]


def jsonl_check(rows: JsonlRows) -> JsonlCheck | None:
    """One DuckDB scan of ``rows.path``: its keys and, for the columns of ``rows``, every row checked as data.py's
    flat-schema parser checks it (prompt text not blank, extra text or null or missing, response text). None when
    DuckDB cannot read the file (a syntax error, bytes that are not UTF-8, half a surrogate pair): the Python reader
    then says where."""
    ok = (
        f"pt = 'VARCHAR' AND regexp_matches(p, '{_NOT_BLANK}') AND coalesce(et IN ('VARCHAR', 'NULL'), TRUE) "
        "AND rt = 'VARCHAR'"
    )
    plain = "NOT regexp_matches(j, $unusual) AND strlen(j) - strlen(replace(replace(j, '[', ''), '{', '')) < 100"
    try:
        with duckdb.connect() as conn:
            conn.execute(
                f"CREATE TEMP TABLE checked AS SELECT pos, json_keys(j) AS keys, {plain} AS plain, "
                f"coalesce({ok}, FALSE) AS ok, hash(p, e, r) AS h FROM ({_jsonl_columns(rows)})",
                {"unusual": _JSONL_UNUSUAL},
            )
            groups = conn.execute(
                "SELECT keys, min(pos), count(*), bool_and(plain) FROM checked GROUP BY ALL ORDER BY 2"
            ).fetchall()
            found = conn.execute(
                "SELECT pos, ok FROM (SELECT pos, ok, count(*) OVER (PARTITION BY h) AS n FROM checked) "
                "WHERE n > 1 OR NOT ok ORDER BY pos"
            ).fetchall()
    except duckdb.Error:
        return None
    bad = sum(1 for _, ok in found if not ok)
    return JsonlCheck(rows, [tuple(g) for g in groups], bad, [pos for pos, ok in found if ok])


def _jsonl_columns(rows: JsonlRows) -> str:
    """SQL for (pos, j, p, e, r, pt, et, rt): a row's prompt, extra and response text and their JSON types (one
    parse of the line: json_extract with a list of paths)."""
    keys = [rows.prompt, rows.response] + ([] if rows.extra is None else [rows.extra])
    paths = "[" + ", ".join(_quote(_json_path(key)) for key in keys) + "]"
    extra = ("NULL", "NULL") if rows.extra is None else ("v[3] ->> '$'", "json_type(v[3])")
    return (
        f"SELECT pos, j, v[1] ->> '$' AS p, {extra[0]} AS e, v[2] ->> '$' AS r, json_type(v[1]) AS pt, "
        f"{extra[1]} AS et, json_type(v[2]) AS rt "
        f"FROM (SELECT pos, j, json_extract(j, {paths}) AS v FROM ({_jsonl_source(rows.path)}))"
    )


def jsonl_lines(path: str | Path, positions: Sequence[int]) -> dict[int, str]:
    """The JSON text of the lines at ``positions`` (0-based among the non-blank lines)."""
    with duckdb.connect() as conn:
        found = conn.execute(
            f"SELECT pos, j FROM ({_jsonl_source(str(path))}) WHERE pos IN (SELECT unnest($positions))",
            {"positions": list(positions)},
        ).fetchall()
    return dict(found)


def _jsonl_rows_sql(rows: JsonlRows, drop: bool) -> str:
    """The rows as the staged Parquet file holds them (row_index, record_json, prompt, prompt_messages_json,
    response), read from the file; ``drop``: without the repeats, renumbered 0..n-1 in file order. The prompt
    messages are NULL: the prompt as one user turn, which readers rebuild (``_with_messages``; migration 15)."""
    prompt = "CASE WHEN coalesce(e, '') = '' THEN p ELSE p || chr(10) || chr(10) || e END"
    index = "pos"
    where = ""
    if drop and rows.repeats:
        index, where = "row_number() OVER () - 1", "WHERE pos NOT IN (SELECT unnest($repeats))"
    return f"""
        SELECT {index} AS row_index, j AS record_json, prompt, NULL AS prompt_messages_json, r AS response
        FROM (SELECT pos, j, {prompt} AS prompt, r FROM ({_jsonl_columns(rows)}) {where})
    """
