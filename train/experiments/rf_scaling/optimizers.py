"""The five optimizers of the scaling-law experiment, as optax GradientTransformations.

    gd(η)                          a ← a − η g
    momentum(η, β)                 heavy ball (Polyak 1964): m ← g + β m, a ← a − η m   (optax.sgd, momentum=β)
    adam(η)                        Kingma & Ba 2015 (optax.adam)
    diagonal(η, fisher, ε)         a ← a − η g / (diag(Fisher) + ε)           (diagonal Fisher / Jacobi)
    natural_gradient(η, fisher, ε) a ← a − η (Fisher + ε I)⁻¹ g               (Amari 1998; damped)

For the readout of a random-feature model trained on ½·(population MSE) the Fisher (= Gauss–Newton = Hessian)
is the feature covariance Σ_N, fixed during training, so `diagonal` and `natural_gradient` take it once at
construction. natural_gradient factors Fisher + εI by Cholesky in `init` and solves two triangular systems per
step (no explicit inverse). Both act on the flattened parameter vector, so any pytree of parameters works.
Their per-mode dynamics and the checks that hold them: docs/random_features.md, eqs. (RF-11), (RF-12), (RF-16).

What the experiment needs to know of each optimizer is one `OptimizerSpec` in `SPECS` (the registry, in the order
of OPTIMIZERS): its transform, its base learning rate from the spectrum of Σ_N, the preconditioner values f(μ) of
its eigenbasis theory, its effective rate for the ridge equivalent, and how exact that theory is. Code that treats
optimizers differently looks the spec up (`spec(name)`) instead of testing names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from jax.scipy.linalg import cho_solve

from deeptheory.theory.random_features import preconditioner

__all__ = ["OPTIMIZERS", "STEP_FACTOR", "OptimizerSpec", "SPECS", "spec", "gd", "momentum", "adam", "diagonal",
           "natural_gradient", "make_optimizer"]


def gd(learning_rate) -> optax.GradientTransformation:
    return optax.sgd(learning_rate)


def momentum(learning_rate, beta: float = 0.9, nesterov: bool = False) -> optax.GradientTransformation:
    return optax.sgd(learning_rate, momentum=beta, nesterov=nesterov)


def adam(learning_rate, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> optax.GradientTransformation:
    return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)


class DiagonalState(NamedTuple):
    scale: jax.Array  # 1 / (diag(Fisher) + ε), flattened like the parameters


def diagonal(learning_rate, fisher, damping=0.0) -> optax.GradientTransformation:
    """a ← a − η g/(diag F + ε). `fisher` is the (n, n) matrix or its (n,) diagonal."""
    fisher = jnp.asarray(fisher)
    diag = jnp.diagonal(fisher) if fisher.ndim == 2 else fisher

    def init(params):
        flat, _ = ravel_pytree(params)
        if flat.shape != diag.shape:
            raise ValueError(f"the Fisher diagonal has {diag.shape[0]} entries; the parameters have {flat.shape[0]}")
        return DiagonalState(1.0 / (diag.astype(flat.dtype) + damping))

    def update(updates, state, params=None):
        del params
        flat, unravel = ravel_pytree(updates)
        return unravel(-learning_rate * state.scale * flat), state

    return optax.GradientTransformation(init, update)


class NaturalGradientState(NamedTuple):
    cholesky: jax.Array  # lower factor L of Fisher + ε I = L Lᵀ


def natural_gradient(learning_rate, fisher, damping=0.0) -> optax.GradientTransformation:
    """a ← a − η (F + εI)⁻¹ g by Cholesky. With ε = 0 the path of the function a·z is invariant to any
    invertible reparametrisation z → Az of the features (Amari 1998); ε > 0 breaks that only for modes with
    eigenvalue ≲ ε. A Fisher + εI that is not positive definite gives NaN factors: check `damping`."""
    fisher = jnp.asarray(fisher)
    if fisher.ndim != 2 or fisher.shape[0] != fisher.shape[1]:
        raise ValueError(f"fisher must be a square (n, n) matrix; got shape {fisher.shape}")

    def init(params):
        flat, _ = ravel_pytree(params)
        if flat.shape[0] != fisher.shape[0]:
            raise ValueError(f"the Fisher is {fisher.shape[0]}×{fisher.shape[0]}; the parameters have {flat.shape[0]}")
        A = fisher.astype(flat.dtype) + damping * jnp.eye(flat.shape[0], dtype=flat.dtype)
        return NaturalGradientState(jnp.linalg.cholesky(A))

    def update(updates, state, params=None):
        del params
        flat, unravel = ravel_pytree(updates)
        return unravel(-learning_rate * cho_solve((state.cholesky, True), flat)), state

    return optax.GradientTransformation(init, update)


STEP_FACTOR = 0.95
"""η·μ_max of every spectrum-scaled base rate: at η = 1/μ_max the top mode of the (preconditioned) Σ_N would be
learned in one step; 0.95 stays just below that, far from the divergence at 2/μ_max."""


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer of the experiment. `hp` below is anything with the fields momentum (β), damping (ε) and
    adam_lr (the experiment's Config); `spectrum` a mapping with "mu_max" (top eigenvalue of Σ_N) and "mu_max_diag"
    (top eigenvalue of D^-1/2 Σ_N D^-1/2, D = diag Σ_N + ε)."""

    name: str
    label: str  # in tables and legends
    transform: Callable  # (learning_rate, fisher, damping, beta) -> optax.GradientTransformation
    needs_fisher: bool  # the transform preconditions with the Fisher (= Σ_N)
    base_lr: Callable  # (spectrum, hp) -> η at learning-rate multiplier 1
    # (μ, mean diag Σ_N, hp) -> f(μ) of the eigenbasis theory (docs/random_features.md, eq. (RF-12)); None: no theory
    theory_preconditioner: Callable | None = None
    theory_momentum: bool = False  # the theory's recurrence is heavy ball with β = hp.momentum (else β = 0)
    # hp -> η_eff per unit multiplier, in units of λ₁ = 1, of the ridge equivalent z = 1/(η_eff m T) (eq. (RF-15))
    effective_rate: Callable | None = None
    theory_caveat: str = ""  # "" where the eigenbasis theory is the exact dynamics; else what it approximates
    # base_lr divides by the draw's top eigenvalue, which pins that eigenvalue's rate in every draw (what the
    # sampling-free equivalent must reproduce: `predict.equivalent_curves`)
    top_scaled: bool = False

    @property
    def has_theory(self) -> bool:
        return self.theory_preconditioner is not None


