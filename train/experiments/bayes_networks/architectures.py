"""bayes_networks: one spec per architecture — its model, its inputs, its theory and what a draw measures.

    spec = ARCHITECTURES[config.architecture]
    model = spec.model(config, activation, depth, width)          # flax module, standard-normal parameters
    x = spec.inputs(config, task.x_train)                          # flat pixels → what the model takes
    measure = spec.measure(config, model, data, depth, width, T)   # position → (trace, accum, pooled)
    theory = spec.theory(config, task, activation, depth, width, T)         # UnitTheory, float64
    kernel, scatter = spec.compare_kernel(pooled_mean, theory, tolerance, y_train)  # measured kernel vs the theory's

- "mlp": `models.mlp.MLP`; `theory.renormalization.fc_theory` (the config's variant as given: the theory resolves
  "auto" itself; `resolve_variant` names the one used in the row), its readout order parameter (Q̄_L
  for a `NoncentralOrderParams` result, else Q_L) and the renormalized kernel K_R next to the NNGP kernel K; a draw
  measures the readout norm q̂ = |v|²/N_L (v standard normal) and q̂ K̂_L with K̂_L = σ_L² φφᵀ/N_L on the
  training points.
- "cnn": `models.cnn.PatchCNN` on side × side images; `theory.conv_renormalization.conv_theory` (its local NNGP
  is the infinite-width limit); a draw measures the readout overlap matrix Q̂ = v vᵀ/N_c across positions.

Collapsed (config.collapsed; off by default, see the config): a draw is the hidden weights θ_h alone, and every
readout quantity is its exact conditional expectation given θ_h (`models.collapsed.readout_posterior`): the test loss
E[(f − y₀)² | θ_h] = (m − y₀)² + s², E[q̂ | θ_h], E[v vᵀ | θ_h] (Rao-Blackwellised; docs eq. (R-29)).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from deeptheory.models.cnn import PatchCNN
from deeptheory.models.collapsed import readout_features, readout_posterior
from deeptheory.models.mlp import MLP
from deeptheory.theory.conv_renormalization import conv_theory
from deeptheory.theory.nngp import nngp_kernel
from deeptheory.theory.renormalization import (
    NoncentralOrderParams,
    fc_theory,
    renormalized_kernel,
    resolve_variant,
)
from deeptheory.train.harness import cli

__all__ = ["ARCHITECTURES", "Architecture", "Data", "ReadoutDraw", "UnitTheory", "readout_name"]

class UnitTheory(NamedTuple):
    """The theory of one (activation, depth, width, T) point, in what the analysis compares."""

    prediction: Any  # test_loss, bias2, variance of the renormalized theory (FCTheory / ConvTheory)
    nngp: Any  # the same at infinite width (theory.gp Prediction)
    readout_q: float  # the theory of the measured readout norm (MLP: Q_L; CNN: tr Q / n)
    variant: str  # the theory used: the resolved renormalization variant, or "conv"
    kernels: dict  # float64 arrays the measured kernel is compared with (MLP: K_R, K; CNN: Q)
    variants: dict  # test loss of every applicable prediction by name (MLP: vanilla and the resolved variant;
    #                 CNN: conv, local and pooled NNGP)


class Architecture(NamedTuple):
    """How one network family enters the experiment (module docstring)."""

    name: str
    images: bool  # needs image inputs (side × side pixels), not just a vector per point
    check: Callable[[Any], None]  # (config) → None; its own config constraints (raises cli.ConfigError)
    model: Callable  # (config, activation, depth, width) → flax module
    inputs: Callable  # (config, x flat (P, side²)) → the model's inputs
    measure: Callable  # (config, model, Data, depth, width, T) → (position → (trace, accum, pooled))
    theory: Callable  # (config, task, activation, depth, width, T) → UnitTheory
    compare_kernel: Callable  # (pooled mean, UnitTheory, tolerance, y_train) → (kernel metrics, (sampled, K_R, K) or None)


class Data(NamedTuple):
    """The training and test sets as the model takes them (float32)."""

    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any


class ReadoutDraw(NamedTuple):
    """What one draw says about the readout: the test outputs' mean and variance given the draw (variance 0 when
    the readout weights are themselves sampled), E|v|², the training features φ (P, F) and, if asked, E[V Vᵀ] for
    the readout weight V as the model shapes it (CNN: positions × channels)."""

    mean: Any
    var: Any
    sq_norm: Any
    features: Any
    overlap: Any

    def trace(self, y_test, readout_q) -> dict:
        """The traced scalars: test loss E[(f − y₀)²] (Rao-Blackwellised when collapsed) and the readout norm."""
        return {"test_loss": jnp.mean((self.mean - y_test) ** 2 + self.var), "readout_q": readout_q}


def readout_name(depth: int) -> str:
    """The readout weight's parameter name: W0..WL, input first (flax orders them as strings: W10 before W2)."""
    return f"W{depth}"


