"""denoise: the config, its fields' meaning and valid values, the presets, and the priors ρ₀ by name.

Also what the config fixes for every step: the depth the flow runs to, its time grid, the (prior, d) cases and
the case whose particles are histogrammed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from deeptheory.theory.particle_flow import gaussian_t_star
from deeptheory.theory.priors import make_prior
from deeptheory.train.harness import cli
from deeptheory.train.harness.cli import param
from deeptheory.train.harness.keys import derive

NAME = "denoise"
KDE_GRID = (0.05, 0.1, 0.2, 0.4, 0.8)  # h²/σ² for the tuned Tweedie–KDE


# ------------------------------------------------------------------------------------------------------ priors


def local_variance(component_variance: bool, mode_variance: float) -> float:
    """s₀ of the Gaussian T*(ε) law, the one rule: a mixture's component variance, or the prior variance 1
    (well-separated modes each contract like a Gaussian of variance s₀ — the ε-correction (ε/2) ln(1 + σ²/s₀) is
    local)."""
    return mode_variance if component_variance else 1.0


@dataclass(frozen=True)
class PriorSpec:
    """One prior ρ₀ of the clean tokens: how to build it, its label, and the s₀ of its T*(ε) law."""

    label: str  # in tables, legends and the report
    build: Callable  # (config, dim, dtype) -> theory.priors.Prior
    component_variance: bool  # T*(ε) takes s₀ = mode_variance (a mixture's components); else the prior variance 1
    has_t_star: bool = True  # False: no Gaussian T*(ε) law applies (a support of lower dimension: s₀ = 0 off it)
    min_dim: int = 1  # the smallest token dimension the prior exists in

    def local_variance(self, mode_variance: float) -> float:
        """s₀ of this prior's T*(ε) law (`local_variance`)."""
        return local_variance(self.component_variance, mode_variance)

    @property
    def t_star_kind(self) -> str:
        if not self.has_t_star:
            return "none (support of lower dimension)"
        return "T*(ε) with the component variance s₀" if self.component_variance else "Gaussian T*(ε)"


def _gaussian(config, dim: int, dtype):
    return make_prior("gaussian", dim=dim, variance=1.0, dtype=dtype)


def _two_mode(config, dim: int, dtype):
    mu = np.zeros(dim)
    mu[0] = 2.0
    return make_prior("mixture", means=np.stack([mu, -mu]), variance=config.mode_variance, dtype=dtype)


def _gmm(config, dim: int, dtype):
    """K equal-weight components N(μ_k, s₀I), μ_k ~ N(0, 4I_d) drawn once from (seed, K, d)."""
    key = derive(config.seed, NAME, "gmm means", config.components, dim)
    means = 2.0 * np.asarray(jax.random.normal(key, (config.components, dim), jnp.float64))
    return make_prior("mixture", means=means, variance=config.mode_variance, dtype=dtype)


def _circle(config, dim: int, dtype):
    """Uniform on the circle of radius √d in a 2-plane of R^d drawn once from (seed, d): a one-dimensional support
    (variance d/2 along each in-plane direction, zero off the plane and along the radius), per-coordinate second
    moment 1. Its Bayes MSE per coordinate is small (the noise off the plane is removed exactly), so its relative
    excesses are not comparable with a full-dimensional prior's."""
    key = derive(config.seed, NAME, "circle plane", dim)
    basis, _ = np.linalg.qr(np.asarray(jax.random.normal(key, (dim, 2), jnp.float64)))
    return make_prior("sphere", basis=basis, radius=math.sqrt(dim), dtype=dtype)


PRIORS = {
    "gaussian": PriorSpec("Gaussian", _gaussian, component_variance=False),
    "two_mode": PriorSpec("two-mode", _two_mode, component_variance=True),
    "gmm": PriorSpec("K-GMM", _gmm, component_variance=True),
    "circle": PriorSpec("circle", _circle, component_variance=False, has_t_star=False, min_dim=2),
}


def case_label(prior: str, dim: int) -> str:
    return f"{PRIORS[prior].label}, d = {dim}"


# ------------------------------------------------------------------------------------------------------ config


