"""Scoring speed: rows/s and tokens/s for N rows of GSM8K with the embedded model (or --model).

    .venv/bin/python bench/score_speed.py --rows 32 --samples 0 2 5

Runs the worker's code path in-process (engine.score_rows over length-sorted batches) and prints one line per
configuration. Numbers depend on the machine: note the device line with them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clear_core.confidence import ScoringConfig  # noqa: E402
from clear_core.engine import score_rows  # noqa: E402
from clear_core.model import load_model  # noqa: E402

GSM8K = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "dev" / "gsm8k_train.json"


def gsm8k_rows(n: int) -> list[dict]:
    records = json.loads(GSM8K.read_text(encoding="utf-8"))[:n]
    return [
        {
            "row_index": i,
            "prompt_messages": [{"role": "user", "content": r["instruction"]}],
            "prompt": r["instruction"],
            "response": r["output"],
        }
        for i, r in enumerate(records)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--samples", type=int, nargs="+", default=[0, 5], help="k values to time")
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-new-tokens", type=int, default=ScoringConfig.max_new_tokens)
    parser.add_argument("--no-propose", action="store_true")
    args = parser.parse_args()

    started = time.time()
    lm = load_model(args.model, args.device)
    print(f"model {lm.name} on {lm.device}, loaded in {time.time() - started:.1f} s")
    rows = sorted(gsm8k_rows(args.rows), key=lambda r: len(r["prompt"]) + len(r["response"]))
    for k in args.samples:
        config = ScoringConfig(samples=k, max_new_tokens=args.max_new_tokens, propose=not args.no_propose)
        started = time.time()
        scored = []
        for start in range(0, len(rows), config.batch_size):
            scored += score_rows(lm, rows[start : start + config.batch_size], config)
        elapsed = time.time() - started
        response_tokens = sum(s["n_response_tokens"] for s in scored)
        proposals = sum(s["proposed_response"] is not None for s in scored)
        print(
            f"k={k} propose={config.propose} rows={len(rows)} time={elapsed:.1f}s "
            f"rows/s={len(rows) / elapsed:.3f} response_tokens/s={response_tokens / elapsed:.1f} "
            f"proposals={proposals}"
        )


if __name__ == "__main__":
    main()
