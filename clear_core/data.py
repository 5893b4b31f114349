"""Import of instruction-tuning files: reading CSV/JSONL/JSON/Parquet (and Hugging Face ``datasets`` folders),
recognising the schema, validating rows.

Every problem names the file, the line (or row) and the column, and says what to do about it. ``load_dataset``
stops at the first problem and returns nothing partial; ``validate`` lists them all for the preview screen and
``inspect`` adds what imports but deserves a look (duplicates, notices).

Self-instruct files hold several instances per task; each instance becomes its own ``Row`` whose ``record`` is
the task with ``instances`` narrowed to that one instance, plus ``_source_index`` (0-based task position) and
``_instance_index`` (position inside the task) so that export can regroup them. In CSV files nested columns
(``messages``, ``conversations``, ``instances``) hold JSON text; it is decoded into the record.

No import changes data quietly. What a file holds is either imported as it is, imported and reported, or refused:

- An unclosed quote in a CSV file is refused at the line where the quote opened (CSV readers would otherwise read
  every following line into that one value); so is any other broken quoting.
- A JSON object that names a key twice is refused (JSON readers keep the last value and drop the other silently).
- Text holding half of a UTF-16 surrogate pair (an escape such as ``\\ud800`` with no partner) is refused: it is
  not a character and cannot be stored. JSON nested more than ``MAX_NESTING`` levels deep is refused.
- Binary (bytes) values in Parquet files and ``datasets`` folders are imported as text when they are UTF-8 text,
  with a notice naming the column, and refused (row and column named) when they are not.
- NaN and Infinity (not JSON, but written by Python's json) and NaN/infinite Parquet floats are read as null, with
  a notice giving their number and the first line (or the column).
- Exact duplicate rows (the same record, every column equal) are imported and reported (``Dataset.duplicates``);
  ``drop_duplicates=True`` drops every repeat and keeps the first. ``row_index`` stays 0..n-1 either way.
- In chats, speaker names are matched case-insensitively (``CHAT_ROLES``); message content given as a list of
  parts (OpenAI) is read as its text parts joined by a line break, and export writes a changed response back as
  one text part. Parts that are not text (images, audio, files) are refused: the model cannot read them.
- A ``datasets`` folder (``Dataset.save_to_disk``) has no file format to write back; export writes Parquet
  (``EXPORT_FORMAT_OF``) unless another format is asked for.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import hashlib
import json
import math
import os
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clear_core import store
from clear_core.errors import ClearError

FORMATS = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
DATASETS_FORMAT = "datasets"  # a folder written by Hugging Face datasets' ``save_to_disk`` (Arrow files)
# Input formats with no writer of their own, and what export writes for them instead ("original" format).
EXPORT_FORMAT_OF = {DATASETS_FORMAT: "parquet"}
# Flat schemas: (prompt column, optional column appended to the prompt after a blank line, response column).
FLAT_SCHEMAS = {
    "alpaca": ("instruction", "input", "output"),
    "prompt_response": ("prompt", None, "response"),
    "prompt_completion": ("prompt", None, "completion"),
    "dolly": ("instruction", "context", "response"),
    "instruction_response": ("instruction", "input", "response"),  # GPTeacher
    "question_answer": ("question", "context", "answer"),
}
SCHEMAS = (*FLAT_SCHEMAS, "messages", "sharegpt", "self_instruct", "mapped")
# Where each flat schema keeps its response (export writes the curated text back there).
RESPONSE_COLUMNS = {schema: columns[2] for schema, columns in FLAT_SCHEMAS.items()}
# Chat schemas: (column holding the turns, key of the speaker, key of the text).
CHAT_KEYS = {"messages": ("messages", "role", "content"), "sharegpt": ("conversations", "from", "value")}
# Speaker names (matched case-insensitively, in both chat schemas) mapped to chat roles; other speakers keep
# their own name as the role (tool, function, observation).
CHAT_ROLES = {
    **dict.fromkeys(("user", "human"), "user"),
    **dict.fromkeys(("assistant", "gpt", "chatgpt", "model", "bing", "bard", "bot", "ai"), "assistant"),
    "system": "system",
}
# Message content as a list of parts (OpenAI): the part types that hold text.
TEXT_PART_TYPES = ("text", "input_text", "output_text")
MAX_PROBLEMS = 100
# JSON deeper than this is refused: no real dataset nests so deep, and Python's parser stops near 1000 levels.
MAX_NESTING = 100
DUPLICATES_SHOWN = 5  # line numbers listed in a duplicates summary

_KNOWN_SCHEMAS_HINT = (
    "Recognised columns: instruction/input/output (Alpaca), prompt/response, prompt/completion, "
    "instruction/input/response (GPTeacher), instruction/context/response (Dolly), question/answer, "
    "messages (chat), conversations (ShareGPT), instruction/instances (self-instruct)."
)
_TEXT_HINT = "Fix the value or map another column."
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_CSV_QUOTED = re.compile(r'"[^"]*(?:""[^"]*)*"')
_CSV_UNQUOTED = re.compile(r"[^,\r\n]*")


# -- errors -------------------------------------------------------------------------------------------------


def _describe(path: str, line: int | None, column: str | int | None, message: str, hint: str, unit: str) -> str:
    """One readable line: ``data.jsonl: line 7, column "output": value is a number, expected text. Fix ...``."""
    where = []
    if line is not None:
        where.append(f"{unit} {line}")
    if column is not None:
        where.append(f'column "{column}"' if isinstance(column, str) else f"column {column}")
    head = Path(path).name + (": " + ", ".join(where) if where else "")
    return f"{head}: {message}." + (f" {hint}" if hint else "")


@dataclass(frozen=True)
class Problem:
    """One validation problem. ``line`` is a file line (CSV, JSONL, syntax errors) or a 1-based row number
    (``unit == 'row'``: JSON arrays, Parquet); ``column`` is a column name, or a character column for JSON syntax."""

    path: str
    line: int | None
    column: str | int | None
    message: str
    hint: str = ""
    unit: str = "line"

    def __str__(self) -> str:
        return _describe(self.path, self.line, self.column, self.message, self.hint, self.unit)

    def error(self) -> DataError:
        return DataError(self.path, self.line, self.column, self.message, self.hint, self.unit)


class DataError(ClearError):
    """A file that cannot be imported; ``str()`` says where (file, line or row, column) and what to do."""

    def __init__(
        self,
        path: str | Path,
        line: int | None,
        column: str | int | None,
        message: str,
        hint: str = "",
        unit: str = "line",
    ):
        self.path, self.line, self.column = str(path), line, column
        self.message, self.hint, self.unit = message, hint, unit
        super().__init__(_describe(self.path, line, column, message, hint, unit))

    @property
    def problem(self) -> Problem:
        return Problem(self.path, self.line, self.column, self.message, self.hint, self.unit)


class _RowError(Exception):
    """Raised by the row parsers; the caller adds the file and the location."""

    def __init__(self, column: str | None, message: str, hint: str = ""):
        super().__init__(message)
        self.column, self.message, self.hint = column, message, hint


# -- shapes -------------------------------------------------------------------------------------------------


@dataclass
class ColumnMapping:
    """Explicit columns for a file in no recognised schema: prompt column(s) joined with a blank line, an
    optional input column appended after them, an optional system column, and the response column."""

    prompt: str | list[str]
    response: str
    input: str | None = None
    system: str | None = None

    @property
    def prompt_columns(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    @property
    def columns(self) -> list[str]:
        extra = [c for c in (self.input, self.system) if c is not None]
        return [*self.prompt_columns, *extra, self.response]


@dataclass
class Row:
    """One (prompt, response) pair; ``record`` is the original row verbatim so export can write it back."""

    row_index: int
    record: dict[str, Any]
    prompt_messages: list[dict[str, str]]
    prompt: str
    response: str


@dataclass
class Dataset:
    """A validated file: its rows plus what export needs to write the input's own schema and format back."""

    name: str
    source_path: str
    file_format: str
    schema: str
    mapping: ColumnMapping | None
    rows: list[Row]
    content_hash: str
    columns: list[str]
    duplicates: list[Duplicate] = field(default_factory=list)  # found (and kept, unless dropped)
    duplicates_dropped: bool = False
    notices: list[str] = field(default_factory=list)  # what the import did that the user should know
    rows_file: str | None = None  # the rows staged as Parquet (load_dataset's staging_dir) instead of in ``rows``
    staged_rows: int = 0  # how many rows rows_file (or jsonl_rows) holds, duplicates included
    # a plain JSON Lines file that Store.add_dataset reads with DuckDB itself, instead of rows or rows_file
    jsonl_rows: store.JsonlRows | None = None

    @property
    def n_rows(self) -> int:
        """How many rows the dataset stores (duplicates left out when they are dropped)."""
        if self.rows_file is None and self.jsonl_rows is None:
            return len(self.rows)
        return self.staged_rows - (len(self.duplicates) if self.duplicates_dropped else 0)

    @property
    def staged(self) -> bool:
        """Whether the rows wait outside memory (a staged file, or a JSON Lines file unchanged since its check) for
        ``Store.add_dataset``."""
        if self.jsonl_rows is not None:
            return self.jsonl_rows.unchanged()
        return self.rows_file is not None and Path(self.rows_file).exists()


