"""The runner: tries each registered claim on seeded random instances and reports.

The claims themselves live in one module per paper (:mod:`theory.copg`,
:mod:`theory.ipo_md`, :mod:`theory.p3o`), registered in :data:`theory.registry.CLAIMS`
when ``theory`` is imported (its ``__init__`` imports every paper module, so importing
this module, which imports ``theory`` first, always sees every claim). Instances come from
the seeded samplers of :mod:`theory.instances`; nothing is random elsewhere.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bandit.validation import ValidationError, check_int

from .instances import SAMPLERS
from .registry import CLAIMS, Claim

__all__ = ["ClaimResult", "claim_rng", "run_claim", "run_claims"]


@dataclass
class ClaimResult:
    """The outcome of trying one claim on a set of instances."""

    id: str
    paper: str
    ref: str
    statement: str
    instances: int
    max_residual: float
    tol: float
    tol_reason: str
    negative_desc: str
    negative_min_residual: float
    negative_caught: bool
    as_printed: str  # "holds" or "corrected"
    printed_max_residual: float | None
    correction: str
    status: str  # "pass" or "FAIL"
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _nan_to_inf(r: float) -> float:
    return math.inf if not math.isfinite(r) else float(r)


def claim_rng(claim_id: str, seed: int, i: int) -> np.random.Generator:
    """The generator of instance ``i`` of a claim: fixed by (seed, claim id, i)."""
    return np.random.default_rng([seed, zlib.crc32(claim_id.encode()), i])


def run_claim(claim: Claim, instances: int, seed: int = 0) -> ClaimResult:
    """Try ``claim`` on ``instances`` seeded random instances; nothing is random elsewhere.

    Raises:
      ValidationError: ``instances`` not an integer >= 1 (a check that ran on nothing must
        never pass), ``seed`` not an integer >= 0, ``claim`` not a Claim.
    """
    if not isinstance(claim, Claim):
        raise ValidationError(f"claim must be a theory Claim, got {type(claim).__name__}")
    instances = check_int("instances", instances, 1)
    seed = check_int("seed", seed, 0)
    worst, neg_min, printed_max = 0.0, math.inf, -math.inf
    errors: list[str] = []
    for i in range(instances):
        inst = SAMPLERS[claim.family](claim_rng(claim.id, seed, i))
        try:
            worst = max(worst, _nan_to_inf(claim.check(inst)))
            neg_min = min(neg_min, _nan_to_inf(claim.negative(inst)))
            if claim.printed is not None:
                printed_max = max(printed_max, _nan_to_inf(claim.printed(inst)))
        except Exception as e:  # a crash is a failed claim, reported, never hidden
            errors.append(f"instance {i}: {type(e).__name__}: {e}")
            worst = math.inf
    caught = neg_min > claim.tol
    needed = claim.printed is None or printed_max > claim.tol
    ok = worst <= claim.tol and caught and needed and not errors
    return ClaimResult(
        claim.id,
        claim.paper,
        claim.ref,
        claim.statement,
        instances,
        worst,
        claim.tol,
        claim.tol_reason,
        claim.negative_desc,
        neg_min,
        caught,
        "holds" if claim.printed is None else "corrected",
        None if claim.printed is None else printed_max,
        claim.correction,
        "pass" if ok else "FAIL",
        errors,
    )


def run_claims(
    ids: Iterable[str] | None = None,
    *,
    instances: int = 20,
    seed: int = 0,
    progress: bool = False,
) -> list[ClaimResult]:
    """Run the registered claims (all, or ``ids``) and return one result per claim.

    Raises:
      ValidationError: an unknown claim id, ``ids`` a single string rather than a list,
        ``instances`` not an integer >= 1, ``seed`` not an integer >= 0.
    """
    if isinstance(ids, (str, bytes)):
        raise ValidationError(f"claims: pass a list of claim ids, e.g. [{ids!r}], got a string")
    instances = check_int("instances", instances, 1)
    seed = check_int("seed", seed, 0)
    try:
        chosen = list(CLAIMS) if ids is None else list(ids)
    except TypeError:
        raise ValidationError(
            f"claims: ids must be a list of claim ids, got {type(ids).__name__}"
        ) from None
    unknown = [c for c in chosen if not isinstance(c, str) or c not in CLAIMS]
    if unknown:
        raise ValidationError(
            f"claims: unknown claim id {unknown[0]!r}; expected one of {list(CLAIMS)}"
        )
    it = chosen
    if progress:
        from tqdm import tqdm

        it = tqdm(chosen, desc="claims", unit="claim")
    return [run_claim(CLAIMS[c], instances, seed) for c in it]
