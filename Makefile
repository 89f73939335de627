# cmpipe: `make demo` and `make test` each do all set-up on a fresh machine.
#
#   make setup   create .venv and install cmpipe with its test extra (idempotent)
#   make demo    the CPU demo: cmpipe demo --config demo --out runs/demo
#   make test    the test suite
#   make bench   install the bench extra and run bench/projection.py

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# Installed before cmpipe where there is no GPU (no nvidia-smi): a bare `torch` requirement
# would pull the multi-GB CUDA build. On this project's machines the CPU wheel lies on disk
# (PIP_FIND_LINKS) and pip picks it; elsewhere add the CPU index:
#   make setup TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_CPU      ?= torch==2.13.0
TORCH_PIP_ARGS ?=

STAMP       := $(VENV)/.cmpipe-setup.stamp
BENCH_STAMP := $(VENV)/.cmpipe-bench.stamp

.PHONY: setup demo test bench

setup: $(STAMP)

# Keyed on pyproject.toml: changed dependencies reinstall.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	if ! command -v nvidia-smi >/dev/null 2>&1; then \
		$(PIP) install $(TORCH_PIP_ARGS) "$(TORCH_CPU)"; \
	fi
	$(PIP) install -e ".[test]"
	touch $@

demo: $(STAMP)
	$(BIN)/cmpipe demo --config demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=25

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PIP) install -e ".[bench]"
	touch $@

bench: $(BENCH_STAMP)
	$(BIN)/python bench/projection.py
