"""Quality on each dev dataset on its own: detection per noise kind, and calibration fitted on the dataset's own rows.

    .venv/bin/python bench/transfer.py --dataset codegen --part untouched --rows 160 --seed 3
    .venv/bin/python bench/transfer.py --dataset self_instruct --part design --seed 0 1 2 --context-examples 3

Issue 8's benchmark. bench/quality.py mixes two datasets in one file; here each dataset is scored as its own dataset,
as a user would import it, because the form model and the calibration are per dataset:

1. Draws `--rows` rows of one dev file (gsm8k, self_instruct or codegen = GPTeacher code generation), corrupts 30%
   with all eight recipes of clear_core.noise (the six classic kinds plus house_format and prompt_echo), and scores
   them through the real path (`python -m clear_core score FILE --db DB --profile fast --no-propose`; with
   `--propose`, Auto-Correct proposals too). The run fits
   the dataset's form model and scores corrupted copies of its own rows (runs.CALIBRATION_COPIES; classic kinds
   only: the two new kinds are never seen by the calibration) to fit its calibration.
2. Reports detection AUROC per kind for the shipped combiner, and for the combiner before issue 8 (no form factor,
   no prompt-echo check) recomputed from the same stored signals; and calibration: ECE, and precision and recall
   of filtering at γ = 0.5, with the shipped dev-data map and with the run's own synthetic calibration; with
   `--propose`, how many proposals the app would offer (η = 0.7) and how many of them are closer to the clean original.
   Maps fitted on the rows' true labels show what a calibrated confidence would flag at γ = 0.5; the Thresholds
   page's refit from reviewers is simulated after the least confident 25% and 40% were decided as the labels say,
   and the run's own map is refitted on resamples of its copies, since a run's numbers are one draw of them.

`--part untouched` keeps to rows no design choice looked at: for codegen the quarter of the file with
source_index % 4 == 3 (design used the rest), for the others seed 3 draws (as docs/quality.md). Several seeds add a
table of the spread from seed to seed (per kind, a handful of noisy rows each). Never reads holdout/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from clear_core import calibration, checks, clear, metrics, noise  # noqa: E402
from clear_core.confidence import load_combiner, raw_logit  # noqa: E402
from clear_core.form import FormModel  # noqa: E402
from clear_core.store import Store  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from quality import DESIGN_SEEDS, markdown  # noqa: E402

DEV = REPO.parent / "shared" / "data" / "dev"
FILES = {
    "gsm8k": "gsm8k_train.json",
    "self_instruct": "self_instruct_seed_tasks.jsonl",
    "codegen": "gpteacher_codegen.json",
}
GAMMA = 0.5
REVIEWED_SHARES = (0.25, 0.4)  # the least confident rows reviewers decide before a lead refits the map
RESAMPLES = 100  # refits of the run's own map on its copies drawn again with replacement: how much one draw decides

DESIGN_MAX_ROWS = 200  # the most rows any design draw took from one file (bench/quality.py, seed 2)


def build_rows(dataset: str, n: int, seed: int, part: str, fresh: bool = False) -> pd.DataFrame:
    """`n` rows of one dev file, 30% corrupted with every noise kind; codegen's untouched quarter or the rest.
    `fresh`: leave out every row a design seed drew (this function's, bench/quality.py's and bench/form_context.py's
    draws of seeds 0-2 are all prefixes of one sample per seed, so its first DESIGN_MAX_ROWS rows cover them)."""
    rows = noise.load_dev_rows(DEV / FILES[dataset], None, seed)
    if dataset == "codegen":
        rows = [r for r in rows if (r["source_index"] % 4 == 3) == (part == "untouched")]
    if fresh:
        every = noise.load_dev_rows(DEV / FILES[dataset])
        drawn = {r["source_index"] for s in DESIGN_SEEDS for r in random.Random(s).sample(every, DESIGN_MAX_ROWS)}
        rows = [r for r in rows if r["source_index"] not in drawn]
    rows = random.Random(seed).sample(rows, min(n, len(rows)))
    return noise.inject_noise(rows, fraction=0.3, seed=seed)


def score(frame: pd.DataFrame, db: Path, context_examples: int = 0, propose: bool = False) -> float:
    """Score the rows through the CLI (fast profile; `context_examples` as `score --context-examples`; Auto-Correct
    proposals only when `propose`); returns wall seconds."""
    data = db.with_suffix(".input.jsonl")
    records = [{"instruction": p, "input": "", "output": r} for p, r in zip(frame["prompt"], frame["response"])]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    started = time.time()
    cmd = [sys.executable, "-m", "clear_core", "score", str(data), "--db", str(db), "--profile", "fast"]
    cmd += ["--context-examples", str(context_examples)]  # always given: the fast profile's own is 3
    cmd += [] if propose else ["--no-propose"]
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.time() - started


def stored(db: Path) -> tuple[pd.DataFrame, list[dict], dict | None]:
    """The run's scores, its corrupted copies (signals and texts) and its saved calibration."""
    with Store(db) as store:  # not read-only: a database scored by an older version upgrades itself
        dataset_id = int(store.list_datasets()["dataset_id"].iloc[0])
        run_id = store.latest_run(dataset_id)["run_id"]
        scores = store.scores(run_id).set_index("row_index").sort_index()
        copies = [
            {**json.loads(c["signals_json"]), "prompt": c["prompt"], "response": c["response"], "kind": c["kind"]}
            for c in store._df(  # the bench reads the stored signals of the copies directly
                "SELECT signals_json, prompt, response, kind FROM calibration_rows "
                "WHERE run_id = ? AND signals_json IS NOT NULL",
                [run_id],
            ).to_dict("records")
        ]
        return scores, copies, store.calibration(run_id)


