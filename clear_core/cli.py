"""`python -m clear_core score|export|status`: the command line that pipelines and acceptance checks use.

Bad input ends with a one-line message and a non-zero exit code, never a traceback: a ``ClearError`` (the user's
problem) as its message alone; any other exception (a bug) with its type and CLEAR_DEBUG=1 for the traceback.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from clear_core import EMBEDDED_MODEL, accounts, backends, export, permissions, profiles, runs, workspace
from clear_core.clear import action_counts
from clear_core.confidence import ScoringConfig
from clear_core.data import DATASETS_FORMAT, ColumnMapping, describe_duplicates, load_dataset
from clear_core.errors import ClearError
from clear_core.export import EXPORT_FORMATS, UNSCORED_CHOICES, ExportPolicy
from clear_core.store import Store, StoreLockedError, StoreReadOnlyError
from clear_core.ui_state import duplicates_note


@contextmanager
def _open_store(
    db: str, lock_hint: str = "", reading: bool = False, memory_limit: str | None = None
) -> Iterator[Store]:
    """``with _open_store(db) as store:``, closed on the way out. ``reading``: a database this user cannot write
    opens read-only. ``lock_hint`` ends the message when another process holds the database. ``memory_limit``: see
    ``Store``."""
    try:
        store = Store(db, memory_limit=memory_limit)
    except StoreLockedError as exc:
        if lock_hint:
            exc.add_note(lock_hint)
        raise
    except StoreReadOnlyError:
        if not reading:
            raise
        store = Store(db, read_only=True, memory_limit=memory_limit)
    with store:
        yield store


# -- options shared by the commands ---------------------------------------------------------------------------


def _options(*options: Callable) -> Callable:
    """Several click options as one decorator, listed in --help in the order given."""

    def apply(command: Callable) -> Callable:
        for option in reversed(options):
            command = option(command)
        return command

    return apply


DEFAULT_DB = "data/clear-review.duckdb"  # `make run`'s database (the Makefile's DB)


def db_option(*, exists: bool, help: str) -> Callable:
    """--db DB, the curation database; ``exists``: the command reads a database that must already be there."""
    return click.option("--db", required=True, type=click.Path(dir_okay=False, exists=exists), help=help)


# What is scored and how: every command that starts scoring takes these (score_config turns them into a config).
scoring_options = _options(
    click.option("--model", default=None, help=f"HF model id or local directory (default: {EMBEDDED_MODEL})."),
    click.option("--limit", type=click.IntRange(min=1), default=None, help="Score only the first N rows."),
    click.option(
        "--profile",
        type=click.Choice(profiles.PROFILES),
        default="auto",
        help="Which passes run. fast: likelihood, checks and proposals (k = 0, no self-reflection); paper: "
        "BSDetector's k = 5 samples and self-reflection on top. auto: paper on a CUDA GPU with a model other than "
        f"the embedded one, else fast. {profiles.auto_help()}",
    ),
    click.option(
        "--samples",
        type=click.IntRange(min=0),
        default=None,
        help="k sampled answers for consistency (default: the profile's; fast 0, paper 5, the paper's k).",
    ),
    click.option(
        "--self-reflection/--no-self-reflection",
        default=None,
        help="Ask the two self-reflection questions (default: the profile's; fast no, paper yes).",
    ),
    click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda."),
    click.option("--no-propose", is_flag=True, help="Skip Auto-Correct proposals (faster)."),
    click.option(
        "--context-examples",
        type=click.IntRange(min=0, max=8),
        default=None,
        help="Show the model this many of the dataset's own most confident rows before each prompt when it judges "
        "a response or writes a proposal (learns the dataset's form; 3-17% more CPU time a row; default: the "
        "profile's, fast 3, paper 0).",
    ),
)

# What scores the rows (runs.start_run's backend): one worker process here, or Ray Data replicas (docs/scale-out.md).
engine_options = _options(
    click.option(
        "--engine",
        type=click.Choice(["local", "ray"]),
        default="local",
        help="local: one worker process on this machine; ray: model replicas on a Ray cluster (Ray Data).",
    ),
    click.option(
        "--ray-address",
        default=None,
        help="With --engine ray: an existing Ray cluster (auto, HOST:PORT or ray://HOST:10001). Left out, Ray starts "
        "on this machine with its cores.",
    ),
    click.option(
        "--replicas",
        type=click.IntRange(min=1),
        default=None,
        help="With --engine ray: model replicas scoring at once (default: 1 on CPUs; with --gpus-per-replica, as "
        "many as the cluster's GPUs hold).",
    ),
    click.option(
        "--gpus-per-replica",
        type=click.FloatRange(min=0),
        default=0.0,
        help="With --engine ray: GPUs each replica reserves (0: replicas score on CPUs).",
    ),
)


def engine_choice(engine: str, ray_address: str | None, replicas: int | None, gpus_per_replica: float) -> dict:
    """runs.start_run's backend and backend_options for --engine and the Ray options (which need --engine ray)."""
    if engine != "ray":
        given = [name for name, value in (("--ray-address", ray_address), ("--replicas", replicas)) if value]
        if gpus_per_replica:
            given.append("--gpus-per-replica")
        if given:
            raise click.UsageError(f"{' and '.join(given)} {'needs' if len(given) == 1 else 'need'} --engine ray.")
        return {"backend": engine}
    options = backends.RayOptions(address=ray_address, replicas=replicas, gpus_per_replica=gpus_per_replica)
    return {"backend": engine, "backend_options": options.to_job()}


