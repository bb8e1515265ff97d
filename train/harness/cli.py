"""What every experiment shares: its description, presets, command line, data record, output folder and timing.

An experiment package (`train/experiments/<name>/`) defines a frozen-dataclass `Config` whose fields are declared
with `param(default, help, unit=..., choices=..., valid=...)`, presets `{"quick": Config(...), "paper": ...}`, and

    EXPERIMENT = Experiment(name, title, question, Config, PRESETS, run, analyse, report, load_data=None)

with three steps, each a function of what the previous one wrote:
- `run(config, data, out_dir) -> raw`: the measurements (sampling, training, random draws) as arrays, every piece
  checkpointed under out_dir/checkpoints, so an interrupted run resumes and a finished one returns at once;
- `analyse(config, data, raw) -> metrics`: the theory's predictions and every summary number (fits, agreement),
  a JSON-able dict; no randomness that run did not record;
- `report(record) -> train.harness.report.ReportSpec`: tables and figures drawn from results.json alone, so
  `python -m deeptheory.train report DIR` redraws them without recomputing anything.
A new experiment is added by one line in `train.harness.registry.EXPERIMENTS` (and its package in pyproject.toml's
package list; `tests/test_packaging.py` says so if it is missing). Then

    python -m deeptheory.train <name> --preset quick --out DIR [--field value ...] [--distributed]

works: every field is a flag whose help names its meaning, unit, valid range or choices and preset values; values
may be negative (`--target-shift -0.25`); flags are never abbreviated; a bad value is one line on stderr (exit
status 2) naming the flag.

The output folder is claimed only after the config is valid and the data are loaded: DIR/config.json records the
config *and the data actually loaded* (name, source, sizes, preprocessing, a fingerprint of the arrays).
Rerunning into DIR resumes from DIR/checkpoints; a different config or different data is refused, naming what
differs, so results of two runs are never mixed. A finished run rerun with the same config, data, code and package
versions reuses its metrics (nothing is recomputed; figures and report are redrawn); with other code or versions
it re-analyses the finished checkpoints. results.json keeps a ledger of the invocations (fresh, resumed, re-analysed,
reused) and the compute time of those that did the work.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import difflib
import json
import os
import sys
import time
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
from jax.experimental import multihost_utils

from deeptheory.train.data import DATASETS, DataError
from deeptheory.train.harness.results import code_fingerprint, package_versions, read_results, to_jsonable, write_results

__all__ = ["BinaryTaskFields", "ConfigError", "Experiment", "param", "require", "require_binary_task", "flag",
           "parse_config", "init_runtime", "process_defaults", "avoid_known_xla_hangs", "quiet_idle_blas_threads",
           "openblas_thread_timeout", "compilation_cache_dir", "execute", "claim_record", "check_claim"]

_CLUSTER_ENV = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


class ConfigError(ValueError):
    """An invalid configuration value or unusable data; the message says what was wrong and how to fix it."""


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One experiment: what it asks, its config and presets, how it runs, and how its results are reported."""

    name: str
    title: str  # a heading, e.g. "NNGP kernels of finite networks"
    question: str  # one or two sentences: what the experiment asks
    Config: type
    presets: dict
    run: Callable  # (config, data, out_dir) -> raw measurements (checkpointed, resumable)
    analyse: Callable  # (config, data, raw) -> metrics (a JSON-able dict; theory included)
    report: Callable  # (record) -> train.harness.report.ReportSpec, from results.json alone
    load_data: Callable | None = None  # (config) -> data with `.info` (a dict recorded with the config)
    description: str = ""  # the module docstring, shown by --help


