# Two entry points: `make run` (the main job) and `make test` (the test suite).
# Each creates the virtual environment .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test reproduce bench bench-quick bench-gpu clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/jwins compare

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The paper's claims on digits (CPU, about 45 min on 2 cores, with the bandwidth crossover) -> REPRODUCTION.md and
# reproduction/digits/. REPRODUCE_FLAGS="--dataset cifar10 --data-dir DIR" runs the
# CIFAR-10 specs instead (an accelerator and the prepared data are needed).
reproduce: $(STAMP)
	$(BIN)/jwins reproduce $(REPRODUCE_FLAGS)

# The benchmark suite (benchmarks/run.py): every section, its report in
# benchmarks/RESULTS.md; bench-quick checks that everything runs (tiny sizes).
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks.run --quick

# On a machine with an NVIDIA GPU: installs JAX's CUDA plugin, then runs the
# accelerator sections and puts their report into benchmarks/RESULTS.md.
bench-gpu: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[cuda]'
	$(BIN)/python -m benchmarks.run --only machine,gpu,kernels --kernel-time-budget 5

clean:
	rm -rf $(VENV) runs benchmarks/out
