"""bayes_networks, step 3: tables, figures and notes from results.json alone."""

from __future__ import annotations

from deeptheory.train.harness.report import (
    AGREEMENT_NOTE,
    Figure,
    Panel,
    ReportSpec,
    Series,
    Table,
    agreement,
    percent,
    plus_minus,
)


def report(record: dict) -> ReportSpec:
    config, m = record["config"], record["metrics"]
    rows = m["rows"]
    P = config["n_train"]
    table = Table("Test loss: sampled posterior vs renormalized theory vs NNGP", [
        "φ", "L", "N", "P/N", "T", "sampled ε_{g}", "theory", "agreement", "NNGP", "NNGP agreement",
        "readout Q: sampled / theory", "R̂", "ESS"], [])
    for r in rows:
        q = r["readout_q"]
        table.rows.append([
            r["activation"], r["depth"], r["width"], f"{r['p_over_n']:g}", f"{r['temperature']:g}",
            plus_minus(r["sampled"], r["error"]), f"{r['theory']:.4f}",
            agreement(r["sampled"], r["error"], r["theory"]),
            f"{r['nngp']:.4f}", agreement(r["sampled"], r["error"], r["nngp"]),
            f"{plus_minus(q['sampled'], q['error'], 3)} / {q['theory']:.3f}", f"{r['diagnostics']['rhat']:.3f}",
            f"{r['diagnostics']['ess']:.0f}"])
    table.note = ("ε_{g} = bias² + variance, averaged over test points; the error is the Monte Carlo standard error "
                  "sd/√ESS. Readout Q: ⟨λ_{L}|v|²/N_{L}⟩ (MLP) or tr Q/n (CNN) against the theory's order parameter. "
                  + AGREEMENT_NOTE + " Tolerance here: 3 %.")
    tables = [table]
    kernel_rows = [r for r in rows if "closer_to_K_R" in r["kernel"]]
    if kernel_rows:
        tables.append(Table("Posterior kernel ⟨q̂ K̂_{L}⟩ against the renormalized kernel K_{R} and the NNGP kernel", [
            "φ", "L", "N", "‖⟨q̂K̂⟩ − K_{R}‖/‖K_{R}‖", "‖⟨q̂K̂⟩ − K‖/‖K_{R}‖", "best scale c in ⟨q̂K̂⟩ ≈ c K", "theory's scale"],
            [[r["activation"], r["depth"], r["width"], f"{r['kernel']['rel_distance_to_K_R']:.3f}",
              f"{r['kernel']['rel_distance_to_nngp']:.3f}", f"{r['kernel']['scale_fit']:.3f}",
              f"{r['kernel']['scale_theory']:.3f}"] for r in kernel_rows]))

    groups = sorted({(r["activation"], r["temperature"]) for r in rows})
    ratios = sorted({r["p_over_n"] for r in rows})
    panels = []
    for act, T in groups:
        series = []
        for depth in config["depths"]:
            sel = [r for r in rows if r["activation"] == act and r["temperature"] == T and r["depth"] == depth]
            if not sel:
                continue
            N = [r["width"] for r in sel]
            g = f"L = {depth}"
            series += [Series(N, [r["sampled"] for r in sel], "points", yerr=[r["error"] for r in sel], group=g,
                              role="sampled (± 1 SE)"),
                       Series(N, [r["theory"] for r in sel], "line", group=g, role="renormalized theory"),
                       Series(N, [r["nngp"] for r in sel], "line", line=":", group=g, role="NNGP (infinite width)")]
        panels.append(Panel(f"{act}, T = {T:g}, P = {P}", "width N", r"test loss $\varepsilon_g$", series,
                            xscale="log", xticks=config["widths"]))
    figures = [Figure("test_loss_vs_width", "Sampled test loss against width, with the renormalized theory (solid) "
                      "and the infinite-width NNGP (dotted): the theory should pass through the error bars where the "
                      "NNGP misses them.", panels)]
    dev_series = []
    for depth in config["depths"]:
        sel = sorted((r for r in rows if r["depth"] == depth), key=lambda r: r["p_over_n"])
        if sel:
            g = f"L = {depth}"
            dev_series += [
                Series([r["p_over_n"] for r in sel], [100 * r["relative_deviation"] for r in sel], "points", group=g,
                       yerr=[100 * r["error"] / r["sampled"] for r in sel], role="renormalized theory"),
                Series([r["p_over_n"] for r in sel], [100 * r["nngp_relative_deviation"] for r in sel], "line",
                       line=":", marker=True, group=g, role="NNGP")]
    dev_series += [Series([min(ratios) / 1.5, max(ratios) * 1.5], [-3, -3], "band", y2=[3, 3], color="0.5",
                          label="±3 %"),
                   Series([], [0.0], "hline", color="black", line="-")]
    figures.append(Figure("relative_error_vs_p_over_n", "Prediction / sampled − 1 against the load P/N (error bars: the "
                          "sampling error): the renormalized theory should stay in the ±3 % band where the NNGP "
                          "leaves it.",
                          [Panel("prediction vs sampling", r"load $P/N$", "prediction / sampled − 1 (%)", dev_series,
                                 xscale="log", xticks=ratios)], panel_size=(5.2, 3.4)))
    q_series = []
    for depth in config["depths"]:
        sel = sorted((r for r in rows if r["depth"] == depth), key=lambda r: r["p_over_n"])
        if sel:
            g = f"L = {depth}"
            q_series += [Series([r["p_over_n"] for r in sel], [r["readout_q"]["sampled"] for r in sel], "points",
                                yerr=[r["readout_q"]["error"] for r in sel], group=g, role="sampled"),
                         Series([r["p_over_n"] for r in sel], [r["readout_q"]["theory"] for r in sel], "line", group=g,
                                role="theory")]
    q_series.append(Series([], [1.0], "hline", color="black", line=":", label="Q = 1 (NNGP)"))
    renorm_panels = [Panel("readout norm vs its order parameter",
                           r"load $P/N$", r"$\langle\lambda_L|v|^2/N_L\rangle$ and $Q_L$", q_series, xscale="log",
                           xticks=ratios)]
    scatter = m.get("kernel_scatter")
    caption = ("Left: the sampled readout norm (points) against the theory's order parameter Q_{L} (solid lines): the "
               "renormalization itself; the NNGP has Q = 1 (dotted).")
    if scatter:
        lo = min(min(scatter["K_R"]), min(scatter["nngp"]))
        hi = max(max(scatter["K_R"]), max(scatter["nngp"]))
        renorm_panels.append(Panel(
            f"{scatter['activation']} L = {scatter['depth']}, N = {scatter['width']}: posterior kernel entries",
            "kernel entry (theory)", r"sampled $\langle\hat q\,\hat K_L\rangle$",
            [Series(scatter["nngp"], scatter["sampled"], "points", color="0.65", size=1.5, label="against NNGP K"),
             Series(scatter["K_R"], scatter["sampled"], "points", color="tab:red", size=1.5,
                    label=r"against $K_R$ (renormalized)"),
             Series([lo, hi], [lo, hi], "line", color="black", line="--", label="y = x")]))
        caption += " Right: " + _scatter_caption(scatter, rows)
    figures.append(Figure("renormalization", caption, renorm_panels))

    summary = m["summary"]
    n = summary["points"]
    findings = [f"Test loss: the renormalized theory meets {summary['theory_meets']}/{n} points inside the error bar "
                f"or within 3 %; the NNGP meets {summary['nngp_meets']}/{n}.",
                f"Readout order parameter (the renormalization of the readout itself): the theory meets "
                f"{summary['readout_q_meets']}/{n} points inside the error bar or within 3 %."]
    if summary["kernel_points"]:
        findings.append(f"The sampled posterior kernel is closer to K_{{R}} than to the NNGP kernel at "
                        f"{summary['kernel_closer_to_K_R']}/{summary['kernel_points']} points.")
    deviations = []
    missed = [r for r in rows if not r["meets"]["theory"]]
    if missed:
        deviations.append("Test loss, beyond 3 % and outside the error bar: " + "; ".join(
            f"{_point(r)}: theory {percent(r['relative_deviation'])} ({r['deviation_in_errors']:.1f}"
            f" SE; bias² sampled {r['bias2']['sampled']:.3f} vs theory {r['bias2']['theory']:.3f}, variance "
            f"{r['variance']['sampled']:.3f} vs {r['variance']['theory']:.3f})" for r in missed) + ".")
        in_bias = [r for r in missed if r["larger_miss"] == "bias2"]
        in_variance = [r for r in missed if r["larger_miss"] == "variance"]

        def at(points, others):
            return "every one of these points" if not others else ", ".join(map(_point, points))

        parts = ([f"in the bias² (the posterior mean) at {at(in_bias, in_variance)}"] if in_bias else []) + (
            [f"in the variance at {at(in_variance, in_bias)}"] if in_variance else [])
        deviations.append("The larger part of the miss is " + "; ".join(parts) + ".")
    q_missed = [r for r in rows if not r["meets"]["readout_q"]]
    if q_missed:
        deviations.append("Readout order parameter, beyond 3 % and outside the error bar: " + "; ".join(
            f"{_point(r)}: theory {r['readout_q']['theory']:.3f} vs sampled {r['readout_q']['sampled']:.3f} ± "
            f"{r['readout_q']['error']:.3f} ({percent(r['readout_q']['relative_deviation'])})"
            for r in q_missed) + ".")
    deviations += _label_variance_note(record, rows)
    if record.get("data", {}) and record["data"].get("input_dim", 784) < 200:
        deviations.append(f"The inputs here are {record['data']['input_dim']}-dimensional; the theory's Gaussian "
                          "equivalence needs an input dimension large compared with P, so larger deviations are "
                          "expected than on full-resolution Fashion-MNIST (d = 784).")
    if not summary["mixed"]:
        deviations.append(f"R̂ reaches {summary['max_rhat']:.3f} (> {summary['rhat_limit']:g}): the slowest point "
                          "may not be fully mixed.")
    headline = f"theory within error or 3 % at {summary['theory_meets']}/{n} points (NNGP {summary['nngp_meets']}/{n})"
    setup = (f"{config['chains']} {config['sampler'].upper()} chains per point sample the posterior "
             f"p(W | D) ∝ exp(−Σ(y − f)²/2T − |W|²/2σ²) of {config['architecture'].upper()}s (weight variance "
             f"σ² = {config['weight_var']:g}) with "
             f"activation(s) {', '.join(config['activations'])}, depths {', '.join(map(str, config['depths']))}, widths "
             f"{', '.join(map(str, config['widths']))} and T ∈ {{{', '.join(f'{t:g}' for t in config['temperatures'])}}}, "
             f"for {config['burn_in_time']:g} time units of burn-in and {config['sample_time']:g} of sampling (step "
             f"{'automatic' if not config['step'] else config['step']}); the test loss, its bias² and variance, the "
             "readout norm and the posterior kernel are compared with the renormalized theory ("
             f"{_variants_text(config, rows)}) and the NNGP on exactly the same train and test sets.")
    return ReportSpec(setup, tables, figures, findings, deviations, headline)


