"""`python -m clear_core score|export|status`: the command line that pipelines and acceptance checks use.

Bad input ends with a one-line message and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from clear_core import EMBEDDED_MODEL, runs, workspace
from clear_core.clear import action_counts
from clear_core.confidence import ScoringConfig
from clear_core.data import ColumnMapping, DataError, describe_duplicates, load_dataset
from clear_core.export import ExportPolicy
from clear_core.store import Store, StoreError


def _open_store(db: str) -> Store:
    try:
        return Store(db)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def main() -> None:
    """CLEAR Review: confidence scores, filters and corrections for instruction-tuning data."""


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path())  # a file, or a datasets save_to_disk folder
@click.option("--db", required=True, type=click.Path(dir_okay=False), help="DuckDB file to store scores in.")
@click.option("--model", default=None, help=f"HF model id or local directory (default: {EMBEDDED_MODEL}).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Score only the first N rows.")
@click.option("--samples", type=click.IntRange(min=0), default=None, help="k sampled answers for consistency.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--no-propose", is_flag=True, help="Skip Auto-Correct proposals (faster).")
@click.option("--prompt-column", default=None, help="Column holding the prompt, for files of no known schema.")
@click.option("--input-column", default=None, help="Optional column appended to the prompt.")
@click.option("--response-column", default=None, help="Column holding the response, for files of no known schema.")
@click.option("--drop-duplicates", is_flag=True, help="Drop rows that exactly repeat an earlier row (kept by default).")
def score(
    input_path,
    db,
    model,
    limit,
    samples,
    device,
    no_propose,
    prompt_column,
    input_column,
    response_column,
    drop_duplicates,
) -> None:
    """Score INPUT (CSV, JSONL, JSON, Parquet, or a Hugging Face datasets folder) into DB; re-running resumes an
    interrupted run."""
    mapping = _mapping(prompt_column, input_column, response_column)
    overrides = {"propose": not no_propose}
    if samples is not None:
        overrides["samples"] = samples
    config = ScoringConfig(**overrides)
    try:
        dataset = load_dataset(input_path, mapping=mapping, drop_duplicates=drop_duplicates)  # before the database
    except DataError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(_import_summary(dataset))
    created = _new_paths(db)
    store = _open_store(db)
    try:
        try:
            dataset_id = store.add_dataset(dataset)
        except BaseException as exc:
            store.close()
            _remove_new(created)  # a failed import leaves no new, empty database behind
            if isinstance(exc, StoreError):
                raise click.ClickException(str(exc)) from exc
            raise
        ds = store.get_dataset(dataset_id)
        started = time.time()
        run_id = runs.start_run(store, db, dataset_id, model=model, device=device, config=config, limit=limit)
        state = _follow(store, run_id)
        elapsed = time.time() - started
        if state.status == "failed":
            raise click.ClickException(f"Scoring failed: {state.error}")
        if state.status == "cancelled":
            raise click.ClickException(
                f"Scoring stopped after {state.rows_done} rows; run the same command again to resume."
            )
        gamma, eta = store.get_thresholds(dataset_id)
        scores = store.scores(run_id)
        counts = action_counts(scores["confidence"], scores["correction_confidence"], gamma, eta)
        click.echo(
            f"Scored {state.rows_done} of {ds['n_rows']} rows of {ds['name']!r} (run {run_id}, "
            f"{model or EMBEDDED_MODEL}) in {elapsed:.1f} s: {counts['filter']} filter, {counts['correct']} correct, "
            f"{counts['keep']} keep at gamma={gamma:.2f}, eta={eta:.2f}."
        )
    finally:
        store.close()


def _import_summary(dataset) -> str:
    """One line on what was read: rows, layout, exact duplicates (kept or dropped) and any notices."""
    name = Path(dataset.source_path).name
    parts = [f"Read {len(dataset.rows)} rows of {name} ({dataset.schema}, {dataset.file_format})."]
    if dataset.duplicates:
        found = describe_duplicates(dataset.duplicates)
        kept = f"Kept {found}; --drop-duplicates drops {'them' if len(dataset.duplicates) > 1 else 'it'}."
        parts.append(f"Dropped {found}." if dataset.duplicates_dropped else kept)
    return " ".join([*parts, *dataset.notices])


def _new_paths(db: str) -> list[Path]:
    """The database file and DuckDB's .wal beside it, where they do not exist yet."""
    path = Path(db)
    return [p for p in (path, path.with_name(path.name + ".wal")) if not p.exists()]


