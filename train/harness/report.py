"""One reporting machinery: experiments declare tables and figures as data; this module draws and writes them.

An experiment's `report(record) -> ReportSpec` reads nothing but its results.json record and returns

- `Table`s (already formatted cells; `agreement()` states theory vs experiment the same way everywhere),
- `Figure`s: panels of `Series` — x/y data plus a *group* (colour and marker: "L = 1", "σ² = 0.5") and a *role*
  (line style: sampled points, theory line, NNGP dotted...), so one legend below the panels names every line
  without covering data,
- a setup paragraph, findings and known deviations (sentences computed from the metrics).

Text (captions, findings, tables) writes subscripts as `T_{best}`: report.md and report.html show T<sub>best</sub>.
Figure text (titles, axis labels, legend entries) uses matplotlib mathtext instead: `$T_{\rm best}$`.

`render_figures` draws the PNGs, `write_report` writes report.md and report.html (same content), and

    python -m deeptheory.train report DIR          # DIR holding results.json, or one folder per experiment

re-draws every figure and rewrites the report from the results.json files alone, without recomputing anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import html
import json
import math
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

__all__ = ["Series", "Panel", "Figure", "Table", "ReportSpec", "agreement", "agrees", "within_error_bar",
           "within_relative", "AGREEMENT_NOTE", "inside_interval",
           "plus_minus", "percent",
           "render_figures", "write_report", "draw"]

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
_LINES = {"-": "solid", "--": "dashed", ":": "dotted", "-.": "dashdot"}


@dataclass
class Series:
    """One drawn thing. kind: points | line | band | hline | vline | stairs.

    group: its colour and marker (a legend entry, in colour); role: its style's meaning (a legend entry in
    black, e.g. "theory"); label: a legend entry of its own (for one-off lines such as "σ²/2").
    """

    x: Sequence = ()
    y: Sequence = ()
    kind: str = "line"
    group: str | None = None
    role: str | None = None
    label: str | None = None
    line: str = "-"  # line style of lines, bands' edges, hline/vline
    marker: bool = False  # lines: also draw the group's marker at the data points
    yerr: Sequence | None = None
    y2: Sequence | None = None  # band: upper edge (y is the lower)
    color: str | None = None  # overrides the group colour
    size: float = 4.0  # marker size
    alpha: float = 1.0
    filled: bool = False  # stairs: a filled histogram
    symbol: str | None = None  # points: this marker instead of the group's (e.g. "x", "|" to mark a value on a curve)


@dataclass
class Panel:
    title: str
    xlabel: str
    ylabel: str
    series: list[Series]
    xscale: str = "linear"
    yscale: str = "linear"
    xticks: Sequence | None = None  # major ticks at exactly these values (minor ticks off)
    ylim: tuple | None = None
    xlim: tuple | None = None


@dataclass
class Figure:
    name: str  # file stem: <name>.png
    caption: str  # one line: what to look for
    panels: list[Panel]
    columns: int | None = None  # panels per row (default: up to 3)
    sequential: bool = False  # groups are ordered values (e.g. σ²): a sequential colour map instead of tab10
    panel_size: tuple = (3.9, 3.1)  # inches per panel


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list]
    note: str = ""


@dataclass
class ReportSpec:
    setup: str  # one paragraph: what was run
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)  # what the numbers say
    deviations: list[str] = field(default_factory=list)  # where theory and experiment part, and known limits
    headline: str = ""  # one line for the summary table at the top of the report


# ------------------------------------------------------------------------------------------------ formatting


def plus_minus(value: float, error: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.{digits}f}" + (f" ± {error:.{digits}f}" if error is not None and math.isfinite(error) else "")


def percent(ratio_minus_one: float, digits: int = 1) -> str:
    return "—" if ratio_minus_one is None or not math.isfinite(ratio_minus_one) else f"{100 * ratio_minus_one:+.{digits}f} %"


AGREEMENT_NOTE = ("Agreement: the prediction lies inside the measurement's 1-SE error bar, within the stated relative "
                  "tolerance of it, or deviates by prediction/measurement − 1 (and by how many SEs).")


def within_error_bar(measured: float, error: float | None, predicted: float) -> bool:
    """|predicted − measured| ≤ error (1 SE); False without a finite error bar."""
    return bool(error is not None and math.isfinite(error) and abs(predicted - measured) <= error)


def within_relative(measured: float, predicted: float, within: float) -> bool:
    """|predicted / measured − 1| ≤ within; False for a measurement of 0."""
    return bool(measured) and bool(abs(predicted / measured - 1) <= within)


def agrees(measured: float, error: float | None, predicted: float, *, within: float) -> bool:
    """The one agreement rule of the reports: inside the 1-SE error bar, or within `within` (relative)."""
    return within_error_bar(measured, error, predicted) or within_relative(measured, predicted, within)


def agreement(measured: float, error: float | None, predicted: float, *, within: float = 0.03) -> str:
    """How a prediction meets a measurement, in the same words everywhere (the rule of `agrees`): inside the error
    bar (1 SE), within `within` (relative), or deviates by x %."""
    if predicted is None or measured is None or not (math.isfinite(predicted) and math.isfinite(measured)):
        return "—"
    if within_error_bar(measured, error, predicted):
        return "inside error bar"
    if within_relative(measured, predicted, within):
        return f"within {100 * within:g} %"
    relative = predicted / measured - 1 if measured else math.inf
    if error is not None and math.isfinite(error) and error > 0:
        return f"deviates {percent(relative)} ({abs(predicted - measured) / error:.1f} SE)"
    return f"deviates {percent(relative)}"


def inside_interval(value: float, interval: Sequence[float]) -> str:
    """Agreement of a prediction with a confidence interval."""
    if value is None or not math.isfinite(value):
        return "—"
    lo, hi = interval
    if lo <= value <= hi:
        return "inside CI"
    return f"outside CI by {value - hi:+.3f}" if value > hi else f"outside CI by {value - lo:+.3f}"


# ------------------------------------------------------------------------------------------------ drawing


def _finite(values) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], dtype=float)


def _group_styles(figure: Figure) -> dict:
    groups = []
    for panel in figure.panels:
        for s in panel.series:
            if s.group is not None and s.group not in groups:
                groups.append(s.group)
    if figure.sequential:
        colors = plt.cm.viridis(np.linspace(0.0, 0.85, max(len(groups), 1)))
    else:
        colors = plt.cm.tab10(np.arange(len(groups)) % 10)
    return {g: (colors[i], MARKERS[i % len(MARKERS)]) for i, g in enumerate(groups)}


def _draw_series(ax, s: Series, styles: dict):
    color, marker = styles.get(s.group, ("0.25", "o"))
    color, marker = s.color or color, s.symbol or marker
    x, y = _finite(s.x), _finite(s.y)
    if s.kind == "points":
        if s.yerr is not None:
            ax.errorbar(x, y, yerr=_finite(s.yerr), fmt=marker, ms=s.size, color=color, capsize=2, lw=1,
                        alpha=s.alpha, zorder=3)
        else:
            ax.plot(x, y, marker, ms=s.size, color=color, alpha=s.alpha, zorder=3, mec="none" if s.size < 2 else None,
                    mew=1.5 if s.symbol else None)
    elif s.kind == "line":
        ax.plot(x, y, linestyle=s.line, marker=marker if s.marker else None, ms=s.size, color=color, lw=1.3,
                alpha=s.alpha, zorder=2)
        if s.yerr is not None:
            ax.errorbar(x, y, yerr=_finite(s.yerr), fmt="none", color=color, capsize=2, lw=1, alpha=s.alpha, zorder=2)
    elif s.kind == "band":
        ax.fill_between(x, y, _finite(s.y2), color=color, alpha=0.18 * s.alpha, lw=0, zorder=1)
    elif s.kind == "hline":
        for value in y:
            ax.axhline(value, color=color, linestyle=s.line, lw=1.0, alpha=s.alpha, zorder=1)
    elif s.kind == "vline":
        for value in x:
            ax.axvline(value, color=color, linestyle=s.line, lw=1.0, alpha=s.alpha, zorder=1)
    elif s.kind == "stairs":
        ax.stairs(y, x, color=color, fill=s.filled, alpha=0.35 if s.filled else s.alpha, linestyle=s.line,
                  lw=1.3, zorder=2 if not s.filled else 1)
    else:
        raise ValueError(f"unknown series kind {s.kind!r}")


def _proxy(s: Series, color="black", marker="o"):
    marker = s.symbol or marker
    if s.kind == "points":
        return Line2D([], [], color=color, marker=marker, linestyle="none", ms=5)
    if s.kind == "band" or (s.kind == "stairs" and s.filled):
        return Patch(color=color, alpha=0.3)
    return Line2D([], [], color=color, linestyle=s.line, marker=marker if s.marker else None, lw=1.3, ms=4)


def _legend_entries(figure: Figure, styles: dict) -> tuple[list, list]:
    handles, labels = [], []
    for group, (color, marker) in styles.items():
        members = [s for p in figure.panels for s in p.series if s.group == group]
        kinds = {s.kind for s in members}
        marked = any(s.kind == "points" and not s.symbol or s.kind == "line" and s.marker for s in members)
        handles.append(Line2D([], [], color=color, marker=marker if marked else None,
                              linestyle="-" if kinds & {"line", "stairs"} else "none", lw=1.3, ms=5))
        labels.append(group)
    seen_roles = set()
    for panel in figure.panels:
        for s in panel.series:
            if s.role and s.role not in seen_roles:
                seen_roles.add(s.role)
                handles.append(_proxy(s))
                labels.append(s.role)
            if s.label and s.label not in labels:
                color, marker = styles.get(s.group, ("0.25", "o"))
                handles.append(_proxy(s, color=s.color or color, marker=marker))
                labels.append(s.label)
    return handles, labels


def _legend_columns(labels: list[str], figure_width: float) -> int:
    """As many legend columns as fit the figure's width (8-point text, ~0.065 in per character, 0.75 in of handle
    and padding per entry); mathtext markup counts as what it renders to, roughly."""
    def width(label):
        return 0.75 + 0.058 * len(label.replace("\\", "").replace("$", "").replace("{", "").replace("}", ""))

    widest = max(width(label) for label in labels)
    return max(1, min(len(labels), int(figure_width * 0.95 // widest)))


def _dodge(figure_panel: Panel, styles: dict) -> dict:
    """Small horizontal offsets for the points-with-error-bars of different groups at the same x (so their error
    bars do not hide each other): a factor on log axes, a shift on linear ones. {group: transform}."""
    groups = [g for g in styles if any(s.group == g and s.kind == "points" and s.yerr is not None
                                       for s in figure_panel.series)]
    if len(groups) < 2:
        return {}
    xs = [v for s in figure_panel.series for v in _finite(s.x) if np.isfinite(v)]
    span = (max(xs) - min(xs)) if xs else 1.0
    out = {}
    for k, g in enumerate(groups):
        offset = k - (len(groups) - 1) / 2
        if figure_panel.xscale == "log":
            factor = math.exp(0.035 * offset)
            out[g] = lambda x, f=factor: x * f
        else:
            out[g] = lambda x, d=0.012 * span * offset: x + d
    return out


_LOG_SUBS = ((), (2.0, 5.0), (2.0, 3.0, 5.0), (2.0, 3.0, 4.0, 5.0, 6.0, 8.0))


def _log_ticks_inside(lo: float, hi: float, subs) -> int:
    """How many of the values m·10^k, m ∈ {1} ∪ subs, lie in [lo, hi]."""
    count = 0
    for k in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1):
        count += sum(lo <= m * 10.0**k <= hi for m in (1.0, *subs))
    return count


def _plain_log_labels(axis, lo: float, hi: float) -> None:
    """Log-axis labels as plain numbers (0.2, not 2×10⁻¹), at least three of them: the powers of ten, and as few
    minor ticks (2 and 5; 2, 3 and 5; ...) labelled as it takes to reach three on the axis's final view [lo, hi]."""
    fmt = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0,)))
    axis.set_major_formatter(fmt)
    labelled = next((subs for subs in _LOG_SUBS if lo > 0 and _log_ticks_inside(lo, hi, subs) >= 3), _LOG_SUBS[-1])
    if labelled:
        axis.set_minor_locator(matplotlib.ticker.LogLocator(subs=labelled))
        axis.set_minor_formatter(fmt)
    else:
        axis.set_minor_locator(matplotlib.ticker.LogLocator(subs=(2.0, 5.0)))
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def draw(figure: Figure, path: Path) -> Path:
    """Draw a Figure to a PNG (one legend for the whole figure, below the panels)."""
    n = len(figure.panels)
    cols = figure.columns or min(n, 3)
    rows = math.ceil(n / cols)
    width, height = figure.panel_size
    styles = _group_styles(figure)
    handles, labels = _legend_entries(figure, styles)
    legend_rows = math.ceil(len(labels) / _legend_columns(labels, width * cols)) if labels else 0
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows + 0.28 * legend_rows + 0.2),
                             squeeze=False, layout="constrained")
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    for ax, panel in zip(axes.ravel(), figure.panels, strict=False):
        dodge = _dodge(panel, styles)
        for s in panel.series:
            if s.group in dodge and s.kind == "points" and s.yerr is not None:
                s = dataclasses.replace(s, x=dodge[s.group](_finite(s.x)))
            _draw_series(ax, s, styles)
        ax.set_xscale(panel.xscale)
        ax.set_yscale(panel.yscale)
        if panel.ylim is not None:
            ax.set_ylim(*panel.ylim)
        if panel.xlim is not None:
            ax.set_xlim(*panel.xlim)
        # the final view (autoscaling is lazy: get_xlim/get_ylim settle it) decides which log ticks get labels
        for axis, scale, (lo, hi) in ((ax.xaxis, panel.xscale, ax.get_xlim()), (ax.yaxis, panel.yscale, ax.get_ylim())):
            if scale == "log":
                _plain_log_labels(axis, min(lo, hi), max(lo, hi))
        if panel.xticks is not None:
            ticks = sorted(set(float(t) for t in panel.xticks))
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            if panel.xlim is not None:
                ax.set_xlim(*panel.xlim)  # set_xticks widens the view to every tick
        ax.set_title(textwrap.fill(panel.title, width=int(width * 10.5)), fontsize=9)
        ax.set_xlabel(panel.xlabel, fontsize=9)
        ax.set_ylabel(panel.ylabel, fontsize=9)
        ax.tick_params(which="both", labelsize=8)
        ax.grid(alpha=0.25, lw=0.5)
    if labels:
        fig.legend(handles, labels, loc="outside lower center", ncols=_legend_columns(labels, width * cols), fontsize=8,
                   frameon=False, handlelength=2.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def render_figures(experiment, record: dict, out_dir: Path) -> list[Path]:
    """Draw every figure the experiment declares for this record; returns their paths."""
    spec = experiment.report(record)
    return [draw(f, Path(out_dir) / f"{f.name}.png") for f in spec.figures]


# ------------------------------------------------------------------------------------------------ writing


DATASET_NAMES = {"fashion-mnist": "Fashion-MNIST", "mnist1d": "MNIST-1D"}


def dataset_label(data: dict | None) -> str:
    """The data set as the summary names it: "Fashion-MNIST", "MNIST-1D (fallback: Fashion-MNIST not found)",
    "synthetic"."""
    if not data:
        return "synthetic"
    name = DATASET_NAMES.get(data.get("dataset"), data.get("dataset"))
    if data.get("note") and data.get("requested") not in (None, data.get("dataset")):
        return f"{name} (fallback: {DATASET_NAMES.get('fashion-mnist')} not found)"
    return name


def _labels_text(data: dict) -> str:
    names = data.get("class_names") or [f"class {c}" for c in data.get("classes", [])]
    values = {"01": ("0", "1"), "pm1": ("−1", "+1"), "centred": ("−½", "+½")}.get(data.get("labels"))
    if values is None or len(names) != 2:
        return f"labels {data.get('labels')}"
    return f"regression targets y = {values[0]} for {names[0]}, y = {values[1]} for {names[1]}"


def _data_sentence(data: dict | None) -> str:
    if not data:
        return "Synthetic data generated by the experiment itself (no data set is read)."
    names = " vs ".join(f"{n} (class {c})" for n, c in zip(data.get("class_names", []), data.get("classes", []),
                                                           strict=False))
    raw = "×".join(map(str, data.get("raw_shape", [])))
    reduce = {"none": f"all {raw} inputs", "pca": f"PCA of {raw} inputs",
              "downsample": f"{raw} images average-pooled"}.get(data.get("reduce"), data.get("reduce"))
    text = (f"{DATASET_NAMES.get(data['dataset'], data['dataset'])} {names}, from `{data['source']}`: "
            f"P = {data['n_train']} training and {data['n_test']} test points, d = {data['input_dim']} ({reduce}"
            f"{', standardised per feature' if data.get('standardize') else ''}), {_labels_text(data)}, "
            f"subset seed {data.get('seed')}, fingerprint `{data.get('fingerprint')}`.")
    if data.get("note"):
        text += f" **Fallback:** {data['note']}."
    return text


def _timing_sentence(record: dict) -> str:
    timing = record.get("timing") or {}
    env = record.get("environment", {})
    where = f"{env.get('device_count', '?')} × {env.get('device_kind', '?')} ({env.get('backend', '?')})"
    from deeptheory.train.harness.progress import format_duration

    compute = format_duration(record.get("wall_time_s", 0.0))
    invocations = timing.get("invocations", [])
    kinds = [e["kind"] for e in invocations]
    if timing.get("last") == "reused":
        text = (f"Metrics of an earlier run with the same config, data, code and package versions, reused without "
                f"recomputing (its compute: {compute}); this invocation took {format_duration(invocations[-1]['wall_s'])}")
    elif timing.get("last") == "reanalysed":
        text = (f"Re-analysed from the checkpoints of an earlier run (its compute: {compute}); this invocation "
                f"took {format_duration(invocations[-1]['wall_s'])}")
    elif len([k for k in kinds if k not in ("reanalysed", "reused")]) > 1:
        text = (f"Resumed: {len(kinds)} invocations ({', '.join(kinds)}), {compute} of compute in all")
    else:
        text = f"Fresh run, {compute}"
    return f"{text}, on {where}, commit `{env.get('git_commit', 'unknown')}`, finished {record.get('finished', '?')}."


_SUBSCRIPT = re.compile(r"_\{([^{}]*)\}")


def _sub(text) -> str:
    """`T_{best}` → `T<sub>best</sub>` (Markdown renders the tag; so does HTML)."""
    return _SUBSCRIPT.sub(r"<sub>\1</sub>", str(text))


_LONE_STAR = re.compile(r"(?<!\*)\*(?!\*)")


def _md(text) -> str:
    """Text for report.md: subscripts as tags, and a lone * (T*(ε), N*(T)) escaped so that two of them never
    italicise what lies between (the report's own **bold** stays)."""
    return _LONE_STAR.sub(r"\\*", _sub(text))


def _md_cell(value) -> str:
    return _md(value).replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> list[str]:
    lines = [f"**{_md(table.title)}**", "", "| " + " | ".join(map(_md_cell, table.columns)) + " |",
             "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in table.rows]
    if table.note:
        lines += ["", _md(table.note)]
    return lines + [""]


def _html_text(text) -> str:
    return _sub(html.escape(str(text)))


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{_html_text(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{_html_text(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    note = f"<p class='note'>{_html_inline(table.note)}</p>" if table.note else ""
    return f"<h4>{_html_text(table.title)}</h4><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"


def _plain(text: str) -> str:
    """Markdown marks removed (for an HTML <title>, which shows text literally)."""
    return _SUBSCRIPT.sub(r"\1", text.replace("**", "").replace("`", ""))


def _html_inline(text: str) -> str:
    """Escape, then the Markdown marks the report uses: **bold**, `code` and subscripts T_{best}."""
    out = _html_text(text)
    parts = out.split("**")
    out = "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))
    parts = out.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


_CSS = """body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;line-height:1.45;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;
text-align:left}th{background:#f3f3f3}figure{margin:1rem 0}figure img{max-width:100%}figcaption{font-size:.9rem;
color:#444}code{background:#f5f5f5;padding:0 .2rem}.note{font-size:.85rem;color:#555}h2{border-bottom:1px solid #ddd}"""


def write_report(out_dir, records: dict, *, preset: str = "", single: bool = False) -> Path:
    """report.md and report.html in out_dir for {experiment name: results.json record}.

    With `single`, out_dir is the experiment's own folder (figures beside the report); otherwise each experiment's
    files are in out_dir/<name>/.
    """
    from deeptheory.train.harness import registry
    from deeptheory.train.harness.progress import format_duration

    out_dir = Path(out_dir)
    specs = {name: registry.get(name).report(record) for name, record in records.items()}
    env = next(iter(records.values())).get("environment", {}) if records else {}
    total = sum(r.get("wall_time_s", 0.0) for r in records.values())
    title = f"deeptheory report — preset `{preset}`" if preset else "deeptheory report"
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    intro = (f"{len(records)} experiment(s), {format_duration(total)} of compute on {env.get('device_count', '?')} × "
             f"{env.get('device_kind', '?')} ({env.get('backend', '?')}), commit `{env.get('git_commit', '?')}`, "
             f"written {when}. Every number and figure below is drawn from the results.json beside it "
             "(`python -m deeptheory.train report` redraws them).")
    md = [f"# {title}", "", intro, ""]
    body_html = [f"<h1>{_html_inline(title)}</h1><p>{_html_inline(intro)}</p>"]
    summary = Table("Summary", ["experiment", "question", "result", "data", "compute"], [
        [registry.get(name).title, registry.get(name).question, specs[name].headline or "—",
         dataset_label(record.get("data")), format_duration(record.get("wall_time_s", 0.0))]
        for name, record in records.items()])
    md += _md_table(summary)
    body_html.append(_html_table(summary))
    for number, (name, record) in enumerate(records.items(), start=1):
        experiment, spec = registry.get(name), specs[name]
        prefix = "" if single else f"{name}/"
        heading = f"{number}. {experiment.title} (`{name}`)"
        blocks = [("Question", experiment.question), ("Data", _data_sentence(record.get("data"))),
                  ("Run", _timing_sentence(record) + f" Full record: [`{prefix}results.json`]({prefix}results.json)."),
                  ("Setup", spec.setup)]
        md += [f"## {heading}", ""] + [f"**{k}.** {_md(v)}\n" for k, v in blocks]
        body_html.append(f"<h2>{_html_inline(heading)}</h2>" + "".join(
            f"<p><strong>{k}.</strong> {_html_inline(v)}</p>" for k, v in blocks))
        for table in spec.tables:
            md += _md_table(table)
            body_html.append(_html_table(table))
        for title_, items in (("What it shows", spec.findings), ("Known deviations and limits", spec.deviations)):
            if items:
                md += [f"**{title_}.**", ""] + [f"- {_md(item)}" for item in items] + [""]
                body_html.append(f"<h4>{title_}</h4><ul>" + "".join(f"<li>{_html_inline(i)}</li>" for i in items)
                                 + "</ul>")
        for figure in spec.figures:
            src = f"{prefix}{figure.name}.png"
            md += [f"![{figure.name}]({src})", "", f"*{_md(figure.caption)}*", ""]
            body_html.append(f"<figure><img src='{html.escape(src)}' alt='{html.escape(figure.name)}'>"
                             f"<figcaption>{_html_inline(figure.caption)}</figcaption></figure>")
    path = out_dir / "report.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(md))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(_plain(title))}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(body_html)}</body></html>\n")
    (out_dir / "report.html").write_text(page)
    return path


def _records(directory: Path) -> tuple[dict, bool]:
    """{name: record} from DIR/results.json (one experiment) or DIR/*/results.json (a reproduce folder)."""
    if (directory / "results.json").exists():
        record = json.loads((directory / "results.json").read_text())
        return {record["experiment"]: record}, True
    from deeptheory.train.harness import registry

    records = {}
    for path in sorted(directory.glob("*/results.json")):
        record = json.loads(path.read_text())
        records[record["experiment"]] = record
    order = list(registry.EXPERIMENTS)
    return dict(sorted(records.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order))), False


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m deeptheory.train report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("directory", type=Path, help="a folder with results.json, or one subfolder per experiment")
    parser.add_argument("--preset", default="", help="preset name shown in the title (default: from the folder)")
    args = parser.parse_args(argv)
    from deeptheory.train.harness import registry

    records, single = _records(args.directory)
    if not records:
        parser.error(f"no results.json in {args.directory} or its subfolders")
    for name, record in records.items():
        folder = args.directory if single else args.directory / name
        paths = render_figures(registry.get(name), record, folder)
        if sorted(str(p.relative_to(folder)) for p in paths) != sorted(record.get("plots", [])):
            record["plots"] = [str(p.relative_to(folder)) for p in paths]
            (folder / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    path = write_report(args.directory, records, preset=args.preset or args.directory.name, single=single)
    print(f"report: {path} (and report.html); figures redrawn from results.json")
    return path


if __name__ == "__main__":
    main()
