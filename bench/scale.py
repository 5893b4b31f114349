"""A million rows, the whole table: every step of issue 11 timed for two versions of the code, side by side.

    .venv/bin/python bench/scale.py --quick                      # 10k and 100k rows
    .venv/bin/python bench/scale.py --sizes 1m --heavy-repeats 1  # 1M rows, one run of each heavy step
    .venv/bin/python bench/scale.py --sizes 10k --json out.jsonl  # also one JSON record per measurement
    .venv/bin/python bench/scale.py --table-from base.jsonl new.jsonl  # the table of runs made with --only

The two versions are two folders holding a checkout: ``--base`` (default /tmp/base11d, a git worktree at 6e7b7fd,
the code before issue 11: ``git worktree add /tmp/base11d 6e7b7fd``) and ``--new`` (default: this working tree).
Every measurement runs in a fresh subprocess whose PYTHONPATH and working folder are that checkout, so both
versions go through this one harness; each subprocess reports its own peak RSS (``ru_maxrss``), which counts
the interpreter and its imports (about 0.2 GB) as well as the step.

Data, per size: a JSONL file of Alpaca rows cycled from the dev GSM8K file (each instruction gets ``(#i)`` so
no two prompts are equal; responses repeat every 7,473 rows), written once and shared by both versions. Each
version imports it into its own database (the ``import`` step), then, untimed: a finished scoring run whose
synthetic scores go in through that version's ``Store.add_scores`` in 50k-row calls (confidence ~ Beta(5, 2); a
proposal on a fifth of the rows, 3.4% of all rows above η = 0.7, so bulk accept takes 34k rows at 1M as in the
issue; one row in a hundred failed), and duplicate groups written straight into ``duplicate_groups`` (exact
repeats: row_index mod 7,473; ``Store.find_duplicates`` would take minutes at 1M and is not measured here).

Steps (medians of ``--repeats``, default 3, with [min-max]; ``--heavy-repeats`` for import, export and bulk
accept, default 3, and 1M rows may use 1):
- import: ``workspace.import_file`` (load + add_dataset) into a new file; time and peak RSS.
- queue page 1 / deep page / text search: the store calls of one Review page draw (get_thresholds,
  review_progress, review_queue of 50 rows), least confident first, undecided rows; the deep page is the middle
  one; the search is ``--search`` (default 'marbles'). One untimed warm-up call first.
- thresholds: the Thresholds page run in Streamlit's AppTest (app.py, then the page; its data and figures), and
  the bytes of chart JSON it sends (every plotly spec on the page).
- export JSONL / Parquet: ``python -m clear_core export --unscored keep`` run in-process; time and peak RSS.
- decision: one ``Store.record_decision`` (reject), the median of ``--repeats`` rows.
- ingest: the run's last ``--ingest-rows`` rows again as the worker writes them (8-row chunk files in the run's
  folder), then ``runs.ingest`` (the owner's path) on a copy of the database; rows/s. bench/ingest_speed.py
  measures the same path in more detail.
- bulk accept: ``Store.accept_proposals(ui_state.bulk_accept_query(run, γ, 0.7))`` on a copy of the database.

Sizes of 100k rows and more take /tmp/heavy.lock (flock) around each subprocess, so only one heavy job runs on
the machine at a time; ``--no-lock`` when the whole command already runs under ``flock /tmp/heavy.lock``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parent.parent
GSM8K = REPO.parent / "shared" / "data" / "dev" / "gsm8k_train.json"
BASE = Path("/tmp/base11d")
HEAVY_LOCK = Path("/tmp/heavy.lock")
SIZES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}
PAGE_SIZE = 50
SCORE_CHUNK = 50_000
ANNOTATOR = "bench"
PROPOSAL_SHARE = 0.2  # rows with a proposal
ACCEPT_SHARE = 0.034  # rows whose proposal is above η = 0.7: 34k of 1M, as in issue 11's bulk-accept goal
FIRST_EVERY = 997  # every 997th row is among the least confident and has a proposal: Review opens on one

# (step, label) in the order of the table; "import" is first because it makes the database.
STEPS = (
    ("import", "import JSONL (load + add_dataset)"),
    ("queue_page1", "Review queue page 1 (store calls)"),
    ("queue_deep", "Review queue, middle page"),
    ("queue_search", "Review queue, text search"),
    ("thresholds", "Thresholds page run (AppTest)"),
    ("export_jsonl", "export JSONL (CLI)"),
    ("export_parquet", "export Parquet (CLI)"),
    ("decision", "record one decision"),
    ("ingest", "ingest worker results (8-row chunks)"),
    ("bulk_accept", "bulk accept at η = 0.7"),
)
HEAVY_STEPS = {"import", "export_jsonl", "export_parquet", "bulk_accept"}


# -- the data ------------------------------------------------------------------------------------------------------


def alpaca_records(n_rows: int) -> Iterator[dict]:
    """``n_rows`` Alpaca rows cycled from the dev GSM8K file, each instruction numbered ``(#i)`` so that no two
    prompts are equal (responses repeat every 7,473 rows): the data of every bench at scale."""
    base = json.loads(GSM8K.read_text(encoding="utf-8"))
    for i in range(n_rows):
        row = base[i % len(base)]
        yield {"instruction": f"{row['instruction']} (#{i})", "input": row["input"], "output": row["output"]}


def alpaca_dataset(n_rows: int, name: str, file_format: str) -> SimpleNamespace:
    """``alpaca_records`` as ``Store.add_dataset`` takes a loaded file (the input of GSM8K rows is empty, so the
    prompt is the instruction), for benches that build a database through the store without a file."""
    rows = [
        SimpleNamespace(
            row_index=i,
            record=record,
            prompt=record["instruction"],
            response=record["output"],
            prompt_messages=[{"role": "user", "content": record["instruction"]}],
        )
        for i, record in enumerate(alpaca_records(n_rows))
    ]
    return SimpleNamespace(
        name=name,
        source_path=None,
        file_format=file_format,
        schema="alpaca",
        mapping=None,
        columns=["instruction", "input", "output"],
        content_hash=f"bench-{n_rows}",
        rows=rows,
    )


def source_file(work: Path, n_rows: int) -> Path:
    """The JSONL file of ``alpaca_records(n_rows)`` (written once per size, then reused)."""
    path = work / f"alpaca_{n_rows}.jsonl"
    if path.exists():
        return path
    tmp = path.with_suffix(".part")
    with open(tmp, "w", encoding="utf-8") as f:
        for record in alpaca_records(n_rows):
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    tmp.rename(path)
    return path


def synthetic_scores(start: int, stop: int, texts: list[str]) -> list[dict]:
    """Score records for rows start..stop-1, deterministic per (start, stop): confidence ~ Beta(5, 2); a proposal on
    a fifth of the rows, ACCEPT_SHARE of all rows above η = 0.7 (the rest below); one row in a hundred failed.
    Rows 3, 1000, 1997, ... (every FIRST_EVERY-th) come first in Review (confidence < 1e-4) with a proposal at
    correction confidence 0.95, so the first rows Review shows can be accepted."""
    import numpy as np

    rng = np.random.default_rng(start)
    n = stop - start
    confidence = rng.beta(5, 2, n)
    u = rng.random(n)
    correction = np.where(u < ACCEPT_SHARE, 0.7 + 0.3 * rng.random(n) + 1e-9, 0.7 * rng.random(n))
    logprob = -rng.gamma(2.0, 0.5, n)
    reflection = rng.random(n)
    records = []
    first = np.arange(start, stop) % FIRST_EVERY == 3  # the least confident rows, each with a confident proposal
    confidence = np.where(first, 1e-4 * np.arange(start, stop) / 1e6, confidence)
    u = np.where(first, 0.0, u)
    correction = np.where(first, 0.95, correction)
    for k, i in enumerate(range(start, stop)):
        if i % 100 == 99:
            records.append({"row_index": i, "error": "RuntimeError: synthetic failure"})
            continue
        proposal = u[k] < PROPOSAL_SHARE
        records.append(
            {
                "row_index": i,
                "confidence": float(confidence[k]),
                "confidence_bsdetector": float(confidence[k]),
                "consistency": float(confidence[k]),
                "self_reflection": float(reflection[k]),
                "logprob_mean": float(logprob[k]),
                "logprob_uncond_mean": float(logprob[k] - 0.5),
                "pmi": 0.5,
                "eos_prob": 0.9,
                "n_response_tokens": 50 + i % 200,
                "proposed_response": texts[(i * 7) % len(texts)] if proposal else None,
                "correction_confidence": float(correction[k]) if proposal else None,
            }
        )
    return records


# -- steps (run in the subprocess, against the code on PYTHONPATH) ---------------------------------------------------


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _ids(store) -> tuple[int, int]:
    datasets = store.list_datasets()
    dataset_id = int(datasets["dataset_id"].max())
    return dataset_id, int(store.latest_run(dataset_id)["run_id"])


def step_import(args) -> dict:
    from clear_core import workspace
    from clear_core.store import Store

    Path(args.db).unlink(missing_ok=True)
    t0 = time.perf_counter()
    with Store(args.db) as store:
        dataset_id = workspace.import_file(store, args.source, name=Path(args.source).stem)
        n_rows = store.get_dataset(dataset_id)["n_rows"]
    return {"t": [time.perf_counter() - t0], "n": int(n_rows)}


def step_setup(args) -> dict:
    """Untimed: a finished run with synthetic scores (through add_scores), duplicate groups, stored thresholds."""
    import duckdb  # noqa: F401  (the store's own connection runs the SQL)

    from clear_core import clear, permissions
    from clear_core.store import Store

    base = json.loads(GSM8K.read_text(encoding="utf-8"))
    texts = [r["output"] for r in base]
    t0 = time.perf_counter()
    with Store(args.db) as store:
        dataset_id = int(store.list_datasets()["dataset_id"].max())
        n_rows = int(store.get_dataset(dataset_id)["n_rows"])
        run_id = store.create_run(dataset_id, "synthetic", {"samples": 0})
        for start in range(0, n_rows, SCORE_CHUNK):
            store.add_scores(run_id, synthetic_scores(start, min(start + SCORE_CHUNK, n_rows), texts))
        store.set_run_status(run_id, "running")
        store.set_run_status(run_id, "done")
        store.set_thresholds(
            dataset_id, clear.DEFAULT_GAMMA, clear.DEFAULT_ETA, actor=permissions.local_actor(ANNOTATOR)
        )
        with store._transaction() as cursor:  # exact repeats only; see the module docstring
            cursor.execute("DELETE FROM duplicate_groups WHERE dataset_id = ?", [dataset_id])
            for kind in ("response", "prompt"):
                cursor.execute(
                    "INSERT INTO duplicate_groups SELECT dataset_id, ?, row_index, row_index % ? FROM rows "
                    "WHERE dataset_id = ?",
                    [kind, len(base), dataset_id],
                )
    return {"t": [time.perf_counter() - t0], "n": n_rows}


def _queue_query(store, run_id: int, dataset_id: int, search: str | None):
    from clear_core.store import ReviewQuery

    gamma, eta = store.get_thresholds(dataset_id)
    return ReviewQuery(run_id, gamma, eta, status="undecided", search=search, order_by="confidence")


def _page_draw(store, dataset_id: int, run_id: int, query, offset: int):
    store.get_thresholds(dataset_id)
    store.review_progress(run_id)
    return store.review_queue(query, limit=PAGE_SIZE, offset=offset)


def step_queue(args) -> dict:
    from clear_core.store import Store

    with Store(args.db, read_only=True) as store:
        dataset_id, run_id = _ids(store)
        query = _queue_query(store, run_id, dataset_id, args.search if args.step == "queue_search" else None)
        page, total = _page_draw(store, dataset_id, run_id, query, 0)  # warm-up
        offset = (total // 2 // PAGE_SIZE) * PAGE_SIZE if args.step == "queue_deep" else 0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            page, total = _page_draw(store, dataset_id, run_id, query, offset)
            times.append(time.perf_counter() - t0)
        assert len(page) == min(PAGE_SIZE, total - offset), (len(page), total, offset)
    return {"t": times, "n": int(total), "offset": offset}


def step_thresholds(args) -> dict:
    from streamlit.testing.v1 import AppTest

    os.environ.update(CLEAR_DB=str(args.db), CLEAR_NO_DEMO="1")
    at = AppTest.from_file(str(Path.cwd() / "app.py"), default_timeout=600)
    at.query_params["annotator"] = ANNOTATOR
    at.run()
    at.switch_page("app_pages/thresholds.py")
    times = []
    for _ in range(args.repeats + 1):  # the first run opens the page; the next are redraws (a slider moved)
        t0 = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t0)
        if at.exception:
            raise RuntimeError(f"the Thresholds page failed: {at.exception[0].value}")
    charts = at.get("plotly_chart")
    spec_bytes = sum(len(c.proto.spec.encode()) for c in charts)
    return {"t": times[1:], "first": times[0], "json_mb": spec_bytes / 1e6, "charts": len(charts)}


def step_export(args) -> dict:
    from clear_core import cli

    suffix = "jsonl" if args.step == "export_jsonl" else "parquet"
    out = Path(args.db).with_suffix(f".curated.{suffix}")
    t0 = time.perf_counter()
    cli.main(["export", "--db", str(args.db), "--out", str(out), "--unscored", "keep"], standalone_mode=False)
    elapsed = time.perf_counter() - t0
    size = out.stat().st_size
    out.unlink()
    return {"t": [elapsed], "file_mb": size / 1e6}


def step_decision(args) -> dict:
    from clear_core import permissions
    from clear_core.store import Store

    actor = permissions.local_actor(ANNOTATOR)
    times = []
    with Store(args.db) as store:
        dataset_id, run_id = _ids(store)
        n_rows = int(store.get_dataset(dataset_id)["n_rows"])
        for k in range(args.repeats + 1):
            row = (n_rows // 3 + 7 * k) % n_rows
            t0 = time.perf_counter()
            store.record_decision(dataset_id, row, "reject", run_id=run_id, actor=actor)
            times.append(time.perf_counter() - t0)
    return {"t": times[1:]}


def step_ingest(args) -> dict:
    """The last --ingest-rows rows of the scored run once more, as the worker writes them (8-row chunk files in the
    run's folder), taken in by the owner's ``runs.ingest``: the end of a long run, every other row stored."""
    from clear_core import handoff, runs
    from clear_core.store import Store

    texts = [r["output"] for r in json.loads(GSM8K.read_text(encoding="utf-8"))]
    with Store(args.db) as store:
        dataset_id, run_id = _ids(store)
        n_rows = int(store.get_dataset(dataset_id)["n_rows"])
        work = Path(args.db).parent / f"ingest-run-{run_id}"
        shutil.rmtree(work, ignore_errors=True)
        (work / "chunks").mkdir(parents=True)
        store.set_run_work_dir(run_id, work)
        records = synthetic_scores(max(n_rows - args.ingest_rows, 0), n_rows, texts)
        for k in range(0, len(records), 8):  # the worker's file format (handoff), one name per chunk
            text = "".join(json.dumps(r) + "\n" for r in records[k : k + 8])
            (work / "chunks" / f"chunk-{k:015d}-{os.getpid()}.jsonl").write_text(text, encoding="utf-8")
        n_chunks = len(handoff.pending_chunks(work))
        t0 = time.perf_counter()
        added = runs.ingest(store, run_id)
        elapsed = time.perf_counter() - t0
        assert added == len(records), (added, len(records))
    shutil.rmtree(work, ignore_errors=True)
    return {"t": [elapsed], "rows": added, "chunks": n_chunks, "rows_per_s": added / elapsed}


def step_bulk_accept(args) -> dict:
    from clear_core import permissions
    from clear_core.store import Store
    from clear_core.ui_state import bulk_accept_query

    with Store(args.db) as store:
        dataset_id, run_id = _ids(store)
        gamma, _ = store.get_thresholds(dataset_id)
        t0 = time.perf_counter()
        n = store.accept_proposals(bulk_accept_query(run_id, gamma, 0.7), actor=permissions.local_actor(ANNOTATOR))
        elapsed = time.perf_counter() - t0
    return {"t": [elapsed], "rows": int(n)}


STEP_FUNCTIONS = {
    "import": step_import,
    "setup": step_setup,
    "queue_page1": step_queue,
    "queue_deep": step_queue,
    "queue_search": step_queue,
    "thresholds": step_thresholds,
    "export_jsonl": step_export,
    "export_parquet": step_export,
    "decision": step_decision,
    "ingest": step_ingest,
    "bulk_accept": step_bulk_accept,
}


def run_step(args) -> None:
    """Subprocess entry point: run one step against the code on PYTHONPATH, print its result as one JSON line."""
    result = STEP_FUNCTIONS[args.step](args)
    result["rss_mb"] = _peak_rss_mb()
    print("RESULT " + json.dumps(result), flush=True)


# -- the harness ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def heavy_lock(enabled: bool):
    """Hold /tmp/heavy.lock (the same lock as `flock /tmp/heavy.lock`) while a heavy subprocess runs."""
    if not enabled:
        yield
        return
    with open(HEAVY_LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def subprocess_step(root: Path, step: str, db: Path, opts, extra: list[str] | None = None) -> dict:
    """Run ``step`` in a fresh interpreter with ``root`` as its code (PYTHONPATH and working folder)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--step", step, "--db", str(db)]
    command += ["--repeats", str(opts.repeats), "--search", opts.search, "--ingest-rows", str(opts.ingest_rows)]
    command += extra or []
    env = {**os.environ, "PYTHONPATH": str(root), "CLEAR_NO_DEMO": "1", "PYTHONHASHSEED": "0"}
    with heavy_lock(opts.lock):
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=opts.step_timeout)
    results = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not results:
        tail = (done.stdout + done.stderr)[-3000:]
        raise RuntimeError(f"step {step} with {root} failed (exit {done.returncode}):\n{tail}")
    return json.loads(results[-1][len("RESULT ") :])


def merge(results: dict[str, dict], step: str, result: dict) -> None:
    """Merge one more run of ``step`` into ``results`` (times appended, the highest peak RSS kept)."""
    seen = results.get(step)
    if seen is None:
        results[step] = result
        return
    merged = {**result, "t": seen["t"] + result["t"], "rss_mb": max(seen["rss_mb"], result["rss_mb"])}
    if "rows_per_s" in result:
        merged["rows_per_s_all"] = seen.get("rows_per_s_all", [seen["rows_per_s"]]) + [result["rows_per_s"]]
        merged["rows_per_s"] = statistics.median(merged["rows_per_s_all"])
    results[step] = merged


def from_records(paths: list[Path]) -> dict[int, dict[str, dict]]:
    """The results recorded with --json (one or more files, e.g. a 1M run of each version under its own lock)."""
    results: dict[int, dict[str, dict]] = {}
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if entry["step"] == "setup":
                continue
            by_tag = results.setdefault(entry["size"], {}).setdefault(entry["version"], {})
            merge(by_tag, entry["step"], {k: v for k, v in entry.items() if k not in ("version", "size", "step")})
    return dict(sorted(results.items()))


class Version:
    """One checkout under test at one size: its folder of databases and the steps measured so far."""

    def __init__(self, tag: str, root: Path, n_rows: int, work: Path, opts, record):
        self.tag, self.root, self.n_rows, self.opts, self.record = tag, root, n_rows, opts, record
        self.folder = work / f"{tag}-{n_rows}"
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        self.db = self.folder / "clear.duckdb"
        self.results: dict[str, dict] = {}

    def once(self, step: str, path: Path | None = None, extra: list[str] | None = None) -> dict:
        result = subprocess_step(self.root, step, path or self.db, self.opts, extra)
        self.record({**result, "version": self.tag, "size": self.n_rows, "step": step})
        return result

    def copy(self) -> Path:
        """A copy of the scored database, for steps that change it (ingest, bulk accept)."""
        target = self.folder / "copy.duckdb"
        target.unlink(missing_ok=True)
        shutil.copyfile(self.db, target)
        return target

    def add(self, step: str, result: dict) -> None:
        merge(self.results, step, result)

    def close(self) -> None:
        if not self.opts.keep:
            shutil.rmtree(self.folder, ignore_errors=True)


def measure(versions: list[Version], source: Path, opts) -> None:
    """Every step for every version at one size, the versions alternating step by step (and run by run for the
    repeated heavy steps), so a change in the machine's load falls on both."""
    for _ in range(opts.heavy_repeats):
        for v in versions:
            v.add("import", v.once("import", extra=["--source", str(source)]))
    for v in versions:
        setup = v.once("setup")
        print(f"    {v.tag} {v.n_rows:,}: imported, then scored in {setup['t'][0]:.0f} s (setup)", flush=True)
    for step in ("queue_page1", "queue_deep", "queue_search", "thresholds", "decision"):
        if step not in opts.skip:
            for v in versions:
                v.add(step, v.once(step))
    for step in ("export_jsonl", "export_parquet", "ingest", "bulk_accept"):
        if step in opts.skip:
            continue
        for _ in range(opts.heavy_repeats):
            for v in versions:
                v.add(step, v.once(step, v.copy() if step in ("ingest", "bulk_accept") else None))


# -- the table -----------------------------------------------------------------------------------------------------


def _time(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds < 1 else f"{seconds:,.1f} s"


def cell(result: dict | None, step: str) -> str:
    """'212 ms [205-220]' (median [min-max]) plus the step's own figure: peak RSS, rows/s, JSON size, rows."""
    if result is None:
        return "—"
    times = result["t"]
    median = statistics.median(times)
    text = _time(median)
    if len(times) > 1:
        text += f" [{_time(min(times)).split()[0]}-{_time(max(times))}]"
    else:
        text += " (1 run)"
    if step in ("import", "export_jsonl", "export_parquet"):
        text += f", {result['rss_mb'] / 1024:.2f} GB"
    if step == "thresholds":
        text += f", {result['json_mb']:.1f} MB JSON"
    if step == "ingest":
        text = f"{result['rows_per_s']:,.0f} rows/s ({result['rows']:,} rows: {text})"
    if step == "bulk_accept":
        text += f" ({result['rows']:,} rows)"
    return text


def ratio(base: dict | None, new: dict | None, step: str) -> str:
    if not base or not new:
        return "—"
    if step == "ingest":
        return f"×{new['rows_per_s'] / base['rows_per_s']:.1f}"
    b, n = statistics.median(base["t"]), statistics.median(new["t"])
    return f"×{b / n:.1f}" if n > 0 else "—"


def table(results: dict[int, dict[str, dict[str, dict]]], tags: tuple[str, str]) -> str:
    lines = []
    for n_rows, by_tag in results.items():
        lines += [f"\n{n_rows:,} rows\n", f"| step | {tags[0]} | {tags[1]} | speed-up |", "| --- | --- | --- | ---: |"]
        for step, label in STEPS:
            base, new = (by_tag.get(t, {}).get(step) for t in tags)
            lines.append(f"| {label} | {cell(base, step)} | {cell(new, step)} | {ratio(base, new, step)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=["10k"])
    parser.add_argument("--quick", action="store_true", help="10k and 100k rows")
    parser.add_argument("--base", type=Path, default=BASE, help="checkout of the code before (default %(default)s)")
    parser.add_argument("--new", type=Path, default=REPO, help="checkout of the code after (default: this tree)")
    parser.add_argument("--only", choices=["base", "new"], help="measure one version only")
    parser.add_argument("--work", type=Path, default=Path("/tmp/clear_scale"), help="data and databases")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--heavy-repeats", type=int, default=3, help="runs of import, export, ingest, bulk accept")
    parser.add_argument("--search", default="marbles")
    parser.add_argument("--ingest-rows", type=int, default=2000)
    parser.add_argument("--step-timeout", type=float, default=900)
    parser.add_argument("--no-lock", dest="lock", action="store_false", help="already under flock /tmp/heavy.lock")
    parser.add_argument("--skip", nargs="+", default=[], choices=[s for s, _ in STEPS[1:]], help="steps left out")
    parser.add_argument("--keep", action="store_true", help="keep the databases under --work")
    parser.add_argument("--json", type=Path, help="append one JSON record per measurement")
    parser.add_argument("--table-from", type=Path, nargs="+", help="print the table of earlier --json files only")
    # subprocess mode
    parser.add_argument("--step", choices=list(STEP_FUNCTIONS), help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.step:
        run_step(opts)
        return
    if opts.table_from:
        print(table(from_records(opts.table_from), ("base", "new")))
        return

    sizes = [SIZES[s] for s in (["10k", "100k"] if opts.quick else opts.sizes)]
    versions = [("base", opts.base), ("new", opts.new)]
    if opts.only:
        versions = [v for v in versions if v[0] == opts.only]
    opts.work.mkdir(parents=True, exist_ok=True)
    lock_requested = opts.lock

    def record(entry: dict) -> None:
        if opts.json:
            with open(opts.json, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")

    print(
        f"bench/scale.py: base = {opts.base}, new = {opts.new}; {os.cpu_count()} cores; repeats {opts.repeats}, "
        f"heavy steps {opts.heavy_repeats}; {time.strftime('%Y-%m-%d %H:%M')}",
        flush=True,
    )
    results: dict[int, dict[str, dict]] = {}
    for n_rows in sizes:
        opts.lock = lock_requested and n_rows >= 100_000
        source = source_file(opts.work, n_rows)
        measured = [Version(tag, root, n_rows, opts.work, opts, record) for tag, root in versions]
        t0 = time.perf_counter()
        measure(measured, source, opts)
        print(f"    {n_rows:,} rows: every step in {time.perf_counter() - t0:.0f} s", flush=True)
        results[n_rows] = {v.tag: v.results for v in measured}
        for v in measured:
            v.close()
    print(table(results, ("base", "new")))


if __name__ == "__main__":
    main()