def _remove_new(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _mapping(prompt_column, input_column, response_column) -> ColumnMapping | None:
    if not (prompt_column or response_column):
        if input_column:
            raise click.UsageError("--input-column needs --prompt-column and --response-column.")
        return None
    if not (prompt_column and response_column):
        raise click.UsageError("Give both --prompt-column and --response-column to map an unrecognised file.")
    return ColumnMapping(prompt=prompt_column, response=response_column, input=input_column)


def _follow(store, run_id: int) -> runs.RunProgress:
    """Show a progress bar until the worker stops; Ctrl-C cancels cleanly, keeping finished rows."""
    from tqdm import tqdm

    bar = tqdm(total=0, unit="row", file=sys.stderr, dynamic_ncols=True, disable=None)

    def update(state: runs.RunProgress) -> None:
        bar.total = state.rows_total
        bar.n = state.rows_done
        bar.set_postfix_str(state.device or "loading model", refresh=False)
        bar.refresh()

    try:
        return runs.wait(store, run_id, on_progress=update)
    except KeyboardInterrupt:
        runs.cancel(store, run_id)
        return runs.progress(store, run_id)
    finally:
        bar.close()


@main.command("export")
@click.option("--db", required=True, type=click.Path(dir_okay=False, exists=True), help="DuckDB file with scores.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="File to write.")
@click.option("--dataset", default=None, help="Dataset id or name (default: the most recently imported).")
@click.option("--include-scores", is_flag=True, help="Add clear_confidence, clear_action and per-signal columns.")
@click.option("--all-rows", is_flag=True, help="Keep filtered rows too, so the file is a full record of the run.")
@click.option("--gamma", type=click.FloatRange(0, 1), default=None, help="Auto-Filter threshold (default: stored).")
@click.option("--eta", type=click.FloatRange(0, 1), default=None, help="Auto-Correct threshold (default: stored).")
@click.option("--only-reviewed", is_flag=True, help="Keep only rows an annotator decided on.")
@click.option("--no-auto", is_flag=True, help="Apply only human decisions, not automatic actions.")
def export_command(db, out_path, dataset, include_scores, all_rows, gamma, eta, only_reviewed, no_auto) -> None:
    """Write the curated dataset: filtered rows dropped, corrections applied, in the input's own schema."""
    store = _open_store(db)
    try:
        try:
            ds = workspace.pick_dataset(store, dataset)
            fmt = workspace.format_for_path(out_path, ds["file_format"])
        except (LookupError, DataError) as exc:
            raise click.ClickException(str(exc)) from exc
        stored_gamma, stored_eta = store.get_thresholds(ds["dataset_id"])
        policy = ExportPolicy(
            apply_auto=not no_auto,
            gamma=stored_gamma if gamma is None else gamma,
            eta=stored_eta if eta is None else eta,
            only_reviewed=only_reviewed,
            all_rows=all_rows,
            include_scores=include_scores,
        )
        result = workspace.curated_export(store, ds["dataset_id"], policy, fmt)
        from clear_core.export import write_records

        write_records(result.records, out_path, fmt, input_format=ds["file_format"])
        s = result.summary
        click.echo(
            f"Wrote {len(result.records)} records to {out_path} ({result.file_format}): {s['kept']} of {s['total']} "
            f"rows kept, {s['removed']} removed, {s['corrected']} corrected, {s['edited']} edited "
            f"(gamma={policy.gamma:.2f}, eta={policy.eta:.2f})."
        )
    finally:
        store.close()


@main.command()
@click.option("--db", required=True, type=click.Path(dir_okay=False, exists=True), help="DuckDB file.")
def status(db) -> None:
    """Datasets, runs and review progress in DB."""
    store = _open_store(db)
    try:
        datasets = store.list_datasets()
        if datasets.empty:
            click.echo(f"{db}: no datasets yet.")
            return
        for ds in datasets.itertuples():
            click.echo(f"dataset {ds.dataset_id} {ds.name!r}: {ds.n_rows} rows ({ds.schema}, {ds.file_format})")
            for run in store.list_runs(ds.dataset_id).itertuples():
                state = runs.progress(store, run.run_id)
                rate = f", {state.rows_per_s:.2f} rows/s" if state.rows_per_s else ""
                click.echo(
                    f"  run {run.run_id} [{state.status}] {run.model}: {state.rows_done}/{ds.n_rows} rows scored{rate}"
                    + (f" - {state.error}" if state.error else "")
                )
            decided = len(store.current_decisions(ds.dataset_id))
            gamma, eta = store.get_thresholds(ds.dataset_id)
            click.echo(f"  reviewed {decided} of {ds.n_rows} rows; gamma={gamma:.2f}, eta={eta:.2f}")
    finally:
        store.close()


def run(argv: list[str] | None = None) -> int:
    """Entry point that turns any unexpected error into a one-line message (details with CLEAR_DEBUG=1)."""
    import os

    try:
        main.main(args=argv, prog_name="python -m clear_core", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.UsageError as exc:  # one line, not click's usage block
        hint = f" (see: python -m clear_core {exc.ctx.info_name} --help)" if exc.ctx else ""
        click.echo(f"Error: {exc.format_message()}{hint}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - users get one line, developers can ask for the traceback
        if os.environ.get("CLEAR_DEBUG"):
            raise
        click.echo(f"Error: {type(exc).__name__}: {exc} (set CLEAR_DEBUG=1 for details)", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
