"""The CUDA path of model.py: bf16 + SDPA, batches sized from free GPU memory, no per-row host round-trips, and
signals that agree with the CPU's float32 ones within bf16 rounding. Skipped where there is no CUDA GPU (CI)."""

from __future__ import annotations

import warnings

import pytest
import torch

from clear_core.confidence import ScoringConfig
from clear_core.engine import score_rows
from clear_core.model import (
    batch_token_budget,
    bytes_per_token,
    continuation_logprobs,
    load_model,
    packing_available,
)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

_QA = [
    ("What is 12 times 7?", "12 times 7 is 84."),
    ("Name the capital of France.", "The capital of France is Paris."),
    ("A shop sells pens at $2 each. How much do 5 pens cost?", "5 pens cost 5 * 2 = $10.\nThe answer is 10."),
    ("Write one sentence about the sea.", "The sea is wide, deep and"),  # cut off mid-sentence
    ("What is 2+2?", "2+2 is 5."),
    ("Give a synonym of 'happy'.", "Glad"),
    ("Tom has 3 apples and buys 4 more. How many does he have?", "Tom has 3 + 4 = 7 apples.\nThe answer is 7."),
    ("Translate 'thank you' into Spanish.", "Gracias."),
]


def _rows():
    return [
        {"row_index": i, "prompt_messages": [{"role": "user", "content": p}], "prompt": p, "response": r}
        for i, (p, r) in enumerate(_QA)
    ]


@pytest.fixture(scope="module")
def cuda_lm(embedded_model_path):
    return load_model(str(embedded_model_path), device="cuda")


@pytest.fixture(scope="module")
def cpu_lm(embedded_model_path):
    return load_model(str(embedded_model_path), device="cpu")


def test_loads_in_bf16_with_sdpa_on_cuda(cuda_lm):
    assert cuda_lm.device.type == "cuda"
    assert next(cuda_lm.model.parameters()).dtype == torch.bfloat16
    assert cuda_lm.model.config._attn_implementation in ("sdpa", "flash_attention_2")


def test_token_budget_comes_from_free_memory(cuda_lm):
    config = cuda_lm.model.config
    assert bytes_per_token(config, kv_cache=True) > bytes_per_token(config, kv_cache=False)
    free, _ = torch.cuda.mem_get_info(cuda_lm.device)
    generation = batch_token_budget(cuda_lm, kv_cache=True, cpu_default=4096)
    assert 4096 < generation <= free / bytes_per_token(config, kv_cache=True)
    # passes without a cache stop growing where the GPU is busy: larger batches would only pad more
    assert 8192 < batch_token_budget(cuda_lm, kv_cache=False, cpu_default=8192) <= 32768


def _count_forwards(lm, fn):
    calls = []
    handle = lm.model.base_model.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        fn()
    finally:
        handle.remove()
    return len(calls)


