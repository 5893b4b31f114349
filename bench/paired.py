"""What the embedded model can tell apart at all: each corrupted response against its own clean original.

    .venv/bin/python bench/paired.py                         # three dev datasets, design seeds 0-2, 160 rows each
    .venv/bin/python bench/paired.py --dataset self_instruct --seed 0

Detection ranks a noisy row against the clean rows of *other* prompts. Where it fails, is the model blind to the
corruption, or does it lack a yardstick? This script asks the model about both versions of the same row:

- **paired**: the share of noisy rows whose clean original the model finds more likely, by total log-probability,
  by mean log-probability per token, and by PMI (against the empty prompt). Near 0.5 the model cannot tell the two
  apart; near 1 it can, when it has the original to compare with. A detector never has it.
- **unpaired**: the AUROC (that kind's noisy rows against all clean rows; mean over seeds) of token-level statistics
  a detector could read without the original: the least likely token (the combiner's `logprob_min`), the largest
  gap between the model's favourite token and the actual one where the model was sure (p ≥ 0.5: a "confident
  contradiction"), and the most surprising token measured against the row's own typical surprise.

Rows are drawn and corrupted as bench/transfer.py draws them (design part); prompts are plain (no in-context
examples) and responses are cut at 512 tokens. Writes bench/results/paired-<datasets>.md. Never reads holdout/.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from clear_core import metrics, prompts  # noqa: E402
from clear_core.model import LoadedModel, continuation_logprobs, load_model  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from quality import DESIGN_SEEDS, markdown  # noqa: E402
from transfer import FILES, build_rows  # noqa: E402

MAX_TOKENS = 512
SURE = np.log(0.5)  # the model is "sure" of its favourite token above this log-probability
SURPRISE_FLOOR = 0.5  # nats added to a row's spread of surprise, so a uniformly predictable row is not all outliers


@dataclass
class TokenView:
    """Per response token (and the end of turn after it): log p of the actual token, of the model's favourite token,
    and the entropy of the model's distribution there."""

    actual: np.ndarray
    top: np.ndarray
    entropy: np.ndarray

    @property
    def total(self) -> float:
        """log p(response and end of turn | prompt)."""
        return float(self.actual.sum())


@torch.inference_mode()
def token_view(lm: LoadedModel, prompt: str, response: str) -> TokenView:
    """One pass over the plain prompt and the response (cut at MAX_TOKENS), kept per token: the statistics below
    need the model's favourite token and its entropy, which the engine's likelihood pass does not keep."""
    prefix = lm.encode_prompt([{"role": "user", "content": prompt}])[-1024:]
    ids = prefix + lm.encode_text(response)[:MAX_TOKENS] + [lm.end_token_id]
    logits = lm.model(torch.tensor([ids], device=lm.device)).logits[0, len(prefix) - 1 : -1].float()
    logp = torch.log_softmax(logits, dim=-1)
    actual = logp.gather(1, torch.tensor(ids[len(prefix) :], device=lm.device)[:, None])[:, 0]
    entropy = -(logp.exp() * logp).sum(dim=-1)
    return TokenView(actual.cpu().numpy(), logp.max(dim=-1).values.cpu().numpy(), entropy.cpu().numpy())


def unpaired_statistics(view: TokenView) -> dict[str, float]:
    """Higher = more likely a bad response. The end-of-turn token is left out (truncation is not the question)."""
    actual, top, entropy = view.actual[:-1], view.top[:-1], view.entropy[:-1]
    if len(actual) == 0:
        actual, top, entropy = view.actual, view.top, view.entropy
    gap = top - actual
    sure = top > SURE
    surprise = -(actual + entropy)  # how much less likely the token was than the model expected at that point
    median = np.median(surprise)
    spread = 1.4826 * np.median(np.abs(surprise - median)) + SURPRISE_FLOOR
    return {
        "least likely token": float(-actual.min()),
        "confident contradiction": float(gap[sure].max()) if sure.any() else 0.0,
        "surprise vs own row": float((surprise.max() - median) / spread),
    }