def param(default, help: str, *, unit: str = "", choices=None, valid: str = ""):  # noqa: A002 (argparse's word)
    """A config field with its documentation: `n_train: int = param(64, "training points P", valid="≥ 2")`.

    `valid`: the values `validate` accepts, in words ("≥ 2", "each > 0, increasing"); every field that is neither
    free text nor a choice states one, and --help shows it."""
    return dataclasses.field(default=default, metadata={"help": help, "unit": unit, "choices": choices,
                                                        "valid": valid})


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclasses.dataclass(frozen=True)
class BinaryTaskFields:
    """The data fields of every experiment on a real binary task (`train.data.load_task`). An experiment's Config
    inherits them — they come first on the command line — and redeclares one only to change its default
    (`n_test: int = param(256, "test points", valid="≥ 1")`); its `validate` calls `require_binary_task`."""

    dataset: str = param("auto", "data set (auto: Fashion-MNIST when installed, else MNIST-1D)", choices=DATASETS)
    data_dir: str = param("", "folder of MNIST-format IDX files (empty: $DEEPTHEORY_DATA_DIR, then Debian's)")
    classes: tuple[int, ...] = param((0, 1), "the two classes (Fashion-MNIST 0 = T-shirt/top, 1 = Trouser), labels "
                                     "0/1", valid="two different class indices, 0–9")
    n_train: int = param(64, "training points P", valid="≥ 2")
    n_test: int = param(64, "test points", valid="≥ 1")


def require_binary_task(config) -> None:
    """The checks of the `BinaryTaskFields`: dataset, classes, n_train, n_test."""
    require(config.dataset in DATASETS, f"--dataset must be one of {', '.join(DATASETS)}; got {config.dataset!r}")
    require(len(config.classes) == 2 and config.classes[0] != config.classes[1],
            f"--classes must be two different class indices; got {_shown(config.classes)}")
    require(config.n_train >= 2, f"--n-train must be >= 2; got {config.n_train}")
    require(config.n_test >= 1, f"--n-test must be >= 1; got {config.n_test}")


# ------------------------------------------------------------------------------------------------ command line


def flag(name: str) -> str:
    """The command-line flag of a config field: n_train → --n-train (what error messages name)."""
    return "--" + name.replace("_", "-")


_flag = flag


def _type_text(kind) -> str:
    origin = typing.get_origin(kind)
    if origin is tuple:
        return f"comma-separated {_type_text(typing.get_args(kind)[0])}s"
    if origin in (typing.Union, types.UnionType):
        options = [k for k in typing.get_args(kind) if k is not type(None)]
        return _type_text(options[0]) + " or none"
    return {bool: "true/false", int: "integer", float: "number", str: "text"}.get(kind, getattr(kind, "__name__", "value"))


def _shown(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "(empty)"
    if value == "":
        return '""'
    return str(value)


def _help_text(field, kind, presets: dict) -> str:
    meta = field.metadata
    text = meta.get("help", "")
    if meta.get("unit"):
        text += f" [{meta['unit']}]"
    choices = meta.get("choices")
    text += f"; {_type_text(kind)}" + (f", {meta['valid']}" if meta.get("valid") else "")
    text += f", among {', '.join(map(str, choices))}" if choices else ""
    # the study's parts (presets study-*) would make every flag's help a paragraph: their configs are in config.py
    values = {name: getattr(preset, field.name) for name, preset in presets.items() if not name.startswith("study-")}
    if len(set(map(repr, values.values()))) == 1:
        text += f"; every preset: {_shown(next(iter(values.values())))}"
    else:
        text += "; " + ", ".join(f"{name}: {_shown(v)}" for name, v in values.items())
    return text.replace("%", "%%")


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
        raise ConfigError(f"{_flag(name)}: cannot read {text!r} as {_type_text(kind)}") from None


class _Parser(argparse.ArgumentParser):
    """argparse that reports an error in one line (the full usage of 30 flags would bury it)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (--help lists every flag)\n")


def _join_values(argv: list[str], value_flags: set[str]) -> list[str]:
    """`--flag VALUE` → `--flag=VALUE`, so values that start with '-' (negative numbers) are read as values."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] in value_flags and i + 1 < len(argv):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def parse_config(config_cls, presets: dict, argv=None, *, prog: str | None = None, description: str = ""):
    """(config, args) from --preset plus one override flag per dataclass field."""
    parser = _Parser(prog=prog, description=description, allow_abbrev=False,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=list(presets), default="quick",
                        help="base configuration every other flag overrides (default: quick); study-*: the parts "
                             "of a committed study (results/<experiment>/<part>; README); the flags below list the "
                             "values of the others")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default runs/<experiment>/<preset>); rerun into it to resume")
    parser.add_argument("--distributed", action="store_true",
                        help="call jax.distributed.initialize() (automatic under SLURM / Open MPI with >1 task)")
    kinds = typing.get_type_hints(config_cls)
    fields = dataclasses.fields(config_cls)
    for field in fields:
        parser.add_argument(_flag(field.name), dest=field.name, default=None, metavar="VALUE",
                            help=_help_text(field, kinds[field.name], presets))
    value_flags = {"--preset", "--out"} | {_flag(f.name) for f in fields}
    argv = list(sys.argv[1:] if argv is None else argv)
    args, unknown = parser.parse_known_args(_join_values(argv, value_flags))
    if unknown:
        flag = unknown[0].split("=")[0]
        close = difflib.get_close_matches(flag, sorted(value_flags | {"--distributed"}), n=1, cutoff=0.6)
        parser.error(f"unknown flag {flag}" + (f"; did you mean {close[0]}?" if close else ""))
    overrides = {}
    try:
        for field in fields:
            text = getattr(args, field.name)
            if text is not None:
                overrides[field.name] = _parse_value(text, kinds[field.name], field.name)
        config = dataclasses.replace(presets[args.preset], **overrides)
        config.validate()
    except ConfigError as e:
        parser.error(str(e))
    return config, args


