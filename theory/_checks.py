"""The precision policy and the input checks shared by every public function of `theory`.

Subject: how theory computes (float64 or the data's precision) and how it refuses bad input. Every theory module
imports from here and from nowhere else for these jobs; `_solvers` is the other shared private module. Its names are
public (listed in `__all__`) but not re-exported from `deeptheory.theory`: they are tools of the theory modules.

Precision (docs/README.md, "Precision"). Every public theory function is one of two kinds:

- closed forms and solvers (random_features, renormalization, conv_renormalization, gp, priors, and T*(ε) of
  particle_flow; `@float64_theory`) compute in float64, whatever the global `jax_enable_x64` flag;
- maps applied to data (activations' mean_activation, nngp, conv_kernels, attention and the particle flows;
  `@data_map`) compute in the precision of their
  floating inputs (`working_dtype`): float32 in → float32, which is what float32 models want; float64, Python
  numbers and lists, and integers → float64. float16/bfloat16 are computed in float32.

Results come back in the caller's precision: as computed when the flag is on; with the flag off, float64 results
are rounded to float32 once, at the end (JAX without x64 cannot operate on float64 arrays: `jnp.diagonal` of one
raises a dtype error). So for concrete inputs the flag decides only the output dtype, never the arithmetic —
rf_risk at the interpolation peak is +inf either way — and what one module returns feeds the next.

Inside the caller's jit/vmap/grad with the flag off, the precision cannot change mid-program (JAX lowers a traced
program in one mode): a data map then computes in float32, and a float64 theory function raises, saying to enable
x64 or to call it outside the transformation.

Checks. A public function checks its concrete inputs (shapes, dtypes, ranges, NaN/Inf) and raises one
`ValueError` saying what was wrong and how to fix it. Under jit/vmap the values are tracers: the value checks are
skipped (they would need the numbers) and cost nothing; the shape checks still run.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "float64_theory",
    "data_map",
    "is_concrete",
    "working_dtype",
    "as_array",
    "all_finite",
    "check_finite",
    "finite_kernel",
    "fails",
    "check_scalar",
    "check_eigenvalues",
    "check_spectrum",
    "check_positive",
    "positive_scalar",
    "check_depth",
    "check_integer",
    "weight_variances",
    "as_tokens",
    "check_tokens",
]


def _traced(args, kwargs) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves((args, kwargs)))


def _with_x64(fn, *, inside_x32_trace):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if jax.config.read("jax_enable_x64"):
            return fn(*args, **kwargs)
        if _traced(args, kwargs):
            return inside_x32_trace(fn, args, kwargs)
        with jax.enable_x64(True):
            return jax.tree.map(_to_32_bit, fn(*args, **kwargs))

    return wrapper


def _refuse(fn, args, kwargs):
    raise ValueError(
        f"{fn.__module__.split('.')[-1]}.{fn.__name__} computes in float64, which a jit/vmap/grad traced with the x64 "
        "flag off cannot hold. Enable it first (jax.config.update('jax_enable_x64', True); arrays you create stay "
        "float32 when you ask for float32), or call the function on concrete values outside the transformation."
    )


def _as_traced(fn, args, kwargs):
    return fn(*args, **kwargs)


def float64_theory(fn):
    """A closed form or solver: float64 arithmetic whatever the x64 flag; results in the caller's precision
    (module docstring). With the flag off it runs under `jax.enable_x64(True)` and hands float64/int64 results back as
    float32/int32; inside a transformation traced with the flag off it raises, naming the fix."""
    return _with_x64(fn, inside_x32_trace=_refuse)


def data_map(fn):
    """A map applied to data: arithmetic in the inputs' precision (`working_dtype`), results in the caller's
    precision (module docstring). Inside a transformation traced with the flag off it runs in float32."""
    return _with_x64(fn, inside_x32_trace=_as_traced)


_NARROW = {jnp.dtype(jnp.float64): jnp.float32, jnp.dtype(jnp.int64): jnp.int32, jnp.dtype(jnp.uint64): jnp.uint32,
           jnp.dtype(jnp.complex128): jnp.complex64}


def _to_32_bit(leaf):
    if isinstance(leaf, jax.Array | jax.core.Tracer) and leaf.dtype in _NARROW:
        return leaf.astype(_NARROW[leaf.dtype])
    return leaf


def is_concrete(x) -> bool:
    """True unless x is a tracer (inside jit/vmap/grad, where its values are unknown)."""
    return not isinstance(x, jax.core.Tracer)


def _floating_dtype(x):
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        return None
    return jnp.dtype(jnp.float32) if jnp.finfo(dtype).bits < 32 else jnp.dtype(dtype)


def default_float():
    """float64, unless the x64 flag is off (then only inside a transformation traced in float32: `data_map`)."""
    return jnp.dtype(jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32)


def working_dtype(*arrays):
    """The dtype a data map computes in: float32 if every floating array among `arrays` is float32 (or lower),
    float64 if any is float64 or none is floating (integers, Python numbers, lists). `None` entries are ignored."""
    if not jax.config.read("jax_enable_x64"):
        return jnp.dtype(jnp.float32)
    floats = [d for d in (_floating_dtype(a) for a in arrays if a is not None and hasattr(a, "dtype")) if d is not None]
    if floats and all(d == jnp.float32 for d in floats):
        return jnp.dtype(jnp.float32)
    return jnp.dtype(jnp.float64)


def as_array(x, name: str, *, dtype=None, ndim: int | tuple[int, ...] | None = None, what: str = "",
             allow_empty: bool = False):
    """`x` as a jax array of `dtype` (default: its own floating dtype, or float64), after checking that it is numeric,
    has `ndim` dimensions, is not empty (unless allowed) and, when concrete, holds no NaN or Inf.

    `what` describes the expected array in the error, e.g. "a (P, d) array of P points in d dimensions".
    """
    if isinstance(x, str) or (hasattr(x, "dtype") and x.dtype == object):
        raise ValueError(f"{name} must be a numeric array; got {type(x).__name__}")
    if is_concrete(x):
        try:
            raw = np.asarray(x) if not isinstance(x, jax.Array) else x
        except Exception as err:  # ragged lists and the like
            raise ValueError(f"{name} must be a numeric array{f' ({what})' if what else ''}; got {x!r:.80}") from err
        kind = np.dtype(raw.dtype).kind
        if kind not in "biuf":
            raise ValueError(f"{name} must hold real numbers; got dtype {raw.dtype}")
    else:
        raw = x
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if ndims is not None and raw.ndim not in ndims:
        expected = " or ".join(str(n) for n in ndims)
        wanted = what if what else f"an array with {expected} dimension(s)"
        raise ValueError(f"{name} must be {wanted}; got shape {tuple(raw.shape)}")
    if not allow_empty and raw.size == 0:
        raise ValueError(f"{name} is empty (shape {tuple(raw.shape)}){f'; expected {what}' if what else ''}")
    target = dtype if dtype is not None else (_floating_dtype(raw) or default_float())
    out = jnp.asarray(raw, target)
    check_finite(name, out)
    return out


def fails(predicate, *arrays) -> bool:
    """True when every array is concrete and the elementwise `predicate(*arrays)` is False somewhere. Evaluated
    eagerly even while a caller's jit is tracing (closure constants are concrete there, but jnp on them is staged)."""
    if not all(is_concrete(a) for a in arrays):
        return False
    with jax.ensure_compile_time_eval():
        return not bool(jnp.all(predicate(*arrays)))


