"""Widgets and plumbing shared by the pages: the one database connection, error guard, escaped text, diff boxes.

Dataset text is untrusted, and so is everything people type: annotator names, dataset and file names, model ids,
and run errors that quote them. Every piece of it that reaches the page goes through ``html.escape`` (``plain``,
or ``diff.diff_html``, which escapes every fragment) and is shown inside our own HTML (``text_block``,
``html_line``), or in an element that never parses it (``st.code``, a dataframe cell, a widget's value or option).
None of it is passed to Streamlit Markdown (``st.markdown``, ``st.caption``, ``st.info``, titles): escaping cannot
make Markdown show text verbatim there, because Streamlit turns a bare URL or e-mail address into a live link,
``:smile:`` into an emoji, ``:material/x:`` into an icon and ``->`` into an arrow after the escapes are undone.
Two things still go through Markdown, both shown only to the person they came from: the reviewer's own name in a
button label (``md_plain``; Streamlit draws no links in labels), and an error message raised by their own action
(``guard``, ``safe_callback``).
"""

from __future__ import annotations

import html
import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from clear_core import diff, permissions, runs
from clear_core.errors import ClearError
from clear_core.store import Store, StoreError

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DB = "data/clear-review.duckdb"
logger = logging.getLogger("clear_review.app")

# Errors whose message is written for users (file, line, what to do): shown as they are. Any other exception
# is a bug: logged for the server log, and the page says something went wrong instead of blaming the user.
USER_ERRORS = (ClearError,)

CSS = """
<style>
.clear-text {
  white-space: pre-wrap; overflow-wrap: anywhere; font-size: 0.92rem; line-height: 1.5;
  background: #f7f9fb; border: 1px solid #e1e7ec; border-radius: 0.5rem; padding: 0.6rem 0.8rem;
  max-height: var(--clear-max-height, 16rem); overflow-y: auto; color: #1f2a33;
}
.clear-label { font-size: 0.8rem; font-weight: 600; color: #5b6b78; margin: 0 0 0.25rem 0;
  text-transform: uppercase; letter-spacing: 0.04em; }
.clear-del { background: #fde2e1; color: #8a1c1c; text-decoration: line-through; }
.clear-ins { background: #dcf5e3; color: #14532d; text-decoration: none; }
.clear-empty { color: #8795a1; font-style: italic; }
.clear-caption { font-size: 0.875rem; color: rgba(31, 42, 51, 0.6); margin: 0; overflow-wrap: anywhere; }
.clear-line { margin: 0; overflow-wrap: anywhere; }
.clear-heading { font-size: 1.5rem; font-weight: 600; line-height: 1.2; margin: 0; padding: 0.5rem 0;
  overflow-wrap: anywhere; }
.clear-ok { color: #177233; }
.clear-muted { color: rgba(31, 42, 51, 0.6); }
[data-testid="stMainBlockContainer"] { padding: 3.5rem 2.5rem 2rem 2.5rem; }
[data-testid="stSidebarContent"] { padding-top: 0.5rem; }
section[data-testid="stSidebar"] { width: 250px !important; min-width: 250px !important; }
</style>
"""


def db_path() -> Path:
    """The curation database file: $CLEAR_DB, else data/clear-review.duckdb (relative to the working directory)."""
    return Path(os.environ.get("CLEAR_DB") or DEFAULT_DB).expanduser().resolve()


@st.cache_resource(show_spinner=False)
def _open_store(path: str) -> Store:
    return Store(path)


def get_store() -> Store:
    """The server process's one Store (DuckDB allows one writing process; the Store is thread-safe)."""
    return _open_store(str(db_path()))


@st.cache_resource(show_spinner=False)
def _ingest_lock() -> threading.Lock:
    return threading.Lock()


def run_progress(store: Store, run_id: int) -> runs.RunProgress:
    """``runs.progress`` (which ingests finished chunks) with one caller at a time across browser sessions, so
    two tabs polling the same run never race for the same chunk file."""
    with _ingest_lock():
        return runs.progress(store, run_id)


@contextmanager
def guard(what: str = "this page") -> Iterator[None]:
    """Show errors as a short message instead of a traceback; unexpected ones are logged for the server log."""
    try:
        yield
    except USER_ERRORS as exc:
        st.error(str(exc) or type(exc).__name__, icon=":material/error:")
    except Exception as exc:  # the last line of defence: never a traceback in the browser
        logger.exception("Unexpected error while drawing %s", what)
        st.error(
            f"Something went wrong while drawing {what} ({type(exc).__name__}). Reload the page to try again; "
            "if it keeps happening, the server log has the details.",
            icon=":material/error:",
        )


