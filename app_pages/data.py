"""Data: upload a file (or pick a sample), preview it, map its columns, see every problem, then import it.

An uploaded file is copied to ``uploads/`` beside the database while it is being checked (the checks read a file)
and deleted once it is imported; the database holds the rows from then on. The file is read once in full: the
check stages its rows as Parquet (``data.prepare``) and Import stores those (the preview reads only its first rows).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import streamlit as st

from app_pages._components import REPO, actor, db_path, get_store, html_line, plain, safe_callback
from clear_core import data, permissions, workspace
from clear_core.ui_state import UPLOAD_TYPES, duplicates_note, preview_table, problems_table, sample_files, save_upload

SHARED_SAMPLES = REPO.parent / "shared" / "data" / "dev"
NO_COLUMN = "(none)"


@st.cache_data(show_spinner=False, max_entries=8)
def preview(path: str, stamp: tuple) -> tuple:
    frame = data.preview_records(path, n=20)
    return frame, data.detect_schema(list(frame.columns))


@st.cache_data(show_spinner="Checking every row…", max_entries=8)
def inspection(path: str, stamp: tuple, mapping: tuple | None) -> tuple[data.Inspection, data.Dataset | None]:
    """The file's problems, duplicates and notices, and (when it has no problem) the dataset with its rows staged
    as Parquet in uploads/.staged/: the one reading of the file that the Import button stores."""
    remove_stale_staging()
    return data.prepare(path, None if mapping is None else data.ColumnMapping(*mapping), staging_dir=staging_dir())


def staging_dir() -> Path:
    return uploads_dir() / ".staged"


def remove_stale_staging(max_age_s: float = 24 * 3600) -> None:
    """Delete rows staged for files that were checked but never imported, a day on."""
    for staged in staging_dir().glob("rows-*.parquet"):
        with contextlib.suppress(OSError):
            if time.time() - staged.stat().st_mtime > max_age_s:
                staged.unlink()


def uploads_dir() -> Path:
    return db_path().parent / "uploads"


def discard_upload(path: str | Path) -> None:
    """Delete an uploaded copy (and its hash folder once empty); files outside uploads/ are left alone."""
    path, uploads = Path(path).resolve(), uploads_dir().resolve()
    if uploads not in path.parents:
        return
    path.unlink(missing_ok=True)
    if path.parent != uploads and not any(path.parent.iterdir()):
        path.parent.rmdir()


def pick_file() -> Path | None:
    source = st.segmented_control(
        "Source", ["Upload a file", "Use a sample"], default="Upload a file", key="data_source", required=True
    )
    if source == "Upload a file":
        upload = st.file_uploader(
            "Dataset file",
            type=UPLOAD_TYPES,
            help="CSV, JSONL, a JSON array or Parquet. Alpaca, prompt/response, prompt/completion, GPTeacher, "
            "Dolly, question/answer, OpenAI messages, ShareGPT and self-instruct are recognised; other columns "
            "can be mapped. The uploaded copy is kept only until it is imported.",
            key=f"upload_{st.session_state.get('upload_round', 0)}",  # a new key empties the widget after import
        )
        return None if upload is None else save_upload(uploads_dir(), upload.name, upload.getvalue())
    samples = sample_files(SHARED_SAMPLES, workspace.SAMPLES_DIR)
    if not samples:
        st.info("No sample files found.")
        return None
    return st.selectbox("Sample file", samples, format_func=lambda p: f"{p.name}  ({p.stat().st_size / 1024:,.0f} KB)")


def readable(path: Path | None) -> Path | None:
    """``path`` when it can be previewed; otherwise shows why not (file, line, column, what to do) and returns None."""
    if path is None:
        return None
    try:
        frame, _ = preview(str(path), (path.stat().st_size, path.stat().st_mtime_ns))
        if len(frame.columns):
            return path
        found = data.validate(path)  # no rows to preview: say why
    except data.DataError as exc:
        found = [exc.problem]
    st.error("This file cannot be imported. Fix it and upload it again.", icon=":material/report:")
    st.dataframe(problems_table(found), hide_index=True)
    return None


def pick_mapping(columns: list[str]) -> tuple | None:
    """Column pickers for a file in no recognised format; returns (prompt, response, input) or None."""
    st.warning("The columns match no known format. Choose which column holds what.", icon=":material/table_chart:")
    suggestion = data.suggest_mapping(columns)
    c1, c2, c3 = st.columns(3)
    prompt = c1.selectbox(
        "Prompt column", columns, index=columns.index(suggestion.prompt) if suggestion else 0, key="map_prompt"
    )
    extra = c2.selectbox("Extra input column (optional)", [NO_COLUMN, *columns], key="map_input")
    response = c3.selectbox(
        "Response column",
        columns,
        index=columns.index(suggestion.response) if suggestion else min(1, len(columns) - 1),
        key="map_response",
    )
    if prompt == response:
        st.error("The prompt and the response must be different columns.")
        return None
    return (prompt, response, None if extra == NO_COLUMN else extra)


@safe_callback
def do_import(path: str, mapping: tuple | None, name_key: str, drop_key: str) -> None:
    """Button callback (runs before the page, so it may switch the sidebar's dataset). An uploaded copy is
    deleted once its rows are in the database."""
    permissions.require(actor(), "import")
    name = (st.session_state.get(name_key) or "").strip()
    column_mapping = None if mapping is None else data.ColumnMapping(*mapping)
    drop = bool(st.session_state.get(drop_key))
    _, staged = inspection(path, (Path(path).stat().st_size, Path(path).stat().st_mtime_ns), mapping)
    if staged is not None and staged.staged:
        dataset = data.with_options(staged, name or None, drop_duplicates=drop)  # the file is not read again
    else:  # staged rows gone (imported before, or a day old): read the file
        dataset = data.load_dataset(path, column_mapping, name=name or None, drop_duplicates=drop)
    try:
        dataset_id = get_store().add_dataset(dataset, actor=actor())
    finally:
        if dataset.rows_file is not None:
            Path(dataset.rows_file).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                staging_dir().rmdir()  # when no other file waits there
            inspection.clear()  # no cached inspection may point at the deleted rows
    st.session_state.duplicates_note = duplicates_note(get_store().find_duplicates(dataset_id))
    discard_upload(path)
    st.session_state.upload_round = st.session_state.get("upload_round", 0) + 1
    st.session_state.dataset_id = dataset_id
    st.query_params["dataset"] = str(dataset_id)
    st.session_state.imported = dataset_id
    if dataset.duplicates:
        found = data.describe_duplicates(dataset.duplicates)
        st.session_state.import_note = f"{'Dropped' if dataset.duplicates_dropped else 'Kept'} {found}."


def existing_datasets() -> None:
    datasets = get_store().list_datasets()
    if datasets.empty:
        return
    st.subheader("Datasets in this database")
    st.dataframe(
        datasets[["dataset_id", "name", "n_rows", "n_scored", "n_decided", "latest_run_status", "created_at"]],
        hide_index=True,
        column_config={
            "dataset_id": st.column_config.NumberColumn("Id", width="small"),
            "name": "Name",
            "n_rows": st.column_config.NumberColumn("Rows", format="localized"),
            "n_scored": st.column_config.NumberColumn("Scored", format="localized"),
            "n_decided": st.column_config.NumberColumn("Reviewed", format="localized"),
            "latest_run_status": "Latest run",
            "created_at": st.column_config.DatetimeColumn("Imported (UTC)", format="YYYY-MM-DD HH:mm"),
        },
    )


st.title("Data")
st.caption("Bring in an instruction-tuning file. Nothing is imported until every row checks out.")


if permissions.allowed(actor(), "import"):
    path = readable(pick_file())
else:  # an annotator sees the datasets below; uploading is a lead's (and do_import refuses anyone else)
    st.info(permissions.refusal(actor(), "import"), icon=":material/lock:")
    path = None
if path is not None:
    stamp = (path.stat().st_size, path.stat().st_mtime_ns)
    frame, schema = preview(str(path), stamp)
    st.subheader("Preview")
    html_line(f"The first {len(frame)} rows of <code>{plain(path.name)}</code>, shown as stored in the file.")
    st.dataframe(preview_table(frame), hide_index=True, height=min(250, 35 * (len(frame) + 1) + 3))
    mapping = pick_mapping([str(c) for c in frame.columns]) if schema is None else None
    if schema is not None:
        st.caption(f"Recognised format: **{schema}**")
    if schema is not None or mapping is not None:
        checked, _ = inspection(str(path), stamp, mapping)
        found = checked.problems
        if found:
            more = " (the first 100 are listed)" if len(found) >= data.MAX_PROBLEMS else ""
            st.error(
                f"{len(found)} problem{'s' * (len(found) != 1)} found{more}. Fix the file and upload it again, "
                "or map other columns.",
                icon=":material/report:",
            )
            st.dataframe(problems_table(found), hide_index=True)
        else:
            st.success("Every row checks out.", icon=":material/task_alt:")
        if checked.notices:  # a table: file and column names are user text, not Markdown
            st.dataframe({"Read in another form": checked.notices}, hide_index=True)
        drop_key = f"drop_{path}"
        if checked.duplicates and not found:
            st.warning(
                f"{data.describe_duplicates(checked.duplicates)}: each repeats an earlier row exactly, every column "
                "equal. They are imported unless you drop them.",
                icon=":material/content_copy:",
            )
            st.checkbox("Drop exact duplicate rows (the first of each is kept)", key=drop_key)
        name_key = f"name_{path}"
        st.text_input("Dataset name", value=path.stem, key=name_key)
        st.button(
            "Import",
            type="primary",
            icon=":material/download_done:",
            disabled=bool(found) or not permissions.allowed(actor(), "import"),
            on_click=do_import,
            args=(str(path), mapping, name_key, drop_key),
        )

if imported := st.session_state.pop("imported", None):  # shown under the Import button the user just clicked
    dataset = get_store().get_dataset(imported)
    # the name is user text: shown plain in the sidebar and the table below, never in this Markdown message
    st.success(f"Imported {dataset['n_rows']:,} rows.", icon=":material/check_circle:")
    st.page_link("app_pages/run.py", label="Score it on the Run page", icon=":material/play_circle:")
if note := st.session_state.pop("import_note", None):
    st.info(note, icon=":material/content_copy:")
if note := st.session_state.pop("duplicates_note", None):  # Review lists each row's duplicates
    st.info(note, icon=":material/content_copy:")
existing_datasets()
