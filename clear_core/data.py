"""Import of instruction-tuning files: reading CSV/JSONL/JSON/Parquet, recognising the schema, validating rows.

Every problem names the file, the line (or row) and the column, and says what to do about it. ``load_dataset``
stops at the first problem and returns nothing partial; ``validate`` lists them all for the preview screen.

Self-instruct files hold several instances per task; each instance becomes its own ``Row`` whose ``record`` is
the task with ``instances`` narrowed to that one instance, plus ``_source_index`` (0-based task position) and
``_instance_index`` (position inside the task) so that export can regroup them. In CSV files nested columns
(``messages``, ``conversations``, ``instances``) hold JSON text; it is decoded into the record.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import hashlib
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

FORMATS = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
SCHEMAS = ("alpaca", "prompt_response", "prompt_completion", "messages", "sharegpt", "self_instruct", "mapped")
# Where each flat schema keeps its response (export writes the curated text back there).
RESPONSE_COLUMNS = {"alpaca": "output", "prompt_response": "response", "prompt_completion": "completion"}
# Chat schemas: (column holding the turns, key of the speaker, key of the text).
CHAT_KEYS = {"messages": ("messages", "role", "content"), "sharegpt": ("conversations", "from", "value")}
# ShareGPT speakers mapped to chat roles; unknown speakers keep their own name as the role.
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "system": "system",
}
MAX_PROBLEMS = 100

_KNOWN_SCHEMAS_HINT = (
    "Recognised columns: instruction/input/output (Alpaca), prompt/response, prompt/completion, "
    "messages (chat), conversations (ShareGPT), instruction/instances (self-instruct)."
)
_TEXT_HINT = "Fix the value or map another column."
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


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


class DataError(Exception):
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


@dataclass
class _Item:
    """One record read from a file, or the problem that replaced it, at its line (or row) number."""

    location: int | None
    record: dict[str, Any] | None = None
    problem: Problem | None = None


# -- reading ------------------------------------------------------------------------------------------------


def detect_format(path: str | Path) -> str:
    """'csv', 'jsonl', 'json' or 'parquet' from the file extension."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise DataError(
            path,
            None,
            None,
            f"unsupported file type {Path(path).suffix or '(no extension)'!r}",
            "Supported formats: .csv, .jsonl/.ndjson, .json (an array of objects), .parquet/.pq.",
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


def _jsonable(value: Any) -> Any:
    """Parquet values as plain JSON values: NaN -> None, dates -> ISO text, decimals and bytes -> text."""
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
        return value.decode("utf-8", errors="backslashreplace")
    return value


def _csv_items(path: str, text: str) -> list[_Item]:
    """Records of a CSV file keyed by the header, each at the file line where it starts (header = line 1)."""
    csv.field_size_limit(2**31 - 1)  # long responses exceed the 128 KiB default
    reader = csv.reader(io.StringIO(text, newline=""))
    items: list[_Item] = []
    try:
        header = next(reader, None)
        if header is None:
            return []
        dupes = sorted({c for c in header if header.count(c) > 1})
        if dupes:
            return [_Item(1, problem=Problem(path, 1, dupes[0], "the header names this column twice", "Rename one."))]
        for fields in reader:
            if not fields:  # blank line
                continue
            start = reader.line_num - sum(len(_LINE_BREAK.findall(f)) for f in fields)
            if len(fields) != len(header):
                message = f"the row has {len(fields)} values but the header has {len(header)} columns"
                hint = "Quote values that contain commas or line breaks, or fix the number of values."
                items.append(_Item(start, problem=Problem(path, start, None, message, hint)))
                continue
            items.append(_Item(start, dict(zip(header, fields, strict=True))))
    except csv.Error as exc:
        hint = "Check the quoting on this line."
        items.append(_Item(reader.line_num, problem=Problem(path, reader.line_num, None, f"invalid CSV ({exc})", hint)))
    return items


