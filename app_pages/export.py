"""Export: the curated dataset in the input's own schema, as a download, with a summary of what changed.

The summary and the list of changes are counted in SQL on every redraw (``workspace.export_plan``); the file is
built only when asked for (the Build button, with a progress bar), streamed to a file in ``.exports/`` beside the
database, and read from there when the Download button is clicked. No cache holds a curated dataset.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from pathlib import Path

import streamlit as st

from app_pages._components import actor, db_path, get_store, html_line, plain, require_dataset, safe_callback
from clear_core import permissions, workspace
from clear_core.data import EXPORT_FORMAT_OF
from clear_core.export import ExportError, ExportPolicy, UnscoredRowsError, describe_unscored
from clear_core.ui_state import EXPORT_CHOICES, MIME_TYPES, changed_rows, export_file_name


def exports_dir() -> Path:
    return db_path().parent / ".exports"


def discard(path: str | None) -> None:
    """Delete a built file, and any other built file a day old (a session that ended keeps none for long)."""
    if path:
        Path(path).unlink(missing_ok=True)
    for stale in exports_dir().glob("*.export"):
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > 24 * 3600:
                stale.unlink()


def build(plan: workspace.ExportPlan, key: tuple, file_name: str) -> None:
    """Write the curated file with a progress bar and remember it (for this session) under ``key``."""
    discard(st.session_state.pop("ex_built", {}).get("path"))
    exports_dir().mkdir(parents=True, exist_ok=True)
    path = exports_dir() / f"{uuid.uuid4().hex}.export"
    bar = st.progress(0.0, text=f"Writing {file_name}…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / total if total else 1.0, text=f"Writing {file_name}: {done:,} of {total:,} rows")

    try:
        records = plan.write(path, progress=progress)
    except ExportError as exc:
        st.error(str(exc), icon=":material/report:")
        return
    finally:
        bar.empty()
    st.session_state.ex_built = {"key": key, "path": str(path), "records": records}


def file_bytes(path: str):
    """The Download button's data: read when the button is clicked, not on every redraw."""
    return lambda: Path(path).read_bytes()


UNSCORED_LABELS = {"fail": "Don't export yet", "keep": "Keep unchanged", "drop": "Leave out"}


def format_label(choice: str, input_format: str) -> str:
    """'Original (JSONL)'; an input with no writer of its own names the format written instead (a datasets folder:
    'Original (PARQUET)')."""
    if choice != "original":
        return choice.upper()
    return f"Original ({EXPORT_FORMAT_OF.get(input_format, input_format).upper()})"


def policy_form(gamma: float, eta: float, scored: bool, write_column) -> ExportPolicy:
    st.markdown("**Apply**")
    decisions = st.checkbox("Reviewers' decisions: accepted corrections, edits, removals", value=True, key="ex_dec")
    auto = st.checkbox(
        f"Automatic actions at the current thresholds (γ = {gamma:.2f}, η = {eta:.2f})",
        value=scored,
        disabled=not scored,
        key="ex_auto",
        help="Rows nobody reviewed get the automatic action: filtered below γ, corrected above η. A reviewer's "
        "decision always wins.",
    )
    only_reviewed = st.checkbox("Only reviewed rows", key="ex_only", help="Leave out every row without a decision.")
    unscored = st.radio(
        "Rows without scores",
        list(UNSCORED_LABELS),
        format_func=UNSCORED_LABELS.get,
        horizontal=True,
        key="ex_unscored",
        disabled=not auto or only_reviewed,
        help="Rows that no automatic action can decide because they have no scores (the run stopped early or "
        "scored only the first N rows, or scoring the row failed) and that nobody reviewed.",
    )
    with write_column:
        st.markdown("**Write**")
        all_rows = st.checkbox(
            "Dropped rows too, marked clear_kept = false", key="ex_all", help="Adds clear_kept and clear_action."
        )
        scores = st.checkbox(
            "Provenance columns",
            key="ex_scores",
            help="clear_confidence, clear_action, clear_proposed_response, every signal, clear_decision, "
            "clear_annotator, and clear_reason and clear_note (why a row was removed or kept).",
        )
    return ExportPolicy(
        apply_auto=auto,
        gamma=gamma,
        eta=eta,
        apply_decisions=decisions,
        only_reviewed=only_reviewed,
        all_rows=all_rows,
        include_scores=scores,
        unscored=unscored,
    )


