"""The method registry: each method's name, what it learns from and where its pairs come from.

Names are used everywhere (API, CLI, JSON). Import-light: no JAX, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .validation import ValidationError

__all__ = ["METHODS", "OFFLINE_METHODS", "ONLINE_METHODS", "Method", "get_method"]

Sampling = Literal["offline", "policy", "mixture", "policy_vs_mixture"]


@dataclass(frozen=True)
class Method:
    """A training method.

    Attributes:
      name: the method's name.
      loss: the name of its per-pair loss in :mod:`bandit.losses`.
      signal: ``"reward"`` (learns from R) or ``"preference"`` (from p(y ≻ y')).
      sampling: where pairs come from: ``"offline"`` (y ∼ μ1, y' ∼ μ2), ``"policy"``
        (y, y' ∼ sg[π]), ``"mixture"`` (y, y' ∼ sg[π^(1−β)π_ref^β]) or
        ``"policy_vs_mixture"`` (y ∼ sg[π], y' ∼ sg[π^(1−β)π_ref^β]).
      paper: where it is defined.
    """

    name: str
    loss: str
    signal: Literal["reward", "preference"]
    sampling: Sampling
    paper: str


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("copg", "copg_loss", "reward", "offline", "CoPG Eq. (5), Alg. 1"),
        Method("pg", "pg_loss", "reward", "offline", "CoPG §5, b = 0"),
        Method("pg_value", "pg_loss", "reward", "offline", "CoPG §5, b = E_π[R]"),
        Method("rloo", "rloo_loss", "reward", "policy", "CoPG Prop. 2"),
        Method("ipo", "ipo_loss", "preference", "offline", "IPO-MD Eq. (8)"),
        Method("dpo", "dpo_loss", "preference", "offline", "IPO-MD Eq. (4)"),
        Method("slic", "slic_loss", "preference", "offline", "IPO-MD Eq. (5)"),
        Method("online_ipo", "ipo_loss", "preference", "policy", "IPO-MD Eq. (11), Alg. 2"),
        Method("ipo_md", "ipo_loss", "preference", "mixture", "IPO-MD §5.1, Alg. 3"),
        Method("nash_md_pg", "nash_md_pg_loss", "preference", "policy_vs_mixture", "IPO-MD §2.6"),
        Method("online_dpo", "dpo_loss", "preference", "policy", "IPO-MD App. G"),
        Method("p3o_v1", "p3o_loss", "reward", "policy", "P3O §4.2, separate clipping"),
        Method("p3o_v2", "p3o_loss", "reward", "policy", "P3O §4.2, joint clipping"),
    ]
}
OFFLINE_METHODS = tuple(n for n, m in METHODS.items() if m.sampling == "offline")
ONLINE_METHODS = tuple(n for n, m in METHODS.items() if m.sampling != "offline")


def get_method(name: str) -> Method:
    """Look a method up by name, with a clear error for an unknown one."""
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise ValidationError(
            f"method: unknown method {name!r}; expected one of {', '.join(METHODS)}"
        ) from None
