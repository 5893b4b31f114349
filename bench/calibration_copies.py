"""How many corrupted copies a run's own calibration needs, and which fit of them reads best as P(good).

    .venv/bin/python bench/calibration_copies.py --dataset gsm8k --part design --seed 0 --extra 192

Scores one dataset as bench/transfer.py does (its rows, 30% noisy over all eight kinds, and the run's own
copies, runs.CALIBRATION_COPIES), then `--extra` more corrupted copies of the same rows (classic kinds in turn, as
runs.py makes them) as a second file. The copies' likelihood signals do not depend on the rest of the dataset;
their text signals (form score, prompt copy) are recomputed with the dataset's own form model, so the pooled copies
are what a run with that many copies would have scored.

Then, for each fit in FITS and each number of copies, `--draws` random subsets of the copies are fitted and the
calibrated confidence of the dataset's rows is compared with which rows are really noisy: ECE (10 bins), precision
and recall of filtering at γ = 0.5, and the estimated share of bad rows (true: 0.30). Two references: the Platt
map fitted on the true labels (the best a two-parameter map can read on these rows) and the sampling floor (the
ECE of a perfectly calibrated confidence on this many rows).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from quality import markdown  # noqa: E402
from transfer import (  # noqa: E402
    GAMMA,
    build_rows,
    calibration_row,
    median_and_range,
    platt_on_labels,
    score,
    stored,
    with_text_signals,
)

from clear_core import calibration, metrics, noise  # noqa: E402
from clear_core.confidence import load_combiner, raw_logit  # noqa: E402
from clear_core.form import FormModel  # noqa: E402
from clear_core.store import Store  # noqa: E402

RESULTS = REPO / "bench" / "results"


def extra_copies(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """`n` corrupted copies of the frame's rows (noisy ones included, as a run's sample includes them), the classic
    kinds in turn, as runs._calibration_rows makes them."""
    context = noise.NoiseContext(list(frame["prompt"]), list(frame["response"]))
    order = random.Random(f"extra:{seed}").sample(range(len(frame)), len(frame))
    out = []
    for j in range(n):
        i = order[j % len(order)]
        kind = noise.CLASSIC_KINDS[j % len(noise.CLASSIC_KINDS)]
        row = {"prompt": frame["prompt"].iloc[i], "response": frame["response"].iloc[i]}
        rng = random.Random(f"extra:{seed}:{j}")
        text, used = noise.corrupt(row, kind, rng, context.for_row(i), noise.CLASSIC_KINDS)
        out.append({"prompt": row["prompt"], "response": text, "kind": used})
    return pd.DataFrame(out)


def copy_records(db: Path, copies: pd.DataFrame) -> list[dict]:
    """The extra copies' stored signals, in the order they were written."""
    with Store(db) as store:
        run_id = store.latest_run(int(store.list_datasets()["dataset_id"].iloc[0]))["run_id"]
        scores = store.scores(run_id).set_index("row_index").sort_index()
    records = scores.reset_index().to_dict("records")
    return [{**r, "prompt": p, "response": t} for r, p, t in zip(records, copies["prompt"], copies["response"])]


def sampling_floor(confidence: np.ndarray, draws: int = 500) -> float:
    """Median ECE of labels drawn from `confidence` itself: what a perfectly calibrated map shows on this many rows."""
    rng = np.random.default_rng(0)
    labels = (rng.random(len(confidence)) < confidence for _ in range(draws))
    return float(np.median([metrics.expected_calibration_error(confidence, good) for good in labels]))


FITS = {"mixture (shipped)": calibration.fit_synthetic}


def evaluate(frame, logits, copy_logits, sizes, draws) -> pd.DataFrame:
    """Per fit and number of copies: median [10th-90th percentile] of ECE, precision, recall and share over draws."""
    combiner = load_combiner()
    shipped = calibration.shipped(combiner.platt_a, combiner.platt_b)
    bad = frame["is_noisy"].to_numpy()
    rows = {}
    rows["shipped map"] = {k: f"{v:.3f}" for k, v in calibration_row(frame, shipped.confidence(logits)).items()}
    oracle = platt_on_labels(logits, ~bad)
    rows["Platt on true labels"] = {
        **{k: f"{v:.3f}" for k, v in calibration_row(frame, oracle.confidence(logits)).items()},
        "sampling floor": f"{sampling_floor(oracle.confidence(logits)):.3f}",
    }
    rng = np.random.default_rng(1)
    for name, fit in FITS.items():
        for n in sizes:
            results = []
            for _ in range(draws if n < len(copy_logits) else 1):
                pick = rng.choice(len(copy_logits), size=n, replace=False)
                cal = fit(logits, copy_logits[pick], shipped)
                row = calibration_row(frame, cal.confidence(logits))
                row["share"] = cal.noise_share if cal.noise_share is not None else float("nan")
                results.append(row)
            table = pd.DataFrame(results)
            rows[f"{name}, {n} copies"] = median_and_range(table, ("ECE", "precision@0.5", "recall@0.5", "share"))
    return pd.DataFrame(rows).T.fillna("")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["gsm8k", "self_instruct", "codegen"], required=True)
    parser.add_argument("--part", choices=["design", "untouched"], default="design")
    parser.add_argument("--rows", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh", action="store_true", help="leave out every row a design seed drew")
    parser.add_argument("--extra", type=int, default=192, help="corrupted copies scored beside the run's own")
    parser.add_argument("--sizes", default="32,64,128,224")
    parser.add_argument("--draws", type=int, default=40)
    args = parser.parse_args()
    tag = f"{args.dataset}-s{args.seed}-{args.part}{'-fresh' if args.fresh else ''}-{args.rows}"
    db = RESULTS / f"transfer-{tag}.duckdb"
    extra_db = RESULTS / f"copies-{tag}-{args.extra}.duckdb"
    frame = build_rows(args.dataset, args.rows, args.seed, args.part, args.fresh)
    copies = extra_copies(frame, args.extra, args.seed)
    if not db.exists():
        print(f"scored the rows in {score(frame, db):.0f} s", flush=True)
    if not extra_db.exists():
        print(f"scored {len(copies)} extra copies in {score(copies, extra_db):.0f} s", flush=True)
    scores, own_copies, _ = stored(db)
    form = FormModel.fit(list(frame["response"]))
    records = with_text_signals(scores.reset_index().to_dict("records"), frame["prompt"], frame["response"], form)
    pooled = own_copies + copy_records(extra_db, copies)
    pooled = with_text_signals(pooled, [c["prompt"] for c in pooled], [c["response"] for c in pooled], form)
    combiner = load_combiner()
    logits = np.array([raw_logit(r, combiner) for r in records])
    copy_logits = np.array([raw_logit(r, combiner) for r in pooled])
    sizes = [min(int(s), len(copy_logits)) for s in args.sizes.split(",")]
    table = evaluate(frame, logits, copy_logits, sizes, args.draws)
    text = (
        f"# calibration copies: {tag}\n\n{len(frame)} rows, {int(frame['is_noisy'].sum())} noisy; "
        f"{len(copy_logits)} corrupted copies scored ({len(own_copies)} the run's own); γ = {GAMMA}\n\n"
        + markdown(table)
    )
    print(text)
    (RESULTS / f"calibration-copies-{tag}.md").write_text(text + "\n", encoding="utf-8")
    np.savez(RESULTS / f"calibration-copies-{tag}.npz", logits=logits, copy_logits=copy_logits, bad=frame["is_noisy"])


if __name__ == "__main__":
    main()