@dataclass(frozen=True)
class Duplicate:
    """A row that exactly repeats an earlier row (every column equal): where it is and where it first appeared.
    ``location`` is a file line or a 1-based row number, as in Problem (``unit``)."""

    location: int | None
    first_location: int | None
    unit: str = "line"


@dataclass
class Inspection:
    """What importing a file would do, for the preview screen: its problems (nothing imports while there is one),
    its exact duplicate rows, and notices about values read in another form."""

    problems: list[Problem]
    duplicates: list[Duplicate] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


def describe_duplicates(duplicates: list[Duplicate]) -> str:
    """'3 exact duplicate rows (lines 5, 9, 12)', with the first DUPLICATES_SHOWN locations; '' when none."""
    if not duplicates:
        return ""
    unit = duplicates[0].unit
    shown = sorted(dict.fromkeys(d.location for d in duplicates if d.location is not None))
    where = ", ".join(map(str, shown[:DUPLICATES_SHOWN]))
    more = f" and {len(shown) - DUPLICATES_SHOWN} more" if len(shown) > DUPLICATES_SHOWN else ""
    plural = "s" * (len(duplicates) != 1)
    return f"{len(duplicates)} exact duplicate row{plural} ({unit}{'s' * (len(shown) != 1)} {where}{more})"


@dataclass
class _Item:
    """One record read from a file, or the problem that replaced it, at its line (or row) number."""

    location: int | None
    record: dict[str, Any] | None = None
    problem: Problem | None = None


# -- reading ------------------------------------------------------------------------------------------------


def detect_format(path: str | Path) -> str:
    """'csv', 'jsonl', 'json' or 'parquet' from the file extension; 'datasets' for a folder."""
    if Path(path).is_dir():
        return DATASETS_FORMAT
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise DataError(
            path,
            None,
            None,
            f"unsupported file type {Path(path).suffix or '(no extension)'!r}",
            "Supported formats: .csv, .jsonl/.ndjson, .json (an array of objects), .parquet/.pq, and folders "
            "written by Hugging Face datasets' save_to_disk.",
        )
    return fmt


def _kind(value: Any) -> str:
    """How a value reads in a message: 'a number', 'a list', 'empty (null)'."""
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _decode(path: str, data: bytes) -> str:
    """UTF-8 text (a BOM is accepted); any other encoding is a DataError naming the byte offset and line."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(path, 1, None, "the file is UTF-16 encoded", "Save it as UTF-8 and import it again.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            path,
            line,
            None,
            f"the bytes at offset {exc.start} are not valid UTF-8",
            "Save the file as UTF-8 (in Excel: 'CSV UTF-8') and import it again.",
        ) from exc


class _NotText(Exception):
    """A binary value that is not UTF-8 text."""


def _jsonable(value: Any) -> Any:
    """Arrow values as plain JSON values: NaN -> None, dates -> ISO text, decimals -> text, UTF-8 bytes -> text
    (other bytes raise _NotText)."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _NotText from exc
    return value


def _csv_open_quote(text: str, start: int) -> tuple[int, int] | None:
    """(offset, field number) of a quote opened at the start of a field, at or after ``start``, that is never
    closed; None when every quoted field there closes. Only called after the CSV reader hit the end of the file
    inside quotes, so ``start`` is the start of the unfinished row."""
    pos, field_number = start, 0
    while pos < len(text):
        if text[pos] == '"':
            match = _CSV_QUOTED.match(text, pos)
            if match is None:
                return pos, field_number
            pos = match.end()
        pos = _CSV_UNQUOTED.match(text, pos).end()
        if text.startswith(",", pos):
            field_number += 1
        elif pos < len(text):
            field_number = 0  # a line break: the next row
        pos += 2 if text.startswith("\r\n", pos) else 1
    return None


def _line_start(text: str, line: int) -> int:
    """Offset of the first character of 1-based file ``line``."""
    offset = 0
    for _, match in zip(range(line - 1), _LINE_BREAK.finditer(text), strict=False):
        offset = match.end()
    return offset


def _csv_quote_problem(path: str, text: str, header: list[str], after_line: int, exc: csv.Error) -> Problem:
    """The problem for a CSV quoting error in the row that starts after file line ``after_line``."""
    start = _line_start(text, after_line + 1)
    opened = _csv_open_quote(text, start) if "end of data" in str(exc) else None
    if opened is None:
        message = f"a quoted value in the row that starts here is followed by more text before the next comma ({exc})"
        hint = 'End a quoted value with a quote right before the comma or line break; write a quote inside it as "".'
        return Problem(path, after_line + 1, None, message, hint)
    offset, field_number = opened
    line = len(_LINE_BREAK.findall(text, 0, offset)) + 1
    # the column's name; in the header itself (or past its end) the character position, as for JSON syntax errors
    column = header[field_number] if field_number < len(header) else offset - _line_start(text, line) + 1
    message = "a quote opens a value here and is never closed, so every following line would be read into it"
    hint = 'Close the quote, or remove it; write a quote inside a quoted value as two quotes ("").'
    return Problem(path, line, column, message, hint)


def _text_blocks(path: str, digest: Any, block_size: int = 1 << 22) -> Iterator[str]:
    """The file's text, a block at a time, as ``_decode`` reads it (UTF-8, a BOM accepted, UTF-16 and bytes that
    are not UTF-8 refused at their offset and line); ``digest`` is updated with every byte."""
    try:
        file = open(path, "rb")  # noqa: SIM115 (closed below; the generator owns it)
    except OSError as exc:
        raise DataError(path, None, None, f"cannot read the file ({exc.strerror})", "Check the path.") from exc
    with file:
        carry, offset, lines, first = b"", 0, 0, True
        while True:
            data = file.read(block_size)
            digest.update(data)
            buffer = carry + data
            if first:
                first = False
                if buffer.startswith((b"\xff\xfe", b"\xfe\xff")):
                    raise DataError(
                        path, 1, None, "the file is UTF-16 encoded", "Save it as UTF-8 and import it again."
                    )
                buffer = buffer.removeprefix(b"\xef\xbb\xbf")
            cut = len(buffer) if not data else _complete_utf8(buffer)
            try:
                text = buffer[:cut].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    path,
                    lines + buffer[: exc.start].count(b"\n") + 1,
                    None,
                    f"the bytes at offset {offset + exc.start} are not valid UTF-8",
                    "Save the file as UTF-8 (in Excel: 'CSV UTF-8') and import it again.",
                ) from exc
            lines += buffer.count(b"\n", 0, cut)
            offset += cut
            carry = buffer[cut:]
            if text:
                yield text
            if not data:
                return


