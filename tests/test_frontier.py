"""The exact β-sweeps and the KL–reward frontier (bandit.frontier): properties with controls.

The frontier theorem: π*_β' maximises E[R] − β'·KL, so any π with KL(π‖π_ref) = k has
E_π[R] − β'k ≤ R*(k) − β'k, i.e. E_π[R] ≤ R*(k). CoPG's fixed point is π*_β (Thm 1), so it
lies on the frontier; every other method lies on or below it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit, log_softmax

from bandit import Bandit, OfflineData, PreferenceGame, fixed_point, optimal_policy
from bandit.cli import cli
from bandit.frontier import (
    Figure1Config,
    compute,
    expected_reward,
    frontier_reward,
    main,
    sweep,
)

# Rounding budget of a deficit: CoPG's fixed point is π*_β to its certificate (~1e-14 in
# the logits); Brent's root in log β' is exact to 1e-14, which moves R*(k) by at most
# |dR*/d log β'|·1e-14 ≤ (max R − min R)·1e-14; rewards and KLs carry ~1e-15·max|R|. With
# |R| ≤ 10 all of this is < 1e-12; 1e-10 is the bound.
ON_FRONTIER = 1e-10
GRID = np.geomspace(1e-2, 1e2, 5)


@st.composite
def instances(draw, max_prompts: int = 2):
    """A random (contextual) bandit with full-support product data."""
    # Two shapes only: each new (X, n) costs a JAX compilation per method.
    X = draw(st.integers(1, max_prompts))
    n = 3
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    R = rng.uniform(-3, 3, (X, n))
    ref = rng.dirichlet(np.ones(n), X) * 0.9 + 0.1 / n
    mu1 = rng.dirichlet(np.ones(n), X) * 0.9 + 0.1 / n
    mu2 = rng.dirichlet(np.ones(n), X) * 0.9 + 0.1 / n
    return Bandit(R, ref, None, 1.0), OfflineData(mu1, mu2)


@settings(max_examples=10)
@given(instances())
def test_copg_lies_on_the_frontier(inst):
    bandit, data = inst
    s = sweep("copg", bandit, data, GRID)
    assert np.max(np.abs(s.deficit_to_frontier)) <= ON_FRONTIER
    # Control: a policy off π*, the anti-optimal π ∝ π_ref·exp(−R/β) (mass on bad actions),
    # is flagged: same check, deficit far above the rounding budget.
    for b in GRID:
        bb = Bandit(bandit.rewards, bandit.ref, None, b)
        anti = log_softmax(bandit.log_ref - bandit.rewards / b, axis=-1)
        star, _ = frontier_reward(bandit, _kl(bb, anti))
        assert star - float(expected_reward(bb, anti)) > 1e-6


# Each example solves 7 methods on the grid: a few examples keep the file under a minute.
@settings(max_examples=3)
@given(instances())
def test_no_fixed_point_lies_above_the_frontier(inst):
    bandit, data = inst
    for m in ("copg", "pg", "pg_value", "ipo", "dpo", "slic"):
        s = sweep(m, bandit, data, GRID)
        assert np.all(s.residual < 1e-9), (m, s.residual)
        assert np.all(s.deficit_to_frontier >= -ON_FRONTIER), (m, s.deficit_to_frontier)
    g = sweep("online_ipo", bandit, None, GRID)
    assert np.all(g.deficit_to_frontier >= -ON_FRONTIER)
    # Control: a wrong "frontier" (R* read at half the KL) puts CoPG's points above it.
    copg = sweep("copg", bandit, data, GRID)
    wrong, _ = frontier_reward(bandit, copg.kl / 2)
    assert np.min(wrong - copg.reward) < -1e-6


@settings(max_examples=10)
@given(instances(), st.integers(0, 2**31 - 1))
def test_random_policies_lie_below_the_frontier(inst, seed):
    """The theorem itself, at arbitrary policies; control: π*_β against R*(KL/2)."""
    bandit, _ = inst
    rng = np.random.default_rng(seed)
    lp = log_softmax(rng.normal(0, 3, (16, *bandit.rewards.shape)), axis=-1)
    kl = np.array([float(np.asarray(_kl(bandit, p))) for p in lp])
    rew = np.array([float(expected_reward(bandit, p)) for p in lp])
    star, _ = frontier_reward(bandit, kl)
    assert np.all(rew <= star + ON_FRONTIER)
    b = Bandit(bandit.rewards, bandit.ref, None, 0.7)
    p = optimal_policy(b)
    half, _ = frontier_reward(bandit, _kl(b, p) / 2)
    assert float(expected_reward(b, p)) > half[()] + 1e-6


def _kl(bandit, lp):
    from bandit import kl_to_ref

    return kl_to_ref(bandit, lp)


@given(instances())
def test_frontier_ends_and_monotonicity(inst):
    bandit, _ = inst
    R, ref = bandit.rewards, bandit.ref
    kl_max = float(-np.log(np.take_along_axis(ref, R.argmax(-1)[:, None], -1))[:, 0].mean())
    rew, bet = frontier_reward(bandit, [0.0, kl_max, 2 * kl_max])
    np.testing.assert_allclose(rew[0], float(np.sum(ref * R, -1).mean()), rtol=1e-14)
    np.testing.assert_allclose(rew[1:], R.max(-1).mean(), rtol=1e-14)
    assert bet[0] == np.inf and bet[1] == 0.0 and bet[2] == 0.0
    ks = np.linspace(0, kl_max, 12)[1:-1]
    r, b = frontier_reward(bandit, ks)
    # More KL buys more reward, at a smaller β'; control: reversed order is not increasing.
    assert np.all(np.diff(r) > 0) and np.all(np.diff(b) < 0)
    assert not np.all(np.diff(r[::-1]) > 0)


@given(instances(max_prompts=1), st.integers(0, 2**31 - 1))
def test_ipo_sweep_matches_its_closed_form_for_iid_pairs(inst, seed):
    """μ1 = μ2 = μ: π ∝ π_ref·exp(E_{y'∼μ} σ(R(y) − R(y'))/β) (IPO-MD Eq. 7 with BT p)."""
    bandit, _ = inst
    mu = np.random.default_rng(seed).dirichlet(np.ones(bandit.n_actions)) * 0.9 + 0.05
    mu /= mu.sum()
    s = sweep("ipo", bandit, OfflineData(mu, mu), GRID)
    R = bandit.rewards[0]
    p_vs_mu = expit(R[:, None] - R[None, :]) @ mu

    def closed(scale):
        return np.exp(log_softmax(bandit.log_ref[0] + scale * p_vs_mu[None] / GRID[:, None], -1))

    # One well-conditioned linear solve per point: agreement to rounding (1e-12 in π).
    np.testing.assert_allclose(s.fixed_point_policy[:, 0], closed(1.0), atol=1e-10)
    # Control: the closed form with τ halved (a factor 2 wrong) is caught.
    assert np.max(np.abs(s.fixed_point_policy[:, 0] - closed(2.0))) > 1e-4


@settings(max_examples=3)
@given(instances())
def test_warm_sweep_agrees_with_solving_each_point(inst):
    """The continuation (pg, pg_value, dpo) lands on the fixed points fixed_point returns."""
    bandit, data = inst
    for m in ("pg", "dpo"):
        warm = sweep(m, bandit, data, GRID[1:4])
        cold = sweep(m, bandit, data, GRID[1:4], warm=False)
        if not (cold.unique.all() and cold.interior.all()):
            continue
        # Both are roots certified to 1e-11 with a well-conditioned Jacobian: 1e-8 in π.
        np.testing.assert_allclose(warm.fixed_point_policy, cold.fixed_point_policy, atol=1e-8)
        # Control: the same check against the neighbouring grid point's fixed points fails.
        shifted = warm.fixed_point_policy[:-1] - cold.fixed_point_policy[1:]
        assert np.max(np.abs(shifted)) > 1e-6


def test_game_sweep_is_the_bradley_terry_game():
    """ipo_md on the bandit = ipo_md on PreferenceGame.bradley_terry (one prompt)."""
    R = np.array([2.5, 2.0, 1.0])
    bandit = Bandit.single(R, 1.0)
    s = sweep("ipo_md", bandit, None, GRID, mixture=0.5)
    for b, pol in zip(GRID, s.fixed_point_policy, strict=True):
        fp = fixed_point("ipo_md", PreferenceGame.bradley_terry(R, beta=b), mixture=0.5)
        np.testing.assert_allclose(pol[0], fp.policy[0], atol=1e-12)
    assert s.mixture == 0.5 and np.all(s.deficit_to_frontier >= -ON_FRONTIER)


def test_compute_default_grid_and_json():
    r = compute(methods=("copg", "ipo", "online_ipo"), points=50)
    d = r.to_dict()
    assert len(d["kl_strength"]) == 50 and d["kl_strength"][0] == pytest.approx(1e-2)
    for m in ("copg", "ipo"):
        e = d["methods"][m]
        for k in ("kl_strength", "reward", "kl", "fixed_point_policy", "deficit_to_frontier"):
            assert len(e[k]) == 50
        assert np.shape(e["fixed_point_policy"]) == (50, 3)
        assert max(e["residual"]) < 1e-10
    # CoPG sits on the frontier at its own β' = β, where the KL is not in a flat tail
    # (β ∈ [0.1, 10] on the §5 bandit: dKL/dlog β' is O(1e-3) or more there).
    mid = (r.kl_strength >= 0.1) & (r.kl_strength <= 10)
    np.testing.assert_allclose(
        r.methods["copg"].frontier_kl_strength[mid], r.kl_strength[mid], rtol=1e-8
    )
    assert d["game_methods"]["online_ipo"][0]["mixture"] is None
    assert {"kl", "reward", "kl_max", "reward_max", "reward_ref"} <= set(d["frontier"])


def test_cli_writes_three_files_and_trains(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"dataset_size": 200, "batch_size": 50}))
    args = ["--points", "2", "--methods", "copg", "--seeds", "3", "--epochs", "1"]
    assert main([*args, "--config", str(cfg), "--out", str(tmp_path / "a")]) == 0
    for ext in ("png", "pdf", "json"):
        assert (tmp_path / "a" / f"frontier.{ext}").stat().st_size > 0
    d = json.loads((tmp_path / "a" / "frontier.json").read_text())
    t = d["methods"]["copg"]["trained"]
    assert len(t["kl_mean"]) == 2 and all(s > 0 for s in t["reward_sd"])
    # Same seed, same JSON.
    main([*args, "--config", str(cfg), "--out", str(tmp_path / "b")])
    assert (tmp_path / "b" / "frontier.json").read_bytes() == (
        tmp_path / "a" / "frontier.json"
    ).read_bytes()


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--points", "1"], "points"),
        (["--points", "99999999999"], "points"),  # was a numpy MemoryError traceback
        (["--min", "10", "--max", "1"], "min"),
        (["--min", "-1"], "min"),
        (["--methods", "rloo"], "rloo"),
        (["--mixtures", "2"], "mixtures"),
        (["--config", "/nonexistent.json"], "not found"),
    ],
)
def test_cli_bad_input_is_one_line(argv, words, capsys, tmp_path):
    assert cli(main)([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err


@pytest.mark.parametrize(
    "bandit, kl, words",
    [
        (None, [0.1], "bandit must be a Bandit"),
        ("§5", [0.1], "bandit must be a Bandit"),
        (Bandit.single([1.0, 0.0, -1.0], 0.5), [0.1, -1.0], "kl: expected KL values >= 0"),
        (Bandit.single([1.0, 0.0, -1.0], 0.5), [float("nan")], "kl: expected KL values >= 0"),
        (Bandit.single([1.0, 0.0, -1.0], 0.5), [0.1j], "complex"),
        (Bandit.single([1.0, 0.0, -1.0], 0.5), ["0.1"], "kl"),
    ],
)
def test_frontier_reward_refuses_bad_input(bandit, kl, words):
    # A negative KL used to return R* = E_{π_ref}[R] silently, complex KL lost its imaginary
    # part and a non-Bandit raised AttributeError.
    with pytest.raises(ValueError, match=words):
        frontier_reward(bandit, kl)
    # Control: the same bandit with valid KLs (0 and the middle) is accepted and finite.
    if isinstance(bandit, Bandit):
        assert np.all(np.isfinite(frontier_reward(bandit, [0.0, 0.1])[0]))


def test_contextual_config(tmp_path):
    cfg = Figure1Config(
        rewards=[[1.0, 0.0, 0.5], [0.0, 2.0, 1.0]],
        mu1=[[0.3, 0.3, 0.4], [0.5, 0.25, 0.25]],
        mu2=[[0.2, 0.4, 0.4], [0.1, 0.1, 0.8]],
        rho=[0.3, 0.7],
    )
    r = compute(cfg, methods=("copg", "dpo", "nash_md_pg"), points=4)
    assert np.max(np.abs(r.methods["copg"].deficit_to_frontier)) <= ON_FRONTIER
    assert r.methods["dpo"].fixed_point_policy.shape == (4, 2, 3)
    assert np.all(r.game_methods["nash_md_pg"][0].deficit_to_frontier >= -ON_FRONTIER)