# One fused reduction, max |x| (NaN propagates through max, Inf is the max): jnp.all(jnp.isfinite(x)) materialised a
# boolean copy of x on XLA CPU, even under jit (2.5 GB more peak memory for a 50 000² float32 kernel; measured).
_all_finite = jax.jit(lambda x: jnp.isfinite(jnp.max(jnp.abs(x), initial=0.0)))


def all_finite(x) -> bool:
    """True unless x is concrete and holds NaN or Inf (a fused reduction on the device, no copy of x)."""
    if not is_concrete(x) or not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        return True
    with jax.ensure_compile_time_eval():
        return bool(_all_finite(x))


def check_finite(name: str, x) -> None:
    """Raise if concrete `x` holds NaN or Inf, naming the first bad entry."""
    if all_finite(x):
        return
    values = np.asarray(x)
    bad = ~np.isfinite(values)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        where = f" at index {index}" if values.ndim else ""
        raise ValueError(
            f"{name} holds {int(bad.sum())} non-finite value(s) (first: {values[index]}{where}); "
            "remove or impute NaN/Inf entries before calling"
        )


def finite_kernel(K):
    """K, after checking that a kernel computed from finite inputs did not overflow (|x|² ~ 1e60 in float32, or
    variances growing through many layers): if it did, say so and how to avoid it."""
    if not all_finite(K):
        raise ValueError(
            f"the kernel overflowed {K.dtype} (inputs or variances too large for it, e.g. |x|² beyond "
            f"{float(jnp.finfo(K.dtype).max):.1e}): pass float64 inputs, or rescale x or weight_var"
        )
    return K


def check_scalar(name: str, value, *, minimum: float, strict: bool, allow_inf: bool = False, hint: str = "") -> None:
    """A concrete real scalar ≥ minimum (> minimum if strict), finite unless allow_inf; skipped for tracers."""
    if not is_concrete(value):
        return
    v = np.asarray(value)
    if v.ndim != 0:
        raise ValueError(f"{name} must be a scalar (vmap over it for a grid); got shape {v.shape}")
    if v.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a real number{hint}; got {value!r}")
    v = float(v)
    bad = (v <= minimum) if strict else (v < minimum)
    if bad or v != v or (v == float("inf") and not allow_inf):
        relation = ">" if strict else ">="
        raise ValueError(f"{name} must be {relation} {minimum:g}{' or inf' if allow_inf else ''}{hint}; got {value!r}")


