"""CLEAR Review: the Streamlit app. `streamlit run app.py` (or `make run`).

This file sets the page up, opens the one database connection, loads and scores the demo dataset on the very
first start, draws the sidebar (who you are, dataset, run status) and hands over to the page picked in the
navigation. Each page lives in app_pages/ and only draws; the logic is in clear_core.

Local mode (no users file): one person on this machine, a lead, named in the sidebar. Team mode (a users file,
clear_core/accounts.py): nothing but the sign-in page until someone signs in; then the sidebar names them and
their role, and every write is checked against that role (clear_core/permissions.py) by the page and the store.
"""

from __future__ import annotations

import os

import streamlit as st

from app_pages import _session
from app_pages._components import (
    CSS,
    REPO,
    db_path,
    get_store,
    guard,
    html_line,
    plain,
    run_progress,
    show_callback_error,
)
from clear_core import permissions, runs, workspace
from clear_core.confidence import ScoringConfig
from clear_core.errors import ClearError
from clear_core.store import Store
from clear_core.ui_state import is_starting

# The first-start demo run favours a quick first look over the paper's k = 5 samples: without sampling and in
# small batches, the first rows reach Review in about a minute on a laptop CPU. Start a full run on the Run page.
DEMO_CONFIG = ScoringConfig(samples=0, batch_size=4)
REVIEW_PAGE = "app_pages/review.py"

# The tab icon is a local SVG (sent inline as a data: URL): a ":material/...:" page icon makes the browser fetch the
# icon from fonts.gstatic.com, and the app must work air-gapped.
st.set_page_config(page_title="CLEAR Review", page_icon=str(REPO / "assets" / "favicon.svg"), layout="wide")
st.html(CSS)


@st.cache_resource(show_spinner=False)
def first_start(path: str) -> int | None:
    """On an empty database: import the bundled demo and start scoring it, so Review fills within a minute.

    Runs once per server process and database; CLEAR_NO_DEMO=1 turns it off (tests, empty installs).
    """
    if os.environ.get("CLEAR_NO_DEMO"):
        return None
    store = get_store()
    dataset_id = workspace.ensure_demo_dataset(store)
    if dataset_id is not None:
        runs.start_run(store, path, dataset_id, config=DEMO_CONFIG)
    return dataset_id


def pick_dataset(datasets) -> None:
    """Keep st.session_state.dataset_id on an existing dataset: the URL's, else the newest."""
    ids = [int(i) for i in datasets["dataset_id"]]
    if st.session_state.get("dataset_id") in ids:
        return
    wanted = st.query_params.get("dataset")
    st.session_state.dataset_id = int(wanted) if wanted and wanted.isdigit() and int(wanted) in ids else ids[0]


def remember_dataset() -> None:
    st.query_params["dataset"] = str(st.session_state.dataset_id)
    for key in ("review_row", "review_page", "th_gamma", "th_eta"):
        st.session_state.pop(key, None)


def who(user) -> None:
    """Team mode: who is signed in, their role and a sign-out button. Local mode: that label, and the name typed."""
    if user is not None:
        html_line(f"Signed in as <b>{plain(user.name)}</b> · {plain(user.role)}", kind="line")
        st.button("Sign out", icon=":material/logout:", on_click=_session.sign_out, key="sign_out")
        return
    html_line("Local mode: you are the only user", kind="line", title="Add users to work as a team (README: Teams).")
    if _session.listening_beyond_this_machine():
        st.caption(
            ":orange[:material/warning:] This server also listens beyond this machine, and whoever reaches it acts "
            "as you, a lead. `make run` listens on 127.0.0.1 only; add users for a team."
        )
    st.text_input(
        "Annotator",
        key="annotator",
        bind="query-params",
        placeholder="Your name",
        help="Recorded with every decision you make. Kept in the page address, so a reload keeps it.",
    )
    if not (st.session_state.get("annotator") or "").strip():
        st.caption(":orange[:material/badge:] Enter your name to record review decisions.")


