# One-command set-up: `make test` and `make demo` install everything they need on a fresh machine.
# The virtual environment lives outside the clone (torch from PyPI is a multi-GB CUDA build), so
# a second clone or a second run reuses it; uv's cache keeps the wheels.
SHELL := /bin/bash
VENV ?= $(HOME)/.cache/aiaas/venv
PY := $(VENV)/bin/python
STAMP := .run/setup.stamp
export PYTHONPATH := $(CURDIR)
# A clone keeps its infrastructure's state (broker data, logs, pids) in .run/ and the broker's jars in
# infra/kafka/libs (both git-ignored); an installed aiaas uses ~/.cache/aiaas/state (docs/operations.md).
export AIAAS_STATE_DIR ?= $(CURDIR)/.run
export AIAAS_KAFKA_LIBS ?= $(CURDIR)/infra/kafka/libs
export UV_LINK_MODE := copy
PYTEST_ARGS ?=

.PHONY: setup jars browser infra-up infra-down infra-status cluster-up cluster-down cluster-status test test-unit test-integration test-faults test-cluster lint bench demo lock clean

setup: $(STAMP) jars

# --compile-bytecode: with PYTHONDONTWRITEBYTECODE set (as on CI images) every agent process would
# otherwise recompile torch from source at start-up, seconds of CPU each.
$(STAMP): requirements.lock pyproject.toml
	@command -v uv >/dev/null || python3 -m pip install --quiet uv
	@test -x $(PY) || uv venv --quiet --python 3.11 $(VENV)
	VIRTUAL_ENV=$(VENV) uv pip sync --quiet --compile-bytecode requirements.lock
	VIRTUAL_ENV=$(VENV) uv pip install --quiet --no-deps -e .
	@mkdir -p .run && touch $(STAMP)

jars:
	@infra/kafka/fetch.sh

lock:
	uv pip compile pyproject.toml --extra cpu --extra dev --python-version 3.11 \
	  --python-platform x86_64-unknown-linux-gnu -o requirements.lock

# Headless chromium (Debian package) for the status-page test; idempotent.
browser:
	@infra/chromium.sh

infra-up: jars
	@infra/up.sh

infra-down:
	@infra/down.sh

infra-status:
	@infra/status.sh

# The local 3-node KRaft cluster (infra/kafka/cluster.sh, ports 20092-20097): the cluster tier
# starts it itself when down (and stops it again), so `make test` needs no cluster-up.
cluster-up: jars
	@infra/kafka/cluster.sh start

cluster-down:
	@infra/kafka/cluster.sh stop

cluster-status:
	@infra/kafka/cluster.sh status

# Two pytest workers, a test file each at a time (module fixtures stay on one worker): most tests
# wait on a broker, a process start or a deadline rather than the CPU. The cluster tier owns fixed
# ports (20092-20097) and stops its cluster when done, so it runs on its own afterwards.
TEST_WORKERS ?= 2
test: setup infra-up browser
	$(PY) -m pytest tests --ignore=tests/cluster -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)
	$(PY) -m pytest tests/cluster $(PYTEST_ARGS)

test-unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: setup infra-up browser
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

test-faults: setup infra-up
	$(PY) -m pytest tests/faults $(PYTEST_ARGS)

test-cluster: setup jars
	$(PY) -m pytest tests/cluster $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The figures the performance targets name, 5 repeats each (min / median / max), into
# benchmarks/results/<date>.md with plots, and README's headline table refreshed from them.
BENCH_OUT := .run/inference.out .run/training.out .run/bridge.out .run/idle.out .run/peers.out
bench: setup infra-up
	@mkdir -p .run
	$(PY) -m benchmarks.transport
	$(PY) -m benchmarks.faults
	@for b in $(BENCH_OUT); do n=$$(basename $$b .out); \
	  $(PY) -m benchmarks.$$n --repeat 5 > $$b || exit 1; done
	$(PY) -m benchmarks.report $(BENCH_OUT) --readme README.md \
	  --note "make bench: inference, training, bridge, idle and peers, --repeat 5 each"

demo: setup infra-up
	$(PY) -m aiaas.cli.main demo

clean:
	rm -rf .run demo-output
