"""Gradient-based MCMC over a whole pytree, optax style: a factory returns `Sampler(init, step)`.

    sampler = mala(log_density, step_size=1e-3)          # or SAMPLERS["mala"](log_density, 1e-3)
    state = sampler.init(params)
    state, info = sampler.step(jax.random.fold_in(key, t), state)     # pure; jit / vmap / scan it

All samplers target π(θ) ∝ exp(log_density(θ)) and take the step h in the log-density convention:

- `ula`   unadjusted (overdamped) Langevin, the papers' sampler (docs/nngp_and_renormalization.md, eq. (R-25)):
          θ ← θ + h ∇log π(θ) + √(2h) ξ.  Biased by O(h); for a Gaussian target N(m, A⁻¹) its stationary law is
          exactly N(m, [A(1 − hA/2)]⁻¹) (Roberts & Tweedie 1996).
- `mala`  the same proposal with a Metropolis–Hastings correction (Roberts & Tweedie 1996; eq. (R-26)): unbiased
          at any h.
- `baoab` underdamped Langevin with unit mass and friction γ, split B-A-O-A-B (Leimkuhler & Matthews 2013;
          eq. (R-27)):
          p ← p + (h/2)∇log π;  θ ← θ + (h/2)p;  p ← e^{−γh} p + √(1 − e^{−2γh}) ξ;  θ ← θ + (h/2)p;
          p ← p + (h/2)∇log π.  One gradient per step; configurational error O(h²), none for Gaussian targets;
          stable for h √λ_max(−∇²log π) < 2; mixes in O(√κ) steps where overdamped schemes need O(κ).

`SAMPLERS` maps each name to a `SamplerSpec`: its factory (calling the spec calls it), the rate r(λ_max) whose
h·r < 2 bounds its stable steps (λ_max for the overdamped two, √λ_max for BAOAB; `train.inference.stepsize`), and
the names of its extra keyword arguments (BAOAB: friction), which a caller takes from its config by name.

The papers' step ε on the energy ½Σ(f − y)² + (Tλ/2)|W|² is h = ε T here (`models.posterior`;
docs/nngp_and_renormalization.md, eq. (R-28)).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from deeptheory.models.posterior import tree_sq_norm

__all__ = ["SamplerState", "StepInfo", "Sampler", "SamplerSpec", "ula", "mala", "baoab", "SAMPLERS", "tree_normal"]

PyTree = Any


class SamplerState(NamedTuple):
    position: PyTree
    log_density: jax.Array  # log π(position)
    grad: PyTree  # ∇ log π(position), carried so each step costs one gradient
    momentum: PyTree  # BAOAB's p (same structure as position); zeros for the overdamped samplers


class StepInfo(NamedTuple):
    acceptance: jax.Array  # Metropolis acceptance probability (1 for the unadjusted samplers)
    accepted: jax.Array  # whether the proposal was taken (True for the unadjusted samplers)


class Sampler(NamedTuple):
    init: Callable[[PyTree], SamplerState]
    step: Callable[[jax.Array, SamplerState], tuple[SamplerState, StepInfo]]


def tree_normal(key: jax.Array, tree: PyTree) -> PyTree:
    """Independent standard normals shaped (and typed) like every leaf of `tree`."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    noise = [jax.random.normal(k, jnp.shape(x), jnp.result_type(x)) for k, x in zip(keys, leaves, strict=True)]
    return treedef.unflatten(noise)


def _axpy(a, x, y):
    """a·x + y leafwise, keeping y's dtype."""
    return jax.tree.map(lambda xi, yi: (a * xi + yi).astype(yi.dtype), x, y)


def _positive(value, name: str) -> float:
    value = float(value)
    if not value > 0:
        raise ValueError(f"{name} must be > 0; got {value}")
    return value


def _init_fn(value_and_grad):
    def init(position) -> SamplerState:
        value, grad = value_and_grad(position)
        return SamplerState(position, value, grad, jax.tree.map(jnp.zeros_like, position))

    return init