# How a file is read: every command that imports one takes these (_mapping turns the columns into a mapping).
import_options = _options(
    click.option("--prompt-column", default=None, help="Column holding the prompt, for files of no known schema."),
    click.option("--input-column", default=None, help="Optional column appended to the prompt."),
    click.option("--response-column", default=None, help="Column holding the response, for files of no known schema."),
    click.option(
        "--drop-duplicates", is_flag=True, help="Drop rows that exactly repeat an earlier row (kept by default)."
    ),
)


def score_config(
    profile: str,
    samples: int | None,
    self_reflection: bool | None,
    no_propose: bool,
    device: str,
    model: str | None,
    context_examples: int | None = None,
) -> profiles.Choice:
    """The settings --profile asks for (auto: picked from --device and --model), with --samples,
    --self-reflection, --no-propose and --context-examples over them."""
    return profiles.resolve(
        profile,
        device=device,
        model=model,
        samples=samples,
        self_reflection=self_reflection,
        propose=False if no_propose else None,
        context_examples=context_examples,
    )


def score_command_line(db: str, dataset: dict, run: dict | None) -> str:
    """The `python -m clear_core score ...` line that scores the dataset's remaining rows in ``run`` (resuming it:
    same model and settings), or with the defaults when there is no run yet."""
    args = ["python", "-m", "clear_core", "score", dataset.get("source_path") or "INPUT", "--db", db]
    mapping = dataset.get("mapping") or {}
    for option in ("prompt", "input", "response"):
        if mapping.get(option):
            args += [f"--{option}-column", mapping[option]]
    if run is not None:
        if run["model"] != EMBEDDED_MODEL:
            args += ["--model", run["model"]]
        args += profile_args(ScoringConfig.from_params(run["params"]))
    return shlex.join(args)


def profile_args(config: ScoringConfig) -> list[str]:
    """--profile and the options that give ``config`` on any machine (never auto, whose pick depends on it)."""
    diffs = {
        name: [f for f, v in values.items() if getattr(config, f) != v] for name, values in profiles.SETTINGS.items()
    }
    base = min(diffs, key=lambda name: len(diffs[name]))  # the named profile closest to the run's settings
    args = ["--profile", base]
    if "samples" in diffs[base]:
        args += ["--samples", str(config.samples)]
    if "self_reflection" in diffs[base]:
        args.append("--self-reflection" if config.self_reflection else "--no-self-reflection")
    if not config.propose:
        args.append("--no-propose")
    if "context_examples" in diffs[base]:
        args += ["--context-examples", str(config.context_examples)]
    return args


