"""Run every registered experiment with one preset and write DIR/report.md linking their plots.

    python -m deeptheory.train.reproduce --preset quick --out runs/quick      # `make demo`, CPU, minutes
    python -m deeptheory.train.reproduce --preset paper --out runs/paper      # GPU recommended

Rerunning on the same --out resumes each experiment from its checkpoints.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import jax

from deeptheory.train import cli
from deeptheory.train.results import environment

# name → module; each module has NAME, Config, PRESETS, run (see train/cli.py).
EXPERIMENTS = {
    "nngp_convergence": "deeptheory.train.nngp_convergence",
    "bayes_networks": "deeptheory.train.bayes_networks",
    "rf_scaling": "deeptheory.train.rf_scaling",
    "denoise": "deeptheory.train.denoise",
}


def _report(out: Path, preset: str, records: dict, wall: float) -> Path:
    env = environment()
    lines = [
        f"# deeptheory report — preset `{preset}`",
        "",
        f"{len(records)} experiment(s), {wall:.0f} s in total on {env['device_count']} × {env['device_kind']} "
        f"({env['backend']}), commit `{env['git_commit']}`.",
        "",
    ]
    for name, record in records.items():
        lines += [f"## {name}", "", f"Wall time {record['wall_time_s']:.0f} s; full results in "
                  f"[`{name}/results.json`]({name}/results.json).", "", "```json",
                  json.dumps(record["metrics"]["summary"], indent=2), "```", ""]
        lines += [f"![{plot}]({name}/{plot})" for plot in record["plots"]] + [""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=("quick", "paper"), default="quick")
    parser.add_argument("--out", type=Path, default=None, help="default runs/<preset>")
    parser.add_argument("--only", nargs="*", choices=sorted(EXPERIMENTS), help="a subset of the experiments")
    parser.add_argument("--distributed", action="store_true", help="call jax.distributed.initialize()")
    args = parser.parse_args(argv)
    cli.init_runtime(args.distributed)
    out = args.out or Path("runs") / args.preset
    start, records = time.perf_counter(), {}
    for name in args.only or EXPERIMENTS:
        module = importlib.import_module(EXPERIMENTS[name])
        print(f"[{name}] running preset {args.preset} → {out / name}", flush=True)
        try:
            records[name] = cli.execute(name, module.PRESETS[args.preset], module.run, out / name)
        except cli.ConfigError as e:
            sys.exit(f"error: {e}")
    if jax.process_index() != 0:
        return out / "report.md"
    path = _report(out, args.preset, records, time.perf_counter() - start)
    print(f"\nReport: {path}")
    print("Plots:  " + "  ".join(str(out / n / p) for n, r in records.items() for p in r["plots"]))
    return path


if __name__ == "__main__":
    main()