CACHE_ENV = "DEEPTHEORY_JAX_CACHE"


def compilation_cache_dir() -> Path | None:
    """Where the command line keeps JAX's persistent compilation cache: $DEEPTHEORY_JAX_CACHE (`off` disables it),
    else $XDG_CACHE_HOME/deeptheory/jax, else ~/.cache/deeptheory/jax. None when disabled, or when the user set
    JAX's own JAX_COMPILATION_CACHE_DIR (then JAX uses that, untouched)."""
    chosen = os.environ.get(CACHE_ENV, "")
    if chosen.lower() in ("off", "0", "none", "false") or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    if chosen:
        return Path(chosen).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "deeptheory" / "jax"


# Two XLA:CPU hangs (every thread parked on a futex, 0 % CPU, forever) that our sweeps hit on jaxlib 0.10.2:
# - the ynn fusion (XNNPACK) on some broadcast-multiply-reduce kernels, also in 0.11.0 (jax-ml/jax#39257): the d = 8
#   denoise study part hung after ~80 s of compute in 4 of 4 runs; a reduction of it finished with the fusion off;
# - the concurrency-optimised scheduler: the d = 16 part's reduction still hung with the ynn fusion off and with
#   XNNPACK off entirely, and finished with this scheduler off (alone or with the ynn fusion off).
HANG_WORKAROUNDS = {"0.10.2": ("--xla_cpu_experimental_ynn_fusion_type=",
                               "--xla_cpu_enable_concurrency_optimized_scheduler=false"),
                    "0.11.0": ("--xla_cpu_experimental_ynn_fusion_type=",)}


def avoid_known_xla_hangs() -> list[str]:
    """Add `HANG_WORKAROUNDS` for the installed jaxlib to XLA_FLAGS, each unless XLA_FLAGS already sets that flag
    (a user's choice stands). XLA reads XLA_FLAGS when JAX first computes, so this must run before that. Returns
    the flags it added."""
    import jaxlib

    flags = os.environ.get("XLA_FLAGS", "")
    added = [f for f in HANG_WORKAROUNDS.get(jaxlib.__version__, ()) if f.split("=")[0] not in flags]
    if added:
        os.environ["XLA_FLAGS"] = " ".join([flags, *added]).strip()
    return added


