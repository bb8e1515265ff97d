"""denoise, step 3: tables, figures and notes from results.json alone (no theory, no sampling: the T*(ε) lines
and the particle histograms are metrics)."""

from __future__ import annotations

import numpy as np

from deeptheory.train.experiments.denoise.config import PRIORS, case_label
from deeptheory.train.harness.report import AGREEMENT_NOTE, Figure, Panel, ReportSpec, Series, Table, agreement

LABELS = {name: spec.label for name, spec in PRIORS.items()}


def _pm(value, se, scale=1.0, digits=2, unit=""):
    """value ± SE (scaled), or the value alone without an SE, or — without a value."""
    if value is None:
        return "—"
    text = f"{scale * value:+.{digits}f}" if unit == " %" else f"{scale * value:.{digits}f}"
    return text + (f" ± {scale * se:.{digits}f}" if se is not None else "") + unit


def report(record: dict) -> ReportSpec:
    config, m = record["config"], record["metrics"]
    cases = [(p, d) for p in config["priors"] for d in config["dims"] if d >= PRIORS[p].min_dim]
    # a part may train models only (no depth curves), or draw depth curves only
    sections = ([_case_sections(config, m, cases)] if cases else []) + (
        [_trained_section(config, m["trained"])] if m["trained"] else [])
    return ReportSpec(" ".join(p.setup for p in sections), [t for p in sections for t in p.tables],
                      [f for p in sections for f in p.figures], [x for p in sections for x in p.findings],
                      [x for p in sections for x in p.deviations], "; ".join(p.headline for p in sections))


