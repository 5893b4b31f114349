"""Confidence that a response is good, from raw model signals: the configuration, each signal, their combination.

Pure functions on numbers and strings; the model passes that produce the raw inputs live in `engine.py`.
Two confidences are computed for every row:
- `bsdetector_confidence`: the paper-faithful C = β·O + (1−β)·S (arXiv 2308.16175), kept as the baseline;
- `combined_confidence`: P(content is right) × P(response is complete) × P(checks pass), each a logistic score
  of signals (the likelihood signals a local model gives almost free, the BSDetector signals, and the
  deterministic checks of `checks.py`), Platt-calibrated to read as P(response is good). See docs/quality.md for
  why this form and how it was measured.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from clear_core.metrics import NUMBER_PATTERN, final_number, token_f1


@dataclass(frozen=True)
class ScoringConfig:
    """How a run scores rows. Defaults are the papers' unless a comment says otherwise."""

    samples: int = 5  # k sampled answers for observed consistency (BSDetector: k = 5)
    self_reflection: bool = True  # ask both self-reflection questions for S (BSDetector: yes)
    temperature: float = 1.0  # sampling temperature (BSDetector: 1.0)
    alpha: float = 0.8  # α: weight of semantic agreement vs exact-answer match in each oᵢ (BSDetector: 0.8)
    beta: float = 0.7  # β: weight of observed consistency vs self-reflection in C (BSDetector: 0.7)
    propose: bool = True  # generate a greedy candidate and judge it (Auto-Correct)
    propose_below: float = 0.5  # ...only for rows whose confidence is below this (see engine._propose)
    max_new_tokens: int = 256  # cap on sampled/proposed answer length
    max_prompt_tokens: int = 1024  # longer prompts are cut from the left (oldest context first)
    max_response_tokens: int = 1024  # longer responses are scored on their first tokens only
    batch_size: int = 8  # rows per generation batch
    seed: int = 0
    # Issue 8, "learn the dataset's own form": this many of the dataset's own most confident rows are shown as
    # user/assistant turns before each prompt of the likelihood pass (engine.choose_examples); 0: none
    context_examples: int = 0

    def to_params(self) -> dict:
        """Plain dict for storing with a run (and for finding a run to resume). A field added after runs were first
        stored is left out at the value every earlier run had (``_IMPLIED_WHEN_ABSENT``), so such a run still
        resumes under the same settings; ``from_params`` reads it back."""
        params = asdict(self)
        for name, value in _IMPLIED_WHEN_ABSENT.items():
            if params[name] == value:
                del params[name]
        return params

    @classmethod
    def from_params(cls, params: dict) -> ScoringConfig:
        known = {k: v for k, v in params.items() if k in cls.__dataclass_fields__}
        return cls(**known)


# Fields added to ScoringConfig after runs were first stored, with the value all runs before them had.
_IMPLIED_WHEN_ABSENT = {"self_reflection": True, "context_examples": 0}


# ---------------------------------------------------------------------------------------------------------------
# Signals


def answers_match(sample: str, response: str) -> float:
    """Exact-match indicator rᵢ: same final number when both have one, else same normalised text."""
    a, b = final_number(sample), final_number(response)
    if a is not None and b is not None:
        return float(a == b)
    return float(" ".join(sample.lower().split()) == " ".join(response.lower().split()))


def observed_consistency(samples: Sequence[str], response: str, alpha: float) -> float | None:
    """BSDetector's O: mean over samples of α·sᵢ + (1−α)·rᵢ.

    sᵢ (semantic agreement) is token-level F1 between sample and response: the paper's NLI model is not available
    offline, and F1 is a cheap, transparent stand-in. rᵢ is `answers_match`. None when no samples were drawn.
    """
    if not samples:
        return None
    scores = [alpha * token_f1(s, response) + (1 - alpha) * answers_match(s, response) for s in samples]
    return sum(scores) / len(scores)


def final_number_tokens(text: str, spans: Sequence[tuple[int, int]] | None) -> list[int] | None:
    """Indices of the tokens that spell the text's last number (a GSM8K answer, a count, a year), or None.

    Their log-probability is a targeted fact check: a changed final answer is one or two unlikely tokens that the
    mean over a long response hides. `spans` are the tokens' character spans; None when unknown.
    """
    numbers = list(NUMBER_PATTERN.finditer(text))
    if not numbers or spans is None:
        return None
    start, end = numbers[-1].span()
    return [i for i, (a, b) in enumerate(spans) if a < end and b > start] or None