def _readout_draw(config, model, data: Data, depth: int, T: float, *, overlap: bool = False) -> Callable:
    """position → ReadoutDraw. Collapsed (config.collapsed): the position is θ_h and the readout's law given it is
    exact (`models.collapsed.readout_posterior`); otherwise the position holds the readout weights v too."""
    name = readout_name(depth)
    rows = jax.eval_shape(model.init, jax.random.key(0), data.x_train[:1])["params"][name].shape[0]
    if config.collapsed:
        features_tr = readout_features(model, name, data.x_train)
        features_te = readout_features(model, name, data.x_test)

        def draw(hidden):
            phi = features_tr(hidden)
            post = readout_posterior(phi, data.y_train, features_te(hidden), T, config.weight_var,
                                     overlap_rows=rows if overlap else None)
            return ReadoutDraw(post.mean, post.var, post.sq_norm, phi, post.overlap)

        return draw

    def draw(params):
        f_te = model.apply(params, data.x_test)[:, 0]
        _, phi = model.apply(params, data.x_train, return_features=True)
        V = params["params"][name]  # the readout's standard-normal weights (MLP: N_L × 1; CNN: n × N_c)
        return ReadoutDraw(f_te, jnp.zeros_like(f_te), jnp.sum(V**2), phi.reshape(len(phi), -1),
                           V @ V.T if overlap else None)

    return draw


# ------------------------------------------------------------------------------------------------------- MLP


def _mlp_check(config) -> None:
    pass


def _mlp_model(config, activation: str, depth: int, width: int):
    return MLP(widths=(width,) * depth, activation=activation, weight_var=config.weight_var)


def _mlp_inputs(config, x):
    return x


def _mlp_measure(config, model, data: Data, depth: int, width: int, T: float):
    draw = _readout_draw(config, model, data, depth, T)

    def measure(position):
        readout = draw(position)
        q = readout.sq_norm / width  # λ_L |v_eff|² / N_L
        K_hat = config.weight_var * readout.features @ readout.features.T / width  # σ_L² φφᵀ / N_L
        return readout.trace(data.y_test, q), {"f": readout.mean}, {"qK": q * K_hat}

    return measure


def _mlp_theory(config, task, activation: str, depth: int, width: int, T: float) -> UnitTheory:
    x, y, x0, y0 = task.x_train, task.y_train, task.x_test, task.y_test
    th = fc_theory(x, y, x0, y0, activation=activation, depth=depth, width=width, temperature=T,
                   weight_var=config.weight_var, variant=config.variant)
    Q = np.asarray(th.order_params)
    # the measured readout norm λ_L|v|²/N_L is Q̄_L in the non-central ansatz, Q_L otherwise
    noncentral = isinstance(th.order_params, NoncentralOrderParams)
    readout = np.asarray(th.order_params.q_bar)[-1] if noncentral else Q[-1]
    K_R = np.asarray(renormalized_kernel(x, activation=activation, depth=depth, order_params=Q,
                                         weight_var=config.weight_var, variant=config.variant))
    K = np.asarray(nngp_kernel(x, activation=activation, depth=depth, weight_var=config.weight_var))
    variant = resolve_variant(config.variant, activation)
    variants = {variant: float(th.test_loss)}
    if variant != "vanilla":  # the one-scalar-per-layer ansatz next to the recommended one
        variants["vanilla"] = float(fc_theory(x, y, x0, y0, activation=activation, depth=depth, width=width,
                                              temperature=T, weight_var=config.weight_var,
                                              variant="vanilla").test_loss)
    return UnitTheory(th, th.nngp, float(readout), variant, {"K_R": K_R, "K": K}, variants)


def _centred_alignment(M, y) -> float:
    """ỹᵀMỹ / (‖HMH‖_F |ỹ|²), ỹ = y − ȳ, H = I − 11ᵀ/P: the centred kernel-target alignment (docs, eq. R-31)."""
    y_c = y - y.mean()
    M_c = M - M.mean(0, keepdims=True) - M.mean(1, keepdims=True) + M.mean()
    return float(y_c @ M @ y_c / (np.linalg.norm(M_c) * (y_c @ y_c)))


