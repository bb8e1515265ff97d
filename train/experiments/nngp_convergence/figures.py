"""nngp_convergence, step 3: tables, figures and notes from results.json alone."""

from __future__ import annotations

import numpy as np

from deeptheory.train.harness.report import AGREEMENT_NOTE, Figure, Panel, ReportSpec, Series, Table, agreement, plus_minus


def report(record: dict) -> ReportSpec:
    config, m = record["config"], record["metrics"]
    A, L, W, ladder = config["activations"], config["depths"], config["widths"], m["draw_ladder"]
    D = ladder[-1]
    rows = {(r["activation"], r["depth"], r["width"]): r for r in m["rows"]}
    depth_group = {d: f"L = {d}" for d in L}

    def err(a, d, w, draws=D):
        return rows[a, d, w]["kernel_error"][str(draws)]

    def guide(a, d):
        """c·N^-1/2 through the data: c the median of error·√N over the widths (not pinned at one point)."""
        c = m["per_activation_depth"][f"{a}_L{d}"]["guide_c"]
        return [c / np.sqrt(w) for w in W]

    table = Table("Kernel error slope and GP test loss", [
        "activation", "L", f"slope of error vs N (D = {D})", "theory", "agreement", "NNGP GP ε_{g}",
        f"ensemble-kernel GP ε_{{g}} (N = {W[-1]})", "ensemble / NNGP − 1"], [])
    for a in A:
        for d in L:
            fit = m["error_slope_vs_width"][f"{a}_L{d}"]
            nngp, emp = m["nngp_gp"][f"{a}_L{d}"]["total"], rows[a, d, W[-1]]["gp_test_loss_empirical"]
            table.rows.append([a, d, plus_minus(fit["slope"], fit["stderr"], 3), "−0.5",
                               agreement(fit["slope"], fit["stderr"], -0.5, within=0.05), f"{nngp:.4f}",
                               f"{emp:.4f}", f"{100 * (emp / nngp - 1):+.2f} %"])
    table.note = ("Slope: least-squares fit of log error against log N with its standard error; the theory's −0.5 "
                  "holds exactly at L = 1 and asymptotically at L > 1 (where an O(1/N) bias adds). " + AGREEMENT_NOTE
                  + " Tolerance here: 5 %.")

    figures = [
        Figure("kernel_error_vs_width", f"Relative error of the {D}-network mean kernel against N, one point per width "
               "(a single draw of D networks, so it scatters around the trend): the points should follow the dotted "
               "slope −1/2 lines (each drawn through the median of error·√N of its depth); a depth > 1 may bend above "
               "its line at small N (the O(1/N) bias).",
               [Panel(f"{a}: mean of {D} networks", "width N", r"$\|\bar K - K_{\rm NNGP}\|_F\,/\,\|K_{\rm NNGP}\|_F$",
                      [s for d in L for s in (
                          Series(W, [err(a, d, w) for w in W], "points", group=depth_group[d], role="measured"),
                          Series(W, guide(a, d), "line", group=depth_group[d], line=":",
                                 role=r"$\propto N^{-1/2}$ (theory), through the median"))],
                      xscale="log", yscale="log", xticks=W) for a in A]),
        Figure("kernel_error_collapse", "Every (width N, draws D) pair against D·N: at L = 1 all points fall on one "
               "line c/√(D·N) — the readout kernel is an unbiased average of N·D independent units.",
               [Panel(f"{a}: every (N, D)", "D · N", "relative kernel error",
                      [Series([w * dd for w in W for dd in ladder], [err(a, d, w, dd) for w in W for dd in ladder],
                              "points", group=depth_group[d], role="measured", size=3) for d in L]
                      + [_collapse_line(m["collapse_c"][a], L[0], W, ladder)], xscale="log", yscale="log") for a in A]),
        Figure("gp_test_loss_vs_width", f"Test loss of GP regression (T = {config['temperature']}) with the mean kernel of "
               f"{D} networks (solid) against the NNGP predictor's (dotted, same colour): look for each solid line "
               f"settling onto its dotted line as N grows (within {100 * m['gp_gap_at_max_width']:.1f} % at "
               f"N = {W[-1]}); the wiggles at small N are the error of a {D}-network mean kernel.",
               [Panel(f"{a}: GP test loss", "width N", r"test loss $\varepsilon_g$ = bias² + variance",
                      [s for d in L for s in (
                          Series(W, [rows[a, d, w]["gp_test_loss_empirical"] for w in W], "line", marker=True,
                                 group=depth_group[d], role="ensemble kernel (measured)"),
                          Series([], [m["nngp_gp"][f"{a}_L{d}"]["total"]], "hline", group=depth_group[d], line=":",
                                 role="NNGP (theory)"))], xscale="log", xticks=W) for a in A]),
    ]
    slopes = m["error_slope_vs_width"]
    fits = ", ".join(f"{k.replace('_L', ' L=')} {v['slope']:.3f}" for k, v in slopes.items())
    worst_gp = m["gp_gap_at_max_width"]
    findings = [f"Fitted slopes of the kernel error against N (theory −0.5): {fits}.",
                f"At N = {W[-1]} GP regression with the {D}-network kernel is within {100 * worst_gp:.1f} % of the NNGP "
                "predictor's test loss for every activation and depth."]
    deviations = [line for a in A for line in _shallow_slope_note(a, L[0], W, ladder,
                                                                  m["per_activation_depth"][f"{a}_L{L[0]}"],
                                                                  slopes[f"{a}_L{L[0]}"])]
    if "deep_over_shallow_error" in m:
        deep = m["deep_over_shallow_error"]
        deviations.append(f"At depth L = {deep['depth']} the error sits above the depth-{deep['shallow_depth']} "
                          "collapse line (median ratio "
                          + ", ".join(f"{a} ×{v:.2f}" for a, v in deep["median_ratio"].items())
                          + "): a finite deep network's kernel carries an O(1/N) bias and larger per-unit fluctuations; "
                          "this is expected, not a failure of the NNGP limit.")
    deviations += _label_variance_note(record, m["nngp_gp"], A, L)
    headline = f"slopes {min(v['slope'] for v in slopes.values()):.2f} … {max(v['slope'] for v in slopes.values()):.2f} " \
               f"(theory −0.5); GP loss within {100 * worst_gp:.1f} % of NNGP at N = {W[-1]}"
    setup = (f"For each activation ({', '.join(A)}), depth L ∈ {{{', '.join(map(str, L))}}} and width N ∈ "
             f"{{{', '.join(map(str, W))}}}, {D} networks are drawn from the prior (standard parameterisation, σ_{{w}}² = "
             f"{config['weight_var']}, σ_{{b}}² = {config['bias_var']}) and the mean of their readout-layer kernels "
             f"σ²/N φ(h^L)φ(h^L)ᵀ on the {config['n_train']} + {config['n_test']} points is compared with the NNGP kernel "
             f"(relative Frobenius error, for D = {', '.join(map(str, ladder))}); GP regression at "
             f"T = {config['temperature']} with that mean kernel is compared with the NNGP predictor.")
    return ReportSpec(setup, [table], figures, findings, deviations, headline)


