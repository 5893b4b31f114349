"""Operations that combine the store with files and runs, shared by the CLI and the app.

Each function is one thing a user does: import a file, export the curated set, describe where a database stands.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from clear_core import export, permissions
from clear_core.data import ColumnMapping, detect_format, load_dataset
from clear_core.store import NotFoundError, Store

SAMPLES_DIR = Path(__file__).parent / "samples"
DEMO_DATASET = SAMPLES_DIR / "demo.jsonl"


def import_file(
    store: Store,
    path: str | Path,
    mapping: ColumnMapping | None = None,
    name: str | None = None,
    *,
    actor: permissions.Actor | None = None,
) -> int:
    """Validate and store a dataset file (all rows or nothing) as ``actor`` (None: the file's owner); an identical
    file already stored is reused."""
    if actor is not None:
        permissions.require(actor, "import")  # before reading the file
    with tempfile.TemporaryDirectory(prefix="clear-import-") as staging:  # the rows, staged as Parquet
        return store.add_dataset(load_dataset(path, mapping=mapping, name=name, staging_dir=staging), actor=actor)


def ensure_demo_dataset(store: Store) -> int | None:
    """Load the bundled demo dataset when the database has no datasets yet; returns its id (or None)."""
    if not store.list_datasets().empty:
        return None
    return import_file(store, DEMO_DATASET, name="demo")


def pick_dataset(store: Store, dataset: str | int | None = None) -> dict:
    """A dataset by id or name; with none given, the most recently imported one."""
    datasets = store.list_datasets()
    if datasets.empty:
        raise NotFoundError(
            "The database has no datasets yet. Score a file first: python -m clear_core score FILE --db DB"
        )
    if dataset is None:
        return store.get_dataset(int(datasets["dataset_id"].max()))
    key = str(dataset)
    match = datasets[(datasets["dataset_id"].astype(str) == key) | (datasets["name"] == key)]
    if match.empty:
        known = ", ".join(f"{r.dataset_id} ({r.name})" for r in datasets.itertuples())
        raise NotFoundError(f"No dataset {key!r} in this database; it has: {known}.")
    return store.get_dataset(int(match["dataset_id"].iloc[-1]))


@dataclass
class ExportResult:
    records: list[dict]
    summary: dict[str, int]
    file_format: str
    curated: list[export.CuratedRow] = field(default_factory=list)  # every row's outcome, for previews


def curated_export(store: Store, dataset_id: int, policy: export.ExportPolicy, fmt: str = "original") -> ExportResult:
    """The curated dataset as records in the input's schema, from the latest run's scores and current decisions."""
    ds = store.get_dataset(dataset_id)
    run = store.latest_run(dataset_id)
    scores = store.scores(run["run_id"]) if run else None
    curated = export.curate(store.dataset_rows(dataset_id), scores, store.current_decisions(dataset_id), policy)
    mapping = ColumnMapping(**ds["mapping"]) if ds.get("mapping") else None
    records = export.to_records(
        ds["schema"], ds["file_format"], curated, policy.include_scores, policy.all_rows, mapping=mapping
    )
    return ExportResult(records, export.summarize(curated), export.resolve_format(fmt, ds["file_format"]), curated)


@dataclass
class ExportPlan:
    """The curated export of a dataset before any file is written: what it keeps and changes, counted in SQL
    (``Store.curation_summary``: total, kept, removed, corrected, edited, unchanged, unscored, failed, changed,
    and the row indices nothing decided as ``unscored_rows``/``failed_rows``). ``write`` streams the file;
    nothing holds the whole dataset."""

    store: Store
    dataset: dict
    run_id: int | None
    policy: export.ExportPolicy
    file_format: str
    summary: dict

    @property
    def n_records(self) -> int:
        """Rows the file will hold (tasks are counted as their instances for self-instruct)."""
        return self.summary["total"] if self.policy.all_rows else self.summary["kept"]

    def check(self) -> None:
        """Raise ``export.UnscoredRowsError`` when the policy refuses the rows nothing decided."""
        export.check_pending(self.summary, self.policy)

    def write(self, path: str | Path, progress=None) -> int:
        """Write the file atomically (``export.write_curated``); returns how many records it holds."""
        return export.write_curated(
            self.store, self.dataset["dataset_id"], self.policy, path, self.file_format, progress=progress
        )

    def records(self) -> list[dict]:
        """Every record in memory (a Hugging Face ``datasets`` export needs them together)."""
        batches = export.curated_batches(self.store, self.dataset, self.run_id, self.policy)
        return [record for batch in batches for record in batch]

    def changes(self, limit: int = 200) -> list[export.CuratedRow]:
        """The first ``limit`` rows dropped or rewritten, as CuratedRow (record and scores left empty)."""
        frame = self.store.curation_changes(self.dataset["dataset_id"], self.run_id, self.policy, limit)
        return [
            export.CuratedRow(
                row_index=int(r["row_index"]),
                record={},
                original_response=r["original_response"],
                final_response=r["final_response"],
                action=r["action"],
                source=r["source"],
                kept=bool(r["kept"]),
                decision=r["decision"],
                annotator=r["annotator"],
                scoring=r["scoring"],
                reason=r["reason"],
                note=r["note"],
            )
            for r in frame.astype(object).where(frame.notna(), None).to_dict("records")
        ]


def export_plan(store: Store, dataset_id: int, policy: export.ExportPolicy, fmt: str = "original") -> ExportPlan:
    """The curated export of ``dataset_id`` under ``policy`` from the latest run's scores and the current
    decisions, counted but not written (see ExportPlan)."""
    ds = store.get_dataset(dataset_id)
    run = store.latest_run(dataset_id)
    run_id = run["run_id"] if run else None
    summary = store.curation_summary(dataset_id, run_id, policy)
    return ExportPlan(store, ds, run_id, policy, export.resolve_format(fmt, ds["file_format"]), summary)


def format_for_path(path: str | Path, input_format: str) -> str:
    """'original' when the output extension is the input's own format, else the format the extension names."""
    out = detect_format(path)
    return "original" if out == input_format else out


def status_table(store: Store) -> pd.DataFrame:
    """One line per dataset: rows, latest run and its state, scored rows, decisions."""
    return store.list_datasets()


def audit_records(store: Store, dataset_id: int) -> list[dict]:
    """A dataset's audit log, oldest first, as JSON-ready dicts (``Store.audit_log``'s columns; times in ISO 8601
    UTC)."""
    frame = store.audit_log(dataset_id).iloc[::-1]
    records = []
    for row in frame.to_dict("records"):
        record = {k: (None if pd.isna(v) else v) for k, v in row.items() if k != "detail"}
        record["acted_at"] = pd.Timestamp(record["acted_at"]).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for key in ("dataset_id", "run_id", "row_index"):
            record[key] = None if record[key] is None else int(record[key])
        records.append({**record, "detail": row["detail"]})
    return records


def audit_path(out_path: str | Path) -> Path:
    """Where ``export --include-audit`` writes the audit log: next to the export, ``NAME.audit.jsonl`` for
    ``NAME.EXT`` or a folder ``NAME``."""
    out = Path(out_path)
    return out.with_name(f"{out.stem if out.suffix else out.name}.audit.jsonl")


def write_audit(records: list[dict], path: str | Path) -> None:
    """The audit log as JSON Lines, written atomically (temporary file, then rename)."""
    path = Path(path)
    body = "".join(json.dumps(record, ensure_ascii=False, default=str) + "\n" for record in records)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(body, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
