# Two commands for a newcomer: `make demo` and `make test`. Both create .venv when missing. `make help` lists all.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= runs/quick
FASHION_MNIST := /usr/share/datasets/fashion-mnist

.PHONY: help demo test test-fast lint bench bench-gpu paper report map studies data clean

help:  ## list the targets and variables
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /  make \1\t/' | expand -t 20
	@echo "variables:"
	@echo "  OUT=DIR           output folder of demo and report (default $(OUT)), e.g. make demo OUT=runs/other"
	@echo "  PYTHON=python3.X  interpreter that creates $(VENV) (default $(PYTHON))"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,data]'
	@touch $(STAMP)

# The four IDX files the experiments read (train.data); `make data` checks them after installing.
FASHION_FILES := train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte
HAVE_FASHION = for f in $(FASHION_FILES); do [ -s $(FASHION_MNIST)/$$f ] || [ -s $(FASHION_MNIST)/$$f.gz ] || exit 1; done

data:  ## as root: install Fashion-MNIST (Debian package dataset-fashion-mnist) and check its files; else say how
	@if ( $(HAVE_FASHION) ); then echo "Fashion-MNIST: found all four IDX files in $(FASHION_MNIST)"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "installing dataset-fashion-mnist (Debian) ..."; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
	    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; }; \
	  if ( $(HAVE_FASHION) ); then echo "Fashion-MNIST: installed; found all four IDX files in $(FASHION_MNIST)"; \
	  else echo "Fashion-MNIST: could not install dataset-fashion-mnist (no network or no Debian archive?):" \
	    "the real-data experiments will use the MNIST-1D fallback, generated locally"; fi; \
	else echo "Fashion-MNIST: not installed, and installing it was skipped (not root). The demo will use the" \
	  "MNIST-1D fallback, generated locally. To use Fashion-MNIST: sudo apt-get install dataset-fashion-mnist," \
	  "or point DEEPTHEORY_DATA_DIR (or an experiment's --data-dir) at a folder of its IDX files"; fi

demo: $(STAMP) data  ## every experiment's quick preset on CPU (minutes), then OUT/report.md and report.html
	JAX_PLATFORMS=cpu $(PY) -m deeptheory.train reproduce --preset quick --out $(OUT)

report: $(STAMP)  ## redraw the figures and rewrite the report of OUT from its results.json files
	$(PY) -m deeptheory.train report $(OUT)

map: $(STAMP)  ## rewrite results/bayes_networks/map.md, map.png and the README's map from the committed study parts
	$(PY) -m deeptheory.train.experiments.bayes_networks.study

studies: map  ## also rewrite results/denoise/study.md, study.png and the README's denoise tables from the committed parts
	$(PY) -m deeptheory.train.experiments.denoise.study

paper: $(STAMP) data  ## the GPU-sized paper presets into runs/paper
	$(PY) -m deeptheory.train reproduce --preset paper --out runs/paper

test: $(STAMP)  ## the whole test suite, slow tests included (what CI runs; about 25 minutes on 2 cores)
	$(PY) -m pytest -n 2 --dist loadfile -q --durations=30

test-fast: $(STAMP)  ## the tests not marked slow
	$(PY) -m pytest -n 2 --dist loadfile -q -m 'not slow'

lint: $(STAMP)  ## ruff
	$(VENV)/bin/ruff check .

bench: $(STAMP)  ## every benchmark against its baseline (figures go to benchmarks/RESULTS.md by hand)
	$(PY) -m deeptheory.benchmarks.nngp
	$(PY) -m deeptheory.benchmarks.renormalization
	$(PY) -m deeptheory.benchmarks.langevin
	$(PY) -m deeptheory.benchmarks.collapsed
	$(PY) -m deeptheory.benchmarks.rf_sweep
	$(PY) -m deeptheory.benchmarks.particles

BENCH_LOG ?= benchmarks/bench-gpu.log
bench-gpu: $(STAMP)  ## the GPU-relevant benchmarks at GPU sizes, device and date first, all output to $(BENCH_LOG)
	@{ date -u +"%Y-%m-%d %H:%M UTC"; \
	  $(PY) -c "import jax; d = jax.devices()[0]; print('device:', d.device_kind, '(' + jax.default_backend() + '),', jax.device_count(), 'device(s), jax', jax.__version__); jax.default_backend() == 'cpu' and print('WARNING: no GPU visible: pip install -e .[cuda] on a GPU machine')"; \
	  $(PY) -m deeptheory.benchmarks.nngp --block-sizes 512,2048,8192 && \
	  $(PY) -m deeptheory.benchmarks.renormalization --variant-grid 16 && \
	  $(PY) -m deeptheory.benchmarks.langevin && \
	  $(PY) -m deeptheory.benchmarks.collapsed --budget 300 && \
	  $(PY) -m deeptheory.benchmarks.rf_sweep && \
	  $(PY) -m deeptheory.benchmarks.particles; } 2>&1 | tee $(BENCH_LOG)

clean:  ## remove the virtualenv, every run and build leftovers
	rm -rf $(VENV) runs .pytest_cache build *.egg-info
