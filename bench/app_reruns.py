"""The app's reruns at scale in Streamlit's AppTest (no browser): Thresholds' first open, a redraw, γ moved by 0.05
(saved, then drawn), an accept on Review (a full run: AppTest does not run fragments alone) and Thresholds opened
again after it, in ms.

    flock /tmp/heavy.lock env PYTHONPATH=$PWD .venv/bin/python bench/app_reruns.py --db DB [--repeats 2]
    flock /tmp/heavy.lock env PYTHONPATH=/tmp/before .venv/bin/python bench/app_reruns.py --db DB --root /tmp/before

DB is a database made by bench/scale.py's import and setup steps (``--step import``, ``--step setup``); each
repeat runs in a fresh process on a fresh copy of it (the accept writes), so every first open is a cold one.
``--root`` is the checkout whose app.py runs (its code must also come first on PYTHONPATH).

Review's first draw starts building the word indexes for search in background threads at 100k rows or more
(``Store.warm_search``: the rows' index unless saved in ``.search/`` beside the database, then the proposals'),
which compete with every step timed after it for a minute at 1M rows. ``--settle`` measures the page instead: it
copies a saved rows index along with the database (``.search/DBNAME-*``, made once by ``Store.prepare_search``)
and waits for the builds to end before the timed steps, as for a person who opens Thresholds a minute after Review.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def settled(deadline: float) -> None:
    """Wait until no word index is being built in the background (``Store._build_in_background``'s threads)."""
    while any(t.name.startswith("search-index") for t in threading.enumerate()):
        if time.monotonic() > deadline:
            raise RuntimeError("the background word-index builds did not end within 300 s")
        time.sleep(0.2)


def journey(root: Path, settle: bool = False) -> dict[str, float]:
    """In this process: the app in AppTest on $CLEAR_DB, each step timed (``settle``: after Review's background
    index builds have ended)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(root / "app.py"), default_timeout=600)
    at.query_params["annotator"] = "bench"
    at.run()
    waited = time.perf_counter()
    if settle:
        settled(time.monotonic() + 300)
    waited = round((time.perf_counter() - waited) * 1000)

    def timed(step) -> float:
        t0 = time.perf_counter()
        step()
        if at.exception:
            raise RuntimeError(at.exception[0].value)
        return round((time.perf_counter() - t0) * 1000)

    out = {"thresholds_first_open": timed(lambda: at.switch_page("app_pages/thresholds.py").run())}
    out["thresholds_redraw"] = timed(at.run)
    gamma = at.slider(key="th_gamma")
    out["thresholds_move_gamma"] = timed(lambda: gamma.set_value(round(gamma.value + 0.05, 2)).run())
    at.switch_page("app_pages/review.py").run()
    accept = next(b for b in at.button if b.label == "Accept correction")
    out["review_accept_full_run"] = timed(lambda: accept.click().run())
    out["thresholds_open_after_accept"] = timed(lambda: at.switch_page("app_pages/thresholds.py").run())
    if settle:
        out["waited_for_index_builds_ms"] = waited
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--root", type=Path, default=REPO)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--settle", action="store_true", help="a saved rows index; wait for the index builds")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.child:
        print("RESULT " + json.dumps(journey(opts.root.resolve(), opts.settle)), flush=True)
        return
    for _ in range(opts.repeats):
        with tempfile.TemporaryDirectory(dir=opts.db.parent) as folder:
            db = Path(folder) / "copy.duckdb"
            shutil.copyfile(opts.db, db)
            if opts.settle:  # the rows' word index saved for DB, renamed for its copy
                for index in (opts.db.parent / ".search").glob(f"{opts.db.name}-*"):
                    target = Path(folder) / ".search" / ("copy.duckdb" + index.name[len(opts.db.name) :])
                    shutil.copytree(index, target)
            env = {**os.environ, "CLEAR_DB": str(db), "CLEAR_NO_DEMO": "1"}
            command = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--db",
                str(db),
                "--root",
                str(opts.root),
                "--child",
                *(["--settle"] if opts.settle else []),
            ]
            done = subprocess.run(command, cwd=opts.root, env=env, capture_output=True, text=True, timeout=590)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode or not lines:
                raise SystemExit(f"the run failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
            print(f"{opts.root}: {lines[-1][len('RESULT ') :]}", flush=True)


if __name__ == "__main__":
    main()