def _complete_utf8(data: bytes) -> int:
    """Length of ``data`` without a UTF-8 character cut at its end (the next block holds the rest of it)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return len(data)
        if byte >= 0xC0:  # a lead byte: is its sequence complete?
            needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) if back >= needed else len(data) - back
    return len(data)


_LINE_WITH_END = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)")


def _text_lines(blocks: Iterator[str]) -> Iterator[str]:
    """Lines with their line break, split on \\r\\n, \\r and \\n as ``io.StringIO(text, newline="")`` splits them,
    across blocks (a \\r at the end of a block waits for a \\n that may start the next)."""
    pending = ""
    for block in blocks:
        text = pending + block
        end = 0
        for match in _LINE_WITH_END.finditer(text):
            if match.end() == len(text) and text.endswith("\r"):
                break
            yield match.group()
            end = match.end()
        pending = text[end:]
    if pending:  # the last line: without a line break, or ending in \r
        yield pending


def _csv_chunks(path: str, digest: Any, chunk_rows: int) -> Iterator[list[_Item]]:
    """Records of a CSV file keyed by the header, each at the file line where it starts (header = line 1), read
    as a stream; ``chunk_rows`` at a time."""
    csv.field_size_limit(2**31 - 1)  # long responses exceed the 128 KiB default
    # strict: an unclosed quote is an error at the end of the file instead of one value holding the rest of it
    reader = csv.reader(_text_lines(_text_blocks(path, digest)), strict=True)
    items: list[_Item] = []
    header: list[str] = []
    done = 0  # the file line where the last complete row ends
    try:
        header = next(reader, None)
        if header is None:
            return
        dupes = sorted({c for c in header if header.count(c) > 1})
        if dupes:
            yield [_Item(1, problem=Problem(path, 1, dupes[0], "the header names this column twice", "Rename one."))]
            return
        done = reader.line_num
        for fields in reader:
            if not fields:  # blank line
                done = reader.line_num
                continue
            start = reader.line_num
            if any("\n" in f or "\r" in f for f in fields):
                start -= sum(len(_LINE_BREAK.findall(f)) for f in fields)
            done = reader.line_num
            if len(fields) != len(header):
                message = f"the row has {len(fields)} values but the header has {len(header)} columns"
                hint = "Quote values that contain commas or line breaks, or fix the number of values."
                items.append(_Item(start, problem=Problem(path, start, None, message, hint)))
            else:
                items.append(_Item(start, dict(zip(header, fields, strict=True))))
            if len(items) >= chunk_rows:
                yield items
                items = []
    except csv.Error as exc:
        text = _decode(path, _read_file(path))  # only to say where the broken quoting starts
        problem = _csv_quote_problem(path, text, header or [], done, exc)
        items.append(_Item(problem.line, problem=problem))
    yield items


class _DuplicateKeys(dict):
    """A JSON object that names a key more than once (``key``); it holds the last value, as json does, until the
    check that refuses it (see ``_value_problem``)."""

    key: str = ""


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """object_pairs_hook: a plain dict, or a _DuplicateKeys when a key repeats."""
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        record = _DuplicateKeys(record)
        record.key = next(k for k, _ in pairs if k in seen or seen.add(k))
    return record


def _json_loads(text: str, constants: list[str] | None = None) -> Any:
    """json.loads that keeps duplicate keys visible and reads NaN/Infinity as null (JSON has no NaN); the names of
    the constants it met are appended to ``constants``, so that the change can be reported."""

    def constant(name: str) -> None:
        if constants is not None:
            constants.append(name)

    return json.loads(text, parse_constant=constant, object_pairs_hook=_json_object)


def _constants_notice(path: str, count: int, where: str) -> str:
    values = f"{count} NaN or Infinity values ({where}), which JSON does not allow, were"
    if count == 1:
        values = f"1 NaN or Infinity value ({where}), which JSON does not allow, was"
    return f"{Path(path).name}: {values} read as null (empty); export writes null."


def _too_deep(text: str, limit: int) -> int:
    """Offset of the bracket where JSON ``text`` first nests more than ``limit`` levels (0 if it never does)."""
    depth = 0
    for match in _JSON_TOKEN.finditer(text):
        bracket = match.group()
        if bracket in "[{":
            depth += 1
            if depth > limit:
                return match.start()
        elif bracket in "]}":
            depth -= 1
    return 0


_NESTING_MESSAGE = f"the JSON nests more than {MAX_NESTING} levels deep here"
_NESTING_HINT = "Flatten the value; instruction-tuning rows need text, not deeply nested structures."


def _jsonl_chunks(path: str, digest: Any, notices: list[str], chunk_rows: int) -> Iterator[list[_Item]]:
    """One record per non-blank line, ``chunk_rows`` at a time, read as a stream; a bad line becomes a problem and
    reading goes on."""
    items: list[_Item] = []
    constants: list[str] = []
    first_constant = None
    number = 0
    pending = ""
    blocks = _text_blocks(path, digest)
    while True:
        block = next(blocks, None)
        text = pending + (block or "")
        hold = ""
        if block is not None and text.endswith("\r"):  # its \n may start the next block
            text, hold = text[:-1], "\r"
        # JSON strings cannot hold a raw line break, so any of \r\n, \r, \n ends a line; str.splitlines would
        # also split on U+2028 and friends inside JSON strings
        lines = _LINE_BREAK.split(text)
        pending = "" if block is None else lines.pop() + hold
        for line in lines:
            number += 1
            if not line.strip():
                continue
            try:
                seen = len(constants)
                value = _json_loads(line, constants)
                first_constant = first_constant or (number if len(constants) > seen else None)
            except json.JSONDecodeError as exc:
                hint = "Each line must be one complete JSON object; check for a missing quote, comma or bracket."
                if number == 1 and line.strip() in ("[", "{"):
                    hint = "This looks like one JSON document, not JSON Lines; rename the file to .json."
                problem = Problem(path, number, exc.colno, f"invalid JSON ({exc.msg})", hint)
                items.append(_Item(number, problem=problem))
                continue
            except RecursionError:
                column = _too_deep(line, MAX_NESTING) + 1
                items.append(_Item(number, problem=Problem(path, number, column, _NESTING_MESSAGE, _NESTING_HINT)))
                continue
            if not isinstance(value, dict):
                hint = 'Each line must be a JSON object such as {"prompt": "...", "response": "..."}.'
                message = f"the line is {_kind(value)}, expected a JSON object"
                items.append(_Item(number, problem=Problem(path, number, None, message, hint)))
                continue
            items.append(_Item(number, value))
        if len(items) >= chunk_rows or block is None:
            yield items
            items = []
        if block is None:
            break
    if constants:
        notices.append(_constants_notice(path, len(constants), f"the first on line {first_constant}"))


def _json_items(path: str, text: str, notices: list[str]) -> list[_Item]:
    """Records of a JSON array of objects, numbered as rows from 1."""
    constants: list[str] = []
    try:
        value = _json_loads(text, constants)
    except json.JSONDecodeError as exc:
        hint = "Check for a missing quote, comma or bracket."
        if exc.msg == "Extra data":
            hint = "The file holds several JSON values; if it has one object per line, rename it to .jsonl."
        return [_Item(exc.lineno, problem=Problem(path, exc.lineno, exc.colno, f"invalid JSON ({exc.msg})", hint))]
    except RecursionError:
        offset = _too_deep(text, MAX_NESTING + 1)  # + 1: the array around the rows
        line = len(_LINE_BREAK.findall(text, 0, offset)) + 1
        column = offset - _line_start(text, line) + 1
        return [_Item(line, problem=Problem(path, line, column, _NESTING_MESSAGE, _NESTING_HINT))]
    if constants:
        notices.append(_constants_notice(path, len(constants), ", ".join(sorted(set(constants)))))
    if not isinstance(value, list):
        message = f"the file holds {_kind(value)}, expected an array of rows"
        return [_Item(1, problem=Problem(path, 1, None, message, "Put the rows in [ ... ], or use JSON Lines."))]
    items = []
    for number, record in enumerate(value, 1):
        if isinstance(record, dict):
            items.append(_Item(number, record))
        else:
            message = f"the row is {_kind(record)}, expected a JSON object"
            items.append(
                _Item(number, problem=Problem(path, number, None, message, "Make every row an object.", "row"))
            )
    return items


def _table_chunks(path: str, batches: Iterator[pa.RecordBatch], notices: list[str]) -> Iterator[list[_Item]]:
    """Records of Arrow record batches, numbered as rows from 1, with values made JSON-serialisable. A binary
    column is read as UTF-8 text with a notice; a value that is not UTF-8 text is a problem at its row and column.
    NaN and infinite floats are read as null, with a notice per column."""
    number, binary, nan_counts = 0, None, {}
    for batch in batches:
        if binary is None:
            names = batch.schema.names
            dupes = sorted({c for c in names if names.count(c) > 1})
            if dupes:
                message, hint = "the file has two columns of this name", "Rename one."
                yield [_Item(None, problem=Problem(path, None, dupes[0], message, hint))]
                return
            binary = [f.name for f in batch.schema if "binary" in str(f.type)]
            nan_counts = {f.name: 0 for f in batch.schema if pa.types.is_floating(f.type)}
        for name in nan_counts:
            column = batch.column(name)
            nan_counts[name] += pc.sum(pc.or_(pc.is_nan(column), pc.is_inf(column))).as_py() or 0
        items = []
        for record in batch.to_pylist():
            number += 1
            try:
                items.append(_Item(number, _jsonable(record)))
            except _NotText:
                column = next(c for c in binary if _not_text(record.get(c)))
                message = "the value is binary data that is not UTF-8 text"
                hint = "Convert the column to text or drop it before importing; only text can be scored and exported."
                items.append(_Item(number, problem=Problem(path, number, column, message, hint, "row")))
        yield items
    for name, count in nan_counts.items():
        if count:
            found = "1 NaN or infinite value; it was" if count == 1 else f"{count} NaN or infinite values; they were"
            notices.append(
                f'{Path(path).name}: column "{name}" has {found} read as null (empty), and export writes null.'
            )
    for column in binary or []:
        notices.append(
            f'{Path(path).name}: column "{column}" holds binary values; they were read as UTF-8 text, and export '
            "writes them as text."
        )


def _not_text(value: Any) -> bool:
    try:
        _jsonable(value)
    except _NotText:
        return True
    return False


def _parquet_batches(path: str, digest: Any, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    """A Parquet file's record batches, read a row group at a time; ``digest`` gets the file's bytes."""
    with open(path, "rb") as file:
        while block := file.read(1 << 22):
            digest.update(block)
    try:
        parquet = pq.ParquetFile(path)
        batches = parquet.iter_batches(batch_size=chunk_rows)
        first = next(batches, None)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(path, None, None, f"not a readable Parquet file ({exc})", "") from exc
    if first is None:
        yield pa.RecordBatch.from_pylist([], schema=parquet.schema_arrow)
        return
    yield first
    yield from batches


def _datasets_table(path: str) -> pa.Table:
    """The Arrow table of a folder written by ``Dataset.save_to_disk``; a DataError says what else it is."""
    folder = Path(path)
    if (folder / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in folder.iterdir() if (p / "state.json").is_file())
        raise DataError(
            path,
            None,
            None,
            f"the folder holds several splits ({', '.join(splits)})",
            f"Give one split's folder, for example {folder / (splits[0] if splits else 'train')}.",
        )
    if not (folder / "state.json").is_file():
        raise DataError(
            path,
            None,
            None,
            "the folder is not a Hugging Face datasets folder (it has no state.json)",
            "Give a data file (.csv, .jsonl, .json, .parquet), or a folder written by Dataset.save_to_disk.",
        )
    from datasets import load_from_disk  # slow to import; only folders need it

    try:
        return load_from_disk(str(folder)).with_format("arrow")[:]
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as exc:
        raise DataError(path, None, None, f"the datasets folder cannot be read ({exc})", "Save it again.") from exc


def _folder_hash(path: str) -> str:
    """sha256 over a folder's file names and contents, in name order."""
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