def with_text_signals(records: list[dict], prompts, responses, form: FormModel) -> list[dict]:
    """Records with the text-only signals (prompt copy, form score) computed again, so the combiner variants can be
    compared on one footing whatever version of the engine scored the rows."""
    return [
        {**r, "prompt_copy": checks.prompt_copy(p, t), "form_score": form.score(t)}
        for r, p, t in zip(records, prompts, responses)
    ]


def combiners() -> dict:
    """The shipped combiner, and the one before issue 8 (no form factor, no prompt-echo check, and the PMI's weight
    all on its mean: no `pmi_evidence`)."""
    shipped = load_combiner()
    before_checks = {k: v for k, v in shipped.checks.weights.items() if k != "prompt_echo"}
    content = dict(shipped.content.weights)
    content["pmi"] += content.pop("pmi_evidence")
    before = dataclasses.replace(
        shipped,
        form=None,
        checks=dataclasses.replace(shipped.checks, weights=before_checks),
        content=dataclasses.replace(shipped.content, weights=content),
    )
    return {"before issue 8": before, "shipped": shipped}


def detection(frame: pd.DataFrame, logits: np.ndarray) -> dict:
    bad = frame["is_noisy"].to_numpy()
    out = {"overall": metrics.auroc(logits, bad)}
    for kind in noise.NOISE_KINDS:
        picked = (frame["noise_kind"] == kind).to_numpy()
        out[kind] = metrics.auroc(logits[picked | ~bad], bad[picked | ~bad]) if picked.any() else float("nan")
    return out


def calibration_row(frame: pd.DataFrame, confidence: np.ndarray) -> dict:
    bad = frame["is_noisy"].to_numpy()
    flagged = confidence < GAMMA
    hits = int((flagged & bad).sum())
    return {
        "ECE": metrics.expected_calibration_error(confidence, ~bad),
        "precision@0.5": hits / max(1, int(flagged.sum())),
        "recall@0.5": hits / max(1, int(bad.sum())),
        "flagged": int(flagged.sum()),
        "noisy": int(bad.sum()),
    }


