"""The Run page on a run that finished with rows it could not score: done, with the message naming them."""

from __future__ import annotations

from clear_core import workspace
from clear_core.store import Store
from tests.conftest import synthetic_scores


def test_a_done_run_with_failed_rows_says_so(tmp_path, monkeypatch, gsm8k_file, app):
    path = tmp_path / "run.duckdb"
    monkeypatch.setenv("CLEAR_DB", str(path))
    monkeypatch.setenv("CLEAR_NO_DEMO", "1")
    message = (
        "1 row could not be scored (first: row 4, RuntimeError: probability tensor contains inf). It is listed in "
        "Review under 'scoring failed'; details in /tmp/x/worker.log. Starting the run again retries only it."
    )
    with Store(path) as store:
        dataset_id = workspace.import_file(store, gsm8k_file)
        run_id = store.create_run(dataset_id, "synthetic", {"samples": 0})
        scores = synthetic_scores(12)
        scores[4] = {"row_index": 4, "error": "RuntimeError: probability tensor contains inf"}
        store.add_scores(run_id, scores)
        store.set_run_status(run_id, "done", error=message)
    at = app("app_pages/run.py")
    assert not at.exception
    assert any("not every row could be scored" in w.value for w in at.warning)
    assert message in [c.value for c in at.code]
    assert any("11 of 12 rows scored, 0 not scored, 1 failed" in m.value for m in [*at.markdown, *at.caption])