class _Commands(click.Group):
    """The command group; a ClearError (the user's problem) leaves any command as click's one-line message,
    whether run by ``run()`` or by click itself. Any other exception is a bug and goes on as it is."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ClearError as exc:
            raise click.ClickException(f"{exc}{_notes(exc)}") from exc


@click.group(cls=_Commands, context_settings={"show_default": True})  # --help shows every option's default
def main() -> None:
    """CLEAR Review: confidence scores, filters and corrections for instruction-tuning data."""


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path())  # a file, or a datasets save_to_disk folder
@db_option(exists=False, help="DuckDB file to store scores in.")
@scoring_options
@import_options
@engine_options
def score(
    input_path,
    db,
    model,
    limit,
    profile,
    samples,
    self_reflection,
    device,
    no_propose,
    context_examples,
    prompt_column,
    input_column,
    response_column,
    drop_duplicates,
    engine,
    ray_address,
    replicas,
    gpus_per_replica,
) -> None:
    """Score INPUT (CSV, JSONL, JSON, Parquet, or a Hugging Face datasets folder) into DB; re-running resumes an
    interrupted run."""
    mapping = _mapping(prompt_column, input_column, response_column)
    scorer = engine_choice(engine, ray_address, replicas, gpus_per_replica)
    choice = score_config(profile, samples, self_reflection, no_propose, device, model, context_examples)
    staging = tempfile.TemporaryDirectory(prefix="clear-import-")  # the rows, staged as Parquet until stored
    dataset = load_dataset(  # before the database
        input_path, mapping=mapping, drop_duplicates=drop_duplicates, staging_dir=staging.name
    )
    click.echo(_import_summary(dataset))
    created = _new_paths(db)
    with _open_store(db) as store:
        try:
            dataset_id = store.add_dataset(dataset)
        except BaseException:
            store.close()
            _remove_new(created)  # a failed import leaves no new, empty database behind
            raise
        finally:
            staging.cleanup()
        ds = store.get_dataset(dataset_id)
        if note := duplicates_note(store.find_duplicates(dataset_id)):
            click.echo(f"Near-duplicates: {note} Review lists each row's.")
        click.echo(f"Scoring profile: {choice.describe()}.")
        started = time.time()
        run_id = runs.start_run(
            store, db, dataset_id, model=model, device=device, config=choice.config, limit=limit, **scorer
        )
        state = _follow(store, run_id)
        elapsed = time.time() - started
        if state.status == "failed":
            raise click.ClickException(f"Scoring failed: {state.error}")
        if state.status == "cancelled":
            raise click.ClickException(
                f"Scoring stopped after {state.rows_done} rows; run the same command again to resume."
                + _worker_note(runs.run_dir(store, run_id), stopping=True)
            )
        gamma, eta = store.get_thresholds(dataset_id)
        scores = store.scores(run_id)
        if "error" in scores:
            scores = scores[scores["error"].isna()]  # failed rows have no action
        counts = action_counts(scores["confidence"], scores["correction_confidence"], gamma, eta)
        missing = _not_scored(store.get_run(run_id), ds["n_rows"])
        click.echo(
            f"Scored {state.rows_done} of {ds['n_rows']} rows of {ds['name']!r} (run {run_id}, "
            f"{model or EMBEDDED_MODEL}) in {elapsed:.1f} s: {counts['filter']} filter, {counts['correct']} correct, "
            f"{counts['keep']} keep at gamma={gamma:.2f}, eta={eta:.2f}."
            + (f" {missing} rows not scored (--limit); export asks what to do with them." if missing else "")
            + (f" {state.error}" if state.error else "")  # e.g. rows that could not be scored, and where to look
        )


def _import_summary(dataset) -> str:
    """One line on what was read: rows, layout, exact duplicates (kept or dropped) and any notices."""
    name = Path(dataset.source_path).name
    parts = [f"Read {dataset.n_rows} rows of {name} ({dataset.schema}, {dataset.file_format})."]
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


class _Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a closed terminal, a CI timeout) while following a run: handled like Ctrl-C."""


def _interrupt(signum, frame) -> None:
    raise _Interrupted()


def _worker_note(directory: Path, stopping: bool = False) -> str:
    """What the user must know when this command ends while the run's worker process may still be alive."""
    from clear_core import handoff

    if not directory.exists() or backends.of_run(directory).state(directory) != "running":
        return ""
    pid = handoff.read_progress(directory).get("pid")
    if not pid:  # still loading the model: only the pid written at launch exists
        pid = (directory / "worker.pid").read_text().strip() if (directory / "worker.pid").exists() else "?"
    if stopping:
        return (
            f" The worker (pid {pid}) is finishing the batch in flight and then stops; run the same command "
            "again to pick up its rows."
        )
    return (
        f" The scoring worker (pid {pid}) keeps scoring in the background into {directory}; run the same command "
        f"again to pick up its results, or stop it with: kill {pid}"
    )