def reviewers_refit(logits: np.ndarray, bad: np.ndarray, prior: calibration.Calibration, share: float):
    """The Thresholds page's refit (runs.refit_from_reviewers) after reviewers decided the least confident `share` of
    the rows as the truth says (removed when noisy, kept when clean), with the run's own map as the prior."""
    reviewed = np.argsort(logits, kind="stable")[: int(round(share * len(logits)))]  # a map keeps the order
    return calibration.fit_reviewed(logits[reviewed], bad[reviewed], prior, logits)


def resampled_copies(frame: pd.DataFrame, logits: np.ndarray, copy_logits: np.ndarray, fallback) -> str:
    """The run's own map refitted on RESAMPLES resamples of its copies (with replacement): median [10th-90th
    percentile] of ECE, precision and recall at γ, and how often the ECE is at most 0.05. A run draws its copies
    once, so one run's numbers are one draw from this spread."""
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(RESAMPLES):
        own = calibration.fit_synthetic(
            logits, copy_logits[rng.integers(0, len(copy_logits), len(copy_logits))], fallback
        )
        draws.append(calibration_row(frame, own.confidence(logits)))
    table = pd.DataFrame(draws)
    cells = median_and_range(table, ("ECE", "precision@0.5", "recall@0.5"))
    cells["ECE <= 0.05"] = f"{(table['ECE'] <= 0.05).mean():.0%}"
    return markdown(pd.DataFrame([cells], index=[f"own rows, {RESAMPLES} resamples of its copies"]))


def median_and_range(table: pd.DataFrame, columns) -> dict[str, str]:
    """Per column of repeated draws: "median [10th-90th percentile]", how a number that depends on a draw is shown."""
    return {k: f"{table[k].median():.3f} [{table[k].quantile(0.1):.3f}-{table[k].quantile(0.9):.3f}]" for k in columns}


def platt_on_labels(logits: np.ndarray, good: np.ndarray) -> calibration.Calibration:
    """A Platt map fitted on the rows' true labels (in-sample): the best a two-parameter map reads on these rows."""
    fit = metrics.fit_logistic(logits, good.astype(float), l2=1e-4)
    return calibration.Calibration(float(fit.weights[0]), float(fit.bias), "labels")


def labelled_maps(logits: np.ndarray, bad: np.ndarray) -> dict[str, np.ndarray]:
    """Confidences from maps fitted on these very rows' true labels (in-sample): what the filter at γ would do if the
    calibration were right. A Platt map (two parameters, as the run's own fit) and the best monotone map (isotonic,
    optimistic in-sample). Where even these flag few bad rows, the shortfall is the ranking's, not the calibration's."""
    order = np.argsort(logits, kind="stable")
    isotonic = np.empty(len(logits))
    isotonic[order] = _increasing((~bad[order]).astype(float))
    return {
        "Platt map fitted on the true labels": platt_on_labels(logits, ~bad).confidence(logits),
        "isotonic map fitted on the true labels": isotonic,
    }


