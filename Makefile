# Two commands for a newcomer: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= runs/quick

.PHONY: demo test test-fast lint bench paper clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,data]'
	@touch $(STAMP)

demo: $(STAMP)
	JAX_PLATFORMS=cpu $(PY) -m deeptheory.train.reproduce --preset quick --out $(OUT)

paper: $(STAMP)
	$(PY) -m deeptheory.train.reproduce --preset paper --out runs/paper

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile -q

test-fast: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile -q -m 'not slow'

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) -m deeptheory.benchmarks.nngp
	$(PY) -m deeptheory.benchmarks.renormalization
	$(PY) -m deeptheory.benchmarks.langevin
	$(PY) -m deeptheory.benchmarks.rf_sweep
	$(PY) -m deeptheory.benchmarks.particles

clean:
	rm -rf $(VENV) runs .pytest_cache
