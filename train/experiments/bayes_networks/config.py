"""bayes_networks: the config, its fields' meaning and valid values, and the presets."""

from __future__ import annotations

import math
from dataclasses import dataclass

from deeptheory.theory.activations import ACTIVATIONS
from deeptheory.train.data import LABELS
from deeptheory.train.experiments.bayes_networks.architectures import ARCHITECTURES
from deeptheory.train.harness import cli
from deeptheory.train.harness.cli import param
from deeptheory.train.inference.samplers import SAMPLERS

NAME = "bayes_networks"


@dataclass(frozen=True)
class Config(cli.BinaryTaskFields):
    n_test: int = param(256, "test points", valid="≥ 1")
    labels: str = param("01", "targets: 01 (y = 0 or 1, the papers' protocol), pm1 (y = ±1) or centred (y − ½ = ±½). "
                              "The networks and kernels have no bias and erf ones are odd, so with 0/1 targets the "
                              "offset ½ is part of what must be learnt; centred removes it at the same scale, pm1 "
                              "also quadruples the targets' power against T and the prior (docs, eq. R-32)",
                        choices=LABELS)
    image_side: int = param(28, "images average-pooled to side × side (28 keeps Fashion-MNIST whole; 1-d data such "
                                 "as MNIST-1D keep their 40 inputs)", unit="pixels", valid="a divisor of 28")
    architecture: str = param("mlp", "network", choices=tuple(ARCHITECTURES))
    patches: tuple[int, ...] = param((7,), "CNN patch sides, one per layer (their product divides image_side)",
                                     valid="each ≥ 1, product dividing image_side")
    activations: tuple[str, ...] = param(("erf",), "activations φ", choices=ACTIVATIONS)
    depths: tuple[int, ...] = param((1, 2), "hidden layers L (CNN: len(patches))", valid="each ≥ 1")
    widths: tuple[int, ...] = param((32, 64, 256), "hidden widths N (MLP) or channels (CNN)", valid="each ≥ 1")
    temperatures: tuple[float, ...] = param((0.01,), "posterior temperatures T (likelihood exp(-Σ(y - f)²/2T))",
                                            valid="each > 0")
    weight_var: float = param(1.0, "weight variance σ² = 1/λ of every layer", valid="> 0")
    variant: str = param("auto", "renormalization variant (auto: theory.renormalization.recommended_variant: "
                                 "nested for odd φ, noncentral otherwise)",
                         choices=("auto", "vanilla", "nested", "noncentral"))
    collapsed: bool = param(False, "sample the hidden weights alone, the linear readout integrated out exactly, and "
                                   "measure its conditional expectations (models.collapsed). Off by default: the "
                                   "committed results use the full-weight sampler (README: the collapsed posterior)",
                            valid="true or false")
    sampler: str = param("baoab", "MCMC sampler", choices=tuple(SAMPLERS))
    step: float = param(0.0, "step h in the log-density convention (0: step_scale/√λ_max, BAOAB; step_scale/λ_max, "
                             "ULA/MALA)", valid="≥ 0")
    step_scale: float = param(0.5, "automatic step as a fraction of the stability limit", valid="> 0")
    friction: float = param(1.0, "BAOAB friction γ", unit="1/time", valid="> 0")
    burn_in_time: float = param(10.0, "burn-in before measuring", unit="time = steps·h", valid="≥ 0")
    sample_time: float = param(60.0, "sampling after burn-in", unit="time = steps·h", valid="≥ 8 × measure_time")
    measure_time: float = param(0.5, "time between measurements", unit="time = steps·h", valid="> 0")
    chains: int = param(8, "chains per point (vmapped, sharded over devices)", valid="≥ 2")
    checkpoint_every: int = param(50, "measurements between checkpoints", valid="≥ 1")
    seed: int = param(0, "seed of the data subset and the chains", valid="≥ 0")

    def validate(self):
        req = cli.require
        cli.require_binary_task(self)
        req(self.labels in LABELS, f"--labels must be one of {', '.join(LABELS)}; got {self.labels!r}")
        req(self.image_side >= 1 and 28 % self.image_side == 0,
            f"--image-side must divide 28 (Fashion-MNIST is downsampled by an integer factor); got {self.image_side}")
        req(self.architecture in ARCHITECTURES,
            f"--architecture must be {' or '.join(ARCHITECTURES)}; got {self.architecture!r}")
        req(len(self.patches) >= 1 and all(m >= 1 for m in self.patches)
            and self.image_side % math.prod(self.patches) == 0,
            f"--patches {','.join(map(str, self.patches))}: their product must divide --image-side {self.image_side}")
        req(len(self.activations) > 0 and all(a in ACTIVATIONS for a in self.activations),
            f"--activations must be among {', '.join(ACTIVATIONS)}; got {','.join(self.activations)}")
        req(len(self.depths) > 0 and all(d >= 1 for d in self.depths),
            f"--depths must be >= 1; got {','.join(map(str, self.depths))}")
        ARCHITECTURES[self.architecture].check(self)
        req(len(self.widths) >= 1 and all(w >= 1 for w in self.widths),
            f"--widths must be >= 1; got {','.join(map(str, self.widths))}")
        req(len(self.temperatures) >= 1 and all(t > 0 for t in self.temperatures),
            f"--temperatures must be > 0 (the likelihood is exp(-Σ(y - f)²/2T)); got "
            f"{','.join(f'{t:g}' for t in self.temperatures)}")
        req(self.weight_var > 0, f"--weight-var (the weight variance σ²) must be > 0; got {self.weight_var}")
        req(self.variant in ("auto", "vanilla", "nested", "noncentral"),
            f"--variant must be auto, vanilla, nested or noncentral; got {self.variant!r}")
        req(self.sampler in SAMPLERS, f"--sampler must be one of {', '.join(SAMPLERS)}; got {self.sampler!r}")
        req(self.step >= 0, f"--step must be >= 0 (0: automatic); got {self.step}")
        req(self.step_scale > 0, f"--step-scale must be > 0; got {self.step_scale}")
        req(self.friction > 0, f"--friction must be > 0; got {self.friction}")
        req(self.burn_in_time >= 0, f"--burn-in-time must be >= 0; got {self.burn_in_time}")
        req(0 < self.measure_time <= self.sample_time,
            f"need 0 < --measure-time <= --sample-time; got {self.measure_time}, {self.sample_time}")
        req(self.sample_time / self.measure_time >= 8,
            f"--sample-time / --measure-time must give >= 8 measurements for the diagnostics; got "
            f"{self.sample_time / self.measure_time:.1f}")
        req(self.chains >= 2, f"--chains must be >= 2 (R-hat compares chains); got {self.chains}")
        req(self.checkpoint_every >= 1, f"--checkpoint-every must be >= 1; got {self.checkpoint_every}")
        req(self.seed >= 0, f"--seed must be >= 0; got {self.seed}")


