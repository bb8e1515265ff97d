"""Progress bars that stay quiet when nobody is watching (no terminal, or not process 0)."""

from __future__ import annotations

import sys

import jax
from tqdm.auto import tqdm

__all__ = ["progress"]


def progress(iterable=None, *, desc: str = "", disable: bool | None = None, **kwargs):
    """tqdm on stderr, disabled when stderr is not a terminal or on processes other than 0."""
    quiet = not sys.stderr.isatty() or jax.process_index() != 0
    return tqdm(iterable, desc=desc, disable=quiet if disable is None else (disable or quiet),
                dynamic_ncols=True, leave=False, **kwargs)
