"""Curation and export: every schema and format round-trips (load -> curate -> to_records -> write -> read back)."""

from __future__ import annotations

import csv
import json
import resource
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clear_core.data import ColumnMapping, Row, load_dataset
from clear_core.export import (
    ExportError,
    ExportPolicy,
    UnscoredRowsError,
    check_scored,
    curate,
    describe_unscored,
    export_bytes,
    pending_rows,
    resolve_format,
    row_list,
    summarize,
    to_records,
    write_records,
)

DEV = Path("/work/shared/data/dev")
FORMATS = ("jsonl", "json", "csv", "parquet")
POLICY = ExportPolicy(gamma=0.5, eta=0.8)
FIX = "Fixed: 4, «exact» 👍"


def write_input(path: Path, records: list[dict]) -> Path:
    """Write records the way other tools would (stdlib json/csv, pyarrow); CSV cells hold nested values as JSON."""
    fmt = path.suffix.lstrip(".")
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    elif fmt == "json":
        path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    elif fmt == "csv":
        columns = list(dict.fromkeys(k for r in records for k in r))
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            for r in records:
                writer.writerow({k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in r.items()})
    else:
        pq.write_table(pa.Table.from_pylist(records), path)
    return path


def read_back(path: Path) -> list[dict]:
    """Read an exported file with independent readers; CSV cells holding JSON lists/objects are decoded."""
    fmt = path.suffix.lstrip(".")
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    if fmt == "json":
        return json.loads(path.read_text(encoding="utf-8"))
    if fmt == "parquet":
        return pq.read_table(path).to_pylist()
    with open(path, newline="", encoding="utf-8") as f:
        return [
            {k: json.loads(v) if v.startswith(("[", "{")) else v for k, v in row.items()} for row in csv.DictReader(f)
        ]


def as_read_back(records: list[dict], fmt: str) -> list[dict]:
    """What a CSV reader returns for records: text cells (nested values stay decoded, see read_back)."""
    if fmt != "csv":
        return records
    return [
        {k: v if isinstance(v, list | dict) else "" if v is None else str(v) for k, v in r.items()} for r in records
    ]


def turn(role: str, content: str) -> dict:
    return {"role": role, "content": content}


