"""Shared fixtures: real files and databases in tmp_path, a tiny random-weight model, the real embedded model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEV_DATA = REPO.parent / "shared" / "data" / "dev"
GSM8K = DEV_DATA / "gsm8k_train.json"


@pytest.fixture(scope="session")
def embedded_model_path() -> Path:
    """The embedded SmolLM2 as a local HF directory (converted from its GGUF once, then cached)."""
    from clear_core.model import embedded_model_dir

    return embedded_model_dir()


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory, embedded_model_path) -> Path:
    """A 2-layer random-weight Llama with SmolLM2's tokenizer and chat template: fast, deterministic plumbing tests."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_path)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    path = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_model_path):
    from clear_core.model import load_model

    return load_model(str(tiny_model_path), device="cpu")


def gsm8k_records(n: int) -> list[dict]:
    """The first n real GSM8K rows (Alpaca format)."""
    return json.loads(GSM8K.read_text(encoding="utf-8"))[:n]


@pytest.fixture
def gsm8k_file(tmp_path) -> Path:
    """A small real Alpaca JSON file: 12 GSM8K rows, row 3's response swapped for a refusal, row 5 truncated."""
    rows = gsm8k_records(12)
    rows[3]["output"] = "I'm sorry, but I can't help with that request."
    rows[5]["output"] = rows[5]["output"][: len(rows[5]["output"]) // 3]
    path = tmp_path / "gsm8k_small.json"
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return path