@dataclass(frozen=True)
class Config:
    priors: tuple[str, ...] = param(("gaussian", "two_mode", "gmm"), "priors ρ₀ of the clean tokens",
                                    choices=tuple(PRIORS))
    dims: tuple[int, ...] = param((1,), "token dimensions d", valid="each ≥ 1")
    mode_variance: float = param(0.25, "variance s₀ of each mixture component", valid="> 0")
    components: int = param(4, "components K of the gmm prior (means ~ N(0, 4 I))", valid="≥ 2")
    sigma2s: tuple[float, ...] = param((0.25, 0.5, 0.75, 1.0), "noise variances σ²",
                                       valid="at least two, each > 0, increasing")
    eps: float = param(0.2, "Stage-1 attention bandwidth ε", valid="> 0")
    step: float = param(0.1, "residual step α of each layer (flow time per layer: α ε)", valid="> 0")
    horizon: float = param(1.6, "integrate to horizon × the largest T*(ε), past the minimum (the U-shape)", valid="> 1")
    context: int = param(512, "tokens N per prompt for the depth curves", valid="≥ 2")
    prompts: int = param(4, "prompts per (prior, d, σ²)", valid="≥ 2")
    context_sizes: tuple[int, ...] = param((32, 128, 512, 2048), "context sizes N of the MSE-vs-N study",
                                           valid="at least two, each ≥ 2, increasing")
    convergence_sigma2: float = param(1.0, "σ² of the MSE-vs-N study", valid="> 0")
    convergence_tokens: int = param(8192, "prompts × N at every N of the MSE-vs-N study (at least 2 prompts)",
                                    valid="≥ 2 × max(context_sizes)")
    ode_steps: int = param(32, "RK4 steps of the oracle probability-flow ODE", valid="≥ 1")
    directions: int = param(16, "random directions of the sliced Wasserstein distance", valid="≥ 1")
    train_priors: tuple[str, ...] = param(("gaussian", "two_mode"), "priors of the trained transformers (d = min(dims))",
                                          choices=tuple(PRIORS))
    train_readout: tuple[str, ...] = param(("fixed", "learned"), "readout bandwidth τ fixed at σ² and/or learned",
                                           choices=("fixed", "learned"))
    train_attention: tuple[str, ...] = param(("rbf",), "attention of the trained transformers: RBF and/or "
                                             "dot-product (no key-norm bias)", choices=("rbf", "dot"))
    train_seeds: int = param(1, "independent trainings per (prior, attention, readout, σ²), for the learned "
                             "quantities' error bars", valid="≥ 1")
    depth_trained: int = param(8, "layers of the trained transformers", valid="≥ 1")
    train_context: int = param(64, "tokens per training prompt", valid="≥ 2")
    train_batch: int = param(8, "prompts per training step", valid="≥ 1")
    train_steps: int = param(300, "Adam steps", valid="≥ 1")
    learning_rate: float = param(0.03, "Adam learning rate", valid="> 0")
    init_bandwidth: float = param(0.1, "initial ε_l of the trained models", valid="> 0")
    init_step: float = param(0.25, "initial α_l of the trained models", valid="> 0")
    init_readout_bandwidth: float = param(1.0, "initial τ when it is learned", valid="> 0")
    bayes_samples: int = param(65536, "Monte Carlo draws of the Bayes MSE where it has no closed form", valid="≥ 1024")
    chunk_size: int = param(0, "online-softmax key chunk (0: dense attention)", valid="≥ 0")
    seed: int = param(0, "seed of every prompt, prior and training stream", valid="≥ 0")

    def validate(self):
        req = cli.require

        def positive(*names):
            for name in names:
                req(getattr(self, name) > 0, f"{cli.flag(name)} must be > 0; got {getattr(self, name)}")

        def at_least(bound, *names):
            for name in names:
                req(getattr(self, name) >= bound, f"{cli.flag(name)} must be >= {bound}; got {getattr(self, name)}")

        req(all(p in PRIORS for p in self.priors),
            f"--priors must be among {', '.join(PRIORS)}; got {','.join(self.priors)}")
        req(len(self.priors) + len(self.train_priors) >= 1,
            "nothing to run: give --priors (depth curves, MSE vs N) and/or --train-priors (trained transformers)")
        req(all(p in PRIORS for p in self.train_priors), f"--train-priors must be among {', '.join(PRIORS)}")
        req(all(v in ("fixed", "learned") for v in self.train_readout), "--train-readout must be among fixed, learned")
        req(len(self.train_attention) >= 1 and all(a in ("rbf", "dot") for a in self.train_attention)
            and len(set(self.train_attention)) == len(self.train_attention),
            f"--train-attention must be among rbf, dot, each once; got {','.join(self.train_attention)}")
        req(len(self.dims) >= 1 and all(d >= 1 for d in self.dims),
            f"--dims must be >= 1; got {','.join(map(str, self.dims))}")
        for p in self.priors:
            need = PRIORS[p].min_dim
            req(max(self.dims) >= need, f"the {p} prior needs d >= {need}: add such a d to --dims or drop {p}")
        for p in self.train_priors:
            need = PRIORS[p].min_dim
            req(min(self.dims) >= need, f"models are trained at d = min(--dims) = {min(self.dims)}, where the {p} "
                f"prior does not exist (d >= {need}): drop {p} from --train-priors or raise --dims")
        req(len(self.sigma2s) >= 2 and all(s > 0 for s in self.sigma2s) and list(self.sigma2s) == sorted(set(self.sigma2s)),
            f"--sigma2s must be >= 2 increasing positive noise variances; got {','.join(f'{s:g}' for s in self.sigma2s)}")
        positive("eps", "step", "mode_variance", "convergence_sigma2", "learning_rate", "init_bandwidth", "init_step",
                 "init_readout_bandwidth")
        req(self.horizon > 1, f"--horizon must be > 1 (the curve must pass the minimum); got {self.horizon}")
        at_least(2, "context", "prompts", "components", "train_context")
        req(len(self.context_sizes) >= 2 and all(n >= 2 for n in self.context_sizes)
            and list(self.context_sizes) == sorted(set(self.context_sizes)),
            f"--context-sizes must be >= 2 increasing sizes >= 2; got {','.join(map(str, self.context_sizes))}")
        req(self.convergence_tokens >= 2 * self.context_sizes[-1],
            f"--convergence-tokens must be >= 2 × max(--context-sizes) = {2 * self.context_sizes[-1]}; got "
            f"{self.convergence_tokens}")
        at_least(1, "ode_steps", "directions", "depth_trained", "train_batch", "train_steps", "train_seeds")
        at_least(1024, "bayes_samples")
        at_least(0, "chunk_size", "seed")


