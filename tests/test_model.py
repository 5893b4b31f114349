"""Batched inference must equal the obvious one-row-at-a-time computation (tiny random model, exact comparisons)."""

from __future__ import annotations

import pytest
import torch

from clear_core import model
from clear_core.model import (
    ModelLoadError,
    batch_token_budget,
    bytes_per_token,
    continuation_logprobs,
    generate,
    length_batches,
    load_model,
    next_token_probs,
    pack_sequences,
    resolve_device,
    stop_token_ids,
)


def test_length_batches_cover_every_index_once_within_budget():
    lengths = [5, 100, 7, 60, 3, 61, 8, 99, 1]
    batches = list(length_batches(lengths, max_batch_tokens=200, max_batch_size=3))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 3
        assert max(lengths[i] for i in batch) * len(batch) <= 200 or len(batch) == 1
    # sorted by length: each batch's shortest is at least the previous batch's longest
    for prev, nxt in zip(batches, batches[1:]):
        assert max(lengths[i] for i in prev) <= min(lengths[i] for i in nxt)


def _naive_logprobs(lm, prefix, continuation):
    seq = torch.tensor([list(prefix) + list(continuation) + [lm.end_token_id]])
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(seq).logits[0].float(), dim=-1)
    targets = seq[0, len(prefix) :]
    values = [logp[len(prefix) - 1 + t, targets[t]].item() for t in range(len(targets))]
    return values[:-1], values[-1]


def test_continuation_logprobs_match_unbatched_forward(tiny_model):
    lm = tiny_model
    prefixes = [lm.encode_prompt([{"role": "user", "content": q}]) for q in ["What is 2+2?", "Name a colour."]]
    continuations = [lm.encode_text("It is four, of course."), lm.encode_text("Blue")]
    batched = continuation_logprobs(lm, prefixes, continuations, max_batch_size=2)
    for result, prefix, cont in zip(batched, prefixes, continuations):
        naive_tokens, naive_end = _naive_logprobs(lm, prefix, cont)
        assert len(result.token_logprobs) == len(cont)
        assert result.token_logprobs == pytest.approx(naive_tokens, abs=1e-4)
        assert result.end_logprob == pytest.approx(naive_end, abs=1e-4)
        # stopping includes ending: its probability is at least the end-of-turn token's, and at most 1
        assert naive_end - 1e-4 <= result.stop_logprob <= 1e-6


def test_pack_sequences_cover_every_index_once_within_budget():
    lengths = [5, 100, 7, 60, 3, 61, 8, 250, 1]
    packs = list(pack_sequences(lengths, max_pack_tokens=120))
    assert sorted(i for p in packs for i in p) == list(range(len(lengths)))
    for pack in packs:
        assert sum(lengths[i] for i in pack) <= 120 or len(pack) == 1  # the 250-token one is a pack of its own
    assert [len(p) for p in packs] == [6, 1, 1, 1]  # filled in length order: 1+3+5+7+8+60, 61, 100, 250


def test_packed_likelihood_pass_equals_the_padded_one(tiny_model):
    """Sequences laid end to end in one row, each attending only to itself, give the padded batches' numbers."""
    lm = tiny_model
    questions = ["What is 2+2?", "Name a colour.", "Why is the sky blue? Explain briefly.", "Hi"]
    answers = ["It is four, of course.", "Blue", "Light scatters.\nShort waves scatter most.", "Hello! How can I help?"]
    prefixes = [lm.encode_prompt([{"role": "user", "content": q}]) for q in questions]
    continuations = [lm.encode_text(a) for a in answers]
    padded = continuation_logprobs(lm, prefixes, continuations, packed=False)
    # a budget that makes two packs, so sequences sit at different offsets of different rows
    budget = sum(len(p) + len(c) + 1 for p, c in zip(prefixes, continuations)) // 2 + 10
    packed = continuation_logprobs(lm, prefixes, continuations, max_batch_tokens=budget, packed=True)
    for a, b in zip(packed, padded):
        assert a.token_logprobs == pytest.approx(b.token_logprobs, abs=1e-5)
        assert a.end_logprob == pytest.approx(b.end_logprob, abs=1e-5)
        assert a.stop_logprob == pytest.approx(b.stop_logprob, abs=1e-5)
    # the model's own attention is back after the packed pass
    assert lm.model.config._attn_implementation != "clear_packed"


