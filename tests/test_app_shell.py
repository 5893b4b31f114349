"""app.py in AppTest: first start with the demo, the sidebar (dataset, annotator), a locked database, and that
errors become short messages, never tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from clear_core import runs, workspace
from clear_core.errors import InvalidInput
from clear_core.store import Store
from tests import hostile_text

REPO = Path(__file__).resolve().parent.parent


def test_first_start_loads_the_demo_and_starts_scoring_it(tmp_path, monkeypatch, app):
    path = tmp_path / "fresh" / "clear.duckdb"
    monkeypatch.setenv("CLEAR_DB", str(path))
    monkeypatch.delenv("CLEAR_NO_DEMO", raising=False)
    at = app()
    try:
        assert not at.exception and not at.error
        with Store(path) as store:
            table = store.list_datasets()
            run = store.latest_run(int(table["dataset_id"].iloc[0]))
        assert list(table["name"]) == ["demo"] and int(table["n_rows"].iloc[0]) == 52
        assert run["model"] == "embedded:SmolLM2-135M-Instruct" and run["status"] == "running"
        assert at.sidebar.selectbox(key="dataset_id").value == 1
        assert any("Run #1 (running)" in c.value for c in at.sidebar.caption)
        at.run()  # a rerun (or a second browser tab) does not start anything again
        with Store(path) as store:
            assert len(store.list_runs()) == 1
    finally:
        with Store(path) as store:
            runs.cancel(store, 1)


def test_without_data_the_app_points_to_the_data_page(tmp_path, monkeypatch, app):
    monkeypatch.setenv("CLEAR_DB", str(tmp_path / "empty.duckdb"))
    monkeypatch.setenv("CLEAR_NO_DEMO", "1")
    for page in (None, "app_pages/run.py", "app_pages/thresholds.py", "app_pages/export.py"):
        at = app(page)
        assert not at.exception and not at.error
        assert any("Import a file on the Data page" in i.value for i in at.info)


def test_sidebar_keeps_annotator_and_dataset_from_the_address(app_db, tmp_path, app):
    path, first_id, _ = app_db
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"prompt": "Say hi.", "response": "Hi!"}) + "\n", encoding="utf-8")
    with Store(path) as store:
        second_id = workspace.import_file(store, other)
    at = app(annotator="carol", dataset=first_id)
    assert at.sidebar.text_input(key="annotator").value == "carol"
    assert at.sidebar.selectbox(key="dataset_id").value == first_id
    at = app(annotator="carol")
    assert at.sidebar.selectbox(key="dataset_id").value == second_id  # newest first
    at.sidebar.selectbox(key="dataset_id").select(first_id).run()
    assert at.query_params["dataset"] == str(first_id)
    assert any("Review · " in h.value for h in at.html)


def test_a_database_open_elsewhere_is_reported(tmp_path, monkeypatch, app):
    path = tmp_path / "locked.duckdb"
    Store(path).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from clear_core.store import Store
                store = Store({str(path)!r})
                print("open", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        monkeypatch.setenv("CLEAR_DB", str(path))
        monkeypatch.setenv("CLEAR_NO_DEMO", "1")
        at = app()
        assert not at.exception
        assert "open in another process" in at.error[0].value
    finally:
        holder.kill()
        holder.wait()


def test_unexpected_errors_show_a_short_message(app_db, monkeypatch, app):
    def broken(*args, **kwargs):
        raise RuntimeError("internal detail that users should not see")

    monkeypatch.setattr(Store, "review_queue", broken)
    at = app()
    assert not at.exception
    message = at.error[0].value
    assert "Something went wrong while drawing the Review page (RuntimeError)" in message
    assert "internal detail" not in message and "Traceback" not in message


def test_errors_in_callbacks_become_messages(app_db, monkeypatch, app):
    def refused(*args, **kwargs):
        raise InvalidInput("Row 3 cannot be decided right now.")

    at = app()
    monkeypatch.setattr(Store, "record_decision", refused)
    next(b for b in at.button if b.label == "Reject").click().run()
    assert not at.exception
    assert at.error[0].value == "Row 3 cannot be decided right now."


def raising(exc: Exception):
    """A stand-in for a Store method that raises ``exc``."""

    def method(*args, **kwargs):
        raise exc

    return method


def test_only_clear_errors_are_shown_as_the_users_problem(app_db, monkeypatch, app):
    """A ValueError or OSError that is not a ClearError is a bug: its text is not shown as if the user had caused
    it, while drawing a page or in a callback; a ClearError's message is shown as it is."""
    queue = Store.review_queue
    monkeypatch.setattr(Store, "review_queue", raising(ValueError("internal contract broken")))
    message = app().error[0].value
    assert "Something went wrong while drawing the Review page (ValueError)" in message
    assert "internal contract" not in message
    monkeypatch.setattr(Store, "review_queue", raising(InvalidInput("Sort by what?")))
    assert app().error[0].value == "Sort by what?"

    monkeypatch.setattr(Store, "review_queue", queue)
    at = app()
    monkeypatch.setattr(Store, "record_decision", raising(OSError("internal detail")))
    next(b for b in at.button if b.label == "Reject").click().run()
    assert not at.exception
    assert at.error[0].value.startswith("That did not work (OSError).")