def _follow(store: Store, run_id: int) -> runs.RunProgress:
    """Show a progress bar until the worker stops. Ctrl-C, SIGTERM and SIGHUP cancel the run cleanly, keeping
    finished rows; any other failure says whether the worker keeps scoring, and how to pick up or stop it."""
    from tqdm import tqdm

    directory = runs.run_dir(store, run_id)  # read now: at a failure the database may be out of reach
    bar = tqdm(total=0, unit="row", file=sys.stderr, dynamic_ncols=True, disable=None)
    handlers = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}

    def update(state: runs.RunProgress) -> None:
        bar.total = state.rows_total
        bar.n = state.rows_done
        bar.set_postfix_str(state.where or "loading model", refresh=False)
        bar.refresh()

    try:
        try:
            return runs.wait(store, run_id, on_progress=update)
        except KeyboardInterrupt:
            for sig in handlers:  # a second signal while cancelling must not cut the clean-up short
                signal.signal(sig, signal.SIG_IGN)
            runs.cancel(store, run_id)
            return runs.progress(store, run_id)
    except Exception as exc:
        note = _worker_note(directory)
        if note:
            exc.add_note(note.strip())
        raise
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        bar.close()


@main.command("export")
@db_option(exists=True, help="DuckDB file with scores.")
@click.option(
    "--out",
    "out_path",
    default=None,
    type=click.Path(),
    help="File to write, or a folder (a path with no extension) for a Hugging Face datasets save_to_disk folder.",
)
@click.option(
    "--format",
    "out_format",
    type=click.Choice([*EXPORT_FORMATS, DATASETS_FORMAT]),
    default=None,
    help="Output format (default: from --out's extension; the input's own when it is the same kind).",
)
@click.option("--push-to-hub", "repo_id", default=None, help="Also push the curated set to this Hugging Face dataset.")
@click.option("--dataset", default=None, help="Dataset id or name (default: the most recently imported).")
@click.option("--include-scores", is_flag=True, help="Add clear_confidence, clear_action and per-signal columns.")
@click.option("--all-rows", is_flag=True, help="Keep filtered rows too, so the file is a full record of the run.")
@click.option("--gamma", type=click.FloatRange(0, 1), default=None, help="Auto-Filter threshold (default: stored).")
@click.option("--eta", type=click.FloatRange(0, 1), default=None, help="Auto-Correct threshold (default: stored).")
@click.option("--only-reviewed", is_flag=True, help="Keep only rows an annotator decided on.")
@click.option("--no-auto", is_flag=True, help="Apply only human decisions, not automatic actions.")
@click.option(
    "--include-audit",
    is_flag=True,
    help="Also write the dataset's audit log (who imported, scored, moved gamma/eta, decided, exported) next to "
    "--out as NAME.audit.jsonl.",
)
@click.option(
    "--unscored",
    type=click.Choice(UNSCORED_CHOICES),
    default="fail",
    show_default=True,
    help="Rows without scores (not scored yet, e.g. after --limit, or scoring failed) that no annotator decided: "
    "fail = write nothing and say which rows; keep = write them unchanged; drop = leave them out.",
)
def export_command(
    db,
    out_path,
    out_format,
    repo_id,
    dataset,
    include_scores,
    all_rows,
    gamma,
    eta,
    only_reviewed,
    no_auto,
    include_audit,
    unscored,
) -> None:
    """Write the curated dataset: filtered rows dropped, corrections applied, in the input's own schema.

    Rows without scores stop the export (naming them and the command that scores them) unless --unscored says
    what to do with them. While the app has DB open, export from its Export page.
    """
    from clear_core import hub

    if not (out_path or repo_id):
        raise click.UsageError("Give --out FILE (or FOLDER), --push-to-hub REPO_ID, or both.")
    if include_audit and not out_path:
        raise click.UsageError("--include-audit writes the audit log next to --out; give --out FILE (or FOLDER).")
    if repo_id and (problem := hub.push_problem()):  # before any work: offline or without a token it cannot push
        raise click.ClickException(f"Cannot push to the Hugging Face Hub: {problem}. Nothing was written.")
    with _open_store(
        db,
        "To export while the app is open, use its Export page (Download button); or close the app and run this "
        "command again.",
        reading=True,
        memory_limit=export.DUCKDB_MEMORY_LIMIT,
    ) as store:
        ds = workspace.pick_dataset(store, dataset)
        folder = out_format == DATASETS_FORMAT or bool(out_path and not out_format and not Path(out_path).suffix)
        fmt = (
            "original"
            if folder or not out_path
            else out_format or workspace.format_for_path(out_path, ds["file_format"])
        )
        stored_gamma, stored_eta = store.get_thresholds(ds["dataset_id"])
        policy = ExportPolicy(
            apply_auto=not no_auto,
            gamma=stored_gamma if gamma is None else gamma,
            eta=stored_eta if eta is None else eta,
            only_reviewed=only_reviewed,
            all_rows=all_rows,
            include_scores=include_scores,
            unscored=unscored,
        )
        plan = workspace.export_plan(store, ds["dataset_id"], policy, fmt)
        try:
            plan.check()
        except export.UnscoredRowsError as exc:
            command = score_command_line(db, ds, store.latest_run(ds["dataset_id"]))
            raise click.ClickException(
                f"{exc}, so no automatic action decides {exc.them}. Nothing was written. Pass --unscored keep to "
                f"write {exc.them} unchanged or --unscored drop to leave {exc.them} out, or score {exc.them} first: "
                f"{command}"
            ) from exc
        records = plan.records() if folder or repo_id else None  # a datasets folder or push needs them together
        if folder:
            hub.save_folder(records, out_path)
        elif out_path:
            written = plan.write(out_path)  # streamed: a million rows in bounded memory
        n_records = len(records) if records is not None else written
        where = [f"to {out_path} ({'datasets folder' if folder else plan.file_format})"] if out_path else []
        if repo_id:
            where.append(f"to {hub.push(records, repo_id)}")
        if not store.read_only:  # a database this user cannot write is exported without a line in its audit log
            detail = {"out": out_path, "repo_id": repo_id, "format": plan.file_format, "records": n_records}
            store.record_audit(permissions.owner_actor(), "export", dataset_id=ds["dataset_id"], detail=detail)
        if include_audit:
            audit = workspace.audit_path(out_path)
            workspace.write_audit(workspace.audit_records(store, ds["dataset_id"]), audit)
            where.append(f"the audit log to {audit}")
        s = plan.summary
        click.echo(
            f"Wrote {n_records} records {' and '.join(where)}: {s['kept']} of {s['total']} "
            f"rows kept, {s['removed']} removed, {s['corrected']} corrected, {s['edited']} edited "
            f"(gamma={policy.gamma:.2f}, eta={policy.eta:.2f}){_unscored_note(s, policy)}."
        )


