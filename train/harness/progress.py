"""Progress that reaches whoever is watching: a bar on a terminal, periodic one-line reports in a log.

On a terminal (stderr is a TTY) `progress(...)` is a tqdm bar. Otherwise — output redirected to a file, CI,
`nohup` — it prints one line to stderr when the loop starts, then at most every `DEEPTHEORY_PROGRESS_SECONDS`
(default 20) seconds, and when it ends:

    [nngp_convergence] starting: 24 units
    [nngp_convergence] 12/24 units (50 %), 0:41 elapsed, ~0:41 left
    [nngp_convergence] 24/24 units (100 %), 1:22 elapsed — done

`unit` names what is counted ("units" by default: one unit of checkpointed work; "blocks" of sampler steps,
"steps" of training); the terminal bar counts in the same unit.

Only process 0 reports (multi-host runs would print everything once per process otherwise).
"""

from __future__ import annotations

import os
import sys
import time

import jax
from tqdm.auto import tqdm

__all__ = ["progress", "format_duration"]

INTERVAL_ENV = "DEEPTHEORY_PROGRESS_SECONDS"


def format_duration(seconds: float) -> str:
    """h:mm:ss or m:ss."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class _LogProgress:
    """Iterate and report `desc done/total units (pct), elapsed, ~left` every `interval` seconds on stderr."""

    def __init__(self, iterable, desc: str, total: int | None, initial: int, interval: float, unit: str = "units"):
        self._iterable, self._desc, self._initial, self._interval = iterable, desc, initial, interval
        self._unit = unit
        self._total = total if total is not None else (len(iterable) + initial if hasattr(iterable, "__len__") else None)

    def _line(self, done: int, start: float) -> str:
        elapsed = time.perf_counter() - start
        text = f"[{self._desc}] {done}"
        if self._total:
            text += f"/{self._total} {self._unit} ({100 * done / self._total:.0f} %)"
        else:
            text += f" {self._unit}"
        text += f", {format_duration(elapsed)} elapsed"
        if self._total and self._initial < done < self._total:
            left = elapsed / (done - self._initial) * (self._total - done)
            text += f", ~{format_duration(left)} left"
        return text

    def _start_line(self) -> str:
        if self._initial and self._initial == self._total:
            return f"[{self._desc}] all {self._total} {self._unit} done already (from the checkpoints)"
        if self._initial:
            return f"[{self._desc}] resuming at {self._initial}/{self._total or '?'} {self._unit}"
        return f"[{self._desc}] starting" + (f": {self._total} {self._unit}" if self._total else "")

    def __iter__(self):
        start = last = time.perf_counter()
        done = self._initial
        print(self._start_line(), file=sys.stderr, flush=True)
        for item in self._iterable:
            yield item
            done += 1
            now = time.perf_counter()
            if now - last >= self._interval and done != self._total:
                print(self._line(done, start), file=sys.stderr, flush=True)
                last = now
        print(self._line(done, start) + " — done", file=sys.stderr, flush=True)


class _Silent:
    def __init__(self, iterable):
        self._iterable = iterable

    def __iter__(self):
        return iter(self._iterable)


def _singular(unit: str) -> str:
    """tqdm's rate unit ("block/s"): the first word of `unit`, singular."""
    word = unit.split()[0] if unit.strip() else "it"
    return word[:-1] if word.endswith("s") and len(word) > 1 else word


def progress(iterable, *, desc: str = "", total: int | None = None, initial: int = 0, disable: bool = False,
             unit: str = "units"):
    """Wrap a loop: tqdm on a terminal, periodic log lines otherwise (module docstring); silent if `disable` or
    on processes other than 0. `unit`: what one iteration is, plural ("units", "blocks", "steps")."""
    if disable or jax.process_index() != 0:
        return _Silent(iterable)
    if sys.stderr.isatty():
        return tqdm(iterable, desc=desc, total=total, initial=initial, dynamic_ncols=True, leave=False,
                    unit=_singular(unit))
    interval = float(os.environ.get(INTERVAL_ENV, "20"))
    return _LogProgress(iterable, desc, total, initial, interval, unit)