# The study: in parts of one token dimension each (README: denoise; each part's cost is in its results), on
# 2 CPU cores. Five noise levels 0.1 … 2, 24 prompts of N = 1024 per cell (bootstrap errors), MSE vs N to 16384 at
# the same 32768 tokens per N, and trained RBF and dot-product transformers (two seeds, N = 256) on two priors.
_STUDY = dict(sigma2s=(0.1, 0.25, 0.5, 1.0, 2.0), context=1024, prompts=24,
              context_sizes=(64, 256, 1024, 4096, 16384), convergence_tokens=32768,
              train_priors=("gaussian", "two_mode"), train_attention=("rbf", "dot"), train_seeds=2,
              train_context=256, train_batch=4, train_steps=400, chunk_size=4096)

PRESETS = {
    "quick": Config(),
    "paper": Config(dims=(1, 2, 8, 16), sigma2s=(0.1, 0.25, 0.5, 1.0, 1.5, 2.0), step=0.05, context=4096, prompts=8,
                    context_sizes=(32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384),
                    convergence_tokens=65536, train_context=256, train_batch=32, train_steps=3000,
                    depth_trained=16, train_priors=("gaussian", "two_mode", "gmm"), chunk_size=4096,
                    priors=("gaussian", "two_mode", "gmm", "circle"), train_attention=("rbf", "dot"), train_seeds=3),
    "study-d1": Config(**_STUDY, priors=("gaussian", "two_mode", "gmm"), dims=(1,)),
    "study-d2": Config(**_STUDY, priors=("gaussian", "two_mode", "gmm", "circle"), dims=(2,)),
    # d = 8 and 16 cost more per token pair (the distances' matmul; 2.2 and 3.4 s per layer at N = 16384 against
    # 1.9 in d = 2): 16 prompts per cell (SEs need ≥ 8) and the trained models with τ = σ² only (the learned-τ
    # variant answers a d = 1, 2 question), at d = 16 RBF only (d = 8 has the dot-product comparison), so that each
    # part fits in about an hour
    "study-d8": Config(**{**_STUDY, "prompts": 16, "train_readout": ("fixed",)},
                       priors=("gaussian", "two_mode", "gmm", "circle"), dims=(8,)),
    "study-d16": Config(**{**_STUDY, "prompts": 16, "train_readout": ("fixed",), "train_attention": ("rbf",)},
                        priors=("gaussian", "two_mode", "gmm", "circle"), dims=(16,)),
    # trained models only (no depth curves): the K-GMM and circle priors, in each d with the d-part's training
    # settings, so that every prior in every d has its learned Stage-1 time; about 10, 25, 15 and 10 minutes
    "study-trained-d1": Config(**{**_STUDY, "train_priors": ("gmm",)}, priors=(), dims=(1,)),
    "study-trained-d2": Config(**{**_STUDY, "train_priors": ("gmm", "circle")}, priors=(), dims=(2,)),
    "study-trained-d8": Config(**{**_STUDY, "train_priors": ("gmm", "circle"), "train_readout": ("fixed",)},
                               priors=(), dims=(8,)),
    "study-trained-d16": Config(**{**_STUDY, "train_priors": ("gmm", "circle"), "train_readout": ("fixed",),
                                   "train_attention": ("rbf",)}, priors=(), dims=(16,)),
    # the ε-dependence of T*(ε) = σ²/2 + (ε/2) ln(1 + σ²/s₀): at ε = 1 the law and σ²/2 part by 0.35 at σ² = 1 (at
    # ε = 0.2 by 0.07); α = 0.02 keeps the flow-time grid at 0.02 per layer; depth curves only (a two-point MSE-vs-N
    # study, no training): minutes
    "study-eps1": Config(**{**_STUDY, "eps": 1.0, "step": 0.02, "context_sizes": (64, 256), "convergence_tokens": 512,
                            "train_priors": ()}, priors=("gaussian", "two_mode", "gmm"), dims=(1,)),
}


