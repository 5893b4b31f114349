"""Detection and correction quality of CLEAR on real dev rows with labelled, injected noise.

    .venv/bin/python bench/quality.py --rows 200 --profile paper

1. Samples real rows from ../shared/data/dev (half GSM8K, half Self-Instruct seed tasks) and corrupts a known
   fraction with every recipe of clear_core.noise, keeping each row's clean original.
2. Scores them through the real path: `python -m clear_core score FILE --db DB --profile P` (paper: k = 5 and
   self-reflection, as docs/quality.md was run; fast: neither).
3. Reports, per noise kind and overall: detection AUROC of every signal alone, of the stored confidence, of a
   cross-validated single logistic refit of the same signals, and of the paper-faithful BSDetector confidence;
   precision/recall of `filter` at γ; Auto-Correct rates on noisy vs clean rows at several η and how often a
   proposal is closer to the clean original than the noisy response was; calibration (ECE, reliability table).
4. `--fit` Platt-calibrates the shipped combiner on these rows and rewrites clear_core/combiner.json. Its form
   (content × completeness × checks) and weights were chosen, and its Platt map fitted, on the rows of seeds 0-2;
   the default seed 3 draws other rows (99 of its 100 GSM8K rows are new; Self-Instruct has only 175 tasks, so 88
   of its 100 recur, with other noise), a fresh check of choices made elsewhere, at least for GSM8K.

Writes bench/results/quality.md (tables), quality.html and quality.png (figure). Never reads holdout/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from clear_core import clear, metrics, noise, profiles  # noqa: E402
from clear_core.confidence import (  # noqa: E402
    COMBINER_FEATURES,
    COMBINER_PATH,
    Combiner,
    LogisticScore,
    ScoringConfig,
    combined_confidence,
    correction_confidence,
    feature_vector,
    load_combiner,
)
from clear_core.store import Store  # noqa: E402

DEV = REPO.parent / "shared" / "data" / "dev"
RESULTS = REPO / "bench" / "results"
DESIGN_SEEDS = (0, 1, 2)  # every design choice was made on these seeds' rows; seed 3 (and later ones) kept out

# Each signal oriented so that higher means "more likely a good response".
SIGNALS = {
    "consistency": lambda d: d["consistency"],
    "self_reflection": lambda d: d["self_reflection"],
    "logprob_mean": lambda d: d["logprob_mean"],
    "logprob_min": lambda d: d["logprob_min"],
    "pmi": lambda d: d["pmi"],
    "eos_prob": lambda d: d["eos_prob"],
    "stop_prob": lambda d: d["stop_prob"],
    "final_number_logprob": lambda d: d["final_number_logprob"],
    "repetition (negated)": lambda d: -d["repetition"],
    "arithmetic_errors (negated)": lambda d: -d["arithmetic_errors"],
    "unclosed_brackets (negated)": lambda d: -d["unclosed_brackets"],
}


DEV_FILES = {
    "gsm8k": "gsm8k_train.json",
    "self_instruct": "self_instruct_seed_tasks.jsonl",
    "codegen": "gpteacher_codegen.json",  # GPTeacher code generation; its quarter with source_index % 4 == 3 is
    # kept out of every design choice (issue 8) and drawn only with --part untouched
}


def build_rows(
    n: int,
    fraction: float,
    seed: int,
    datasets=("gsm8k", "self_instruct"),
    kinds=noise.CLASSIC_KINDS,
    part: str = "design",
) -> pd.DataFrame:
    """n real dev rows (an equal share from each dataset) with `fraction` of them corrupted, labelled by noise kind.
    The default is the mix docs/quality.md's first tables were measured on; issue 8 added codegen and two kinds."""
    rows: list[dict] = []
    for k, name in enumerate(datasets):
        share = n // len(datasets) + (1 if len(datasets) - k <= n % len(datasets) else 0)  # the last get the rest
        drawn = noise.load_dev_rows(DEV / DEV_FILES[name], None if name == "codegen" else share, seed)
        if name == "codegen":
            drawn = [r for r in drawn if (r["source_index"] % 4 == 3) == (part == "untouched")]
            drawn = sorted(random.Random(seed).sample(drawn, min(share, len(drawn))), key=lambda r: r["source_index"])
        rows += [dict(r, source=name) for r in drawn]
    frame = noise.inject_noise(rows, fraction=fraction, kinds=kinds, seed=seed)
    frame["source"] = [r["source"] for r in rows]
    return frame


