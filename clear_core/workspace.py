"""Operations that combine the store with files and runs, shared by the CLI and the app.

Each function is one thing a user does: import a file, export the curated set, describe where a database stands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from clear_core import export
from clear_core.data import ColumnMapping, detect_format, load_dataset
from clear_core.store import NotFoundError, Store

SAMPLES_DIR = Path(__file__).parent / "samples"
DEMO_DATASET = SAMPLES_DIR / "demo.jsonl"


def import_file(store: Store, path: str | Path, mapping: ColumnMapping | None = None, name: str | None = None) -> int:
    """Validate and store a dataset file (all rows or nothing); an identical file already stored is reused."""
    return store.add_dataset(load_dataset(path, mapping=mapping, name=name))


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


def format_for_path(path: str | Path, input_format: str) -> str:
    """'original' when the output extension is the input's own format, else the format the extension names."""
    out = detect_format(path)
    return "original" if out == input_format else out


def status_table(store: Store) -> pd.DataFrame:
    """One line per dataset: rows, latest run and its state, scored rows, decisions."""
    return store.list_datasets()