def _unscored_note(summary: dict, policy: ExportPolicy) -> str:
    """'; 22 of 30 rows are not scored (rows 8, ...): written unchanged (--unscored keep)', or '' when none."""
    unscored, failed = summary["unscored_rows"], summary["failed_rows"]
    if not (unscored or failed):
        return ""
    what = export.describe_unscored(unscored, failed, summary["total"])
    if policy.only_reviewed:
        return f"; {what}: left out (--only-reviewed)"
    if not policy.apply_auto:
        return f"; {what}: written unchanged (--no-auto)"
    done = "written unchanged" if policy.unscored == "keep" else "left out"
    return f"; {what}: {done} (--unscored {policy.unscored})"


@main.command()
@db_option(exists=True, help="DuckDB file.")
def status(db) -> None:
    """Datasets, runs (rows scored, not scored and failed) and review progress in DB.

    While the app or another command has DB open, shows the progress of the runs in DB.work/ instead.
    """
    try:
        with _open_store(db, reading=True) as store:
            _print_status(store, db)
    except StoreLockedError as exc:  # raised only by opening: the store is never locked once open
        _status_from_run_dirs(db, str(exc))


def _print_status(store: Store, db: str) -> None:
    """Each dataset in ``store``: its runs, the command that scores what is left, and review progress."""
    if store.read_only:
        click.echo(
            f"{db} is read-only for this user: showing what it holds; rows that workers finished since it was "
            "last written are not counted."
        )
    datasets = store.list_datasets()
    if datasets.empty:
        click.echo(f"{db}: no datasets yet.")
        return
    for ds in datasets.itertuples():
        click.echo(f"dataset {ds.dataset_id} {ds.name!r}: {ds.n_rows} rows ({ds.schema}, {ds.file_format})")
        for run in store.list_runs(ds.dataset_id).itertuples():
            click.echo("  " + _run_line(store, run.run_id, ds.n_rows))
        latest = store.latest_run(ds.dataset_id)
        if latest is None:
            click.echo(f"  no scoring run yet: {ds.n_rows} rows not scored")
        if latest is None or (latest["status"] != "running" and _not_scored(latest, ds.n_rows)):
            command = score_command_line(db, store.get_dataset(ds.dataset_id), latest)
            click.echo(f"  to score {'them' if latest is None else 'the rest'}: {command}")
        decided = len(store.current_decisions(ds.dataset_id))
        gamma, eta = store.get_thresholds(ds.dataset_id)
        click.echo(f"  reviewed {decided} of {ds.n_rows} rows; gamma={gamma:.2f}, eta={eta:.2f}")


