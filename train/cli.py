"""What every experiment script shares: presets, command-line overrides, the runtime, the output folder.

An experiment module defines

    @dataclass(frozen=True)
    class Config:  ...fields with defaults...;  def validate(self): raise ConfigError(...)
    PRESETS = {"quick": Config(...), "paper": Config(...)}
    def run(config, out_dir: Path) -> Outcome(metrics, plots, summary)

and ends with `if __name__ == "__main__": cli.main(NAME, Config, PRESETS, run)`. Then

    python -m deeptheory.train.<name> --preset quick|paper --out DIR [--field value ...] [--distributed]

works, every field is an override flag (tuples as comma-separated lists), an invalid value gives one
clear error, and rerunning the same command on the same --out resumes (the experiment checkpoints
into DIR/checkpoints) while a different config on the same --out is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax

from deeptheory.train.results import to_jsonable, write_results

__all__ = ["ConfigError", "Outcome", "parse_config", "init_runtime", "execute", "main"]

_CLUSTER_ENV = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


class ConfigError(ValueError):
    """An invalid configuration value; the message says which field, what it got and what it needs."""


class Outcome(NamedTuple):
    metrics: dict
    plots: list
    summary: dict  # a few headline numbers for the report


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def require_binary_task(config) -> None:
    """The data fields every binary-task experiment shares: dataset, classes, n_train, n_test."""
    require(config.dataset in ("auto", "fashion-mnist", "mnist1d"),
            f"dataset must be auto, fashion-mnist or mnist1d; got {config.dataset!r}")
    require(len(config.classes) == 2 and config.classes[0] != config.classes[1],
            f"classes must be two different labels; got {config.classes}")
    require(config.n_train >= 2 and config.n_test >= 1,
            f"need n_train >= 2 and n_test >= 1; got {config.n_train}, {config.n_test}")


def _field_types(config_cls) -> dict:
    return typing.get_type_hints(config_cls)


def _parse_value(text: str, kind, name: str):
    origin = typing.get_origin(kind)
    if origin is tuple:
        (item, *_rest) = typing.get_args(kind)
        return tuple(_parse_value(t.strip(), item, name) for t in text.split(",") if t.strip())
    if origin in (typing.Union, types.UnionType):
        options = [k for k in typing.get_args(kind) if k is not type(None)]
        if text.lower() == "none" and len(options) < len(typing.get_args(kind)):
            return None
        return _parse_value(text, options[0], name)
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        return kind(text)
    except ValueError:
        raise ConfigError(f"--{name.replace('_', '-')}: cannot read {text!r} as {kind.__name__}") from None


def parse_config(config_cls, presets: dict, argv=None, *, description: str = ""):
    """(config, args) from --preset plus one override flag per dataclass field."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(presets), default="quick", help="base configuration")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default runs/<experiment>/<preset>)")
    parser.add_argument("--distributed", action="store_true",
                        help="call jax.distributed.initialize() (automatic under SLURM / Open MPI with >1 task)")
    types_ = _field_types(config_cls)
    for field in dataclasses.fields(config_cls):
        parser.add_argument(f"--{field.name.replace('_', '-')}", dest=field.name, default=None, metavar="VALUE",
                            help=f"{types_[field.name]} (preset value used when omitted)")
    args = parser.parse_args(argv)
    overrides = {}
    try:
        for field in dataclasses.fields(config_cls):
            text = getattr(args, field.name)
            if text is not None:
                overrides[field.name] = _parse_value(text, types_[field.name], field.name)
        config = dataclasses.replace(presets[args.preset], **overrides)
        config.validate()
    except ConfigError as e:
        parser.error(str(e))
    return config, args


def init_runtime(distributed: bool = False) -> None:
    """Float64 for theory (models ask for float32 explicitly) and multi-host when asked.

    `jax.distributed.initialize()` auto-detects SLURM, Open MPI and TPU pods; it runs when
    --distributed is given or when the cluster environment reports more than one task.
    """
    jax.config.update("jax_enable_x64", True)
    in_cluster = any(int(os.environ.get(v, "1")) > 1 for v in _CLUSTER_ENV)
    if distributed or in_cluster or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize()


def _claim_out_dir(out_dir: Path, name: str, config) -> None:
    """Write out/config.json, or check that the run already there has the same config."""
    record = {"experiment": name, "config": to_jsonable(config)}
    path = out_dir / "config.json"
    if path.exists():
        previous = json.loads(path.read_text())
        if previous != record:
            changed = sorted(
                k for k in record["config"] if previous.get("config", {}).get(k) != record["config"][k]
            )
            raise ConfigError(
                f"{out_dir} holds a {previous.get('experiment')} run with a different config "
                f"(fields differing: {', '.join(changed) or 'experiment'}); resume it with the same "
                "flags, or choose another --out"
            )
        return
    if jax.process_index() == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n")


def execute(name: str, config, run: Callable, out_dir: Path) -> dict:
    """Run (or resume) an experiment into out_dir and write results.json; returns the record."""
    out_dir = Path(out_dir)
    _claim_out_dir(out_dir, name, config)
    start = time.perf_counter()
    outcome = run(config, out_dir)
    wall = time.perf_counter() - start
    metrics = dict(outcome.metrics, summary=outcome.summary)
    path = write_results(out_dir, name=name, config=config, metrics=metrics, wall_time_s=wall, plots=outcome.plots)
    return json.loads(path.read_text())


def main(name: str, config_cls, presets: dict, run: Callable, argv=None, description: str = "") -> dict:
    config, args = parse_config(config_cls, presets, argv, description=description)
    init_runtime(args.distributed)
    out_dir = args.out or Path("runs") / name / args.preset
    try:
        record = execute(name, config, run, out_dir)
    except ConfigError as e:
        sys.exit(f"error: {e}")
    if jax.process_index() == 0:
        print(f"{name}: results in {out_dir / 'results.json'}")
        for plot in record["plots"]:
            print(f"  plot: {out_dir / plot}")
        print("  " + json.dumps(record["metrics"]["summary"]))
    return record