def score(frame: pd.DataFrame, db: Path, profile: str, samples: int | None, propose: bool = True) -> float:
    """Score the noisy rows through the CLI; returns wall seconds (0 when the database already had them)."""
    data = db.with_suffix(".input.jsonl")
    records = [{"instruction": p, "input": "", "output": r} for p, r in zip(frame["prompt"], frame["response"])]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    started = time.time()
    cmd = [sys.executable, "-m", "clear_core", "score", str(data), "--db", str(db), "--profile", profile]
    cmd += ["--samples", str(samples)] if samples is not None else []
    cmd += [] if propose else ["--no-propose"]
    subprocess.run(cmd, cwd=REPO, check=True)
    return time.time() - started


def load_scores(db: Path, n: int) -> tuple[pd.DataFrame, float]:
    """The run's stored signals, and how long the run took to score (first start to last finish)."""
    with Store(db, read_only=True) as store:
        dataset_id = int(store.list_datasets()["dataset_id"].iloc[0])
        run = store.latest_run(dataset_id)
        scores = store.scores(run["run_id"]).set_index("row_index").sort_index()
    assert len(scores) == n, f"expected {n} scored rows, found {len(scores)}"
    return scores, (run["finished_at"] - run["started_at"]).total_seconds()


def run_params(db: Path) -> dict:
    """The stored settings of the run that scored the rows."""
    with Store(db, read_only=True) as store:
        return store.latest_run(int(store.list_datasets()["dataset_id"].iloc[0]))["params"]


def shipped_confidences(scores: pd.DataFrame, combiner: Combiner) -> pd.DataFrame:
    """Confidence and correction confidence recomputed from the stored signals with `combiner`, so the report
    describes the shipped combination even for rows scored before it changed (both are pure functions)."""
    out = scores.copy()
    records = scores.to_dict("records")
    out["confidence"] = [combined_confidence(r, combiner) for r in records]
    out["correction_confidence"] = [
        np.nan if pd.isna(r["judge_prob"]) else correction_confidence(r["judge_prob"], c, _proposal(r, combiner))
        for r, c in zip(records, out["confidence"])
    ]
    return out


def _proposal(record: dict, combiner: Combiner) -> float | None:
    """The proposal's own confidence under `combiner`'s Platt map (None for rows scored before it was stored)."""
    logit = record.get("proposal_raw_logit")
    if logit is None or pd.isna(logit):
        return None
    return 1.0 / (1.0 + math.exp(-(combiner.platt_a * logit + combiner.platt_b)))


def calibrate(combiner: Combiner, scores: pd.DataFrame, good: np.ndarray) -> Combiner:
    """Platt-scale the combiner so its output reads as P(good): a monotone map, so the ranking is unchanged."""
    logits = np.array([combiner.raw_logit(feature_vector(r)) for r in scores.to_dict("records")])
    a, b = metrics.platt_scale(logits, good.astype(float))
    return dataclasses.replace(combiner, platt_a=float(a), platt_b=float(b))


def features(scores: pd.DataFrame) -> np.ndarray:
    rows = [feature_vector(r) for r in scores.to_dict("records")]
    return np.array([[np.nan if r[f] is None else r[f] for f in COMBINER_FEATURES] for r in rows], dtype=float)


def fit_logistic_score(x: np.ndarray, good: np.ndarray) -> LogisticScore:
    """One logistic regression on all standardised signals (missing values at the column mean): the data-fitted
    linear alternative to the shipped two-factor prior."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a signal the profile did not compute is NaN throughout
        x = np.where(np.isnan(x), np.nan_to_num(np.nanmean(x, axis=0)), x)
    fit = metrics.fit_logistic(x, good.astype(float), l2=1.0)
    return LogisticScore(
        weights={f: float(w) for f, w in zip(COMBINER_FEATURES, fit.standardized_weights)},
        means={f: float(m) for f, m in zip(COMBINER_FEATURES, fit.mean)},
        scales={f: float(s) for f, s in zip(COMBINER_FEATURES, fit.scale)},
        bias=float(fit.standardized_bias),
    )


def cross_validated(x: np.ndarray, good: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold combined confidences: each row is scored by a combiner fitted without it."""
    order = np.random.default_rng(seed).permutation(len(good))
    out = np.zeros(len(good))
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        score = fit_logistic_score(x[train], good[train])
        out[test] = [score(dict(zip(COMBINER_FEATURES, row))) for row in x[test]]
    return out


