"""Does showing the model a few of the dataset's own rows first ("learn the dataset's own form") detect noise better?

    PYTHONPATH=$PWD .venv/bin/python bench/form_context.py --datasets gsm8k codegen self_instruct --seeds 0 1 --rows 60

Issue 8's first idea, measured against the shipped scoring in one run on the same rows. Per (dataset, seed) it draws
rows exactly as bench/transfer.py does (30% noise over all eight kinds; `--part design` by default: codegen without
its held-out quarter, and never seed 3 unless `--part untouched`), then:

1. scores them as `score --profile fast --no-propose` does (engine.score_rows with the dataset's form model fitted on
   the same responses): the shipped signals and confidence;
2. takes the `--shots` most confident rows of that pass (each at most `--max-example-tokens` long; a row never sees
   itself: it gets the next most confident one instead) as a few-shot conversation, user/assistant turns, before
   each prompt, and runs the likelihood pass again: log p(response | examples, prompt) and log p(response |
   examples, empty prompt). The examples are one shared prefix whose KV cache is computed once per pass.

It then reports detection AUROC per noise kind and per dataset for the shipped confidence and for variants that use
the few-shot signals in its place (same combiner; no weight refitted), and the few-shot gain alone. Model outputs
are cached per (dataset, seed, part, rows, shots) as Parquet under `--cache` so the report can be recomputed.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from quality import markdown  # noqa: E402
from transfer import build_rows  # noqa: E402

from clear_core import engine, metrics, noise, prompts  # noqa: E402
from clear_core.confidence import Combiner, ScoringConfig, final_number_tokens, load_combiner, raw_logit  # noqa: E402
from clear_core.form import FormModel  # noqa: E402
from clear_core.model import (  # noqa: E402
    _cache_arg,
    _head_positions,
    _pad,
    _returned_cache,
    load_model,
    stop_token_ids,
)

FAST = ScoringConfig(samples=0, self_reflection=False, propose=False)


@torch.inference_mode()
def shared_prefix_logprobs(lm, seqs_prefix, seqs_cont, batch_size=8):
    """continuation_logprobs for prefixes that all begin with the same tokens: those run once, their KV cache is
    copied to each batch. Returns (token_logprobs, end_logprob, stop_logprob) per row."""
    n_shared = min(len(p) for p in seqs_prefix) - 1
    first = seqs_prefix[0]
    for i in range(n_shared):
        if any(p[i] != first[i] for p in seqs_prefix):
            n_shared = i
            break
    shared = torch.tensor([first[:n_shared]])
    base = lm.model.base_model
    head = lm.model.get_output_embeddings()
    cache_arg = _cache_arg(base)
    prefix_cache = _returned_cache(base(input_ids=shared, use_cache=True))
    stops = torch.tensor(stop_token_ids(lm.tokenizer, lm.end_token_id))
    seqs = [list(p[n_shared:]) + list(c) + [lm.end_token_id] for p, c in zip(seqs_prefix, seqs_cont)]
    out = [None] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    assert _head_positions(lm) == 0  # CPU only
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        ids, mask = _pad([seqs[i] for i in batch], lm.tokenizer.pad_token_id, left=False)
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(len(batch))
        full_mask = torch.cat([torch.ones((len(batch), n_shared), dtype=torch.long), mask], dim=1)
        positions = (n_shared + torch.arange(ids.shape[1]))[None, :].expand(len(batch), -1)
        hidden = base(
            input_ids=ids, attention_mask=full_mask, position_ids=positions, use_cache=True, **{cache_arg: cache}
        ).last_hidden_state
        for row, i in enumerate(batch):
            begin = len(seqs_prefix[i]) - n_shared
            end = len(seqs[i])
            logp = torch.log_softmax(head(hidden[row, begin - 1 : end - 1]).float(), dim=-1)
            targets = torch.tensor(seqs[i][begin:end])
            values = logp.gather(1, targets[:, None])[:, 0].tolist()
            out[i] = (values[:-1], values[-1], float(torch.logsumexp(logp[-1, stops], dim=-1)))
    return out


def signals_from(cond, uncond, numbers):
    """The likelihood signals engine._likelihood computes, from precomputed passes."""
    tokens = cond[0]
    lp = sum(tokens) / len(tokens) if tokens else cond[1]
    lp_uncond = sum(uncond[0]) / len(uncond[0]) if uncond[0] else lp
    numbers = [t for t in numbers or [] if t < len(tokens)]
    return {
        "logprob_mean": lp,
        "logprob_min": min(tokens) if tokens else cond[1],
        "logprob_uncond_mean": lp_uncond,
        "pmi": lp - lp_uncond,
        "eos_prob": math.exp(cond[1]),
        "stop_prob": math.exp(cond[2]),
        "final_number_logprob": sum(tokens[t] for t in numbers) if numbers else None,
    }


def pick_examples(lm, rows, base: pd.DataFrame, shots: int, max_tokens: int) -> list[int]:
    """Row indices of the `shots + 1` most confident rows no longer than `max_tokens` (prompt + response)."""
    ranked = base.sort_values("confidence", ascending=False).index
    picked = []
    for i in ranked:
        r = rows[i]
        if len(lm.encode_text(r["prompt"])) + len(lm.encode_text(r["response"])) <= max_tokens:
            picked.append(int(i))
        if len(picked) == shots + 1:
            break
    return picked


def few_shot(lm, rows, examples: list[int], shots: int) -> list[dict]:
    """Likelihood signals of every row with `shots` example turns before its prompt (never itself)."""
    per_row_examples = []
    for i in range(len(rows)):
        chosen = [e for e in examples if e != i][:shots]
        per_row_examples.append(chosen)
    # Rows whose example list differs (an example row itself) run in their own group.
    groups: dict[tuple, list[int]] = {}
    for i, chosen in enumerate(per_row_examples):
        groups.setdefault(tuple(chosen), []).append(i)
    results: list[dict | None] = [None] * len(rows)
    for chosen, members in groups.items():
        turns = []
        for e in chosen:
            turns += [
                {"role": "user", "content": rows[e]["prompt"]},
                {"role": "assistant", "content": rows[e]["response"]},
            ]
        cond_p = [lm.encode_prompt(turns + rows[i]["prompt_messages"]) for i in members]
        uncond_p = [lm.encode_prompt(turns + prompts.UNCONDITIONAL) for _ in members]
        enc = [lm.encode_text_with_offsets(rows[i]["response"]) for i in members]
        resp = [ids[: FAST.max_response_tokens] for ids, _ in enc]
        numbers = [final_number_tokens(rows[i]["response"], spans) for i, (_, spans) in zip(members, enc)]
        cond = shared_prefix_logprobs(lm, cond_p, resp)
        uncond = shared_prefix_logprobs(lm, uncond_p, resp)
        for j, i in enumerate(members):
            results[i] = signals_from(cond[j], uncond[j], numbers[j])
    return results


def score_one(lm, dataset, seed, part, n, shots, max_tokens, cache: Path) -> pd.DataFrame:
    path = cache / f"form-context-{dataset}-s{seed}-{part}-{n}-k{shots}.parquet"
    if path.exists():
        return pd.read_parquet(path)
    frame = build_rows(dataset, n, seed, part)
    rows = [
        {
            "row_index": i,
            "prompt": p,
            "response": r,
            "prompt_messages": [{"role": "user", "content": p}],
        }
        for i, (p, r) in enumerate(zip(frame["prompt"], frame["response"]))
    ]
    form = FormModel.fit([r["response"] for r in rows])
    t0 = time.time()
    scored = [s for batch in engine.score_batches(lm, rows, FAST, form=form) for s in batch]
    base = pd.DataFrame(scored).set_index("row_index").sort_index()
    t1 = time.time()
    examples = pick_examples(lm, rows, base, shots, max_tokens)
    fs = pd.DataFrame(few_shot(lm, rows, examples, shots)).add_prefix("fs_")
    t2 = time.time()
    out = pd.concat([base.reset_index(drop=True), fs], axis=1)
    out["dataset"], out["seed"], out["part"] = dataset, seed, part
    out["is_noisy"], out["noise_kind"] = frame["is_noisy"].to_numpy(), frame["noise_kind"].to_numpy()
    out["prompt"], out["response"] = frame["prompt"].to_numpy(), frame["response"].to_numpy()
    out["is_example"] = [i in examples[:shots] for i in range(len(rows))]
    out["seconds_base"], out["seconds_fs"] = t1 - t0, t2 - t1
    print(
        f"{dataset} seed {seed} {part}: {len(rows)} rows; shipped pass {t1 - t0:.0f} s, few-shot passes {t2 - t1:.0f}"
        f" s; examples {examples[:shots]} (noisy: {[bool(frame['is_noisy'][e]) for e in examples[:shots]]})",
        flush=True,
    )
    cache.mkdir(parents=True, exist_ok=True)
    out.to_parquet(path)
    return out


LIKELIHOOD = ["logprob_mean", "logprob_min", "logprob_uncond_mean", "pmi", "eos_prob", "stop_prob",
              "final_number_logprob"]  # fmt: skip


def standardised(df: pd.DataFrame, prefix: str, spread: bool) -> Combiner:
    """The shipped combiner with its content features centred on this dataset's own medians (and, with `spread`,
    scaled by their robust spread, 1.4826 x MAD, instead of the shipped scales)."""
    shipped = load_combiner()
    means, scales = dict(shipped.content.means), dict(shipped.content.scales)
    for name in ("logprob_mean", "logprob_min", "pmi", "final_number_logprob"):
        values = df[prefix + name].dropna().to_numpy(dtype=float)
        if len(values) < 10:
            continue
        means[name] = float(np.median(values))
        if spread:
            scales[name] = max(1e-3, 1.4826 * float(np.median(np.abs(values - np.median(values)))))
    content = dataclasses.replace(shipped.content, means=means, scales=scales)
    return dataclasses.replace(shipped, content=content)


def variant_logits(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Scores per variant (higher = more likely good), all from the shipped combiner."""
    recs = df.to_dict("records")

    def with_fs(r, keys):
        return {**r, **{k: r[f"fs_{k}"] for k in keys}}

    def nan_to_none(r):
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}

    recs = [nan_to_none(r) for r in recs]
    pmi_fs_uncond0 = [{**with_fs(r, LIKELIHOOD), "pmi": r["fs_logprob_mean"] - r["logprob_uncond_mean"]} for r in recs]
    out = {
        "shipped": np.array([raw_logit(r) for r in recs]),
        "few-shot signals (all)": np.array([raw_logit(with_fs(r, LIKELIHOOD)) for r in recs]),
        "few-shot, PMI vs zero-shot uncond": np.array([raw_logit(r) for r in pmi_fs_uncond0]),
        "few-shot content, shipped stop prob": np.array(
            [raw_logit(with_fs(r, ["logprob_mean", "logprob_min", "pmi", "final_number_logprob"])) for r in recs]
        ),
        "shipped content, few-shot stop prob": np.array([raw_logit(with_fs(r, ["stop_prob"])) for r in recs]),
    }
    for label, spread in (("median", False), ("median and spread", True)):
        for prefix, name in (("", "shipped"), ("fs_", "few-shot signals (all)")):
            sig = [with_fs(r, LIKELIHOOD) for r in recs] if prefix else recs
            combiner = standardised(df, prefix, spread)
            out[f"{name}, per-dataset {label}"] = np.array([raw_logit(r, combiner) for r in sig])
    gain = df["fs_logprob_mean"].to_numpy() - df["logprob_mean"].to_numpy()
    # the examples help a row of the house form; a row they help far less than the dataset's typical row is odd:
    # robust z of the gain, counted beyond 2 spreads below the median (as form.py counts its parts)
    spread = max(1e-3, 1.4826 * float(np.median(np.abs(gain - np.median(gain)))))
    shortfall = np.minimum(0.0, (gain - np.median(gain)) / spread + 2.0)
    for weight in (0.5, 1.0):
        factor = -np.logaddexp(0.0, -(3.0 + weight * shortfall))  # log sigma(3 + w * shortfall)
        for name in ("shipped", "few-shot signals (all)"):
            p = 1.0 / (1.0 + np.exp(-out[name]))
            q = np.clip(p * np.exp(factor), 1e-12, 1 - 1e-12)
            out[f"{name} x P(examples help), w {weight}"] = np.log(q / (1 - q))
    out["few-shot gain alone (fs lp - lp)"] = gain
    out["fs logprob_mean alone"] = df["fs_logprob_mean"].to_numpy()
    out["logprob_mean alone"] = df["logprob_mean"].to_numpy()
    out["fs pmi alone"] = df["fs_pmi"].to_numpy()
    out["pmi alone"] = df["pmi"].to_numpy()
    return out