def _not_scored(run: dict, n_rows: int) -> int:
    """Rows of the dataset this run has neither scored nor failed on."""
    return max(n_rows - int(run["n_scored"]) - int(run.get("n_failed") or 0), 0)


def _run_line(store: Store, run_id: int, n_rows: int) -> str:
    """'run 1 (done, --limit 8) MODEL: 8 of 30 rows scored, 22 not scored, 0 failed'; a writable store takes in
    finished chunks first (runs.progress), a read-only one shows what it holds."""
    state = None if store.read_only else runs.progress(store, run_id)
    run = store.get_run(run_id)
    scored, failed, missing = int(run["n_scored"]), int(run.get("n_failed") or 0), _not_scored(run, n_rows)
    status = run["status"]
    if status == "done" and missing:
        status += f", --limit {scored + failed}"  # a done run scored every row it was asked for
    if status == "running" and run.get("work_dir"):
        status += _worker_details(Path(run["work_dir"]))
    line = (
        f"run {run_id} ({status}) {run['model']}: {scored} of {n_rows} rows scored, {missing} not scored"
        f"{' yet' if run['status'] == 'running' else ''}, {failed} failed"
    )
    error = state.error if state is not None else run.get("error")
    return line + (f" - {error}" if error else "")


def _worker_details(directory: Path) -> str:
    """', worker pid 123, 0.52 rows/s, about 40 s left' from the worker's progress.json ('' when unknown)."""
    from clear_core import handoff
    from clear_core.ui_state import format_duration

    progress = handoff.read_progress(directory)
    parts = [f"worker pid {progress['pid']}"] if progress.get("pid") else []
    if progress.get("rows_per_s"):
        parts.append(f"{progress['rows_per_s']:.2f} rows/s")
    if progress.get("eta_s") is not None:
        parts.append(f"about {format_duration(progress['eta_s'])} left")
    return "".join(f", {part}" for part in parts)


def _status_from_run_dirs(db: str, locked: str) -> None:
    """Status while another process holds the database: what each run directory's progress.json says."""
    from clear_core import handoff

    pid = re.search(r"PID (\d+)", locked)
    click.echo(
        f"{db} is open in another process{f' (PID {pid.group(1)})' if pid else ''}, the CLEAR Review app or a "
        "`python -m clear_core` command, so datasets, scored counts and decisions are not shown (the app's Run "
        f"and Review pages show them; or close that process). What the scoring runs in {runs.work_root(db)}/ say:"
    )
    directories = sorted(runs.work_root(db).glob("run-*"), key=lambda d: (len(d.name), d.name))
    if not directories:
        click.echo("  no run directories")
    for directory in directories:
        progress = handoff.read_progress(directory)
        try:
            model = json.loads((directory / "job.json").read_text(encoding="utf-8")).get("model", "?")
        except (OSError, ValueError):
            model = "?"
        state = backends.of_run(directory).state(directory)
        details = _worker_details(directory) if state == "running" else ""
        done, total = progress.get("rows_done"), progress.get("rows_total")
        rows = "worker starting" if total is None else f"{done} of the {total} rows it was given scored"
        if progress.get("rows_failed"):
            rows += f", {progress['rows_failed']} failed"
        error = f" - {progress['error']}" if progress.get("error") else ""
        click.echo(f"  {directory.name} ({state}{details}) {model}: {rows}{error}")


