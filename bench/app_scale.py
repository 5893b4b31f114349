"""The real app at scale: the Streamlit server and headless Chromium on a generated dataset, timed as a person sees it.

    flock /tmp/heavy.lock .venv/bin/python bench/app_scale.py --rows 100000
    flock /tmp/heavy.lock .venv/bin/python bench/app_scale.py --rows 100000 --root /tmp/base11d   # the old code
    flock /tmp/heavy.lock .venv/bin/python bench/app_scale.py --rows 1000000 --accepts 2
    flock /tmp/heavy.lock .venv/bin/python bench/app_scale.py --rows 1000000 --db /tmp/app/app_1000000.duckdb \
        --only-review   # a database built once, copied for each run; Review's accepts and Thresholds only

``--root`` is the checkout whose app runs (default: this tree); its code builds the database too, through
bench/scale.py's import and setup steps (the same data as there: GSM8K rows cycled, synthetic scores through
``Store.add_scores``, the least confident rows with a proposal). ``--db FILE`` takes a database built that way
before (bench/scale.py's ``--step import`` and ``--step setup``) instead, copied so that every run starts from the
same file (``--with-index``: with the word indexes ``Store.prepare_search`` saved for it, so that no search index
is built during the run, as on every open after a dataset's first); ``--only-review`` stops after Thresholds (no
Export). Then one server (``streamlit run app.py`` in that checkout, with tests/app_server.py as the browser tests
start it) and one browser session:

- Review first load: the address typed in until the row and 'Reviewed 0 of N rows' are on screen and the script
  run is over; then a reload (the server warm).
- accept -> next row: key A on the shown row until the next row's heading and the new count are on screen
  (``--accepts`` times; median and range).
- open Thresholds: the link clicked until its charts are drawn; the page's JS heap (CDP ``Performance.getMetrics``,
  JSHeapUsedSize) after it; with ``--screenshot FILE``, a PNG of the page (untimed), to compare two versions.
- open Export: until the page is drawn; then, rows without scores (the failed ones) set to "Keep unchanged", until
  the file can be downloaded (the older page prepares it as it
  draws; the newer one writes it when Build is clicked, which this does); then the same for JSONL, CSV, Parquet.
- after each: the server's RSS and its peak so far (VmHWM), from /proc.
- ``--sessions 2``: the same journey in a second browser session while the first stays open (issue 11's memory
  goal: a 1M-row dataset open in two sessions, every page, every export format). Review opens on "All rows", so
  a later session first sets Review status to "Not reviewed" (untimed): otherwise it opens on the rows the first
  session accepted, and accepting one again leaves the count of reviewed rows unchanged.

The browser may reach only the app server (as in the tests). Nothing is asserted; numbers are printed, and with
``--json FILE`` appended as one record. Run it under ``flock /tmp/heavy.lock``: one heavy job at a time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.app_server import AppServer  # noqa: E402  (the server the browser tests start)

CHROMIUM = "/usr/bin/chromium"
ANNOTATOR = "bench"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
FORMATS = ("jsonl", "csv", "parquet")


def build_database(root: Path, n_rows: int, folder: Path) -> Path:
    """Import and score the generated dataset with ``root``'s code (bench/scale.py's import and setup steps)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import scale  # this folder's bench/scale.py: its data and steps

    source = scale.source_file(folder, n_rows)
    db = folder / "app.duckdb"
    opts = argparse.Namespace(repeats=1, search="marbles", ingest_rows=0, step_timeout=1800, lock=False)
    scale.subprocess_step(root, "import", db, opts, ["--source", str(source)])
    scale.subprocess_step(root, "setup", db, opts)
    return db


