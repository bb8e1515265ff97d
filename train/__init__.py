"""Experiments that hold finite networks against the theory, and the machinery they share.

    python -m deeptheory.train <experiment> --preset quick --out DIR     # one experiment (`list` names them)
    python -m deeptheory.train reproduce --preset quick --out DIR       # all of them, then DIR/report.md
    python -m deeptheory.train report DIR                               # redraw figures and report from results.json

Rooms:
- `experiments/` — one package per experiment (`nngp_convergence`, `bayes_networks`, `rf_scaling`, `denoise`),
  each with the same contract (`harness.cli.Experiment`): `run` measures and checkpoints, `analyse` adds the
  theory and the summary numbers, `report` draws tables and figures from results.json alone.
- `harness/` — running experiments: the command line and config fields (`cli`), output folders and results.json
  (`results`), checkpoints and resumable loops (`checkpoint`), vmapped and sharded sweeps (`sweep`), random keys
  from (seed, path) (`keys`), progress lines (`progress`), reports and figures (`report`), the registry of
  experiments (`registry`) and the run-them-all command (`reproduce`).
- `inference/` — posterior sampling, which is not training: samplers (BAOAB, MALA, ULA), chains (vmapped,
  checkpointed), diagnostics (R̂, ESS, burn-in) and the step size from the posterior's curvature.
- `data.py` — the real-data binary tasks (Fashion-MNIST, MNIST-1D fallback) and their records.
- `fits.py` — every fit of a slope or an exponent to measured points, with its uncertainty.
- `distances.py` — distances between two samples of points (sliced Wasserstein-1).
"""
