"""rf_scaling: the config, its fields' meaning and valid values, and the presets."""

from __future__ import annotations

from dataclasses import dataclass

from deeptheory.train.experiments.rf_scaling.optimizers import OPTIMIZERS
from deeptheory.train.harness import cli
from deeptheory.train.harness.cli import param

NAME = "rf_scaling"


@dataclass(frozen=True)
class Config:
    s_values: tuple[float, ...] = param((0.75, 1.0, 1.25, 1.5, 1.75, 2.0), "spectral exponents s (λ_k = k^-s)",
                                        valid="each > 0")
    target_shift: float = param(1.0, "a − s: task power v_k² = k^-a with a = s + shift (0: isotropic teacher; "
                                "negative: teacher weights w̄_k² = k^-shift growing with k; the converged exponent is "
                                "min(a − 1, s), so a ≤ 1 has no power law to fit)",
                                valid="any number with a = s + shift > 0 for every s")
    dim: int = param(2048, "input dimension D (≫ max N)", valid="> 2 × max(widths)")
    widths: tuple[int, ...] = param((8, 16, 32, 64, 128), "feature counts N (geometric; the fit window of α)",
                                    valid="at least three, each ≥ 1, increasing")
    steps: int = param(200, "step budget T of every optimizer", valid="≥ 1")
    seeds: int = param(5, "feature draws per (s, N); α's CI is a bootstrap over them", valid="≥ 2")
    optimizers: tuple[str, ...] = param(OPTIMIZERS, "optimizers", choices=OPTIMIZERS)
    lr_multipliers: tuple[float, ...] = param((0.25, 0.5, 1.0, 2.0), "learning-rate grid, multiples of each "
                                               "optimizer's base rate (the best per (s, N) is kept)", valid="each > 0")
    momentum: float = param(0.9, "heavy-ball β", valid="0 ≤ β < 1")
    damping: float = param(1e-3, "ε of natural gradient and of the diagonal preconditioner (λ₁ = 1)", valid="> 0")
    adam_lr: float = param(0.01, "Adam's base learning rate", valid="> 0")
    noise: float = param(0.0, "label noise σ² (a floor under L; 0 keeps the fits clean)", valid="≥ 0")
    confidence: float = param(0.95, "confidence level of α's interval", valid="0 < level < 1")
    chunk: int = param(0, "configurations trained at once (0: all; set on a GPU to bound memory)", valid="≥ 0")
    seed: int = param(0, "seed of the feature draws and the bootstrap", valid="≥ 0")

    def validate(self):
        req = cli.require
        req(len(self.s_values) >= 1 and all(s > 0 for s in self.s_values),
            f"--s-values must be > 0 (λ_k = k^-s decays); got {','.join(f'{s:g}' for s in self.s_values)}")
        a_min = min(self.s_values) + self.target_shift
        req(a_min > 0, f"--target-shift {self.target_shift:g} gives a task power k^-a with a = s + shift = {a_min:g} "
            f"at s = {min(self.s_values):g}; it must decay (a > 0): use --target-shift > {-min(self.s_values):g}")
        req(len(self.widths) >= 3 and all(w >= 1 for w in self.widths) and list(self.widths) == sorted(set(self.widths)),
            f"--widths must be >= 3 increasing positive integers; got {','.join(map(str, self.widths))}")
        req(self.dim > 2 * max(self.widths), f"--dim must exceed 2 × max(--widths) = {2 * max(self.widths)} (D ≫ N); "
            f"got {self.dim}")
        req(self.steps >= 1, f"--steps must be >= 1; got {self.steps}")
        req(self.seeds >= 2, f"--seeds must be >= 2 (the CI is a bootstrap over seeds); got {self.seeds}")
        req(len(self.optimizers) >= 1 and all(o in OPTIMIZERS for o in self.optimizers),
            f"--optimizers must be among {', '.join(OPTIMIZERS)}; got {','.join(self.optimizers)}")
        req(len(self.lr_multipliers) >= 1 and all(m > 0 for m in self.lr_multipliers),
            f"--lr-multipliers must be > 0; got {','.join(f'{m:g}' for m in self.lr_multipliers)}")
        req(0 <= self.momentum < 1, f"--momentum must be in [0, 1); got {self.momentum}")
        req(self.damping > 0, f"--damping must be > 0; got {self.damping}")
        req(self.adam_lr > 0, f"--adam-lr must be > 0; got {self.adam_lr}")
        req(self.noise >= 0, f"--noise must be >= 0; got {self.noise}")
        req(0 < self.confidence < 1, f"--confidence must be in (0, 1); got {self.confidence}")
        req(self.chunk >= 0, f"--chunk must be >= 0 (0: all at once); got {self.chunk}")
        req(self.seed >= 0, f"--seed must be >= 0; got {self.seed}")


PRESETS = {
    "quick": Config(),
    # T = 256 puts GD's time bottleneck N*(T) ≈ (1.9 T)^{1/s} inside the window for every s ≥ 1
    # (docs/random_features.md, eq. (RF-13))
    # The optimizer-dependence claims (README), chosen from the sampling-free phase diagram (`phases.py`,
    # results/rf_scaling/phases.md): a target a = s + 0.22 and T = 2 put α_GD ≈ 0.12 and α_NG ≈ 0.29 at s = 1, and
    # NG damping ε = 0.03 makes NG itself budget-limited at large s, which moves the shift's peak down to a near-tie
    # of s = 1.5 and 1.75 (README: what is and is not reproduced).
    # Seconds of training; the theory takes a few minutes.
    "claims": Config(dim=4096, widths=(8, 16, 32, 64, 128, 256), steps=2, seeds=8, target_shift=0.22, damping=0.03),
    "paper": Config(dim=16384, widths=(16, 32, 64, 128, 256, 512, 1024, 2048), steps=256, seeds=8,
                    lr_multipliers=(0.125, 0.25, 0.5, 1.0, 1.5, 2.0), chunk=32),
}