def _ones(mu, mean_diag, hp):
    return np.ones_like(mu)


SPECS: dict[str, OptimizerSpec] = {s.name: s for s in (
    OptimizerSpec("gd", "GD", lambda lr, fisher, damping, beta: gd(lr), False,
                  base_lr=lambda spectrum, hp: STEP_FACTOR / spectrum["mu_max"],
                  theory_preconditioner=_ones, effective_rate=lambda hp: STEP_FACTOR, top_scaled=True),
    OptimizerSpec("momentum", "heavy ball", lambda lr, fisher, damping, beta: momentum(lr, beta), False,
                  base_lr=lambda spectrum, hp: STEP_FACTOR * (1 + hp.momentum) / spectrum["mu_max"],
                  theory_preconditioner=_ones, theory_momentum=True,
                  effective_rate=lambda hp: STEP_FACTOR * (1 + hp.momentum) / (1 - hp.momentum), top_scaled=True),
    OptimizerSpec("adam", "Adam", lambda lr, fisher, damping, beta: adam(lr), False,
                  base_lr=lambda spectrum, hp: hp.adam_lr),
    OptimizerSpec("diagonal", "diagonal Fisher", lambda lr, fisher, damping, beta: diagonal(lr, fisher, damping), True,
                  base_lr=lambda spectrum, hp: STEP_FACTOR / spectrum["mu_max_diag"],
                  # the prediction: diag Σ_N ≈ its mean (rotation-invariant features), i.e. GD with a rescaled step
                  theory_preconditioner=lambda mu, mean_diag, hp: np.full_like(mu, 1.0 / (mean_diag + hp.damping)),
                  effective_rate=lambda hp: STEP_FACTOR, theory_caveat="GD with a rescaled step, approximate",
                  top_scaled=True),
    OptimizerSpec("natural", "natural gradient",
                  lambda lr, fisher, damping, beta: natural_gradient(lr, fisher, damping), True,
                  base_lr=lambda spectrum, hp: STEP_FACTOR,
                  theory_preconditioner=lambda mu, mean_diag, hp: np.asarray(
                      preconditioner(mu, "natural", damping=hp.damping)),
                  # its slow modes (λ ≪ ε) relax at η/ε
                  effective_rate=lambda hp: STEP_FACTOR / hp.damping),
)}

OPTIMIZERS = tuple(SPECS)


def spec(name: str) -> OptimizerSpec:
    """The spec of one of OPTIMIZERS."""
    if name not in SPECS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}; got {name!r}")
    return SPECS[name]


def make_optimizer(name: str, learning_rate, *, fisher=None, damping=0.0, beta: float = 0.9):
    """One of OPTIMIZERS by name (the experiment's sweep axis)."""
    chosen = spec(name)
    if chosen.needs_fisher and fisher is None:
        raise ValueError(f"the {name} optimizer needs the Fisher (the feature covariance)")
    return chosen.transform(learning_rate, fisher, damping, beta)