def detection_table(frame: pd.DataFrame, columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """AUROC of each score for detecting noisy rows: overall and per noise kind (that kind vs all clean rows)."""
    clean = ~frame["is_noisy"].to_numpy()
    kinds = [k for k in noise.NOISE_KINDS if (frame["noise_kind"] == k).any()]
    table = {}
    for name, values in columns.items():
        values = np.asarray(values, dtype=float)
        if np.isnan(values).all():
            continue  # a signal this run's profile did not compute
        values = np.nan_to_num(values, nan=np.nanmean(values))
        row = {"overall": metrics.auroc(values, frame["is_noisy"].to_numpy())}
        for kind in kinds:
            mask = clean | (frame["noise_kind"] == kind).to_numpy()
            row[kind] = metrics.auroc(values[mask], frame["is_noisy"].to_numpy()[mask])
        table[name] = row
    return pd.DataFrame(table).T


def correction_table(frame: pd.DataFrame, scores: pd.DataFrame, confidence: np.ndarray, eta: float) -> pd.DataFrame:
    """Auto-Correct at η: how often a correction is proposed on noisy vs clean rows, and whether it helps."""
    proposed = scores["proposed_response"].to_numpy()
    correction = scores["correction_confidence"].to_numpy(dtype=float)
    corrected = np.array([c > eta if not math.isnan(c) else False for c in correction])
    rows = []
    for mask in [frame["is_noisy"].to_numpy(), ~frame["is_noisy"].to_numpy()]:
        helped = [
            metrics.closer_to_clean(noisy, prop, clean)
            for noisy, prop, clean, m, c in zip(frame["response"], proposed, frame["clean_response"], mask, corrected)
            if m and c
        ]
        rows.append(
            {
                "rows": int(mask.sum()),
                "proposal generated": float(np.mean([isinstance(p, str) for p, m in zip(proposed, mask) if m])),
                f"correct at eta={eta:.2f}": float(corrected[mask].mean()),
                "closer to clean original": float(np.mean(helped)) if helped else float("nan"),
            }
        )
    return pd.DataFrame(rows, index=["noisy rows", "clean rows"])


def eta_table(frame: pd.DataFrame, scores: pd.DataFrame, etas) -> pd.DataFrame:
    """Auto-Correct at several η: share of noisy and of clean rows corrected, and how often a correction helps."""
    rows = []
    for eta in etas:
        table = correction_table(frame, scores, scores["confidence"].to_numpy(dtype=float), eta)
        rate = f"correct at eta={eta:.2f}"
        rows.append(
            {
                "eta": eta,
                "noisy rows corrected": table.loc["noisy rows", rate],
                "clean rows corrected": table.loc["clean rows", rate],
                "noisy corrections closer to clean": table.loc["noisy rows", "closer to clean original"],
            }
        )
    return pd.DataFrame(rows).set_index("eta")


def threshold_table(frame: pd.DataFrame, confidence: np.ndarray, gammas) -> pd.DataFrame:
    rows = []
    for gamma in gammas:
        flagged = confidence < gamma
        precision, recall = metrics.precision_recall(flagged, frame["is_noisy"].to_numpy())
        rows.append({"gamma": gamma, "flagged": int(flagged.sum()), "precision": precision, "recall": recall})
    return pd.DataFrame(rows).set_index("gamma")


def markdown(frame: pd.DataFrame, index: bool = True) -> str:
    """A pipe table (pandas' to_markdown needs an extra package)."""
    frame = frame.reset_index() if index else frame
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in frame.itertuples(index=False)]
    header = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


# The scores the figure compares (every signal is in the tables): the baseline, the shipped confidence, and the
# strongest single signal of each kind.
FIGURE_SCORES = ("BSDetector (paper)", "CLEAR Review confidence", "consistency", "pmi", "stop_prob")


def figure(detection: pd.DataFrame, reliability: pd.DataFrame, confidence, frame, path: Path) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1, cols=3, subplot_titles=("Detection AUROC by noise kind", "Reliability", "Confidence by label")
    )
    for name in [n for n in FIGURE_SCORES if n in detection.index]:  # the full table is in quality.md
        fig.add_trace(go.Bar(name=name, x=detection.columns, y=detection.loc[name]), row=1, col=1)
    fig.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "grey"}, showlegend=False),
        row=1,
        col=2,
    )
    fig.add_trace(
        go.Scatter(
            x=reliability["mean_confidence"],
            y=reliability["observed_good_rate"],
            mode="lines+markers",
            name="reliability",
        ),
        row=1,
        col=2,
    )
    for label, mask in [("clean", ~frame["is_noisy"]), ("noisy", frame["is_noisy"])]:
        fig.add_trace(go.Histogram(x=confidence[mask.to_numpy()], name=label, opacity=0.6, nbinsx=20), row=1, col=3)
    fig.update_layout(barmode="group", width=1500, height=500, title="CLEAR Review detection quality (dev rows)")
    fig.write_html(path.with_suffix(".html"))
    _png(path.with_suffix(".html"), path.with_suffix(".png"))