class Server(AppServer):
    """tests/app_server.py's AppServer for ``root``'s app, started and healthy, that also reports its memory."""

    def __init__(self, root: Path, db: Path, log: Path):
        super().__init__(db, log, root=root)
        try:
            self.wait_healthy(timeout_s=120)
        except RuntimeError:
            raise RuntimeError(f"the app server did not start; see {log}") from None

    def memory_gb(self) -> tuple[float, float]:
        """(RSS now, peak RSS so far) of the server process, GB."""
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value
        return int(fields["VmRSS"].split()[0]) / 2**20, int(fields["VmHWM"].split()[0]) / 2**20

    def stop(self) -> str:
        return super().stop(timeout_s=30)


def run_over(page, started: bool = False) -> None:
    """Wait until Streamlit's 'running' indicator is gone (the script run a click started has finished); with
    ``started``, first give the run up to a second to show the indicator (a click's rerun may not have begun)."""
    from playwright.sync_api import expect

    widget = page.get_by_test_id("stStatusWidget")
    if started:
        with contextlib.suppress(AssertionError):
            expect(widget).to_be_visible(timeout=1_000)
    expect(widget).to_be_hidden(timeout=240_000)


def heading(page):
    return page.locator("h4").filter(has_text=re.compile(r"^Row \d+"))


