"""Pure helpers behind the review app's screens: wording, navigation through the queue, uploads, bulk accept,
query-wide actions.

Nothing here imports streamlit; the pages in ``pages/`` call these and draw the result. Functions that touch the
database take a ``store.Store`` and only call its public methods.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Collection, Sequence
from pathlib import Path

import pandas as pd

from clear_core import calibration
from clear_core.data import FORMATS, DataError
from clear_core.store import ReviewQuery

# What each stored signal means, for the review screen's signal table (docs/architecture.md "Score fields").
SIGNAL_HELP = {
    "confidence": "Combined confidence that the response is good (calibrated, 0-1).",
    "confidence_bsdetector": "Paper-faithful BSDetector confidence β·O + (1-β)·S.",
    "consistency": "Observed consistency O: agreement of k sampled answers with the response.",
    "self_reflection": "Self-reflection certainty S: the model judging the response correct.",
    "logprob_mean": "Mean token log-probability of the response given the prompt.",
    "logprob_min": "Log-probability of the least likely response token (one wrong number or word shows here).",
    "logprob_uncond_mean": "Mean token log-probability of the response without the prompt.",
    "pmi": "How much the prompt explains the response (log-prob with minus without prompt, per token; the "
    "confidence also weighs it by the square root of the response's length).",
    "eos_prob": "Probability that the response ends where it ends (low = truncated).",
    "stop_prob": "Probability that the response could stop here: end of turn, closing punctuation or a line break "
    "(low = cut off mid-sentence).",
    "final_number_logprob": "Log-probability of the response's final number (low = a doubtful answer or figure).",
    "repetition": "Share of the response's sentences and lines that repeat an earlier one (a generation loop).",
    "arithmetic_errors": "Equations like '96 + 125 = 222' in the response whose stated result is wrong "
    "(empty: none to check).",
    "unclosed_brackets": "Brackets ( [ { and code fences the response opens and never closes (code or a formula "
    "cut off mid-way).",
    "n_response_tokens": "Response length in tokens.",
    "judge_prob": "Probability that the model's proposal is better than the response.",
    "correction_confidence": "Confidence that the proposal should replace the response (compared with η).",
}

ACTION_LABELS = {"filter": "Filter", "correct": "Correct", "keep": "Keep"}
DECISION_LABELS = {
    "accept": "Accepted correction",
    "reject": "Kept original",
    "remove": "Removed",
    "edit": "Edited",
}
# Labels of store.REASONS, in the same order: why a row was removed or its proposal rejected (keys 1-6 on Review).
REASON_LABELS = {
    "wrong": "Wrong",
    "truncated": "Truncated",
    "off-topic": "Off-topic",
    "unsafe": "Unsafe",
    "format": "Format",
    "other": "Other",
}
STATUS_FILTERS = {
    "all": "All rows",
    "undecided": "Not reviewed",
    "decided": "Reviewed",
    "accept": "Accepted",
    "reject": "Kept original",
    "remove": "Removed",
    "edit": "Edited",
    "failed": "Scoring failed",  # rows the worker could not score; only this filter shows them
}
FAILED_LABEL = "Failed"  # the Action cell of a row that could not be scored (it has no automatic action)
# Queue orders offered to reviewers: label -> (order_by, ascending). The first is the default (CLEAR: least
# confident first, where bad rows concentrate).
SORTS = {
    "Least confident first": ("confidence", True),
    "Most confident first": ("confidence", False),
    "Best proposals first": ("correction_confidence", False),
    "Row number": ("row_index", True),
    "Shortest response first": ("response_length", True),
    "Latest decisions first": ("decided_at", False),
}
EXPORT_CHOICES = ("original", "jsonl", "csv", "parquet")
MIME_TYPES = {
    "jsonl": "application/jsonl",
    "json": "application/json",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
}
UPLOAD_TYPES = sorted({suffix.lstrip(".") for suffix in FORMATS})


def format_duration(seconds: float | None) -> str:
    """'42 s', '3 min 05 s', '2 h 10 min'; an em dash when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def progress_text(rows_done: int, rows_total: int, rows_per_s: float | None, eta_s: float | None) -> str:
    """One line under a progress bar: rows done of total, speed and time left."""
    parts = [f"{rows_done:,} of {rows_total:,} rows scored"]
    if rows_per_s:
        parts.append(f"{rows_per_s:.2f} rows/s")
    if eta_s is not None:
        parts.append(f"about {format_duration(eta_s)} left")
    return " · ".join(parts)