def _jsonl_items(path: str, text: str) -> list[_Item]:
    """One record per non-blank line; a bad line becomes a problem and reading goes on."""
    items: list[_Item] = []
    # split on "\n" only: str.splitlines would also split on U+2028 and friends inside JSON strings
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line, parse_constant=lambda _: None)
        except json.JSONDecodeError as exc:
            hint = "Each line must be one complete JSON object; check for a missing quote, comma or bracket."
            if number == 1 and line.strip() in ("[", "{"):
                hint = "This looks like one JSON document, not JSON Lines; rename the file to .json."
            items.append(_Item(number, problem=Problem(path, number, exc.colno, f"invalid JSON ({exc.msg})", hint)))
            continue
        if not isinstance(value, dict):
            hint = 'Each line must be a JSON object such as {"prompt": "...", "response": "..."}.'
            message = f"the line is {_kind(value)}, expected a JSON object"
            items.append(_Item(number, problem=Problem(path, number, None, message, hint)))
            continue
        items.append(_Item(number, value))
    return items


def _json_items(path: str, text: str) -> list[_Item]:
    """Records of a JSON array of objects, numbered as rows from 1."""
    try:
        value = json.loads(text, parse_constant=lambda _: None)
    except json.JSONDecodeError as exc:
        hint = "Check for a missing quote, comma or bracket."
        if exc.msg == "Extra data":
            hint = "The file holds several JSON values; if it has one object per line, rename it to .jsonl."
        return [_Item(exc.lineno, problem=Problem(path, exc.lineno, exc.colno, f"invalid JSON ({exc.msg})", hint))]
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


def _parquet_items(path: str, data: bytes) -> list[_Item]:
    """Records of a Parquet file, numbered as rows from 1, with values made JSON-serialisable."""
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        return [_Item(None, problem=Problem(path, None, None, f"not a readable Parquet file ({exc})", ""))]
    return [_Item(i, _jsonable(record)) for i, record in enumerate(table.to_pylist(), 1)]


def _read_items(path: str, data: bytes, file_format: str) -> list[_Item]:
    if file_format == "parquet":
        return _parquet_items(path, data)
    text = _decode(path, data)
    readers = {"csv": _csv_items, "jsonl": _jsonl_items, "json": _json_items}
    return readers[file_format](path, text)


def _unit(file_format: str) -> str:
    return "row" if file_format in ("json", "parquet") else "line"