def annotator() -> str:
    """The reviewer's name: in local mode as typed in the sidebar ('' until entered), in team mode the signed-in
    user's (``_session.name``)."""
    from app_pages import _session  # it imports this module

    return _session.name()


def actor() -> permissions.Actor:
    """Who is acting, for the store's writes and ``permissions.allowed``: local mode's one user, a lead, named in the
    sidebar or by the address's ?annotator=; team mode's signed-in user, or ``NotSignedIn`` (``_session.actor``)."""
    from app_pages import _session

    return _session.actor()


def current_dataset(store: Store) -> dict | None:
    """The dataset picked in the sidebar (None when the database has none)."""
    dataset_id = st.session_state.get("dataset_id")
    if dataset_id is None:
        return None
    try:
        return store.get_dataset(int(dataset_id))
    except StoreError:
        return None


def require_dataset(store: Store) -> dict:
    """The current dataset, or a pointer to the Data page and a stop."""
    dataset = current_dataset(store)
    if dataset is None:
        st.info("No dataset yet. Import a file on the Data page to start.", icon=":material/info:")
        st.page_link("app_pages/data.py", label="Go to Data", icon=":material/upload_file:")
        st.stop()
    return dataset


def require_scores(store: Store, dataset: dict, counts: bool = True) -> dict:
    """The dataset's latest run, else a pointer to the Run page and a stop; ``counts=False``: without ``n_scored``
    and ``n_failed`` (``Store.latest_run``)."""
    run = store.latest_run(dataset["dataset_id"], counts=counts)
    if run is None:
        st.info("This dataset has not been scored yet. Start a run on the Run page.", icon=":material/info:")
        st.page_link("app_pages/run.py", label="Go to Run", icon=":material/play_circle:")
        st.stop()
    return run


def plain(text: object) -> str:
    """User text (a name, a file name, a model id, an error) escaped for our own HTML, so it shows verbatim."""
    return html.escape(str(text))


def html_line(body: str, kind: str = "caption", title: str | None = None, container=st) -> None:
    """One line of our own wording as HTML, not Markdown; put user text in with ``plain()``.

    ``kind`` is ``caption`` (small and grey, like ``st.caption``), ``line`` (body text) or ``heading``; ``title``
    is a hover text (plain text too).
    """
    tag = "h3" if kind == "heading" else "p"
    tip = f' title="{plain(title)}"' if title else ""
    container.html(f'<{tag} class="clear-{kind}"{tip}>{body}</{tag}>')


def text_block(text: object, label: str | None = None, max_height: str = "16rem") -> None:
    """Dataset text, verbatim and escaped, in a scrollable box that keeps line breaks."""
    body = html.escape(text) if isinstance(text, str) and text else '<span class="clear-empty">(empty)</span>'
    head = f'<p class="clear-label">{html.escape(label)}</p>' if label else ""
    st.html(f'{head}<div class="clear-text" style="--clear-max-height: {max_height}">{body}</div>')


def diff_blocks(original: str, proposed: str, labels: tuple[str, str], max_height: str = "18rem") -> None:
    """Original and proposed response side by side; deletions struck through on the left, insertions on the right."""
    left_html, right_html = diff.diff_html(original or "", proposed or "")
    for column, label, body in zip(st.columns(2), labels, (left_html, right_html)):
        with column:
            body = body or '<span class="clear-empty">(empty)</span>'
            st.html(
                f'<p class="clear-label">{html.escape(label)}</p>'
                f'<div class="clear-text" style="--clear-max-height: {max_height}">{body}</div>'
            )


def safe_callback(func):
    """Wrap a widget callback so an error becomes a message on the page (callbacks run before the page draws)."""

    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as exc:
            st.session_state["_callback_error"] = str(exc) or type(exc).__name__
        except Exception as exc:
            logger.exception("Unexpected error in %s", getattr(func, "__name__", "a callback"))
            st.session_state["_callback_error"] = (
                f"That did not work ({type(exc).__name__}). Reload the page and try again; if it keeps happening, "
                "the server log has the details."
            )

    wrapper.__name__ = getattr(func, "__name__", "callback")
    return wrapper


def show_callback_error() -> None:
    """Show (once) the error a callback stored."""
    if message := st.session_state.pop("_callback_error", None):
        st.error(message, icon=":material/error:")


def md_plain(text: object) -> str:
    """Text made inert for Markdown syntax (every punctuation character backslash-escaped), for a widget label, where
    Streamlit shows no links. Elsewhere use ``plain()`` and ``html_line()``: see the module docstring."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~:$&])", r"\\\1", str(text))