def detection(df: pd.DataFrame, scores: np.ndarray) -> dict:
    bad = df["is_noisy"].to_numpy(dtype=bool)
    res = {"overall": metrics.auroc(scores, bad)}
    for kind in noise.NOISE_KINDS:
        picked = (df["noise_kind"] == kind).to_numpy()
        res[kind] = metrics.auroc(scores[picked | ~bad], bad[picked | ~bad]) if picked.any() else float("nan")
    return res


def report(all_rows: pd.DataFrame) -> str:
    lines = []
    per_group = []
    for (dataset, seed), df in all_rows.groupby(["dataset", "seed"], sort=True):
        for name, scores in variant_logits(df).items():
            per_group.append({"dataset": dataset, "seed": seed, "variant": name, **detection(df, scores)})
    table = pd.DataFrame(per_group)
    lines.append("## Detection AUROC per dataset and seed (noisy vs clean; per kind: that kind vs all clean rows)")
    lines.append(markdown(table.round(3).set_index(["dataset", "seed", "variant"])))
    kinds = ["overall", *noise.NOISE_KINDS]
    summary = []
    for (dataset, name), g in table.groupby(["dataset", "variant"], sort=False):
        row = {"dataset": dataset, "variant": name}
        for k in kinds:
            vals = g[k].dropna().to_numpy()
            row[k] = f"{np.median(vals):.3f} [{vals.min():.3f}-{vals.max():.3f}]" if len(vals) else "-"
        summary.append(row)
    lines.append("## Median [min-max] over seeds")
    lines.append(markdown(pd.DataFrame(summary).set_index(["dataset", "variant"])))
    pooled = []
    groups = list(all_rows.groupby(["dataset", "seed"], sort=True))
    for name in variant_logits(groups[0][1]):
        # per-group scores, each group ranked within itself: AUROC pooled over groups uses per-group ranks
        frames, scores = [], []
        for _, df in groups:
            frames.append(df)
            scores.append(variant_logits(df)[name])
        pooled.append({"variant": name, **detection(pd.concat(frames), np.concatenate(scores))})
    lines.append("## Pooled over all datasets and seeds (scores as they are, one ranking)")
    lines.append(markdown(pd.DataFrame(pooled).round(3).set_index("variant")))
    return "\n\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["gsm8k", "codegen", "self_instruct"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--part", choices=["design", "untouched"], default="design")
    parser.add_argument("--rows", type=int, default=60)
    parser.add_argument("--shots", type=int, default=3)
    parser.add_argument("--max-example-tokens", type=int, default=200)
    parser.add_argument("--cache", type=Path, default=REPO / "bench" / "results" / "form-context.raw.cache")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--report-only", action="store_true", help="only rows already cached")
    args = parser.parse_args()
    if args.part == "design" and 3 in args.seeds:
        sys.exit("seed 3 is untouched data: use --part untouched for it")
    torch.set_num_threads(2)
    lm = None if args.report_only else load_model(device="cpu")
    frames = []
    for seed in args.seeds:  # every dataset of one seed before the next seed: a stopped run still compares
        for dataset in args.datasets:
            path = args.cache / f"form-context-{dataset}-s{seed}-{args.part}-{args.rows}-k{args.shots}.parquet"
            if args.report_only and not path.exists():
                continue
            frames.append(
                score_one(lm, dataset, seed, args.part, args.rows, args.shots, args.max_example_tokens, args.cache)
            )
    text = report(pd.concat(frames, ignore_index=True))
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