def _read_file(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise DataError(path, None, None, f"cannot read the file ({exc.strerror})", "Check the path.") from exc


def read_records(path: str | Path, file_format: str | None = None) -> list[dict[str, Any]]:
    """Every record of the file as a dict, raising DataError at the first unreadable line or row."""
    file_format = file_format or detect_format(path)
    items = _read_items(str(path), _read_file(path), file_format)
    for item in items:
        if item.problem is not None:
            raise item.problem.error()
    return [item.record for item in items]


def _columns_of(records: list[dict[str, Any]]) -> list[str]:
    """Column names in order of first appearance across all records."""
    return list(dict.fromkeys(key for record in records for key in record))


def preview_records(path: str | Path, n: int = 20) -> pd.DataFrame:
    """The first ``n`` readable records as a DataFrame (columns as in the file) for the import preview."""
    items = _read_items(str(path), _read_file(path), detect_format(path))
    records = [item.record for item in items if item.record is not None][:n]
    if not records and any(item.problem for item in items):
        raise next(item.problem for item in items if item.problem).error()
    return pd.DataFrame.from_records(records, columns=_columns_of(records))


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
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise _RowError(key, f"the text is not valid JSON ({exc.msg})", "Write the list as JSON.") from exc
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


def response_turn_index(schema: str, turns: list[dict[str, Any]]) -> int | None:
    """Index of the last assistant turn in a chat (``messages`` or ``sharegpt``), the one that is the response."""
    _, role_key, _ = CHAT_KEYS[schema]
    roles = SHAREGPT_ROLES if schema == "sharegpt" else {}
    found = None
    for i, turn in enumerate(turns):
        if isinstance(turn, dict) and roles.get(turn.get(role_key), turn.get(role_key)) == "assistant":
            found = i
    return found


def _chat_turns(schema: str, record: dict[str, Any]) -> list[dict[str, str]]:
    """Validated turns of a chat record as {"role", "content"}; null content reads as '' (tool calls)."""
    key, role_key, text_key = CHAT_KEYS[schema]
    turns = []
    for i, turn in enumerate(_nested_list(record, key)):
        label = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise _RowError(
                label, f"the turn is {_kind(turn)}, expected an object", f"Give it {role_key} and {text_key}."
            )
        role = _text(turn, role_key, f"{label}.{role_key}")
        content = _optional_text(turn, text_key, f"{label}.{text_key}")
        turns.append({"role": SHAREGPT_ROLES.get(role, role) if schema == "sharegpt" else role, "content": content})
    return turns


def _parse_chat(schema: str, record: dict[str, Any]) -> tuple[list[dict[str, str]], str]:
    """(prompt_messages, response): the last assistant turn is the response, every turn before it the prompt."""
    key, _, text_key = CHAT_KEYS[schema]
    turns = _chat_turns(schema, record)
    last = response_turn_index("messages", turns)  # turns already carry chat roles, whatever the schema
    if last is None:
        hint = "The last assistant turn is the response being judged; add one or remove the row."
        raise _RowError(key, "the conversation has no assistant turn", hint)
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
    if schema == "alpaca":
        content = join_instruction(_prompt_text(record, "instruction"), _optional_text(record, "input"))
        return [(record, user_turn(content), _text(record, "output"))]
    if schema in ("prompt_response", "prompt_completion"):
        return [(record, user_turn(_prompt_text(record, "prompt")), _text(record, RESPONSE_COLUMNS[schema]))]
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
class _Scan:
    file_format: str
    schema: str | None
    columns: list[str]
    rows: list[Row]
    content_hash: str


def _file_problems(path: str, fmt: str, items: list[_Item], mapping: ColumnMapping | None) -> tuple[str | None, list]:
    """(schema, problems) for the file as a whole: no rows, unrecognised columns, mapped columns not in the file."""
    records = [item.record for item in items if item.record is not None]
    columns = _columns_of(records)
    first = next((item.location for item in items), None)
    where = 1 if fmt == "csv" else first  # a CSV file's columns are on its header line
    unit = _unit(fmt)
    if not items:
        return None, [Problem(path, None, None, "the file has no rows", "Add at least one row and import it again.")]
    if not records:
        return None, []  # every record is already a problem
    if mapping is not None:
        missing = [c for c in mapping.columns if c not in columns]
        if missing:
            message = f"the mapped column is not in the file (columns: {', '.join(columns)})"
            return None, [Problem(path, where, missing[0], message, "Map one of the file's columns.", unit)]
        return "mapped", []
    schema = detect_schema(columns)
    if schema is None:
        message = f"the columns do not match a known format (columns: {', '.join(columns)})"
        return None, [Problem(path, where, None, message, _unrecognised_hint(columns), unit)]
    return schema, []


def _scan(path: str | Path, mapping: ColumnMapping | None, max_problems: int) -> tuple[_Scan | None, list[Problem]]:
    """Read, recognise and validate a file, collecting up to ``max_problems`` problems in file order."""
    path = str(path)
    try:
        fmt = detect_format(path)
        data = _read_file(path)
        items = _read_items(path, data, fmt)
    except DataError as exc:
        return None, [exc.problem]
    schema, problems = _file_problems(path, fmt, items, mapping)
    if problems:
        return None, problems
    rows: list[Row] = []
    for position, item in enumerate(items):
        if len(problems) >= max_problems:
            break
        if item.problem is not None:
            problems.append(item.problem)
            continue
        try:
            parsed = _parse_record(schema, mapping, item.record, position)
        except _RowError as exc:
            problems.append(Problem(path, item.location, exc.column, exc.message, exc.hint, _unit(fmt)))
            continue
        for record, messages, response in parsed:
            rows.append(Row(len(rows), record, messages, render_prompt(messages), response))
    columns = _columns_of([item.record for item in items if item.record is not None])
    scan = _Scan(fmt, schema, columns, rows, hashlib.sha256(data).hexdigest())
    return scan, problems[:max_problems]


def validate(path: str | Path, mapping: ColumnMapping | None = None) -> list[Problem]:
    """Every problem in the file (up to MAX_PROBLEMS), in file order; an empty list means it imports cleanly."""
    return _scan(path, mapping, MAX_PROBLEMS)[1]


def load_dataset(path: str | Path, mapping: ColumnMapping | None = None, name: str | None = None) -> Dataset:
    """Read, recognise (or apply ``mapping``) and validate a file; raises DataError at its first problem."""
    scan, problems = _scan(path, mapping, 1)
    if problems:
        raise problems[0].error()
    return Dataset(
        name=name or Path(path).stem,
        source_path=str(path),
        file_format=scan.file_format,
        schema=scan.schema,
        mapping=mapping,
        rows=scan.rows,
        content_hash=scan.content_hash,
        columns=scan.columns,
    )
