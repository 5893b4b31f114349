"""Ingest and bulk-action speed at scale: worker chunks into the store, query-wide decisions, single decisions.

    .venv/bin/python bench/ingest_speed.py --rows 10000 100000
    flock /tmp/heavy.lock .venv/bin/python bench/ingest_speed.py --rows 1000000 --ingest-rows 200000
    .venv/bin/python bench/ingest_speed.py --rows 100000 --compare /tmp/base11b   # before (that tree) vs after

Ingest goes the owner's way: chunk files written in the worker's format (JSON Lines, ASCII-only, ``chunk_rows``
rows each, one row in a hundred failed) into a real run directory, then ``runs.ingest`` until none is left, as
``runs.progress`` does when the owner catches up. The dataset has ``rows`` rows; ``ingest_rows`` of them (the end
of the run: every other row is stored beforehand, untimed) are ingested, so a slow old path can be measured on a
slice of a 1M-row run. Bulk actions run on a fully scored dataset whose correction confidences put 3.4% of the
rows above η = 0.7 (34k rows at 1M): bulk accept (``accept_proposals``), its undo, removing every row a filter
selects (``decide_query``), applying a decision to 50 duplicates, one decision (``record_decision``, median of
20) and ``review_progress``.

Data: Alpaca-like rows cycled from GSM8K (/work/shared/data/dev), each made distinct by its index. A dataset is
built once per (code, size) through the store API into a cache folder and copied for each measurement.
``measure_ingest`` and ``measure_bulk`` return dicts for bench/scale.py; ``--compare DIR`` runs this script once
per repeat with PYTHONPATH=DIR (the old code) and once without, alternating, and prints both.
Run anything at 100k rows or more under ``flock /tmp/heavy.lock``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # appended, so PYTHONPATH=<old tree> runs the old code with this script

import numpy as np  # noqa: E402
from scale import alpaca_dataset  # noqa: E402  (bench/scale.py, beside this script: the generated rows)

from clear_core import migrations, permissions, runs  # noqa: E402
from clear_core.store import SCORE_FIELDS, ReviewQuery, Store, StoreError  # noqa: E402

GSM8K = ROOT.parent / "shared" / "data" / "dev" / "gsm8k_train.json"
CACHE = Path(os.environ.get("CLEAR_BENCH_CACHE", Path(tempfile.gettempdir()) / "clear-bench-ingest"))
LEAD = permissions.Actor("bench", "bench", "lead")
GAMMA, ETA = 0.5, 0.7  # γ Auto-Filter, η Auto-Correct: the Review page's bulk accept at η = 0.7
ACCEPT_SHARE = 0.034  # rows with correction_confidence > η: 34k of 1M
PROPOSAL_SHARE = 0.2  # rows with a proposal at all


def _schema_key() -> str:
    """The schema the cached datasets are written in (old and new code share them while their schemas agree)."""
    versions = ",".join(str(v) for v, _ in migrations.MIGRATIONS)
    return "v" + hashlib.sha1(versions.encode()).hexdigest()[:10]


def _gsm8k() -> list[dict]:
    return json.loads(GSM8K.read_text(encoding="utf-8"))


def score_records(row_indices, seed: int = 0) -> list[dict]:
    """Score records as the worker writes them: every signal, a proposal on a fifth of the rows, ACCEPT_SHARE of
    the rows above η, and one row in a hundred failed."""
    rows = np.asarray(list(row_indices), dtype=np.int64)
    rng = np.random.default_rng(seed)
    n = len(rows)
    u = rng.random(n)
    signals = rng.random((n, len(SCORE_FIELDS))).tolist()
    confidence = rng.beta(5, 2, n).tolist()
    tokens = rng.integers(5, 400, n).tolist()
    arithmetic = rng.integers(0, 2, n).tolist()
    high, low = (0.7 + 0.3 * rng.random(n) + 1e-9).tolist(), (0.7 * rng.random(n)).tolist()
    outputs = [r["output"] for r in _gsm8k()]
    records = []
    for k, i in enumerate(rows.tolist()):
        if i % 100 == 99:
            records.append({"row_index": i, "error": "RuntimeError: CUDA error: an illegal memory access"})
            continue
        record = {"row_index": i, **dict(zip(SCORE_FIELDS, signals[k], strict=True))}
        record["n_response_tokens"], record["arithmetic_errors"] = tokens[k], arithmetic[k]
        record["confidence"] = confidence[k]
        has_proposal = u[k] < PROPOSAL_SHARE
        record["proposed_response"] = outputs[(i * 7) % len(outputs)] if has_proposal else None
        if u[k] < ACCEPT_SHARE:
            record["correction_confidence"] = high[k]
        else:
            record["correction_confidence"] = low[k] if has_proposal else None
        records.append(record)
    return records


def _template(n_rows: int, scored: bool) -> Path:
    """A cached database with one dataset of n_rows (and, if ``scored``, one run scoring all of it)."""
    path = CACHE / f"{_schema_key()}-{n_rows}-{'scored' if scored else 'bare'}.duckdb"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    for older in sorted(CACHE.glob(f"v*-{n_rows}-{path.stem.rsplit('-', 1)[1]}.duckdb")):
        shutil.copyfile(older, tmp)  # the same data in another schema: opening it upgrades it, as a user's file
        try:
            Store(tmp).close()
        except StoreError:  # written by newer code
            tmp.unlink()
            continue
        os.replace(tmp, path)
        return path
    bare = _template(n_rows, scored=False) if scored else None
    if bare is not None:
        shutil.copyfile(bare, tmp)
    with Store(tmp) as store:
        dataset_id = (
            store.add_dataset(alpaca_dataset(n_rows, name=f"bench-{n_rows}.json", file_format="json"))
            if bare is None
            else 1
        )
        if scored:
            run_id = store.create_run(dataset_id, "bench-model", {"bench": True})
            for start in range(0, n_rows, 200_000):
                store.add_scores(run_id, score_records(range(start, min(n_rows, start + 200_000)), seed=start))
            store.set_run_status(run_id, "done")
    os.replace(tmp, path)
    return path


def _copy(template: Path, where: Path) -> Path:
    db = where / "curation.duckdb"
    shutil.copyfile(template, db)
    return db


def _write_chunks(directory: Path, records: list[dict], chunk_rows: int) -> int:
    """Chunk files exactly as handoff.write_chunk writes them (atomic, ASCII-only JSON Lines), numbered in order."""
    chunks = directory / "chunks"
    chunks.mkdir(parents=True, exist_ok=True)
    n = 0
    for n, start in enumerate(range(0, len(records), chunk_rows), start=1):
        text = "".join(json.dumps(r, ensure_ascii=True) + "\n" for r in records[start : start + chunk_rows])
        (chunks / f"chunk-{n:015d}-{os.getpid()}.jsonl").write_text(text, encoding="ascii")
    return n


def measure_ingest(n_rows: int, ingest_rows: int | None = None, chunk_rows: int = 8) -> dict:
    """Seconds and rows/s for ``runs.ingest`` to take ``ingest_rows`` rows (default all) of an n_rows run from chunk
    files of ``chunk_rows`` rows into the store; the run's other rows are stored beforehand."""
    ingest_rows = n_rows if ingest_rows is None else min(ingest_rows, n_rows)
    template = _template(n_rows, scored=False)
    with tempfile.TemporaryDirectory(prefix="clear-bench-") as tmp:
        db = _copy(template, Path(tmp))
        with Store(db) as store:
            dataset_id = int(store.list_datasets()["dataset_id"][0])
            run_id = store.create_run(dataset_id, "bench-model", {"bench": True})
            directory = Path(tmp) / "run"
            store.set_run_work_dir(run_id, str(directory))
            for start in range(ingest_rows, n_rows, 200_000):  # the rest of the run, already stored
                store.add_scores(run_id, score_records(range(start, min(n_rows, start + 200_000)), seed=start))
            n_chunks = _write_chunks(directory, score_records(range(ingest_rows), seed=1), chunk_rows)
            started = time.perf_counter()
            added = 0
            while True:
                n = runs.ingest(store, run_id)
                added += n
                if n == 0:
                    break
            seconds = time.perf_counter() - started
            assert added == ingest_rows, (added, ingest_rows)
            assert store.scored_count(run_id) + store.failed_count(run_id) == n_rows
            # the steady state: one chunk of a running worker arriving at a full run
            one = score_records(range(chunk_rows), seed=2)
            _write_chunks(directory, one, chunk_rows)
            one_started = time.perf_counter()
            runs.ingest(store, run_id)
            one_chunk_ms = (time.perf_counter() - one_started) * 1000
            progress_started = time.perf_counter()  # what the Run page polls every half second
            runs.progress(store, run_id)
            progress_ms = (time.perf_counter() - progress_started) * 1000
    return {
        "rows": n_rows,
        "ingest_rows": ingest_rows,
        "chunks": n_chunks,
        "chunk_rows": chunk_rows,
        "ingest_s": seconds,
        "rows_per_s": ingest_rows / seconds,
        "one_chunk_ms": one_chunk_ms,
        "progress_ms": progress_ms,
    }


