"""The app in a real browser with a 100,000-row dataset: Review opens, an accepted row gives way to the next one,
Thresholds and Export open, and nothing reaches outside the app server.

The dataset is generated, not copied: a JSONL file of GSM8K rows cycled (each made distinct by its number)
imported with ``workspace.import_file``, synthetic scores for every row with ``Store.add_scores`` in one call,
and exact-repeat duplicate groups written into ``duplicate_groups`` in SQL (``Store.find_duplicates`` on 100k
rows would take most of the test's time). The least confident row has a confident proposal, so it is the first
row Review shows and the one the test accepts. No timing is asserted here; bench/app_scale.py measures the same
journey.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from clear_core import workspace
from clear_core.store import Store
from tests.test_browser import (  # noqa: F401  (fixtures)
    ANNOTATOR,
    GSM8K,
    browser_page,
    current_row,
    open_page,
    pytestmark,
    requests_seen,
    running_server,
    shot,
)

N_ROWS = 100_000
FIRST_ROW = 4_242  # the least confident row, with a confident proposal


def write_scale_file(path: Path, n_rows: int) -> Path:
    """A JSONL file of n Alpaca rows cycled from GSM8K, each instruction numbered so no two rows are equal."""
    source = json.loads(GSM8K.read_text(encoding="utf-8"))
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n_rows):
            original = source[i % len(source)]
            record = {"instruction": f"{original['instruction']} (#{i})", "input": "", "output": original["output"]}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def scale_scores(n_rows: int, texts: list[str]) -> list[dict]:
    """Synthetic scores: confidence ~ Beta(5, 2) (seeded), a proposal on a fifth of the rows, 3.4% above η = 0.7;
    FIRST_ROW least confident, with a proposal at correction confidence 0.95."""
    rng = np.random.default_rng(11)
    confidence = 0.01 + 0.99 * rng.beta(5, 2, n_rows)
    u = rng.random(n_rows)
    correction = np.where(u < 0.034, 0.7 + 0.3 * rng.random(n_rows), 0.7 * rng.random(n_rows))
    records = []
    for i in range(n_rows):
        proposal = bool(u[i] < 0.2)
        records.append(
            {
                "row_index": i,
                "confidence": float(confidence[i]),
                "self_reflection": 0.5,
                "logprob_mean": -1.0,
                "n_response_tokens": 50 + i % 200,
                "proposed_response": texts[(i * 7) % len(texts)] if proposal else None,
                "correction_confidence": float(correction[i]) if proposal else None,
            }
        )
    records[FIRST_ROW].update(
        confidence=0.001, proposed_response="The answer, corrected: 42.", correction_confidence=0.95
    )
    return records


def seed_scale(db: Path, n_rows: int = N_ROWS) -> tuple[int, int]:
    """A database holding the generated dataset and a finished run scoring every row; returns (dataset, run)."""
    texts = [r["output"] for r in json.loads(GSM8K.read_text(encoding="utf-8"))]
    source = write_scale_file(db.parent / f"scale_{n_rows}.jsonl", n_rows)
    with Store(db) as store:
        dataset_id = workspace.import_file(store, source, name=f"scale_{n_rows}")
        run_id = store.create_run(dataset_id, "synthetic", {"samples": 0})
        store.add_scores(run_id, scale_scores(n_rows, texts))
        store.set_run_status(run_id, "running")
        store.set_run_status(run_id, "done")
        with store._transaction() as cursor:  # exact repeats of GSM8K rows, as find_duplicates groups them
            for kind in ("response", "prompt"):
                cursor.execute(
                    "INSERT INTO duplicate_groups SELECT dataset_id, ?, row_index, row_index % ? FROM rows "
                    "WHERE dataset_id = ?",
                    [kind, len(texts), dataset_id],
                )
    return dataset_id, run_id


@pytest.fixture
def scale_server(tmp_path):
    yield from running_server(tmp_path, seed=seed_scale)


def test_review_thresholds_and_export_with_100k_rows(scale_server, browser_page, requests_seen):  # noqa: F811
    from playwright.sync_api import expect

    page = browser_page
    total = f"{N_ROWS:,}"
    page.goto(f"{scale_server.url}/review?annotator={ANNOTATOR.replace(' ', '+')}")
    expect(page.get_by_text(f"Reviewed 0 of {total} rows")).to_be_visible()
    heading = page.locator("h4").filter(has_text=re.compile(r"^Row \d+"))
    expect(heading).to_have_text(re.compile(rf"^Row {FIRST_ROW}\b"))

    page.get_by_role("button", name=re.compile("^Accept correction")).click()
    expect(page.get_by_text(f"Reviewed 1 of {total} rows")).to_be_visible()
    expect(heading).not_to_have_text(re.compile(rf"^Row {FIRST_ROW}\b"))
    next_row = current_row(page)

    open_page(page, "Thresholds")
    expect(page.get_by_text("Did reviewers agree?")).to_be_visible()
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    shot(page, "scale-3-thresholds")

    open_page(page, "Export")
    download = page.get_by_role("button", name=re.compile(rf"^Download scale_{N_ROWS}\.curated\.jsonl$"))
    expect(download).to_be_visible()
    build = page.get_by_role("button", name=re.compile(rf"^Build scale_{N_ROWS}\.curated\.jsonl$"))
    if build.count():  # the page writes the file on the server when asked, then offers it
        build.click()
    expect(download).to_be_enabled()
    shot(page, "scale-4-export")

    page.close()
    assert not requests_seen.external(), f"the pages reached outside the app server: {requests_seen.external()}"
    log = scale_server.stop()
    assert "Traceback" not in log, "the app server logged a traceback; see tests/artifacts/server.log"
    with Store(scale_server.db, read_only=True) as store:
        dataset_id = int(store.list_datasets()["dataset_id"].iloc[0])
        decisions = store.current_decisions(dataset_id)
        assert store.review_progress(store.latest_run(dataset_id)["run_id"]) == (1, N_ROWS)
    assert decisions[["row_index", "decision", "final_response", "annotator"]].to_dict("records") == [
        {
            "row_index": FIRST_ROW,
            "decision": "accept",
            "final_response": "The answer, corrected: 42.",
            "annotator": ANNOTATOR,
        }
    ]
    assert next_row != FIRST_ROW
