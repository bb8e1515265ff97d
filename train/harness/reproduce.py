"""Run every registered experiment with one preset and write DIR/report.md (and report.html).

    python -m deeptheory.train reproduce --preset quick --out runs/quick     # `make demo`: CPU, minutes
    python -m deeptheory.train reproduce --preset paper --out runs/paper     # GPU-sized
    python -m deeptheory.train reproduce --dataset mnist1d --out runs/quick-mnist1d   # force the fallback data

Before any work, every experiment's config is built, its data are loaded, and its folder DIR/<name> is checked:
a folder holding a run with another config or other data (say MNIST-1D results, now that Fashion-MNIST is
installed) stops everything with one message listing the differences, so results are never mixed. Rerunning on
the same DIR resumes each experiment from its checkpoints; a finished experiment whose config, data, code and
package versions are unchanged is not recomputed (its metrics are reused; the report is rewritten).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import jax

from deeptheory.train.harness import cli, registry
from deeptheory.train.harness.progress import format_duration
from deeptheory.train.harness.report import write_report
from deeptheory.train.harness.results import read_results


def _config(experiment, preset: str, overrides: dict):
    config = experiment.presets[preset]
    fields = {f.name for f in dataclasses.fields(config)}
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if k in fields and v is not None})
    config.validate()
    return config


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m deeptheory.train reproduce", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--preset", choices=("quick", "paper"), default="quick", help="preset of every experiment")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default runs/<preset>)")
    parser.add_argument("--only", nargs="+", choices=list(registry.EXPERIMENTS), metavar="NAME",
                        help=f"run only these experiments (of {', '.join(registry.EXPERIMENTS)})")
    parser.add_argument("--dataset", choices=("auto", "fashion-mnist", "mnist1d"), default=None,
                        help="data set of the real-data experiments (default: the presets' auto = Fashion-MNIST when "
                             "installed, else MNIST-1D)")
    parser.add_argument("--data-dir", default=None, help="a folder of MNIST-format IDX files (default: "
                                                         "$DEEPTHEORY_DATA_DIR, then the Debian package)")
    parser.add_argument("--distributed", action="store_true", help="call jax.distributed.initialize()")
    args = parser.parse_args(argv)
    cli.init_runtime(args.distributed)
    out = args.out or Path("runs") / args.preset
    names = args.only or list(registry.EXPERIMENTS)
    overrides = {"dataset": args.dataset, "data_dir": args.data_dir}

    fresh = f"`make demo OUT={out}-2`, or `--out {out}-2`" if args.preset == "quick" else f"`--out {out}-2`"
    plan, problems = {}, []
    for name in names:  # everything that can be refused is refused before any work starts
        experiment = registry.get(name)
        try:
            config = _config(experiment, args.preset, overrides)
            data = cli.load_data(experiment, config)
            cli.check_claim(out / name, cli.claim_record(experiment, config, data), fresh_folder=fresh)
            plan[name] = (experiment, config, data)
        except cli.ConfigError as e:
            problems.append(f"{name}: {e}".replace("\n", "\n    "))
    if problems:
        print("error: nothing was run:\n  " + "\n  ".join(problems), file=sys.stderr)
        raise SystemExit(2)

    start, records = time.perf_counter(), {}
    for i, (name, (experiment, config, data)) in enumerate(plan.items(), start=1):
        source = "" if data is None else f" on {data.info['dataset']}" + (" (fallback)" if data.info.get("note") else "")
        print(f"[{i}/{len(plan)} {name}] preset {args.preset}{source} → {out / name}", flush=True)
        records[name] = cli.execute(experiment, config, out / name, data=data)
        timing = records[name]["timing"]
        print(f"[{i}/{len(plan)} {name}] {timing['last']}, {format_duration(timing['invocations'][-1]['wall_s'])}",
              flush=True)
    if jax.process_index() != 0:
        return out / "report.md"
    for name in registry.EXPERIMENTS:  # experiments run earlier into the same folder stay in its report
        if name not in records and (out / name / "results.json").exists():
            records[name] = read_results(out / name)
    records = {name: records[name] for name in registry.EXPERIMENTS if name in records}
    path = write_report(out, records, preset=args.preset)
    print(f"\nReport: {path} (also {path.with_suffix('.html')}); {format_duration(time.perf_counter() - start)} "
          f"in this invocation")
    for name, (_, _, data) in plan.items():
        if data is not None and data.info.get("note"):
            print(f"Note ({name}): {data.info['note']}.")
    return path


if __name__ == "__main__":
    main()
