"""Committed studies run in parts (results/<experiment>/<part>): the machinery every study summary shares.

A summary module (`train.experiments.bayes_networks.study`, `train.experiments.denoise.study`) turns the finished
parts' results.json files into a markdown file, a figure and a README block between two marker lines; it declares
those as a `Summary` and its `main` is `studies.main(SUMMARY, argv, __doc__)`: write everything, or with `--check`
write nothing and exit 1 when the markdown or the README differs from what the committed parts give (the figure is
redrawn, never compared: PNG bytes depend on the matplotlib build).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from deeptheory.train.harness import cli
from deeptheory.train.harness.results import read_results


class Summary(NamedTuple):
    prog: str  # the module's command line, e.g. "python -m deeptheory.train.experiments.denoise.study"
    parts: tuple[str, ...]  # the presets whose finished runs are the parts, in order
    results: Path  # default folder of the parts, e.g. Path("results") / "denoise"
    markdown_name: str  # file written beside the parts, e.g. "study.md"
    figure_name: str  # e.g. "study.png"
    begin: str  # the README's opening marker line
    end: str  # its closing marker line
    what: str  # the block's name in messages, e.g. "denoise-study"
    figure_alt: str  # the figure's alt text in the README, e.g. "the denoise study"
    markdown: Callable[[dict], str]  # {part: record} → markdown
    figure: Callable[[dict, Path], Path | None]  # ({part: record}, path) → the drawn figure

    def readme_block(self, records: dict) -> str:
        """The README block, markers included: the markdown, then the figure at its default place."""
        figure = (self.results / self.figure_name).as_posix()
        return f"{self.begin}\n{self.markdown(records)}\n![{self.figure_alt}]({figure})\n{self.end}"

    def replace_block(self, text: str, block: str) -> str:
        """`text` with its begin … end block replaced by `block` (ValueError when the markers are missing)."""
        start, stop = text.find(self.begin), text.find(self.end)
        if start < 0 or stop < start:
            raise ValueError(f"the README has no generated {self.what} block (a line {self.begin!r}, then "
                             f"{self.end!r}); add both markers where it belongs")
        return text[:start] + block + text[stop + len(self.end):]


def load_parts(folder: Path, parts) -> dict:
    """{part: results.json record} of every part in `folder` that has finished, in the order of `parts`."""
    return {part: read_results(folder / part) for part in parts if (folder / part / "results.json").exists()}


def main(summary: Summary, argv=None, description: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=summary.prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=summary.results,
                        help=f"the parts' folder (default {summary.results})")
    parser.add_argument("--readme", type=Path, default=Path("README.md"), help="the README whose block is replaced")
    parser.add_argument("--check", action="store_true",
                        help=f"write nothing; exit 1 when {summary.markdown_name} or the README is stale")
    args = parser.parse_args(argv)
    cli.process_defaults()  # the summaries compute a little theory
    records = load_parts(args.results, summary.parts)
    text = summary.markdown(records)
    readme = args.readme.read_text()
    new_readme = summary.replace_block(readme, summary.readme_block(records))
    markdown_path = args.results / summary.markdown_name
    if args.check:
        stale = [str(path) for path, old, new in ((markdown_path, _read(markdown_path), text),
                                                  (args.readme, readme, new_readme)) if old != new]
        if stale:
            print(f"out of date: {', '.join(stale)}; run {summary.prog}", file=sys.stderr)
            return 1
        return 0
    args.results.mkdir(parents=True, exist_ok=True)
    markdown_path.write_text(text)
    summary.figure(records, args.results / summary.figure_name)
    args.readme.write_text(new_readme)
    print(f"{len(records)}/{len(summary.parts)} parts → {markdown_path}, {summary.figure_name} and {args.readme}")
    return 0


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None
