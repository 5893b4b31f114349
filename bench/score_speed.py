"""Scoring speed: rows/s, tokens/s and model FLOP utilisation for N rows of GSM8K, against a naive per-row loop.

    .venv/bin/python bench/score_speed.py --rows 32 --samples 0 2 5
    python bench/score_speed.py --device cuda --rows 256 --samples 0 5 --repeats 3 --naive-rows 32
    python bench/score_speed.py --device cuda --shape llama-8b --mode prefill score --samples 0 --rows 512

Runs the worker's code path in-process (engine.score_rows over length-sorted batches of --batch-size rows) and
prints one line per configuration and repeat, then a summary (median and range over repeats). Modes:
- `score`: the whole scoring pass (likelihood, self-reflection, k samples, proposals and judge where needed);
- `prefill`: the likelihood pass alone (response given prompt, and given an empty prompt; no generation), the
  prefill-bound part of scoring;
- `--layout packed packed-eager padded` times the likelihood pass with its sequences packed end to end in one row
  and the decoder's layers compiled (CUDA's default), packed but eager, and padded to length-sorted rectangles
  (before packing); the first timed configuration's warm-up includes the compile;
- `--naive-rows N` also times a naive loop over the first N rows: one `model.generate` per row, unbatched, with the
  same max_new_tokens (greedy, the same stop tokens). It does less work per row than `score` (one answer; no
  likelihood, reflection or samples), so the speed-up it gives is a floor.

`--shape llama-8b` (or `smollm2-135m`) builds a model of that shape with random weights from a config (nothing is
downloaded) and reuses the embedded model's tokenizer (ids < 49152, fine for timing). Random weights never emit
the end-of-turn token, so every generation runs to max_new_tokens: generation numbers of such runs are not
those of a real model, and are marked `random-weights`.

FLOPs are counted as 2 × (parameters of the decoder body) × (tokens it processed: real prompt tokens in
prefills, not padding; every row of every decode step, finished rows included, since they are computed) plus
2 × hidden × vocab × (positions the output head was applied to). Attention's own score/value products are not
counted (under 5% of the total at these lengths for the 8B shape). MFU is that over the elapsed time, over the
card's dense bf16 peak (datasheet: 989 TFLOP/s for H100/H200 SXM; `--peak-tflops` for another card). On CUDA the
bench also times an 8192³ bf16 matrix product, the practical ceiling, and prints it.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from clear_core import engine, model, prompts  # noqa: E402
from clear_core.confidence import ScoringConfig  # noqa: E402
from clear_core.engine import score_rows  # noqa: E402
from clear_core.model import (  # noqa: E402
    LoadedModel,
    continuation_logprobs,
    embedded_model_dir,
    load_model,
    model_kwargs,
    resolve_device,
    wrap_model,
)

GSM8K = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "dev" / "gsm8k_train.json"

# Decoder shapes for random-weight timing models. llama-8b is Llama-3-8B's; smollm2-135m the embedded model's.
SHAPES = {
    "llama-8b": {
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "tie_word_embeddings": False,
    },
    "smollm2-135m": {
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "vocab_size": 49152,
        "tie_word_embeddings": True,
    },
}

# Dense bf16 peaks by device name (datasheet, SXM parts), TFLOP/s.
PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "A10G": 70.0}


def gsm8k_rows(n: int, path: Path = GSM8K) -> list[dict]:
    records = json.loads(path.read_text(encoding="utf-8"))[:n]
    return [
        {
            "row_index": i,
            "prompt_messages": [{"role": "user", "content": r["instruction"]}],
            "prompt": r["instruction"],
            "response": r["output"],
        }
        for i, r in enumerate(records)
    ]


def random_model(shape: str, device: str, tokenizer_dir: Path | None) -> LoadedModel:
    """A model of a known shape with random weights, built on the device from a config (nothing downloaded)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    dev = resolve_device(device)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or embedded_model_dir())
    config = LlamaConfig(
        **SHAPES[shape],
        max_position_embeddings=8192,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    kwargs = model_kwargs(dev)
    with torch.device(dev):
        model = AutoModelForCausalLM.from_config(config, **kwargs)
    return wrap_model(f"{shape} (random weights)", model, tokenizer, dev)


class FlopCounter:
    """Counts the tokens the decoder body and the output head process, on the device (no host syncs while timing)."""

    def __init__(self, lm: LoadedModel):
        self.lm = lm
        cfg = lm.model.config
        head = lm.model.get_output_embeddings()
        embed = lm.model.get_input_embeddings()
        skip = {id(p) for p in head.parameters()} | {id(p) for p in embed.parameters()}
        self.body_params = sum(p.numel() for p in lm.model.parameters() if id(p) not in skip)
        self.head_flops_per_position = 2 * cfg.hidden_size * cfg.vocab_size
        self.body_tokens = torch.zeros((), dtype=torch.long, device=lm.device)
        self.head_positions = 0
        lm.model.base_model.register_forward_pre_hook(self._body, with_kwargs=True)
        head.register_forward_pre_hook(self._head)

    def _body(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            return
        mask = kwargs.get("attention_mask")
        if mask is not None and mask.dim() == 2:
            self.body_tokens += mask[:, -ids.shape[1] :].sum()
        else:
            self.body_tokens += ids.numel()

    def _head(self, module, args):
        self.head_positions += args[0].shape[:-1].numel()

    def reset(self) -> None:
        self.body_tokens.zero_()
        self.head_positions = 0

    def read(self) -> tuple[int, int, float]:
        """(body tokens, head positions, FLOPs) since the last reset; syncs once."""
        tokens = int(self.body_tokens.item())
        flops = 2 * self.body_params * tokens + self.head_flops_per_position * self.head_positions
        return tokens, self.head_positions, float(flops)


class PassTimer:
    """Wall time and decoder-body tokens per scoring pass (`--passes`), by wrapping the engine's pass functions.

    Passes: the likelihood pass (response given prompt and given an empty prompt), self-reflection (two prompts
    per row), k samples, the greedy proposal and the pairwise judge (both only for doubtful rows). The rest of
    score_rows (tokenising, checks, combining) is `other`. Syncs the device around each pass, so on a GPU the
    total is slower than without it.
    """

    def __init__(self, lm: LoadedModel, counter: FlopCounter):
        self.lm, self.counter = lm, counter
        self.seconds: dict[str, float] = {}
        self.tokens: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        for name, label in (
            ("_likelihood", "likelihood"),
            ("_self_reflection", "self-reflection"),
            ("_judge", "judge"),
        ):
            if hasattr(engine, name):
                setattr(engine, name, self._wrap(getattr(engine, name), lambda *a, _label=label, **k: _label))
        engine.generate = self._wrap(engine.generate, lambda *a, **k: "proposal" if k.get("greedy") else "samples")

    def _wrap(self, fn, label_of):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            label = label_of(*args, **kwargs)
            sync(self.lm)
            tokens = int(self.counter.body_tokens.item())
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                sync(self.lm)
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - started
                self.tokens[label] = self.tokens.get(label, 0) + int(self.counter.body_tokens.item()) - tokens
                self.calls[label] = self.calls.get(label, 0) + 1

        return timed

    def reset(self) -> None:
        for totals in (self.seconds, self.tokens, self.calls):
            totals.clear()

    def table(self, total_s: float, total_tokens: int) -> str:
        order = ["likelihood", "self-reflection", "samples", "proposal", "judge"]
        lines = ["| pass | seconds | share of time | body tokens | share of tokens |", "|---|---:|---:|---:|---:|"]
        for label in [o for o in order if o in self.seconds]:
            s, t = self.seconds[label], self.tokens[label]
            lines.append(f"| {label} | {s:.1f} | {s / total_s:.0%} | {t:,} | {t / max(total_tokens, 1):.0%} |")
        other = total_s - sum(self.seconds.values())
        lines.append(f"| other (tokenising, checks, combining) | {other:.1f} | {other / total_s:.0%} | 0 | 0% |")
        lines.append(f"| total | {total_s:.1f} | 100% | {total_tokens:,} | 100% |")
        return "\n".join(lines)


def sync(lm: LoadedModel) -> None:
    if lm.device.type == "cuda":
        torch.cuda.synchronize(lm.device)


def run_score(lm, rows, config: ScoringConfig) -> dict:
    scored = []
    for start in range(0, len(rows), config.batch_size):
        scored += score_rows(lm, rows[start : start + config.batch_size], config)
    return {
        "response_tokens": sum(s["n_response_tokens"] for s in scored),
        "proposals": sum(s["proposed_response"] is not None for s in scored),
    }


def run_prefill(lm, rows, config: ScoringConfig, max_batch_tokens: int | None = None) -> dict:
    """The engine's likelihood pass: response | prompt and response | empty prompt, all rows in one call."""
    prefixes = [lm.encode_prompt(r["prompt_messages"])[-config.max_prompt_tokens :] for r in rows]
    responses = [lm.encode_text(r["response"])[: config.max_response_tokens] for r in rows]
    uncond = lm.encode_prompt(prompts.UNCONDITIONAL)
    continuation_logprobs(lm, prefixes + [uncond] * len(rows), responses + responses, max_batch_tokens)
    return {"response_tokens": sum(len(r) for r in responses), "proposals": 0}


def use_layout(layout: str) -> None:
    """The likelihood pass for what follows: `packed` (sequences end to end, decoder layers compiled: CUDA's
    default), `packed-eager` (the same without torch.compile), `padded` (length-sorted rectangles, eager: before
    packing), or `default` (what the engine picks for the device)."""
    packing, compiling = {
        "packed": (True, True),
        "packed-eager": (True, False),
        "padded": (False, False),
        "default": (_DEFAULTS[0], _DEFAULTS[1]),
    }[layout]
    model.packing_available = packing if callable(packing) else lambda lm: packing
    model.compiling_available = compiling if callable(compiling) else lambda lm: compiling


_DEFAULTS = (model.packing_available, model.compiling_available)


@torch.inference_mode()
def run_naive(lm, rows, config: ScoringConfig) -> dict:
    """One greedy `model.generate` per row, unbatched: what scoring looks like without any of the batching."""
    stop = sorted({lm.end_token_id, lm.tokenizer.eos_token_id} - {None})
    new_tokens = 0
    for r in rows:
        ids = torch.tensor([lm.encode_prompt(r["prompt_messages"])[-config.max_prompt_tokens :]], device=lm.device)
        out = lm.model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=config.max_new_tokens,
            do_sample=False,
            eos_token_id=stop,
            pad_token_id=lm.tokenizer.pad_token_id,
        )
        new_tokens += out.shape[1] - ids.shape[1]
    return {"response_tokens": 0, "proposals": 0, "generated_tokens": new_tokens}


def matmul_tflops(device: torch.device, n: int = 8192, repeats: int = 10) -> float:
    """Achieved bf16 TFLOP/s of an n³ matrix product on random data: the practical ceiling of this card."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        a @ b
    end.record()
    torch.cuda.synchronize(device)
    return 2 * n**3 * repeats / (start.elapsed_time(end) / 1000) / 1e12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--samples", type=int, nargs="+", default=[0, 5], help="k values to time (mode score)")
    parser.add_argument("--model", default=None, help="a model id or directory (default: the embedded model)")
    parser.add_argument("--shape", choices=sorted(SHAPES), default=None, help="random weights of this shape instead")
    parser.add_argument("--tokenizer", type=Path, default=None, help="tokenizer directory for --shape")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--mode", nargs="+", choices=["score", "prefill"], default=["score"])
    parser.add_argument("--max-new-tokens", type=int, default=ScoringConfig.max_new_tokens)
    parser.add_argument("--batch-size", type=int, default=None, help="rows per score_rows call (CPU 8, CUDA 256)")
    parser.add_argument("--no-propose", action="store_true")
    parser.add_argument(
        "--profile",
        nargs="+",
        default=None,
        help="scoring profiles to time instead of --samples (mode score): fast, paper, or auto (this machine's pick)",
    )
    parser.add_argument("--passes", action="store_true", help="also print each pass's share of time and tokens")
    parser.add_argument(
        "--warmup", type=int, default=None, help="rows scored before timing (mode score; default 64 on CUDA, 0 on CPU)"
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--naive-rows", type=int, default=0, help="also time a per-row generate loop on N rows")
    parser.add_argument(
        "--prefill-batch-tokens", type=int, nargs="+", default=[0], help="mode prefill: token budgets (0: default)"
    )
    parser.add_argument(
        "--layout",
        nargs="+",
        choices=["default", "packed", "packed-eager", "padded"],
        default=["default"],
        help="the likelihood pass's layout(s) to time: sequences packed end to end, or padded batches",
    )
    parser.add_argument("--data", type=Path, default=GSM8K, help="GSM8K in Alpaca JSON")
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--json", type=Path, default=None, help="append one JSON record per timing to this file")
    args = parser.parse_args()

    started = time.time()
    if args.shape:
        lm = random_model(args.shape, args.device, args.tokenizer)
    else:
        lm = load_model(args.model, args.device)
    sync(lm)
    device_name = torch.cuda.get_device_name(lm.device) if lm.device.type == "cuda" else "cpu"
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in device_name), None)
    print(
        f"model {lm.name} on {lm.device} ({device_name}, torch {torch.__version__}, "
        f"{next(lm.model.parameters()).dtype}, attention {lm.model.config._attn_implementation}), "
        f"loaded in {time.time() - started:.1f} s"
    )
    if lm.device.type == "cuda":
        print(f"bf16 8192^3 matmul: {matmul_tflops(lm.device):.0f} TFLOP/s (datasheet peak used for MFU: {peak})")
    counter = FlopCounter(lm)
    print(f"decoder body parameters: {counter.body_params / 1e6:.1f} M")
    rows = sorted(gsm8k_rows(args.rows, args.data), key=lambda r: len(r["prompt"]) + len(r["response"]))
    batch_size = args.batch_size or (256 if lm.device.type == "cuda" else ScoringConfig.batch_size)
    random_weights = "random weights" in lm.name

    # (mode, k, token budget of the prefill pass, rows, scoring profile or None, layout)
    plan: list[tuple[str, int, int, list[dict], str | None, str]] = []
    for layout in args.layout:
        for mode in args.mode:
            if mode == "score" and args.profile:
                plan += [("score", 0, 0, rows, name, layout) for name in args.profile]
            elif mode == "score":
                plan += [("score", k, 0, rows, None, layout) for k in args.samples]
            else:
                plan += [("prefill", 0, t, rows, None, layout) for t in args.prefill_batch_tokens]
    if args.naive_rows:
        naive_rows = rows[:: max(1, len(rows) // args.naive_rows)][: args.naive_rows]
        plan.append(("naive", 0, 0, naive_rows, None, "default"))
    passes = PassTimer(lm, counter) if args.passes else None
    warmup = args.warmup if args.warmup is not None else (64 if lm.device.type == "cuda" else 0)
    records = []
    for mode, k, budget, timed_rows, profile, layout in plan:
        use_layout(layout)
        config = ScoringConfig(
            samples=k, max_new_tokens=args.max_new_tokens, propose=not args.no_propose, batch_size=batch_size
        )
        if profile is not None:
            from clear_core import profiles  # here, so this bench still times trees from before profiles existed

            chosen = profiles.resolve(profile, device=str(lm.device.type), model=args.model)
            config = dataclasses.replace(
                chosen.config, max_new_tokens=args.max_new_tokens, propose=not args.no_propose, batch_size=batch_size
            )
            k = config.samples
            print(f"profile {profile}: {chosen.describe()}")
        if mode == "prefill":
            run = functools.partial(run_prefill, max_batch_tokens=budget or None)
        else:
            run = {"score": run_score, "naive": run_naive}[mode]
        # warm-up (kernel choice, cuBLAS handles, the allocator's pool): the whole pass, but one row for the naive
        # loop and 64 rows for full scoring on CUDA (none on the CPU, which has no kernels to choose), which are slow
        first = {"prefill": len(timed_rows), "naive": 1, "score": warmup}[mode]
        if first:
            started = time.perf_counter()
            run(lm, timed_rows[:first], config)
            sync(lm)
            print(f"{mode} layout={layout}: warm-up on {first} rows took {time.perf_counter() - started:.1f} s")
        for repeat in range(args.repeats):
            sync(lm)
            counter.reset()
            if passes:
                passes.reset()
            started = time.perf_counter()
            info = run(lm, timed_rows, config)
            sync(lm)
            elapsed = time.perf_counter() - started
            tokens, head_positions, flops = counter.read()
            record = {
                "device": device_name,
                "torch": torch.__version__,
                "model": lm.name,
                "mode": mode,
                "profile": profile,
                "reflection": getattr(config, "self_reflection", True),
                "samples": k,
                "prefill_batch_tokens": budget or None,
                "layout": layout,
                "propose": config.propose,
                "rows": len(timed_rows),
                "batch_size": batch_size,
                "max_new_tokens": config.max_new_tokens,
                "repeat": repeat,
                "seconds": elapsed,
                "rows_per_s": len(timed_rows) / elapsed,
                "tokens_per_s": tokens / elapsed,
                "body_tokens": tokens,
                "head_positions": head_positions,
                "tflops": flops / elapsed / 1e12,
                "mfu": flops / elapsed / 1e12 / peak if peak else None,
                "random_weights": random_weights,
                **info,
            }
            records.append(record)
            mfu = f"{record['mfu']:.1%}" if peak else "n/a"
            if passes and mode == "score":
                record["passes"] = {
                    label: {"seconds": passes.seconds[label], "tokens": passes.tokens[label]}
                    for label in passes.seconds
                }
                print(passes.table(elapsed, tokens))
            print(
                f"{mode}{f' profile={profile}' if profile else ''} k={k} reflection={record['reflection']} "
                f"tokens={budget or 'default'} layout={layout} "
                f"propose={config.propose} rows={len(timed_rows)} "
                f"repeat={repeat} time={elapsed:.2f}s "
                f"rows/s={record['rows_per_s']:.2f} tokens/s={record['tokens_per_s']:.0f} "
                f"TFLOP/s={record['tflops']:.1f} MFU={mfu} proposals={info['proposals']}"
                + (" random-weights" if random_weights else ""),
                flush=True,
            )
            if args.json:
                with args.json.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")
    summarize(records)


def summarize(records: list[dict]) -> None:
    """Median and range over repeats per configuration, and the speed-up over the naive loop."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        key = (r["mode"], r["samples"], r["prefill_batch_tokens"], r.get("profile"), r["layout"])
        groups.setdefault(key, []).append(r)
    naive = groups.get(("naive", 0, None, None, "default"))
    naive_rate = statistics.median(r["rows_per_s"] for r in naive) if naive else None
    print("\nsummary (median [min-max] over repeats)")
    for (mode, k, budget, profile, layout), rs in groups.items():
        line = (
            f"{mode:8s}{f' profile={profile}' if profile else ''} k={k}{f' tokens={budget}' if budget else ''} "
            f"layout={layout} "
            f"rows={rs[0]['rows']}: "
            f"rows/s {_span(rs, 'rows_per_s', '{:.2f}')}, "
            f"tokens/s {_span(rs, 'tokens_per_s', '{:.0f}')}, MFU {_span(rs, 'mfu', '{:.1%}')}"
        )
        if naive_rate and mode != "naive":
            line += f", x{statistics.median(r['rows_per_s'] for r in rs) / naive_rate:.1f} the naive loop's rows/s"
        print(line)


def _span(records: list[dict], key: str, fmt: str) -> str:
    values = [r[key] for r in records if r[key] is not None]
    if not values:
        return "n/a"
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


if __name__ == "__main__":
    main()
