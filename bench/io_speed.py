"""Import and export at scale: wall time and peak memory of importing a JSONL file and exporting it again, each in
its own subprocess, for this tree and (``--base``) another checkout of the code, side by side.

    flock /tmp/heavy.lock .venv/bin/python bench/io_speed.py --rows 10000 100000 1000000 --base /tmp/base11c

``measure_import(path)`` and ``measure_export(db, fmt)`` are what bench/scale.py can import: each runs the step in
a fresh interpreter (``code`` on PYTHONPATH, this tree by default) and returns ``{"seconds", "peak_gb"}``; peak
RSS is the child's ``ru_maxrss`` (the interpreter and its imports, about 0.2 GB, included). Rows are GSM8K rows
from /work/shared/data/dev cycled to the size asked, each made distinct by its number. Prints medians of
``--repeats`` with [min-max]. Never run sizes of 100k rows or more without ``flock /tmp/heavy.lock``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GSM8K = Path("/work/shared/data/dev/gsm8k_train.json")

_CHILD = r"""
import json, resource, sys, time
step, target, extra = sys.argv[1], sys.argv[2], sys.argv[3]
started = time.perf_counter()
from clear_core import workspace
from clear_core.store import Store
if step == "import":
    with Store(extra) as store:
        dataset_id = workspace.import_file(store, target)
        rows = store.get_dataset(dataset_id)["n_rows"]
else:
    from clear_core import export
    from clear_core.export import ExportPolicy
    limit = getattr(export, "DUCKDB_MEMORY_LIMIT", None)  # what the export command opens the store with
    with Store(target, read_only=True, **({"memory_limit": limit} if limit else {})) as store:
        dataset_id = int(store.list_datasets()["dataset_id"].max())
        policy = ExportPolicy(gamma=0.5, eta=0.8, unscored="keep")
        if hasattr(workspace, "export_plan"):  # the streamed export
            rows = workspace.export_plan(store, dataset_id, policy, step).write(extra)
        else:  # the code before it: everything in memory
            result = workspace.curated_export(store, dataset_id, policy, step)
            export.write_records(result.records, extra, step)
            rows = len(result.records)
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
print(json.dumps({"seconds": seconds, "peak_gb": peak, "rows": rows}))
"""


def _run(step: str, target: str | Path, extra: str | Path, code: str | Path | None) -> dict:
    env = {"PYTHONPATH": str(code or REPO), "PATH": "/usr/bin:/bin", "CLEAR_NO_DEMO": "1"}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, step, str(target), str(extra)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(code or REPO),
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{step} failed: {done.stderr.strip().splitlines()[-1:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - started
    return result


def measure_import(path: str | Path, db: str | Path | None = None, *, code: str | Path | None = None) -> dict:
    """Import ``path`` (``workspace.import_file``) into ``db`` (a new file by default) in a subprocess running the
    code at ``code``; returns seconds (inside the child, imports included), peak_gb, rows."""
    if db is None:
        db = Path(tempfile.mkdtemp(prefix="io-speed-")) / "import.duckdb"
    return _run("import", path, db, code)


def measure_export(db: str | Path, fmt: str, out: str | Path | None = None, *, code: str | Path | None = None) -> dict:
    """Export the newest dataset of ``db`` as ``fmt`` (jsonl, json, csv, parquet; every row kept, no scores needed)
    in a subprocess running the code at ``code``; returns seconds, peak_gb, rows."""
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="io-speed-")) / f"export.{fmt}"
    return _run(fmt, db, out, code)


def synthetic_jsonl(rows: int, path: str | Path) -> Path:
    """``rows`` Alpaca rows (GSM8K cycled; every row distinct) as JSON Lines, written as json.dumps writes them."""
    source = json.loads(GSM8K.read_text())
    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            row = source[i % len(source)]
            record = {
                "instruction": f"{row['instruction']} (#{i})",
                "input": row.get("input", ""),
                "output": row["output"],
            }
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--base", help="another checkout (e.g. a git worktree of the baseline) to run side by side")
    parser.add_argument("--formats", nargs="+", default=["jsonl", "parquet"])
    args = parser.parse_args()
    versions = {"new": REPO, **({"base": Path(args.base)} if args.base else {})}
    work = Path(tempfile.mkdtemp(prefix="io-speed-"))
    print("rows\tversion\tstep\tseconds median [min-max]\tpeak GB median [min-max]", flush=True)
    for rows in args.rows:
        source = synthetic_jsonl(rows, work / f"rows{rows}.jsonl")
        for name, code in versions.items():
            imports = [
                measure_import(source, work / f"{name}{rows}-{i}.duckdb", code=code) for i in range(args.repeats)
            ]
            db = work / f"{name}{rows}-0.duckdb"
            print(f"{rows}\t{name}\timport\t{_median([r['seconds'] for r in imports])}\t"
                  f"{_median([r['peak_gb'] for r in imports])}", flush=True)  # fmt: skip
            for fmt in args.formats:
                runs = [measure_export(db, fmt, work / f"out.{fmt}", code=code) for _ in range(args.repeats)]
                print(f"{rows}\t{name}\texport {fmt}\t{_median([r['seconds'] for r in runs])}\t"
                      f"{_median([r['peak_gb'] for r in runs])}", flush=True)  # fmt: skip
            for i in range(args.repeats):
                (work / f"{name}{rows}-{i}.duckdb").unlink(missing_ok=True)
        source.unlink()


if __name__ == "__main__":
    main()