def _pass_inputs(lm, n):
    rows = (_rows() * (n // len(_QA) + 1))[:n]
    prefixes = [lm.encode_prompt(r["prompt_messages"]) for r in rows]
    return prefixes, [lm.encode_text(r["response"]) for r in rows]


def test_batches_fill_the_token_budget_not_a_fixed_row_count(cuda_lm):
    prefixes, responses = _pass_inputs(cuda_lm, 64)
    # the CPU's fixed batches would take 4 forward passes (16 rows each); the GPU's budget holds all 64 rows
    assert _count_forwards(cuda_lm, lambda: continuation_logprobs(cuda_lm, prefixes, responses)) == 1


def _sync_warnings(fn) -> int:
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


@pytest.mark.parametrize("model", ["cuda_lm", "cuda_tiny"])
def test_host_round_trips_do_not_grow_with_rows(model, request):
    """The likelihood pass (packed on CUDA) leaves the device once, whatever the rows; the tiny model runs where
    the embedded one cannot be copied."""
    lm = request.getfixturevalue(model)
    few, many = _pass_inputs(lm, 4), _pass_inputs(lm, 48)
    continuation_logprobs(lm, *few)  # warm-up
    syncs_few = _sync_warnings(lambda: continuation_logprobs(lm, *few))
    syncs_many = _sync_warnings(lambda: continuation_logprobs(lm, *many))
    print(f"host syncs per likelihood pass: {syncs_few} (4 rows), {syncs_many} (48 rows)")
    assert syncs_many == syncs_few


def test_scores_rows_on_cuda(cuda_lm):
    scored = score_rows(cuda_lm, _rows(), ScoringConfig(samples=2, max_new_tokens=16, propose_below=1.01))
    assert [s["row_index"] for s in scored] == list(range(len(_QA)))
    for s in scored:
        for name in ("confidence", "confidence_bsdetector", "self_reflection", "consistency", "stop_prob"):
            assert 0.0 <= s[name] <= 1.0, name
        assert isinstance(s["proposed_response"], str)


def test_cuda_signals_agree_with_cpu_float32(cuda_lm, cpu_lm):
    config = ScoringConfig(samples=0, propose=False)
    on_gpu = score_rows(cuda_lm, _rows(), config)
    on_cpu = score_rows(cpu_lm, _rows(), config)
    # bf16 keeps 8 bits of mantissa: a token's log-probability moves by a few hundredths, a mean over a response
    # by less; probabilities by a few points (0.058 seen for eos_prob on an H200). Rankings (what filtering uses)
    # must agree.
    tolerances = {
        "logprob_mean": 0.1,
        "logprob_uncond_mean": 0.1,
        "stop_prob": 0.1,
        "eos_prob": 0.1,
        "self_reflection": 0.03,
        "confidence": 0.05,
    }
    for name, tolerance in tolerances.items():
        gaps = [abs(g[name] - c[name]) for g, c in zip(on_gpu, on_cpu)]
        print(f"{name}: max |cuda bf16 - cpu fp32| = {max(gaps):.4f} (tolerance {tolerance})")
        assert max(gaps) <= tolerance, name
    assert [g["n_response_tokens"] for g in on_gpu] == [c["n_response_tokens"] for c in on_cpu]
    gpu_order = sorted(range(len(_QA)), key=lambda i: on_gpu[i]["logprob_mean"])
    cpu_order = sorted(range(len(_QA)), key=lambda i: on_cpu[i]["logprob_mean"])
    assert gpu_order[:2] == cpu_order[:2]  # the least likely responses are the same rows


@pytest.fixture(scope="module")
def cuda_tiny(tiny_model_path):
    return load_model(str(tiny_model_path), device="cuda")


def test_likelihood_pass_packs_by_default_on_cuda(cuda_tiny, tiny_model):
    """Sequences end to end in one row (flash-attention's variable-length kernel) give the padded batches' numbers
    within bf16 rounding, and the CPU's float32 ones."""
    assert packing_available(cuda_tiny)
    prefixes, responses = _pass_inputs(cuda_tiny, 24)
    assert _count_forwards(cuda_tiny, lambda: continuation_logprobs(cuda_tiny, prefixes, responses)) == 1
    packed = continuation_logprobs(cuda_tiny, prefixes, responses)
    padded = continuation_logprobs(cuda_tiny, prefixes, responses, packed=False)
    on_cpu = continuation_logprobs(tiny_model, prefixes, responses)
    for name in ("token_logprobs", "end_logprob", "stop_logprob"):
        a, b, c = (torch.tensor([v for r in rs for v in _values(r, name)]) for rs in (packed, padded, on_cpu))
        gap_padded, gap_cpu = (a - b).abs().max().item(), (a - c).abs().max().item()
        print(f"{name}: max |packed - padded| {gap_padded:.4f}, max |packed - cpu fp32| {gap_cpu:.4f}")
        assert gap_padded <= 0.1 and gap_cpu <= 0.1, name


def _values(result, name: str) -> list[float]:
    value = getattr(result, name)
    return value if isinstance(value, list) else [value]
