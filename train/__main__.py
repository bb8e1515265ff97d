"""One command for everything in train/:

    python -m deeptheory.train <experiment> --preset quick --out DIR [--field value ...]
    python -m deeptheory.train reproduce --preset quick --out runs/quick     # every experiment, then the report
    python -m deeptheory.train report DIR                                    # redraw figures and report from results.json
    python -m deeptheory.train list                                          # the experiments and what each asks

`python -m deeptheory.train <experiment> --help` lists every flag with its meaning, unit, valid range and presets.
"""

from __future__ import annotations

import sys

from deeptheory.train.harness import registry

_TOOLS = ("reproduce", "report", "list")


def _usage() -> str:
    return (__doc__ + "\nexperiments: " + ", ".join(registry.EXPERIMENTS) + "\n").lstrip()


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        raise SystemExit(0 if argv else 2)
    command, rest = argv[0], argv[1:]
    if command == "reproduce":
        from deeptheory.train.harness import reproduce

        reproduce.main(rest)
    elif command == "report":
        from deeptheory.train.harness import report

        report.main(rest)
    elif command == "list":
        for name in registry.EXPERIMENTS:
            experiment = registry.get(name)
            print(f"{name}: {experiment.title}\n    {experiment.question}")
    elif command in registry.EXPERIMENTS:
        from deeptheory.train.harness import cli

        cli.main(registry.get(command), rest)
    else:
        print(f"python -m deeptheory.train: error: unknown command {command!r}; use one of "
              f"{', '.join((*registry.EXPERIMENTS, *_TOOLS))}", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
