"""nngp_convergence: the config, its fields' meaning and valid values, and the presets."""

from __future__ import annotations

from dataclasses import dataclass

from deeptheory.theory.activations import ACTIVATIONS
from deeptheory.train.harness import cli
from deeptheory.train.harness.cli import param

NAME = "nngp_convergence"


@dataclass(frozen=True)
class Config(cli.BinaryTaskFields):
    input_dim: int = param(0, "PCA to this many inputs (0 keeps all: 784 for Fashion-MNIST, 40 for MNIST-1D)",
                           valid="0 … n_train")
    activations: tuple[str, ...] = param(("relu", "erf"), "activations φ", choices=ACTIVATIONS)
    depths: tuple[int, ...] = param((1, 3), "hidden layers L", valid="each ≥ 1")
    widths: tuple[int, ...] = param((32, 64, 128, 256, 512, 1024), "hidden widths N", valid="at least two, each ≥ 1, "
                                    "increasing")
    draws: int = param(64, "networks D per width (a power of two gives the full D = 1, 2, 4, ... ladder)", valid="≥ 2")
    chunk: int = param(16, "networks evaluated at once, sharded across devices", valid="≥ 1")
    weight_var: float = param(1.0, "weight variance σ_w² = 1/λ of every layer", valid="> 0")
    bias_var: float = param(0.0, "bias variance σ_b²", valid="≥ 0")
    temperature: float = param(0.01, "temperature T of the GP posterior (its observation-noise variance)", valid="> 0")
    seed: int = param(0, "seed of the data subset and the networks", valid="≥ 0")

    def validate(self):
        req = cli.require
        cli.require_binary_task(self)
        req(self.input_dim >= 0, f"--input-dim must be >= 0 (0 keeps all features); got {self.input_dim}")
        req(self.input_dim <= self.n_train, f"--input-dim must be <= --n-train (the PCA is fitted on the training "
            f"points); got {self.input_dim} > {self.n_train}")
        req(len(self.activations) > 0 and all(a in ACTIVATIONS for a in self.activations),
            f"--activations must be among {', '.join(ACTIVATIONS)}; got {','.join(self.activations)}")
        req(len(self.depths) > 0 and all(d >= 1 for d in self.depths),
            f"--depths must be >= 1; got {','.join(map(str, self.depths))}")
        req(len(self.widths) >= 2 and all(w >= 1 for w in self.widths) and list(self.widths) == sorted(set(self.widths)),
            f"--widths must be >= 2 increasing positive integers; got {','.join(map(str, self.widths))}")
        req(self.draws >= 2, f"--draws must be >= 2; got {self.draws}")
        req(self.chunk >= 1, f"--chunk must be >= 1; got {self.chunk}")
        req(self.weight_var > 0, f"--weight-var must be > 0; got {self.weight_var}")
        req(self.bias_var >= 0, f"--bias-var must be >= 0; got {self.bias_var}")
        req(self.temperature > 0, f"--temperature must be > 0; got {self.temperature}")
        req(self.seed >= 0, f"--seed must be >= 0; got {self.seed}")


PRESETS = {
    "quick": Config(),
    "paper": Config(n_train=512, n_test=512, activations=("relu", "erf", "gelu"), depths=(1, 2, 3, 5),
                    widths=(64, 128, 256, 512, 1024, 2048, 4096), draws=256, chunk=32),
}
