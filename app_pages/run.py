"""Run: score the current dataset in the background worker, follow its progress live, cancel or resume it."""

from __future__ import annotations

import streamlit as st

from app_pages._components import (
    actor,
    db_path,
    get_store,
    guard,
    html_line,
    plain,
    require_dataset,
    run_progress,
    safe_callback,
)
from clear_core import EMBEDDED_MODEL, backends, permissions, profiles, runs
from clear_core.confidence import ScoringConfig
from clear_core.ui_state import run_bar

DEVICES = ("auto", "cpu", "cuda")
ENGINES = {"local process": "local", "Ray": "ray"}  # the page's words for runs.start_run's backends
STATUS_ICONS = {
    "running": ":material/progress_activity:",
    "done": ":material/check_circle:",
    "failed": ":material/error:",
    "cancelled": ":material/cancel:",
    "pending": ":material/schedule:",
}


@safe_callback
def start(dataset_id: int, model: str | None = None, config: ScoringConfig | None = None) -> None:
    """Button callback: start a run with the page's settings, or resume one (model and config given), on the
    device and row limit chosen on the page. Reads widget values here: a button's args date from the last draw."""
    permissions.require(actor(), "start_run")
    state = st.session_state
    if model is None:
        model = state.run_model
        config = page_choice(state.run_profile, model, state.run_device).config
    limit = int(state.run_limit) if state.run_rows == "First N rows" else None
    backend = ENGINES[state.run_engine]
    options = None
    if backend == "ray":
        address = state.run_ray_address.strip() or None
        options = backends.RayOptions(address, int(state.run_replicas), float(state.run_gpus)).to_job()
    runs.start_run(
        get_store(),
        db_path(),
        dataset_id,
        model=model.strip() or EMBEDDED_MODEL,
        device=state.run_device,
        config=config,
        limit=limit,
        backend=backend,
        backend_options=options,
        actor=actor(),
    )


@safe_callback
def cancel(run_id: int) -> None:
    runs.cancel(get_store(), run_id, actor=actor())  # refuses a role that may not cancel


def live_progress(run_id: int) -> None:
    """Progress of one run; redrawn every 2 s while it runs (each redraw also pulls finished rows in)."""
    with guard("the run progress"):
        store = get_store()
        progress = run_progress(store, run_id)
        run = store.get_run(run_id)
        fraction, text = run_bar(
            progress.status, progress.rows_done, progress.rows_total, progress.rows_per_s, progress.eta_s
        )
        st.progress(fraction, text=text)
        coverage(progress.status, run, store.get_dataset(run["dataset_id"])["n_rows"])
        config = ScoringConfig.from_params(run["params"])
        device = f" · {progress.where}" if progress.where else ""  # for Ray: replicas alive, too
        st.caption(
            f"{STATUS_ICONS.get(progress.status, '')} Run #{run_id} · **{progress.status}** · "
            f"{profiles.profile_of(config)}: {profiles.settings_text(config)}{device}"
        )
        html_line(f"Model: <code>{plain(run['model'])}</code>")  # typed by a person: HTML-escaped, not Markdown
        if progress.status == "running":
            st.button(
                "Cancel run",
                icon=":material/stop_circle:",
                on_click=cancel,
                args=(run_id,),
                disabled=not permissions.allowed(actor(), "cancel_run"),
            )
        if progress.status == "failed" and progress.error:
            st.error(f"Run #{run_id} failed:", icon=":material/error:")
            st.code(progress.error, language=None, wrap_lines=True)  # verbatim: it quotes model ids, paths, logs
        elif progress.status == "done" and progress.error:  # done, with rows that could not be scored
            st.warning(f"Run #{run_id} is done, but not every row could be scored:", icon=":material/warning:")
            st.code(progress.error, language=None, wrap_lines=True)
        seen = st.session_state.get("run_seen_status")
        st.session_state.run_seen_status = progress.status
        if seen == "running" and progress.status != "running":
            st.rerun()  # the run just ended: redraw the whole page (buttons, history)


def coverage(status: str, run: dict, n_rows: int) -> None:
    """How much of the dataset the run has scored: a run done with its first N rows has not scored the rest."""
    scored, failed = int(run["n_scored"]), int(run.get("n_failed") or 0)
    missing = max(n_rows - scored - failed, 0)
    text = (
        f"The dataset: {scored:,} of {n_rows:,} rows scored, {missing:,} not scored"
        f"{' yet' if status == 'running' else ''}, {failed:,} failed."
    )
    if status == "done" and missing:
        st.warning(
            f"Run #{run['run_id']} is done with the first {scored + failed:,} rows only. {text} "
            f"“Resume run #{run['run_id']}” below scores the rest.",
            icon=":material/warning:",
        )
    else:
        st.caption(text)


REFLECTION = {"profile's": None, "on": True, "off": False}


def page_choice(profile: str, model: str, device: str) -> profiles.Choice:
    """The settings the page's widgets ask for: the profile's, with samples, self-reflection and proposals over it
    (an empty samples box or "profile's" keeps the profile's)."""
    state = st.session_state
    samples = state.get("run_samples")
    return profiles.resolve(
        profile,
        device=device,
        model=model.strip() or EMBEDDED_MODEL,
        samples=None if samples is None else int(samples),
        self_reflection=REFLECTION[state.get("run_reflection", "profile's")],
        propose=bool(state.get("run_propose", True)),
    )