def unconditional_totals(lm: LoadedModel, responses: list[str]) -> list[float]:
    """Total log-probability of each response after an empty prompt (the PMI's baseline)."""
    empty = lm.encode_prompt(prompts.UNCONDITIONAL)
    texts = [lm.encode_text(r)[:MAX_TOKENS] for r in responses]
    return [sum(c.token_logprobs) + c.end_logprob for c in continuation_logprobs(lm, [empty] * len(texts), texts)]


def measure(lm: LoadedModel, dataset: str, seed: int, rows: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(paired outcomes, one row per noisy row; unpaired statistics, one row per row) for one seed's draw."""
    frame = build_rows(dataset, rows, seed, "design")
    views = [token_view(lm, p, r) for p, r in zip(frame["prompt"], frame["response"])]
    unpaired = pd.DataFrame([unpaired_statistics(v) for v in views]).assign(
        seed=seed, kind=frame["noise_kind"].to_numpy(), noisy=frame["is_noisy"].to_numpy()
    )
    noisy = frame[frame["is_noisy"]]
    positions = np.flatnonzero(frame["is_noisy"].to_numpy())
    originals = [token_view(lm, p, r) for p, r in zip(noisy["prompt"], noisy["clean_response"])]
    plain = unconditional_totals(lm, list(noisy["response"]) + list(noisy["clean_response"]))
    n = len(noisy)
    paired = []
    for j, (i, original) in enumerate(zip(positions, originals)):
        corrupted = views[i]
        pmi_corrupted = (corrupted.total - plain[j]) / len(corrupted.actual)
        pmi_original = (original.total - plain[n + j]) / len(original.actual)
        paired.append(
            {
                "kind": noisy["noise_kind"].iloc[j],
                "total": original.total > corrupted.total,
                "per token": original.actual.mean() > corrupted.actual.mean(),
                "PMI": pmi_original > pmi_corrupted,
            }
        )
    return pd.DataFrame(paired), unpaired


def table(paired: pd.DataFrame, unpaired: pd.DataFrame) -> pd.DataFrame:
    """Per noise kind: paired shares (pooled over seeds) and unpaired AUROCs (mean over seeds)."""
    statistics = [c for c in unpaired.columns if c not in ("seed", "kind", "noisy")]
    out = {}
    for kind, pairs in paired.groupby("kind"):
        row = {"pairs": len(pairs), **{f"paired: {m}": pairs[m].mean() for m in ("total", "per token", "PMI")}}
        picked = unpaired[(unpaired["kind"] == kind) | ~unpaired["noisy"]]
        for name in statistics:
            per_seed = [metrics.auroc(-s[name].to_numpy(), s["noisy"].to_numpy()) for _, s in picked.groupby("seed")]
            row[f"unpaired AUROC: {name}"] = float(np.mean(per_seed))
        out[kind] = row
    frame = pd.DataFrame(out).T
    return frame.astype({"pairs": int})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=list(FILES), nargs="+", default=list(FILES))
    parser.add_argument("--seed", type=int, nargs="+", default=list(DESIGN_SEEDS))
    parser.add_argument("--rows", type=int, default=160)
    parser.add_argument("--model", default=None, help="HF id or local path (default: the embedded model)")
    args = parser.parse_args()
    lm = load_model(args.model)
    sections = []
    for dataset in args.dataset:
        parts = [measure(lm, dataset, seed, args.rows) for seed in args.seed]
        paired = pd.concat([p for p, _ in parts], ignore_index=True)
        unpaired = pd.concat([u for _, u in parts], ignore_index=True)
        sections.append(f"## {dataset} (seeds {', '.join(map(str, args.seed))}; {args.rows} rows each)")
        sections.append(markdown(table(paired, unpaired).round(3)))
        print("\n\n".join(sections[-2:]), flush=True)
    name = "-".join(args.dataset) + ("" if args.model is None else "-" + Path(args.model).name)
    text = (
        "# What the model can tell apart: each noisy row against its own clean original\n\n"
        "paired: share of noisy rows whose clean original the model finds more likely; unpaired: AUROC of a\n"
        "token-level statistic, noisy rows of the kind vs all clean rows (bench/paired.py says how each is read).\n\n"
    )
    (REPO / "bench" / "results" / f"paired-{name}.md").write_text(text + "\n\n".join(sections) + "\n", "utf-8")


if __name__ == "__main__":
    main()