def unscored_notice(plan: workspace.ExportPlan, run: dict | None) -> bool:
    """Say how many rows have no scores and what happens to them; False when the export must wait for them."""
    counts, policy = plan.summary, plan.policy
    if not (counts["unscored"] or counts["failed"]):
        return True
    try:
        plan.check()
    except UnscoredRowsError as exc:
        where = f"“Resume run #{run['run_id']}”" if run else "“Start scoring”"
        st.error(
            f"{exc}, so no automatic action decides {exc.them}. Score {exc.them} on the Run page ({where}), or "
            f"choose under “Rows without scores” to keep {exc.them} unchanged or leave {exc.them} out.",
            icon=":material/block:",
        )
        return False
    what = describe_unscored(counts["unscored_rows"], counts["failed_rows"], counts["total"])
    if policy.only_reviewed:
        fate = "left out with the other unreviewed rows"
    elif not policy.apply_auto:
        fate = "written unchanged, as automatic actions are off"
    else:
        fate = "written unchanged" if policy.unscored == "keep" else "left out"
    st.warning(f"{what}: {fate}.", icon=":material/warning:")
    return True


def summary(counts: dict[str, int]) -> None:
    cells = [
        ("Rows in", counts["total"]),
        ("Rows out", counts["kept"]),
        ("Removed", counts["removed"]),
        ("Corrected", counts["corrected"]),
        ("Edited", counts["edited"]),
        ("Unchanged", counts["unchanged"]),
    ]
    if counts["unscored"] or counts["failed"]:
        cells.append(("Not scored", counts["unscored"] + counts["failed"]))
    for column, (label, value) in zip(st.columns(len(cells)), cells):
        column.metric(label, f"{value:,}", border=True)
    st.caption(
        f"Corrected: {counts['corrected_human']:,} accepted by reviewers, {counts['corrected_auto']:,} automatic."
    )


@safe_callback
def record_export(dataset_id: int, file_name: str, file_format: str, records: int) -> None:
    """The Download button's callback: the export goes into the audit log under the signed-in lead's name."""
    detail = {"file": file_name, "format": file_format, "records": records}
    get_store().record_audit(actor(), "export", dataset_id=dataset_id, detail=detail)


store = get_store()
dataset = require_dataset(store)
if not permissions.allowed(actor(), "export"):  # checked before the curated set is prepared or sent anywhere
    st.title("Export")
    st.info(permissions.refusal(actor(), "export"), icon=":material/lock:")
    st.stop()
run = store.latest_run(dataset["dataset_id"])
gamma, eta = store.get_thresholds(dataset["dataset_id"])
st.title("Export")
html_line(
    f"The curated “{plain(dataset['name'])}”: every original column kept, only responses replaced and rows "
    "dropped as chosen below. Reviewers' decisions override automatic actions."
)

left, right = st.columns(2, gap="large")
with left:
    choice = st.segmented_control(
        "Format",
        EXPORT_CHOICES,
        default="original",
        required=True,
        key="ex_format",
        format_func=lambda c: format_label(c, dataset["file_format"]),
    )
with right:
    policy = policy_form(gamma, eta, scored=run is not None and run["n_scored"] > 0, write_column=left)
plan = workspace.export_plan(store, dataset["dataset_id"], policy, choice)
file_name = export_file_name(dataset["name"], plan.file_format)
summary(plan.summary)
ready = unscored_notice(plan, run) and permissions.allowed(actor(), "export")
# what the built file depends on: the choices, the latest run and its scores, every decision and undo
run_state = (run["run_id"], run["n_scored"], run.get("n_failed")) if run else None
key = (dataset["dataset_id"], choice, tuple(sorted(vars(policy).items())), run_state)
key += (store.decisions_version(dataset["dataset_id"]),)
built = st.session_state.get("ex_built")
if built is not None and (built["key"] != key or not Path(built["path"]).exists()):
    discard(st.session_state.pop("ex_built")["path"])
    built = None
build_column, download_column = st.columns([1, 2])
if build_column.button(
    f"Build {file_name}" if built is None else "Build again",
    icon=":material/build:",
    key="ex_build",
    disabled=not ready,
    help="Writes the curated file on the server, streamed a batch of rows at a time; then download it.",
):
    build(plan, key, file_name)
    built = st.session_state.get("ex_built")
with download_column:
    st.download_button(
        f"Download {file_name}",
        data=file_bytes(built["path"]) if built is not None and ready else b"",
        file_name=file_name,
        mime=MIME_TYPES[plan.file_format],
        type="primary",
        icon=":material/download:",
        on_click=record_export,
        args=(dataset["dataset_id"], file_name, plan.file_format, built["records"] if built else 0),
        disabled=built is None or not ready,
    )
changes, _ = changed_rows(plan.changes())
n_changed = plan.summary["changed"]
st.subheader("What changed")
if n_changed == 0:
    st.caption("Nothing: the export equals the input.")
else:
    more = f" (the first {len(changes)} are shown)" if n_changed > len(changes) else ""
    st.caption(f"{n_changed:,} rows removed or rewritten{more}.")
    st.dataframe(changes, hide_index=True, height=min(320, 35 * (len(changes) + 1) + 3))