class _CountingLayer(torch.nn.Module):
    """What a compiled layer is to the model: the same layer behind a wrapper (here one that counts its calls, or
    fails as a compiler that cannot build would)."""

    def __init__(self, layer, calls: list, fail: bool = False):
        super().__init__()
        self.layer, self.calls, self.fail = layer, calls, fail

    def forward(self, *args, **kwargs):
        if self.fail:
            raise RuntimeError("no C compiler for this backend")
        self.calls.append(1)
        return self.layer(*args, **kwargs)


def _packed_inputs(lm):
    prefixes = [lm.encode_prompt([{"role": "user", "content": q}]) for q in ["What is 2+2?", "Name a colour."]]
    return prefixes, [lm.encode_text("It is four."), lm.encode_text("Blue")]


def test_packed_pass_runs_the_compiled_layers_and_puts_the_eager_ones_back(tiny_model, monkeypatch):
    lm = tiny_model
    prefixes, continuations = _packed_inputs(lm)
    eager = continuation_logprobs(lm, prefixes, continuations, packed=True)
    calls: list = []
    monkeypatch.setattr(model, "compiling_available", lambda lm: True)
    monkeypatch.setattr(torch, "compile", lambda layer, **_: _CountingLayer(layer, calls))
    layers = lm.model.base_model.layers
    try:
        compiled = continuation_logprobs(lm, prefixes, continuations, packed=True)
        assert len(calls) == len(layers)  # one pack, every layer through its compiled version
        assert lm.model.base_model.layers is layers
        assert [r.token_logprobs for r in compiled] == [r.token_logprobs for r in eager]
        continuation_logprobs(lm, prefixes, continuations, packed=True)
        assert len(calls) == 2 * len(layers)  # compiled once, kept for the next pass
    finally:
        lm.compiled_layers = None


def test_a_compiler_that_fails_is_reported_once_and_the_pass_goes_on_eagerly(tiny_model, monkeypatch):
    lm = tiny_model
    prefixes, continuations = _packed_inputs(lm)
    eager = continuation_logprobs(lm, prefixes, continuations, packed=True)
    monkeypatch.setattr(model, "compiling_available", lambda lm: lm.compile_error is None)
    monkeypatch.setattr(torch, "compile", lambda layer, **_: _CountingLayer(layer, [], fail=True))
    try:
        with pytest.warns(RuntimeWarning, match="torch.compile failed.*no C compiler.*CLEAR_COMPILE=0"):
            result = continuation_logprobs(lm, prefixes, continuations, packed=True)
        assert [r.token_logprobs for r in result] == [r.token_logprobs for r in eager]
        assert "no C compiler" in lm.compile_error
        assert lm.model.base_model.layers is not lm.compiled_layers
    finally:
        lm.compiled_layers, lm.compile_error = None, None


def test_stop_tokens_are_ends_closing_punctuation_and_line_breaks(tiny_model):
    lm = tiny_model
    stops = stop_token_ids(lm.tokenizer, lm.end_token_id)
    assert lm.end_token_id in stops
    texts = {lm.tokenizer.decode([t]) for t in stops if t not in (lm.end_token_id, lm.tokenizer.eos_token_id)}
    assert "." in texts and "\n" in texts
    assert all(not text.strip() or set(text.strip()) <= set(".!?)]\"'”’»…") for text in texts)


def test_next_token_probs_with_left_padding_match_single_prompts(tiny_model):
    lm = tiny_model
    prompts = [lm.encode_prompt([{"role": "user", "content": t}]) for t in ["short", "a much longer prompt " * 5]]
    candidates = lm.encode_text("A")[:1] + lm.encode_text("B")[:1]
    batched = next_token_probs(lm, prompts, candidates)
    for row, prompt in enumerate(prompts):
        with torch.no_grad():
            probs = torch.softmax(lm.model(torch.tensor([prompt])).logits[0, -1].float(), dim=-1)
        assert batched[row].tolist() == pytest.approx(probs[candidates].tolist(), rel=1e-3, abs=1e-6)