def is_starting(status: str, rows_done: int, rows_total: int, rows_per_s: float | None) -> bool:
    """A running run whose worker has not reported its rows yet (it is starting up): runs.progress then says
    "0 of 0 rows", which must not read as complete."""
    return status == "running" and rows_total <= rows_done and not rows_per_s


def run_bar(status: str, rows_done: int, rows_total: int, rows_per_s: float | None, eta_s: float | None):
    """(fraction, text) for a run's progress bar."""
    if is_starting(status, rows_done, rows_total, rows_per_s):
        return 0.0, "Starting the worker and loading the model…"
    fraction = rows_done / rows_total if rows_total else 1.0
    return min(max(fraction, 0.0), 1.0), progress_text(rows_done, rows_total, rows_per_s, eta_s)


def shorten(text: object, limit: int = 90) -> str:
    """Text on one line, cut to ``limit`` characters with an ellipsis (for table cells)."""
    if not isinstance(text, str):
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# The Review page's prompt box shows about this much of a long prompt: its end, where the question usually is.
PROMPT_TAIL_CHARS = 300
PROMPT_TAIL_LINES = 5


def prompt_tail(
    text: object, max_chars: int = PROMPT_TAIL_CHARS, max_lines: int = PROMPT_TAIL_LINES
) -> tuple[str, int]:
    """(the end of ``text`` that fits the prompt box, how many characters before it are left out); a short text
    comes back whole with 0. The cut starts a line or, within a long line, a word where one starts close by."""
    if not isinstance(text, str):
        return "", 0
    lines = text.splitlines(keepends=True)
    tail = "".join(lines[-max_lines:]) if len(lines) > max_lines else text
    if len(tail) > max_chars:
        tail = tail[-max_chars:]
        space = re.search(r"\s", tail[:40])
        if space:
            tail = tail[space.end() :]
    return tail, len(text) - len(tail)


def prompt_label(hidden: int, total: int) -> str:
    """The prompt box's label: 'Prompt', or what part of the prompt it shows when the start is left out."""
    if not hidden:
        return "Prompt"
    return f"Prompt: its last {total - hidden:,} of {total:,} characters ({hidden:,} earlier ones under Full prompt)"


