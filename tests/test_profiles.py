"""Scoring profiles: what auto picks from the device and model, explicit settings over a profile, the resolved
settings stored with a run (so it resumes exactly, runs from before profiles included), and the CLI's help."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from clear_core import EMBEDDED_MODEL, handoff, profiles, workspace
from clear_core.confidence import ScoringConfig
from clear_core.errors import InvalidInput
from clear_core.store import Store


@pytest.mark.parametrize(
    ("device", "model", "expected", "reason"),
    [
        ("cpu", None, "fast", "CPU"),
        ("cpu", "meta-llama/Llama-3.1-8B-Instruct", "fast", "CPU"),
        ("cuda", None, "fast", "GPU, embedded 135M model"),
        ("cuda:1", EMBEDDED_MODEL, "fast", "GPU, embedded 135M model"),
        ("cuda", "meta-llama/Llama-3.1-8B-Instruct", "paper", "GPU, your model"),
    ],
)
def test_auto_picks_paper_only_on_a_gpu_with_a_larger_model(device, model, expected, reason):
    choice = profiles.resolve("auto", device=device, model=model)
    assert (choice.profile, choice.reason) == (expected, reason)
    assert choice.config == dataclasses.replace(ScoringConfig(), **profiles.SETTINGS[expected])
    assert choice.describe().startswith(f"{expected} (auto: {reason}): ")


def test_auto_device_asks_whether_a_gpu_is_there(monkeypatch):
    monkeypatch.setattr(profiles, "gpu_available", lambda: True)
    assert profiles.resolve("auto", model="some/model").profile == "paper"
    assert "auto picks fast for the embedded model" in profiles.auto_help()
    monkeypatch.setattr(profiles, "gpu_available", lambda: False)
    assert profiles.resolve("auto", model="some/model").profile == "fast"
    assert profiles.auto_help() == "On this machine auto picks fast (CPU)."


def test_no_gpu_when_cuda_visible_devices_hides_them(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delitem(__import__("sys").modules, "torch", raising=False)
    assert profiles.gpu_available() is False


def test_the_profiles_settings_and_explicit_settings_over_them():
    fast, paper = profiles.resolve("fast").config, profiles.resolve("paper").config
    assert (fast.samples, fast.self_reflection, fast.propose, fast.context_examples) == (0, False, True, 3)
    assert (paper.samples, paper.self_reflection) == (5, True)
    assert paper == ScoringConfig()  # the paper profile is ScoringConfig's defaults, the papers'
    custom = profiles.resolve("fast", samples=3, propose=False)
    assert (custom.config.samples, custom.config.self_reflection, custom.config.propose) == (3, False, False)
    assert custom.profile == "custom" and profiles.profile_of(custom.config) == "custom"
    assert profiles.resolve("paper", propose=False).profile == "paper"  # proposals are not what a profile decides
    assert profiles.settings_text(custom.config) == "k = 3, no self-reflection, 3 context examples, proposals off"
    with pytest.raises(InvalidInput, match="Unknown scoring profile 'slow'"):
        profiles.resolve("slow")


def test_stored_params_are_the_resolved_settings_and_runs_from_before_profiles_resume(tmp_path, gsm8k_file):
    fast = profiles.resolve("auto", device="cpu").config.to_params()
    assert fast["samples"] == 0 and fast["self_reflection"] is False and "profile" not in fast
    added_since = ("self_reflection", "context_examples")  # fields that runs stored before them do not hold
    legacy = {k: v for k, v in dataclasses.asdict(ScoringConfig()).items() if k not in added_since}
    assert profiles.resolve("paper").config.to_params() == legacy  # a paper run's params read as before profiles
    assert ScoringConfig.from_params(legacy).self_reflection is True
    with Store(tmp_path / "c.duckdb") as store:
        dataset_id = workspace.import_file(store, gsm8k_file)
        old = store.create_run(dataset_id, EMBEDDED_MODEL, legacy)  # stored by a version without profiles
        new = store.create_run(dataset_id, EMBEDDED_MODEL, fast)
        assert (
            store.find_resumable_run(dataset_id, EMBEDDED_MODEL, profiles.resolve("paper").config.to_params())["run_id"]
            == old
        )
        assert store.find_resumable_run(dataset_id, EMBEDDED_MODEL, fast)["run_id"] == new
        assert ScoringConfig.from_params(store.get_run(new)["params"]) == profiles.resolve("fast").config


def test_score_help_says_what_auto_picks_here(cli_here):
    text = " ".join(cli_here("score", "--help").stdout.split())
    assert "--profile [auto|fast|paper]" in text and "[default: auto]" in text
    assert profiles.auto_help() in text
    assert "--self-reflection / --no-self-reflection" in text


def test_a_run_stores_the_resolved_profile_and_resumes_with_it(tmp_path, gsm8k_file, tiny_model_path, cli_here):
    """A run scored with --profile paper stores k = 5 and self-reflection; the command status gives for the rest
    names the profile (never auto), and runs in the same run; an auto run on this CPU stores fast's settings."""
    db = tmp_path / "c.duckdb"
    args = ("--db", str(db), "--model", str(tiny_model_path), "--device", "cpu")
    paper = cli_here("score", str(gsm8k_file), *args, "--profile", "paper", "--limit", "2")
    assert paper.returncode == 0, paper.stderr
    assert "Scoring profile: paper: k = 5, self-reflection, proposals on." in paper.stdout
    status = cli_here("status", "--db", str(db)).stdout
    assert "--profile paper" in status and "--samples" not in status
    rest = cli_here("score", str(gsm8k_file), *args, "--profile", "paper", "--limit", "3")
    assert rest.returncode == 0, rest.stderr
    auto = cli_here("score", str(gsm8k_file), *args, "--limit", "1", "--no-propose")
    assert auto.returncode == 0, auto.stderr
    assert "Scoring profile: fast (auto: CPU): k = 0, no self-reflection, 3 context examples, proposals off." in (
        auto.stdout
    )
    with Store(db) as store:
        runs = store.list_runs(1).sort_values("run_id")
        assert list(runs["n_scored"]) == [3, 1]  # the second paper command resumed run 1
        first, second = (ScoringConfig.from_params(p) for p in runs["params"])
        assert (first.samples, first.self_reflection) == (5, True)
        assert (second.samples, second.self_reflection, second.propose) == (0, False, False)
        scores = store.scores(2)
        assert scores["self_reflection"].isna().all() and scores["consistency"].isna().all()
        assert store.scores(1)["self_reflection"].between(0, 1).all()