def option_score(probs: Sequence[float], scores: Sequence[float]) -> float:
    """Expected score of a multiple-choice answer from its option probabilities (renormalised over the options)."""
    total = sum(probs)
    if total <= 0:
        return 0.5
    return sum(p * s for p, s in zip(probs, scores)) / total


def bsdetector_confidence(consistency: float | None, self_reflection: float | None, beta: float) -> float | None:
    """The paper's C = β·O + (1−β)·S; with no samples S alone, without self-reflection O alone (None: neither)."""
    if consistency is None or self_reflection is None:
        return self_reflection if consistency is None else consistency
    return beta * consistency + (1 - beta) * self_reflection


# ---------------------------------------------------------------------------------------------------------------
# Combination


@dataclass(frozen=True)
class LogisticScore:
    """σ(bias + Σ wᵢ·(xᵢ − meanᵢ)/scaleᵢ) over named features; a missing feature contributes its mean (nothing)."""

    weights: dict[str, float]
    means: dict[str, float]
    scales: dict[str, float]
    bias: float

    def logit(self, features: dict[str, float | None]) -> float:
        z = self.bias
        for name, w in self.weights.items():
            value = features.get(name)
            if _missing(value):
                continue
            z += w * (value - self.means[name]) / self.scales[name]
        return z

    def __call__(self, features: dict[str, float | None]) -> float:
        return _sigmoid(self.logit(features))


