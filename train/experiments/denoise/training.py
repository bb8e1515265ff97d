"""denoise: attention-only transformers (`models.attention.AttentionDenoiser`) trained with Adam on fresh prompts.

One model per (attention, readout variant, σ², seed); the (variant, σ², seed) models of one attention are vmapped.
Variant "fixed": τ starts at σ² and its gradient is zeroed (Stage 1 alone is learned); "learned": τ starts at
init_readout_bandwidth and is trained with the rest. The loop is
`train.harness.checkpoint.resume_loop` (saved every quarter of the steps); the prompts of step k are drawn from
derive(seed, NAME, "train", prior, variant, σ², …) folded with k (`_stream`), so a resumed run ends in the same state.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from deeptheory.models.attention import AttentionDenoiser
from deeptheory.theory.priors import bayes_posterior_mean, sample_prior
from deeptheory.train.experiments.denoise.config import NAME, PRIORS, Config, chunk
from deeptheory.train.harness.checkpoint import resume_loop
from deeptheory.train.harness.keys import derive

__all__ = ["template", "train"]


def template(config: Config) -> dict:
    """Zeros shaped like `train`'s result (A attentions × V readout variants × S noise variances × R seeds, L
    layers)."""
    shape = (len(config.train_attention), len(config.train_readout), len(config.sigma2s), config.train_seeds)
    return {"bandwidth": np.zeros((*shape, config.depth_trained)), "step": np.zeros((*shape, config.depth_trained)),
            **{k: np.zeros(shape) for k in ("readout", "learned_mse", "bayes_realised", "effective_time")},
            "losses": np.zeros((config.train_steps, *shape), np.float32)}


def _stream(config: Config, name: str, attention: str, variant: str, sigma2: float, seed_index: int) -> tuple:
    """The key path of one model's training prompts, by value. The first RBF seed keeps the path it had before
    attentions and seeds were added, so existing runs draw the same prompts."""
    return (NAME, "train", name, variant, sigma2, *(() if attention == "rbf" else (attention,)),
            *(() if seed_index == 0 else ("seed", seed_index)))


def train(config: Config, name: str, out_dir: Path) -> dict:
    """Train on prior `name` (d = min(dims)), one model per (attention, readout variant, σ², seed), and measure: the
    learned ε_l, α_l (A, V, S, R, L) and τ (A, V, S, R); the MSE of the model and of Bayes on the same fresh prompts
    and the flow-time equivalent of the variance its Stage 1 removes (A, V, S, R); the training losses (steps, A, V,
    S, R)."""
    parts = [_train_one_attention(config, name, attention, out_dir) for attention in config.train_attention]
    return {k: np.stack([p[k] for p in parts], axis=1 if k == "losses" else 0) for k in parts[0]}


def _train_one_attention(config: Config, name: str, attention: str, out_dir: Path) -> dict:
    dim = min(config.dims)
    prior = PRIORS[name].build(config, dim, jnp.float32)
    model = AttentionDenoiser(depth=config.depth_trained, attention=attention, init_bandwidth=config.init_bandwidth,
                              init_step=config.init_step, chunk_size=chunk(config))
    V, S, R = config.train_readout, config.sigma2s, config.train_seeds
    grid = [(v, s2, r) for v in V for s2 in S for r in range(R)]  # the vmapped items, (V, S, R) row-major
    sigma2 = jnp.asarray([s2 for _, s2, _ in grid], jnp.float32)
    learn_tau = jnp.asarray([v == "learned" for v, _, _ in grid], jnp.float32)
    tau0 = np.where(np.asarray(learn_tau) > 0, config.init_readout_bandwidth, np.asarray(sigma2))
    B, N = config.train_batch, config.train_context
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

    item_keys = jnp.stack([derive(config.seed, *_stream(config, name, attention, v, s2, r)) for v, s2, r in grid])

    @jax.jit
    def train_step(params, opt_state, step):
        keys = jax.vmap(lambda k: jax.random.fold_in(k, step))(item_keys)  # = derive(..., step)
        return jax.vmap(one_step)(params, opt_state, keys, sigma2, learn_tau)

    # every parameter has a constant initialiser (log ε, log α, log τ), so the init key draws nothing
    params0 = model.init(jax.random.key(0), jnp.zeros((1, N, dim), jnp.float32))
    params = jax.tree.map(lambda p: jnp.broadcast_to(p, (len(grid), *p.shape)), params0)
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
                                      "losses": np.zeros((config.train_steps, len(grid)), np.float32)})
    suffix = "" if attention == "rbf" else f"_{attention}"  # the RBF models keep their checkpoints' old name
    state = resume_loop(out_dir / "checkpoints" / f"train_{name}{suffix}", state, config.train_steps, step_fn,
                        every=max(1, config.train_steps // 4), desc=f"{NAME}: train {name} ({attention})",
                        unit="steps")
    stage1 = model.clone(stage1_only=True)

    @jax.jit
    def evaluate(params, key, s2):
        """MSE of the model and of Bayes on fresh prompts, and the variance its Stage 1 removes: the flow-time
        equivalent T_eff = (Var y − Var x^L)/2 per coordinate, which the ε → 0 flow makes σ²/2 at T* (Σ α_l ε_l
        overstates time when ε_l is not small: a layer contracts by α ε/(v + ε), not α ε/v)."""
        x, y = batch(key, s2, 4 * B)
        removed = jnp.mean(jnp.var(y, axis=1) - jnp.var(stage1.apply(params, y), axis=1)) / 2
        return (jnp.mean((model.apply(params, y) - x) ** 2), jnp.mean((bayes_posterior_mean(y, prior, s2) - x) ** 2),
                removed)

    # shared by every readout variant, seed and attention at one σ²: their MSEs are compared on the same prompts
    eval_keys = jnp.stack([derive(config.seed, NAME, "evaluate", name, s2) for _, s2, _ in grid])
    learned_mse, bayes_realised, removed = jax.vmap(evaluate)(state["params"], eval_keys, sigma2)
    p = state["params"]["params"]
    shape = (len(V), len(S), R)
    return {"bandwidth": np.exp(np.asarray(p["log_bandwidth"], np.float64)).reshape(*shape, -1),
            "step": np.exp(np.asarray(p["log_step"], np.float64)).reshape(*shape, -1),
            "readout": np.exp(np.asarray(p["log_readout_bandwidth"], np.float64)).reshape(shape),
            "learned_mse": np.asarray(learned_mse, np.float64).reshape(shape),
            "bayes_realised": np.asarray(bayes_realised, np.float64).reshape(shape),
            "effective_time": np.asarray(removed, np.float64).reshape(shape),
            "losses": state["losses"].reshape(-1, *shape)}