CHUNK_ROWS = 10_000  # records read, checked and staged at a time: memory stays bounded whatever the file's size


def _item_chunks(path: str, file_format: str, notices: list[str], digest: Any, chunk_rows: int = CHUNK_ROWS):
    """The file's items (records or problems), ``chunk_rows`` at a time; ``digest`` gets the bytes the content
    hash is made of. JSON arrays and ``datasets`` folders are read whole (JSON has no row boundaries to stream by;
    a folder is memory-mapped Arrow)."""
    if file_format == DATASETS_FORMAT:
        table = _datasets_table(path)
        digest.update(bytes.fromhex(_folder_hash(path)))
        return _table_chunks(
            path, iter(table.to_batches(chunk_rows) or table.schema.empty_table().to_batches()), notices
        )
    if file_format == "parquet":
        return _table_chunks(path, _parquet_batches(path, digest, chunk_rows), notices)
    if file_format == "csv":
        return _csv_chunks(path, digest, chunk_rows)
    if file_format == "jsonl":
        return _jsonl_chunks(path, digest, notices, chunk_rows)
    data = _read_file(path)
    digest.update(data)
    return iter([_json_items(path, _decode(path, data), notices)])


def _unit(file_format: str) -> str:
    return "row" if file_format in ("json", "parquet", DATASETS_FORMAT) else "line"