def _increasing(values: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence closest to `values` in squared error (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight]
    for v in values:
        blocks.append([float(v), 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, weight = blocks.pop()
            blocks[-1] = [
                (blocks[-1][0] * blocks[-1][1] + mean * weight) / (blocks[-1][1] + weight),
                blocks[-1][1] + weight,
            ]
    return np.concatenate([np.full(int(weight), mean) for mean, weight in blocks])


def autocorrect(frame: pd.DataFrame, scores: pd.DataFrame) -> str:
    """Auto-Correct as the app shows it: a proposal is offered where the stored (calibrated) correction confidence
    exceeds η; "closer" means more like the clean original than the noisy response was (metrics.closer_to_clean).
    Also every stored proposal (it passed the checks; offered or not), a larger sample of the proposals' quality."""
    rows = frame.assign(
        proposal=scores["proposed_response"].to_numpy(),
        correction=scores["correction_confidence"].to_numpy(dtype=float),
    )
    proposals = [p if isinstance(p, str) else None for p in rows["proposal"]]  # a missing one reads back as NaN
    rows["stored"] = [p is not None for p in proposals]
    rows["offered"] = rows["stored"] & (rows["correction"] > clear.DEFAULT_ETA)
    rows["closer"] = [
        p is not None and metrics.closer_to_clean(r, p, c)
        for r, p, c in zip(rows["response"], proposals, rows["clean_response"])
    ]
    noisy, clean = rows[rows["is_noisy"]], rows[~rows["is_noisy"]]

    def share(part: pd.DataFrame, column: str) -> str:
        picked = part[part[column]]
        return f"{int(picked['closer'].sum())}/{len(picked)}" if len(picked) else "-"

    table = {
        name: {
            "rows": len(part),
            "offered: closer/offered": share(part, "offered"),
            "stored: closer/stored": share(part, "stored"),
        }
        for name, part in (("all noisy rows", noisy), *noisy.groupby("noise_kind"))
    }
    lines = [
        f"## Auto-Correct at eta = {clear.DEFAULT_ETA}",
        markdown(pd.DataFrame(table).T),
        f"Offered on clean rows: {int(clean['offered'].sum())} of {len(clean)} (stored: {int(clean['stored'].sum())}).",
    ]
    return "\n\n".join(lines)


def report(frame: pd.DataFrame, scores: pd.DataFrame, copies: list[dict], saved: dict | None) -> tuple[str, dict]:
    """The markdown report, and the shipped combiner's detection with the run's stored calibration (for spreads)."""
    form = FormModel.fit(list(frame["response"]))  # what the run fitted (from its own sample of the same rows)
    records = with_text_signals(scores.reset_index().to_dict("records"), frame["prompt"], frame["response"], form)
    copy_records = with_text_signals(copies, [c["prompt"] for c in copies], [c["response"] for c in copies], form)
    lines = [f"{len(frame)} rows, {int(frame['is_noisy'].sum())} noisy; {len(copies)} corrupted copies scored"]
    table, cal_rows, resampled = {}, {}, ""
    for name, combiner in combiners().items():
        logits = np.array([raw_logit(r, combiner) for r in records])
        table[name] = detection(frame, logits)
        shipped_map = calibration.shipped(combiner.platt_a, combiner.platt_b)
        cal_rows[f"{name}, shipped map"] = calibration_row(frame, shipped_map.confidence(logits))
        copy_logits = np.array([raw_logit(r, combiner) for r in copy_records])
        own = calibration.fit_synthetic(logits, copy_logits, shipped_map)
        cal_rows[f"{name}, own rows ({own.source}, est. bad share {own.noise_share or 0:.2f})"] = calibration_row(
            frame, own.confidence(logits)
        )
        if name == "shipped":
            resampled = resampled_copies(frame, logits, copy_logits, shipped_map)
            bad = frame["is_noisy"].to_numpy()
            for share in REVIEWED_SHARES:
                refit = reviewers_refit(logits, bad, own, share)
                label = f"{name}, own rows refit by reviewers of the lowest {share:.0%} ({refit.source})"
                cal_rows[label] = calibration_row(frame, refit.confidence(logits))
            for label, confidence in labelled_maps(logits, bad).items():
                cal_rows[f"{name}, {label} (reference)"] = calibration_row(frame, confidence)
    stored_conf = scores["confidence"].to_numpy(dtype=float)
    cal_rows["as stored by the run"] = calibration_row(frame, stored_conf)
    lines.append("## Detection AUROC (noisy vs clean; per kind: that kind vs all clean rows)")
    lines.append(markdown(pd.DataFrame(table).T.round(3)))
    lines.append(f"## Calibration and filtering at gamma = {GAMMA}")
    lines.append(markdown(pd.DataFrame(cal_rows).T.round(3)))
    lines.append(resampled)
    if saved:
        lines.append(
            f"Run's saved calibration: {saved['source']}, a = {saved['a']:.3f}, b = {saved['b']:.3f} ({saved['note']})"
        )
    if scores["proposed_response"].notna().any() or scores["judge_prob"].notna().any():
        lines.append(autocorrect(frame, scores))
    return "\n\n".join(lines), {**table["shipped"], **cal_rows["as stored by the run"]}


def spread(numbers: dict[int, dict]) -> pd.DataFrame:
    """Per measure, the mean over seeds and the range: how far one seed's per-kind AUROC can be trusted."""
    frame = pd.DataFrame(numbers).T  # one row a seed
    measures = [c for c in frame.columns if c not in ("flagged", "noisy")]
    return pd.DataFrame(
        {
            "mean": frame[measures].mean(),
            "min": frame[measures].min(),
            "max": frame[measures].max(),
            **{f"seed {s}": frame.loc[s, measures] for s in frame.index},
        }
    ).round(3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=list(FILES), required=True)
    parser.add_argument("--part", choices=["design", "untouched"], default="untouched")
    parser.add_argument("--rows", type=int, default=160)
    parser.add_argument("--seed", type=int, nargs="+", default=[3], help="one or more; several add a spread table")
    parser.add_argument("--fresh", action="store_true", help="leave out every row a design seed drew")
    parser.add_argument("--context-examples", type=int, default=0, help="as score --context-examples (tag -cxN)")
    parser.add_argument("--propose", action="store_true", help="with Auto-Correct proposals, and report them (tag -ac)")
    parser.add_argument("--db", type=Path, help="scored database, one seed only (default: bench/results/transfer-...)")
    args = parser.parse_args()
    if args.db and len(args.seed) > 1:
        parser.error("--db names one database: give one --seed with it")

    def tag(seeds: str) -> str:
        """The name of a run's database and report, e.g. gsm8k-s0-design-160-cx3-ac."""
        cx = f"-cx{args.context_examples}" if args.context_examples else ""
        fresh = "-fresh" if args.fresh else ""
        return f"{args.dataset}-s{seeds}-{args.part}{fresh}-{args.rows}{cx}{'-ac' if args.propose else ''}"

    numbers = {}
    for seed in args.seed:
        text, numbers[seed] = run(tag(str(seed)), args, seed)
        publish(tag(str(seed)), text)
    if len(args.seed) > 1:
        text = (
            f"Detection AUROC of the shipped combiner, and ECE, precision and recall at gamma = {GAMMA} with each "
            "run's stored calibration.\n\n" + markdown(spread(numbers))
        )
        seeds = tag("-".join(str(s) for s in args.seed))
        publish(seeds, text, heading=f"{seeds}: spread over seeds")


def publish(tag: str, text: str, heading: str | None = None) -> None:
    """Print a report under its heading (the tag by default) and keep it as bench/results/transfer-<tag>.md."""
    text = f"# {heading or tag}\n\n{text}"
    print(text)
    (REPO / "bench" / "results" / f"transfer-{tag}.md").write_text(text + "\n", encoding="utf-8")


def run(tag: str, args: argparse.Namespace, seed: int) -> tuple[str, dict]:
    """Score one seed's rows (unless its database exists) and report on them."""
    db = args.db or REPO / "bench" / "results" / f"transfer-{tag}.duckdb"
    frame = build_rows(args.dataset, args.rows, seed, args.part, args.fresh)
    if not db.exists():
        seconds = score(frame, db, args.context_examples, args.propose)
        print(f"scored {len(frame)} rows in {seconds:.0f} s")
    scores, copies, saved = stored(db)
    with Store(db) as store:
        texts = store.dataset_rows(int(store.list_datasets()["dataset_id"].iloc[0]))["response"].tolist()
    if len(scores) != len(frame) or texts != frame["response"].tolist():
        sys.exit(f"{db} does not hold these rows scored (other rows, or noise recipes changed since): delete it")
    return report(frame, scores, copies, saved)


if __name__ == "__main__":
    main()