def ula(log_density: Callable[[PyTree], jax.Array], step_size: float) -> Sampler:
    """Unadjusted Langevin θ ← θ + h∇log π + √(2h)ξ (module docstring)."""
    h = _positive(step_size, "step_size (the Langevin step h)")
    value_and_grad = jax.value_and_grad(log_density)

    def step(key, state: SamplerState):
        noise = tree_normal(key, state.position)
        position = _axpy(h, state.grad, state.position)
        position = _axpy((2 * h) ** 0.5, noise, position)
        value, grad = value_and_grad(position)
        one = jnp.ones((), value.dtype)
        return SamplerState(position, value, grad, state.momentum), StepInfo(one, jnp.array(True))

    return Sampler(_init_fn(value_and_grad), step)


def mala(log_density: Callable[[PyTree], jax.Array], step_size: float) -> Sampler:
    """Metropolis-adjusted Langevin: the `ula` proposal, accepted with probability

        min(1, π(θ') q(θ | θ') / π(θ) q(θ' | θ)),   log q(θ' | θ) = −|θ' − θ − h∇log π(θ)|² / 4h.
    """
    h = _positive(step_size, "step_size (the Langevin step h)")
    value_and_grad = jax.value_and_grad(log_density)

    def log_q(to, frm, grad_frm):  # log q(to | from) up to a constant
        drift = _axpy(h, grad_frm, frm)
        return -tree_sq_norm(jax.tree.map(jnp.subtract, to, drift)) / (4 * h)

    def step(key, state: SamplerState):
        key_noise, key_accept = jax.random.split(key)
        noise = tree_normal(key_noise, state.position)
        proposal = _axpy((2 * h) ** 0.5, noise, _axpy(h, state.grad, state.position))
        value, grad = value_and_grad(proposal)
        log_ratio = (value - state.log_density + log_q(state.position, proposal, grad)
                     - log_q(proposal, state.position, state.grad))
        log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)  # a NaN proposal is rejected
        acceptance = jnp.minimum(1.0, jnp.exp(log_ratio))
        accept = jax.random.uniform(key_accept, (), acceptance.dtype) < acceptance
        pick = lambda new, old: jax.tree.map(lambda a, b: jnp.where(accept, a, b), new, old)  # noqa: E731
        new = SamplerState(pick(proposal, state.position), jnp.where(accept, value, state.log_density),
                           pick(grad, state.grad), state.momentum)
        return new, StepInfo(acceptance, accept)

    return Sampler(_init_fn(value_and_grad), step)


def baoab(log_density: Callable[[PyTree], jax.Array], step_size: float, friction: float = 1.0) -> Sampler:
    """Underdamped Langevin, BAOAB splitting, unit mass, friction γ (module docstring).

    `init` draws no momentum (p = 0); the first O-step thermalises it within ~1/γ time units.
    """
    h = _positive(step_size, "step_size (the Langevin step h)")
    gamma = _positive(friction, "friction γ")
    c1 = float(jnp.exp(-gamma * h))
    c2 = float((1.0 - c1**2) ** 0.5)
    value_and_grad = jax.value_and_grad(log_density)

    def step(key, state: SamplerState):
        p = _axpy(h / 2, state.grad, state.momentum)
        q = _axpy(h / 2, p, state.position)
        p = _axpy(c2, tree_normal(key, p), jax.tree.map(lambda x: (c1 * x).astype(x.dtype), p))
        q = _axpy(h / 2, p, q)
        value, grad = value_and_grad(q)
        p = _axpy(h / 2, grad, p)
        one = jnp.ones((), value.dtype)
        return SamplerState(q, value, grad, p), StepInfo(one, jnp.array(True))

    return Sampler(_init_fn(value_and_grad), step)


class SamplerSpec(NamedTuple):
    """A sampler by name (module docstring): its factory, its stability rate, its extra options."""

    factory: Callable[..., Sampler]  # (log_density, step_size, **options) → Sampler
    stability_rate: Callable[[float], float]  # λ_max ↦ r: steps with h·r < 2 are stable on a Gaussian of precision λ_max
    options: tuple[str, ...] = ()  # the factory's extra keyword arguments (e.g. "friction")

    def __call__(self, log_density: Callable[[PyTree], jax.Array], step_size: float, **options) -> Sampler:
        return self.factory(log_density, step_size, **options)


def _overdamped_rate(curvature: float) -> float:
    return curvature  # h λ_max < 2 (ULA, MALA's proposal)


SAMPLERS = {
    "ula": SamplerSpec(ula, _overdamped_rate),
    "mala": SamplerSpec(mala, _overdamped_rate),
    "baoab": SamplerSpec(baoab, math.sqrt, options=("friction",)),  # h √λ_max < 2
}
