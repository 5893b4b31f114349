"""Scoring speed through the engines, the owner's way: the local worker against Ray replicas on the same rows.

    flock /tmp/heavy.lock .venv/bin/python bench/ray_speed.py --rows 24 --engines local ray:1 ray:2
    .venv/bin/python bench/ray_speed.py --rows 64 --engines ray:2 --ray-address auto --model DIR --gpus-per-replica 1

Each configuration imports the first --rows GSM8K rows into a fresh database, starts a run with ``runs.start_run``
(the fast profile unless --samples is given) and follows it with ``runs.progress`` as the CLI does, recording when
each scored row reached the store. It prints, per engine and repeat: the wall time of the whole run (worker start,
Ray start, model load included), ``startup_s`` (until the first rows were stored) and ``steady rows/s`` (rows stored
after the first ones over the time that took), the rate a long run approaches. ``ray:N`` is the ray engine with N
replicas; without --ray-address Ray starts on this machine for each run. docs/scale-out.md uses these numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clear_core import backends, profiles, runs  # noqa: E402
from clear_core.data import load_dataset  # noqa: E402
from clear_core.store import Store  # noqa: E402

GSM8K = ROOT.parent / "shared" / "data" / "dev" / "gsm8k_train.json"


def measure(engine: str, rows: int, args) -> dict:
    """One run of ``rows`` rows on ``engine`` ('local' or 'ray:N'): wall, startup and steady-state rates."""
    backend, _, replicas = engine.partition(":")
    options = None
    if backend == "ray":
        options = backends.RayOptions(args.ray_address, int(replicas or 1), args.gpus_per_replica).to_job()
    config = profiles.resolve(args.profile, device=args.device, model=args.model, samples=args.samples).config
    config = dataclasses.replace(config, batch_size=args.batch_size)  # rows per block: several blocks per replica
    with tempfile.TemporaryDirectory(prefix="clear-ray-bench-") as tmp:
        source = Path(tmp) / "rows.json"
        source.write_text(json.dumps(json.loads(GSM8K.read_text(encoding="utf-8"))[:rows]), encoding="utf-8")
        db = Path(tmp) / "bench.duckdb"
        with Store(db) as store:
            dataset_id = store.add_dataset(load_dataset(source))
            seen: list[tuple[float, int]] = []
            started = time.perf_counter()
            run_id = runs.start_run(
                store, db, dataset_id, model=args.model, device=args.device, config=config, backend=backend,
                backend_options=options,
            )  # fmt: skip
            state = runs.wait(store, run_id, on_progress=lambda s: seen.append((time.perf_counter(), s.rows_done)))
            wall = time.perf_counter() - started
            if state.status != "done" or state.rows_done != rows:
                raise SystemExit(f"{engine}: the run ended {state.status} with {state.rows_done} rows: {state.error}")
    first = next((t, n) for t, n in seen if n > 0)
    last = next((t, n) for t, n in seen if n == rows)
    steady = (last[1] - first[1]) / (last[0] - first[0]) if last[0] > first[0] else None
    return {
        "engine": engine,
        "rows": rows,
        "profile": profiles.profile_of(config),
        "wall_s": round(wall, 2),
        "startup_s": round(first[0] - started, 2),
        "first_rows": first[1],
        "rows_per_s": round(rows / wall, 4),
        "steady_rows_per_s": round(steady, 4) if steady else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--engines", nargs="+", default=["local", "ray:1", "ray:2"], help="local, ray:N replicas")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--model", default=None, help="default: the embedded model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--profile", default="fast", choices=profiles.PROFILES)
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=4, help="rows per batch (and per Ray block)")
    parser.add_argument("--ray-address", default=None)
    parser.add_argument("--gpus-per-replica", type=float, default=0.0)
    parser.add_argument("--json", default=None, help="append each result as a JSON line to this file")
    args = parser.parse_args(argv)
    results: dict[str, list[dict]] = {}
    for repeat in range(args.repeats):
        for engine in args.engines:  # alternated, so a change in the machine's load touches every engine alike
            result = measure(engine, args.rows, args)
            results.setdefault(engine, []).append(result)
            print(json.dumps({**result, "repeat": repeat}), flush=True)
            if args.json:
                with open(args.json, "a", encoding="utf-8") as f:
                    f.write(json.dumps({**result, "repeat": repeat}) + "\n")
    for engine, rs in results.items():
        steady = [r["steady_rows_per_s"] for r in rs if r["steady_rows_per_s"]]
        wall = [r["wall_s"] for r in rs]
        print(
            f"{engine:>8}: wall {statistics.median(wall):.1f} s (range {min(wall):.1f}-{max(wall):.1f}), "
            f"steady {statistics.median(steady) if steady else float('nan'):.3f} rows/s "
            f"(range {min(steady, default=float('nan')):.3f}-{max(steady, default=float('nan')):.3f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