def test_greedy_generation_with_shared_prefill_equals_plain_generate(tiny_model):
    lm = tiny_model
    prompts = [lm.encode_prompt([{"role": "user", "content": t}]) for t in ["Hello", "Tell me something long"]]
    ours = generate(lm, prompts, samples=2, greedy=True, max_new_tokens=8, seed=0)
    assert all(len(s) == 2 for s in ours.samples)
    for prompt, greedy in zip(prompts, ours.greedy):
        with torch.no_grad():
            out = lm.model.generate(
                torch.tensor([prompt]),
                max_new_tokens=8,
                do_sample=False,
                eos_token_id=[lm.end_token_id],
                pad_token_id=lm.tokenizer.pad_token_id,
            )
        assert greedy == lm.decode(out[0, len(prompt) :])


def test_generation_after_a_shared_beginning_equals_generating_from_the_whole_prompt(tiny_model):
    lm = tiny_model
    shared = lm.encode_prompt([{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"}])
    own = [lm.encode_text("<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"), lm.encode_text("x")]
    whole = generate(lm, [shared + p for p in own], samples=0, greedy=True, max_new_tokens=8)
    split = generate(lm, own, samples=0, greedy=True, max_new_tokens=8, shared=shared, max_batch_size=2)
    assert split.greedy == whole.greedy  # a batch padded between the shared part and a short prompt
    again = generate(lm, own, samples=0, greedy=True, max_new_tokens=8, shared=shared, max_batch_size=1)
    assert again.greedy == whole.greedy  # the shared cache is copied, not used up by the first batch


def test_end_of_turn_token_is_the_chat_templates_closer(tiny_model):
    assert tiny_model.tokenizer.convert_ids_to_tokens(tiny_model.end_token_id) == "<|im_end|>"


def test_missing_model_gives_actionable_message(tmp_path):
    with pytest.raises(ModelLoadError, match="local model directory"):
        load_model(str(tmp_path / "no-such-model"), device="cpu")


def test_cuda_request_without_gpu_is_refused_clearly():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ModelLoadError, match="--device cpu"):
        resolve_device("cuda")


def test_head_applied_to_many_rows_at_once_gives_the_same_logprobs(tiny_model, monkeypatch):
    """The CUDA path's grouping of rows per output-head call (the CPU calls it once per row)."""
    import clear_core.model as model

    lm = tiny_model
    prefixes = [lm.encode_prompt([{"role": "user", "content": q}]) for q in ["2+2?", "Colour?", "Say hi.", "Why?"]]
    continuations = [lm.encode_text(t) for t in ["Four.", "Blue, mostly.", "", "Because it is."]]
    one_row_each = continuation_logprobs(lm, prefixes, continuations)
    monkeypatch.setattr(model, "_head_positions", lambda lm: 7)  # groups of rows, split where 7 positions are full
    grouped = continuation_logprobs(lm, prefixes, continuations)
    for a, b in zip(one_row_each, grouped):
        assert b.token_logprobs == pytest.approx(a.token_logprobs, abs=1e-5)
        assert b.end_logprob == pytest.approx(a.end_logprob, abs=1e-5)
        assert b.stop_logprob == pytest.approx(a.stop_logprob, abs=1e-5)


def test_cpu_batches_keep_their_fixed_budget_and_gpu_bytes_count_the_cache(tiny_model):
    from transformers import LlamaConfig

    assert batch_token_budget(tiny_model, kv_cache=True, cpu_default=4096) == 4096
    llama_8b = LlamaConfig(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
    )
    activations = 2 * (4 * 4096 + 2 * 1024 + 3 * 14336)  # bf16: residual, norm, q, attn out; k, v; MLP
    assert bytes_per_token(llama_8b, kv_cache=False) == activations
    assert bytes_per_token(llama_8b, kv_cache=True) == activations + 2 * 2 * 32 * 1024  # keys and values, 32 layers


def test_grouped_prompts_share_their_beginning_and_give_the_same_probabilities(tiny_model):
    """Pairs of prompts that begin alike (the two self-reflection questions, the judge's two orders) run their
    common beginning once; the probabilities are those of running every prompt whole."""
    lm = tiny_model
    ask = [
        lambda q: [{"role": "user", "content": f"Question: {q}\n\nIs it right? Answer A or B."}],
        lambda q: [{"role": "user", "content": f"Question: {q}\n\nAre you really sure it is right?"}],
    ]
    questions = ["What is 2+2?", "Name a colour that is also a fruit, and say why.", "Hi"]
    prompts = [lm.encode_prompt(a(q), assistant_prefix="Answer: (") for q in questions for a in ask]
    prompts += [lm.encode_text("Completely"), lm.encode_text("different")]  # a pair with nothing in common
    candidates = [lm.encode_text("A")[0], lm.encode_text("B")[0]]
    whole = next_token_probs(lm, prompts, candidates, max_batch_size=3)
    shared = next_token_probs(lm, prompts, candidates, max_batch_size=4, group_size=2)
    assert torch.allclose(shared, whole, atol=1e-5)
    single = torch.stack([next_token_probs(lm, [p], candidates)[0] for p in prompts])
    assert torch.allclose(shared, single, atol=1e-5)
    with pytest.raises(ValueError, match="groups of 2"):
        next_token_probs(lm, prompts[:3], candidates, group_size=2)


def test_a_batch_of_prompted_and_unprompted_rows_matches_each_row_run_whole(tiny_model):
    """The likelihood pass as the engine calls it (each response after its prompt and after the empty prompt, in
    one batch): every row's log-probabilities are those of its own unbatched forward pass."""
    lm = tiny_model
    empty = lm.encode_prompt([{"role": "user", "content": ""}])
    prefixes = [lm.encode_prompt([{"role": "user", "content": q}]) for q in ["What is 2+2?", "Name a colour."]]
    prefixes += [empty, empty]
    continuations = [lm.encode_text(t) for t in ["It is four.", "Blue", "It is four.", ""]]
    batched = continuation_logprobs(lm, prefixes, continuations, max_batch_size=4)
    for result, prefix, cont in zip(batched, prefixes, continuations):
        naive_tokens, naive_end = _naive_logprobs(lm, prefix, cont)
        assert result.token_logprobs == pytest.approx(naive_tokens, abs=1e-5)
        assert result.end_logprob == pytest.approx(naive_end, abs=1e-5)


def test_a_shared_beginning_runs_once_and_gives_what_the_whole_prefix_gives(tiny_model):
    lm = tiny_model
    shared = lm.encode_prompt([{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"}])
    own = [lm.encode_text("<|im_start|>user\nWhat is 2+2?"), lm.encode_text("<|im_start|>user\nName a colour.")]
    continuations = [lm.encode_text("It is four, of course."), lm.encode_text("Blue")]
    whole = continuation_logprobs(lm, [shared + p for p in own], continuations)
    split = continuation_logprobs(lm, own, continuations, shared=shared, max_batch_size=2)
    for a, b in zip(split, whole):
        assert a.token_logprobs == pytest.approx(b.token_logprobs, abs=1e-4)
        assert a.end_logprob == pytest.approx(b.end_logprob, abs=1e-4)
        assert a.stop_logprob == pytest.approx(b.stop_logprob, abs=1e-4)
    again = continuation_logprobs(lm, own, continuations, shared=shared, max_batch_size=1)  # the cache is copied
    for a, b in zip(again, split):
        assert a.token_logprobs == pytest.approx(b.token_logprobs, abs=1e-5)
    # where packing is asked for (CUDA's default), a shared beginning still continues from its cache, padded
    asked_to_pack = continuation_logprobs(lm, own, continuations, shared=shared, max_batch_size=2, packed=True)
    assert [r.token_logprobs for r in asked_to_pack] == [r.token_logprobs for r in split]
