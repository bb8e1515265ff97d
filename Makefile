# Two commands for a newcomer: `make demo` and `make test`. Both create .venv when missing. `make help` lists all.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= runs/quick
FASHION_MNIST := /usr/share/datasets/fashion-mnist

.PHONY: help demo test test-fast lint bench paper report data clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /  make \1\t/' | expand -t 20

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,data]'
	@touch $(STAMP)

data:  ## as root: install Fashion-MNIST (Debian package dataset-fashion-mnist); otherwise say how
	@if [ -d $(FASHION_MNIST) ]; then echo "Fashion-MNIST: $(FASHION_MNIST)"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "installing dataset-fashion-mnist (Debian) ..."; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
	    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } \
	    || echo "could not install dataset-fashion-mnist: the real-data experiments use MNIST-1D instead"; \
	else echo "Fashion-MNIST is not installed (sudo apt-get install dataset-fashion-mnist, or --data-dir DIR);" \
	  "the real-data experiments use MNIST-1D, generated locally, instead"; fi

demo: $(STAMP) data  ## every experiment's quick preset on CPU (minutes), then OUT/report.md and report.html
	JAX_PLATFORMS=cpu $(PY) -m deeptheory.train.reproduce --preset quick --out $(OUT)

report: $(STAMP)  ## redraw the figures and rewrite the report of OUT from its results.json files
	$(PY) -m deeptheory.train.report $(OUT)

paper: $(STAMP) data  ## the GPU-sized paper presets into runs/paper
	$(PY) -m deeptheory.train.reproduce --preset paper --out runs/paper

test: $(STAMP)  ## the whole test suite, slow tests included (what CI runs; about 15 minutes on 2 cores)
	$(PY) -m pytest -n 2 --dist loadfile -q

test-fast: $(STAMP)  ## the tests not marked slow
	$(PY) -m pytest -n 2 --dist loadfile -q -m 'not slow'

lint: $(STAMP)  ## ruff
	$(VENV)/bin/ruff check .

bench: $(STAMP)  ## every benchmark against its baseline (figures go to benchmarks/RESULTS.md by hand)
	$(PY) -m deeptheory.benchmarks.nngp
	$(PY) -m deeptheory.benchmarks.renormalization
	$(PY) -m deeptheory.benchmarks.langevin
	$(PY) -m deeptheory.benchmarks.rf_sweep
	$(PY) -m deeptheory.benchmarks.particles

clean:  ## remove the virtualenv and every run
	rm -rf $(VENV) runs .pytest_cache