def format_score(value: object, digits: int = 3) -> str:
    """A score for display; '—' when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, int | float):
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    return str(value)


# -- the review queue ---------------------------------------------------------------------------------------


def n_pages(total: int, page_size: int) -> int:
    """How many pages a queue of ``total`` rows needs (at least one)."""
    return max(1, math.ceil(total / page_size))


def step(page: int, position: int, rows_on_page: int, pages: int, delta: int) -> tuple[int, int]:
    """(page, position) after moving ``delta`` rows (+1 next, -1 previous) through a paginated queue.

    ``page`` is 1-based, ``position`` 0-based within the page. Stepping past the end of a page opens the next
    page at its first row; stepping before the start opens the previous page at its last row (position -1 means
    "the last row", since the caller does not know the previous page's length yet). The ends of the queue stop.
    """
    target = position + delta
    if 0 <= target < rows_on_page:
        return page, target
    if target >= rows_on_page:
        return (page + 1, 0) if page < pages else (page, max(rows_on_page - 1, 0))
    return (page - 1, -1) if page > 1 else (page, 0)


def stays_in_queue(status_filter: str, decision: str) -> bool:
    """Whether a row just given ``decision`` still matches the queue's status filter (else it drops out)."""
    return status_filter in ("all", "decided", "failed", decision)


def decision_label(decision: object, reason: object = None) -> str:
    """'Removed · Truncated': a decision's label with its reason when it has one; '' for no decision."""
    if not isinstance(decision, str):
        return ""
    label = DECISION_LABELS.get(decision, decision)
    return f"{label} · {REASON_LABELS.get(reason, reason)}" if isinstance(reason, str) else label


def queue_table(page: pd.DataFrame) -> pd.DataFrame:
    """The compact queue shown to reviewers: one line per row, text cut short."""
    reasons = page["reason"] if "reason" in page else [None] * len(page)
    return pd.DataFrame(
        {
            "Row": page["row_index"].astype(int),
            "Confidence": page["confidence"].astype(float),
            "Action": [ACTION_LABELS[a] if isinstance(a, str) else FAILED_LABEL for a in page["action"]],
            "Decision": [decision_label(d, r) for d, r in zip(page["decision"], reasons, strict=True)],
        }
    )


def bulk_accept_query(run_id: int, gamma: float, min_correction: float) -> ReviewQuery:
    """The rows bulk accept takes: no decision yet and a proposal with correction_confidence above
    ``min_correction``, exactly the rows the Auto-Correct rule would correct with η = ``min_correction``.

    ``store.review_count`` counts them and ``store.accept_proposals`` accepts those with a proposal.
    """
    return ReviewQuery(run_id, gamma, min_correction, action="correct", status="undecided", order_by="row_index")


# Query-wide actions (``store.decide_query``): what each records on every row the filters select, as offered.
GROUP_ACTIONS = {"remove": "Remove", "accept": "Accept proposals", "reject": "Keep original"}


def rows_text(n: int) -> str:
    """'1 row', '1,234 rows'."""
    return "1 row" if n == 1 else f"{n:,} rows"


def group_wording(decision: str, n: int) -> str:
    """What a query-wide ``decision`` does to ``n`` rows: the confirmation button's label."""
    if decision == "accept":
        return f"Accept the proposals of {rows_text(n)}"
    if decision == "reject":
        return f"Keep the original response of {rows_text(n)}"
    return f"Remove {rows_text(n)}"


def group_dry_run(decision: str, n: int, total: int) -> str:
    """The dry run shown before a query-wide action: how many of the ``total`` matching rows it would decide."""
    skipped = f" ({rows_text(total - n)} without a proposal skipped)" if n < total else ""
    return (
        f"{rows_text(total)} match the filters; {rows_text(n)} would be recorded as "
        f"“{GROUP_ACTIONS[decision]}”{skipped}, as one group that one undo reverts."
    )


def undo_group_label(group: dict) -> str:
    """The button that reverts the latest group (``store.last_group``)."""
    return f"Undo last group ({rows_text(int(group['n_rows']))})"


# -- import -------------------------------------------------------------------------------------------------


def save_upload(directory: str | Path, file_name: str, data: bytes) -> Path:
    """Store uploaded bytes as ``directory/<content hash>/<file name>`` and return the path.

    The file keeps its own name (the dataset is named after it) and the hash folder keeps two different
    uploads with the same name apart. Only the final path component of ``file_name`` is used. A folder that cannot
    be written (or a full disk) is a DataError naming the folder.
    """
    name = Path(file_name.replace("\\", "/")).name.strip() or "upload"
    name = re.sub(r"[^\w.\- ]", "_", name)
    folder = Path(directory) / hashlib.sha256(data).hexdigest()[:12]
    path = folder / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not path.exists():  # same name, same hash folder: the same bytes are already there
            tmp = folder / f".{name}.partial"
            tmp.write_bytes(data)
            tmp.replace(path)
    except OSError as exc:
        raise DataError(
            name,
            None,
            None,
            f"the uploaded copy cannot be saved in {directory} ({exc.strerror or exc})",
            "Make that folder writable or free space on its disk, then upload the file again.",
        ) from exc
    return path


def sample_files(*folders: str | Path) -> list[Path]:
    """Importable files (by extension) in the given folders, sorted by name; missing folders are skipped."""
    found = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_dir():
            found.extend(p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in FORMATS)
    return found


def preview_table(frame: pd.DataFrame) -> pd.DataFrame:
    """File records for display: text columns as they are, anything else (numbers mixed with text, nested lists
    and objects) as JSON text, so one odd value never breaks the table."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or str(out[column].dtype) in ("str", "string"):
            out[column] = [_cell(v) for v in out[column]]
    return out


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def problems_table(problems: Sequence) -> pd.DataFrame:
    """Validation problems (``data.Problem``) as a table: where, column, what is wrong and what to do.
    A JSON syntax error has a character position instead of a column name."""
    return pd.DataFrame(
        {
            "Where": [f"{p.unit} {p.line}" if p.line is not None else "file" for p in problems],
            "Column": [
                "" if p.column is None else (f"character {p.column}" if isinstance(p.column, int) else p.column)
                for p in problems
            ],
            "Problem": [p.message for p in problems],
            "What to do": [p.hint for p in problems],
        }
    )


def duplicates_note(summary: dict[str, int]) -> str | None:
    """'3 rows have near-duplicate responses (1 group); 2 rows have near-duplicate prompts (1 group).' from
    ``store.duplicate_summary``; None when there are none of either."""
    if not summary["response_rows"] and not summary["prompt_rows"]:
        return None

    def part(kind: str) -> str:
        rows, groups = summary[f"{kind}_rows"], summary[f"{kind}_groups"]
        have = "row has" if rows == 1 else "rows have"
        return f"{rows:,} {have} near-duplicate {kind}s ({groups:,} group{'s' * (groups != 1)})"

    return f"{part('response')}; {part('prompt')}."


# -- export -------------------------------------------------------------------------------------------------


def export_file_name(dataset_name: str, file_format: str) -> str:
    """'<dataset name>.curated.<ext>' with characters that file systems dislike replaced."""
    stem = re.sub(r"[^\w.\- ]", "_", dataset_name).strip() or "dataset"
    return f"{stem}.curated.{file_format}"


def changed_rows(curated: Sequence, limit: int = 200) -> tuple[pd.DataFrame, int]:
    """Rows that the export drops or rewrites (``export.CuratedRow``): the first ``limit`` as a preview table,
    and how many there are in all."""
    changed = [c for c in curated if not c.kept or c.final_response != c.original_response]
    shown = changed[:limit]
    frame = pd.DataFrame(
        {
            "Row": [c.row_index for c in shown],
            "Change": ["Removed" if not c.kept else "Response replaced" for c in shown],
            "Why": [_reason(c) for c in shown],
            "Annotator": [c.annotator or "" for c in shown],
            "Original response": [shorten(c.original_response, 80) for c in shown],
            "New response": [shorten(c.final_response, 80) if c.kept else "" for c in shown],
        },
        columns=["Row", "Change", "Why", "Annotator", "Original response", "New response"],
    )
    return frame, len(changed)


def _reason(row) -> str:
    if row.source == "human":
        return decision_label(row.decision, getattr(row, "reason", None))
    if row.scoring != "scored" and not row.kept:
        return "Scoring failed" if row.scoring == "failed" else "Not scored"
    if not row.kept and row.action != "filter":
        return "Not reviewed"
    return f"Automatic ({row.action})"


# -- many annotators at once (issue 9) ------------------------------------------------------------------------


def free_position(rows: Sequence[int], position: int, busy: Collection[int], delta: int = 1) -> int:
    """Where the queue goes instead of a row someone else holds: the first position from ``position`` on in the
    direction ``delta`` (+1 down, -1 up) whose row is not in ``busy``, else the nearest free one the other way,
    else ``position`` itself (every row of the page is open elsewhere). A negative ``position`` counts from the end."""
    if not rows:
        return position
    position = position % len(rows) if -len(rows) <= position < len(rows) else len(rows) - 1
    step = 1 if delta >= 0 else -1
    ahead = range(position, len(rows)) if step > 0 else range(position, -1, -1)
    behind = range(position - step, -1, -1) if step > 0 else range(position + 1, len(rows))
    return next((i for i in (*ahead, *behind) if rows[i] not in busy), position)


def ago(seconds: float) -> str:
    """'just now', '2 min ago', '3 h ago', '2 days ago': how long ago something happened."""
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    days = int(seconds // 86400)
    return f"{days} day{'s' * (days != 1)} ago"


def decided_before(history: pd.DataFrame, me: str, now: pd.Timestamp) -> list[str]:
    """'Decided before you by ann (Removed), 2 min ago', one line per other person whose standing decision on the
    row came before ``me``'s latest (``history``: ``Store.row_decisions``); none when ``me`` has not decided it.
    Every decision stays in the log; the latest one counts for the export."""
    mine = history[history["annotator"] == me]
    if mine.empty:
        return []
    earlier = history[(history["annotator"] != me) & (history["decision_id"] < mine["decision_id"].max())]
    return [
        f"Decided before you by {line.annotator} ({decision_label(line.decision, line.reason)}), "
        f"{ago((now - pd.Timestamp(line.decided_at)).total_seconds())}"
        for line in earlier.itertuples()
    ]


# -- calibration and the review budget (the Thresholds page) ------------------------------------------------

CALIBRATION_SOURCES = {
    "shipped": "the shipped map",
    "synthetic": "the fit on corrupted copies",
    "reviewers": "the earlier fit on reviewers' decisions",
}


def percent(share: float) -> str:
    """A share as a percentage that keeps small ones visible: '0%', '<0.1%', '3.4%', '23%'."""
    if share <= 0:
        return "0%"
    if share < 0.001:
        return "<0.1%"
    return f"{share:.1%}" if share < 0.0995 else f"{share:.0%}"


def budget_reading(reviewed: float, total: int, bad_share_left: float, gamma: float | None = None) -> str:
    """The review budget in one line: 'Reviewing the lowest 12% (1,234 rows) leaves about 3.4% bad rows in the
    rest.' ``reviewed``: rows reviewed, least confident first, of ``total``; with ``gamma``, they are the rows
    below it: 'Reviewing the 1,234 rows below γ = 0.50 (the lowest 12%) leaves ...'."""
    n = round(reviewed)
    bad = f"about {percent(bad_share_left)} bad rows" if bad_share_left >= 0.001 else "almost no bad rows"
    if total <= 0:
        return "No scored rows yet."
    if n <= 0:
        below = f"No row is below γ = {gamma:.2f}. " if gamma is not None else ""
        return f"{below}Reviewing no rows leaves {bad} among all {rows_text(total)}."
    if n >= total:
        below = f"below γ = {gamma:.2f} " if gamma is not None else ""
        return f"Reviewing all {rows_text(total)} {below}leaves no row unreviewed."
    if gamma is not None:
        lowest = f"the lowest {percent(n / total)}"
        return f"Reviewing the {rows_text(n)} below γ = {gamma:.2f} ({lowest}) leaves {bad} in the rest."
    return f"Reviewing the lowest {percent(n / total)} ({rows_text(n)}) leaves {bad} in the rest."


def _decisions_text(n_good: int, n_bad: int) -> str:
    return f"{n_good:,} kept as they were, {n_bad:,} removed or corrected"


def calibration_basis(fitted, saved: bool) -> str:
    """What the confidence is calibrated on (``fitted``: calibration.Calibration; ``saved``: the run saved one, so
    a shipped map there is a synthetic fit that fell back, and its note says why)."""
    if fitted.source == "synthetic":
        return (
            f"Calibrated on {fitted.n_bad:,} corrupted copies of this dataset's own rows against {fitted.n_good:,} "
            "of its rows, so confidence reads as P(good) on this dataset."
        )
    if fitted.source == "reviewers":
        return (
            f"Calibrated on reviewers' {fitted.n_good + fitted.n_bad:,} decisions "
            f"({_decisions_text(fitted.n_good, fitted.n_bad)}), with the earlier map as a prior."
        )
    if saved and fitted.note:
        return (
            "The shipped map, fitted on the project's dev datasets: calibrating on this dataset failed "
            f"({fitted.note})."
        )
    return "The shipped map, fitted on the project's dev datasets: on this dataset confidence may not read as P(good)."


def bad_rows_estimate(share: float, total: int, source: str) -> str:
    """The estimated share and number of bad rows among ``total`` scored ones, hedged for the shipped map."""
    count = f"about {round(share * total):,} of the {rows_text(total)} scored"
    if source == "shipped":
        return f"If it does, {percent(share)} of the rows are bad: {count}."
    return f"Estimated share of bad rows: {percent(share)}, {count}."


def reliability_reading(n_good: int, n_bad: int, gap: float, source: str, min_each: int) -> str:
    """The reliability chart in words: how far the calibrated confidence is from the share of reviewed rows kept
    (``gap``: the count-weighted mean difference, ECE), or that there are too few decisions to say."""
    n = n_good + n_bad
    if min(n_good, n_bad) < min_each:
        return (
            f"{rows_text(n)} reviewed so far ({_decisions_text(n_good, n_bad)}): too few to judge the calibration; "
            f"it takes {min_each} of each."
        )
    verdict = "close" if gap <= 0.05 else "somewhat off" if gap <= 0.15 else "off"
    points = round(gap * 100)
    points = "under 1 point" if points < 1 else "1 point" if points == 1 else f"{points} points"
    text = (
        f"On the {rows_text(n)} reviewed, confidence and the share kept differ by {points} on average "
        f"(ECE {gap:.2f}): {verdict}."
    )
    if source == "reviewers":
        text += " The map was fitted on these decisions, so this is its best case."
    return text


def refit_outcome(before, after) -> tuple[bool, str]:
    """(refitted?, what to tell the lead) after ``runs.refit_from_reviewers`` turned ``before`` into ``after``. A
    refit that kept the earlier map's slope (``calibration.fit_reviewed``: no decisions among the most confident
    rows yet) says so, and what would let the slope follow the decisions too."""
    if after.source == "reviewers":
        text = (
            f"Refitted on reviewers' {after.n_good + after.n_bad:,} decisions "
            f"({_decisions_text(after.n_good, after.n_bad)}), replacing {CALIBRATION_SOURCES[before.source]}: "
            "every row's confidence, the counts and the charts use it now."
        )
        if after.a == before.a:
            confident = percent(1 - calibration.CONFIDENT_QUANTILE)
            text += (
                " The decisions moved the map but kept its slope: they say where confidence should cross one half; "
                f"once {calibration.MIN_REVIEWED_EACH} of the most confident {confident} of rows are decided, they "
                "will also set how sure the confident rows should be."
            )
        return True, text
    return False, f"Not refitted: {after.note}. Confidence keeps {CALIBRATION_SOURCES[before.source]}."
