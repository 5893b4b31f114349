"""Scoring profiles: which model passes a run pays for, picked from the device and the model.

- ``fast``: the likelihood pass (response given the prompt and given no prompt), the deterministic checks and the
  Auto-Correct proposals for doubtful rows; no sampled answers (k = 0) and no self-reflection questions. With the
  embedded 135M model those two add nothing to detection (docs/quality.md) and cost most of the compute
  (docs/performance.md, "Where the time goes").
- ``paper``: BSDetector as published (arXiv 2308.16175): k = 5 sampled answers for observed consistency and both
  self-reflection questions, on top of everything ``fast`` does.
- ``auto`` (the default): ``paper`` on a CUDA GPU with a model other than the embedded one, ``fast`` otherwise.

Explicit settings (``--samples``, ``--self-reflection``) override the profile's. A run stores the resolved settings
(``ScoringConfig.to_params``), never the word ``auto``, so resuming it scores the rest exactly as it began, on any
machine. Nothing here imports torch: the CLI's ``--help`` and the Run page ask ``auto`` without loading it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from clear_core import EMBEDDED_MODEL
from clear_core.confidence import ScoringConfig
from clear_core.errors import InvalidInput

PROFILES = ("auto", "fast", "paper")

# What each named profile sets; every other ScoringConfig field keeps its default. fast shows the model 3 of the
# dataset's own rows before each prompt (score --context-examples): on rows no design choice had used, detection
# AUROC 0.927 -> 0.956 (code) and 0.955 -> 0.960 (GSM8K), for 3-17% more time a row (docs/quality.md).
SETTINGS: dict[str, dict] = {
    "fast": {"samples": 0, "self_reflection": False, "context_examples": 3},
    "paper": {"samples": 5, "self_reflection": True, "context_examples": 0},  # BSDetector as published
}


@dataclass(frozen=True)
class Choice:
    """A resolved profile: the settings a run will use, and why."""

    requested: str  # auto | fast | paper, as asked
    profile: str  # fast | paper | custom (a named profile with explicit settings changed)
    reason: str  # why auto picked it (empty when a profile was named)
    config: ScoringConfig

    def describe(self) -> str:
        """One line for people: 'fast (auto: CPU): k = 0, no self-reflection, 3 context examples, proposals on'."""
        why = f" ({self.requested}: {self.reason})" if self.requested == "auto" else ""
        return f"{self.profile}{why}: {settings_text(self.config)}"


def settings_text(config: ScoringConfig) -> str:
    """The settings a profile decides, in words: 'k = 5, self-reflection, proposals on' or 'k = 0, no
    self-reflection, 3 context examples, proposals on'."""
    reflection = "self-reflection" if config.self_reflection else "no self-reflection"
    examples = f"{config.context_examples} context examples, " if config.context_examples else ""
    return f"k = {config.samples}, {reflection}, {examples}proposals {'on' if config.propose else 'off'}"


def profile_of(config: ScoringConfig) -> str:
    """The named profile whose settings ``config`` has (fast or paper), else 'custom'."""
    for name, values in SETTINGS.items():
        if all(getattr(config, field) == value for field, value in values.items()):
            return name
    return "custom"


def is_embedded(model: str | None) -> bool:
    return model is None or model == EMBEDDED_MODEL


def auto_profile(device: str = "auto", model: str | None = None) -> tuple[str, str]:
    """(profile, reason) that ``auto`` picks for this device ('auto', 'cpu', 'cuda', 'cuda:1') and model."""
    on_gpu = device.startswith("cuda") or (device == "auto" and gpu_available())
    if not on_gpu:
        return "fast", "CPU"
    if is_embedded(model):
        return "fast", "GPU, embedded 135M model"
    return "paper", "GPU, your model"


def auto_help() -> str:
    """What auto picks on this machine, for --help and the Run page."""
    embedded, embedded_why = auto_profile("auto", None)
    other, other_why = auto_profile("auto", "another model")
    if (embedded, embedded_why) == (other, other_why):
        return f"On this machine auto picks {embedded} ({embedded_why})."
    return f"On this machine auto picks {embedded} for the embedded model ({embedded_why}) and {other} for another."


def resolve(
    profile: str = "auto",
    *,
    device: str = "auto",
    model: str | None = None,
    samples: int | None = None,
    self_reflection: bool | None = None,
    propose: bool | None = None,
    context_examples: int | None = None,
) -> Choice:
    """The ScoringConfig a run uses: the profile's settings (``auto``: picked from device and model), then any
    explicit setting given (None: the profile's)."""
    if profile not in PROFILES:
        raise InvalidInput(f"Unknown scoring profile {profile!r}; choose one of {', '.join(PROFILES)}.")
    name, reason = auto_profile(device, model) if profile == "auto" else (profile, "")
    explicit = {
        field: value
        for field, value in {
            "samples": samples,
            "self_reflection": self_reflection,
            "propose": propose,
            "context_examples": context_examples,
        }.items()
        if value is not None
    }
    config = dataclasses.replace(ScoringConfig(), **{**SETTINGS[name], **explicit})
    changed = any(field in SETTINGS[name] and SETTINGS[name][field] != value for field, value in explicit.items())
    return Choice(profile, "custom" if changed else name, reason, config)


def gpu_available() -> bool:
    """Whether ``--device auto`` will find a CUDA GPU, without importing torch (slow, and heavy for the app):
    torch built with CUDA, a GPU the NVIDIA driver lists, and CUDA_VISIBLE_DEVICES not hiding every device."""
    torch = sys.modules.get("torch")
    if torch is not None:  # already paid for: ask it
        return bool(torch.cuda.is_available())
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    if not _torch_built_with_cuda():
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return (gpus.is_dir() and any(gpus.iterdir())) or Path("/dev/nvidia0").exists()


def _torch_built_with_cuda() -> bool:
    """torch/version.py's ``cuda`` (a version, or None for a CPU-only build), read as text."""
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return False
    try:
        text = (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8")
    except OSError:
        return False
    match = re.search(r"^cuda\s*(?::[^=\n]*)?=\s*(.+)$", text, re.MULTILINE)
    return bool(match) and match.group(1).strip() != "None"
