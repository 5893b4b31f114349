"""Shared fixtures: real files and databases in tmp_path, a tiny random-weight model, the real embedded model."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEV_DATA = REPO.parent / "shared" / "data" / "dev"
GSM8K = DEV_DATA / "gsm8k_train.json"


@pytest.fixture(scope="session")
def embedded_model_path() -> Path:
    """The embedded SmolLM2 as a local HF directory (converted from its GGUF once, then cached)."""
    from clear_core.model import embedded_model_dir

    return embedded_model_dir()


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory, embedded_model_path) -> Path:
    """A 2-layer random-weight Llama with SmolLM2's tokenizer and chat template: fast, deterministic plumbing tests."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_path)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    path = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_model_path):
    from clear_core.model import load_model

    return load_model(str(tiny_model_path), device="cpu")


def gsm8k_records(n: int) -> list[dict]:
    """The first n real GSM8K rows (Alpaca format)."""
    return json.loads(GSM8K.read_text(encoding="utf-8"))[:n]


def write_gsm8k_small(folder: Path) -> Path:
    """A small real Alpaca JSON file: 12 GSM8K rows, row 3's response swapped for a refusal, row 5 truncated."""
    rows = gsm8k_records(12)
    rows[3]["output"] = "I'm sorry, but I can't help with that request."
    rows[5]["output"] = rows[5]["output"][: len(rows[5]["output"]) // 3]
    path = folder / "gsm8k_small.json"
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return path


@pytest.fixture
def gsm8k_file(tmp_path) -> Path:
    """`write_gsm8k_small` in this test's tmp_path."""
    return write_gsm8k_small(tmp_path)


@contextlib.contextmanager
def warnings_printed_to(stream):
    """Warnings as a fresh `python` process shows them (its default filters, not pytest's), written to `stream`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("default")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        try:
            yield
        finally:
            for w in caught:
                stream.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line))


@pytest.fixture
def in_process_worker(monkeypatch):
    """A run's worker loop runs in this process, to completion, where a run starts it (instead of a detached
    `python -m clear_core.worker`), its output and warnings going to worker.log as the process's do: for tests
    about what a run scores and stores, not about the process (a test can patch the engine, and no second
    interpreter imports torch and loads the model)."""
    from clear_core import handoff, worker

    def start(run_dir, rows_stored=0):
        log_path = run_dir / "worker.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        handoff.write_atomic(run_dir / "worker.pid", str(os.getpid()))
        handoff.write_attempt(run_dir, log_offset=offset, rows_stored=rows_stored, started_at=time.time())
        with (
            open(log_path, "a", encoding="utf-8") as log,
            warnings_printed_to(log),
            contextlib.redirect_stdout(log),
            contextlib.redirect_stderr(log),
        ):
            worker.run(run_dir)
        return os.getpid()

    monkeypatch.setattr(handoff, "start_worker", start)


@pytest.fixture
def cli_here(in_process_worker):
    """The command line in this process: `cli_here("score", ...)` returns what `tests.test_cli.cli` returns for a
    subprocess (exit code, stdout, stderr with any warnings a process would print), through the same entry point
    (`clear_core.cli.run`), and a `score` scores in this process (`in_process_worker`). For tests about what a
    command says and writes; tests about processes and signals run the real command (`tests.test_cli.cli`)."""
    from clear_core.cli import run

    def invoke(*args: str) -> subprocess.CompletedProcess:
        out, err = io.StringIO(), io.StringIO()
        with warnings_printed_to(err), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = run(list(args))
            except SystemExit as exc:
                code = exc.code
        return subprocess.CompletedProcess(["python", "-m", "clear_core", *args], code, out.getvalue(), err.getvalue())

    return invoke


# -- app fixtures (tests/test_app_*.py) ---------------------------------------------------------------------


def synthetic_scores(n: int) -> list[dict]:
    """Score records for rows 0..n-1 without a model: confidence rises with the row number; row 3 (the refusal in
    `gsm8k_file`) has a confident proposal (action 'correct'), row 5 (truncated) a weak one ('filter')."""
    records = []
    for i in range(n):
        record = {
            "row_index": i,
            "confidence": round(0.3 + 0.05 * i, 3),
            "self_reflection": 0.5,
            "logprob_mean": -1.0 - i / 10,
            "n_response_tokens": 20 + i,
            "proposed_response": None,
            "correction_confidence": None,
        }
        records.append(record)
    records[3].update(confidence=0.05, proposed_response="<b>72</b> clips\nin all.", correction_confidence=0.95)
    records[5].update(confidence=0.15, proposed_response="She earned $10.", correction_confidence=0.6)
    return records


def import_with_synthetic_run(db, source, n_rows: int) -> tuple[int, int]:
    """Import ``source`` into ``db`` and store ``synthetic_scores`` for its rows as a finished run; returns
    (dataset_id, run_id). What the browser tests start their servers on."""
    from clear_core import workspace
    from clear_core.store import Store

    with Store(db) as store:
        dataset_id = workspace.import_file(store, source)
        run_id = store.create_run(dataset_id, "synthetic", {"samples": 0})
        store.add_scores(run_id, synthetic_scores(n_rows))
        store.set_run_status(run_id, "done")
    return dataset_id, run_id


@pytest.fixture(scope="session")
def app_db_template(tmp_path_factory) -> tuple[Path, int, int]:
    """`app_db`'s database, built once per session through the store (import, run, scores), closed; each test gets
    a copy. Returns (path, dataset_id, run_id)."""
    from clear_core import workspace
    from clear_core.store import Store

    folder = tmp_path_factory.mktemp("app-db")
    path = folder / "app.duckdb"
    with Store(path) as store:
        dataset_id = workspace.import_file(store, write_gsm8k_small(folder))
        run_id = store.create_run(dataset_id, "synthetic", {"samples": 0})
        store.add_scores(run_id, synthetic_scores(12))
        store.set_run_status(run_id, "done")
    return path, dataset_id, run_id


@pytest.fixture
def app_db(tmp_path, gsm8k_file, monkeypatch, app_db_template):
    """A curation database for the app (CLEAR_DB points at it, no demo run): the 12-row `gsm8k_file` imported and
    a finished run with `synthetic_scores`, copied from `app_db_template` (its dataset's source path is the
    template's copy of the same file). Returns (path, dataset_id, run_id)."""
    template, dataset_id, run_id = app_db_template
    path = tmp_path / "app.duckdb"
    shutil.copyfile(template, path)
    monkeypatch.setenv("CLEAR_DB", str(path))
    monkeypatch.setenv("CLEAR_NO_DEMO", "1")
    return path, dataset_id, run_id


@pytest.fixture
def app():
    """Open the app in AppTest: `app(page="app_pages/review.py", annotator="alice")` runs it and returns the AppTest.

    Set CLEAR_DB (e.g. with the `app_db` fixture) first: the app opens the database that variable names.
    """
    from streamlit.testing.v1 import AppTest

    def open_app(page: str | None = None, annotator: str | None = "alice", **query) -> AppTest:
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
        if annotator:
            at.query_params["annotator"] = annotator
        at.query_params.update({k: str(v) for k, v in query.items()})
        at.run()
        if page:
            at.switch_page(page).run()
        return at

    return open_app
