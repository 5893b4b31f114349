"""The app's reruns at scale in Streamlit's AppTest (no browser): Thresholds' first open, a redraw, γ moved by 0.05
(saved, then drawn), an accept on Review (a full run: AppTest does not run fragments alone) and Thresholds opened
again after it, in ms.

    flock /tmp/heavy.lock env PYTHONPATH=$PWD .venv/bin/python bench/app_reruns.py --db DB [--repeats 2]
    flock /tmp/heavy.lock env PYTHONPATH=/tmp/before .venv/bin/python bench/app_reruns.py --db DB --root /tmp/before

DB is a database made by bench/scale.py's import and setup steps (``--step import``, ``--step setup``); each
repeat runs in a fresh process on a fresh copy of it (the accept writes), so every first open is a cold one.
``--root`` is the checkout whose app.py runs (its code must also come first on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def journey(root: Path) -> dict[str, float]:
    """In this process: the app in AppTest on $CLEAR_DB, each step timed."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(root / "app.py"), default_timeout=600)
    at.query_params["annotator"] = "bench"
    at.run()

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
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--root", type=Path, default=REPO)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.child:
        print("RESULT " + json.dumps(journey(opts.root.resolve())), flush=True)
        return
    for _ in range(opts.repeats):
        with tempfile.TemporaryDirectory(dir=opts.db.parent) as folder:
            db = Path(folder) / "copy.duckdb"
            shutil.copyfile(opts.db, db)
            env = {**os.environ, "CLEAR_DB": str(db), "CLEAR_NO_DEMO": "1"}
            command = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--db",
                str(db),
                "--root",
                str(opts.root),
                "--child",
            ]
            done = subprocess.run(command, cwd=opts.root, env=env, capture_output=True, text=True, timeout=590)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode or not lines:
                raise SystemExit(f"the run failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
            print(f"{opts.root}: {lines[-1][len('RESULT ') :]}", flush=True)


if __name__ == "__main__":
    main()