# JAX runs its CPU LAPACK calls (Cholesky, triangular solves, eigh) on SciPy's OpenBLAS, whose idle threads keep
# spinning for 2^28 cycles (~0.1 s) after every call by default, on the cores XLA's own threads compute on next. On
# 2 cores a nested fc_theory gradient (P = 1000, L = 3) took 132–147 ms instead of 113 ms, and a warm nested call
# 2.0 s instead of 1.6 s with 2^20 cycles (~0.4 ms: 2^16–2^24 were as good; 2^4 let the threads fall asleep inside a
# lone Cholesky, 40 % slower). OpenBLAS reads the variable once, when it loads: JAX loads it at its first linear
# algebra (SciPy's, not NumPy's own copy, which is loaded with NumPy and keeps its default).
BLAS_THREAD_TIMEOUT = ("OPENBLAS_THREAD_TIMEOUT", "20")


def quiet_idle_blas_threads() -> bool:
    """Let SciPy's OpenBLAS threads sleep ~0.4 ms after a call instead of spinning ~0.1 s (`BLAS_THREAD_TIMEOUT`),
    unless the variable is set (a user's choice stands). Returns whether OpenBLAS runs, or will run, with the
    variable's value: False when SciPy's linear algebra had already loaded it with another (OpenBLAS reads the
    variable once), or when that cannot be asked of the loaded library."""
    name, value = BLAS_THREAD_TIMEOUT
    os.environ.setdefault(name, value)
    if "scipy.linalg" not in sys.modules:
        return True
    running = openblas_thread_timeout()
    return running is not None and str(running) == os.environ[name]


def openblas_thread_timeout() -> int | None:
    """The thread timeout (log2 cycles; 0: OpenBLAS's default, 28) of the SciPy OpenBLAS loaded in this process, or
    None where it cannot be asked (not loaded yet, no /proc/self/maps, no such symbol)."""
    import ctypes

    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "libscipy_openblas-" in line})
        return int(ctypes.CDLL(paths[0]).openblas_thread_timeout()) if paths else None
    except (OSError, AttributeError):
        return None


def process_defaults() -> None:
    """What every process of ours sets before JAX first computes (commands, benchmarks, study summaries, tests): the
    known XLA hangs avoided (`avoid_known_xla_hangs`) and OpenBLAS's idle threads quieted (`quiet_idle_blas_threads`);
    a value the user set stands."""
    avoid_known_xla_hangs()
    quiet_idle_blas_threads()