def journey(
    server: Server, n_rows: int, accepts: int, sessions: int, only_review: bool = False, screenshot: Path | None = None
) -> dict:
    """The timed journey in one browser session, then (``sessions`` > 1) the same in more sessions while the
    first stays open; the server's memory after each step of each session."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=240_000)
    result: dict = {"refused_requests": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        contexts = []
        for session in range(1, sessions + 1):
            context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
            contexts.append(context)
            context.route("**/*", lambda r: route(r, result["refused_requests"]))
            prefix = "" if session == 1 else f"s{session}_"
            steps: dict = {}
            try:
                session_steps(
                    server,
                    context,
                    n_rows,
                    accepts,
                    steps,
                    only_undecided=session > 1,
                    only_review=only_review,
                    screenshot=screenshot if session == 1 else None,
                )
            except Exception as exc:  # keep what was measured; say where it stopped
                steps["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                print(f"  session {session} stopped: {steps['error']}", flush=True)
            result.update({prefix + k: v for k, v in steps.items()})
            if "error" in steps:
                break
        for context in contexts:
            context.close()
        browser.close()
    return result


def route(r, refused: list[str]) -> None:
    """Let requests to the app server through; refuse and record any other (the app must work air-gapped)."""
    if r.request.url.startswith(("data:", "blob:", "about:")) or re.match(
        r"https?://(127\.0\.0\.1|localhost|\[::1\])[:/]", r.request.url
    ):
        r.continue_()
    else:
        refused.append(r.request.url)
        r.abort()


def session_steps(
    server: Server,
    context,
    n_rows: int,
    accepts: int,
    result: dict,
    only_undecided: bool,
    only_review: bool = False,
    screenshot: Path | None = None,
) -> None:
    """The journey in one session, each measurement written into ``result`` as it is taken. With
    ``only_undecided`` (every session after the first), Review status is set to "Not reviewed" before the accepts:
    Review opens on "All rows", least confident first, so a later session would open on the rows the first one
    already accepted, and accepting one again records a decision that leaves the count of reviewed rows as it is.
    The select is then blurred: while it has the focus, key A is typed into it instead of reaching the shortcut."""
    from playwright.sync_api import expect

    def memory(after: str) -> None:
        result[f"server_gb_{after}"], result[f"server_peak_gb_{after}"] = server.memory_gb()
        timings = {k: v for k, v in result.items() if k.endswith("_s") or k.endswith("heap_gb")}
        print(f"  after {after}: server {result[f'server_gb_{after}']:.2f} GB; {timings}", flush=True)

    page = context.new_page()
    page.set_default_timeout(240_000)
    cdp = context.new_cdp_session(page)
    cdp.send("Performance.enable")
    total = f"{n_rows:,}"

    def reviewed():
        return page.get_by_text(re.compile(rf"^Reviewed [\d,]+ of {total} rows$"))

    t0 = time.perf_counter()
    page.goto(f"{server.url}/review?annotator={ANNOTATOR}")
    expect(reviewed()).to_be_visible()
    expect(heading(page)).to_be_visible()
    run_over(page)
    result["review_first_load_s"] = time.perf_counter() - t0
    memory("review")
    t0 = time.perf_counter()
    page.reload()
    expect(reviewed()).to_be_visible()
    expect(heading(page)).to_be_visible()
    run_over(page)
    result["review_reload_s"] = time.perf_counter() - t0
    if only_undecided:  # untimed: the rows nobody has decided, as a second reviewer would filter them
        page.get_by_label("Review status").click()
        page.get_by_role("option", name="Not reviewed", exact=True).click()
        run_over(page, started=True)
        expect(heading(page)).to_be_visible()
        # the select keeps the focus, and a key typed into it is text, not a shortcut: give the focus back
        page.evaluate("document.activeElement && document.activeElement.blur()")

    times = []
    for _ in range(accepts):
        shown, count = heading(page).inner_text(), reviewed().inner_text()
        expect(page.get_by_role("button", name=re.compile("^Accept correction"))).to_be_enabled()
        t0 = time.perf_counter()
        page.keyboard.press("a")
        expect(reviewed()).not_to_have_text(count)
        expect(heading(page)).not_to_have_text(shown)
        times.append(time.perf_counter() - t0)
        run_over(page)
    result["accept_next_s"] = times
    memory("accepts")

    t0 = time.perf_counter()
    page.get_by_role("link", name="Thresholds", exact=True).click()
    expect(page.get_by_text("Did reviewers agree?")).to_be_visible()
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    run_over(page)
    result["thresholds_s"] = time.perf_counter() - t0
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    result["thresholds_js_heap_gb"] = metrics["JSHeapUsedSize"] / 2**30
    memory("thresholds")
    if screenshot is not None:  # untimed: the whole page, to compare what two versions draw
        page.set_viewport_size({"width": 1280, "height": 2600})  # the whole page: Streamlit scrolls inside it
        page.wait_for_timeout(3_000)  # the charts redrawn at the new size
        page.screenshot(path=str(screenshot), timeout=30_000)

    if only_review:
        return
    t0 = time.perf_counter()
    page.get_by_role("link", name="Export", exact=True).click()
    expect(page.get_by_role("button", name=re.compile(r"^Download .*\.curated\."))).to_be_visible()
    run_over(page)
    result["export_open_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    page.get_by_text("Keep unchanged", exact=True).click()  # failed rows are written unchanged, not a refusal
    export_ready(page, None)
    result["export_ready_s"] = time.perf_counter() - t0
    memory("export")
    for fmt in FORMATS:
        t0 = time.perf_counter()
        page.get_by_role("radio", name=fmt.upper(), exact=True).click()
        export_ready(page, fmt)
        result[f"export_{fmt}_s"] = time.perf_counter() - t0
    memory("every_format")


def export_ready(page, fmt: str | None) -> None:
    """Until the Download button of the chosen format is enabled: the older page prepares the file as it draws,
    the newer one writes it when its Build button is clicked (clicked here)."""
    from playwright.sync_api import expect

    suffix = rf"\.{fmt}$" if fmt else ""
    download = page.get_by_role("button", name=re.compile(rf"^Download .*\.curated{suffix}"))
    expect(download).to_be_visible()
    run_over(page, started=True)
    build = page.get_by_role("button", name=re.compile(r"^Build "))
    if build.count():
        build.click()
        run_over(page, started=True)
    expect(download).to_be_enabled()


def session_report(result: dict, prefix: str) -> list[str]:
    def get(key: str, fmt: str = "6.2f") -> str:
        value = result.get(prefix + key)
        return "—" if value is None else format(value, fmt)

    accepts = result.get(prefix + "accept_next_s") or []
    spread = f" [{min(accepts):.2f}-{max(accepts):.2f}]" if len(accepts) > 1 else ""
    median = f"{statistics.median(accepts):6.2f}" if accepts else "—"
    lines = [
        f"  Review first load        {get('review_first_load_s')} s   (reload {get('review_reload_s', '.2f')} s)",
        f"  accept -> next row       {median} s{spread} (median of {len(accepts)})",
        f"  open Thresholds          {get('thresholds_s')} s   JS heap {get('thresholds_js_heap_gb', '.2f')} GB",
        f"  open Export              {get('export_open_s')} s   file ready {get('export_ready_s', '.2f')} s later; "
        "then " + ", ".join(f"{f.upper()} {get(f'export_{f}_s', '.2f')} s" for f in FORMATS),
    ]
    for after in ("review", "accepts", "thresholds", "export", "every_format"):
        if prefix + f"server_gb_{after}" in result:
            lines.append(
                f"  server memory after {after:<13} {result[f'{prefix}server_gb_{after}']:.2f} GB "
                f"(peak {result[f'{prefix}server_peak_gb_{after}']:.2f} GB)"
            )
    if prefix + "error" in result:
        lines.append(f"  stopped: {result[prefix + 'error']}")
    return lines


def report(result: dict, sessions: int) -> str:
    lines = [f"app at {result['rows']:,} rows ({result['root']}), {time.strftime('%Y-%m-%d %H:%M')}"]
    for session in range(1, sessions + 1):
        if session > 1 and f"s{session}_review_first_load_s" not in result:
            break
        if sessions > 1:
            lines.append(f" browser session {session}" + (" (the first still open)" if session > 1 else ""))
        lines += session_report(result, "" if session == 1 else f"s{session}_")
    if result["refused_requests"]:
        lines.append(f"  refused requests outside the server: {result['refused_requests']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--root", type=Path, default=REPO, help="checkout whose app runs (default: this tree)")
    parser.add_argument("--accepts", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=1, help="browser sessions, one after another, all open")
    parser.add_argument("--work", type=Path, default=Path("/tmp/clear_app_scale"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--db", type=Path, help="a database built before (copied; --rows must be its size)")
    parser.add_argument("--only-review", action="store_true", help="Review and Thresholds only, no Export")
    parser.add_argument(
        "--with-index", action="store_true", help="copy --db's saved word indexes (Store.prepare_search): none built"
    )
    parser.add_argument("--screenshot", type=Path, help="a PNG of the Thresholds page as the first session drew it")
    opts = parser.parse_args(argv)

    folder = opts.work / f"{opts.root.name}-{opts.rows}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    if opts.db:
        db = folder / "app.duckdb"
        shutil.copyfile(opts.db, db)
        if opts.with_index:  # the word indexes saved for --db, renamed for its copy
            for index in (opts.db.parent / ".search").glob(f"{opts.db.name}-*"):
                shutil.copytree(index, folder / ".search" / (db.name + index.name[len(opts.db.name) :]))
        print(f"database copied from {opts.db} in {time.perf_counter() - t0:.0f} s", flush=True)
    else:
        db = build_database(opts.root.resolve(), opts.rows, folder)
        print(f"database built in {time.perf_counter() - t0:.0f} s ({db})", flush=True)
    server = Server(opts.root.resolve(), db, folder / "server.log")
    try:
        result = {
            "rows": opts.rows,
            "root": str(opts.root),
            **journey(server, opts.rows, opts.accepts, opts.sessions, opts.only_review, opts.screenshot),
        }
    finally:
        server.stop()
    print(report(result, opts.sessions))
    if "Traceback" in (folder / "server.log").read_text(errors="replace"):
        print(f"  the server logged a traceback: {folder / 'server.log'}")
    if opts.json:
        with open(opts.json, "a", encoding="utf-8") as f:
            f.write(json.dumps(result) + "\n")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
