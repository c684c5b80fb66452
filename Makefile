# The two commands of the README: `make demo` and `make test`. Each bootstraps
# .venv idempotently (a stamp file records that the install finished).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)

ifeq ($(HAS_GPU),1)
TORCH := torch
EXTRAS := gpu,test
else
# The CPU wheel; a bare `torch` would pull a multi-GB CUDA build.
TORCH := torch==2.13.0
EXTRAS := cpu,test
endif

.PHONY: demo test soak bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/streamrec demo $(ARGS)

# The layer contract (pyproject.toml, docs/architecture.md) and the style are checked before the tests run.
test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(ARGS)

# The long versions of the volume, kill -9 and fuzzing suites (tests marked slow: about 15 minutes here).
soak: $(STAMP)
	$(BIN)/python -m pytest -m slow tests/integration/test_soak.py tests/integration/test_http_fuzz.py $(ARGS)

# make bench WHAT=index (ingest, train, index, http, freshness, quality); ARGS go to the benchmark.
WHAT ?= ingest
bench: $(STAMP)
	$(BIN)/pip install --quiet -e ".[$(EXTRAS),bench,peers]"
	$(BIN)/streamrec bench $(WHAT) $(ARGS)

clean:
	rm -rf $(VENV) data reports