# -- users (team mode) -------------------------------------------------------------------------------------------

users_options = _options(
    click.option(
        "--users",
        "users_file",
        type=click.Path(dir_okay=False),
        default=None,
        help=f"The users file (default: ${accounts.USERS_ENV}, else DB's name with .users.json, next to --db).",
    ),
    click.option(
        "--db",
        default=DEFAULT_DB,
        type=click.Path(dir_okay=False),
        help="The curation database the app serves; its users file sits next to it.",
    ),
)


def _users_file(users_file: str | None, db: str) -> Path:
    return Path(users_file) if users_file else accounts.users_path(db)


@main.group()
def users() -> None:
    """Team mode: the people who may sign in to the app and their roles (annotator or lead).

    The app runs in team mode while the users file exists; remove the file to go back to local mode.
    """


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(permissions.ROLES), required=True, help="annotator: reviews; lead: all.")
@click.option("--email", default=None, help="Their e-mail, for signing in through st.login (OIDC).")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@click.option("--no-password", is_flag=True, help="No password: signs in only through st.login (needs --email).")
@click.option("--replace", is_flag=True, help="Change an existing user's role, password and e-mail.")
@users_options
def users_add(name, role, email, password_stdin, no_password, replace, users_file, db) -> None:
    """Add NAME with a role; the password is asked for twice (never given on the command line)."""
    path = _users_file(users_file, db)
    current = accounts.load_users(path)  # a broken file is reported before asking for a password
    if no_password:
        password = None
    elif password_stdin:
        password = click.get_text_stream("stdin").readline().rstrip("\r\n")
    else:
        password = click.prompt(f"Password for {name}", hide_input=True, confirmation_prompt=True)
    accounts.save_users(path, accounts.add_user(current, name, role, password, email=email, replace=replace))
    was = "" if current.users else " Team mode is on: restart the app to have everyone sign in."
    click.echo(f"{'Updated' if replace and current.get(name) else 'Added'} {name} ({role}) in {path}.{was}")


@users.command("list")
@users_options
def users_list(users_file, db) -> None:
    """Everyone in the users file, with their role and how they sign in (never their password hash)."""
    path = _users_file(users_file, db)
    found = accounts.load_users(path)
    if not found.users:
        click.echo(f"No users in {path}: the app runs in local mode.")
        return
    click.echo(f"{path}:")
    for user in found.users:
        how = ["password"] if user.password_hash else []
        how += [f"st.login as {user.email}"] if user.email else []
        click.echo(f"  {user.name}  {user.role}  ({', '.join(how)}; added {user.added_at or '?'})")


@users.command("remove")
@click.argument("name")
@users_options
def users_remove(name, users_file, db) -> None:
    """Remove NAME; their decisions stay in the log under their name. Signed-in sessions end at their next click."""
    path = _users_file(users_file, db)
    accounts.save_users(path, accounts.remove_user(accounts.load_users(path), name))
    click.echo(f"Removed {name} from {path}.")


def _notes(exc: BaseException) -> str:
    """Notes added to an exception on its way out (e.g. that the worker keeps scoring), on the same line."""
    return "".join(f" {note}" for note in getattr(exc, "__notes__", ()))


def _prog_name() -> str:
    """How the user started us: the installed `clear-review` command, or `python -m clear_core`."""
    return "clear-review" if Path(sys.argv[0]).name == "clear-review" else "python -m clear_core"


def run(argv: list[str] | None = None) -> int:
    """Entry point (`python -m clear_core` and the `clear-review` command) that turns any unexpected error into a
    one-line message (details with CLEAR_DEBUG=1)."""
    import os

    try:
        main.main(args=argv, prog_name=_prog_name(), standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.UsageError as exc:  # one line, not click's usage block
        hint = f" (see: {_prog_name()} {exc.ctx.info_name} --help)" if exc.ctx else ""
        click.echo(f"Error: {exc.format_message()}{hint}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"Error: {exc.format_message()}{_notes(exc)}", err=True)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - a bug: one line for users, the traceback with CLEAR_DEBUG=1
        if os.environ.get("CLEAR_DEBUG"):
            raise
        click.echo(f"Error: {type(exc).__name__}: {exc} (set CLEAR_DEBUG=1 for details){_notes(exc)}", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
