"""denoise: attention-only transformers (`models.attention.AttentionDenoiser`) trained with Adam on fresh prompts.

One model per (readout variant, σ²), vmapped; variant "fixed": τ starts at σ² and its gradient is zeroed (Stage 1
alone is learned); "learned": τ starts at init_readout_bandwidth and is trained with the rest. The loop is
`train.harness.checkpoint.resume_loop` (saved every quarter of the steps); the prompts of step k are drawn from
derive(seed, NAME, "train", prior, variant, σ²) folded with k, so a resumed run ends in the same state.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from deeptheory.models.attention import AttentionDenoiser
from deeptheory.theory.particle_flow import particle_flow
from deeptheory.theory.priors import bayes_posterior_mean, sample_prior
from deeptheory.train.experiments.denoise.config import NAME, PRIORS, Config, chunk
from deeptheory.train.harness.checkpoint import resume_loop
from deeptheory.train.harness.keys import derive

__all__ = ["template", "train"]


def template(config: Config) -> dict:
    """Zeros shaped like `train`'s result (V readout variants × S noise variances, L layers)."""
    V, S, L = len(config.train_readout), len(config.sigma2s), config.depth_trained
    return {"bandwidth": np.zeros((V, S, L)), "step": np.zeros((V, S, L)),
            **{k: np.zeros((V, S)) for k in ("readout", "learned_mse", "bayes_realised", "effective_time")},
            "losses": np.zeros((config.train_steps, V, S), np.float32)}


def train(config: Config, name: str, out_dir: Path) -> dict:
    """Train on prior `name` (d = min(dims)) and measure: the learned ε_l, α_l (V, S, L) and τ (V, S); the MSE of
    the model and of Bayes on the same fresh prompts and the flow time the model's Stage 1 removes (V, S); the
    training losses (steps, V, S)."""
    dim = min(config.dims)
    prior = PRIORS[name].build(config, dim, jnp.float32)
    model = AttentionDenoiser(depth=config.depth_trained, init_bandwidth=config.init_bandwidth,
                              init_step=config.init_step, chunk_size=chunk(config))
    V, S = config.train_readout, config.sigma2s
    sigma2 = jnp.asarray(np.tile(S, len(V)), jnp.float32)  # (V·S,)
    learn_tau = jnp.asarray(np.repeat([v == "learned" for v in V], len(S)), jnp.float32)
    tau0 = np.where(np.asarray(learn_tau) > 0, config.init_readout_bandwidth, np.asarray(sigma2))
    B, N, L = config.train_batch, config.train_context, config.depth_trained
    opt = optax.adam(config.learning_rate)

    def batch(key, s2, prompts):
        k_x, k_z = jax.random.split(key)
        x = sample_prior(k_x, prior, prompts * N).reshape(prompts, N, dim)
        return x, x + jnp.sqrt(s2) * jax.random.normal(k_z, x.shape, x.dtype)

    def loss(params, key, s2):
        x, y = batch(key, s2, B)
        return jnp.mean((model.apply(params, y) - x) ** 2)

    def one_step(params, opt_state, key, s2, learn):
        value, grads = jax.value_and_grad(loss)(params, key, s2)
        grads["params"]["log_readout_bandwidth"] = learn * grads["params"]["log_readout_bandwidth"]
        # optax.adam's bias correction raises a float to its int32 step count, which strict promotion refuses
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    items = sigma2.shape[0]
    item_keys = jnp.stack([derive(config.seed, NAME, "train", name, v, s2) for v in V for s2 in S])  # by value

    @jax.jit
    def train_step(params, opt_state, step):
        keys = jax.vmap(lambda k: jax.random.fold_in(k, step))(item_keys)  # = derive(..., v, s2, step)
        return jax.vmap(one_step)(params, opt_state, keys, sigma2, learn_tau)

    # every parameter has a constant initialiser (log ε, log α, log τ), so the init key draws nothing
    params0 = model.init(jax.random.key(0), jnp.zeros((1, N, dim), jnp.float32))
    params = jax.tree.map(lambda p: jnp.broadcast_to(p, (items, *p.shape)), params0)
    params["params"]["log_readout_bandwidth"] = jnp.log(jnp.asarray(tau0, jnp.float32))
    with jax.numpy_dtype_promotion("standard"):
        opt_state = jax.vmap(opt.init)(params)

    def step_fn(t, state):
        params, opt_state, value = train_step(state["params"], state["opt_state"], t)
        losses = state["losses"].copy()
        losses[t] = np.asarray(value)
        # host (NumPy) state: every process of a multi-host run holds the same values, which orbax saves as such
        return jax.tree.map(np.asarray, {"params": params, "opt_state": opt_state, "losses": losses})

    state = jax.tree.map(np.asarray, {"params": params, "opt_state": opt_state,
                                      "losses": np.zeros((config.train_steps, items), np.float32)})
    state = resume_loop(out_dir / "checkpoints" / f"train_{name}", state, config.train_steps, step_fn,
                        every=max(1, config.train_steps // 4), desc=f"{NAME}: train {name}", unit="steps")

    @jax.jit
    def evaluate(params, key, s2):
        """MSE of the model and of Bayes on fresh prompts, and the variance its Stage 1 removes: the flow-time
        equivalent T_eff = (Var y − Var x^L)/2 per coordinate, which the ε → 0 flow makes σ²/2 at T* (Σ α_l ε_l
        overstates time when ε_l is not small: a layer contracts by α ε/(v + ε), not α ε/v)."""
        x, y = batch(key, s2, 4 * B)
        p = params["params"]
        flow = jax.vmap(lambda y_NxD: particle_flow(y_NxD, eps=jnp.broadcast_to(jnp.exp(p["log_bandwidth"]), (L,)),
                                                    step=jnp.broadcast_to(jnp.exp(p["log_step"]), (L,)), depth=L))
        removed = jnp.mean(jnp.var(y, axis=1) - jnp.var(flow(y), axis=1)) / 2
        return (jnp.mean((model.apply(params, y) - x) ** 2), jnp.mean((bayes_posterior_mean(y, prior, s2) - x) ** 2),
                removed)

    eval_keys = jnp.stack([derive(config.seed, NAME, "evaluate", name, s2) for _ in V for s2 in S])  # shared by τ
    learned_mse, bayes_realised, removed = jax.vmap(evaluate)(state["params"], eval_keys, sigma2)
    p = state["params"]["params"]
    shape = (len(V), len(S))
    return {"bandwidth": np.exp(np.asarray(p["log_bandwidth"], np.float64)).reshape(*shape, -1),
            "step": np.exp(np.asarray(p["log_step"], np.float64)).reshape(*shape, -1),
            "readout": np.exp(np.asarray(p["log_readout_bandwidth"], np.float64)).reshape(shape),
            "learned_mse": np.asarray(learned_mse, np.float64).reshape(shape),
            "bayes_realised": np.asarray(bayes_realised, np.float64).reshape(shape),
            "effective_time": np.asarray(removed, np.float64).reshape(shape),
            "losses": state["losses"].reshape(-1, *shape)}