def _missing(value: float | None) -> bool:
    """None or NaN: how the store and pandas hand over a signal that was not computed for a row."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))


@dataclass(frozen=True)
class Combiner:
    """P(good) = Platt(P(content is right) · P(response is complete) · P(checks pass) · P(form fits the dataset)).

    Three failure modes, three scores. A truncated response is the right content cut short, and a loop of
    repeated lines or a wrong sum reads fluently: their likelihood and PMI are as high as a clean row's, so in one
    weighted sum they would cancel the one signal that gives them away. As a product, any score alone can sink
    the confidence. The Platt map (a, b) only calibrates: it is monotone, so it never changes the ranking.
    """

    content: LogisticScore
    complete: LogisticScore
    checks: LogisticScore
    platt_a: float = 1.0
    platt_b: float = 0.0
    form: LogisticScore | None = None  # P(the response has this dataset's form), from form.py; None: not used

    def raw_logit(self, features: dict[str, float | None]) -> float:
        """Logit of the uncalibrated product: the input of the Platt map (and of a dataset's own calibration)."""
        p = self.content(features) * self.complete(features) * self.checks(features)
        if self.form is not None:
            p *= self.form(features)
        p = min(max(p, 1e-12), 1 - 1e-12)
        return math.log(p / (1 - p))

    def __call__(self, features: dict[str, float | None]) -> float:
        return _sigmoid(self.platt_a * self.raw_logit(features) + self.platt_b)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Combiner:
        return cls(
            content=LogisticScore(**data["content"]),
            complete=LogisticScore(**data["complete"]),
            checks=LogisticScore(**data["checks"]),
            platt_a=data.get("platt_a", 1.0),
            platt_b=data.get("platt_b", 0.0),
            form=LogisticScore(**data["form"]) if data.get("form") else None,
        )


COMBINER_FEATURES = (
    "logprob_mean",
    "logprob_min",
    "pmi",
    "pmi_evidence",
    "final_number_logprob",
    "self_reflection",
    "consistency",
    "log_stop_prob",
    "repetition",
    "arithmetic_errors",
    "prompt_echo",
    "form_score",
    "left_open",
)


def feature_vector(raw: dict[str, float | None]) -> dict[str, float | None]:
    """The combiner's inputs, derived from raw signals: the log of the stop probability (clipped at 1e-6), how
    far the prompt copy share is above one half (answers often quote part of their prompt; an echo is nearly all),
    whether any bracket or code fence is left open (1) or not (0), and the PMI's evidence (`pmi_evidence`)."""
    stop = raw.get("stop_prob")
    copy = raw.get("prompt_copy")
    unclosed = raw.get("unclosed_brackets")
    derived = {
        "pmi_evidence": pmi_evidence(raw.get("pmi"), raw.get("n_response_tokens")),
        "log_stop_prob": None if _missing(stop) else math.log(max(stop, 1e-6)),
        "prompt_echo": None if _missing(copy) else max(0.0, copy - 0.5) * 2.0,
        "left_open": None if _missing(unclosed) else float(unclosed > 0),
    }
    return {name: derived[name] if name in derived else raw.get(name) for name in COMBINER_FEATURES}


def pmi_evidence(pmi: float | None, n_tokens: int | None) -> float | None:
    """How surely the prompt explains the response: the mean PMI per token times √(tokens), a t-statistic's form.

    The mean alone reads a one-line answer and a long essay alike, so open-ended prose (every token only a little
    more likely after its prompt) looks like a response to another prompt; summed over √n tokens, a long answer
    that fits its prompt throughout stands out from one that does not, and a few lucky tokens count for less."""
    if _missing(pmi) or _missing(n_tokens):
        return None
    return pmi * math.sqrt(max(n_tokens, 1))


COMBINER_PATH = Path(__file__).with_name("combiner.json")


def load_combiner(path: Path = COMBINER_PATH) -> Combiner:
    """The shipped combiner: weights set as a prior, Platt-calibrated by `bench/quality.py --fit` (docs/quality.md)."""
    return Combiner.from_json(json.loads(path.read_text(encoding="utf-8")))


DEFAULT_COMBINER = load_combiner()


def combined_confidence(raw: dict[str, float | None], combiner: Combiner = DEFAULT_COMBINER) -> float:
    """CLEAR Review's confidence that the response is good, in [0, 1], with the combiner's own (shipped) Platt map;
    a run calibrated on its dataset maps ``raw_logit`` instead (calibration.py)."""
    return combiner(feature_vector(raw))


def raw_logit(raw: dict[str, float | None], combiner: Combiner = DEFAULT_COMBINER) -> float:
    """The combiner's uncalibrated logit: what every calibration of the run maps to a confidence."""
    return combiner.raw_logit(feature_vector(raw))


def is_cut_off(raw: dict[str, float | None], combiner: Combiner = DEFAULT_COMBINER) -> bool:
    """The text ends where the model would not stop: the combiner's completeness factor, P(response is complete)
    from the stop probability right after it, is below one half (stop probability below about 0.08)."""
    return combiner.complete(feature_vector(raw)) < 0.5


def correction_confidence(
    judge_prob: float | None, confidence: float, proposal_confidence: float | None = None
) -> float | None:
    """Confidence that the proposal should replace the response: the original is doubtful, the judge does not
    prefer it to the proposal, and the model is confident in the proposal itself (CLEAR's rule: replace only when
    the model is confident in its answer and not in the original). An indifferent judge (0.5) leaves
    (1 − confidence)·proposal_confidence; a judge preferring the original pulls it towards 0. Never above
    1 − confidence, so a confidently good row is never replaced. ``proposal_confidence``: the combined confidence
    of the proposal's own signals; None (rows scored before it existed) leaves the factor out."""
    if judge_prob is None:
        return None
    value = min(1.0, 2.0 * judge_prob) * (1.0 - confidence)
    return value if proposal_confidence is None else value * proposal_confidence


@dataclass
class RowSignals:
    """Everything scored for one row, as stored (field names match the `scores` table)."""

    row_index: int
    logprob_mean: float
    logprob_min: float
    logprob_uncond_mean: float
    pmi: float
    eos_prob: float
    stop_prob: float
    final_number_logprob: float | None
    n_response_tokens: int
    repetition: float
    arithmetic_errors: int | None
    self_reflection: float | None  # None when the run asks no self-reflection questions (profile fast)
    consistency: float | None = None
    prompt_copy: float | None = None  # checks.prompt_copy: about 1 when the response echoes the prompt
    unclosed_brackets: int | None = None  # checks.unclosed_brackets: brackets and code fences left open (cut off)
    form_score: float | None = None  # form.FormModel.score: 0 typical of the dataset, negative when odd; None: no model
    raw_logit: float | None = None  # the combiner's logit before any calibration
    proposal_raw_logit: float | None = None  # the same for the offered proposal (its confidence, once calibrated)
    proposed_response: str | None = None
    judge_prob: float | None = None
    confidence: float = field(default=0.0)
    confidence_bsdetector: float | None = field(default=0.0)
    correction_confidence: float | None = None
