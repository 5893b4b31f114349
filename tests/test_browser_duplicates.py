"""A near-duplicate group decided in a real browser: the Review page lists the least confident row's duplicate
responses, the reviewer looks, picks Remove and applies it, and the database records that removal on each duplicate
(and only there) under the reviewer's name. Same server, browser and offline rules as tests/test_browser.py."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from clear_core.store import Store
from tests import test_browser
from tests.conftest import import_with_synthetic_run
from tests.test_app_duplicates import with_duplicates
from tests.test_browser import ANNOTATOR, running_server, settle, shot

pytestmark = test_browser.pytestmark
browser_page = test_browser.browser_page  # the browser and offline rules of the journey test, as fixtures
requests_seen = test_browser.requests_seen

N_ROWS = 12  # tests/conftest.py's gsm8k_file
DUPLICATES = [8, 10]  # of row 3, the refusal and the least confident row (tests/test_app_duplicates.py)


def seed(db, source) -> None:
    """Import the file with duplicates and store synthetic scores for every row, as a finished run."""
    import_with_synthetic_run(db, source, N_ROWS)


@pytest.fixture
def duplicates_server(tmp_path, gsm8k_file):
    yield from running_server(tmp_path, seed=lambda db: seed(db, with_duplicates(gsm8k_file)))


def test_a_decision_on_a_row_applies_to_its_near_duplicates_in_a_real_browser(
    duplicates_server, browser_page, requests_seen
):
    from playwright.sync_api import expect

    page = browser_page
    page.goto(f"{duplicates_server.url}/review?annotator={quote(ANNOTATOR)}")
    settle(page)
    expect(page.locator("h4").filter(has_text=re.compile(r"^Row 3\b"))).to_be_visible()
    expect(page.get_by_text(f"Reviewed 0 of {N_ROWS} rows")).to_be_visible()

    page.get_by_text("2 near-duplicate responses").click()  # a look first
    group = page.get_by_test_id("stExpanderDetails").filter(has_text="Decision for its duplicates")
    apply = group.get_by_role("button", name="Apply this decision to its 2 duplicates")
    expect(apply).to_be_disabled()
    group.get_by_text("Remove", exact=True).click()
    settle(page)
    expect(group.get_by_role("radio", name="Remove")).to_be_checked()
    expect(apply).to_be_enabled()
    shot(page, "duplicates-before-apply")
    apply.click()

    expect(page.get_by_text(f"Reviewed 2 of {N_ROWS} rows")).to_be_visible()
    expect(page.get_by_text(re.compile(r"recorded on 2 duplicates of row 3"))).to_be_visible()
    shot(page, "duplicates-applied")
    duplicates_server.stop()  # frees the database file for reading
    with Store(duplicates_server.db, read_only=True) as store:
        log = store.decision_log(1)
    assert sorted(log["row_index"]) == DUPLICATES
    assert set(log["decision"]) == {"remove"} and set(log["annotator"]) == {ANNOTATOR}
    assert not requests_seen.external(), f"the page reached outside the app server: {requests_seen.external()}"