def _mlp_compare_kernel(pooled: dict, theory: UnitTheory, tolerance: float, y_train):
    """⟨q̂K̂⟩ against K_R and the NNGP kernel K, both relative to ‖K_R‖, and its best scale on K against K_R's
    (matching within the relative `tolerance`).

    Two measures that do not depend on the theory's Q (docs, eq. R-31): `shape_residual` = ‖⟨q̂K̂⟩ − cK‖/‖⟨q̂K̂⟩‖ at
    the best scale c, the part of the posterior kernel that no scalar renormalization of K reaches — but Monte Carlo
    noise adds to it (a single erf draw at P = 500 is ≈ 3/√N off), and that floor is not separated here; and the
    centred kernel-target alignment ỹᵀMỹ / (‖HMH‖_F |ỹ|²) (ỹ = y − ȳ, H = I − 11ᵀ/P) of ⟨q̂K̂⟩ and of K. Any scalar
    renormalization leaves the alignment unchanged and noise lowers it on average (it adds to ‖HMH‖ but, on
    average, nothing to ỹᵀMỹ), so a sampled alignment above K's is a change of the kernel towards the targets. Centring keeps
    the 0/1 offset out of it: the uncentred alignment rises when the constant alone is learnt.
    """
    qK, K_R, K = pooled["qK"], theory.kernels["K_R"], theory.kernels["K"]
    y = np.asarray(y_train, dtype=np.float64)
    norm = np.linalg.norm(K_R)
    scale_fit = float(np.sum(qK * K) / np.sum(K * K))  # ⟨q̂K̂⟩ ≈ c K: the measured renormalization
    metrics = {
        "rel_distance_to_K_R": float(np.linalg.norm(qK - K_R) / norm),
        "rel_distance_to_nngp": float(np.linalg.norm(qK - K) / norm),
        "scale_fit": scale_fit,
        "scale_theory": float(np.sum(K_R * K) / np.sum(K * K)),
        "shape_residual": float(np.linalg.norm(qK - scale_fit * K) / np.linalg.norm(qK)),
        "target_alignment": _centred_alignment(qK, y),
        "target_alignment_nngp": _centred_alignment(K, y),
        "target_alignment_theory": _centred_alignment(K_R, y),  # = the NNGP's at depth 1 (K_R = QK there)
    }
    metrics["closer_to_K_R"] = metrics["rel_distance_to_K_R"] < metrics["rel_distance_to_nngp"]
    metrics["scale_matches_theory"] = bool(abs(metrics["scale_fit"] / metrics["scale_theory"] - 1) <= tolerance)
    return metrics, (qK, K_R, K)


# ------------------------------------------------------------------------------------------------------- CNN


def _cnn_check(config) -> None:
    cli.require(config.depths == (len(config.patches),),
                f"for the CNN the depth is the number of --patches, {len(config.patches)}: set --depths "
                f"{len(config.patches)}")


def _cnn_model(config, activation: str, depth: int, width: int):
    return PatchCNN(patches=config.patches, channels=width, activation=activation, weight_var=config.weight_var)


def _cnn_inputs(config, x):
    return x.reshape(len(x), config.image_side, config.image_side)


def _cnn_measure(config, model, data: Data, depth: int, width: int, T: float):
    draw = _readout_draw(config, model, data, depth, T, overlap=True)

    def measure(position):
        readout = draw(position)
        q = readout.overlap / width  # (n, n) ⟨V Vᵀ⟩/N_c across positions
        n = q.shape[0]
        return readout.trace(data.y_test, jnp.trace(q) / n), {"f": readout.mean}, {"Q": q}

    return measure


def _cnn_theory(config, task, activation: str, depth: int, width: int, T: float) -> UnitTheory:
    img = lambda a: _cnn_inputs(config, a)  # noqa: E731
    th = conv_theory(img(task.x_train), task.y_train, img(task.x_test), task.y_test, activation=activation,
                     patches=config.patches, channels=width, temperature=T,
                     weight_var=config.weight_var)
    Q = np.asarray(th.order_params)
    variants = {"conv": float(th.test_loss), "local_nngp": float(th.local_nngp.test_loss),
                "pooled_nngp": float(th.pooled_nngp.test_loss)}
    return UnitTheory(th, th.local_nngp, float(np.trace(Q) / len(Q)), "conv", {"Q": Q}, variants)


def _cnn_compare_kernel(pooled: dict, theory: UnitTheory, tolerance: float, y_train):
    """The readout overlap ⟨Q̂⟩ against the theory's Q and against the NNGP's Q = I, relative to ‖Q‖."""
    Q_emp, Q = pooled["Q"], theory.kernels["Q"]
    norm = np.linalg.norm(Q)
    return {"Q_rel_distance_to_theory": float(np.linalg.norm(Q_emp - Q) / norm),
            "Q_rel_distance_to_identity": float(np.linalg.norm(Q_emp - np.eye(len(Q_emp))) / norm)}, None


ARCHITECTURES = {
    "mlp": Architecture("mlp", images=False, check=_mlp_check, model=_mlp_model, inputs=_mlp_inputs,
                        measure=_mlp_measure, theory=_mlp_theory, compare_kernel=_mlp_compare_kernel),
    "cnn": Architecture("cnn", images=True, check=_cnn_check, model=_cnn_model, inputs=_cnn_inputs,
                        measure=_cnn_measure, theory=_cnn_theory, compare_kernel=_cnn_compare_kernel),
}
