"""Two people on one server in a real browser (issue 9): an annotator and a lead sign in from two browser contexts,
Review hands them different rows (the annotator's open row is skipped for the lead), each decides theirs, the
annotator is refused a lead-only page, and the lead sees both decisions under the right names (on the rows and in
the database); the lead then undoes the annotator's decision on the Team page. Same server, browser and offline
rules as tests/test_browser.py; screenshots go to tests/artifacts/."""

from __future__ import annotations

import re

import pytest
from argon2 import PasswordHasher

from clear_core import accounts
from clear_core.store import Store
from tests import test_browser
from tests.conftest import import_with_synthetic_run
from tests.test_browser import CHROMIUM, Requests, current_row, open_page, running_server, settle, shot

pytestmark = test_browser.pytestmark

N_ROWS = 12  # tests/conftest.py's gsm8k_file; synthetic scores put the queue in the order 3, 5, 0, 1, 2, ...
PASSWORDS = {"ann": "ann-password", "lee": "lee-password"}


def seed(db, source) -> None:
    """The 12-row file with a finished synthetic run, and a users file: lee is a lead, ann an annotator."""
    import_with_synthetic_run(db, source, N_ROWS)
    users = accounts.Users()
    for name, role in (("lee", "lead"), ("ann", "annotator")):
        users = accounts.add_user(users, name, role, PASSWORDS[name])
    accounts.save_users(accounts.users_path(db), users)


@pytest.fixture
def team_server(tmp_path, gsm8k_file, monkeypatch):
    monkeypatch.delenv(accounts.USERS_ENV, raising=False)
    # Cheap hashes: the server checks each with the cost written in it, so sign-in stays quick on a busy machine.
    monkeypatch.setattr(accounts, "HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    yield from running_server(tmp_path, seed=lambda db: seed(db, gsm8k_file))


@pytest.fixture
def two_people():
    """Two browser contexts (separate cookies and sessions) on one headless Chromium; every request recorded and
    anything beyond the app server refused."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    requests = Requests()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        pages = []
        for _ in range(2):
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.on("request", lambda request: requests.urls.append(request.url))
            context.route("**/*", requests.route)
            page = context.new_page()
            page.set_default_timeout(60_000)
            pages.append(page)
        yield pages, requests
        browser.close()


def sign_in(page, base: str, name: str) -> None:
    from playwright.sync_api import expect

    page.goto(base)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_role("textbox", name="Name").fill(name)
    page.get_by_role("textbox", name="Password").fill(PASSWORDS[name])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(re.compile(r"^Reviewed \d+ of \d+ rows$"))).to_be_visible()
    settle(page)


def decide(page, label: str, reviewed_after: int) -> None:
    from playwright.sync_api import expect

    page.get_by_role("button", name=re.compile(rf"^{label}(?! \d)")).click()  # not "Remove 12 rows" (query-wide)
    expect(page.get_by_text(f"Reviewed {reviewed_after} of {N_ROWS} rows")).to_be_visible()
    settle(page)


def test_an_annotator_and_a_lead_review_different_rows_in_two_browsers(team_server, two_people):
    from playwright.sync_api import expect

    (ann, lee), requests = two_people
    sign_in(ann, team_server.url, "ann")
    expect(ann.get_by_text("Signed in as ann · annotator")).to_be_visible()
    assert current_row(ann) == 3  # the least confident row
    sign_in(lee, team_server.url, "lee")
    assert current_row(lee) == 5  # row 3 is open in ann's browser: lee's queue hands out the next one
    shot(ann, "team-1-annotator-review")
    shot(lee, "team-2-lead-review")

    decide(ann, "Remove", reviewed_after=1)
    assert current_row(ann) == 0  # row 5 is lee's: skipped
    decide(lee, "Reject", reviewed_after=2)
    assert current_row(lee) == 1  # row 0 is ann's now

    # A lead-only page is not there for the annotator, and the Export page refuses her.
    expect(ann.get_by_role("link", name="Team", exact=True)).to_have_count(0)
    open_page(ann, "Export")
    expect(ann.get_by_text("ann (annotator) may not export the curated dataset; ask a lead.")).to_be_visible()
    shot(ann, "team-3-annotator-refused-export")

    # ann left Review, so her row 0 is free again; the lead steps back to it, then sees both decisions by name.
    for row, decided in ((0, None), (5, r"Kept original by lee,"), (3, r"Removed by ann,")):
        lee.get_by_role("button", name="Prev").click()
        settle(lee)
        assert current_row(lee) == row
        if decided:
            expect(lee.get_by_text(re.compile(decided)).first).to_be_visible()
    shot(lee, "team-4-lead-sees-anns-decision")
    open_page(lee, "Team")
    expect(lee.get_by_text("Reviewing together")).to_be_visible()
    shot(lee, "team-5-lead-team-page")

    # The lead undoes ann's decision on row 3 from the Team page (a lead may undo anyone's decision).
    row = lee.get_by_role("spinbutton", name="Row", exact=True)
    row.fill("3")
    row.press("Enter")
    settle(lee)
    expect(lee.get_by_text(re.compile(r"^Removed by ann,"))).to_be_visible()
    lee.get_by_text("Undo a decision").scroll_into_view_if_needed()
    shot(lee, "team-6-lead-undo-a-decision")
    lee.get_by_role("button", name="Undo").click()
    settle(lee)
    expect(lee.get_by_text("Nobody's decision on row 3 stands.")).to_be_visible()

    team_server.stop()  # frees the database file for reading
    with Store(team_server.db, read_only=True) as store:
        log = store.decision_log(1)
    assert log[["row_index", "decision", "annotator"]].values.tolist() == [
        [3, "remove", "ann"],
        [5, "reject", "lee"],
        [3, "undo", "lee"],
    ]
    assert not requests.external(), f"the pages reached outside the app server: {requests.external()}"