def test_the_app_never_imports_the_model(app_db):
    """Scoring happens only in the worker: drawing every page must not import torch, transformers or the engine."""
    script = textwrap.dedent(
        """
        import sys
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file("app.py", default_timeout=60)
        at.run()
        for page in ("data", "run", "review", "thresholds", "export"):
            at.switch_page(f"app_pages/{page}.py").run()
            assert not at.exception, page
        modules = ("torch", "transformers", "clear_core.model", "clear_core.engine")
        heavy = sorted(m for m in modules if m in sys.modules)
        print("heavy:", heavy)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "heavy: []" in out.stdout


def markdown_bodies(at) -> list[str]:
    """The text of every element that Streamlit draws as Markdown, on the page and in the sidebar (hostile text
    must appear in none of them, escaped or not: "evil" is in every form of it)."""
    kinds = ("markdown", "caption", "title", "header", "subheader", "info", "success", "warning", "error", "toast")
    return [element.value for kind in kinds for element in at.get(kind)]


def test_user_text_is_shown_verbatim_on_every_page(tmp_path, monkeypatch, gsm8k_file, app):
    """Names, model ids and run errors never reach Markdown (which would link the URLs, bold the <b>, draw an emoji
    and an arrow): they are HTML-escaped into our own HTML, or shown by an element that does not parse them.
    tests/test_browser.py checks the same pages in a real browser."""
    path = tmp_path / "hostile.duckdb"
    monkeypatch.setenv("CLEAR_DB", str(path))
    monkeypatch.setenv("CLEAR_NO_DEMO", "1")
    dataset_id, _ = hostile_text.seed(path, gsm8k_file)
    hostile, escaped = hostile_text.HOSTILE, hostile_text.HOSTILE_HTML
    at = app(annotator=hostile)
    assert at.sidebar.selectbox(key="dataset_id").format_func(dataset_id) == f"{hostile} · 12 rows"
    html_by_page = {}
    for page in ("data", "run", "review", "thresholds", "export"):
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, page
        assert not any("evil" in body for body in markdown_bodies(at)), page
        html_by_page[page] = " ".join(element.value for element in at.html)
        assert "<a" not in html_by_page[page] and "<b>x" not in html_by_page[page], page
        if page == "data":
            assert list(at.dataframe[0].value["name"]) == [hostile]
        if page == "run":
            assert at.code[0].value == f"The model {hostile} could not be loaded."
    at.switch_page("app_pages/review.py").run()
    at.selectbox(key="review_status").set_value("failed").run()  # the row the worker could not score, and why
    assert not any("evil" in body for body in markdown_bodies(at))
    assert [c.value for c in at.code] == [hostile_text.FAILED_ROW_ERROR]
    assert f"Score “{escaped}”" in html_by_page["run"] and f"Model: <code>{escaped}</code>" in html_by_page["run"]
    assert f"Review · {escaped}" in html_by_page["review"] and f"by <b>{escaped}</b>" in html_by_page["review"]
    assert f"“{escaped}”, run #1" in html_by_page["thresholds"]
    assert f"The curated “{escaped}”" in html_by_page["export"]