def settings(dataset: dict) -> None:
    model = st.text_input(
        "Model",
        value=EMBEDDED_MODEL,
        key="run_model",
        help="The embedded SmolLM2-135M-Instruct, a Hugging Face model id already in the local cache, or a local "
        "model directory.",
    )
    c1, c2 = st.columns(2)
    profile = c1.radio(
        "Scoring profile",
        profiles.PROFILES,
        key="run_profile",
        horizontal=True,
        help="fast: likelihood with 3 of the dataset's own rows shown first, checks and proposals (k = 0, no "
        "self-reflection). paper: BSDetector's k = 5 samples "
        "and self-reflection on top, for a GPU and a larger model (docs/quality.md: with the embedded model they add "
        "nothing). auto: paper on a CUDA GPU with a model other than the embedded one, else fast.",
    )
    device = c2.selectbox("Device", DEVICES, key="run_device", help="auto picks a CUDA GPU when there is one.")
    c1, c2, c3 = st.columns(3)
    c1.number_input(
        "Samples per row (k)",
        min_value=0,
        max_value=20,
        value=None,
        placeholder="profile's",
        key="run_samples",
        help="Sampled answers for observed consistency (BSDetector uses k = 5). Empty: the profile's. 0 is fastest.",
    )
    c2.selectbox(
        "Self-reflection",
        tuple(REFLECTION),
        key="run_reflection",
        help="Ask the model BSDetector's two self-reflection questions about each response.",
    )
    c3.toggle(
        "Propose corrections",
        value=ScoringConfig.propose,
        key="run_propose",
        help="Generate the model's own answer for doubtful rows and judge it against the response (Auto-Correct).",
    )
    st.caption(f"This run: {page_choice(profile, model, device).describe()}. {profiles.auto_help()}")
    c1, c2 = st.columns(2)
    rows = c1.radio("Rows to score", ["All rows", "First N rows"], key="run_rows", horizontal=True)
    c2.number_input(
        "N",
        min_value=1,
        max_value=max(1, dataset["n_rows"]),
        value=min(50, dataset["n_rows"]),
        key="run_limit",
        disabled=rows == "All rows",
    )
    engine(st.session_state.get("run_engine") != "Ray")


def engine(local: bool) -> None:
    """What scores the rows: one worker process here, or model replicas on Ray (docs/scale-out.md)."""
    c1, c2, c3, c4 = st.columns(4)
    c1.selectbox(
        "Engine",
        tuple(ENGINES),
        key="run_engine",
        help="local process: one worker process on this machine. Ray: model replicas (Ray actors) on a Ray cluster, "
        "each scoring blocks of rows with the same engine; see docs/scale-out.md.",
    )
    c2.number_input("Replicas", min_value=1, max_value=1024, value=1, key="run_replicas", disabled=local)
    c3.number_input("GPUs per replica", min_value=0.0, value=0.0, step=0.5, key="run_gpus", disabled=local)
    c4.text_input(
        "Ray address",
        key="run_ray_address",
        placeholder="this machine",
        disabled=local,
        help="An existing Ray cluster (auto, HOST:PORT or ray://HOST:10001); empty starts Ray on this machine.",
    )


def history(dataset_id: int) -> None:
    table = get_store().list_runs(dataset_id)
    if table.empty:
        return
    st.subheader("Runs of this dataset")
    configs = [ScoringConfig.from_params(p) for p in table["params"]]
    table["profile"] = [profiles.profile_of(c) for c in configs]
    table["samples"] = [c.samples for c in configs]
    table["reflection"] = [c.self_reflection for c in configs]
    columns = ["run_id", "status", "model", "profile", "samples", "reflection", "n_scored", "rows_total"]
    st.dataframe(
        table[[*columns, "created_at", "finished_at", "error"]],
        hide_index=True,
        column_config={
            "run_id": st.column_config.NumberColumn("Run", width="small"),
            "status": "Status",
            "model": "Model",
            "profile": "Profile",
            "samples": st.column_config.NumberColumn("k", width="small"),
            "reflection": st.column_config.CheckboxColumn("Self-reflection", width="small"),
            "n_scored": st.column_config.NumberColumn("Scored", format="localized"),
            "rows_total": st.column_config.NumberColumn("Rows", format="localized"),
            "created_at": st.column_config.DatetimeColumn("Started (UTC)", format="YYYY-MM-DD HH:mm"),
            "finished_at": st.column_config.DatetimeColumn("Finished (UTC)", format="YYYY-MM-DD HH:mm"),
            "error": "Error",
        },
    )


store = get_store()
dataset = require_dataset(store)
st.title("Run")
html_line(
    f"Score “{plain(dataset['name'])}” ({dataset['n_rows']:,} rows) with a local model. Scoring runs in its own "
    "worker process: you can switch pages, reload or close the tab, and rows appear in Review as they are scored."
)

latest = store.latest_run(dataset["dataset_id"])
running = latest is not None and latest["status"] == "running"
if latest is not None:
    with st.container(border=True):
        st.fragment(run_every=2 if running else None)(live_progress)(latest["run_id"])

st.subheader("New run")
settings(dataset)
c1, c2 = st.columns([1, 3])
c1.button(
    "Start scoring",
    type="primary",
    icon=":material/play_arrow:",
    disabled=running or not permissions.allowed(actor(), "start_run"),
    on_click=start,
    args=(dataset["dataset_id"],),
    help="Cancel the current run first." if running else "Resumes the latest run with the same model and settings.",
)
if latest is not None and not running and latest["n_scored"] < dataset["n_rows"]:
    c2.button(
        f"Resume run #{latest['run_id']} ({latest['n_scored']:,} of {dataset['n_rows']:,} rows scored)",
        icon=":material/resume:",
        disabled=not permissions.allowed(actor(), "start_run"),
        on_click=start,
        args=(dataset["dataset_id"], latest["model"], ScoringConfig.from_params(latest["params"])),
        help="Scores the rows this run has not scored yet (all of them, or up to the first N), with its own model "
        "and settings on the device chosen above.",
    )
history(dataset["dataset_id"])
