"""Our claims (not the papers'): fixed points under heterogeneous and online data sources.

CoPG §3.2/§7 and IPO-MD §5.1 raise, without studying them, data that depend on the
trajectory: a replay buffer, demonstrations beside a buffer, fresh generations, the
mixture π^(1−β)μ^β with a data policy μ. The sources are :mod:`bandit.sources`; a fixed
point of (θ, buffer) is a root of the field g(θ) = ∇_θ E_{q(π)}[ℓ] with q(π) the source's
stationary pair distribution under stop-gradient (:func:`bandit.sources.fixed_point`).
Each claim is checked on the random contextual bandits of :mod:`theory.instances` and
labelled ``paper="ours"``; each has a negative control.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from bandit.exact import optimal_policy
from bandit.fixed_points import fixed_point as offline_fixed_point
from bandit.games import nash_equilibrium
from bandit.problems import OfflineData, PreferenceGame
from bandit.sources import DemoReplay, MuMixture, Online, Replay, Source, frozen_data
from bandit.sources import fixed_point as source_fixed_point

from .checks import exact, rel_err, stationary_residual
from .instances import BanditInstance
from .registry import Claim, register

__all__ = ["instance_sources"]

PAPER = "ours"
# As in theory.copg: gradients are sums of ≤ 75 terms of the instance's scale with a few
# ulps each (≈ 1e-13 relative); 1e-10 leaves a margin of 1000.
TOL = 1e-10
TOL_REASON = "float64: ≤75 summed terms × few ulps ≈ 1e-13 relative, ×1000 margin"
# Fixed points from two solvers: each certified to max|g| ≤ CERT (root finder) or a
# duality gap ≤ 1e-12 (Nash); the IPO field's Jacobian has smallest eigenvalue ≥
# 2τ·ρ_min·q_min ≳ 1e-4 on these instances, so log π is off by ≤ 1e4·CERT ≈ 1e-8.
CERT = 1e-12
FP_TOL = 1e-7
FP_REASON = "two certified solvers (max|g| ≤ 1e-12, Nash gap ≤ 1e-12) × ‖J⁻¹‖ ≲ 1e4: ≤ 1e-8"


def instance_sources(inst: BanditInstance) -> dict[str, Source]:
    """The sources every claim is tried with: online, replay (last 3 iterates and an EMA),
    demonstrations μ1 + replay, and the μ-mixture with μ = μ2, β = 1/2."""
    return {
        "online": Online(),
        "replay": Replay(last=3),
        "replay_ema": Replay(ema=0.3),
        "demo_replay": DemoReplay(inst.mu1, Replay(last=3)),
        "mu_mixture": MuMixture(inst.mu2, 0.5),
    }


#: The sources under which the pairs stay off-policy at a fixed point (the buffer of a
#: pure replay source holds π there, so it is on-policy).
OFF_POLICY = ("demo_replay", "mu_mixture")


def _scale(inst: BanditInstance, log_pi) -> float:
    b = inst.bandit
    h = np.asarray(log_pi) - b.log_ref
    return 1.0 + float(np.max(np.abs(b.rewards))) + b.beta * float(np.max(np.abs(h)))


# ------------------------------------------------------------------ CoPG: π* everywhere


@exact
def _copg_sources(inst: BanditInstance, method: str = "copg", names=None) -> float:
    """max over sources of the residual of "π* is a minimiser of the loss with the
    source's stationary pairs at π* frozen" (then π* is a fixed point of (θ, buffer)), and
    the unique one for demonstrations + replay, whose pairs μ1 ⊗ π keep weights ≥ μ1_min·
    π_max on a star: the Hessian's null space must be the shifts only. (On-policy pairs
    π* ⊗ π* connect the actions too, but with weights down to e^(−2·max|R|/β), below what
    an eigenvalue test can resolve; the uniqueness argument is then the one above.)"""
    lp = optimal_policy(inst.bandit)
    sources = instance_sources(inst)
    res = [
        stationary_residual(
            method,
            inst.bandit,
            frozen_data(sources[s], lp),
            lp,
            _scale(inst, lp),
            unique=method == "copg" and s == "demo_replay",
        )
        for s in (names or sources)
    ]
    return max(res) if method == "copg" else min(res)


register(
    Claim(
        "ours.copg.sources",
        PAPER,
        "CoPG Thm 1 with μ2 = μ2(π)",
        "under online, replay (last K, EMA), demonstrations + replay and μ-mixture sources, "
        "π* ∝ π_ref exp(R/β) is CoPG's fixed point, and the unique one: for every fixed "
        "connected q the CoPG gradient vanishes only at π*",
        "bandit3",
        _copg_sources,
        TOL,
        TOL_REASON + "; uniqueness: Hessian null space = per-prompt shifts only",
        lambda i: _copg_sources(i, method="pg_value", names=OFF_POLICY),
        "PG with the value baseline (pg_value) under demonstrations + replay and the "
        "μ-mixture is not stationary at π* (the pairs stay off-policy at the fixed point; "
        "with pure replay the buffer is on-policy there and pg_value is stationary too)",
    )
)


# ----------------------------------------------------------------- IPO: it moves


IPO_SOURCES = ("online", "demo_replay", "mu_mixture")


@lru_cache(maxsize=8)  # the check and its negative control share them
def _ipo_fixed_points(inst: BanditInstance):
    sources = instance_sources(inst)
    return [source_fixed_point("ipo", inst.bandit, sources[s]) for s in IPO_SOURCES]


@exact
def _ipo_moves(inst: BanditInstance, wrong: bool = False) -> float:
    """The IPO fixed point under source S is the offline IPO optimum of S's own stationary
    pairs at that point (certified, unique); ``wrong``: of another source's pairs."""
    sources = instance_sources(inst)
    names = IPO_SOURCES
    out = []
    for i, (s, fp) in enumerate(zip(names, _ipo_fixed_points(inst), strict=True)):
        if not fp.residual <= CERT * _scale(inst, fp.log_policy):
            return math.inf
        other = sources[names[(i + 1) % len(names)]] if wrong else sources[s]
        scale = 1.0 + float(np.max(np.abs(fp.log_policy - inst.bandit.log_ref)))
        scale += 1.0 / inst.bandit.beta
        out.append(
            stationary_residual(
                "ipo", inst.bandit, frozen_data(other, fp.log_policy), fp.log_policy, scale
            )
        )
    return min(out) if wrong else max(out)


