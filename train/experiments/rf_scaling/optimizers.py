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
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree
from jax.scipy.linalg import cho_solve

__all__ = ["OPTIMIZERS", "gd", "momentum", "adam", "diagonal", "natural_gradient", "make_optimizer"]

OPTIMIZERS = ("gd", "momentum", "adam", "diagonal", "natural")


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


def make_optimizer(name: str, learning_rate, *, fisher=None, damping=0.0, beta: float = 0.9):
    """One of OPTIMIZERS by name (the experiment's sweep axis)."""
    if name == "gd":
        return gd(learning_rate)
    if name == "momentum":
        return momentum(learning_rate, beta)
    if name == "adam":
        return adam(learning_rate)
    if name in ("diagonal", "natural"):
        if fisher is None:
            raise ValueError(f"the {name} optimizer needs the Fisher (the feature covariance)")
        return (diagonal if name == "diagonal" else natural_gradient)(learning_rate, fisher, damping)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}; got {name!r}")
