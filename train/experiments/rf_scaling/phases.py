"""Where the optimizer-dependence claims can hold: a phase diagram of the predicted α shift (natural gradient − GD)
over the spectral exponent s and the step budget T, from the sampling-free theory alone (`predict`).

The claims (Ramani & Jain 2026, abstract only): (1) at s ≈ 1 natural gradient reaches α ≈ 0.31 where GD has ≈ 0.12;
(2) the shift grows over most of the s range and peaks near s ≈ 1.5; (3) it is still large at s = 2. The abstract
leaves the target exponent, the budget, the N window and the learning-rate tuning open; here the window and the
tuning are the experiment's (`BASE`), and the diagram scans the other two and NG's damping; the preset
`config.PRESETS["claims"]` is chosen from it (README):

- left: the shift α_NG − α_GD over (s, T) at the preset's target exponent a = s + shift;
- right: at s = 1, α_GD and α_NG over (a − s, T), with the region where both claims of (1) hold (within ±0.03);
- a table: the shift over s for several dampings ε of natural gradient, at T = 4.

    python -m deeptheory.train.experiments.rf_scaling.phases     # results/rf_scaling/phases.{json,md,png}, ~3 min

The JSON holds every number the figure and the markdown show; `--check` recomputes nothing and fails when the
markdown is not what the JSON gives.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from deeptheory.theory.random_features import loglog_slope, power_law_spectrum, power_law_target, time_bottleneck
from deeptheory.train.experiments.rf_scaling.config import Config
from deeptheory.train.experiments.rf_scaling.optimizers import SPECS
from deeptheory.train.experiments.rf_scaling.predict import equivalent_spectrum, tuned_losses
from deeptheory.train.harness.progress import progress

OUT = Path("results") / "rf_scaling"
BUDGETS = (1, 2, 3, 4, 6, 8, 16, 32, 64, 128, 256, 512)
S_VALUES = (0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
SHIFTS = (0.0, 0.1, 0.15, 0.2, 0.25, 0.31, 0.5, 1.0)
DAMPINGS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)  # natural gradient's ε: it sets where NG itself becomes budget-limited
# the scan's fixed settings: the experiment's window, tuning and ε; the s-scan at a = s + 0.31 (the converged
# exponent of claim 1) and the damping scan at T = 4 (`steps`)
BASE = Config(dim=4096, widths=(8, 16, 32, 64, 128, 256), steps=4, target_shift=0.31)
CLAIM_GD, CLAIM_NG, CLAIM_TOLERANCE = 0.12, 0.31, 0.03


def _alpha(name: str, spectra, config) -> list[float]:
    """(len(BUDGETS),) α over config.widths of one optimizer, tuned per (N, T) over the multipliers."""
    tuned, _ = tuned_losses(SPECS[name], spectra, config, BUDGETS)  # (W, budgets)
    n = np.asarray(config.widths, np.float64)
    return [float(loglog_slope(n, tuned[:, j])) for j in range(len(BUDGETS))]


def _spectra(config, s: float, target_shift: float):
    lam, v2 = power_law_spectrum(config.dim, s), power_law_target(config.dim, s + target_shift)
    return [equivalent_spectrum(lam, v2, N, config) for N in config.widths]


def compute(config) -> dict:
    left, right = {}, {}
    steps = [("s", s) for s in S_VALUES] + [("shift", a) for a in SHIFTS]
    for kind, value in progress(steps, desc="rf_scaling phases", unit="spectra"):
        if kind == "s":
            spectra = _spectra(config, value, config.target_shift)
            left[value] = {"gd": _alpha("gd", spectra, config), "natural": _alpha("natural", spectra, config),
                           "natural_by_damping": {str(eps): _alpha("natural", spectra, dataclasses.replace(
                               config, damping=eps)) for eps in DAMPINGS}}
        else:
            spectra = _spectra(config, 1.0, value)
            right[value] = {name: _alpha(name, spectra, config) for name in ("gd", "natural")}
    n_star = {s: [int(time_bottleneck(power_law_spectrum(config.dim, s), T, learning_rate=1.0)) for T in BUDGETS]
              for s in S_VALUES}
    return {"config": {"dim": config.dim, "widths": list(config.widths), "target_shift": config.target_shift,
                       "lr_multipliers": list(config.lr_multipliers), "damping": config.damping},
            "budgets": list(BUDGETS), "s_values": list(S_VALUES), "shifts": list(SHIFTS), "dampings": list(DAMPINGS),
            "steps": config.steps,
            "shift_vs_s": {str(s): v for s, v in left.items()}, "at_s1": {str(a): v for a, v in right.items()},
            "n_star_gd": {str(s): v for s, v in n_star.items()}}


def _claims(record: dict) -> list[str]:
    B, S = record["budgets"], record["s_values"]
    lines = []
    for j, T in enumerate(B):
        shift = [record["shift_vs_s"][str(s)]["natural"][j] - record["shift_vs_s"][str(s)]["gd"][j] for s in S]
        peak = S[int(np.argmax(shift))]
        grows = sum(b > a for a, b in zip(shift, shift[1:], strict=False)) >= len(S) // 2
        large_at_2 = shift[-1] >= 0.5 * max(shift) > 0.02
        lines.append(f"| {T} | " + " | ".join(f"{x:+.3f}" for x in shift)
                     + f" | {peak:g} | {'yes' if grows else 'no'} | {'yes' if large_at_2 else 'no'} |")
    return lines


def markdown(record: dict) -> str:
    c, B, S = record["config"], record["budgets"], record["s_values"]
    widths = ", ".join(map(str, c["widths"]))
    lines = [f"Predicted with no feature draw (`theory.rf_dynamics`), D = {c['dim']}, N ∈ {{{widths}}}, "
             f"learning-rate multipliers {c['lr_multipliers']} tuned per (N, T), NG damping ε = {c['damping']:g}. "
             "Regenerate: `python -m deeptheory.train.experiments.rf_scaling.phases`.", "",
             f"**Shift α_NG − α_GD over (T, s)** at a = s + {c['target_shift']:g}; claim (2): peak near s = 1.5 and "
             "growth over most of the range; claim (3): the shift at s = 2 at least half the peak.", "",
             "| T | " + " | ".join(f"s = {s:g}" for s in S) + " | peak at s | grows | large at s = 2 |",
             "|" + "---|" * (len(S) + 4), *_claims(record), "",
             f"**At s = 1: α_GD / α_NG over (T, a − s)**; claim (1): α_GD ≈ {CLAIM_GD}, α_NG ≈ {CLAIM_NG} "
             f"(✓ both within ±{CLAIM_TOLERANCE}).", "",
             "| T | " + " | ".join(f"a − s = {a:g}" for a in record["shifts"]) + " |",
             "|" + "---|" * (len(record["shifts"]) + 1)]
    for j, T in enumerate(B):
        cells = []
        for a in record["shifts"]:
            gd, ng = record["at_s1"][str(a)]["gd"][j], record["at_s1"][str(a)]["natural"][j]
            ok = abs(gd - CLAIM_GD) <= CLAIM_TOLERANCE and abs(ng - CLAIM_NG) <= CLAIM_TOLERANCE
            cells.append(f"{gd:.2f} / {ng:.2f}{' ✓' if ok else ''}")
        lines.append(f"| {T} | " + " | ".join(cells) + " |")
    j = B.index(record["steps"]) if record["steps"] in B else 0
    lines += ["", f"**Where the shift peaks depends on natural gradient's damping ε** (at T = {B[j]}, a = s + "
              f"{c['target_shift']:g}): α_NG − α_GD per s, and the s of the peak.", "",
              "| ε | " + " | ".join(f"s = {s:g}" for s in S) + " | peak at s |", "|" + "---|" * (len(S) + 2)]
    for eps in record["dampings"]:
        shift = [record["shift_vs_s"][str(s)]["natural_by_damping"][str(eps)][j] - record["shift_vs_s"][str(s)]["gd"][j]
                 for s in S]
        lines.append(f"| {eps:g} | " + " | ".join(f"{x:+.3f}" for x in shift) + f" | {S[int(np.argmax(shift))]:g} |")
    lines += ["", "N*_GD(T) (modes GD learns within T steps at ηλ₁ = 1) per s: "
              + "; ".join(f"s = {s}: {record['n_star_gd'][str(s)]}" for s in S) + "."]
    return "\n".join(lines) + "\n"


def figure(record: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    B, S, A = record["budgets"], record["s_values"], record["shifts"]
    shift = np.array([[record["shift_vs_s"][str(s)]["natural"][j] - record["shift_vs_s"][str(s)]["gd"][j] for s in S]
                      for j in range(len(B))])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    image = left.pcolormesh(np.arange(len(S) + 1), np.arange(len(B) + 1), shift, cmap="viridis")
    for j in range(len(B)):
        left.plot(np.argmax(shift[j]) + 0.5, j + 0.5, "w*", ms=8)
    left.set(xticks=np.arange(len(S)) + 0.5, xticklabels=[f"{s:g}" for s in S], yticks=np.arange(len(B)) + 0.5,
             yticklabels=B, xlabel="spectral exponent s", ylabel="step budget T",
             title=f"α_NG − α_GD (a = s + {record['config']['target_shift']:g}; ★ peak)")
    fig.colorbar(image, ax=left)
    gd = np.array([[record["at_s1"][str(a)]["gd"][j] for a in A] for j in range(len(B))])
    ng = np.array([[record["at_s1"][str(a)]["natural"][j] for a in A] for j in range(len(B))])
    image = right.pcolormesh(np.arange(len(A) + 1), np.arange(len(B) + 1), ng / gd, cmap="magma")
    ok = (np.abs(gd - CLAIM_GD) <= CLAIM_TOLERANCE) & (np.abs(ng - CLAIM_NG) <= CLAIM_TOLERANCE)
    for j, i in zip(*np.nonzero(ok), strict=True):
        right.plot(i + 0.5, j + 0.5, "c*", ms=10)
    right.set(xticks=np.arange(len(A)) + 0.5, xticklabels=[f"{a:g}" for a in A], yticks=np.arange(len(B)) + 0.5,
              yticklabels=B, xlabel="target shift a − s", ylabel="step budget T",
              title=f"s = 1: α_NG/α_GD (★ α_GD ≈ {CLAIM_GD}, α_NG ≈ {CLAIM_NG})")
    fig.colorbar(image, ax=right)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deeptheory.train.experiments.rf_scaling.phases",
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true", help="recompute nothing; exit 1 when phases.md is stale")
    args = parser.parse_args(argv)
    config = BASE
    if args.check:
        record = json.loads((args.out / "phases.json").read_text())
        if (args.out / "phases.md").read_text() != markdown(record):
            print(f"out of date: {args.out / 'phases.md'}; run {parser.prog}", file=sys.stderr)
            return 1
        return 0
    import jax

    jax.config.update("jax_enable_x64", True)
    record = compute(config)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "phases.json").write_text(json.dumps(record, indent=1) + "\n")
    (args.out / "phases.md").write_text(markdown(record))
    figure(record, args.out / "phases.png")
    print(f"phase diagram → {args.out / 'phases.md'}, phases.json, phases.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
