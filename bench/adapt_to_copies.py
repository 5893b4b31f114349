"""Would the combiner do better if each run re-weighted its signals on the dataset's own corrupted copies?

    .venv/bin/python bench/adapt_to_copies.py            # the stored runs of bench/transfer.py; about 15 s

Every run already scores corrupted copies of its own rows for its calibration (runs.CALIBRATION_COPIES). Those
copies are labelled bad for free, so a run could also learn which signals separate bad rows from good ones *on this
dataset*: a logistic regression of "is a copy" on the standardised likelihood and form signals, with the shipped
combiner's raw logit as a fixed offset, so the fit only adds corrections to it, held back by an L2 penalty λ
(the dataset's rows stand for good ones, though about 30% of them are noisy). The corrected logit is then ranked
and calibrated (calibration.fit_synthetic on the corrected copies) as a run would.

Reads only stored databases under bench/results (nothing is scored): the nine design runs (three datasets, seeds
0-2) and the two larger untouched sets. Prints per-run and per-dataset tables (detection AUROC per kind, ECE,
precision and recall at γ = 0.5) for the shipped combiner and each λ, and keeps them as
bench/results/adapt-to-copies.md. Tried at stop 25, not kept (docs/quality.md, "Where Self-Instruct's gap lies").
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from quality import markdown  # noqa: E402
from transfer import build_rows, calibration_row, detection, stored, with_text_signals  # noqa: E402

from clear_core import calibration, metrics  # noqa: E402
from clear_core.confidence import feature_vector, load_combiner, raw_logit  # noqa: E402
from clear_core.form import FormModel  # noqa: E402

RESULTS = REPO / "bench" / "results"
# (dataset, seed, part, rows, fresh): bench/transfer.py's arguments of each stored run (fast profile, 3 examples)
RUNS = [(d, s, "design", 160, False) for d in ("gsm8k", "self_instruct", "codegen") for s in (0, 1, 2)]
RUNS += [("codegen", 3, "untouched", 320, False), ("gsm8k", 4, "untouched", 300, True)]
PENALTIES = (10.0, 30.0, 100.0)
# The signals the fit may re-weight, and how each is standardised: the combiner's own means and scales where it has
# them; the completeness factor's for the stop probability; the form score in tens (its usual range is 0 to -40).
SIGNALS = ("logprob_mean", "logprob_min", "pmi", "pmi_evidence", "final_number_logprob", "log_stop_prob", "form_score")
COMBINER = load_combiner()
SCALE = {**COMBINER.content.scales, "log_stop_prob": COMBINER.complete.scales["log_stop_prob"], "form_score": 10.0}
MEAN = {**COMBINER.content.means, "log_stop_prob": COMBINER.complete.means["log_stop_prob"], "form_score": 0.0}


def tag(dataset: str, seed: int, part: str, rows: int, fresh: bool) -> str:
    return f"{dataset}-s{seed}-{part}{'-fresh' if fresh else ''}-{rows}-cx3-ac"


def standardised(records: list[dict]) -> np.ndarray:
    """Rows × SIGNALS, standardised; a signal the row lacks counts as its mean (0), as in the combiner."""
    out = np.zeros((len(records), len(SIGNALS)))
    for i, record in enumerate(records):
        features = feature_vector(record)
        for j, name in enumerate(SIGNALS):
            value = features.get(name)
            if value is not None and not math.isnan(value):
                out[i, j] = (value - MEAN[name]) / SCALE[name]
    return out


def fit_with_offset(offset: np.ndarray, x: np.ndarray, y: np.ndarray, penalty: float) -> np.ndarray:
    """Weights (last: intercept) of P(y = 1) = σ(offset + x·w + c), L2 `penalty` on w (not c); Newton steps."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    ridge = np.r_[np.full(x.shape[1], penalty), 1e-6]
    w = np.zeros(xb.shape[1])
    for _ in range(50):
        p = metrics.sigmoid(offset + xb @ w)
        step = np.linalg.solve((xb * (p * (1 - p))[:, None]).T @ xb + np.diag(ridge), xb.T @ (p - y) + ridge * w)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return w


def measures(frame: pd.DataFrame, rows: np.ndarray, copies: np.ndarray) -> dict:
    """Detection per kind, and the run's own calibration fitted on these logits (as runs.py would)."""
    fallback = calibration.shipped(COMBINER.platt_a, COMBINER.platt_b)
    own = calibration.fit_synthetic(rows, copies, fallback)
    cal = calibration_row(frame, own.confidence(rows))
    return {
        **detection(frame, rows),
        "ECE": cal["ECE"],
        "precision@0.5": cal["precision@0.5"],
        "recall@0.5": cal["recall@0.5"],
    }


def one_run(spec: tuple) -> list[dict]:
    dataset, seed, part, n, fresh = spec
    frame = build_rows(dataset, n, seed, part, fresh)
    scores, copies, _ = stored(RESULTS / f"transfer-{tag(*spec)}.duckdb")
    form = FormModel.fit(list(frame["response"]))
    rows = with_text_signals(scores.reset_index().to_dict("records"), frame["prompt"], frame["response"], form)
    copies = with_text_signals(copies, [c["prompt"] for c in copies], [c["response"] for c in copies], form)
    lo, lc = np.array([raw_logit(r) for r in rows]), np.array([raw_logit(r) for r in copies])
    xo, xc = standardised(rows), standardised(copies)
    name = f"{dataset}{'' if part == 'design' else ' untouched'}"
    out = [{"data": name, "seed": seed, "combiner": "shipped", **measures(frame, lo, lc)}]
    for penalty in PENALTIES:
        # "is a copy" = bad; the offset is the shipped logit of bad, −raw logit
        w = fit_with_offset(-np.r_[lo, lc], np.vstack([xo, xc]), np.r_[np.zeros(len(lo)), np.ones(len(lc))], penalty)
        adapted = measures(frame, lo - xo @ w[:-1], lc - xc @ w[:-1])
        out.append({"data": name, "seed": seed, "combiner": f"adapted, λ = {penalty:g}", **adapted})
    return out


def main() -> None:
    table = pd.DataFrame([row for spec in RUNS for row in one_run(spec)])
    numbers = [c for c in table.columns if c not in ("data", "seed", "combiner")]
    means = table.groupby(["data", "combiner"], sort=False)[numbers].mean().reset_index()
    text = "\n\n".join(
        [
            "# Re-weighting the signals on each run's own corrupted copies (tried at stop 25, not kept)",
            "Mean over the runs of each set (design: seeds 0-2, 160 rows each; untouched: one run of 320 code rows "
            "and one of 300 GSM8K rows). Detection AUROC per kind; ECE, precision and recall at γ = 0.5 with the "
            "run's own calibration fitted on the same logits.",
            markdown(means, index=False),
            "## Per run",
            markdown(table, index=False),
        ]
    )
    print(text)
    (RESULTS / "adapt-to-copies.md").write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