# ------------------------------------------------------------------------------------ what the config fixes


def t_star(sigma2: float, eps: float, local_variance: float = 1.0) -> float:
    """The Gaussian mean-field T*(ε) = σ²/2 + (ε/2) ln(1 + σ²/s₀) (`theory.particle_flow.gaussian_t_star`)."""
    return float(gaussian_t_star(sigma2, eps, local_variance))


def depth(config: Config, sigma2: float | None = None) -> int:
    """Layers to reach horizon × the largest T*(ε) of every prior in PRIORS that has the law (at the largest σ²
    unless given; the circle has none, and its rows flag a best time at the end of the grid).

    Every prior, not only the selected ones: the flow-time grid then does not depend on --priors, so a prior run
    alone draws the same curves as inside the full set (its keys are by value too)."""
    s2 = max(config.sigma2s) if sigma2 is None else sigma2
    t_max = config.horizon * max(t_star(s2, config.eps, spec.local_variance(config.mode_variance))
                                 for spec in PRIORS.values() if spec.has_t_star)
    return int(math.ceil(t_max / (config.step * config.eps)))


def flow_times(config: Config) -> np.ndarray:
    """T = l α ε at every depth l = 0 … depth(config) of the depth curves."""
    return config.step * config.eps * np.arange(depth(config) + 1)


def chunk(config: Config) -> int | None:
    """The online-softmax key chunk of every attention call (None: dense)."""
    return config.chunk_size or None


def cases(config: Config) -> list[tuple[str, int]]:
    """The (prior, d) cases of the depth curves and the MSE-vs-N study (a prior only in the d it exists in)."""
    return [(p, d) for p in config.priors for d in config.dims if d >= PRIORS[p].min_dim]


def histogram_case(config: Config) -> tuple[str, float] | None:
    """(prior, σ²) whose Stage-1 particles are histogrammed: the last 1-d prior, at the σ² nearest the
    convergence σ² (None without a 1-d case)."""
    one_d = [name for name, dim in cases(config) if dim == 1]
    if not one_d:
        return None
    return one_d[-1], min(config.sigma2s, key=lambda s: abs(s - config.convergence_sigma2))