def test_context_examples_travel_with_the_run_and_the_command_that_resumes_it(
    tmp_path, gsm8k_file, tiny_model_path, cli_here
):
    """--context-examples 2: stored with the run (a run without it stores nothing new, so older runs resume), the
    job carries the dataset's sample to pick the examples from, the worker scores with them, and status gives the
    option back in the command that scores the rest."""
    db = tmp_path / "c.duckdb"
    args = ("--db", str(db), "--model", str(tiny_model_path), "--device", "cpu", "--profile", "fast", "--no-propose")
    shown = cli_here("score", str(gsm8k_file), *args, "--context-examples", "2", "--limit", "3")
    assert shown.returncode == 0, shown.stderr
    assert "--context-examples 2" in cli_here("status", "--db", str(db)).stdout  # the command that scores the rest
    plain = cli_here("score", str(gsm8k_file), *args, "--context-examples", "0", "--limit", "3")  # fast's is 3
    assert plain.returncode == 0, plain.stderr
    assert "--context-examples" in cli_here("score", "--help").stdout
    with Store(db) as store:
        runs = store.list_runs(1).sort_values("run_id")
        first, second = (ScoringConfig.from_params(p) for p in runs["params"])
        assert first.context_examples == 2 and second.context_examples == 0
        assert "context_examples" not in runs["params"].iloc[1]
        job, _ = handoff.read_job(Path(store.get_run(1)["work_dir"]))
        assert sorted(r["row_index"] for r in job["example_pool"]) == list(range(12))  # the whole 12-row sample
        with_examples, without = store.scores(1), store.scores(2)
        assert len(with_examples) == len(without) == 3
        assert not np.allclose(with_examples["logprob_mean"], without["logprob_mean"])  # the examples were shown
        assert np.allclose(with_examples["repetition"], without["repetition"])  # text checks do not change
