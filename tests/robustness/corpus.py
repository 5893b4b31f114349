"""Hostile import inputs, generated: each case is a small file and what importing it must do.

``python -m tests.robustness.corpus DIR`` writes every file into DIR, to try them by hand (app or CLI).
An ``Imported`` case loads with that many rows (and the duplicates or notice named); a ``Refused`` case raises a
DataError whose message starts with the file name and the place (``line 3``, ``row 2``) and names the column.
"""

from __future__ import annotations

import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


@dataclass(frozen=True)
class Imported:
    rows: int
    duplicates: str = ""  # data.describe_duplicates of what was found, when there are any
    notice: str = ""  # a fragment of a notice
    responses: tuple[str, ...] | None = None  # every row's response, when the text itself is the point
    prompts: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Refused:
    where: str  # 'line 3', 'row 2', '' for the file as a whole
    column: str | int | None  # a column name, a character position, or None
    fragment: str  # a fragment of the message (the cause in plain words)
    hint: str = ""  # a fragment of what to do


@dataclass(frozen=True)
class Case:
    name: str  # the file name; its extension picks the format
    content: bytes = field(repr=False)
    expected: Imported | Refused


def jsonl(*records: dict) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


PR = {"prompt": "What is 2+2?", "response": "4"}
DEEP = "[" * 5000 + "]" * 5000
CASES = [
    # -- the classics
    Case("empty.jsonl", b"", Refused("", None, "the file has no rows")),
    Case("header_only.csv", b"prompt,response\n", Refused("", None, "the file has no rows")),
    Case("bom.csv", "\ufeffprompt,response\nq,a\n".encode(), Imported(1, prompts=("q",))),
    Case("bom.jsonl", b"\xef\xbb\xbf" + jsonl(PR), Imported(1)),
    Case("utf16.jsonl", json.dumps(PR).encode("utf-16"), Refused("line 1", None, "UTF-16", "UTF-8")),
    Case("utf16.csv", "prompt,response\nq,a\n".encode("utf-16"), Refused("line 1", None, "UTF-16", "UTF-8")),
    Case("latin1.csv", "prompt,response\nq,a\ncafé,x\n".encode("latin-1"), Refused("line 3", None, "not valid UTF-8")),
    Case("wrong_type.jsonl", jsonl(PR, {"prompt": "p", "response": 5}), Refused("line 2", "response", "a number")),
    Case(
        "list_response.json",
        json.dumps([{"prompt": "p", "response": ["a"]}]).encode(),
        Refused("row 1", "response", "a list"),
    ),
    Case("missing_response.jsonl", jsonl(PR, {"prompt": "p"}), Refused("line 2", "response", "missing")),
    Case("unknown_columns.csv", b"a,b\n1,2\n", Refused("line 1", None, "do not match a known format", "map")),
    Case(
        "missing_column.jsonl",
        jsonl({"prompt": "p", "answer_text": "a"}),
        Refused("line 1", None, "(columns: prompt, answer_text)", "--prompt-column/--response-column"),
    ),
    Case("blank_response.csv", b"prompt,response\nq,\n", Imported(1, responses=("",))),
    Case("blank_prompt.csv", b"prompt,response\nq,a\n  ,b\n", Refused("line 3", "prompt", "the prompt is empty")),
    Case("huge_field.csv", b"prompt,response\nq," + b"x" * 2_000_000 + b"\n", Imported(1)),
    Case("mixed_endings.csv", b"prompt,response\r\nq1,a1\nq2,a2\rq3,a3\r\n", Imported(3, responses=("a1", "a2", "a3"))),
    Case(
        "mixed_endings.jsonl",
        jsonl(PR).replace(b"\n", b"\r\n") + jsonl(PR).replace(b"\n", b"\r") + jsonl(PR),
        Imported(3, duplicates="2 exact duplicate rows (lines 2, 3)"),
    ),
    Case("crlf_quoted.csv", b'prompt,response\r\n"two\r\nlines","a, b"\r\n', Imported(1, prompts=("two\r\nlines",))),
    Case("trailing_comma.json", b'[{"prompt": "p", "response": "r"},]', Refused("line 1", 35, "invalid JSON")),
    Case("trailing_garbage.json", b'[{"prompt": "p", "response": "r"}] xyz', Refused("line 1", 36, "Extra data")),
    Case("trailing_garbage.jsonl", b'{"prompt": "p", "response": "r"} junk\n', Refused("line 1", 34, "Extra data")),
    Case("object.json", json.dumps(PR).encode(), Refused("line 1", None, "expected an array of rows")),
    Case("too_many_values.csv", b"prompt,response\nq,a,extra\n", Refused("line 2", None, "3 values but the header")),
    Case("nul_escape.jsonl", jsonl({"prompt": "p", "response": "a\u0000b"}), Imported(1, responses=("a\x00b",))),
    Case("nul_byte.csv", b"prompt,response\nq,a\x00b\n", Imported(1, responses=("a\x00b",))),
    Case(
        "u2028.jsonl",
        '{"prompt": "p", "response": "a\u2028b\u2029c"}\n'.encode(),
        Imported(1, responses=("a\u2028b\u2029c",)),
    ),
    Case("u2028.csv", "prompt,response\nq,a\u2028b\n".encode(), Imported(1, responses=("a\u2028b",))),
    # -- item 3: an unclosed quote must not swallow the lines after it; quoted line breaks still import
    Case(
        "unclosed_quote.csv",
        b'prompt,response\nq1,a1\nq2,"unclosed\nq3,a3\n',
        Refused("line 3", "response", "never closed", "Close the quote"),
    ),
    Case(
        "unclosed_quote_crlf.csv",
        b'prompt,response\r\nq1,a1\r\n"q2\r\nstill q2",b\r\n"open,a3\r\nq4,a4\r\n',
        Refused("line 5", "prompt", "never closed"),
    ),
    Case("unclosed_quote_header.csv", b'prompt,"response\nq1,a1\n', Refused("line 1", 8, "never closed")),
    Case(
        "quote_then_text.csv",
        b'prompt,response\nq1,"a1" and more\nq2,a2\n',
        Refused("line 2", None, "followed by more text"),
    ),
    Case(
        "multiline_quoted.csv",
        b'prompt,response\n"line one\nline two","a ""quoted"" answer"\nq2,a2\n',
        Imported(2, prompts=("line one\nline two", "q2"), responses=('a "quoted" answer', "a2")),
    ),
    # -- item 5: causes that used to hide behind RecursionError / UnicodeEncodeError
    Case(
        "deep.jsonl",
        jsonl(PR) + b'{"prompt": "p", "response": "r", "x": ' + DEEP.encode() + b"}\n",
        Refused("line 2", 138, "nests more than 100 levels"),
    ),
    Case(
        "deep.json",
        b'[\n{"prompt": "p", "response": "r", "x": ' + DEEP.encode() + b"}\n]",
        Refused("line 2", 138, "nests more than 100 levels"),
    ),
    Case(
        "deep_parsed.jsonl",
        b'{"prompt": "p", "response": "r", "x": ' + b"[" * 300 + b"]" * 300 + b"}\n",
        Refused("line 1", "x", "nests more than 100 levels"),
    ),
    Case(
        "lone_surrogate.jsonl",
        jsonl(PR) + b'{"prompt": "p", "response": "x\\ud800y"}\n',
        Refused("line 2", "response", "\\ud800", "Remove the escape"),
    ),
    Case(
        "lone_low_surrogate.json",
        b'[{"messages": [{"role": "user", "content": "\\udc00"}, {"role": "assistant", "content": "a"}]}]',
        Refused("row 1", "messages[0].content", "\\udc00"),
    ),
    Case(
        "surrogate_pair.jsonl",
        b'{"prompt": "p", "response": "\\ud83d\\ude00"}\n',
        Imported(1, responses=("\U0001f600",)),
    ),
    # -- item 6: quiet changes
    Case(
        "duplicate_key.jsonl",
        jsonl(PR) + b'{"prompt": "a", "prompt": "b", "response": "r"}\n',
        Refused("line 2", "prompt", 'the key "prompt" twice'),
    ),
    Case(
        "duplicate_nested_key.json",
        b'[{"messages": [{"role": "user", "role": "system", "content": "q"}, {"role": "assistant", "content": "a"}]}]',
        Refused("row 1", "messages[0]", 'the key "role" twice'),
    ),
    Case(
        "duplicate_rows.jsonl",
        jsonl(PR, {"prompt": "other", "response": "x"}, PR, {"response": "4", "prompt": "What is 2+2?"}),
        Imported(4, duplicates="2 exact duplicate rows (lines 3, 4)"),
    ),
    Case(
        "duplicate_rows.csv",
        b"prompt,response\nq,a\nq,a\nq,b\n",
        Imported(3, duplicates="1 exact duplicate row (line 3)"),
    ),
    Case(
        "nan.jsonl",
        b'{"prompt": "p", "response": "r", "score": 1}\n{"prompt": "q", "response": "r", "score": NaN}\n',
        Imported(
            2, notice="1 NaN or Infinity value (the first on line 2), which JSON does not allow, was read as null"
        ),
    ),
    Case(
        "nan.parquet",
        parquet(pa.table({"prompt": ["p", "q"], "response": ["r", "s"], "score": [float("nan"), float("inf")]})),
        Imported(2, notice='column "score" has 2 NaN or infinite values; they were read as null'),
    ),
    Case(
        "binary_text.parquet",
        parquet(pa.table({"prompt": ["p"], "response": ["r"], "blob": [b"text"]})),
        Imported(1, notice='column "blob" holds binary values'),
    ),
    Case(
        "binary_bytes.parquet",
        parquet(pa.table({"prompt": ["p", "q"], "response": ["r", "s"], "blob": [b"ok", b"\xff\xfe"]})),
        Refused("row 2", "blob", "binary data that is not UTF-8 text"),
    ),
    # -- item 7: formats people have
    Case(
        "sharegpt_roles.jsonl",
        jsonl(
            *[
                {"conversations": [{"from": "Human", "value": f"q{i}"}, {"from": name, "value": f"a{i}"}]}
                for i, name in enumerate(["GPT", "model", "chatgpt", "bing", "Assistant"])
            ]
        ),
        Imported(5, responses=("a0", "a1", "a2", "a3", "a4")),
    ),
    Case(
        "sharegpt_unknown_role.jsonl",
        jsonl({"conversations": [{"from": "human", "value": "q"}, {"from": "robot", "value": "a"}]}),
        Refused("line 1", "conversations", '"robot"', "gpt, chatgpt, model"),
    ),
    Case(
        "content_parts.jsonl",
        jsonl(
            {
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "Look:"}, {"type": "text", "text": "2+2?"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": "4"}]},
                ]
            }
        ),
        Imported(1, prompts=("Look:\n2+2?",), responses=("4",)),
    ),
    Case(
        "content_image.jsonl",
        jsonl(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is this?"},
                            {"type": "image_url", "image_url": {"url": "x.png"}},
                        ],
                    },
                    {"role": "assistant", "content": "A cat."},
                ]
            }
        ),
        Refused("line 1", "messages[0].content[1]", '"image_url"', "Remove the parts that are not text"),
    ),
    Case(
        "gpteacher.json",
        json.dumps([{"instruction": "Sum.", "input": "1 2", "response": "3"}]).encode(),
        Imported(1, prompts=("Sum.\n\n1 2",), responses=("3",)),
    ),
    Case(
        "dolly.jsonl",
        jsonl({"instruction": "Who?", "context": "Ada wrote it.", "response": "Ada", "category": "qa"}),
        Imported(1, prompts=("Who?\n\nAda wrote it.",)),
    ),
    Case("question_answer.csv", b"question,answer\n2+2?,4\n", Imported(1, prompts=("2+2?",), responses=("4",))),
]


def write_corpus(directory: str | Path) -> list[Path]:
    """Every case's file in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for case in CASES:
        path = directory / case.name
        path.write_bytes(case.content)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_corpus(sys.argv[1] if len(sys.argv) > 1 else "robustness-corpus"):
        print(written)