def _timed(fn):
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def measure_bulk(n_rows: int) -> dict:
    """Seconds of the query-wide actions and milliseconds of one decision on a fully scored n_rows dataset."""
    template = _template(n_rows, scored=True)
    with tempfile.TemporaryDirectory(prefix="clear-bench-") as tmp:
        db = _copy(template, Path(tmp))
        with Store(db) as store:
            run = store.list_runs().iloc[0]
            run_id, dataset_id = int(run["run_id"]), int(run["dataset_id"])
            accept_query = ReviewQuery(run_id, GAMMA, ETA, action="correct", status="undecided", order_by="row_index")
            n_accepted, accept_s = _timed(lambda: store.accept_proposals(accept_query, actor=LEAD))
            group_id = store.last_group(dataset_id)["group_id"]
            n_undone, undo_s = _timed(lambda: store.undo_group(group_id, actor=LEAD))
            assert n_undone == n_accepted
            store.accept_proposals(accept_query, actor=LEAD)  # decisions stand while the rest is measured
            remove_query = ReviewQuery(run_id, GAMMA, ETA, max_confidence=0.3, status="undecided")
            (_, n_removed), remove_s = _timed(lambda: store.decide_query(remove_query, "remove", actor=LEAD))
            targets = range(n_rows // 2, n_rows // 2 + 50)
            _, duplicates_ms = _timed(
                lambda: store.decide_duplicates(dataset_id, targets, "reject", run_id=run_id, actor=LEAD)
            )
            one_ms = []
            for i in range(20):
                row = (n_rows // 3 + i * 7919) % n_rows
                _, s = _timed(
                    lambda row=row: store.record_decision(dataset_id, row, "remove", run_id=run_id, actor=LEAD)
                )
                one_ms.append(s * 1000)
            _, progress_s = _timed(lambda: store.review_progress(run_id))
            _, undo_one_s = _timed(lambda: store.undo_last_decision(dataset_id, LEAD))
    return {
        "rows": n_rows,
        "accepted": n_accepted,
        "accept_s": accept_s,
        "undo_group_s": undo_s,
        "removed": n_removed,
        "remove_s": remove_s,
        "duplicates_50_ms": duplicates_ms * 1000,
        "record_decision_ms": statistics.median(one_ms),
        "review_progress_ms": progress_s * 1000,
        "undo_one_ms": undo_one_s * 1000,
    }


# -- command line -----------------------------------------------------------------------------------------------


def _one_run(n_rows: int, ingest_rows: int | None, chunk_rows: int, what: str) -> dict:
    result: dict = {"rows": n_rows}
    if what in ("all", "ingest"):
        result["ingest"] = measure_ingest(n_rows, ingest_rows, chunk_rows)
    if what in ("all", "bulk"):
        result["bulk"] = measure_bulk(n_rows)
    return result


def _child(args, pythonpath: str | None) -> dict:
    """This script once in a fresh process (``--json``), with PYTHONPATH=pythonpath (the old code) when given."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    command = [sys.executable, __file__, "--json", "--rows", str(args.rows[0]), "--what", args.what]
    command += ["--chunk-rows", str(args.chunk_rows)]
    if args.ingest_rows:
        command += ["--ingest-rows", str(args.ingest_rows)]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):.4g} [{min(values):.4g}-{max(values):.4g}]"


_COUNTS = {"ingest_rows", "chunks", "accepted", "removed"}  # what was done, the same before and after


def _print_table(n_rows: int, before: list[dict], after: list[dict]) -> None:
    """One line per measurement: median [min-max] of the repeats, before and after, and their ratio."""
    print(f"\n{n_rows:,} rows, {len(after)} repeat(s)")
    print(f"{'measurement':<26} {'before':>28} {'after':>28} {'speed-up':>12}")
    for part in ("ingest", "bulk"):
        if part not in after[0]:
            continue
        for key in after[0][part]:
            if key in ("rows", "chunk_rows"):
                continue
            new = [r[part][key] for r in after]
            old = [r[part][key] for r in before] if before else []
            ratio = ""
            if old and key not in _COUNTS and statistics.median(new) and statistics.median(old):
                speedup = statistics.median(old) / statistics.median(new)
                ratio = f"{1 / speedup if key.endswith('_per_s') else speedup:.3g}x"
            print(f"{part + ' ' + key:<26} {_summary(old) if old else '-':>28} {_summary(new):>28} {ratio:>12}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000])
    parser.add_argument("--ingest-rows", type=int, default=None, help="rows to ingest (default: all)")
    parser.add_argument("--chunk-rows", type=int, default=8, help="rows per chunk file (the CPU worker's batch)")
    parser.add_argument("--what", choices=("all", "ingest", "bulk"), default="all")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare", metavar="DIR", help="also run the code in DIR (e.g. a worktree of the base)")
    parser.add_argument("--out", type=Path, help="append every run's result to this file as JSON lines")
    parser.add_argument("--json", action="store_true", help="one run, its result as one JSON line")
    args = parser.parse_args(argv)
    if args.json:
        print(json.dumps(_one_run(args.rows[0], args.ingest_rows, args.chunk_rows, args.what)))
        return 0
    for n_rows in args.rows:
        one = argparse.Namespace(**{**vars(args), "rows": [n_rows]})
        before, after = [], []
        for _ in range(args.repeats):  # alternating, so a change in the machine's load hits both
            runs_now = [("before", args.compare, before)] if args.compare else []
            for label, pythonpath, into in [*runs_now, ("after", None, after)]:
                result = _child(one, pythonpath)
                into.append(result)
                if args.out:
                    with args.out.open("a", encoding="utf-8") as f:
                        f.write(json.dumps({"code": label, "ingest_rows": args.ingest_rows, **result}) + "\n")
        _print_table(n_rows, before, after)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