def _png(html: Path, png: Path) -> None:
    """Screenshot the interactive figure with headless Chromium (no extra image-export dependency)."""
    try:
        from playwright.sync_api import sync_playwright

        args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[*args, "--disable-sync"])
            page = browser.new_page(viewport={"width": 1520, "height": 520})
            page.goto(html.resolve().as_uri())
            page.wait_for_timeout(1500)
            page.screenshot(path=str(png))
            browser.close()
    except Exception as exc:  # noqa: BLE001 - the HTML figure is still there
        print(f"(no PNG: {exc})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--fraction", type=float, default=0.3)
    parser.add_argument(
        "--profile", default="paper", help="scoring profile (auto, fast, paper); paper is how docs/quality.md was run"
    )
    parser.add_argument("--samples", type=int, default=None, help="k for observed consistency (default: the profile's)")
    parser.add_argument("--report", default="quality", help="file name of the tables and figure in bench/results/")
    parser.add_argument(
        "--no-propose", action="store_true", help="detection only: no proposals (Auto-Correct tables empty)"
    )
    # Seeds 0-2 drew the rows the combiner's form, weights and calibration were chosen on; seed 3 draws fresh rows
    # for the numbers reported in docs/quality.md.
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--datasets", default="gsm8k,self_instruct", help=f"comma-separated, of {', '.join(DEV_FILES)} (one file)"
    )
    parser.add_argument("--all-kinds", action="store_true", help="also issue 8's kinds (house_format, prompt_echo)")
    parser.add_argument("--part", choices=["design", "untouched"], default="design", help="codegen's rows to draw")
    parser.add_argument("--db", type=Path, default=RESULTS / "quality.duckdb")
    parser.add_argument("--fit", action="store_true", help="refit the combiner and write clear_core/combiner.json")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)

    kinds = noise.NOISE_KINDS if args.all_kinds else noise.CLASSIC_KINDS
    frame = build_rows(args.rows, args.fraction, args.seed, tuple(args.datasets.split(",")), kinds, args.part)
    score(frame, args.db, args.profile, args.samples, propose=not args.no_propose)
    scores, seconds = load_scores(args.db, len(frame))
    config = ScoringConfig.from_params(run_params(args.db))
    scores = shipped_confidences(scores, load_combiner())
    good = ~frame["is_noisy"].to_numpy()
    x = features(scores)
    cv_confidence = cross_validated(x, good, seed=args.seed)

    columns = {name: fn(scores).to_numpy(dtype=float) for name, fn in SIGNALS.items()}
    columns["BSDetector (paper)"] = scores["confidence_bsdetector"].to_numpy(dtype=float)
    columns["CLEAR Review confidence"] = scores["confidence"].to_numpy(dtype=float)
    if config.samples or config.self_reflection:
        # what the fast profile computes from the same rows: the shipped combiner without the paper's two signals
        fast = scores.assign(consistency=np.nan, self_reflection=np.nan).to_dict("records")
        columns["CLEAR Review confidence without k samples and self-reflection"] = [
            combined_confidence(r) for r in fast
        ]
    columns["logistic refit (5-fold CV)"] = cv_confidence
    detection = detection_table(frame, columns)
    stored = scores["confidence"].to_numpy(dtype=float)
    reliability = metrics.reliability_table(stored, good, bins=10)
    ece = metrics.expected_calibration_error(stored, good, bins=10)
    thresholds = threshold_table(frame, stored, [0.3, 0.4, 0.5, 0.6, 0.7])
    correction = correction_table(frame, scores, stored, clear.DEFAULT_ETA)
    etas = eta_table(frame, scores, [0.4, 0.5, 0.6, 0.7, 0.8])

    report = [
        f"# Quality benchmark: {len(frame)} dev rows, {args.fraction:.0%} noisy, profile {args.profile} "
        f"({profiles.settings_text(config)}), seed={args.seed}",
        f"Scoring time: {seconds:.0f} s ({len(frame) / seconds:.3f} rows/s) for the run that scored these rows",
        "## Detection AUROC (noisy vs clean; per kind: that kind vs all clean rows)",
        markdown(detection),
        f"## Filter at gamma (CLEAR Review confidence); ECE = {ece:.3f}",
        markdown(thresholds),
        f"## Auto-Correct at eta = {clear.DEFAULT_ETA}",
        markdown(correction),
        "## Auto-Correct by eta",
        markdown(etas),
        "## Reliability of the CLEAR Review confidence",
        markdown(reliability, index=False),
    ]
    text = "\n\n".join(line for line in report if line)
    print(text)
    (RESULTS / f"{args.report}.md").write_text(text + "\n", encoding="utf-8")
    figure(detection, reliability, stored, frame, RESULTS / args.report)

    if args.fit:
        combiner = calibrate(load_combiner(), scores, good)
        COMBINER_PATH.write_text(json.dumps(combiner.to_json(), indent=2) + "\n")
        print(f"\nWrote {COMBINER_PATH} (re-run without --fit to see the calibrated numbers)")


if __name__ == "__main__":
    main()