# Each case flattens to three rows: row 0 is kept, row 1 filtered, row 2 corrected to FIX (see SCORES).
# The expected export is written out by hand.
CASES = {
    "alpaca": (
        [
            {"instruction": "Add 2 and 2.", "input": "", "output": "4", "src": "a"},
            {"instruction": "Spell cat.", "input": "", "output": "dog", "src": "b"},
            {"instruction": 'Quote "this", please', "input": "line 1\nline 2", "output": "5", "src": "c"},
        ],
        [
            {"instruction": "Add 2 and 2.", "input": "", "output": "4", "src": "a"},
            {"instruction": 'Quote "this", please', "input": "line 1\nline 2", "output": FIX, "src": "c"},
        ],
    ),
    "prompt_response": (
        [
            {"prompt": "Capital of France?", "response": "Paris", "id": "1"},
            {"prompt": "Capital of Japan?", "response": "Lyon", "id": "2"},
            {"prompt": "日本語で「猫」は?", "response": "犬", "id": "3"},
        ],
        [
            {"prompt": "Capital of France?", "response": "Paris", "id": "1"},
            {"prompt": "日本語で「猫」は?", "response": FIX, "id": "3"},
        ],
    ),
    "prompt_completion": (
        [
            {"prompt": "Once", "completion": " upon a time"},
            {"prompt": "Twice", "completion": "???"},
            {"prompt": "Thrice", "completion": " wrong"},
        ],
        [{"prompt": "Once", "completion": " upon a time"}, {"prompt": "Thrice", "completion": FIX}],
    ),
    "messages": (
        [
            {"messages": [turn("user", "Hi"), turn("assistant", "Hello")], "tag": "x"},
            {"messages": [turn("user", "Bye"), turn("assistant", "Hello")], "tag": "y"},
            {
                "messages": [
                    turn("system", "Be brief."),
                    turn("user", "2+2?"),
                    turn("assistant", "5"),
                    turn("user", "Sure?"),
                    turn("assistant", "Yes, 5"),
                ],
                "tag": "z",
            },
        ],
        [
            {"messages": [turn("user", "Hi"), turn("assistant", "Hello")], "tag": "x"},
            {
                "messages": [
                    turn("system", "Be brief."),
                    turn("user", "2+2?"),
                    turn("assistant", "5"),
                    turn("user", "Sure?"),
                    turn("assistant", FIX),
                ],
                "tag": "z",
            },
        ],
    ),
    "sharegpt": (
        [
            {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
            {"conversations": [{"from": "human", "value": "Sky?"}, {"from": "gpt", "value": "Green"}]},
            {
                "conversations": [
                    {"from": "system", "value": "Math tutor"},
                    {"from": "human", "value": "2+2?"},
                    {"from": "gpt", "value": "5"},
                    {"from": "human", "value": "thanks"},
                ]
            },
        ],
        [
            {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
            {
                "conversations": [
                    {"from": "system", "value": "Math tutor"},
                    {"from": "human", "value": "2+2?"},
                    {"from": "gpt", "value": FIX},
                    {"from": "human", "value": "thanks"},
                ]
            },
        ],
    ),
    "self_instruct": (
        [
            {
                "id": "t0",
                "instruction": "Sort the words.",
                "instances": [{"input": "b a", "output": "a b"}, {"input": "d c", "output": "x"}],
            },
            {"id": "t1", "instruction": "Name a colour.", "instances": [{"input": "", "output": "blue?"}]},
        ],
        [
            {"id": "t0", "instruction": "Sort the words.", "instances": [{"input": "b a", "output": "a b"}]},
            {"id": "t1", "instruction": "Name a colour.", "instances": [{"input": "", "output": FIX}]},
        ],
    ),
    "mapped": (
        [
            {"question": "1+1?", "answer": "2", "notes": "ok"},
            {"question": "2+1?", "answer": "7", "notes": "bad"},
            {"question": "3+1?", "answer": "five", "notes": "fix"},
        ],
        [{"question": "1+1?", "answer": "2", "notes": "ok"}, {"question": "3+1?", "answer": FIX, "notes": "fix"}],
    ),
}
MAPPING = ColumnMapping(prompt="question", response="answer")

SCORES = pd.DataFrame(
    {
        "row_index": [0, 1, 2],
        "confidence": [0.9, 0.2, 0.3],
        "correction_confidence": [0.1, 0.1, 0.95],
        "proposed_response": ["same", "other", FIX],
        "judge_prob": [0.2, 0.3, 0.9],
    }
)


def load(tmp_path: Path, schema: str, fmt: str):
    path = write_input(tmp_path / f"in.{fmt}", CASES[schema][0])
    return load_dataset(path, mapping=MAPPING if schema == "mapped" else None)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("schema", CASES)
def test_round_trip_in_the_inputs_own_schema_and_format(tmp_path, schema, fmt):
    ds = load(tmp_path, schema, fmt)
    assert ds.schema == schema
    curated = curate(ds.rows, SCORES, None, POLICY)
    assert [c.action for c in curated] == ["keep", "filter", "correct"]
    records = to_records(ds.schema, ds.file_format, curated, mapping=ds.mapping)
    out = write_records(records, tmp_path / f"out.{fmt}", "original", input_format=ds.file_format)
    assert read_back(out) == as_read_back(CASES[schema][1], fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_to_another_format(tmp_path, fmt):
    ds = load(tmp_path, "messages", "csv")
    records = to_records(ds.schema, ds.file_format, curate(ds.rows, SCORES, None, POLICY))
    out = write_records(records, tmp_path / f"converted.{fmt}", fmt)
    assert read_back(out) == as_read_back(CASES["messages"][1], fmt)


def test_unchanged_real_self_instruct_file_exports_identically(tmp_path):
    path = DEV / "self_instruct_seed_tasks.jsonl"
    ds = load_dataset(path)
    records = to_records(ds.schema, ds.file_format, curate(ds.rows, None, None, POLICY))
    out = write_records(records, tmp_path / "si.jsonl", "original", input_format=ds.file_format)
    assert read_back(out) == [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_self_instruct_task_with_every_instance_removed_is_dropped(tmp_path):
    ds = load(tmp_path, "self_instruct", "jsonl")
    decisions = pd.DataFrame({"row_index": [0, 1], "decision": ["remove", "remove"], "annotator": ["ann", "ann"]})
    records = to_records(ds.schema, ds.file_format, curate(ds.rows, None, decisions, POLICY))
    assert records == [CASES["self_instruct"][0][1]]


def test_real_gsm8k_first_50_rows_in_its_own_json_format(tmp_path):
    rows = json.loads((DEV / "gsm8k_train.json").read_text(encoding="utf-8"))[:50]
    path = tmp_path / "gsm8k_50.json"
    path.write_text(json.dumps(rows, indent=4), encoding="utf-8")
    ds = load_dataset(path)
    scores = pd.DataFrame(
        {
            "row_index": [3, 5, 7],
            "confidence": [0.1, 0.1, 0.95],
            "correction_confidence": [0.9, 0.2, 0.1],
            "proposed_response": ["Julie read 12 x 2 = 24 pages today.", None, "unused"],
        }
    )
    curated = curate(ds.rows, scores, None, POLICY)
    out = write_records(to_records(ds.schema, ds.file_format, curated), tmp_path / "curated.json")
    expected = [dict(r) for r in rows]
    expected[3]["output"] = "Julie read 12 x 2 = 24 pages today."
    del expected[5]
    text = out.read_text(encoding="utf-8")
    assert json.loads(text) == expected
    assert text.startswith('[\n  {\n    "instruction": ')
    assert summarize(curated) == {
        "total": 50,
        "kept": 49,
        "removed": 1,
        "corrected_auto": 1,
        "corrected_human": 0,
        "edited": 0,
        "unchanged": 48,
        "corrected": 1,
        "unscored": 47,
        "failed": 0,
    }


# -- curation rules -----------------------------------------------------------------------------------------


def rows(n: int) -> list[Row]:
    return [
        Row(i, {"prompt": f"p{i}", "response": f"r{i}"}, [turn("user", f"p{i}")], f"p{i}", f"r{i}") for i in range(n)
    ]


def test_human_decisions_override_automatic_actions():
    scores = pd.DataFrame(
        {
            "row_index": [0, 1, 2, 3, 4],
            "confidence": [0.1, 0.9, 0.9, 0.1, 0.9],
            "correction_confidence": [0.1, 0.95, 0.1, 0.1, 0.1],
            "proposed_response": ["model 0", "model 1", "model 2", "model 3", "model 4"],
        }
    )
    decisions = pd.DataFrame(
        {
            "row_index": [0, 1, 2, 3],
            "decision": ["accept", "reject", "remove", "edit"],
            "final_response": [None, None, None, "hand-written"],
            "annotator": ["ann", "bob", "ann", "bob"],
        }
    )
    curated = curate(rows(5), scores, decisions, POLICY)
    got = [(c.action, c.source, c.kept, c.final_response, c.annotator) for c in curated]
    assert got == [
        ("correct", "human", True, "model 0", "ann"),
        ("keep", "human", True, "r1", "bob"),
        ("filter", "human", False, "r2", "ann"),
        ("correct", "human", True, "hand-written", "bob"),
        ("keep", "auto", True, "r4", None),
    ]
    assert summarize(curated) == {
        "total": 5,
        "kept": 4,
        "removed": 1,
        "corrected_auto": 0,
        "corrected_human": 1,
        "edited": 1,
        "unchanged": 2,
        "corrected": 1,
        "unscored": 0,
        "failed": 0,
    }
    ignored = curate(rows(5), scores, decisions, ExportPolicy(gamma=0.5, eta=0.8, apply_decisions=False))
    assert [c.action for c in ignored] == ["filter", "correct", "keep", "filter", "keep"]


def test_only_reviewed_keeps_rows_with_a_decision():
    decisions = pd.DataFrame({"row_index": [1, 2], "decision": ["reject", "remove"], "annotator": ["a", "a"]})
    curated = curate(rows(4), None, decisions, ExportPolicy(gamma=0.5, eta=0.8, only_reviewed=True))
    assert [c.kept for c in curated] == [False, True, False, False]


def test_unscored_rows_and_missing_scores_are_kept():
    scores = pd.DataFrame(
        {"row_index": [1], "confidence": [float("nan")], "correction_confidence": [None], "proposed_response": [None]}
    )
    curated = curate(rows(2), scores, None, POLICY)
    assert [(c.action, c.source, c.kept) for c in curated] == [("keep", "none", True), ("keep", "auto", True)]
    assert curated[1].scores["confidence"] is None


def limited_run_scores(n_scored: int, failed: tuple[int, ...] = ()) -> pd.DataFrame:
    """Scores of a run that stopped after its first n_scored rows; rows in ``failed`` raised while scoring
    (all signals NULL, ``error`` set, as the store keeps them)."""
    frame = pd.DataFrame(
        {
            "row_index": range(n_scored),
            "confidence": [0.9] * n_scored,
            "correction_confidence": [0.1] * n_scored,
            "proposed_response": ["p"] * n_scored,
            "error": [None] * n_scored,
        }
    )
    for i in failed:
        frame.loc[i, ["confidence", "correction_confidence", "proposed_response", "error"]] = [
            None,
            None,
            None,
            "RuntimeError: CUDA out of memory",
        ]
    return frame


def test_rows_without_scores_are_counted_and_named_by_the_policy():
    scores = limited_run_scores(8, failed=(3,))
    decisions = pd.DataFrame({"row_index": [20], "decision": ["reject"], "annotator": ["ann"]})
    strict = curate(rows(30), scores, decisions, POLICY)
    assert POLICY.unscored == "fail"  # the default: never pass unscored rows as kept without a word
    assert [c.scoring for c in strict[:9]] == ["scored"] * 3 + ["failed"] + ["scored"] * 4 + ["unscored"]
    assert pending_rows(strict) == ([*range(8, 20), *range(21, 30)], [3])  # row 20 has a human decision
    assert summarize(strict)["unscored"] == 21 and summarize(strict)["failed"] == 1
    with pytest.raises(UnscoredRowsError) as refused:
        check_scored(strict, POLICY)
    assert str(refused.value) == (
        "21 of 30 rows are not scored (rows 8, 9, 10, 11, 12 and 16 more) and 1 failed scoring (row 3)"
    )
    assert (refused.value.unscored[:2], refused.value.failed, refused.value.total) == ([8, 9], [3], 30)

    kept = curate(rows(30), scores, decisions, ExportPolicy(gamma=0.5, eta=0.8, unscored="keep"))
    assert all(c.kept for c in kept) and summarize(kept)["kept"] == 30 and summarize(kept)["unscored"] == 21
    assert [c.source for c in kept[2:5]] == ["auto", "none", "auto"]  # a failed row gets no automatic action
    check_scored(kept, ExportPolicy(gamma=0.5, eta=0.8, unscored="keep"))

    dropped = curate(rows(30), scores, decisions, ExportPolicy(gamma=0.5, eta=0.8, unscored="drop"))
    assert [c.row_index for c in dropped if c.kept] == [0, 1, 2, 4, 5, 6, 7, 20]
    assert summarize(dropped)["removed"] == 22 and summarize(dropped)["unscored"] == 21

    # only scores decide automatic actions: without them (or with only reviewed rows) nothing is refused
    check_scored(strict, ExportPolicy(gamma=0.5, eta=0.8, apply_auto=False))
    check_scored(strict, ExportPolicy(gamma=0.5, eta=0.8, only_reviewed=True))
    complete = curate(rows(8), limited_run_scores(8), None, POLICY)
    check_scored(complete, POLICY)
    assert pending_rows(complete) == ([], [])


def test_the_unscored_message_reads_well():
    assert describe_unscored([4], [], 5) == "1 of 5 rows is not scored (row 4)"
    assert describe_unscored([], [0, 1], 5) == "2 of 5 rows failed scoring (rows 0, 1)"
    assert row_list(list(range(1000, 3000))) == "rows 1000, 1001, 1002, 1003, 1004 and 1,995 more"
    with pytest.raises(ValueError, match="unscored='skip'"):
        ExportPolicy(gamma=0.5, eta=0.8, unscored="skip")


def test_automatic_actions_can_be_switched_off():
    curated = curate(rows(3), SCORES, None, ExportPolicy(gamma=0.5, eta=0.8, apply_auto=False))
    assert [(c.action, c.source, c.kept, c.final_response) for c in curated] == [
        ("keep", "none", True, "r0"),
        ("keep", "none", True, "r1"),
        ("keep", "none", True, "r2"),
    ]


def test_a_correction_needs_a_proposal():
    scores = pd.DataFrame(
        {
            "row_index": [0, 1],
            "confidence": [0.2, 0.9],
            "correction_confidence": [0.99, 0.99],
            "proposed_response": ["", None],
        }
    )
    assert [c.action for c in curate(rows(2), scores, None, POLICY)] == ["filter", "keep"]


def test_thresholds_move_the_actions():
    strict = curate(rows(3), SCORES, None, ExportPolicy(gamma=0.95, eta=0.99))
    assert [c.action for c in strict] == ["filter", "filter", "filter"]


def test_rows_from_the_store_as_a_frame():
    frame = pd.DataFrame(
        {
            "row_index": [0, 1, 2],
            "record": [json.dumps({"prompt": f"p{i}", "response": f"r{i}"}) for i in range(3)],
            "response": ["r0", "r1", "r2"],
        }
    )
    from_frame = curate(frame, SCORES, None, POLICY)
    assert [(c.record, c.final_response, c.kept) for c in from_frame] == [
        (r.record, c.final_response, c.kept) for r, c in zip(rows(3), curate(rows(3), SCORES, None, POLICY))
    ]


@pytest.mark.parametrize(
    ("decision", "final_response"), [("accept", None), ("edit", None), ("undo", None), ("approve", "x")]
)
def test_decisions_that_cannot_be_applied_are_refused(decision, final_response):
    decisions = pd.DataFrame({"row_index": [0], "decision": [decision], "final_response": [final_response]})
    with pytest.raises(ValueError, match="Row 0"):
        curate(rows(1), None, decisions, POLICY)


def test_all_rows_and_scores_columns(tmp_path):
    ds = load(tmp_path, "prompt_response", "jsonl")
    decisions = pd.DataFrame({"row_index": [1], "decision": ["reject"], "annotator": ["ann"]})
    curated = curate(ds.rows, SCORES, decisions, POLICY)
    records = to_records(ds.schema, ds.file_format, curated, include_scores=True, all_rows=True)
    assert [(r["id"], r["clear_kept"], r["clear_action"]) for r in records] == [
        ("1", True, "keep"),
        ("2", True, "keep"),
        ("3", True, "correct"),
    ]
    signals = [
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
    ]
    expected_columns = {"clear_confidence", "clear_action", "clear_proposed_response", "clear_decision"}
    expected_columns |= {"clear_annotator", "clear_reason", "clear_note", "clear_kept"} | {
        f"clear_{s}" for s in signals
    }
    assert set(records[0]) - {"prompt", "response", "id"} == expected_columns
    assert (records[1]["clear_decision"], records[1]["clear_annotator"]) == ("reject", "ann")
    assert (records[2]["clear_confidence"], records[2]["clear_judge_prob"]) == (0.3, 0.9)
    assert records[2]["clear_proposed_response"] == FIX and records[2]["response"] == FIX
    assert records[0]["clear_pmi"] is None
    for fmt in FORMATS:
        out = write_records(records, tmp_path / f"scored.{fmt}", fmt)
        assert [r["id"] for r in read_back(out)] == ["1", "2", "3"]


def test_all_rows_keeps_dropped_rows_in_input_order(tmp_path):
    ds = load(tmp_path, "self_instruct", "json")
    records = to_records(ds.schema, ds.file_format, curate(ds.rows, SCORES, None, POLICY), all_rows=True)
    instances = [(i["output"], i["clear_kept"], i["clear_action"]) for r in records for i in r["instances"]]
    assert instances == [("a b", True, "keep"), ("x", False, "filter"), (FIX, True, "correct")]


def test_mapped_export_needs_the_mapping(tmp_path):
    ds = load(tmp_path, "mapped", "jsonl")
    with pytest.raises(ValueError, match="ColumnMapping"):
        to_records(ds.schema, ds.file_format, curate(ds.rows, SCORES, None, POLICY))


# -- writing ------------------------------------------------------------------------------------------------


def test_export_bytes_match_the_written_file(tmp_path):
    records = [{"prompt": "a,b", "messages": [turn("user", "ü")], "n": 1, "ok": True, "none": None}]
    for fmt in FORMATS:
        path = write_records(records, tmp_path / f"x.{fmt}", fmt)
        assert path.read_bytes() == export_bytes(records, fmt)
    with open(tmp_path / "x.csv", newline="", encoding="utf-8") as f:
        cells = next(csv.DictReader(f))
    assert cells == {
        "prompt": "a,b",
        "messages": '[{"role": "user", "content": "ü"}]',
        "n": "1",
        "ok": "true",
        "none": "",
    }
    assert "ü" in (tmp_path / "x.json").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("fmt", "records"),
    [
        ("json", [{"a": "fine"}, {"a": object()}]),
        ("jsonl", [{"a": float("nan")}]),
        ("csv", [{"a": 1}, {"a": object()}]),
        ("parquet", [{"a": "text"}, {"a": [1, 2]}]),
    ],
)
def test_failed_export_leaves_nothing_behind(tmp_path, fmt, records):
    target = tmp_path / "out" / f"curated.{fmt}"
    target.parent.mkdir()
    with pytest.raises(ExportError):
        write_records(records, target, fmt)
    assert list(target.parent.iterdir()) == []
    target.write_bytes(b"previous export")
    with pytest.raises(ExportError):
        write_records(records, target, fmt)
    assert [p.name for p in target.parent.iterdir()] == [target.name]
    assert target.read_bytes() == b"previous export"


def test_a_write_that_fails_on_disk_names_the_path_and_the_cause(tmp_path):
    records = [{"instruction": "x" * 200, "output": "y"}] * 50  # about 11 kB
    target = tmp_path / "curated.json"
    target.write_bytes(b"previous export")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))  # files stop growing at 4 kB, like a full disk
    try:
        with pytest.raises(ExportError) as failed:
            write_records(records, target)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert str(failed.value) == (
        f"Could not write the export to {target}: the file would exceed the largest file size allowed here. "
        "Nothing was written."
    )
    assert [p.name for p in tmp_path.iterdir()] == ["curated.json"]  # no temporary file left behind
    assert target.read_bytes() == b"previous export"

    with pytest.raises(ExportError, match=f"the folder {tmp_path / 'missing'} does not exist"):
        write_records(records, tmp_path / "missing" / "curated.json")
    with pytest.raises(ExportError, match="it is a folder"):
        write_records(records, tmp_path, "json")


def test_empty_export_writes_valid_files(tmp_path):
    for fmt in FORMATS:
        assert read_back(write_records([], tmp_path / f"empty.{fmt}", fmt)) == []


def test_resolve_format():
    assert resolve_format("original", "parquet") == "parquet"
    assert resolve_format("original", None, "x.ndjson") == "jsonl"
    assert resolve_format("csv", "json") == "csv"
    with pytest.raises(ValueError, match="xlsx"):
        resolve_format("xlsx")
