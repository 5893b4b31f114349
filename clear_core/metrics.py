"""Detection, correction and calibration metrics for the quality benchmark (numpy only, no sklearn).

Conventions used throughout:

* A *score* or *confidence* is oriented like the app's `confidence`: **high = the response looks good**.
* `is_bad` marks rows whose response is known to be bad (e.g. injected noise), `is_good` is its complement.
* Text helpers (`normalize_tokens`, `token_f1`, `final_number`) are also used by the consistency signal, so they
  are pure, regex-based and cheap.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "NUMBER_PATTERN",
    "LogisticFit",
    "auroc",
    "closer_to_clean",
    "expected_calibration_error",
    "final_number",
    "fit_logistic",
    "normalize_tokens",
    "platt_scale",
    "precision_recall",
    "reliability_table",
    "sigmoid",
    "text_similarity",
    "token_f1",
]


# --------------------------------------------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------------------------------------------

_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
# A number (decimal point kept inside it) or a run of letters/digits; everything else separates tokens.
_TOKEN = re.compile(r"\d+(?:\.\d+)?|[^\W_]+")
_ARTICLES = frozenset({"a", "an", "the"})
# A number as written: an optional sign (only when not glued to a word, so "COVID-19" gives 19 and "10-3" gives 3),
# comma-grouped thousands or plain digits, an optional decimal part; or a bare decimal such as ".5" (GSM8K has them).
NUMBER_PATTERN = re.compile(r"(?:(?<![\w.])-)?(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|(?<![\w.])\.\d+)")


def normalize_tokens(text: str) -> list[str]:
    """SQuAD-style tokens: lowercased, punctuation dropped, articles (a/an/the) dropped.

    Unlike SQuAD's normaliser, numbers survive intact and canonical, as in `final_number`: "1,000" -> "1000",
    "0.20" -> "0.2" (SQuAD would give "1000" but also "020", merging decimals with other numbers).
    """
    text = _THOUSANDS_COMMA.sub("", text.lower())
    return [_canonical_number(t) if t[0].isdigit() else t for t in _TOKEN.findall(text) if t not in _ARTICLES]


def token_f1(a: str, b: str) -> float:
    """Bag-of-words F1 between two texts after `normalize_tokens`; 1.0 when both are empty, 0.0 when one is."""
    ta, tb = normalize_tokens(a), normalize_tokens(b)
    if not ta or not tb:
        return float(ta == tb)
    common = sum((Counter(ta) & Counter(tb)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(ta), common / len(tb)
    return 2 * precision * recall / (precision + recall)


def _canonical_number(raw: str) -> str:
    """'1,000.50' -> '1000.5', '007' -> '7', '-0.0' -> '0': equal values get equal strings."""
    s = raw.replace(",", "")
    sign = "-" if s.startswith("-") else ""
    s = s.lstrip("-")
    whole, _, frac = s.partition(".")
    whole = whole.lstrip("0") or "0"
    frac = frac.rstrip("0")
    out = f"{whole}.{frac}" if frac else whole
    return "0" if out == "0" else sign + out


def final_number(text: str) -> str | None:
    """The last number in `text` in canonical form (commas stripped, trailing decimal zeros dropped), or None.

    GSM8K convention: the last number of a worked solution is its answer, so this compares answers across
    samples ("$1,000.00" and "1000" both give "1000"; "-3" keeps its sign unless the minus is glued to a word).
    """
    numbers = NUMBER_PATTERN.findall(text)
    return _canonical_number(numbers[-1]) if numbers else None


def text_similarity(a: str, b: str) -> float:
    """Order-aware similarity in [0, 1]: difflib's ratio over `normalize_tokens` word lists.

    Word-level (not character-level) so that one changed number counts as one changed word; `autojunk` is off so
    long responses are not compared with their frequent words silently ignored.
    """
    ta, tb = normalize_tokens(a), normalize_tokens(b)
    if not ta and not tb:
        return 1.0
    return difflib.SequenceMatcher(None, ta, tb, autojunk=False).ratio()


def closer_to_clean(noisy: str, proposed: str, clean: str) -> bool:
    """True when `proposed` is strictly more similar to `clean` than `noisy` was (by `text_similarity`).

    Measures whether an Auto-Correct proposal moved a corrupted response towards its known clean original.
    """
    return text_similarity(proposed, clean) > text_similarity(noisy, clean)


# --------------------------------------------------------------------------------------------------------------
# Detection metrics
# --------------------------------------------------------------------------------------------------------------


def _as_bool(values, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr.astype(bool)


def _as_scores(values, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN; drop or impute missing scores before computing metrics")
    return arr


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of `x`, ties sharing the mean of the ranks they span (as in Mann-Whitney U)."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    return (upper - (counts - 1) / 2.0)[inverse]


def auroc(scores, is_bad) -> float:
    """AUROC of detecting bad rows from `-scores` (LOW score = flagged as bad).

    Equals P(score of a random bad row < score of a random good row) + 0.5 * P(tie): 1.0 when every bad row
    scores below every good row, 0.5 for an uninformative score, 0.0 for a perfectly inverted one. Ties get
    average ranks. Returns nan when there are no bad rows or no good rows.
    """
    s = _as_scores(scores, "scores")
    bad = _as_bool(is_bad, "is_bad")
    if s.shape != bad.shape:
        raise ValueError(f"scores and is_bad differ in length: {s.shape[0]} vs {bad.shape[0]}")
    n_bad = int(bad.sum())
    n_good = bad.size - n_bad
    if n_bad == 0 or n_good == 0:
        return float("nan")
    ranks = _average_ranks(-s)  # rank by badness: a high rank = a low score
    u = ranks[bad].sum() - n_bad * (n_bad + 1) / 2.0
    return float(u / (n_bad * n_good))


def precision_recall(flagged, is_bad) -> tuple[float, float]:
    """(precision, recall) of `flagged` rows as detections of `is_bad` rows.

    precision = bad among flagged / flagged (nan when nothing is flagged); recall = flagged among bad / bad
    (nan when there are no bad rows).
    """
    f = _as_bool(flagged, "flagged")
    bad = _as_bool(is_bad, "is_bad")
    if f.shape != bad.shape:
        raise ValueError(f"flagged and is_bad differ in length: {f.shape[0]} vs {bad.shape[0]}")
    hits = int((f & bad).sum())
    n_flagged, n_bad = int(f.sum()), int(bad.sum())
    precision = hits / n_flagged if n_flagged else float("nan")
    recall = hits / n_bad if n_bad else float("nan")
    return precision, recall


# --------------------------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------------------------


def reliability_table(confidences, is_good, bins: int = 10) -> pd.DataFrame:
    """Reliability diagram data: equal-width confidence bins over [0, 1], one row per bin (empty bins included).

    Columns: bin (0-based), bin_lower, bin_upper, mean_confidence, observed_good_rate (nan for an empty bin),
    count. A calibrated confidence has mean_confidence close to observed_good_rate in every populated bin.
    A confidence of exactly 1.0 falls in the last bin.
    """
    c = _as_scores(confidences, "confidences")
    good = _as_bool(is_good, "is_good")
    if c.shape != good.shape:
        raise ValueError(f"confidences and is_good differ in length: {c.shape[0]} vs {good.shape[0]}")
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    if c.size and (c.min() < 0.0 or c.max() > 1.0):
        raise ValueError("confidences must lie in [0, 1]; calibrate scores (e.g. platt_scale) first")
    index = np.minimum((c * bins).astype(int), bins - 1)
    count = np.bincount(index, minlength=bins)
    conf_sum = np.bincount(index, weights=c, minlength=bins)
    good_sum = np.bincount(index, weights=good.astype(float), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / count, np.nan)
        good_rate = np.where(count > 0, good_sum / count, np.nan)
    edges = np.linspace(0.0, 1.0, bins + 1)
    return pd.DataFrame(
        {
            "bin": np.arange(bins),
            "bin_lower": edges[:-1],
            "bin_upper": edges[1:],
            "mean_confidence": mean_conf,
            "observed_good_rate": good_rate,
            "count": count,
        }
    )


def expected_calibration_error(confidences, is_good, bins: int = 10) -> float:
    """ECE: count-weighted mean |mean confidence - observed good rate| over the bins of `reliability_table`.

    0 for a perfectly calibrated confidence; nan for empty input.
    """
    table = reliability_table(confidences, is_good, bins)
    filled = table[table["count"] > 0]
    total = filled["count"].sum()
    if total == 0:
        return float("nan")
    gaps = (filled["mean_confidence"] - filled["observed_good_rate"]).abs()
    return float((gaps * filled["count"]).sum() / total)


# --------------------------------------------------------------------------------------------------------------
# Learning a combination of signals
# --------------------------------------------------------------------------------------------------------------


def sigmoid(z) -> np.ndarray:
    """Numerically stable logistic function 1 / (1 + exp(-z))."""
    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


@dataclass(frozen=True)
class LogisticFit:
    """Result of `fit_logistic`. Unpacks as `weights, bias = fit`; P(label=1) = sigmoid(X @ weights + bias).

    `weights`/`bias` act on the raw features. The model was fitted (and L2-penalised) on standardised features
    (x - mean) / scale; `standardized_weights` are the coefficients on that scale, i.e. the change in log-odds
    per standard deviation of each feature, which is what to compare when asking which signal matters most.
    """

    weights: np.ndarray
    bias: float
    standardized_weights: np.ndarray
    standardized_bias: float
    mean: np.ndarray
    scale: np.ndarray
    n_iter: int
    converged: bool

    def __iter__(self) -> Iterator:
        return iter((self.weights, self.bias))

    def predict_proba(self, features) -> np.ndarray:
        """P(label = 1) for each row of `features` (raw, unstandardised)."""
        x = np.asarray(features, dtype=float)
        if x.ndim == 1:
            x = x[:, None]
        return sigmoid(x @ self.weights + self.bias)


def _newton_logistic(
    x: np.ndarray,
    targets: np.ndarray,
    row_weight: np.ndarray,
    l2: float,
    max_iter: int,
    tol: float,
) -> tuple[np.ndarray, int, bool]:
    """Minimise weighted mean cross-entropy + l2/2 * |w|^2 (bias unpenalised) by damped Newton steps.

    `x` already has the intercept column last; `targets` may be soft labels in [0, 1]; `row_weight` has mean 1.
    Deterministic: starts from zero and uses no randomness.
    """
    n, d = x.shape
    penalty = np.full(d, l2)
    penalty[-1] = 0.0
    ridge = 1e-10  # keeps the Hessian invertible for separable data with l2 = 0

    def objective(theta: np.ndarray) -> float:
        z = x @ theta
        per_row = np.logaddexp(0.0, z) - targets * z  # stable log(1 + e^z) - t*z
        return float(np.mean(row_weight * per_row) + 0.5 * np.sum(penalty * theta**2))

    theta = np.zeros(d)
    loss = objective(theta)
    for it in range(1, max_iter + 1):
        p = sigmoid(x @ theta)
        grad = x.T @ (row_weight * (p - targets)) / n + penalty * theta
        hess = (x * (row_weight * p * (1 - p))[:, None]).T @ x / n + np.diag(penalty + ridge)
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while True:  # backtracking: a full Newton step can overshoot on nearly separable data
            candidate = theta - t * step
            new_loss = objective(candidate)
            if new_loss <= loss + 1e-12 or t < 1e-8:
                break
            t /= 2
        theta, loss = candidate, new_loss
        if np.max(np.abs(t * step)) < tol:
            return theta, it, True
    return theta, max_iter, False


def fit_logistic(
    features,
    labels,
    l2: float = 1e-2,
    max_iter: int = 100,
    tol: float = 1e-8,
    sample_weight=None,
) -> LogisticFit:
    """L2-regularised logistic regression by Newton/IRLS; returns a `LogisticFit` that unpacks to (weights, bias).

    Features are standardised internally (a constant column gets scale 1) so that `l2` penalises every signal
    equally whatever its units; the returned weights are converted back to raw-feature units and the
    standardised ones are kept on the result. Objective: mean cross-entropy + l2/2 * |standardised weights|^2.
    Deterministic. `sample_weight` (optional, non-negative) reweights rows, e.g. to balance clean and noisy rows.
    """
    x = np.asarray(features, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (rows x signals), got shape {x.shape}")
    y = np.asarray(labels, dtype=float)
    if y.shape != (x.shape[0],):
        raise ValueError(f"labels must have one value per row: {y.shape} vs {x.shape[0]} rows")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf; impute missing signals before fitting")
    if ((y < 0) | (y > 1)).any():
        raise ValueError("labels must be 0/1 (or probabilities in [0, 1])")
    if l2 < 0:
        raise ValueError(f"l2 must be non-negative, got {l2}")
    if sample_weight is None:
        row_weight = np.ones_like(y)
    else:
        row_weight = np.asarray(sample_weight, dtype=float)
        if row_weight.shape != y.shape or (row_weight < 0).any() or row_weight.sum() == 0:
            raise ValueError("sample_weight must be non-negative, not all zero, with one value per row")
        row_weight = row_weight / row_weight.mean()
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    xs = np.hstack([(x - mean) / scale, np.ones((x.shape[0], 1))])
    theta, n_iter, converged = _newton_logistic(xs, y, row_weight, l2, max_iter, tol)
    std_w, std_b = theta[:-1], float(theta[-1])
    weights = std_w / scale
    bias = std_b - float(np.sum(std_w * mean / scale))
    return LogisticFit(weights, bias, std_w, std_b, mean, scale, n_iter, converged)


def platt_scale(scores, labels, max_iter: int = 100) -> tuple[float, float]:
    """Platt scaling: (a, b) such that P(good) = sigmoid(a * score + b) for a raw score.

    Uses Platt's (1999) smoothed targets (N+ + 1)/(N+ + 2) and 1/(N- + 2) instead of hard 0/1, so a perfectly
    separating score still gives finite (a, b). a > 0 when higher scores mean good. `labels`: 1 = good.
    """
    s = _as_scores(scores, "scores")
    y = _as_bool(labels, "labels")
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length: {s.shape[0]} vs {y.shape[0]}")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("platt_scale needs both good and bad rows")
    targets = np.where(y, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    # Fit on a centred/scaled score for conditioning, then map back to raw-score units.
    mu, sd = s.mean(), s.std() or 1.0
    x = np.column_stack([(s - mu) / sd, np.ones_like(s)])
    theta, _, _ = _newton_logistic(x, targets, np.ones_like(s), 0.0, max_iter, 1e-10)
    a = theta[0] / sd
    b = theta[1] - theta[0] * mu / sd
    return float(a), float(b)
