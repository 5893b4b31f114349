"""One error family: every error a user can act on is a ClearError; the CLI shows it as a one-line message and
lets any other exception surface as a bug."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import clear_core
from clear_core import cli, export, handoff, ui_state, workspace
from clear_core.data import DataError
from clear_core.errors import ClearError, InvalidInput
from clear_core.permissions import local_actor
from clear_core.store import NotFoundError, ReviewQuery, Store, StoreError

# Exceptions that never reach a user: noise recipes tell inject_noise to pick another recipe (bench only); the
# owner's cancel travels through the batch loop to the worker, which ends the run as cancelled.
INTERNAL = {"clear_core.noise.NoiseNotApplicable", "clear_core.handoff.Cancelled"}


def public_errors() -> dict[str, type]:
    """Every exception class defined (not imported) under a public name in a clear_core module."""
    found = {}
    for info in pkgutil.iter_modules(clear_core.__path__):
        if info.name == "__main__":  # runs the command line
            continue
        module = importlib.import_module(f"clear_core.{info.name}")
        for name, value in vars(module).items():
            if (
                not name.startswith("_")
                and inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                found[f"{module.__name__}.{name}"] = value
    return found


def test_every_public_error_is_a_clear_error():
    errors = public_errors()
    assert {"clear_core.data.DataError", "clear_core.store.StoreError", "clear_core.export.ExportError"} <= set(errors)
    assert {"clear_core.model.ModelLoadError", "clear_core.handoff.DiskFullError"} <= set(errors)
    outside = sorted(name for name, cls in errors.items() if not issubclass(cls, ClearError) and name not in INTERNAL)
    assert outside == []


def test_errors_keep_the_bases_callers_rely_on():
    from clear_core.model import ModelLoadError

    assert issubclass(InvalidInput, ValueError)
    assert issubclass(NotFoundError, LookupError) and issubclass(NotFoundError, StoreError)
    assert issubclass(handoff.DiskFullError, OSError)
    assert issubclass(ModelLoadError, RuntimeError)
    assert issubclass(export.UnscoredRowsError, export.ExportError)


def test_a_users_bad_arguments_are_invalid_input(tmp_path, gsm8k_file):
    with Store(tmp_path / "c.duckdb") as store:
        dataset_id = workspace.import_file(store, gsm8k_file)
        run_id = store.create_run(dataset_id, "m", {})
        with pytest.raises(InvalidInput, match="gamma must be a number between 0 and 1"):
            store.set_thresholds(dataset_id, 1.5, 0.7, actor=local_actor("ann"))
        with pytest.raises(InvalidInput, match="Cannot sort by"):
            store.review_queue(ReviewQuery(run_id, 0.5, 0.7, order_by="nope"))
        with pytest.raises(InvalidInput, match="annotator"):
            store.record_decision(dataset_id, 0, "reject", actor=local_actor(" "))
        with pytest.raises(NotFoundError, match="No dataset 'nope'"):
            workspace.pick_dataset(store, "nope")
    with pytest.raises(InvalidInput):
        export.ExportPolicy(gamma=0.5, eta=0.7, unscored="maybe")
    with pytest.raises(InvalidInput, match="Unknown export format"):
        export.resolve_format("xml", "jsonl")


def test_an_upload_that_cannot_be_saved_is_a_data_error(tmp_path):
    not_a_folder = tmp_path / "uploads"
    not_a_folder.write_text("a file where the uploads folder should be")
    with pytest.raises(DataError, match=f"a.jsonl: the uploaded copy cannot be saved in {not_a_folder}"):
        ui_state.save_upload(not_a_folder, "a.jsonl", b"{}\n")


@pytest.fixture
def empty_db(tmp_path):
    path = tmp_path / "c.duckdb"
    Store(path).close()
    return str(path)


def test_the_cli_shows_a_clear_error_as_its_message(empty_db, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise InvalidInput("Pick a dataset that exists.")

    monkeypatch.setattr(workspace, "pick_dataset", refuse)
    assert cli.run(["export", "--db", empty_db, "--out", "x.jsonl"]) == 1
    assert capsys.readouterr().err == "Error: Pick a dataset that exists.\n"


def test_the_cli_lets_a_bug_surface_as_one(empty_db, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ValueError("an internal contract was broken")

    monkeypatch.setattr(workspace, "pick_dataset", broken)
    assert cli.run(["export", "--db", empty_db, "--out", "x.jsonl"]) == 1
    assert capsys.readouterr().err == (
        "Error: ValueError: an internal contract was broken (set CLEAR_DEBUG=1 for details)\n"
    )
    monkeypatch.setenv("CLEAR_DEBUG", "1")
    with pytest.raises(ValueError, match="internal contract"):
        cli.run(["export", "--db", empty_db, "--out", "x.jsonl"])