def _point(row) -> str:
    return f"{row['activation']} L = {row['depth']}, N = {row['width']} (P/N = {row['p_over_n']:g})"


def _variants_text(config, rows) -> str:
    """The variant that was used, resolved ("auto" → nested for erf, ...)."""
    used = {}
    for r in rows:
        used.setdefault(r["theory_variant"], []).append(r["activation"])
    text = ", ".join(f"{variant} for {', '.join(sorted(set(acts)))}" for variant, acts in used.items())
    return ("variant auto: " if config["variant"] == "auto" else "variant ") + text


def _scatter_caption(scatter, rows) -> str:
    """What the kernel scatter shows, from its numbers: which point, how far each cloud is from the diagonal, and
    how the sampled kernel scales against K next to the theory's K_R."""
    row = next((r for r in rows if r["activation"] == scatter["activation"] and r["depth"] == scatter["depth"]
                and r["width"] == scatter["width"] and r["temperature"] == scatter["temperature"]), None)
    where = f"{scatter['activation']} L = {scatter['depth']}, N = {scatter['width']}"
    if row is not None:
        where += f", P/N = {row['p_over_n']:g}"
    text = (f"entries of the sampled posterior kernel ⟨q̂K̂⟩ at the smallest width of the largest depth ({where}) "
            "against K_{R} (red) and the NNGP kernel K (grey); dashed: y = x.")
    if row is None or "scale_fit" not in row["kernel"]:
        return text
    k = row["kernel"]
    nearer = "closer to" if k["closer_to_K_R"] else "farther from"
    text += (f" The red cloud is {nearer} the diagonal than the grey one (relative distance "
             f"{k['rel_distance_to_K_R']:.2f} vs {k['rel_distance_to_nngp']:.2f})")
    if k["scale_matches_theory"]:
        return text + (f", and the best scale of the sampled kernel on K, {k['scale_fit']:.2f}, matches K_{{R}}'s "
                       f"{k['scale_theory']:.2f}.")
    flatter = k["scale_fit"] < k["scale_theory"]
    return text + (f", but it does not lie on it: the sampled kernel is about {k['scale_fit']:.2f} K where K_{{R}} is "
                   f"about {k['scale_theory']:.2f} K, so the red cloud is {'flatter' if flatter else 'steeper'} than "
                   f"the diagonal — at this point the theory {'overstates' if flatter else 'understates'} the "
                   "renormalization of the kernel.")


def _label_variance_note(record, rows) -> list[str]:
    """Why ε_g can exceed the label variance: it counts the posterior variance, and the zero-mean prior is far
    from 0/1 labels of mean ½."""
    data = record.get("data") or {}
    if data.get("labels") != "01":
        return []
    above = [r for r in rows if r["sampled"] > 0.25]
    if not above:
        return []
    low = min(above, key=lambda r: r["sampled"])
    return [f"ε_{{g}} exceeds the label variance 0.25 at {len(above)}/{len(rows)} points (e.g. {_point(low)}: "
            f"{low['sampled']:.3f} = bias² {low['bias2']['sampled']:.3f} + variance "
            f"{low['variance']['sampled']:.3f}): it counts the posterior variance of f as well as the posterior "
            "mean's error, and the prior has mean 0 while the 0/1 labels have mean ½ (predicting ½ everywhere would "
            "score 0.25, predicting 0 would score 0.5)."]