def sidebar(store: Store, user) -> None:
    with st.sidebar:
        st.markdown("### :material/fact_check: CLEAR Review")
        who(user)
        datasets = store.list_datasets(counts=False)
        if datasets.empty:
            st.caption("No dataset yet: import one on the Data page.")
        else:
            pick_dataset(datasets)
            names = {int(r.dataset_id): f"{r.name} · {r.n_rows:,} rows" for r in datasets.itertuples()}
            st.selectbox("Dataset", list(names), key="dataset_id", format_func=names.get, on_change=remember_dataset)
        dataset_id = st.session_state.get("dataset_id")
        run = store.latest_run(dataset_id, counts=False) if dataset_id is not None and not datasets.empty else None
        if run is not None:
            progress = run_progress(store, run["run_id"])
            rows = f"{progress.rows_done:,} of {progress.rows_total:,} rows scored"
            if is_starting(progress.status, progress.rows_done, progress.rows_total, progress.rows_per_s):
                rows = "starting the worker"
            st.caption(f"Run #{run['run_id']} ({progress.status}): {rows}")
        html_line(f"Database: <code>{plain(db_path().name)}</code>", title=str(db_path()))


def home() -> None:
    """The app root ("/") opens Review at its own address, so /review works as a link and a bookmark too.

    Streamlit serves its default page only at "/", so Review cannot be that page without /review reporting "Page
    not found"; this hidden default page forwards there, keeping the dataset in the address (the annotator stays
    there by itself: its widget is bound to the address).
    """
    unbound = {k: v for k, v in st.query_params.to_dict().items() if k != "annotator"}
    st.switch_page(REVIEW_PAGE, query_params=unbound)


# Before sign-in every page's address shows the sign-in page (not Streamlit's "Page not found"), and signing in
# there opens the page that was asked for.
SIGN_IN_ADDRESSES = ("signin", "data", "run", "review", "thresholds", "export", "team")


def sign_in_only() -> None:
    """Team mode before sign-in: the sign-in page is the only page there is, whatever the address asks for."""
    with st.sidebar:
        st.markdown("### :material/fact_check: CLEAR Review")
        st.caption("Team mode: sign in to continue.")
    signin = "app_pages/signin.py"
    pages = [
        st.Page(signin, title="Sign in", icon=":material/login:", url_path=path, default=path == "signin")
        for path in SIGN_IN_ADDRESSES
    ]
    page = st.navigation(pages, position="hidden")
    page.run()


def main() -> None:
    try:
        store = get_store()
        team = _session.team()
    except ClearError as exc:  # a locked database, a broken users file
        st.error(str(exc), icon=":material/lock:")
        st.stop()
    with guard("the first start"):
        first_start(str(db_path()))
    user = _session.current_user() if team is not None else None
    if team is not None and user is None:
        sign_in_only()
        return
    with guard("the sidebar"):
        sidebar(store, user)
    # Review is the home page ("/" forwards to /review): the demo dataset fills it on first start; without data it
    # points to Data.
    pages = [
        st.Page(home, title="Review", url_path="home", default=True, visibility="hidden"),
        st.Page("app_pages/data.py", title="Data", icon=":material/upload_file:", url_path="data"),
        st.Page("app_pages/run.py", title="Run", icon=":material/play_circle:", url_path="run"),
        st.Page(REVIEW_PAGE, title="Review", icon=":material/rate_review:", url_path="review"),
        st.Page("app_pages/thresholds.py", title="Thresholds", icon=":material/tune:", url_path="thresholds"),
        st.Page("app_pages/export.py", title="Export", icon=":material/download:", url_path="export"),
    ]
    if permissions.allowed(_session.actor(), "view_audit"):  # the page itself refuses anyone else too
        pages.append(st.Page("app_pages/team.py", title="Team", icon=":material/groups:", url_path="team"))
    page = st.navigation(pages, position="top")
    # A callback's error shows on the page drawn next; the hidden home page ("", also what an address not in the
    # navigation gets, e.g. the Team page of a lead just made an annotator) only forwards, so it waits for Review.
    if page.url_path:
        show_callback_error()
    if page.url_path != "review" and _session.name() and st.session_state.get("dataset_id") is not None:
        store.release(st.session_state.dataset_id, actor=_session.actor())  # leaving Review gives its open row back
    with guard(f"the {page.title} page"):
        page.run()


main()