def init_runtime(distributed: bool = False) -> None:
    """What a command (`python -m deeptheory.train ...`) sets up before any work; importing the package sets nothing.

    - JAX's persistent compilation cache (`compilation_cache_dir`): a second run of the same command loads its
      compiled programs instead of compiling them again (the quick rf_scaling: 17 s of compute first, 8 s after).
      Every program is cached: on CPU ours compile in 0.05–2 s each, below JAX's default 1 s threshold. A cached
      program is the same executable, so results are bitwise those of a compiled one.
    - Multi-host when asked: `jax.distributed.initialize()` auto-detects SLURM, Open MPI and TPU pods; it runs when
      --distributed is given or when the cluster environment reports more than one task.
    - `process_defaults`: on jaxlib 0.10.2 and 0.11.0, the XLA:CPU features that hang some of our sweeps off
      (`avoid_known_xla_hangs`); OpenBLAS's idle threads sleep instead of spinning between LAPACK calls
      (`quiet_idle_blas_threads`).
    The float64 of an experiment is scoped to `execute`, not set here."""
    process_defaults()
    cache = compilation_cache_dir()
    if cache is not None:
        jax.config.update("jax_compilation_cache_dir", str(cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    in_cluster = any(int(os.environ.get(v, "1")) > 1 for v in _CLUSTER_ENV)
    if distributed or in_cluster or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize()


# ------------------------------------------------------------------------------------------------ output folder


def load_data(experiment: Experiment, config):
    """The experiment's data, or None; unusable data are a ConfigError (one line to the user)."""
    if experiment.load_data is None:
        return None
    try:
        return experiment.load_data(config)
    except (DataError, ValueError) as e:
        raise ConfigError(f"data: {e}") from None


def claim_record(experiment: Experiment, config, data) -> dict:
    return {"experiment": experiment.name, "config": to_jsonable(config),
            "data": None if data is None else to_jsonable(data.info)}


def _short(value, width: int = 60) -> str:
    text = _shown(tuple(value)) if isinstance(value, list | tuple) else repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _differences(previous: dict, record: dict) -> list[str]:
    """One short line per difference: config fields by their flag (`--draws: 4 → 8`), data fields as
    `data.<field>` (what was loaded, not a flag)."""
    out = []
    if previous.get("experiment") != record["experiment"]:
        out.append(f"experiment: {previous.get('experiment')!r} → {record['experiment']!r}")
    for part in ("config", "data"):
        old, new = previous.get(part), record[part]
        if old == new:
            continue
        if not isinstance(old, dict) or not isinstance(new, dict):
            out.append(f"{part}: {'not recorded (an older version of the code)' if old is None else 'recorded'} → "
                       f"{'none' if new is None else 'recorded'}")
            continue
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                name = flag(key) if part == "config" else f"data.{key}"
                out.append(f"{name}: {_short(old.get(key, '(absent)'))} → {_short(new.get(key, '(absent)'))}")
    return out


def check_claim(out_dir: Path, record: dict, *, fresh_folder: str | None = None) -> bool:
    """True if out_dir already holds this run (resume), False if it holds none; ConfigError if another.

    The refusal lists every difference, one per line, and suggests a fresh folder: `fresh_folder` (the caller's
    own wording, e.g. train.harness.reproduce's `make demo OUT=...`), else `--out <out_dir>-2`."""
    path = Path(out_dir) / "config.json"
    if not path.exists():
        return False
    previous = json.loads(path.read_text())
    differences = _differences(previous, record)
    if differences:
        fresh = fresh_folder or f"--out {out_dir}-2"
        raise ConfigError(
            f"{out_dir} holds a {previous.get('experiment')} run with a different config or data:\n"
            + "".join(f"  {line}\n" for line in differences)
            + f"Resume it with the same flags and data, write to a fresh folder ({fresh}), or delete {out_dir}."
        )
    return True


def _claim(out_dir: Path, record: dict) -> None:
    if not check_claim(out_dir, record) and jax.process_index() == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(record, indent=2) + "\n")


def _checkpoint_mtime(out_dir: Path) -> float | None:
    folder = out_dir / "checkpoints"
    times = [f.stat().st_mtime for f in folder.rglob("*") if f.is_file()] if folder.is_dir() else []
    return max(times, default=None)


def _open_ledger(out_dir: Path, kind: str) -> list[dict]:
    """DIR/timing.json: one entry per invocation (started, kind, wall_s). An entry left without wall_s was
    interrupted; its time is estimated from its last checkpoint. A fresh run starts a new ledger."""
    path = out_dir / "timing.json"
    ledger = [] if kind == "fresh" or not path.exists() else json.loads(path.read_text())
    last_save = _checkpoint_mtime(out_dir)
    for entry in ledger:
        if entry.get("wall_s") is None:
            began = datetime.datetime.fromisoformat(entry["started"]).timestamp()
            entry.update(kind="interrupted", wall_s=max(0.0, (last_save or began) - began))
    ledger.append({"started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "kind": kind,
                   "wall_s": None})
    if jax.process_index() == 0:
        path.write_text(json.dumps(ledger, indent=2) + "\n")
    return ledger


NO_COMPUTE = ("reanalysed", "reused")  # invocations that redo no sampling or training: not compute time


def _close_ledger(out_dir: Path, ledger: list[dict], wall: float) -> dict:
    """Record this invocation's wall time; compute_s sums the invocations that did work (not re-analyses or
    reuses)."""
    ledger[-1]["wall_s"] = wall
    if jax.process_index() == 0:
        (out_dir / "timing.json").write_text(json.dumps(ledger, indent=2) + "\n")
    compute = sum(e["wall_s"] for e in ledger if e["kind"] not in NO_COMPUTE)
    return {"compute_s": compute, "last": ledger[-1]["kind"], "invocations": ledger}


def _reusable(out_dir: Path, record: dict) -> bool:
    """True when out_dir/results.json holds the finished metrics of this very run: the same config and data
    (`record`), the same code (`results.code_fingerprint`) and the same package versions. Then rerunning would
    only recompute the same numbers (the analysis of finished checkpoints is deterministic), so it is skipped."""
    try:
        previous = read_results(out_dir)
    except (OSError, ValueError):
        return False
    env = previous.get("environment") or {}
    return (previous.get("config") == record["config"] and previous.get("data") == record["data"]
            and previous.get("metrics") is not None and env.get("code_fingerprint") == code_fingerprint()
            and env.get("packages") == package_versions())


def execute(experiment: Experiment, config, out_dir, *, data=None) -> dict:
    """Run (or resume) an experiment into out_dir, write results.json and its figures; returns the record.

    `data`: already-loaded data (train.harness.reproduce loads them once, before claiming any folder); None loads them.
    """
    from deeptheory.train.harness import report

    out_dir = Path(out_dir)
    config.validate()
    data = load_data(experiment, config) if data is None else data
    record = claim_record(experiment, config, data)
    # Pin the fingerprint now (it is cached): the code this process imported, not what is on disk when a long run
    # writes its results — a run started before an edit would otherwise be recorded, and later reused, as the new code.
    code_fingerprint()
    # Multi-host: process 0 decides and writes (claim, ledger); the others read what it wrote after a barrier, so
    # every process agrees on the run's kind. The folder must be on a file system all hosts share.
    if jax.process_index() == 0:
        _claim(out_dir, record)
        checkpoints = _checkpoint_mtime(out_dir) is not None
        finished = checkpoints and (out_dir / "results.json").exists()
        kind = ("reused" if _reusable(out_dir, record) else "reanalysed") if finished else (
            "resumed" if checkpoints else "fresh")
        ledger = _open_ledger(out_dir, kind)
    _barrier("deeptheory.train.harness.cli.execute: claimed")
    if jax.process_index() != 0:
        check_claim(out_dir, record)
        ledger = json.loads((out_dir / "timing.json").read_text())
    start = time.perf_counter()
    if ledger[-1]["kind"] == "reused":  # the finished metrics of this very run: nothing to recompute
        metrics = read_results(out_dir)["metrics"]
    else:
        # Theory is float64 whatever the flag (theory._checks), but hands float32 back when the flag is off; an
        # experiment keeps those float64 results (and its NumPy float64 analysis) by running with the flag on.
        # Models and training ask for float32 explicitly. Scoped: the caller's flag is restored afterwards.
        with jax.enable_x64(True):
            raw = experiment.run(config, data, out_dir)
            metrics = experiment.analyse(config, data, raw)
    timing = _close_ledger(out_dir, ledger, time.perf_counter() - start)
    record = dict(record, metrics=to_jsonable(metrics))
    if jax.process_index() == 0:
        plots = report.render_figures(experiment, record, out_dir)
    else:
        plots = [out_dir / f"{figure.name}.png" for figure in experiment.report(record).figures]
    write_results(out_dir, name=experiment.name, config=config, metrics=record["metrics"],
                  wall_time_s=timing["compute_s"], plots=plots, data=record["data"], timing=timing)
    return read_results(out_dir)  # write_results returns on every process only once the file is written


def _barrier(name: str) -> None:
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def _fail(prog: str, message: str) -> typing.NoReturn:
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(experiment: Experiment, argv=None) -> dict[str, Any]:
    prog = f"python -m deeptheory.train {experiment.name}"
    config, args = parse_config(experiment.Config, experiment.presets, argv, prog=prog,
                                description=experiment.description)
    init_runtime(args.distributed)
    out_dir = args.out or Path("runs") / experiment.name / args.preset
    try:
        record = execute(experiment, config, out_dir)
    except ConfigError as e:
        _fail(prog, str(e))
    if jax.process_index() == 0:
        from deeptheory.train.harness import report

        path = report.write_report(out_dir, {experiment.name: record}, preset=args.preset, single=True)
        timing = record["timing"]
        print(f"{experiment.name}: {timing['last']} run, {timing['compute_s']:.0f} s of compute; "
              f"results in {out_dir / 'results.json'}; report {path}")
    return record