def _read_file(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise DataError(path, None, None, f"cannot read the file ({exc.strerror})", "Check the path.") from exc


def read_records(path: str | Path, file_format: str | None = None) -> list[dict[str, Any]]:
    """Every record of the file as a dict, raising DataError at the first unreadable line or row."""
    file_format = file_format or detect_format(path)
    records = []
    for chunk in _item_chunks(str(path), file_format, [], hashlib.sha256()):
        for item in chunk:
            problem = item.problem or _record_problem(str(path), file_format, item)
            if problem is not None:
                raise problem.error()
            records.append(item.record)
    return records


def _columns_of(records: list[dict[str, Any]]) -> list[str]:
    """Column names in order of first appearance across all records."""
    return list(dict.fromkeys(key for record in records for key in record))


def preview_records(path: str | Path, n: int = 20) -> pd.DataFrame:
    """The first ``n`` readable records as a DataFrame (columns as in the file) for the import preview; reads
    only as far into the file as it needs to (a problem further on is for ``inspect`` to find)."""
    records, problem = [], None
    for chunk in _item_chunks(str(path), detect_format(path), [], hashlib.sha256(), chunk_rows=n):
        records.extend(item.record for item in chunk if item.record is not None)
        problem = problem or next((item.problem for item in chunk if item.problem), None)
        if len(records) >= n:
            break
    records = records[:n]
    if not records and problem is not None:
        raise problem.error()
    return pd.DataFrame.from_records(records, columns=_columns_of(records))


# -- values -------------------------------------------------------------------------------------------------


def _value_problem(value: dict | list, label: str | None = None) -> _RowError | None:
    """The first value inside ``value`` that cannot be imported unchanged: a repeated JSON key, text with half a
    surrogate pair, nesting deeper than MAX_NESTING. ``label`` names ``value``'s column (None for a record)."""
    stack = [(value, label, 0)]
    while stack:
        value, label, depth = stack.pop()
        if depth >= MAX_NESTING:
            top = label.split("[")[0].split(".")[0] if label else None  # the column, not a 100-level path
            return _RowError(top, _NESTING_MESSAGE.removesuffix(" here"), _NESTING_HINT)
        if isinstance(value, _DuplicateKeys):
            message = f'the object names the key "{value.key}" twice (a JSON reader would keep only the last)'
            return _RowError(label or value.key, message, "Remove or rename one of them.")
        for key, child in value.items() if isinstance(value, dict) else enumerate(value):
            if isinstance(key, str) and not key.isascii() and _SURROGATE.search(key):
                return _RowError(label, _surrogate_message(key), _SURROGATE_HINT)
            if isinstance(child, str):
                if not child.isascii() and _SURROGATE.search(child):
                    return _RowError(_child_label(label, key), _surrogate_message(child), _SURROGATE_HINT)
            elif isinstance(child, dict | list):
                stack.append((child, _child_label(label, key), depth + 1))
    return None


def _child_label(label: str | None, key: str | int) -> str:
    """'messages[1].content' style names for nested values."""
    if isinstance(key, int):
        return f"{label}[{key}]"
    return key if label is None else f"{label}.{key}"


_SURROGATE_HINT = (
    "Remove the escape or write the character it stands for; a tool that cut text inside an emoji or other "
    "character outside the basic range leaves such halves behind."
)


def _surrogate_message(text: str) -> str:
    char = _SURROGATE.search(text).group()
    return (
        f"the text holds the escape \\u{ord(char):04x}, half of a UTF-16 surrogate pair without its other half, "
        "which is not a character and cannot be stored"
    )


def _record_problem(path: str, file_format: str, item: _Item) -> Problem | None:
    """The problem (from _value_problem) of a record read from a file, at its line or row."""
    error = _value_problem(item.record)
    if error is None:
        return None
    return Problem(path, item.location, error.column, error.message, error.hint, _unit(file_format))


# -- schemas ------------------------------------------------------------------------------------------------


def detect_schema(columns_or_records: list[str] | list[dict[str, Any]]) -> str | None:
    """The recognised schema of a file from its column names (or its records), or None."""
    if columns_or_records and isinstance(columns_or_records[0], dict):
        columns = set(_columns_of(columns_or_records))
    else:
        columns = set(columns_or_records)
    if "messages" in columns:
        return "messages"
    if "conversations" in columns:
        return "sharegpt"
    if {"instruction", "instances"} <= columns:
        return "self_instruct"
    if {"instruction", "output"} <= columns:
        return "alpaca"
    if {"prompt", "response"} <= columns:
        return "prompt_response"
    if {"prompt", "completion"} <= columns:
        return "prompt_completion"
    if {"instruction", "context", "response"} <= columns:
        return "dolly"
    if {"instruction", "response"} <= columns:
        return "instruction_response"
    if {"question", "answer"} <= columns:
        return "question_answer"
    return None


_PROMPT_NAMES = ("instruction", "prompt", "question", "query", "problem", "input", "text", "context")
_RESPONSE_NAMES = ("output", "response", "answer", "completion", "solution", "target", "chosen", "label")


def suggest_mapping(columns: list[str]) -> ColumnMapping | None:
    """A likely ColumnMapping for unrecognised columns (by common names, case-insensitive), or None."""
    lower = {c.lower(): c for c in columns}
    prompt = next((lower[n] for n in _PROMPT_NAMES if n in lower), None)
    response = next((lower[n] for n in _RESPONSE_NAMES if n in lower and lower[n] != prompt), None)
    if prompt is None or response is None:
        return None
    return ColumnMapping(prompt=prompt, response=response)


def _unrecognised_hint(columns: list[str]) -> str:
    suggestion = suggest_mapping(columns)
    example = f' (for example prompt "{suggestion.prompt}", response "{suggestion.response}")' if suggestion else ""
    return (
        f"{_KNOWN_SCHEMAS_HINT} Rename the columns, or map them{example}: on the app's Data page, or with "
        "--prompt-column/--response-column [--input-column] on the command line."
    )


def _text(record: dict[str, Any], key: str, label: str | None = None) -> str:
    """A required text value (may be empty)."""
    label = label or key
    if key not in record:
        raise _RowError(label, "value is missing", "Fill it in or remove the row.")
    value = record[key]
    if value is None:
        raise _RowError(label, "value is empty (null)", "Fill it in or remove the row.")
    if not isinstance(value, str):
        raise _RowError(label, f"value is {_kind(value)}, expected text", _TEXT_HINT)
    return value


def _prompt_text(record: dict[str, Any], key: str, label: str | None = None) -> str:
    """A required, non-blank prompt text."""
    value = _text(record, key, label)
    if not value.strip():
        raise _RowError(label or key, "the prompt is empty", "Fill in the prompt or remove the row.")
    return value


def _optional_text(record: dict[str, Any], key: str | None, label: str | None = None) -> str:
    """An optional text value: missing or null reads as ''."""
    if key is None or record.get(key) is None:
        return ""
    return _text(record, key, label)


def _nested_list(record: dict[str, Any], key: str) -> list[Any]:
    """A list column; JSON text (as CSV cells hold it) is decoded."""
    if key not in record or record[key] is None:
        raise _RowError(key, "value is missing", "Fill it in or remove the row.")
    value = record[key]
    if isinstance(value, str):
        try:
            value = _json_loads(value)
        except json.JSONDecodeError as exc:
            raise _RowError(key, f"the text is not valid JSON ({exc.msg})", "Write the list as JSON.") from exc
        except RecursionError as exc:
            raise _RowError(key, _NESTING_MESSAGE.removesuffix(" here"), _NESTING_HINT) from exc
        if (error := _value_problem(value, key)) is not None:
            raise error
    if not isinstance(value, list):
        raise _RowError(key, f"value is {_kind(value)}, expected a list", "Write the list as JSON.")
    if not value:
        raise _RowError(key, "the list is empty", "Add at least one item or remove the row.")
    return value


def user_turn(content: str, system: str = "") -> list[dict[str, str]]:
    """Prompt messages for an instruction-style row: an optional system turn, then one user turn."""
    turns = [{"role": "system", "content": system}] if system else []
    return [*turns, {"role": "user", "content": content}]


def join_instruction(instruction: str, extra: str) -> str:
    """Alpaca's prompt text: the instruction, then the input after a blank line when there is one."""
    return f"{instruction}\n\n{extra}" if extra else instruction


def render_prompt(messages: list[dict[str, str]]) -> str:
    """Display text of a prompt: the last turn as is, earlier turns prefixed ``role: ``."""
    if not messages:
        return ""
    earlier = [f"{m['role']}: {m['content']}" for m in messages[:-1]]
    return "\n\n".join([*earlier, messages[-1]["content"]])


def chat_role(name: Any) -> Any:
    """The chat role of a speaker name (``CHAT_ROLES``, any case); other names are returned as they are."""
    return CHAT_ROLES.get(name.strip().lower(), name) if isinstance(name, str) else name


def response_turn_index(schema: str, turns: list[dict[str, Any]]) -> int | None:
    """Index of the last assistant turn in a chat (``messages`` or ``sharegpt``), the one that is the response."""
    _, role_key, _ = CHAT_KEYS[schema]
    found = None
    for i, turn in enumerate(turns):
        if isinstance(turn, dict) and chat_role(turn.get(role_key)) == "assistant":
            found = i
    return found


def content_like(original: Any, text: str) -> Any:
    """``text`` in the shape of a turn's ``original`` content: a list of parts becomes one text part (of the type
    its first text part had), anything else plain text."""
    if isinstance(original, list):
        kind = next((p["type"] for p in original if isinstance(p, dict) and p.get("type") in TEXT_PART_TYPES), "text")
        return [{"type": kind, "text": text}]
    return text


def _content_text(turn: dict[str, Any], key: str, label: str) -> str:
    """A turn's text: plain text, or a list of text parts joined by a line break; null reads as '' (tool calls)."""
    value = turn.get(key)
    if not isinstance(value, list):
        return _optional_text(turn, key, label)
    texts = []
    for j, part in enumerate(value):
        where = f"{label}[{j}]"
        if not isinstance(part, dict):
            raise _RowError(
                where, f"the part is {_kind(part)}, expected an object", 'Write {"type": "text", "text": ...}.'
            )
        if part.get("type") not in TEXT_PART_TYPES:
            message = f"the part is of type {json.dumps(part.get('type'))}, not text; the model reads text only"
            raise _RowError(where, message, "Remove the parts that are not text (images, audio, files), or the row.")
        texts.append(_text(part, "text", f"{where}.text"))
    return "\n".join(texts)


def _chat_turns(schema: str, record: dict[str, Any]) -> list[dict[str, str]]:
    """Validated turns of a chat record as {"role", "content"} (see chat_role, _content_text)."""
    key, role_key, text_key = CHAT_KEYS[schema]
    turns = []
    for i, turn in enumerate(_nested_list(record, key)):
        label = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise _RowError(
                label, f"the turn is {_kind(turn)}, expected an object", f"Give it {role_key} and {text_key}."
            )
        role = _text(turn, role_key, f"{label}.{role_key}")
        turns.append({"role": chat_role(role), "content": _content_text(turn, text_key, f"{label}.{text_key}")})
    return turns


_ASSISTANT_NAMES = ", ".join(name for name, role in CHAT_ROLES.items() if role == "assistant")


def _parse_chat(schema: str, record: dict[str, Any]) -> tuple[list[dict[str, str]], str]:
    """(prompt_messages, response): the last assistant turn is the response, every turn before it the prompt."""
    key, role_key, text_key = CHAT_KEYS[schema]
    turns = _chat_turns(schema, record)
    last = response_turn_index("messages", turns)  # turns already carry chat roles, whatever the schema
    if last is None:
        speakers = ", ".join(dict.fromkeys(json.dumps(t[role_key]) for t in _nested_list(record, key)))
        hint = (
            f"The last assistant turn is the response being judged. Names read as the assistant (in any case): "
            f"{_ASSISTANT_NAMES}. Rename the speaker, add an assistant turn, or remove the row."
        )
        raise _RowError(key, f"the conversation has no assistant turn (speakers: {speakers})", hint)
    raw = _nested_list(record, key)[last]
    if raw.get(text_key) is None:
        raise _RowError(f"{key}[{last}].{text_key}", "the response is missing", "Fill it in or remove the row.")
    prompt = turns[:last]
    if not any(t["role"] != "system" and t["content"].strip() for t in prompt):
        hint = "Add the user's message before the last assistant turn, or remove the row."
        raise _RowError(key, "the conversation has no prompt before its last assistant turn", hint)
    return prompt, turns[last]["content"]


def _parse_record(
    schema: str, mapping: ColumnMapping | None, record: dict[str, Any], position: int
) -> list[tuple[dict, list, str]]:
    """The (record, prompt_messages, response) rows of the record at ``position`` (0-based) in the file;
    raises _RowError at its first problem."""
    if schema in ("messages", "sharegpt"):
        key = CHAT_KEYS[schema][0]
        prompt, response = _parse_chat(schema, record)
        return [({**record, key: _nested_list(record, key)}, prompt, response)]
    if schema == "self_instruct":
        return _parse_self_instruct(record, position)
    if schema in FLAT_SCHEMAS:
        prompt, extra, response = FLAT_SCHEMAS[schema]
        content = join_instruction(_prompt_text(record, prompt), _optional_text(record, extra))
        return [(record, user_turn(content), _text(record, response))]
    assert mapping is not None, "the 'mapped' schema needs a ColumnMapping"
    return [(record, _mapped_prompt(mapping, record), _text(record, mapping.response))]


def _mapped_prompt(mapping: ColumnMapping, record: dict[str, Any]) -> list[dict[str, str]]:
    parts = [_text(record, c) for c in mapping.prompt_columns]
    instruction = "\n\n".join(p for p in parts if p.strip())
    if not instruction:
        raise _RowError(mapping.prompt_columns[0], "the prompt is empty", "Fill in the prompt or remove the row.")
    content = join_instruction(instruction, _optional_text(record, mapping.input))
    return user_turn(content, _optional_text(record, mapping.system))


def _parse_self_instruct(record: dict[str, Any], position: int) -> list[tuple[dict, list, str]]:
    """One row per instance; each row's record is the task narrowed to that instance (see module docstring)."""
    instruction = _prompt_text(record, "instruction")
    rows = []
    for j, instance in enumerate(_nested_list(record, "instances")):
        label = f"instances[{j}]"
        if not isinstance(instance, dict):
            raise _RowError(
                label, f"the instance is {_kind(instance)}, expected an object", "Give it input and output."
            )
        content = join_instruction(instruction, _optional_text(instance, "input", f"{label}.input"))
        response = _text(instance, "output", f"{label}.output")
        narrowed = {**record, "instances": [instance], "_source_index": position, "_instance_index": j}
        rows.append((narrowed, user_turn(content), response))
    return rows


# -- validation and loading ---------------------------------------------------------------------------------


@dataclass
class _Pass:
    """One reading of a file: what was found, and the schema every record was checked with (None when some were
    read before the schema could be told)."""

    columns: dict[str, None] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    n_rows: int = 0
    n_repeats: int = 0
    n_items: int = 0
    n_records: int = 0
    first_location: int | None = None
    schemas: set = field(default_factory=set)
    content_hash: str = ""


class _Stage:
    """Rows written to a Parquet file as ``Store.add_dataset`` reads them (``repeat`` marks an exact duplicate of an
    earlier row)."""

    SCHEMA = pa.schema(
        [
            ("row_index", pa.int64()),
            ("record_json", pa.string()),
            ("prompt", pa.string()),
            ("prompt_messages_json", pa.string()),
            ("response", pa.string()),
            ("repeat", pa.bool_()),
            ("kept_index", pa.int64()),  # the row's index once duplicates are dropped (null for a repeat)
        ]
    )

    def __init__(self, path: Path):
        self.path = path
        self.writer = pq.ParquetWriter(str(path), self.SCHEMA)
        self.columns: dict[str, list] = {name: [] for name in self.SCHEMA.names}
        self.kept = 0

    def add(self, row_index: int, record: dict, messages: list, prompt: str, response: str, repeat: bool) -> None:
        c = self.columns
        c["row_index"].append(row_index)
        c["record_json"].append(json.dumps(record, ensure_ascii=False))  # as Store._dumps writes it
        c["prompt"].append(prompt)
        c["prompt_messages_json"].append(json.dumps(messages, ensure_ascii=False))
        c["response"].append(response)
        c["repeat"].append(repeat)
        c["kept_index"].append(None if repeat else self.kept)
        self.kept += not repeat

    def flush(self) -> None:
        if self.columns["row_index"]:
            self.writer.write_table(pa.table(self.columns, schema=self.SCHEMA))
            self.columns = {name: [] for name in self.SCHEMA.names}

    def close(self) -> None:
        self.flush()
        self.writer.close()


def _duplicate_key(record: dict[str, Any]) -> bytes:
    """What makes two rows exact duplicates: the same record (key order aside), wherever it sits in the file, as a
    128-bit digest (JSON text tells 1, 1.0 and true apart)."""
    key = {k: v for k, v in record.items() if k not in ("_source_index", "_instance_index")}
    return hashlib.blake2b(json.dumps(key, sort_keys=True, ensure_ascii=False).encode(), digest_size=16).digest()


def _file_problem(path: str, fmt: str, found: _Pass, mapping: ColumnMapping | None) -> tuple[str | None, list]:
    """(schema, problems) for the file as a whole: no rows, unrecognised columns, mapped columns not in the file."""
    columns = list(found.columns)
    where = 1 if fmt == "csv" else found.first_location  # a CSV file's columns are on its header line
    if not found.n_items:
        return None, [Problem(path, None, None, "the file has no rows", "Add at least one row and import it again.")]
    if not found.n_records:
        return None, []  # every record is already a problem
    if mapping is not None:
        missing = [c for c in mapping.columns if c not in found.columns]
        if missing:
            message = f"the mapped column is not in the file (columns: {', '.join(columns)})"
            return None, [Problem(path, where, missing[0], message, "Map one of the file's columns.", _unit(fmt))]
        return "mapped", []
    schema = detect_schema(columns)
    if schema is None:
        message = f"the columns do not match a known format (columns: {', '.join(columns)})"
        return None, [Problem(path, where, None, message, _unrecognised_hint(columns), _unit(fmt))]
    return schema, []


def _read_pass(
    path: str, fmt: str, mapping: ColumnMapping | None, schema: str | None, max_problems: int, stage: _Stage | None
) -> _Pass:
    """Read the file once, a chunk at a time: every record is checked with ``schema`` (or, when None, with the
    schema its columns so far name) and its rows kept (in ``rows``, or written to ``stage``) until ``max_problems``
    problems are found; after that the file is still read to the end for its columns (and its bytes' encoding)."""
    found = _Pass()
    digest = hashlib.sha256()
    first_seen: dict[bytes, int | None] = {}
    unit = _unit(fmt)
    for chunk in _item_chunks(path, fmt, found.notices, digest):
        for item in chunk:
            if found.first_location is None:
                found.first_location = item.location
            if item.record is not None:
                found.columns.update(dict.fromkeys(item.record))
                found.n_records += 1
        using = schema or ("mapped" if mapping is not None else detect_schema(list(found.columns)))
        for item in chunk:
            position = found.n_items
            found.n_items += 1
            if len(found.problems) >= max_problems:
                continue
            if item.problem is not None:
                found.problems.append(item.problem)
                continue
            found.schemas.add(using)
            if using is None:
                continue
            try:
                if (error := _value_problem(item.record)) is not None:
                    raise error
                parsed = _parse_record(using, mapping, item.record, position)
            except _RowError as exc:
                found.problems.append(Problem(path, item.location, exc.column, exc.message, exc.hint, unit))
                continue
            for record, messages, response in parsed:
                key = _duplicate_key(record)
                repeat = key in first_seen
                if repeat:
                    found.duplicates.append(Duplicate(item.location, first_seen[key], unit))
                    found.n_repeats += 1
                else:
                    first_seen[key] = item.location
                if stage is None:
                    found.rows.append(Row(found.n_rows, record, messages, render_prompt(messages), response))
                else:
                    stage.add(found.n_rows, record, messages, render_prompt(messages), response, repeat)
                found.n_rows += 1
        if stage is not None:
            stage.flush()
    found.content_hash = _folder_hash(path) if fmt == DATASETS_FORMAT else digest.hexdigest()
    return found


@dataclass
class _Scan:
    file_format: str
    schema: str | None
    found: _Pass


def _scan(
    path: str | Path, mapping: ColumnMapping | None, max_problems: int, stage_path: Path | None = None
) -> tuple[_Scan | None, list[Problem]]:
    """Read, recognise and validate a file, collecting up to ``max_problems`` problems in file order. A file
    is read once, unless a column first met far into it changes its schema (then once more, with that schema)."""
    path = str(path)
    try:
        fmt = detect_format(path)
        schema = None
        for _ in range(2):
            stage = None if stage_path is None else _Stage(stage_path)
            try:
                found = _read_pass(path, fmt, mapping, schema, max_problems, stage)
            finally:
                if stage is not None:
                    stage.close()
            final, problems = _file_problem(path, fmt, found, mapping)
            if problems:
                return None, problems
            if final is None or found.schemas <= {final}:
                break
            schema = final  # some records were checked before a later column changed the schema
    except DataError as exc:
        return None, [exc.problem]
    if fmt == DATASETS_FORMAT:
        found.notices.append(
            f"{Path(path).name}: a datasets folder has no file format of its own; export writes its curated set "
            f"as {EXPORT_FORMAT_OF[fmt].capitalize()} unless you choose JSONL, JSON or CSV."
        )
    return _Scan(fmt, final, found), found.problems[:max_problems]


def validate(path: str | Path, mapping: ColumnMapping | None = None) -> list[Problem]:
    """Every problem in the file (up to MAX_PROBLEMS), in file order; an empty list means it imports cleanly."""
    return _scan(path, mapping, MAX_PROBLEMS)[1]


def inspect(path: str | Path, mapping: ColumnMapping | None = None) -> Inspection:
    """What importing the file would do: its problems (as ``validate``), exact duplicate rows and notices."""
    return prepare(path, mapping)[0]


def prepare(
    path: str | Path, mapping: ColumnMapping | None = None, *, staging_dir: str | Path | None = None
) -> tuple[Inspection, Dataset | None]:
    """``inspect`` and ``load_dataset`` in one reading of the file: its inspection, and the dataset when it has
    no problem (rows staged in ``staging_dir`` when given, see ``load_dataset``). ``with_options`` then names it
    and drops its duplicates, with no second reading."""
    if staging_dir is not None and (native := _plain_jsonl(path, mapping)) is not None:
        return Inspection([], native.duplicates, []), native
    stage_path = _stage_path(staging_dir)
    scan, problems = _scan(path, mapping, MAX_PROBLEMS, stage_path)
    if scan is None or problems:
        if stage_path is not None:
            stage_path.unlink(missing_ok=True)
        return Inspection(
            problems, [] if scan is None else scan.found.duplicates, [] if scan is None else scan.found.notices
        ), None
    return Inspection([], scan.found.duplicates, scan.found.notices), _dataset(path, mapping, scan, stage_path)


def _stage_path(staging_dir: str | Path | None) -> Path | None:
    if staging_dir is None:
        return None
    Path(staging_dir).mkdir(parents=True, exist_ok=True)
    return Path(staging_dir) / f"rows-{uuid.uuid4().hex}.parquet"


def _dataset(path: str | Path, mapping: ColumnMapping | None, scan: _Scan, stage_path: Path | None) -> Dataset:
    found = scan.found
    return Dataset(
        name=Path(path).stem,
        source_path=str(path),
        file_format=scan.file_format,
        schema=scan.schema,
        mapping=mapping,
        rows=found.rows,
        content_hash=found.content_hash,
        columns=list(found.columns),
        duplicates=found.duplicates,
        notices=found.notices,
        rows_file=None if stage_path is None else str(stage_path),
        staged_rows=found.n_rows,
    )


def with_options(dataset: Dataset, name: str | None = None, *, drop_duplicates: bool = False) -> Dataset:
    """The dataset named ``name`` (None: as it is) and, with ``drop_duplicates``, without its exact duplicate rows:
    the first of each is kept, row_index is renumbered 0..n-1 and the content hash differs from the file kept
    whole. Staged rows are dropped when the store reads them (``Dataset.rows_file``)."""
    dataset = replace(dataset, name=name or dataset.name)
    if not (drop_duplicates and dataset.duplicates):
        return dataset
    content_hash = hashlib.sha256(f"{dataset.content_hash} without duplicates".encode()).hexdigest()
    if dataset.rows_file is not None or dataset.jsonl_rows is not None:
        return replace(dataset, duplicates_dropped=True, content_hash=content_hash)
    seen: set[bytes] = set()
    kept = [r for r in dataset.rows if (key := _duplicate_key(r.record)) not in seen and not seen.add(key)]
    rows = [replace(row, row_index=i) for i, row in enumerate(kept)]
    return replace(dataset, rows=rows, duplicates_dropped=True, content_hash=content_hash)


def load_dataset(
    path: str | Path,
    mapping: ColumnMapping | None = None,
    name: str | None = None,
    *,
    drop_duplicates: bool = False,
    staging_dir: str | Path | None = None,
) -> Dataset:
    """Read, recognise (or apply ``mapping``) and validate a file; raises DataError at its first problem.

    Exact duplicate rows are kept and listed in ``Dataset.duplicates``; ``drop_duplicates`` keeps only the first
    of each (row_index is renumbered 0..n-1, and the content hash differs from the file kept whole).
    ``staging_dir``: the rows are written there as a Parquet file (``Dataset.rows_file``, for
    ``Store.add_dataset`` to read) instead of kept in ``Dataset.rows``, so that memory stays bounded whatever the
    file's size; the caller deletes the file once it is stored. A plain JSON Lines file in a flat schema is
    checked by DuckDB instead and stages nothing (``Dataset.jsonl_rows``, see ``_plain_jsonl``).
    """
    if staging_dir is not None and (native := _plain_jsonl(path, mapping)) is not None:
        return with_options(native, name, drop_duplicates=drop_duplicates)
    stage_path = _stage_path(staging_dir)
    scan, problems = _scan(path, mapping, 1, stage_path)
    if problems:
        if stage_path is not None:
            stage_path.unlink(missing_ok=True)
        raise problems[0].error()
    return with_options(_dataset(path, mapping, scan, stage_path), name, drop_duplicates=drop_duplicates)


# -- plain JSON Lines, read by DuckDB -----------------------------------------------------------------------


def _plain_jsonl(path: str | Path, mapping: ColumnMapping | None) -> Dataset | None:
    """The dataset of a JSON Lines file in a flat schema whose every line DuckDB vouches for (``store.jsonl_check``:
    the checks of ``_parse_record`` as set-based SQL), with its exact duplicates; None for any other file, or when a
    line is unusual or has a problem: the Python reader then reads it, and names the file, line and column of the
    first problem. The schema is told from the first line's keys, and checked again when later lines add columns
    that change it. Exact duplicates are decided by ``_duplicate_key``, as the Python reader decides them, on the
    rows whose prompt, extra and response repeat."""
    path = str(path)
    if mapping is not None or detect_format(path) != "jsonl":
        return None
    stat = os.stat(path)
    with ThreadPoolExecutor(1) as pool:  # hashing releases the GIL: it runs beside DuckDB's scan
        hashed = pool.submit(_jsonl_bytes, path)
        checked = _jsonl_check(path, stat)
        scanned = hashed.result()
    if checked is None or scanned is None:
        return None
    schema, checked, columns = checked
    if checked.bad:
        return None
    content_hash, n_lines = scanned
    n_records = sum(count for _, _, count, _ in checked.groups)
    duplicates, repeats = _jsonl_duplicates(path, checked.candidates, n_lines == n_records)
    return Dataset(
        name=Path(path).stem,
        source_path=path,
        file_format="jsonl",
        schema=schema,
        mapping=None,
        rows=[],
        content_hash=content_hash,
        columns=columns,
        duplicates=duplicates,
        staged_rows=n_records,
        jsonl_rows=replace(checked.rows, repeats=tuple(repeats)),
    )


def _jsonl_check(path: str, stat: os.stat_result) -> tuple[str, store.JsonlCheck, list[str]] | None:
    """(schema, what DuckDB found, columns in order of first appearance) when every line is a plain JSON object
    and the columns name a flat schema; None otherwise."""
    schema = _first_line_schema(path)
    for _ in range(2):
        if schema not in FLAT_SCHEMAS:
            return None
        prompt, extra, response = FLAT_SCHEMAS[schema]
        rows = store.JsonlRows(path, prompt, extra, response, stat.st_size, stat.st_mtime_ns)
        checked = store.jsonl_check(rows)
        if checked is None or not checked.groups:
            return None
        if not all(keys and plain and len(set(keys)) == len(keys) for keys, _, _, plain in checked.groups):
            return None
        columns = list(dict.fromkeys(key for keys, *_ in checked.groups for key in keys))
        if detect_schema(columns) == schema:
            break
        schema = detect_schema(columns)  # a column met further on changes the schema: check again with it
    else:
        return None
    return schema, checked, columns


def _first_line_schema(path: str) -> str | None:
    """The schema the keys of the file's first non-blank line name (None when it is not a JSON object)."""
    with _open_without_bom(path) as file:
        line = next((line for line in file if line.strip()), b"")
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return detect_schema(list(record)) if isinstance(record, dict) else None


def _jsonl_bytes(path: str) -> tuple[str, int] | None:
    """(sha256 of the file's bytes, its number of lines); None when a line ends in a lone carriage return or the
    file is UTF-16 (DuckDB splits lines on line feeds only)."""
    digest, lines, carriage_returns, last = hashlib.sha256(), 0, 0, b""
    with open(path, "rb") as file:
        while block := file.read(1 << 22):
            if not last and block.startswith((b"\xff\xfe", b"\xfe\xff")):
                return None
            digest.update(block)
            lines += block.count(b"\n")
            carriage_returns += block.count(b"\r") - block.count(b"\r\n") - (last == b"\r" and block[:1] == b"\n")
            last = block[-1:]
    if carriage_returns:
        return None
    return digest.hexdigest(), lines + (bool(last) and last != b"\n")


def _jsonl_duplicates(path: str, candidates: list[int], no_blank_lines: bool) -> tuple[list[Duplicate], list[int]]:
    """The exact duplicates among ``candidates`` (0-based positions of non-blank lines) and the positions that
    repeat an earlier row, at their file lines."""
    if not candidates:
        return [], []
    texts = store.jsonl_lines(path, candidates)
    first_seen: dict[bytes, int] = {}
    found: list[tuple[int, int]] = []
    for pos in sorted(texts):
        key = _duplicate_key(_json_loads(texts[pos]))
        if key in first_seen:
            found.append((pos, first_seen[key]))
        else:
            first_seen[key] = pos
    line_of = (lambda pos: pos + 1) if no_blank_lines else _jsonl_line_numbers(path).__getitem__
    duplicates = [Duplicate(line_of(pos), line_of(first), "line") for pos, first in found]
    return duplicates, [pos for pos, _ in found]


def _jsonl_line_numbers(path: str) -> list[int]:
    """The file line of each non-blank line, by position."""
    with _open_without_bom(path) as file:
        return [number for number, line in enumerate(file, 1) if line.strip()]


def _open_without_bom(path: str) -> Any:
    """The file opened for reading bytes, after its UTF-8 byte order mark if it has one."""
    file = open(path, "rb")  # noqa: SIM115 (the caller closes it)
    if file.read(3) != b"\xef\xbb\xbf":
        file.seek(0)
    return file
