"""The app in a real browser: the app server, headless Debian Chromium, the embedded model.

The whole journey: upload a real file (GSM8K rows, two responses corrupted), score the first rows in the worker,
accept a proposal, reject one row, edit one, undo a removal, reload, remove every row the filters select and undo
that group, export JSONL through the download button, and check the downloaded file row by row against the database
and what was clicked. Then every page opened at its own
address, with hostile names in the database, checked for literal text and no links. Throughout, the browser may
reach only the app server: every other request is recorded and refused (the app must work air-gapped).
Screenshots of every page go to tests/artifacts/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from clear_core import clear
from clear_core.store import Store
from tests import hostile_text
from tests.app_server import AppServer

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
GSM8K = REPO.parent / "shared" / "data" / "dev" / "gsm8k_train.json"
SCORED_ROWS = 5  # of the 6 in the file: the last row stays unscored, as a partial run leaves it
EDITED_TEXT = "Edited by the browser test: the answer is 42."
ANNOTATOR = "Browser Tester"
PAGES = {"data": "Data", "run": "Run", "review": "Review", "thresholds": "Thresholds", "export": "Export"}
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"Debian chromium is not installed at {CHROMIUM}"),
    pytest.mark.skipif(not GSM8K.exists(), reason=f"the dev data set {GSM8K} is missing"),
]


def running_server(tmp_path: Path, seed=None):
    """Start an AppServer (after ``seed(db_path)`` fills its database, if given), yield it, stop it, keep its log."""
    app_server = AppServer(tmp_path / "clear.duckdb", tmp_path / "server.log")
    try:
        if seed is not None:
            seed(app_server.db)  # the server opens the database only when the first browser session runs
        app_server.wait_healthy()
        yield app_server
    finally:
        log = app_server.stop()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "server.log").write_text(log)


@pytest.fixture
def server(tmp_path):
    yield from running_server(tmp_path)


@pytest.fixture
def hostile_server(tmp_path, gsm8k_file):
    """A server whose database names a dataset, an annotator and a model with hostile text (tests/hostile_text.py)."""
    yield from running_server(tmp_path, seed=lambda db: hostile_text.seed(db, gsm8k_file))


@pytest.fixture
def source_file(tmp_path) -> Path:
    """The first 6 real GSM8K rows; row 1 answers with a refusal, row 3 is cut off mid-sentence."""
    rows = json.loads(GSM8K.read_text(encoding="utf-8"))[:6]
    rows[1]["output"] = "I'm sorry, but I can't help with that request."
    rows[3]["output"] = rows[3]["output"][: len(rows[3]["output"]) // 3]
    path = tmp_path / "gsm8k_six.json"
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return path


def is_local(url: str) -> bool:
    return url.startswith(("data:", "blob:", "about:")) or urlsplit(url).hostname in LOCAL_HOSTS


class Requests:
    """Every request the pages make; those to any other host than the app server are refused, not sent."""

    def __init__(self):
        self.urls: list[str] = []
        self.refused: list[str] = []

    def route(self, route) -> None:
        if is_local(route.request.url):
            route.continue_()
        else:
            self.refused.append(route.request.url)
            route.abort()

    def external(self) -> list[str]:
        return sorted({url for url in self.urls + self.refused if not is_local(url)})


@pytest.fixture
def requests_seen() -> Requests:
    return Requests()


@pytest.fixture
def browser_page(requests_seen):
    from playwright.sync_api import expect, sync_playwright

    # A fresh page load (a reload, an address typed in) fetches each element's code lazily: on a busy 2-core
    # machine that takes longer than expect's default 5 s.
    expect.set_options(timeout=30_000)

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
        context.on("request", lambda request: requests_seen.urls.append(request.url))
        context.route("**/*", requests_seen.route)
        page = context.new_page()
        page.set_default_timeout(60_000)
        yield page
        context.close()
        browser.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    time.sleep(1.0)  # let charts and fonts settle
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def open_page(page, title: str) -> None:
    page.get_by_role("link", name=title, exact=True).click()
    settle(page)


def settle(page) -> None:
    """Wait for the script run a click started to finish: Streamlit marks its root ``notRunning`` between runs. A
    click made while a run is still drawing can be lost (CI once lost a radio click that way), so every step waits."""
    page.wait_for_load_state()
    time.sleep(0.5)  # the click's rerun request reaches the server and the root leaves notRunning
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=30_000)
    time.sleep(1.0)  # elements of the finished run settle (expanders, toasts)


def reviewed(page) -> str:
    return page.get_by_text(re.compile(r"^Reviewed \d+ of \d+ rows$")).inner_text()


def current_row(page) -> int:
    heading = page.locator("h4").filter(has_text=re.compile(r"^Row \d+")).inner_text()
    return int(re.match(r"Row (\d+)", heading).group(1))


def wait_for_decision(page, count_before: str) -> None:
    """After a decision: the progress line moves on, then the page settles on the next row."""
    from playwright.sync_api import expect

    expect(page.get_by_text(re.compile(r"^Reviewed \d+ of \d+ rows$"))).not_to_have_text(count_before)
    settle(page)


def test_upload_score_review_export_in_a_real_browser(server, source_file, browser_page, requests_seen):
    from playwright.sync_api import expect

    base, db = server.url, server.db
    page = browser_page

    # -- Data: upload, preview, import -----------------------------------------------------------------------
    page.goto(f"{base}/data?annotator={ANNOTATOR.replace(' ', '+')}")
    page.locator("input[type='file']").set_input_files(str(source_file))
    expect(page.get_by_text("Every row checks out.")).to_be_visible()
    expect(page.get_by_text("Recognised format: alpaca")).to_be_visible()
    shot(page, "1-data-preview")
    page.get_by_role("button", name=re.compile("^Import")).click()
    expect(page.get_by_text("Imported 6 rows.")).to_be_visible()
    shot(page, "2-data-imported")

    # -- Run: the embedded model, no samples (fast), the first 5 rows ------------------------------------------
    open_page(page, "Run")
    samples = page.get_by_role("spinbutton", name="Samples per row (k)")
    samples.fill("0")
    samples.press("Enter")
    page.get_by_text("First N rows").click()
    limit = page.get_by_role("spinbutton", name="N", exact=True)
    expect(limit).to_be_enabled()
    limit.fill(str(SCORED_ROWS))
    limit.press("Enter")
    expect(page.get_by_label("Model", exact=True)).to_have_value("embedded:SmolLM2-135M-Instruct")
    time.sleep(1)
    page.get_by_role("button", name=re.compile("^Start scoring")).click()
    expect(page.get_by_role("button", name=re.compile("^Cancel run"))).to_be_visible()
    shot(page, "3-run-in-progress")
    # about a minute on a 2-core CPU; generous for a busy machine
    expect(page.get_by_text(f"{SCORED_ROWS} of {SCORED_ROWS} rows scored", exact=True)).to_be_visible(timeout=900_000)
    expect(page.get_by_text(re.compile(r"Run #1 · done"))).to_be_visible()
    shot(page, "4-run-done")

    # -- Review: accept a proposal, reject one row, edit one, undo a removal --------------------------------------
    open_page(page, "Review")
    expect(page.get_by_text("Reviewed 0 of 6 rows")).to_be_visible()
    expect(page.locator("h4").filter(has_text=re.compile(r"^Row \d+"))).to_be_visible()
    shot(page, "5-review")
    clicked: dict[str, int] = {}
    accept = page.get_by_role("button", name=re.compile("^Accept correction"))
    for _ in range(3 * SCORED_ROWS):
        row, count = current_row(page), reviewed(page)
        if "accept" not in clicked and accept.is_enabled():
            page.keyboard.press("a")  # keyboard shortcut
            clicked["accept"] = row
        elif "reject" not in clicked:
            page.get_by_role("button", name=re.compile("^Reject")).click()
            clicked["reject"] = row
        elif "edit" not in clicked:
            page.get_by_role("button", name=re.compile("^Edit")).click()
            editor = page.get_by_label("Your response", exact=True)
            expect(editor).to_be_visible()
            editor.fill(EDITED_TEXT)
            shot(page, "6-review-edit")
            page.get_by_role("button", name=re.compile("^Save edit")).click()
            clicked["edit"] = row
        elif "accept" not in clicked:
            page.keyboard.press("n")
            settle(page)
            if current_row(page) == row:
                break  # the end of the queue
            continue
        else:
            break
        wait_for_decision(page, count)
    assert set(clicked) == {"accept", "reject", "edit"}, f"no scored row got a proposal to accept: {clicked}"
    expect(page.get_by_text("Reviewed 3 of 6 rows")).to_be_visible()

    removed_row = current_row(page)
    page.keyboard.press("d")
    expect(page.get_by_text("Reviewed 4 of 6 rows")).to_be_visible()
    page.keyboard.press("u")
    expect(page.get_by_text("Reviewed 3 of 6 rows")).to_be_visible()
    expect(page.locator("h4").filter(has_text=re.compile(r"^Row \d+"))).to_have_text(
        re.compile(rf"^Row {removed_row}\b")
    )

    # a reload loses nothing: decisions are in the database, the annotator in the address
    page.reload()
    expect(page.get_by_text("Reviewed 3 of 6 rows")).to_be_visible()
    expect(page.get_by_label("Annotator", exact=True)).to_have_value(ANNOTATOR)
    page.keyboard.press("p")
    time.sleep(1)
    shot(page, "7-review-decided")

    # a query-wide remove of every row the (empty) filters select, after its dry run and one confirmation, then
    # one undo of the whole group: the three decisions above are back (the export below checks them row by row)
    page.get_by_role("button", name=re.compile(rf"Apply to all {SCORED_ROWS} rows")).click()
    dry_run = rf"^{SCORED_ROWS} rows match the filters; {SCORED_ROWS} rows would be recorded as “Remove”"
    expect(page.get_by_text(re.compile(dry_run))).to_be_visible()
    remove_all = page.get_by_role("button", name=f"Remove {SCORED_ROWS} rows", exact=True)
    expect(remove_all).to_be_disabled()
    page.get_by_text(f"Yes, remove {SCORED_ROWS} rows", exact=True).click()
    expect(remove_all).to_be_enabled()
    remove_all.click()
    expect(page.get_by_text(f"Reviewed {SCORED_ROWS} of 6 rows")).to_be_visible()
    page.keyboard.press("Escape")  # close the popover
    undo_group = page.get_by_role("button", name=re.compile(rf"Undo last group \({SCORED_ROWS} rows\)"))
    expect(undo_group).to_be_visible()
    shot(page, "7b-review-group-removed")
    undo_group.click()
    expect(page.get_by_text("Reviewed 3 of 6 rows")).to_be_visible()
    expect(undo_group).to_have_count(0)

    # -- Thresholds ------------------------------------------------------------------------------------------------
    open_page(page, "Thresholds")
    expect(page.get_by_text("Did reviewers agree?")).to_be_visible()
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    shot(page, "8-thresholds")

    # -- Export: JSONL through the download button ------------------------------------------------------------
    open_page(page, "Export")
    # the row beyond "First N rows" has no scores: the download waits until the reviewer says what to do with it
    expect(
        page.get_by_text(re.compile(r"^1 of 6 rows is not scored \(row \d\), so no automatic action"))
    ).to_be_visible()
    # (the file's button: tables have "Download as CSV" buttons of their own)
    expect(page.get_by_role("button", name=re.compile(r"^Download gsm8k_six\.curated\."))).to_be_disabled()
    page.get_by_text("Keep unchanged", exact=True).click()
    expect(page.get_by_text(re.compile(r"^1 of 6 rows is not scored \(row \d\): written unchanged\.$"))).to_be_visible()
    page.get_by_role("radio", name="JSONL", exact=True).click()
    download_button = page.get_by_role("button", name=re.compile(r"^Download gsm8k_six\.curated\.jsonl"))
    expect(download_button).to_be_disabled()  # the file is written on the server only when asked for
    page.get_by_role("button", name="Build gsm8k_six.curated.jsonl").click()
    expect(download_button).to_be_enabled()
    shot(page, "9-export")
    with page.expect_download() as download_info:
        download_button.click()
    download = download_info.value
    assert download.suggested_filename == "gsm8k_six.curated.jsonl"
    exported = [json.loads(line) for line in Path(download.path()).read_text(encoding="utf-8").splitlines()]
    shutil.copy(download.path(), ARTIFACTS / "gsm8k_six.curated.jsonl")

    # -- the file, row by row, against the database and the clicks ------------------------------------------------
    page.close()
    assert not requests_seen.external(), f"the pages reached outside the app server: {requests_seen.external()}"
    log = server.stop()
    assert "Traceback" not in log, "the app server logged a traceback; see tests/artifacts/server.log"
    expected = expected_records(db, json.loads(source_file.read_text(encoding="utf-8")), clicked)
    assert len(exported) == len(expected)
    for got, want in zip(exported, expected, strict=True):
        assert got == want


def expected_records(db: Path, source: list[dict], clicked: dict[str, int]) -> list[dict]:
    """The curated rows worked out by hand from the scores, the thresholds and the decisions in the database."""
    with Store(db, read_only=True) as store:
        dataset_id = int(store.list_datasets()["dataset_id"].iloc[0])
        run = store.latest_run(dataset_id)
        scores = store.scores(run["run_id"]).set_index("row_index")
        decisions = store.current_decisions(dataset_id).set_index("row_index")
        gamma, eta = store.get_thresholds(dataset_id)
    assert len(scores) == SCORED_ROWS and run["status"] == "done"
    assert {d: int(r) for r, d in decisions["decision"].items()} == clicked
    assert set(decisions["annotator"]) == {ANNOTATOR}

    proposal = scores.loc[clicked["accept"], "proposed_response"]
    assert isinstance(proposal, str) and proposal.strip()
    expected = []
    for row_index, record in enumerate(source):
        output = record["output"]
        if row_index == clicked["accept"]:
            output = proposal
        elif row_index == clicked["edit"]:
            output = EDITED_TEXT
        elif row_index == clicked["reject"]:
            pass
        elif row_index in scores.index:
            score = scores.loc[row_index]
            usable = isinstance(score["proposed_response"], str) and bool(score["proposed_response"].strip())
            correction = score["correction_confidence"] if usable else None
            action = clear.decide(score["confidence"], correction, gamma, eta)
            if action == "filter":
                continue
            if action == "correct":
                output = score["proposed_response"]
        expected.append({**record, "output": output})
    return expected


def test_every_page_opens_at_its_own_address_offline_and_shows_user_text_verbatim(
    hostile_server, browser_page, requests_seen
):
    """Each page's address opens that page (the root forwards to /review); no page reaches outside the app server;
    a hostile dataset, annotator and model name is shown as typed: no link, no bold, no emoji."""
    from playwright.sync_api import expect

    page, hostile = browser_page, hostile_text.HOSTILE
    for url_path, title in PAGES.items():
        page.goto(f"{hostile_server.url}/{url_path}?annotator={quote(hostile)}")
        settle(page)
        expect(page.get_by_role("heading", name=re.compile(rf"^{title}")).first).to_be_visible(timeout=60_000)
        assert urlsplit(page.url).path == f"/{url_path}", page.url
        expect(page.get_by_text("Page not found")).to_have_count(0)
        expect(page.get_by_label("Annotator", exact=True)).to_have_value(hostile)
        if url_path != "data":  # Data shows names only in its table (drawn on a canvas)
            expect(page.get_by_text(hostile).first).to_be_visible()
        if url_path == "review":  # the first row in the queue was decided by the hostile annotator
            expect(page.get_by_text(f"Kept original by {hostile},")).to_be_visible()
        expect(page.locator("a[href*='evil.example']")).to_have_count(0)
        expect(page.locator("b, strong").filter(has_text=re.compile(r"^x$"))).to_have_count(0)
        assert "\N{SMILING FACE WITH OPEN MOUTH AND SMILING EYES}" not in page.locator("body").inner_text()
        shot(page, f"direct-{url_path}")
    page.goto(f"{hostile_server.url}/?annotator={quote(hostile)}&dataset=1")
    page.wait_for_url(re.compile(r"/review\?"), timeout=60_000)
    assert "dataset=1" in page.url, page.url
    expect(page.get_by_label("Annotator", exact=True)).to_have_value(hostile)
    assert not requests_seen.external(), f"the pages reached outside the app server: {requests_seen.external()}"
    assert any(url.startswith(hostile_server.url) for url in requests_seen.urls)