def check_positive(name: str, value, hint: str) -> None:
    """Every entry finite and > 0 (a scalar or one value per layer); skipped for tracers."""
    if not is_concrete(value):
        return
    v = np.asarray(value)
    if v.dtype.kind not in "biuf" or v.size == 0 or not np.all(np.isfinite(v)) or not np.all(v > 0):
        raise ValueError(f"{name} must be finite and > 0 ({hint}); got {value!r}")


def positive_scalar(name: str, value, hint: str) -> float:
    """A concrete finite real scalar > 0, as float (`check_scalar`; the error says "({hint})")."""
    check_scalar(name, value, minimum=0, strict=True, hint=f" ({hint})")
    return float(value)


def check_integer(name: str, value, *, minimum: int, what: str = "") -> int:
    """A Python or NumPy integer ≥ minimum (not a bool, not a float), as int."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}{f' ({what})' if what else ''} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def check_depth(depth, *, minimum: int = 0, what: str = "the number of hidden layers") -> int:
    """A layer count: `check_integer` named depth."""
    return check_integer("depth", depth, minimum=minimum, what=what)


def weight_variances(weight_var, priors, count: int, layers: str) -> np.ndarray:
    """σ_l² for `count` weight layers, input layer first, readout last: float64 (count,), each finite and > 0.

    The one boundary between the two conventions for a weight prior (docs/conventions.md): `weight_var` σ_l² is the
    public name; the renormalization papers' precisions λ_l = 1/σ_l² are still accepted as `priors` (deprecated; a
    `DeprecationWarning`) and converted here, σ_l² = 1.0/λ_l in float64, as the theory computed it before. `layers`
    names the layers in the length error, e.g. "depth + 1 = 4". `weight_var` None (with no priors) is 1 per layer.
    """
    if priors is not None:
        if weight_var is not None:
            raise ValueError("pass weight_var (σ_l² = 1/λ_l) only; priors (precisions λ) is its deprecated form")
        warnings.warn("priors (precisions λ) is deprecated; pass weight_var = 1/λ", DeprecationWarning, stacklevel=4)
        name, given = "priors", priors
        shape_text = "[λ_0, …, λ_L], one precision per weight layer"
        range_text = "are Gaussian precisions λ_l and must be finite and > 0;"
    else:
        name, given = "weight_var", 1.0 if weight_var is None else weight_var
        shape_text = "[σ_0², …, σ_L²], one variance per weight layer"
        range_text = "(σ_l² = 1/λ_l, the prior variance of each weight layer) must be finite and > 0;"
    shown = priors if priors is not None else weight_var
    values = np.asarray(as_array(given, name, dtype=jnp.float64, ndim=(0, 1)))
    values = np.full(count, float(values)) if values.ndim == 0 else values
    if values.shape != (count,):
        raise ValueError(f"{name} must be a scalar or {shape_text} (input layer first, readout last): length {layers}; "
                         f"got {shown!r}")
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"{name} {range_text} got {shown!r}")
    return 1.0 / values if priors is not None else values


def check_tokens(name: str, x) -> None:
    """A (N, d) context of N >= 1 tokens in d >= 1 dimensions (attention and the particle flows)."""
    if x.ndim != 2:
        raise ValueError(f"{name} must be a (N, d) array of N tokens in dimension d; got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty context (N = 0 tokens): attention needs at least one key")
    if x.shape[1] == 0:
        raise ValueError(f"{name} has dimension d = 0; tokens need at least one coordinate")


def as_tokens(y, name: str = "tokens"):
    """(N,) → (N, 1) so that 1-D data can be passed as a vector; returns (array, was_vector). Finite, in the
    working dtype of a data map (float32 stays float32, anything else becomes float64)."""
    y = as_array(y, name, ndim=(1, 2), what="a (N, d) array of N tokens in dimension d, or (N,) for d = 1", allow_empty=True)
    y = y.astype(working_dtype(y))
    return (y[:, None], True) if y.ndim == 1 else (y, False)


def check_eigenvalues(eigenvalues):
    """(D,) covariance eigenvalues λ_k as float64, each finite and > 0 (`theory.random_features`, `rf_dynamics`)."""
    lam = as_array(eigenvalues, "eigenvalues", dtype=jnp.float64, ndim=1, what="the (D,) covariance eigenvalues λ_k")
    if fails(lambda v: v > 0, lam):
        raise ValueError("eigenvalues must be finite and > 0 (drop zero modes: they carry no signal)")
    return lam


def check_spectrum(eigenvalues, target_power):
    """(λ, v²) as float64: the eigenvalues (`check_eigenvalues`) and the target's power v_k² = λ_k w̄_k² ≥ 0 in
    each mode, one per eigenvalue."""
    lam = check_eigenvalues(eigenvalues)
    v2 = as_array(target_power, "target_power", dtype=jnp.float64, ndim=1, what="v_k² = λ_k w̄_k², one per eigenvalue")
    if v2.shape != lam.shape:
        raise ValueError(f"target_power must have one entry per eigenvalue ({lam.shape[0]}); got shape {v2.shape}")
    if fails(lambda v: v >= 0, v2):
        raise ValueError("target_power (v_k² = λ_k w̄_k²) must be finite and >= 0")
    return lam, v2