register(
    Claim(
        "ours.ipo.sources",
        PAPER,
        "IPO-MD §2.5 with q = q(π)",
        "IPO's fixed point moves with the source: under online, demonstrations + replay and "
        "μ-mixture sources it is the offline IPO optimum of that source's own stationary "
        "pairs, which differ",
        "bandit3",
        _ipo_moves,
        TOL,
        TOL_REASON + "; uniqueness: Hessian null space = per-prompt shifts only",
        lambda i: _ipo_moves(i, wrong=True),
        "the same fixed point checked against another source's stationary pairs",
    )
)


# ------------------------------------------------------------ IPO-MD with the μ-mixture


def _nash(inst: BanditInstance) -> np.ndarray:
    """Per prompt, the regularised Nash equilibrium of the Bradley–Terry game on R(x, ·)
    (IPO-MD Eq. 12): online IPO's fixed point (Prop. 4.1)."""
    b = inst.bandit
    out = []
    for x in range(b.n_prompts):
        sol = nash_equilibrium(PreferenceGame.bradley_terry(b.rewards[x], b.ref[x], b.beta))
        if not sol.residual <= CERT:
            raise RuntimeError(f"Nash certificate {sol.residual:.3g} above {CERT:g}")
        out.append(sol.log_policy)
    return np.stack(out)


def _offline_ipo(inst: BanditInstance) -> np.ndarray:
    """Offline IPO's fixed point with pairs from μ ⊗ μ (μ = μ2)."""
    fp = offline_fixed_point("ipo", inst.bandit, OfflineData(inst.mu2, inst.mu2))
    if not fp.residual <= CERT:
        raise RuntimeError(f"offline IPO certificate {fp.residual:.3g} above {CERT:g}")
    return fp.log_policy


@lru_cache(maxsize=8)  # the check and the negative control of both claims share them
def _mixture_fixed_point(inst: BanditInstance, mixture: float):
    return source_fixed_point("ipo", inst.bandit, MuMixture(inst.mu2, mixture))


@exact
def _mu_mixture(inst: BanditInstance, mixture: float, target: str) -> float:
    fp = _mixture_fixed_point(inst, mixture)
    if not fp.residual <= CERT * _scale(inst, fp.log_policy):
        return math.inf
    want = _nash(inst) if target == "nash" else _offline_ipo(inst)
    return rel_err(fp.log_policy, want)


register(
    Claim(
        "ours.ipo_md.mu_mixture.online",
        PAPER,
        "IPO-MD §5.1 with μ, β = 0",
        "IPO on pairs from the μ-mixture sg[π^(1−β)μ^β] at β = 0 has online IPO's fixed "
        "point: the regularised Nash equilibrium of the Bradley–Terry game (Eq. 12)",
        "bandit3",
        lambda i: _mu_mixture(i, 0.0, "nash"),
        FP_TOL,
        FP_REASON,
        lambda i: _mu_mixture(i, 1.0, "nash"),
        "the μ-mixture at β = 1 against the same Nash equilibrium",
    )
)

register(
    Claim(
        "ours.ipo_md.mu_mixture.offline",
        PAPER,
        "IPO-MD §5.1 with μ, β = 1",
        "IPO on pairs from the μ-mixture at β = 1 has offline IPO's fixed point with "
        "pairs from μ ⊗ μ",
        "bandit3",
        lambda i: _mu_mixture(i, 1.0, "offline"),
        FP_TOL,
        FP_REASON,
        lambda i: _mu_mixture(i, 0.0, "offline"),
        "the μ-mixture at β = 0 against the same offline optimum",
    )
)
