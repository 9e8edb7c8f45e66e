"""The registry of claims: what a :class:`Claim` is, and :data:`CLAIMS`, filled by
:func:`register` when the paper modules (:mod:`theory.copg`, :mod:`theory.ipo_md`,
:mod:`theory.p3o`) and our own (:mod:`theory.online`) are imported. ``import theory``
imports them all; the runner is :mod:`theory.claims`.

A claim computes both sides of one statement of a paper exactly (float64, sums over all
outcomes, JAX autodiff) and returns the residual between them. It carries the tolerance
with its reason, a *negative control* (a deliberately wrong variant that the same check
must reject) and, where the printed statement needed a corrected constant or condition,
the statement *as printed*, which must fail: both directions are checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .instances import SAMPLERS

__all__ = ["CLAIMS", "Claim", "Residual", "register"]

Residual = float


@dataclass(frozen=True)
class Claim:
    """One executable, falsifiable claim.

    Attributes:
      id: a short stable id, e.g. ``"copg.thm1"``.
      paper: ``"CoPG"``, ``"IPO-MD"`` or ``"P3O"``, or ``"ours"`` for claims new to this
        project (:mod:`theory.online`), which no paper states.
      ref: where the paper states it (``"Thm 1"``, ``"Prop. 5.1"``).
      statement: one line, the statement that is checked (corrected where needed).
      family: which instance sampler/strategy generates its instances (see SAMPLERS).
      check: instance -> residual between the two independently computed sides.
      tol: the residual must be at most this.
      tol_reason: why this tolerance (derived from the mathematics / float64).
      negative: instance -> residual of a deliberately wrong variant; must exceed ``tol``.
      negative_desc: what the wrong variant is.
      printed: instance -> residual of the statement exactly as printed, where it differs
        from ``statement``; it must exceed ``tol`` on some instance (else no correction
        was needed and the claim fails).
      correction: what was corrected (constant, sign, condition), for the report.
    """

    id: str
    paper: str
    ref: str
    statement: str
    family: str
    check: Callable[[Any], Residual]
    tol: float
    tol_reason: str
    negative: Callable[[Any], Residual]
    negative_desc: str
    printed: Callable[[Any], Residual] | None = None
    correction: str = ""


CLAIMS: dict[str, Claim] = {}


def register(claim: Claim) -> Claim:
    """Add a claim to :data:`CLAIMS` (ids are unique)."""
    if claim.id in CLAIMS:
        raise ValueError(f"claim id {claim.id!r} is registered twice")
    if claim.family not in SAMPLERS:
        raise ValueError(f"claim {claim.id!r}: unknown instance family {claim.family!r}")
    CLAIMS[claim.id] = claim
    return claim