def _case_sections(config: dict, m: dict, cases: list) -> ReportSpec:
    """The depth curves, MSE-vs-N study and particles: their setup, tables, figures, notes and headline."""
    S, times, rows = config["sigma2s"], m["times"], m["depth_curves"]
    by = {(r["prior"], r["dim"], r["sigma2"]): r for r in rows}
    s_groups = {s: f"σ² = {s:g}" for s in S}
    eps, tolerance, summary = config["eps"], m["t_star_tolerance"], m["summary"]
    depth_table = Table("The best flow time against T*(ε) and σ²/2", [
        "prior", "d", "σ²", "T_{best} ± SE", "T*(ε)", "agreement", "T_{best}/T*(ε)", "T_{best}/(σ²/2)"], [])
    for r in rows:
        depth_table.rows.append([
            LABELS[r["prior"]], r["dim"], f"{r['sigma2']:g}", f"{r['t_best']:.3f} ± {r['t_best_se']:.3f}",
            "—" if r["t_star_theory"] is None else f"{r['t_star_theory']:.3f}",
            agreement(r["t_best"], r["t_best_se"], r["t_star_theory"], within=tolerance),
            _pm(r["t_best_over_t_star"], r["t_best_over_t_star_se"]),
            _pm(r["t_best_over_half_sigma2"], r["t_best_over_half_sigma2_se"])])
    depth_table.note = ("T = depth · α ε is the flow time; T_{best} minimises the prompt-mean MSE (parabolic refinement; "
                        f"SEs from a bootstrap over prompts, {m['t_best_bootstrap']['resamples']} resamples). "
                        "T*(ε) = σ²/2 + (ε/2) ln(1 + σ²/s₀) with s₀ the prior variance "
                        "(Gaussian) or the component variance (mixtures); the circle, a one-dimensional support, has "
                        "no such law (s₀ = 0 off the support sends it to infinity). "
                        + AGREEMENT_NOTE + f" Tolerance here: {100 * tolerance:g} %.")
    mse_table = Table("The two-stage estimator at its best depth against Bayes and the comparators (per coordinate, "
                      "relative to the Bayes MSE on the same tokens)", [
        "prior", "d", "σ²", "best MSE", "Bayes MSE (same tokens)", "excess over Bayes", "gain over depth 0",
        "gain over Tweedie–KDE (best h²)", "gain over blurring mean shift", "oracle particles: excess",
        "oracle / (A-17) C/N", "oracle flow + Stage 2"], [])
    for r in rows:
        theory = r["oracle_particles_excess_theory"]
        mse_table.rows.append([
            LABELS[r["prior"]], r["dim"], f"{r['sigma2']:g}", f"{r['mse_best']:.4f}", f"{r['bayes_realised']:.4f}",
            _pm(r["excess_over_bayes_realised"], r["excess_over_bayes_realised_se"], 100, 1, " %"),
            _pm(r["gain_over_depth0"], r["gain_over_depth0_se"], 100, 1, " %"),
            _pm(r["gain_over_kde_best"], r["gain_over_kde_best_se"], 100, 1, " %"),
            _pm(r["gain_over_blurring"], r["gain_over_blurring_se"], 100, 1, " %"),
            _pm(r["oracle_particles_excess"], r["oracle_particles_excess_se"], 100, 1, " %"),
            "—" if theory is None else _pm(r["oracle_particles_excess"] / theory, r["oracle_particles_excess_se"] / theory),
            f"{r['mse_oracle_flow']:.4f}"])
    mse_table.note = ("Gains: the comparator's MSE minus the two-stage best MSE, over the Bayes MSE (positive: the "
                      "two-stage estimator is better). Oracle particles: Stage 2 reading out N fresh prior draws "
                      "instead of the flowed tokens — the part of the excess that finite N leaves even with a perfect "
                      "Stage 1; (A-17) is its large-N law C/N for the Gaussian prior, shown as measured / law only "
                      "where it applies (N ≥ 10 B^d, `stage2_asymptotic_particles`). ± is a bootstrap SE over the "
                      f"{config['prompts']} prompts of a cell.")
    slope_table = Table("Slope of T_{best} against σ²", ["prior", "d", "measured slope", "T*(ε) law over the grid",
                                                      "ε-corrected measured slope", "σ²/2 law"],
                        [[LABELS[s["prior"]], s["dim"], f"{s['slope']:.3f}",
                          "—" if s["theory_slope"] is None else f"{s['theory_slope']:.3f}",
                          "—" if s["slope_eps_corrected"] is None else f"{s['slope_eps_corrected']:.3f}", "0.5"]
                         for s in m["t_star_slopes"]])
    conv = m["convergence"]
    Ns = conv[0]["context_sizes"] if conv else []
    conv_table = Table(f"Best-depth MSE over Bayes on the same tokens − 1, σ² = {config['convergence_sigma2']:g}",
                       ["prior", "d", *[f"N = {n}" for n in Ns], "fitted rate (N^x)", "oracle particles' rate",
                        "(A-17): C, B^d"],
                       [[LABELS[c["prior"]], c["dim"],
                         *[_pm(e, se, 100, 1, " %") for e, se in zip(c["excess_over_bayes_realised"],
                                                                  c["excess_over_bayes_realised_se"], strict=True)],
                         _pm(c["excess_decay_exponent"], c["excess_decay_exponent_se"]),
                         _pm(c["oracle_particles_decay_exponent"], c["oracle_particles_decay_exponent_se"]),
                         "—" if c["stage2_excess_constant"] is None else
                         f"{c['stage2_excess_constant']:.3g}, {c['stage2_asymptotic_particles']:.3g}"]
                        for c in conv],
                       note="± bootstrap SE over prompts (the same number of tokens at every N, so the largest N "
                            "has the fewest prompts: " + ", ".join(f"{p} at N = {n}" for n, p in
                                                                  zip(Ns, conv[0]["prompts"] if conv else [], strict=True))
                            + "; no SE below 8). Rates: least squares of log(excess) on log N over the N with an SE "
                            "(at least 8 prompts) and a positive excess (no SE where over 10 % of the resamples have a "
                            "non-positive excess). "
                            "(A-17) predicts the oracle particles' excess C/N, a rate of −1, only once N ≫ B^d "
                            "(the queries in the tails see many particles); below that it falls slower.")
    tables = [depth_table, mse_table, slope_table, conv_table]
    depth_panels = []
    for prior, dim in cases:
        series = []
        for s in S:
            r, g = by[prior, dim, s], s_groups[s]
            series += [Series(times, r["mse_curve"], "line", group=g, role="two-stage MSE"),
                       Series([r["t_best"]], [r["mse_best"]], "points", group=g, role="best T (measured)"),
                       Series([], [r["bayes_realised"]], "hline", line=":", group=g, role="Bayes MSE (same tokens)"),
                       Series([r["half_sigma2"]], [np.interp(r["half_sigma2"], times, r["mse_curve"])], "points",
                              group=g, symbol="|", size=9, role="σ²/2 on the curve"),
                       *([] if r["t_star_theory"] is None else [
                           Series([r["t_star_theory"]], [np.interp(r["t_star_theory"], times, r["mse_curve"])],
                                  "points", group=g, symbol="x", size=7, role="T*(ε) (theory) on the curve")])]
        depth_panels.append(Panel(case_label(prior, dim), r"flow time $T$ = depth $\cdot\,\alpha\varepsilon$",
                                  "per-coordinate MSE", series, yscale="log"))
    figures = [Figure("mse_vs_depth", "MSE of the two-stage estimator against depth (as flow time T): a U-shape whose "
                      "minimum (filled marker) should sit at T*(ε) (×), to the right of σ²/2 (|), close to the Bayes "
                      "MSE (dotted).", depth_panels, sequential=True)]
    law = m["t_star_law"]
    grid = law["sigma2"]
    t_series = [Series(grid, np.asarray(grid) / 2, "line", line="--", color="black", label="σ²/2"),
                Series(grid, law["gaussian"], "line", line=":", color="black", label=f"Gaussian T*(ε = {eps:g})")]
    if any(PRIORS[p].component_variance for p, _ in cases):
        t_series.append(Series(grid, law["components"], "line", line="-.", color="black",
                               label=f"T*(ε) with s₀ = {config['mode_variance']:g}"))
    for sl in m["t_star_slopes"]:
        t_series.append(Series(S, sl["t_best"], "points", yerr=[by[sl["prior"], sl["dim"], s]["t_best_se"] for s in S],
                               group=case_label(sl["prior"], sl["dim"]), role=r"$T_{\rm best}$ (± bootstrap SE)"))
    figures.append(Figure("t_star_vs_sigma2", f"The MSE-minimising flow time against σ² (N = {config['context']}): "
                          "Gaussian points should follow the dotted T*(ε), mixtures the dash-dotted law with the "
                          "component variance.",
                          [Panel("best flow time vs noise", "noise variance σ²", r"$T_{\rm best}$", t_series, xticks=S)],
                          panel_size=(5.2, 3.6)))
    if conv:
        abs_series, excess_series = [], []
        for c in conv:
            g = case_label(c["prior"], c["dim"])
            measured = "two-stage estimator at its best depth"
            abs_series += [Series(c["context_sizes"], c["mse_best"], "line", marker=True, group=g, role=measured),
                           Series(c["context_sizes"], c["bayes_realised"], "line", line=":", group=g,
                                  role="Bayes posterior mean (same tokens)")]
            rate, log_a = c["excess_decay_exponent"], c["excess_decay_log_intercept"]
            excess_series.append(Series(c["context_sizes"], np.maximum(c["excess_over_bayes_realised"], 1e-4), "line",
                                        marker=True, group=g, role=measured))
            if rate is not None:
                n_fit = c["excess_decay_fitted_n"]
                excess_series.append(Series(n_fit, np.exp(log_a) * np.asarray(n_fit, float) ** rate, "line",
                                            line="--", group=g, role="fitted power law"))
            excess_series.append(Series(c["context_sizes"], np.maximum(c["oracle_particles_excess"], 1e-4), "line",
                                        line=":", marker=True, group=g, role="Stage 2 on N prior draws (oracle)"))
            if c["stage2_excess_constant"] is not None:
                excess_series.append(Series(c["context_sizes"], c["stage2_excess_constant"]
                                            / np.asarray(c["context_sizes"], float), "line", line="-.", group=g,
                                            role="(A-17): C/N, valid for N ≫ B^d"))
        figures.append(Figure("mse_vs_n", f"σ² = {config['convergence_sigma2']:g}, the same number of tokens at every "
                              "context size N. Left: the two-stage estimator's MSE at its best depth (solid) against N, "
                              "with the Bayes posterior mean's MSE on the same tokens (dotted). Right: its excess over "
                              "Bayes (solid) falls as a power of N; dashed: the least-squares line "
                              "log(excess) = a + x log N over the N with a positive excess, drawn as e^a N^x (exponents "
                              "x in the table); dotted: Stage 2 reading out N fresh prior draws (the finite-N floor of "
                              "a perfect Stage 1); dash-dot: its large-N law C/N (docs A-17; Gaussian prior), which "
                              "holds only once N ≫ B^d (table) and lies above the oracle before that.",
                              [Panel("MSE vs context size", "context N", "per-coordinate MSE", abs_series, xscale="log",
                                     xticks=Ns),
                               Panel("excess over Bayes", "context N", "best MSE / Bayes MSE − 1", excess_series,
                                     xscale="log", yscale="log", xticks=Ns)], panel_size=(4.4, 3.4)))
    s_mid = min(S, key=lambda s: abs(s - config["convergence_sigma2"]))
    dist_series = []
    for prior, dim in cases:
        r, g = by[prior, dim, s_mid], case_label(prior, dim)
        dist_series += [Series(times, r["distance_curve"], "line", group=g, role="Stage-1 particles"),
                        Series([], [r["distance_floor"]], "hline", line=":", group=g, role="two prior samples (floor)")]
    dist_series.append(Series([s_mid / 2], [], "vline", line="--", color="black", label="σ²/2"))
    particle_panels = [Panel(f"sliced W1 distance to the prior, σ² = {s_mid:g}", "flow time T", "sliced W1 distance",
                             dist_series)]
    mid_rows = [by[prior, dim, s_mid] for prior, dim in cases]
    above = [r["distance_min_over_floor"] for r in mid_rows]
    best_t = [r["distance_best_time"] for r in mid_rows]
    caption = (f"Left: the sliced W1 distance between the Stage-1 particles and a fresh prior sample (σ² = {s_mid:g}) "
               f"falls to a minimum at T = {min(best_t):.2f}–{max(best_t):.2f} (σ²/2 = {s_mid / 2:g}, dashed) and "
               "rises again past it as the particles over-contract; the minimum stays "
               f"{min(above):.1f}–{max(above):.1f}× above the floor of two independent prior samples (dotted): the "
               "particles approach the prior but do not become a sample of it.")
    hist = m.get("particles_histogram")
    if hist:
        h_series = [Series(hist["edges"], hist["prior_density"], "stairs", filled=True, color="0.6",
                           label="prior sample")]
        t_best = by[hist["prior"], 1, hist["sigma2"]]["t_best"] if (hist["prior"], 1, hist["sigma2"]) in by else None
        wanted = ["noisy tokens", r"$\approx T_{\rm best}$", r"$2\,T_{\rm best}$"]
        clipped = None
        for k, c in enumerate(hist["curves"]):
            label = f"T = {c['time']:.2f}" + (f" ({wanted[k]})" if k < len(wanted) else "")
            if k == 2 and t_best is not None and c["time"] < 2 * t_best - 0.5 * (times[1] - times[0]):
                clipped = (2 * t_best, c["time"])
                label = f"T = {c['time']:.2f} (last layer; " + r"$2\,T_{\rm best}$" + f" = {2 * t_best:.2f})"
            h_series.append(Series(hist["edges"], c["density"], "stairs", group=label, role="Stage-1 particles"))
        particle_panels.append(Panel(f"{LABELS[hist['prior']]}, d = 1, σ² = {hist['sigma2']:g}: particles",
                                     "x", "density", h_series))
        caption += (" Right: the particles' histogram at T = 0 (the noisy tokens), at T_{best} and at twice it, over a "
                    "prior sample (grey)")
        caption += (f"; 2 T_{{best}} = {clipped[0]:.2f} lies past the last layer, so the last curve is at "
                    f"T = {clipped[1]:.2f}." if clipped else ".")
    figures.append(Figure("particles", caption, particle_panels, panel_size=(4.4, 3.4)))
    ratios, halves = summary["t_best_over_t_star"], summary["t_best_over_half_sigma2"]
    excess, cells = summary["excess_over_bayes_realised"], summary["cells"]
    with_law = summary.get("cells_with_t_star", cells)
    findings = [(f"T_{{best}} / T*(ε) = {ratios[0]:.2f}–{ratios[1]:.2f} over {with_law} (prior, d, σ²) cells with the "
                 "law; " if ratios else "") + f"T_{{best}} / (σ²/2) = {halves[0]:.2f}–{halves[1]:.2f} over {cells}.",
                f"Best two-stage MSE within {100 * excess[0]:+.1f} … {100 * excess[1]:+.1f} % of the Bayes MSE on the "
                f"same tokens; it beats depth 0, blurring mean shift and the best-bandwidth Tweedie–KDE in "
                f"{summary['beats_comparators']}/{cells} cells."]
    if conv:
        findings.append("Excess over Bayes falls from " + ", ".join(
            f"{100 * c['excess_over_bayes_realised'][0]:.0f} % ({LABELS[c['prior']]})" for c in conv)
            + f" at N = {Ns[0]} to " + ", ".join(f"{100 * c['excess_over_bayes_realised'][-1]:.1f} %" for c in conv)
            + f" at N = {Ns[-1]}.")
    off = [r for r in rows if r["t_star_deviates"]]
    deviations = ([f"T_{{best}} deviates from T*(ε) by more than {100 * tolerance:g} % and 1 SE at: " + ", ".join(
        f"{LABELS[r['prior']]} d = {r['dim']} σ² = {r['sigma2']:g} ({r['t_best']:.3f} vs {r['t_star_theory']:.3f})"
        for r in off) + "."] if off else [])
    if summary["t_best_at_grid_end"]:
        deviations.append("The best depth is the last layer (the minimum lies past the grid, so T_{best} is a lower "
                          "bound) at: " + ", ".join(f"{LABELS[p]} d = {d} σ² = {s2:g}"
                                                    for p, d, s2 in summary["t_best_at_grid_end"]) + ".")
    deviations.append("For the mixtures T*(ε) uses the component variance s₀ in the Gaussian formula — a local "
                      "approximation for well-separated modes, not a derived law.")
    setup = (f"Prompts of N = {config['context']} noisy tokens y = x + σz, x from the "
             f"{', '.join(LABELS[p] for p in config['priors'])} priors in "
             f"d ∈ {{{', '.join(map(str, config['dims']))}}}, "
             f"σ² ∈ {{{', '.join(f'{s:g}' for s in S)}}}, {config['prompts']} prompts each. The analytic estimator runs "
             f"Stage 1 (RBF attention of bandwidth ε = {eps:g} with residual step α = {config['step']:g}, flow time αε per "
             "layer) and reads out with Stage 2 (the noisy tokens querying the particles with bandwidth σ²) at every "
             "depth; comparators and the Bayes posterior mean run on the same tokens; the MSE-vs-N study uses "
             f"N ∈ {{{', '.join(map(str, Ns))}}}.")
    headline = ((f"T_{{best}}/T*(ε) {ratios[0]:.2f}–{ratios[1]:.2f}; " if ratios else "")
                + f"best MSE {100 * excess[1]:+.1f} % or less over Bayes")
    return ReportSpec(setup, tables, figures, findings, deviations, headline)