# The study: P = 500 full-resolution images on 2 CPU cores, in parts of under an hour each (one preset per part;
# README: the map). Shared settings: 4 chains, 5 time units of burn-in and 25 of sampling.
_STUDY = dict(n_train=500, n_test=500, collapsed=False, chains=4, burn_in_time=5.0, sample_time=25.0, measure_time=0.25,
              checkpoint_every=20)

PRESETS = {
    # P = 64 full-resolution images, P/N = 2, 1, 1/4, depths 1 and 2: about 5 minutes on 2 CPU cores.
    # (Downsampled inputs are cheaper but the theory degrades with the input dimension: README.)
    "quick": Config(),
    # The paper-scale protocol: P = 1000 at full resolution, depths to 10, two activations, two temperatures.
    "paper": Config(n_train=1000, n_test=1000, image_side=28, activations=("erf", "relu"),
                    depths=(1, 2, 3, 5, 10), widths=(250, 500, 1000, 2000, 4000), temperatures=(0.01, 0.001),
                    chains=16, sample_time=500.0, burn_in_time=50.0, checkpoint_every=20),
    # The study's parts. P/N ∈ {4, 2, 1, ½} at depths 1 and 3 for each activation (erf: 72 min) ...
    "study-erf": Config(**_STUDY, activations=("erf",), depths=(1, 3), widths=(125, 250, 500, 1000)),
    "study-relu": Config(**_STUDY, activations=("relu",), depths=(1, 3), widths=(125, 250, 500, 1000)),
    # ... the deviation at P/N ≥ 1 probed: centred targets (the offset ½ removed), and inputs pooled to 14 × 14 (P > d) ...
    "study-pm1": Config(**_STUDY, labels="pm1", activations=("erf",), depths=(1,), widths=(125, 250, 500, 1000)),
    "study-centred": Config(**_STUDY, labels="centred", activations=("erf",), depths=(1,), widths=(125, 250, 500, 1000)),
    "study-d196": Config(**_STUDY, image_side=14, activations=("erf",), depths=(1,), widths=(125, 250, 500, 1000)),
    # ... P/N = ¼ (N = 2000), where the published comparison sits: the control that the sampler agrees at P = 500 ...
    "study-wide": Config(**_STUDY, activations=("erf",), depths=(1,), widths=(2000,)),
    # ... depths 2, 5 and 10 at P/N = 2 (about 25 min) ...
    "study-deep": Config(**_STUDY, activations=("erf", "relu"), depths=(2, 5, 10), widths=(250,)),
    # ... T = 10⁻³ at P/N = 1 (steps √10 shorter than at T = 10⁻², so about 3× the cost: one part per activation) ...
    "study-cold-erf": Config(**_STUDY, activations=("erf",), depths=(1, 3), widths=(500,), temperatures=(0.001,)),
    "study-cold-relu": Config(**_STUDY, activations=("relu",), depths=(1, 3), widths=(500,), temperatures=(0.001,)),
    # ... and the patch CNNs against conv_theory: one layer of 7 × 7 patches, and 7 × 7 then 2 × 2 (whose second
    # layer costs 16 N² per image, so N ≤ 250 keeps it within a sitting).
    "study-cnn1": Config(**_STUDY, architecture="cnn", patches=(7,), depths=(1,), widths=(125, 500)),
    "study-cnn2": Config(**_STUDY, architecture="cnn", patches=(7, 2), depths=(2,), widths=(125, 250)),
}