def _shallow_slope_note(activation, depth, widths, ladder, summary, fit) -> list[str]:
    """At L = 1 the −1/2 is exact for the expected error (E K̂ = K_NNGP); a fitted slope outside its error bar is
    then the scatter of single draws. Say so with the numbers (from analyse): the spread of error·√(D·N) over the
    widths and the slopes fitted at the other D of the ladder."""
    if depth != 1 or len(widths) < 3 or not fit["stderr"] > 0 or abs(fit["slope"] + 0.5) <= fit["stderr"]:
        return []  # inside its error bar, or a fit too short to have one
    D = ladder[-1]
    spread, scatter = summary["scaled_error_spread"], summary["scaled_error_spread"]["half_range_percent"]
    smaller, others = list(summary["slopes_at_smaller_draws"]), list(summary["slopes_at_smaller_draws"].values())
    z = abs(fit["slope"] + 0.5) / fit["stderr"]
    text = (f"{activation}, L = 1: fitted slope {fit['slope']:.3f} ± {fit['stderr']:.3f}, {z:.1f} standard errors "
            "from −1/2, although at L = 1 the −1/2 is exact for the expected error (E K̂ = K_{NNGP}: no bias). Each "
            f"width contributes a single draw of the {D}-network mean: error·√(D·N) scatters by ±{scatter:.0f} % "
            f"over the widths ({spread['min']:.2f}–{spread['max']:.2f}), and the slope follows that scatter")
    if others:
        text += (f" (fitted at D = {', '.join(map(str, smaller))} of the same draws: "
                 f"{', '.join(f'{s:.2f}' for s in others)}, mean {np.mean(others):.3f})")
    verdict = ("sampling scatter, not a bias; more draws or widths narrow it" if z < 3 else
               "more than single-draw scatter usually gives; rerun with more --draws or --widths to tell")
    return [f"{text}: {verdict}."]


def _label_variance_note(record, nngp_gp, A, L) -> list[str]:
    """Why a GP test loss can exceed the label variance: ε_g = bias² + posterior variance, and the zero-mean prior
    is far from labels of mean ½."""
    data = record.get("data") or {}
    if data.get("labels") not in ("01", "pm1"):
        return []
    var, second = (0.25, 0.5) if data["labels"] == "01" else (1.0, 1.0)
    above = [(a, d) for a in A for d in L if nngp_gp[f"{a}_L{d}"]["total"] > var]
    if not above:
        return []
    parts = ", ".join(f"{a} L = {d}: {nngp_gp[f'{a}_L{d}']['total']:.3f} = bias² {nngp_gp[f'{a}_L{d}']['bias2']:.3f} "
                      f"+ variance {nngp_gp[f'{a}_L{d}']['variance']:.3f}" for a, d in above)
    worse = [f"{a} L = {d}" for a, d in above if nngp_gp[f"{a}_L{d}"]["total"] > second]
    text = (f"The NNGP test loss exceeds the label variance {var:g} ({parts}): ε_{{g}} counts the posterior variance of f "
            "as well as the posterior mean's error, and the prior has mean 0 (no bias: σ_{b}² = "
            f"{record['config'].get('bias_var', 0):g}) while the labels do not")
    if data["labels"] == "01":
        text += " (0/1, mean ½)"
    if worse:
        text += (f"; at P = {data.get('n_train')} the NNGP predictor of {', '.join(worse)} is even worse than "
                 f"predicting 0 (ε = E y² = {second:g})")
    return [text + "."]


def _collapse_line(c, depth, widths, ladder) -> Series:
    """c/√(D·N) with c (from analyse) the median of error·√(D·N) at the shallowest depth."""
    dn = np.asarray([w * d for w in widths for d in ladder], float)
    grid = np.geomspace(dn.min(), dn.max(), 20)
    return Series(grid.tolist(), (c / np.sqrt(grid)).tolist(), "line", line="--", color="black",
                  label=r"$c/\sqrt{D N}$" + f" (theory, L = {depth})")
