"""Auto-Correct on noisy dev rows: today's proposals ("before") against checked, continued, ranked ones ("after").

    flock /tmp/model.lock .venv/bin/python bench/autocorrect.py score --seed 0 --rows 18   # one part: minutes
    .venv/bin/python bench/autocorrect.py report                                           # tables, no model

`score` draws real dev rows (a third each from GSM8K, Self-Instruct and GPTeacher codegen; never holdout/), corrupts
`--fraction` of them with every recipe of clear_core.noise, and scores them in this process with the embedded model
(engine.score_batches, `ScoringConfig(samples=0, self_reflection=False, propose=True)`, the run's form model fitted on
the rows as a run fits it). The same rows then get the proposals of before issue 8 (`legacy_propose`: greedy
rewrite, judge, min(1, 2·judge)·(1 − confidence)) on the same signals, reusing the new engine's rewrites where it
made one. Each row's signals and both proposals go to `--cache` as JSON Lines, so a seed can be scored in parts
(`--part`, `--parts`) and reported without the model.

`report` prints, for each way of offering, on noisy rows: how many proposals are offered (correction confidence >
η = clear.DEFAULT_ETA) and the share of them closer to the clean original than the noisy response was
(metrics.closer_to_clean, word-level); on clean rows: how many are offered. Per noise kind and per seed too.

Design data: seeds 0-2, where codegen rows with source_index % 4 == 3 are never drawn. Seed 3 is the untouched
check (`score --seed 3`): codegen rows only from that held-out quarter, GSM8K and Self-Instruct rows only from those
that no design seed drew (at the design size, 6 per file), and `report` prints it in its own tables.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from clear_core import EMBEDDED_MODEL, checks, clear, engine, metrics, noise  # noqa: E402
from clear_core.confidence import (  # noqa: E402
    RowSignals,
    ScoringConfig,
    combined_confidence,
    correction_confidence,
    is_cut_off,
)
from clear_core.form import FormModel  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from quality import DESIGN_SEEDS  # noqa: E402

DEV = REPO.parent / "shared" / "data" / "dev"
SOURCES = {
    "gsm8k": DEV / "gsm8k_train.json",
    "self_instruct": DEV / "self_instruct_seed_tasks.jsonl",
    "codegen": DEV / "gpteacher_codegen.json",
}
UNTOUCHED_SEED = 3
DESIGN_PER_SOURCE = 6  # rows each design seed drew from each file (score --rows 18)
CONFIG = ScoringConfig(samples=0, self_reflection=False, propose=True)
PROPOSAL_FIELDS = ("proposed_response", "judge_prob", "correction_confidence")


def design_rows(path: Path, n: int, seed: int, source: str) -> list[dict]:
    """n rows of one dev file drawn with `seed`; codegen rows with source_index % 4 == 3 are held out."""
    rows = noise.load_dev_rows(path)
    if source == "codegen":
        rows = [r for r in rows if r["source_index"] % 4 != 3]
    picked = sorted(random.Random(f"{seed}:{source}").sample(range(len(rows)), n))
    return [dict(rows[i], source=source) for i in picked]


def untouched_rows(path: Path, n: int, source: str) -> list[dict]:
    """n rows of one dev file that no design choice saw: the held-out codegen quarter, or (GSM8K, Self-Instruct)
    the rows no design seed drew."""
    if source == "codegen":
        rows = [r for r in noise.load_dev_rows(path) if r["source_index"] % 4 == 3]
    else:
        seen = {r["source_index"] for s in DESIGN_SEEDS for r in design_rows(path, DESIGN_PER_SOURCE, s, source)}
        rows = [r for r in noise.load_dev_rows(path) if r["source_index"] not in seen]
    picked = sorted(random.Random(f"{UNTOUCHED_SEED}:{source}").sample(range(len(rows)), n))
    return [dict(rows[i], source=source) for i in picked]


def build_rows(n: int, fraction: float, seed: int) -> list[dict]:
    """n rows (a third from each dev file; seed 3: untouched ones) with `fraction` corrupted; each keeps its clean
    original."""
    share = [n // 3 + (k < n % 3) for k in range(3)]
    rows = [
        r
        for (source, path), m in zip(SOURCES.items(), share)
        for r in (untouched_rows(path, m, source) if seed == UNTOUCHED_SEED else design_rows(path, m, seed, source))
    ]
    frame = noise.inject_noise(rows, fraction=fraction, seed=seed)
    return [
        {**f, "source": r["source"], "source_index": r["source_index"], "seed": seed}
        for r, f in zip(rows, frame.to_dict("records"))
    ]


def legacy_propose(lm, rows, prefixes, scored: list[RowSignals], config: ScoringConfig, known: dict) -> None:
    """engine._propose as it was before issue 8: the greedy rewrite, judged, for every doubtful row. ``known``: row
    index -> a rewrite the new engine already generated from the same prompt (greedy, the same cap), reused instead
    of generating it again (the CPU is shared; only rows the new engine continued are generated here)."""
    todo = [i for i, s in enumerate(scored) if s.confidence < config.propose_below]
    if not todo:
        return
    missing = [i for i in todo if rows[i]["row_index"] not in known]
    fresh = engine.generate(
        lm,
        [prefixes[i] for i in missing],
        samples=0,
        greedy=True,
        max_new_tokens=config.max_new_tokens,
        max_batch_size=config.batch_size,
    ).greedy
    generated = dict(zip(missing, fresh))
    greedy = [generated[i] if i in generated else known[rows[i]["row_index"]] for i in todo]
    judged = engine._judge(lm, [rows[i] for i in todo], greedy)
    for i, proposal, judge_prob in zip(todo, greedy, judged):
        scored[i].proposed_response = proposal
        scored[i].judge_prob = judge_prob
        scored[i].correction_confidence = correction_confidence(judge_prob, scored[i].confidence)


def score_part(lm, rows: list[dict], form: FormModel) -> list[dict]:
    """Score rows with the new engine and with the old proposals; one cache record per row."""
    captured: dict[int, engine.Proposal | None] = {}
    new_propose = engine._propose

    @functools.wraps(new_propose)
    def capture(lm, batch, *args, **kwargs):
        out = new_propose(lm, batch, *args, **kwargs)
        captured.update({int(r["row_index"]): p for r, p in zip(batch, out)})
        return out

    inputs = [
        {
            "row_index": r["row_index"],
            "prompt_messages": [{"role": "user", "content": r["prompt"]}],
            "prompt": r["prompt"],
            "response": r["response"],
        }
        for r in rows
    ]
    engine._propose = capture
    started = time.time()
    try:
        after = {s["row_index"]: s for batch in engine.score_batches(lm, inputs, CONFIG, form=form) for s in batch}
    finally:
        engine._propose = new_propose
    print(f"new engine: {len(rows)} rows in {time.time() - started:.0f} s", file=sys.stderr)
    # before: the same signals, the old proposals, in the same length-sorted batches
    before: dict[int, RowSignals] = {}
    extras: dict[int, dict] = {}  # row_index -> the before proposal's own confidence and checks
    ordered = sorted(inputs, key=lambda r: len(r["prompt"]) + len(r["response"]))
    for start in range(0, len(ordered), CONFIG.batch_size):
        batch = ordered[start : start + CONFIG.batch_size]
        prefixes = [lm.encode_prompt(r["prompt_messages"])[-CONFIG.max_prompt_tokens :] for r in batch]
        fields = RowSignals.__dataclass_fields__
        signals = [
            RowSignals(**{k: v for k, v in after[r["row_index"]].items() if k in fields if k not in PROPOSAL_FIELDS})
            for r in batch
        ]
        known = {k: p.text for k, p in captured.items() if p is not None and not p.continues}
        legacy_propose(lm, batch, prefixes, signals, CONFIG, known)
        texts = [s.proposed_response for s in signals]
        todo = [j for j, t in enumerate(texts) if t is not None]
        own = engine.proposal_signals(
            lm, [batch[j] for j in todo], [prefixes[j] for j in todo], [texts[j] for j in todo], CONFIG, form
        )
        for j, s in zip(todo, own):
            capped = len(lm.encode_text(texts[j])) >= CONFIG.max_new_tokens - 1
            problem = checks.proposal_problem(batch[j]["prompt"], texts[j], cut_off=capped or is_cut_off(s))
            extras[batch[j]["row_index"]] = {"confidence": combined_confidence(s), "problem": problem}
        before.update({r["row_index"]: s for r, s in zip(batch, signals)})
    records = []
    for r in rows:
        a, b, p = after[r["row_index"]], before[r["row_index"]], captured.get(r["row_index"])
        extra = extras.get(r["row_index"], {})
        records.append(
            {
                **{k: r[k] for k in ("seed", "source", "source_index", "row_index", "noise_kind", "is_noisy")},
                **{k: r[k] for k in ("prompt", "response", "clean_response")},
                "confidence": a["confidence"],
                "stop_prob": a["stop_prob"],
                "before": {
                    "text": b.proposed_response,
                    "judge_prob": b.judge_prob,
                    "correction_confidence": b.correction_confidence,
                    "proposal_confidence": extra.get("confidence"),
                    "problem": extra.get("problem"),
                },
                "after": None
                if p is None
                else {
                    "text": p.text,
                    "continues": p.continues,
                    "hit_cap": p.hit_cap,
                    "problem": p.problem,
                    "proposal_confidence": p.confidence,
                    "judge_prob": p.judge_prob,
                    "correction_confidence": a["correction_confidence"],
                    "stored_text": a["proposed_response"],
                },
            }
        )
    return records


def cmd_score(args) -> None:
    from clear_core.model import load_model

    rows = build_rows(args.rows, args.fraction, args.seed)
    form = FormModel.fit([r["response"] for r in rows])  # as a run fits it: on the dataset's own responses
    part = rows[args.part :: args.parts]
    path = args.cache / f"seed{args.seed}-part{args.part}of{args.parts}-n{args.rows}.jsonl"
    if path.exists():
        print(f"{path} exists; delete it to score again")
        return
    lm = load_model(EMBEDDED_MODEL, device="cpu")
    started = time.time()
    records = score_part(lm, part, form)
    args.cache.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    print(f"{len(records)} rows in {time.time() - started:.0f} s -> {path}")


# ---------------------------------------------------------------------------------------------------------------
# Report: pure functions of the cached records


def judge_doubt(p: dict, r: dict) -> float | None:
    return correction_confidence(p["judge_prob"], r["confidence"])


def shipped(p: dict, r: dict) -> float | None:
    return correction_confidence(p["judge_prob"], r["confidence"], p["proposal_confidence"])


# Ways of offering: (proposal kind, whether the checks apply, correction confidence from a proposal and its row)
VARIANTS = {
    "before: rewrite, min(1,2j)(1-c)": ("before", False, judge_doubt),
    "rewrite + checks, min(1,2j)(1-c)": ("before", True, judge_doubt),
    "rewrite + checks, x proposal conf": ("before", True, shipped),
    "continue/rewrite + checks, min(1,2j)(1-c)": ("after", True, judge_doubt),
    "after: continue/rewrite + checks, x proposal conf": ("after", True, shipped),
    "continue/rewrite + checks, (1-c) x proposal conf (no judge)": (
        "after",
        True,
        lambda p, r: (1 - r["confidence"]) * p["proposal_confidence"],
    ),
}


def offered(record: dict, variant: str, eta: float) -> str | None:
    """The proposal text this variant offers for the row, or None."""
    kind, checked, rule = VARIANTS[variant]
    p = record[kind]
    if p is None or p["text"] is None or (checked and p["problem"] is not None):
        return None
    if p["judge_prob"] is None:  # the engine judges only proposals that pass the checks
        return None
    value = rule(p, record)
    return p["text"] if value is not None and value > eta else None


def summary(records: list[dict], variant: str, eta: float) -> dict:
    noisy = [r for r in records if r["is_noisy"]]
    clean = [r for r in records if not r["is_noisy"]]
    offers = [(r, offered(r, variant, eta)) for r in noisy]
    helped = [metrics.closer_to_clean(r["response"], t, r["clean_response"]) for r, t in offers if t is not None]
    return {
        "noisy offered": len(helped),
        "noisy rows": len(noisy),
        "closer": sum(helped),
        "clean offered": sum(offered(r, variant, eta) is not None for r in clean),
        "clean rows": len(clean),
    }


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval of a share k/n."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _share(k: int, n: int) -> str:
    return f"{k}/{n} = {k / n:.0%}" if n else "-"


def cmd_report(args) -> None:
    records = [json.loads(line) for path in sorted(args.cache.glob("seed*.jsonl")) for line in path.open()]
    design = [r for r in records if r["seed"] in DESIGN_SEEDS]
    untouched = [r for r in records if r["seed"] == UNTOUCHED_SEED]
    for title, group in (("design rows", design), ("untouched rows", untouched)):
        if group:
            report(group, title, args.eta, args.show)


def report(records: list[dict], title: str, eta: float, show: str | None) -> None:
    seeds = sorted({r["seed"] for r in records})
    noisy = sum(r["is_noisy"] for r in records)
    print(f"# Auto-Correct at eta = {eta}: {len(records)} {title} (seeds {seeds}), {noisy} noisy\n")
    print("| variant | offered on noisy rows | closer to clean (95% CI) | per seed | offered on clean rows |")
    print("|---|---|---|---|---|")
    for variant in VARIANTS:
        s = summary(records, variant, eta)
        lo, hi = wilson(s["closer"], s["noisy offered"])
        per_seed = ", ".join(
            _share(t["closer"], t["noisy offered"])
            for t in (summary([r for r in records if r["seed"] == seed], variant, eta) for seed in seeds)
        )
        print(
            f"| {variant} | {s['noisy offered']}/{s['noisy rows']} | {_share(s['closer'], s['noisy offered'])} "
            f"({lo:.0%}-{hi:.0%}) | {per_seed} | {s['clean offered']}/{s['clean rows']} |"
        )
    kinds = sorted({r["noise_kind"] for r in records if r["is_noisy"]})
    print(f"\n## {title.capitalize()}, per noise kind (closer / offered, of the kind's rows)\n")
    shown = [v for v in VARIANTS if v.startswith(("before", "after"))]
    print("| noise kind | rows | " + " | ".join(shown) + " |")
    print("|---|---|" + "---|" * len(shown))
    for kind in kinds:
        of_kind = [r for r in records if r["noise_kind"] == kind]
        cells = []
        for variant in shown:
            s = summary(of_kind, variant, eta)
            cells.append(f"{s['closer']}/{s['noisy offered']}")
        print(f"| {kind} | {len(of_kind)} | " + " | ".join(cells) + " |")
    after = [r["after"] for r in records if r["after"] is not None]
    problems = {}
    for p in after:
        problems[p["problem"] or "passes"] = problems.get(p["problem"] or "passes", 0) + 1
    cont = sum(p["continues"] for p in after)
    print(f"\nAfter: {len(after)} proposals made ({cont} continuations); checks: {problems}\n")
    if show:
        for r in records:
            text = offered(r, show, eta)
            if text is not None:
                flag = metrics.closer_to_clean(r["response"], text, r["clean_response"]) if r["is_noisy"] else "clean"
                print(f"\n--- seed {r['seed']} row {r['row_index']} {r['noise_kind']} closer={flag}")
                print("RESPONSE:", r["response"][:300].replace("\n", " | "))
                print("PROPOSAL:", text[:300].replace("\n", " | "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/clear-autocorrect"))
    sub = parser.add_subparsers(dest="command", required=True)
    score = sub.add_parser("score", help="score one part of one seed's rows with the embedded model")
    score.add_argument("--seed", type=int, required=True, choices=(*DESIGN_SEEDS, UNTOUCHED_SEED))
    score.add_argument("--rows", type=int, default=18)
    score.add_argument("--fraction", type=float, default=0.5)
    score.add_argument("--part", type=int, default=0)
    score.add_argument("--parts", type=int, default=1)
    report = sub.add_parser("report", help="tables from the cached scores (no model)")
    report.add_argument("--eta", type=float, default=clear.DEFAULT_ETA)
    report.add_argument("--show", default=None, help="print the proposals this variant offers")
    args = parser.parse_args()
    cmd_score(args) if args.command == "score" else cmd_report(args)


if __name__ == "__main__":
    main()
