"""The pieces every paper's checks share: float64 JAX, the exact engine's expected loss
and its derivatives, closed forms used by more than one paper, and residuals.

Nothing here knows about claims or papers; :mod:`theory.copg`, :mod:`theory.ipo_md` and
:mod:`theory.p3o` import from here and never from each other.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from bandit.expected import expected_value
from bandit.policy import log_softmax
from bandit.precision import float64
from bandit.prepare import tables

__all__ = [
    "E_GRAD",
    "E_HESS",
    "E_LOSS",
    "engine",
    "exact",
    "jtables",
    "offline_ipo_optimum",
    "rel_err",
    "scores",
    "stationary_residual",
]


# ----------------------------------------------------------------------------- residuals


def rel_err(a, b) -> float:
    """max |a − b| / max(1, max |a|, max |b|): an absolute error for O(1) quantities and a
    relative one for large ones, so one float64 tolerance fits every instance."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
    return float(np.max(np.abs(a - b), initial=0.0)) / scale


# ----------------------------------------------------------------------------- closed forms


def offline_ipo_optimum(log_ref, pref, mu, beta):
    """log π* of IPO-MD Eq. (7): π*(y) ∝ π_ref(y) exp(E_{Y'∼μ}[p(y ≻ Y')]/τ).

    The offline IPO optimum, checked by IPO-MD Eq. (7) and CoPG §5.

    Args:
      log_ref: log π_ref, shape (..., n).
      pref: pref[..., y, y'] = p(y ≻ y'), shape (..., n, n).
      mu: the data distribution μ, shape (..., n).
      beta: the KL strength (IPO-MD's τ, CoPG's β).
    """
    p_vs_mu = np.einsum("...ij,...j->...i", np.asarray(pref), np.asarray(mu))
    return log_softmax(np.asarray(log_ref) + p_vs_mu / beta)


# ----------------------------------------------------------------------------- JAX helpers
# Every check runs its JAX code in float64 through the engine's one boundary
# (:func:`bandit.precision.float64`, never the global flag).
# The cores are jitted module-level functions of arrays, so one compilation per shape
# serves every instance and claim of that shape (eager autodiff would recompile each
# primitive and be ~10× slower).

#: Decorator for a check: run it with JAX in float64 (the engine's boundary).
exact = float64


def jtables(problem, preferences=None):
    """:func:`bandit.prepare.tables` as float64 JAX arrays (call inside a check)."""
    return jax.tree_util.tree_map(jnp.asarray, tables(problem, preferences))


@jax.jit
def scores(logits):
    """∇_θ log π(y|x) for every (x, y): shape logits.shape + logits.shape (autodiff)."""
    return jax.jacobian(log_softmax)(logits)


def _expected_loss(logits, tab, joint, mixture, method, k, clip_eps):
    """E[ℓ](θ) from the shared engine (:func:`bandit.expected.expected_value`), with the
    mixture traced (one compile for every β) and the method's name and integers static."""
    return expected_value(
        logits, tab, joint, method=method, mixture=mixture, k=k, clip_eps=clip_eps
    )


_STATIC = (4, 5, 6)
E_LOSS = jax.jit(_expected_loss, static_argnums=_STATIC)
E_GRAD = jax.jit(jax.grad(_expected_loss), static_argnums=_STATIC)
E_HESS = jax.jit(jax.hessian(_expected_loss), static_argnums=_STATIC)


def engine(fn, method: str, logits, tab, data=None, *, mixture=0.0, k=2, clip_eps=0.2):
    """Call E_LOSS / E_GRAD / E_HESS with the method's sampling (``data``: OfflineData)."""
    joint = None if data is None else jnp.asarray(data.joint)
    th = jnp.asarray(logits).reshape(tab.log_ref.shape)
    return fn(th, tab, joint, jnp.float64(mixture), method, k, float(clip_eps))


def stationary_residual(
    method: str,
    problem,
    data,
    log_pi,
    scale: float,
    *,
    preferences=None,
    unique: bool = True,
    mixture: float = 0.0,
) -> float:
    """Residual of "log_pi is the unique minimiser of the method's expected loss".

    The gradient of the exact expected loss (shared engine, autodiff) at ``log_pi``, in
    max-norm over ``scale``. With ``unique``, also the uniqueness certificate for the
    losses that are convex quadratics in the logits (CoPG, IPO): the Hessian's null space
    must be exactly the per-prompt shifts θ(x, ·) + c(x), whose dimension is the number of
    prompts X; if the (X+1)-th smallest eigenvalue is at rounding level, the minimiser is
    not unique and the residual is inf.
    """
    tab = jtables(problem, preferences)
    th = np.asarray(log_pi, dtype=np.float64).reshape(tab.log_ref.shape)
    g = np.asarray(engine(E_GRAD, method, th, tab, data, mixture=mixture))
    res = float(np.max(np.abs(g))) / scale
    if unique:
        N = th.size
        H = np.asarray(engine(E_HESS, method, th, tab, data, mixture=mixture)).reshape(N, N)
        ev = np.linalg.eigvalsh((H + H.T) / 2)
        X = th.shape[0]
        # Rounding leaves |eigenvalues| ~ 1e-15 where the Hessian vanishes; on these
        # instances a connected pair graph gives λ_(X+1) ≥ β ρ_min q_min ≳ 1e-8 (ranges
        # of theory.instances), so the floor 1e-12 separates the two by 4 orders each way.
        if ev[X] <= max(1e-11 * ev[-1], 1e-12):
            return math.inf
    return res
