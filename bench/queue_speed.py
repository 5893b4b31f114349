"""Review queue, text search and Thresholds data at 10k / 100k / 1M rows: store time per page draw, per filter.

    .venv/bin/python bench/queue_speed.py build --rows 100000 --db /tmp/q100k.duckdb
    .venv/bin/python bench/queue_speed.py measure --db /tmp/q100k.duckdb            # this checkout
    PYTHONPATH=/tmp/base11a .venv/bin/python bench/queue_speed.py measure --db /tmp/q100k-base.duckdb
    .venv/bin/python bench/queue_speed.py search --db /tmp/q100k.duckdb             # new searches only

``build`` writes a database through the public store API only: Alpaca rows cycled from the dev GSM8K file (each
instruction gets ``(#i)``), one finished run of synthetic scores (``add_scores`` in 50k-row calls: confidence ~
Beta(5, 2), every row a proposal, the response of another GSM8K row; one row in a hundred failed), and 1,000 human
decisions (``record_decision``: accept, reject and remove with reasons, edit). Build the database with the older
code when comparing versions (the newer one upgrades a copy of it on first open; an older one refuses a newer file).

``measure`` opens the database and prints one line per case: the median and [min-max] over ``--repeats`` (3) of
the store calls one draw makes, after one untimed warm-up; ``measure_queue(db_path, run_id)`` returns the same as
a dict for other benches (bench/scale.py). Cases: the Review queue (``review_queue``, 50 rows: page 1 least
confident first, the middle page, the last page, each filter of ``ReviewQuery``, each sort, two text searches
redrawn and typed anew, three deep pages drawn with nothing kept from earlier draws, and a deep page redrawn after a
decision, which writes: the decisions are undone after it)
and ``review_count``; the Thresholds page's data (``Store.threshold_grid`` and ``threshold_sample`` where they
exist, else the calls the older page made), with the size of the chart data it would send to the browser, and the
re-count after moving γ/η. Heavy sizes: run under ``flock /tmp/heavy.lock``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# After PYTHONPATH, so that PYTHONPATH=/path/to/another/checkout measures that checkout's clear_core.
sys.path.append(str(Path(__file__).resolve().parent.parent))

from scale import alpaca_dataset  # noqa: E402  (bench/scale.py, beside this script: the generated rows)

GSM8K = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "dev" / "gsm8k_train.json"
PAGE_SIZE = 50
SCORE_CHUNK = 50_000
N_DECISIONS = 1_000
SEARCHES = ("zebra", "how many apples")  # a rare word (~1 row in 1,500) and a common phrase
# New searches timed by the `search` command: the two above, two letters, punctuation beside words, and phrases of
# only common words, most rows holding them (`of the`: 42% of the rows at 1M, `how many` 56%).
NEW_SEARCHES = (*SEARCHES, "de", "(#12", "apples?", "it's", "of the", "how many", "$12", "12.", "per hour", "isn't")
CACHES = ("_search_cache", "_order_cache", "_length_cache")  # what a Store keeps between draws (any version)


def build(db_path: str, n_rows: int) -> tuple[int, int]:
    """A database of ``n_rows`` rows, a scored run and ``N_DECISIONS`` decisions; returns (dataset_id, run_id)."""
    import numpy as np

    from clear_core.permissions import Actor
    from clear_core.store import Store

    base = json.loads(GSM8K.read_text(encoding="utf-8"))
    ds = alpaca_dataset(n_rows, name=f"bench-{n_rows}", file_format="jsonl")
    lead = Actor("bench", "bench", "lead")
    with Store(db_path) as store:
        dataset_id = store.add_dataset(ds)
        del ds
        run_id = store.create_run(dataset_id, "synthetic", {"samples": 0})
        rng = np.random.default_rng(0)
        for start in range(0, n_rows, SCORE_CHUNK):
            stop = min(start + SCORE_CHUNK, n_rows)
            confidence, correction = rng.beta(5, 2, stop - start), rng.beta(2, 5, stop - start)
            records = [
                {"row_index": i, "error": "RuntimeError: synthetic failure"}
                if i % 100 == 99
                else {
                    "row_index": i,
                    "confidence": float(confidence[i - start]),
                    "correction_confidence": float(correction[i - start]),
                    "self_reflection": float(confidence[i - start]) ** 2,
                    "logprob_mean": -float(correction[i - start]) * 3,
                    "n_response_tokens": 40 + i % 200,
                    "proposed_response": base[(i * 7) % len(base)]["output"],
                }
                for i in range(start, stop)
            ]
            store.add_scores(run_id, records)
        store.set_run_status(run_id, "running")
        store.set_run_status(run_id, "done")
        step = max(n_rows // N_DECISIONS, 1)
        for k, i in enumerate(range(3, n_rows, step)):
            if i % 100 == 99:
                continue
            kind = ("accept", "reject", "remove", "edit")[k % 4]
            extra = {"reason": ("wrong", "truncated", "format")[k % 3]} if kind in ("reject", "remove") else {}
            if kind == "edit":
                extra = {"final_response": "Edited."}
            store.record_decision(dataset_id, i, kind, run_id=run_id, actor=lead, **extra)
    return dataset_id, run_id


def _median(fn: Callable[[], object], repeats: int) -> tuple[float, float, float, object]:
    result = fn()  # warm-up (and a lazily built index, if any)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), min(times), max(times), result


def measure_queue(db_path: str, run_id: int | None = None, repeats: int = 3) -> dict[str, dict]:
    """Store time (ms: median, min, max over ``repeats``) of each Review-queue case and of the Thresholds data,
    with ``n`` (rows the case selects) and for thresholds ``bytes`` (chart data sent to the browser)."""
    from clear_core.store import ReviewQuery, Store

    out: dict[str, dict] = {}
    with Store(db_path) as store:
        if run_id is None:
            dataset_id = int(store.list_datasets()["dataset_id"].max())
            run_id = int(store.latest_run(dataset_id)["run_id"])
        dataset_id = store._dataset_of_run(run_id)
        gamma, eta = store.get_thresholds(dataset_id)
        if hasattr(store, "prepare_search"):  # the word indexes, built now rather than beside the timed draws
            store.prepare_search(run_id)
        total = store.review_count(ReviewQuery(run_id, gamma, eta))
        middle = (total // 2 // PAGE_SIZE) * PAGE_SIZE
        cases: dict[str, tuple[dict, int]] = {
            "page 1 (least confident)": ({}, 0),
            "middle page": ({}, middle),
            "last page": ({}, (total - 1) // PAGE_SIZE * PAGE_SIZE),
            "action=filter": ({"action": "filter"}, 0),
            "action=correct,keep, middle": ({"action": ("correct", "keep")}, middle // 2),
            "status=undecided": ({"status": "undecided"}, 0),
            "status=decided": ({"status": "decided"}, 0),
            "status=remove": ({"status": "remove"}, 0),
            "status=failed": ({"status": "failed"}, 0),
            "confidence 0.4-0.6": ({"min_confidence": 0.4, "max_confidence": 0.6}, 0),
            "reason=wrong": ({"reason": "wrong"}, 0),
            "sort correction_confidence desc": ({"order_by": "correction_confidence", "ascending": False}, 0),
            "sort response_length, middle": ({"order_by": "response_length"}, middle),
            "sort decided_at desc": ({"order_by": "decided_at", "ascending": False}, 0),
            "sort action": ({"order_by": "action"}, 0),
            **{f"search {s!r}": ({"search": s}, 0) for s in SEARCHES},
            f"search {SEARCHES[0]!r} + undecided": ({"search": SEARCHES[0], "status": "undecided"}, 0),
        }
        for name, (fields, offset) in cases.items():
            query = ReviewQuery(run_id, gamma, eta, **fields)
            med, lo, hi, (page, n) = _median(
                lambda q=query, o=offset: store.review_queue(q, limit=PAGE_SIZE, offset=o), repeats
            )
            assert len(page) == max(0, min(PAGE_SIZE, n - offset)), (name, len(page), n, offset)
            out[f"queue: {name}"] = {"ms": med, "min": lo, "max": hi, "n": int(n)}
        for search, timed in _first_draws(store, ReviewQuery(run_id, gamma, eta), SEARCHES, repeats).items():
            out[f"queue: search {search!r}, first draw"] = timed
        for name, (fields, offset) in {
            "middle page": ({}, middle),
            "status=undecided, middle": ({"status": "undecided"}, middle),
            "sort response_length, middle": ({"order_by": "response_length"}, middle),
        }.items():  # a sort or filter chosen anew: nothing the store keeps between draws (caches dropped)
            query = ReviewQuery(run_id, gamma, eta, **fields)

            def cold_draw(q=query, o=offset):
                for cache in CACHES:
                    store.__dict__.pop(cache, None)
                return store.review_queue(q, limit=PAGE_SIZE, offset=o)

            med, lo, hi, (_, n) = _median(cold_draw, repeats)
            out[f"queue: {name}, first draw"] = {"ms": med, "min": lo, "max": hi, "n": int(n)}
        out["queue: status=undecided, middle, after a decision"] = _after_decisions(
            store, ReviewQuery(run_id, gamma, eta, status="undecided"), middle, repeats
        )
        for name, fields in {
            "count, undecided": {"status": "undecided"},
            "count, search": {"search": SEARCHES[0]},
        }.items():
            query = ReviewQuery(run_id, gamma, eta, **fields)
            med, lo, hi, n = _median(lambda q=query: store.review_count(q), repeats)
            out[name] = {"ms": med, "min": lo, "max": hi, "n": int(n)}
        med, lo, hi, payload = _median(lambda: _thresholds(store, dataset_id, run_id, gamma, eta), repeats)
        out["thresholds data"] = {"ms": med, "min": lo, "max": hi, "bytes": payload}
        if hasattr(store, "threshold_grid"):
            grid = store.threshold_grid(run_id)
            med, lo, hi, _ = _median(lambda: _recount(grid, gamma + 0.05, eta - 0.05), repeats)
            out["thresholds: recount after moving γ/η"] = {"ms": med, "min": lo, "max": hi}
    return out


def measure_search(db_path: str, run_id: int | None = None, repeats: int = 3) -> dict[str, dict]:
    """The first draw of each of ``NEW_SEARCHES`` (ms: median, min, max over ``repeats``; the kept search results
    dropped before each draw), after building the word indexes where this version has them
    (``Store.prepare_search``: its time, and the indexes' size in MB)."""
    from clear_core.store import ReviewQuery, Store

    out: dict[str, dict] = {}
    with Store(db_path) as store:
        if run_id is None:
            dataset_id = int(store.list_datasets()["dataset_id"].max())
            run_id = int(store.latest_run(dataset_id)["run_id"])
        gamma, eta = store.get_thresholds(store._dataset_of_run(run_id))
        store.review_queue(ReviewQuery(run_id, gamma, eta), limit=PAGE_SIZE)  # the order kept, as when reviewing
        if hasattr(store, "prepare_search"):
            t0 = time.perf_counter()
            store.prepare_search(run_id)
            ms = (time.perf_counter() - t0) * 1000
            size = sum(index.nbytes for index in store.__dict__["_word_indexes"].values()) / 1e6
            out["word indexes: build"] = {"ms": ms, "min": ms, "max": ms, "mb": size}
        for search, timed in _first_draws(store, ReviewQuery(run_id, gamma, eta), NEW_SEARCHES, repeats).items():
            out[f"search {search!r}, first draw"] = timed
    return out


def _first_draws(store, query, searches, repeats: int) -> dict[str, dict]:
    """Each search's first draw of ``query`` (ms: median, min, max; n rows): the kept search results
    (Store._search_rows) dropped before each draw, as when the search is first typed."""
    out = {}
    for search in searches:
        searched = dataclasses.replace(query, search=search)

        def first_draw(q=searched):
            store.__dict__.pop("_search_cache", None)
            return store.review_queue(q, limit=PAGE_SIZE)

        med, lo, hi, (_, n) = _median(first_draw, repeats)
        out[search] = {"ms": med, "min": lo, "max": hi, "n": int(n)}
    return out


def _after_decisions(store, query, offset: int, repeats: int) -> dict:
    """The draw that follows a decision (timed: the draw only), as in review: a decision on the page's first row,
    then the same page drawn again; the decisions are undone afterwards, so the database reads as before."""
    from clear_core.permissions import Actor

    lead = Actor("bench", "bench", "lead")
    dataset_id = store._dataset_of_run(query.run_id)
    times, n = [], 0
    for k in range(repeats + 1):  # the first draw after the first decision is the warm-up
        page, _ = store.review_queue(query, limit=PAGE_SIZE, offset=offset)
        store.record_decision(dataset_id, int(page["row_index"].iloc[0]), "reject", run_id=query.run_id, actor=lead)
        t0 = time.perf_counter()
        _, n = store.review_queue(query, limit=PAGE_SIZE, offset=offset)
        if k:
            times.append((time.perf_counter() - t0) * 1000)
    for _ in range(repeats + 1):
        store.undo_last_decision(dataset_id, lead)
    return {"ms": statistics.median(times), "min": min(times), "max": max(times), "n": int(n)}


def _recount(grid, gamma: float, eta: float) -> None:
    """What the page does with its cached grid when a slider moves: counts, both histograms, agreement."""
    from clear_core import histograms

    actions = histograms.cell_actions(grid, round(gamma, 2), round(eta, 2))
    histograms.counts_at(grid, round(gamma, 2), round(eta, 2))
    histograms.histogram(grid, actions, "conf_bin")
    histograms.histogram(grid, actions, "corr_bin")
    histograms.agreement(grid, actions)


def _thresholds(store, dataset_id: int, run_id: int, gamma: float, eta: float) -> int:
    """The Thresholds page's store calls on opening; returns the bytes of chart data (JSON arrays) it sends."""
    if hasattr(store, "threshold_grid"):  # this version: counts per grid cell and a stratified sample
        from clear_core import histograms

        store.threshold_version(run_id)
        grid = store.threshold_grid(run_id)
        sample = store.threshold_sample(run_id, 2_000)
        store.reason_counts(dataset_id)
        actions = histograms.cell_actions(grid, gamma, eta)
        charts = [histograms.histogram(grid, actions, c) for c in ("conf_bin", "corr_bin")]
        charts += [histograms.agreement(grid, actions), sample[["row_index", "confidence", "logprob_mean"]]]
        return sum(len(frame.to_json(orient="values")) for frame in charts)
    values = store.confidence_values(run_id)  # the older page: every row's values, binned by plotly.js
    store.action_counts(run_id, gamma, eta)
    buckets = store.agreement_by_bucket(run_id, gamma, eta, bins=10)
    store.reason_counts(dataset_id)
    scatter = values[["row_index", "confidence", "logprob_mean"]]
    scatter = scatter.sample(min(len(scatter), 20_000), random_state=0)
    charts = [values[["confidence"]], values[["correction_confidence"]], buckets, scatter]
    return sum(len(frame.to_json(orient="values")) for frame in charts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("build", "measure", "search"))
    parser.add_argument("--db", required=True)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the measurements to this JSON file")
    args = parser.parse_args(argv)
    if args.command == "build":
        t0 = time.perf_counter()
        dataset_id, run_id = build(args.db, args.rows)
        print(
            f"built {args.db}: {args.rows:,} rows, dataset {dataset_id}, run {run_id} "
            f"in {time.perf_counter() - t0:.0f} s"
        )
        return
    import clear_core

    print(f"clear_core from {Path(clear_core.__file__).parent}")
    measure = measure_search if args.command == "search" else measure_queue
    results = measure(args.db, repeats=args.repeats)
    for name, r in results.items():
        extra = f"  n={r['n']:,}" if "n" in r else ""
        extra += f"  {r['mb']:,.0f} MB" if "mb" in r else ""
        extra += f"  {r['bytes'] / 1024:,.0f} KiB to the browser" if "bytes" in r else ""
        print(f"{name:50s} {r['ms']:9.1f} ms  [{r['min']:.1f}-{r['max']:.1f}]{extra}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
