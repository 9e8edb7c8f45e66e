"""The one validation step between a user's (method, problem, data) and the engine.

:func:`prepare` resolves the method, checks its parameters, the problem, the data and any
preference override once, and returns a :class:`Prepared`: the arrays the engine computes
with. Every consumer (expected losses, fixed points, dynamics, trainer, ``theory/``)
starts from it. Import-light: NumPy and SciPy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit

from .methods import Method, get_method
from .problems import Bandit, OfflineData, PreferenceGame
from .sources import Offline, Source
from .validation import ValidationError, check_preference_matrix, check_shape, real_array

__all__ = ["Prepared", "Tables", "prepare", "tables"]

Array = Any


class Tables(NamedTuple):
    """A tabular problem as arrays (a JAX pytree). Shapes: X prompts, n actions."""

    log_ref: Array  # (X, n)
    rho: Array  # (X,)
    rewards: Array | None  # (X, n); None for a preference game, which has no rewards
    pref: Array  # (X, n, n), pref[x, y, y'] = p(y ≻ y' | x)
    beta: Array  # () the KL strength: CoPG's β, IPO-MD's τ


def tables(problem: Bandit | PreferenceGame, preferences: ArrayLike | None = None) -> Tables:
    """The arrays of a problem. A bandit's preferences default to Bradley–Terry on R,
    p(y ≻ y'|x) = σ(R(x, y) − R(x, y')); ``preferences`` (X, n, n) or (n, n) overrides them."""
    if isinstance(problem, PreferenceGame):
        if preferences is not None:
            raise ValidationError("preferences: a PreferenceGame already holds its matrix P")
        return Tables(
            problem.log_ref[None], np.ones(1), None, problem.P[None], np.float64(problem.beta)
        )
    if not isinstance(problem, Bandit):
        raise ValidationError(
            f"problem must be a Bandit or PreferenceGame, got {type(problem).__name__}"
        )
    R = problem.rewards
    X, n = R.shape
    if preferences is None:
        pref = expit(R[:, :, None] - R[:, None, :])
    else:
        pref = real_array("preferences", preferences)  # no complex, strings or booleans
        if np.asarray(preferences).dtype == np.bool_:  # real_array lets booleans through
            raise ValidationError(
                "preferences must be real probabilities p(y ≻ y') in [0, 1], got booleans"
            )
        if pref.ndim == 2:
            pref = pref[None]
        check_shape("preferences", pref, (X, n, n))
        for x in range(X):
            check_preference_matrix(f"preferences[{x}]", pref[x])
    return Tables(problem.log_ref, problem.rho, R, pref, np.float64(problem.beta))


def _offline_data(data: Any) -> OfflineData:
    if isinstance(data, OfflineData):
        return data
    if isinstance(data, tuple) and len(data) == 2:
        return OfflineData(*data)
    raise ValidationError(
        f"data must be OfflineData or a (mu1, mu2) tuple, got {type(data).__name__}"
        + (f" of length {len(data)}" if isinstance(data, tuple) else "")
    )


@dataclass(frozen=True, eq=False)
class Prepared:
    """A validated method on a problem: everything the engine needs, checked once.

    Attributes:
      method: the resolved :class:`~bandit.methods.Method`.
      problem: the :class:`Bandit` or :class:`PreferenceGame`.
      tables: its arrays (NumPy, float64).
      data: the fixed pair distribution (offline methods, or any method given an
        ``Offline`` source), else None.
      params: the method's checked parameters, defaults filled in.
      preferences: the caller's preference override (None: Bradley–Terry on R, or P).
      source: the caller's :class:`~bandit.sources.Source` when one was given (it then
        replaces the method's own sampler), else None.
    """

    method: Method
    problem: Bandit | PreferenceGame
    tables: Tables
    data: OfflineData | None
    params: dict[str, Any]
    preferences: NDArray[np.float64] | None
    source: Source | None = None

    @property
    def joint(self) -> NDArray[np.float64] | None:
        """q(y, y'|x), shape (X, n, n), for fixed data (offline methods or an ``Offline``
        source); None when the method or its source samples from the policy."""
        return None if self.data is None else self.data.joint

    @property
    def dynamic_source(self) -> Source | None:
        """The caller's source when its pairs depend on the trajectory, else None."""
        s = self.source
        return s if s is not None and s.policy_dependent else None

    @property
    def shape(self) -> tuple[int, int]:
        """(X, n): the shape of the logits."""
        return tuple(np.shape(self.tables.log_ref))  # type: ignore[return-value]

    def logits(self, name: str, logits: ArrayLike) -> NDArray[np.float64]:
        """``logits`` validated as finite float64 of shape (X, n) ((n,) when X = 1)."""
        from .validation import check_finite

        th = check_finite(name, logits)
        if th.ndim == 1 and self.shape[0] == 1:
            th = th[None]
        check_shape(name, th, self.shape)
        return th


def _source(m: Method, checked: dict[str, Any], source: Source, shape) -> None:
    """Refuse a source a method cannot take: sources draw pairs, so arity 2, and the
    mixture then belongs to the source (``MuMixture``), not to the method."""
    if m.n_completions(checked) != 2:
        raise ValidationError(
            f"data: a source draws pairs, but {m.name!r} takes k = {m.n_completions(checked)} "
            "completions per sample; use k=2"
        )
    if m.uses_mixture and checked.get("mixture", 0.0) != 0.0:
        raise ValidationError(
            f"mixture: with a source, where pairs come from is the source's; got mixture="
            f"{checked['mixture']:g} for {m.name!r} (use MuMixture(mu, mixture) instead)"
        )
    source.check(shape)


def prepare(
    method: str | Method,
    problem: Bandit | PreferenceGame,
    data: OfflineData | tuple | Source | None = None,
    *,
    preferences: ArrayLike | None = None,
    **params: Any,
) -> Prepared:
    """Validate ``method`` on ``problem`` with ``data`` once; see :class:`Prepared`.

    ``data`` is ``OfflineData`` (or a (μ1, μ2) tuple) for an offline method, or any
    :class:`~bandit.sources.Source` for any method with pairs (it replaces the method's
    sampler: ``prepare("copg", bandit, Online())`` is online CoPG).

    Raises:
      ValidationError: unknown method or parameter, a bad problem, data or preference
        matrix, a reward method on a preference game, offline data missing for an offline
        method or given to an online one.
    """
    m = get_method(method)
    checked = m.check_params(params)
    tab = tables(problem, preferences)
    if m.signal == "reward" and tab.rewards is None:
        raise ValidationError(f"method: {m.name!r} learns from rewards; a PreferenceGame has none")
    pref = None if preferences is None else np.asarray(tab.pref)
    if isinstance(data, Source):
        _source(m, checked, data, np.shape(tab.log_ref))
        fixed = data.data if isinstance(data, Offline) else None
        return Prepared(m, problem, tab, fixed, checked, pref, data)
    if m.offline:
        if data is None:
            raise ValidationError(
                f"data: method {m.name!r} is offline and needs OfflineData(mu1, mu2)"
            )
        data = _offline_data(data)
        check_shape("data.mu1", data.mu1, np.shape(tab.log_ref))
    elif data is not None:
        raise ValidationError(
            f"data: method {m.name!r} samples its own pairs (sampling {m.sampling!r}) and "
            "takes no offline data; pass data=None, or a bandit.sources.Source"
        )
    return Prepared(m, problem, tab, data, checked, pref)