def _trained_section(config: dict, trained: list) -> ReportSpec:
    """The trained transformers: their setup, table, figure, notes and headline."""
    S = config["sigma2s"]
    tables = [Table("Trained attention-only transformers", [
        "prior", "d", "attention", "readout τ", "σ²", "T_{eff}/(σ²/2)", "Σ α_{l}ε_{l}/(σ²/2)", "τ/σ²",
        "ε_{l} spread (CV)", "learned MSE / Bayes − 1", "analytic best / Bayes − 1"],
        [[LABELS[t["prior"]], t["dim"], t["attention"], t["readout"], f"{t['sigma2']:g}",
          _pm(t["effective_time_over_half_sigma2"], t["effective_time_over_half_sigma2_se"]),
          "—" if t["attention"] != "rbf" else _pm(t["time_over_half_sigma2"], t["time_over_half_sigma2_se"]),
          _pm(t["readout_over_sigma2"], t["readout_over_sigma2_se"]),
          _pm(t["bandwidth_cv"], t["bandwidth_cv_se"]),
          _pm(t["learned_excess_over_bayes"], t["learned_excess_over_bayes_se"], 100, 1, " %"),
          f"{100 * t['analytic_excess_over_bayes']:+.1f} %"] for t in trained],
        note=f"T_{{eff}} = (Var y − Var x^L)/2: the variance the learned Stage 1 removes, in flow-time units. "
             f"Mean ± SE over {config['train_seeds']} trained model(s) per row (no SE with one); the seeds "
             "differ only in their stream of training prompts (every model starts from the same constant "
             "parameters) and are scored on the same evaluation prompts, so the SE is the spread of training, "
             "not of evaluation. Σ α_{l}ε_{l} is a flow time only for RBF attention (— for dot-product).")]
    variants = config["train_readout"]
    t_panels = [[], [], []]
    attentions = config["train_attention"]

    def errors(tr, key, scale=1.0):
        se = [t[f"{key}_se"] for t in tr]
        return None if any(e is None for e in se) else [scale * e for e in se]

    for name in config["train_priors"]:
        for attention in attentions:
            for variant in variants:
                tr = [t for t in trained if t["prior"] == name and t["readout"] == variant
                      and t["attention"] == attention]
                g = f"{LABELS[name]}, τ {variant}" + ("" if attentions == ["rbf"] else f", {attention}")
                t_panels[0] += [Series(S, [t["effective_time"] for t in tr], "line", marker=True, group=g,
                                       yerr=errors(tr, "effective_time"), role="trained transformer"),
                                Series(S, [t["learned_total_time"] for t in tr], "line", line=":", group=g,
                                       role=r"trained: $\Sigma_l\,\alpha_l\varepsilon_l$ (nominal time)")]
                t_panels[1].append(Series(S, [100 * t["learned_excess_over_bayes"] for t in tr], "line",
                                          marker=True, group=g, yerr=errors(tr, "learned_excess_over_bayes", 100),
                                          role="trained transformer"))
                mid = tr[len(tr) // 2]
                t_panels[2].append(Series(np.arange(1, config["depth_trained"] + 1), mid["bandwidths"], "line",
                                          marker=True, group=g, role="trained transformer"))
        tr = [t for t in trained if t["prior"] == name and t["readout"] == variants[0]
              and t["attention"] == attentions[0]]
        t_panels[1].append(Series(S, [100 * t["analytic_excess_over_bayes"] for t in tr],
                                  "line", line="--", group=f"{LABELS[name]}, τ {variants[0]}"
                                  + ("" if attentions == ["rbf"] else f", {attentions[0]}"),
                                  role=f"analytic two-stage at its best depth (N = {config['train_context']})"))
    t_panels[0].append(Series(S, np.asarray(S) / 2, "line", line="-.", color="black", label="σ²/2"))
    mid_s2 = trained[len(S) // 2]["sigma2"] if len(trained) > len(S) // 2 else S[0]
    figures = [Figure("trained", "Trained attention-only transformers (solid, one colour per prior, readout "
                          "τ and attention; error bars: SE over the seeds). Left: the variance their Stage 1 "
                          "removes, as a flow time T_{eff}, against σ²/2 (dash-dot), with their nominal clock "
                          "Σ α_{l}ε_{l} (dotted; a flow time only for RBF attention). Middle: their MSE over Bayes "
                          "against the analytic two-stage estimator's at its best depth on prompts of the same size "
                          f"(dashed). Right: the learned bandwidths ε_{{l}} by layer at σ² = {mid_s2:g}.",
                          [Panel("Stage-1 time", "σ²",
                                 r"$T_{\rm eff}$ (solid), $\Sigma_l\,\alpha_l\varepsilon_l$ (dotted)",
                                 t_panels[0], xticks=S),
                           Panel("MSE over Bayes (same tokens)", "σ²", "MSE / Bayes − 1 (%)", t_panels[1], xticks=S),
                           Panel(f"learned bandwidths, σ² = {mid_s2:g}", "layer l", r"$\varepsilon_l$", t_panels[2],
                                 yscale="log")])]
    deviations = ["Σ α_{l} ε_{l} overstates the learned flow time when the learned ε_{l} are large (a layer then "
                      "contracts by αε/(v + ε), not αε/v); T_{eff}, the removed variance, is the comparable clock."]
    setup = (f"Trained attention-only transformers ({' and '.join(config['train_attention'])} attention, "
                 f"{config['depth_trained']} layers, readout τ {' and '.join(config['train_readout'])}) on "
                 f"{config['train_context']}-token prompts of the {', '.join(LABELS[p] for p in config['train_priors'])} "
                 f"priors in d = {min(config['dims'])}, σ² ∈ {{{', '.join(f'{s:g}' for s in S)}}}: "
                 f"{config['train_steps']} Adam steps, {config['train_seeds']} seed(s) each.")
    rbf = [t["effective_time_over_half_sigma2"] for t in trained if t["attention"] == "rbf" and t["readout"] == "fixed"]
    span = f"{min(rbf):.2f}–{max(rbf):.2f}" if rbf else None
    findings = ([f"Trained RBF models with τ = σ²: their Stage 1 removes T_{{eff}} = {span} × σ²/2."] if span else []) + [
        f"Learned MSE over Bayes ({a}): " + ", ".join(
            f"{100 * min(x):+.1f} … {100 * max(x):+.1f} % ({LABELS[p]})" for p in config["train_priors"]
            if (x := [t["learned_excess_over_bayes"] for t in trained if t["prior"] == p and t["attention"] == a]))
        + "." for a in config["train_attention"]]
    return ReportSpec(setup, tables, figures, findings, deviations,
                      f"trained RBF T_eff/(σ²/2) {span}" if span else "trained transformers")
