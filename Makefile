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
# PyPI has no CPU-only torch wheel for Linux: this is the CUDA build (several GB), which runs on the CPU.
TORCH := torch==2.13.0
EXTRAS := cpu,test
endif

.PHONY: demo test unit lint soak bench venv clean kafka-jars examples chromium console-screenshots

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/streamrec demo $(ARGS)

# Apache Kafka's jars for the tests' three-node cluster (and `streamrec broker --apache-kafka`):
# fetched once by Maven into ~/.cache/streamrec (needs a JDK 17+ and mvn).
kafka-jars: $(STAMP)
	$(BIN)/python -m streamrec.apache_kafka

# The shop producers of examples/ (Java, Go, Node), which the tests run against the cluster:
# their libraries from Maven Central, the Go module proxy and npm (needs java, mvn, go, node, npm).
examples:
	cd examples/java && mvn -q -B dependency:build-classpath -Dmdep.outputFile=cp.txt
	cd examples/go && go mod download
	cd examples/node && npm ci --no-audit --no-fund --silent

# Debian's Chromium, which the web console's browser tests drive through Playwright (no browser download).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium)

# The README's console screenshots, from the browser test's run.
console-screenshots: $(STAMP) chromium
	STREAMREC_CONSOLE_SCREENSHOTS=figures/console $(BIN)/python -m pytest tests/integration/test_console.py

# The layer contract (pyproject.toml, docs/architecture.md) and the style, checked before any test runs.
lint: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Tests run in TEST_WORKERS processes (pytest-xdist), the Apache Kafka cluster's tests in one of them
# (tests/conftest.py). One OpenMP thread each for torch and FAISS: their threads spin while they wait,
# and on two cores four processes with two threads each made the real-time tests eight times slower.
TEST_WORKERS ?= 2
PYTEST := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup
test: lint kafka-jars examples chromium
	$(PYTEST) $(ARGS)

# The pure core's tests and the lint, without a broker, a JDK, Go, Node or Chromium.
unit: lint
	$(PYTEST) tests/unit $(ARGS)

# The long versions of the volume, kill -9 and fuzzing suites (tests marked slow: about 15 minutes here).
soak: $(STAMP)
	$(BIN)/python -m pytest -m slow tests/integration/test_soak.py tests/integration/test_http_fuzz.py tests/integration/test_broker_faults.py $(ARGS)

# make bench WHAT=index (ingest, train, index, http, freshness, quality); ARGS go to the benchmark.
WHAT ?= ingest
bench: $(STAMP)
	$(BIN)/pip install --quiet -e ".[$(EXTRAS),bench,peers]"
	$(BIN)/streamrec bench $(WHAT) $(ARGS)

clean:
	rm -rf $(VENV) data reports
