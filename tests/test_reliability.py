"""Regression tests of issue #21 (reliability) for the exact engine: every solver has a
bounded budget, valid extreme input neither crashes nor hangs, a check that ran nothing
never passes, and bad input of any kind gets the package's ValidationError naming it."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bandit import Bandit, OfflineData, PreferenceGame
from bandit.exact import kl_to_ref, optimal_policy, optimal_value, regret, value
from bandit.fixed_points import fixed_point, roots
from bandit.fixed_points.gradient import Field
from bandit.methods import METHODS
from bandit.prepare import prepare
from bandit.validation import (
    ValidationError,
    check_distribution,
    check_finite,
    check_positive,
    check_unit_interval,
)

EXTREME = Bandit.single([1e3, 500.0, -1e3], 1e-4)
EXTREME_DATA = OfflineData([0.1, 0.2, 0.7], [0.05, 0.05, 0.9])


def _honest_residual(method, problem, data, log_policy):
    return Field(prepare(method, problem, data)).residual(log_policy)


# ------------------------------------------------------------------------- 1. budgets


def test_pg_flow_that_would_run_for_hours_stops_at_its_budget():
    """The issue's example: the flow to t = 1e8/λ_min took > 300 s. It now stops at
    FLOW_BUDGET gradient evaluations and says so, with the honest residual."""
    fp = fixed_point("pg", EXTREME, EXTREME_DATA)
    assert "NOT CERTIFIED" in fp.message and "budget" in fp.message
    assert not fp.unique
    assert fp.residual == _honest_residual("pg", EXTREME, EXTREME_DATA, fp.log_policy)
    assert np.all(np.isfinite(fp.log_policy))


def test_contextual_root_search_and_flow_stop_at_their_budgets(monkeypatch):
    """50 prompts with R ~ 1e6: the root search and the flow each stop at their budget
    (smaller budgets here, so the test takes seconds; the defaults are 10⁴ evaluations)."""
    monkeypatch.setattr(roots, "ROOT_BUDGET", 2_000)
    monkeypatch.setattr(roots, "FLOW_BUDGET", 2_000)
    rng = np.random.default_rng(0)
    X = 50
    bandit = Bandit(rng.uniform(-1e6, 1e6, (X, 3)), beta=1.0)
    data = OfflineData(rng.dirichlet(np.ones(3), X), rng.dirichlet(np.ones(3), X))
    fp = fixed_point("pg", bandit, data)
    assert "NOT CERTIFIED" in fp.message and "root search ran out of its budget" in fp.message
    assert not fp.unique
    assert fp.details["root_budget_exhausted_after_starts"] < 6
    assert fp.residual == _honest_residual("pg", bandit, data, fp.log_policy)


def test_budget_does_not_touch_a_flow_that_fits():
    """The boundary flow of test_fixed_points (a few thousand evaluations) is untouched:
    certified, with no budget note."""
    bandit = Bandit.single([2.5, 2.0, 1.0], 0.5)
    fp = fixed_point("pg", bandit, OfflineData([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]))
    assert "budget" not in fp.message and "NOT CERTIFIED" not in fp.message
    assert fp.residual < 1e-10 and not fp.interior


# ------------------------------------------------------------------ 2. valid input


def test_dpo_on_a_nearly_flat_loss_falls_back_instead_of_crashing():
    """trust-exact raised UnboundLocalError here (labels σ(500) = 1 in float64)."""
    fp = fixed_point("dpo", EXTREME, EXTREME_DATA)
    assert "trust-ncg" in fp.message
    assert fp.residual < 1e-12
    assert np.isfinite(fp.residual)


@given(
    rewards=hnp.arrays(np.float64, 3, elements=st.floats(-1e4, 1e4)),
    log_beta=st.floats(-4.0, 2.0),
)
def test_dpo_never_crashes_on_extreme_valid_input(rewards, log_beta):
    fp = fixed_point("dpo", Bandit.single(rewards, 10.0**log_beta), EXTREME_DATA)
    assert np.isfinite(fp.residual)
    assert np.all(np.isfinite(fp.log_policy) | (fp.log_policy == -np.inf))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_one_action_is_the_trivial_fixed_point(method):
    offline = METHODS[method].offline
    for X in (1, 3):
        bandit = Bandit(np.full((X, 1), 5.0), beta=1e-4)
        data = OfflineData(np.ones((X, 1)), np.ones((X, 1))) if offline else None
        fp = fixed_point(method, bandit, data)
        assert fp.log_policy.shape == (X, 1) and np.all(fp.log_policy == 0.0)
        assert fp.residual == 0.0 and fp.unique and fp.interior


# ------------------------------------------------------------------- 3. run_claims


@pytest.mark.parametrize("bad", [0, -1, True, False, 1.5, None, "3"])
def test_run_claims_refuses_instance_counts_that_run_nothing(bad):
    from theory import CLAIMS, run_claim, run_claims

    with pytest.raises(ValidationError, match="instances"):
        run_claims(["copg.thm1"], instances=bad)
    with pytest.raises(ValidationError, match="instances"):
        run_claim(CLAIMS["copg.thm1"], bad)


def test_run_claims_refuses_bad_seeds_and_ids():
    from theory import run_claims

    with pytest.raises(ValidationError, match="seed"):
        run_claims(["copg.thm1"], instances=1, seed=-1)
    with pytest.raises(ValidationError, match="list of claim ids"):
        run_claims("copg.thm1", instances=1)
    with pytest.raises(ValidationError, match="unknown claim id"):
        run_claims(["nope"], instances=1)


def test_run_claims_with_one_instance_runs_it():
    from theory import run_claims

    (r,) = run_claims(["copg.thm1"], instances=1)
    assert r.instances == 1 and r.status == "pass"


# ------------------------------------------------------------- 4. complex and strings

complex_arrays = hnp.arrays(
    np.complex128,
    hnp.array_shapes(min_dims=1, max_dims=3, max_side=4),
    elements=st.complex_numbers(max_magnitude=10.0, allow_nan=False, allow_infinity=False),
)


@given(a=complex_arrays)
def test_complex_arrays_are_refused_not_cut_to_their_real_part(a):
    for check in (check_finite, check_distribution):
        with pytest.raises(ValidationError, match=r"^x must be an array of real numbers.*complex"):
            check("x", a)
    with pytest.raises(ValidationError, match=r"^x must be an array of real numbers"):
        check_finite("x", a.tolist())  # Python complex numbers in lists too


@given(a=hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, max_side=4)))
def test_real_arrays_convert_exactly_as_before(a):
    """The new checks change failure paths only: a real array converts bit for bit."""
    want = np.asarray(a, dtype=np.float64)
    if np.all(np.isfinite(want)):
        got = check_finite("x", a)
        assert got.dtype == np.float64 and got.tobytes() == want.tobytes()
        assert check_finite("x", a.tolist()).tobytes() == want.tobytes()
    else:
        with pytest.raises(ValidationError, match="must be finite"):
            check_finite("x", a)


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda v: Bandit(v), "rewards"),
        (lambda v: Bandit.single(v, 1.0), "rewards"),
        (lambda v: Bandit([[1.0, 2.0]], ref=v), "ref"),
        (lambda v: OfflineData(v, [0.5, 0.5]), "mu1"),
        (lambda v: OfflineData.from_joint(v), "joint"),
        (lambda v: PreferenceGame(v), "P"),
        (lambda v: regret(Bandit.single([1.0, 2.0], 1.0), v), "log_pi"),
        (
            lambda v: fixed_point(
                "copg", Bandit.single([1.0, 2.0], 1.0), OfflineData([0.5, 0.5], [0.5, 0.5]), init=v
            ),
            "init",
        ),
    ],
)
@pytest.mark.parametrize(
    "bad, what",
    [
        ([[0.5 + 1j, 0.5]], "complex"),
        ([["0.5", "0.5"]], "strings"),
        ([[0.5, 0.5], [0.5]], "ragged"),
        ([[0.5, None]], "list"),
        (None, "None"),
    ],
)
def test_array_inputs_refuse_non_real_values_naming_the_argument(make, name, bad, what):
    if bad is None and name in ("ref", "init"):
        return  # None is these arguments' default (uniform π_ref, init = log π_ref)
    with pytest.raises(ValidationError, match=rf"^{name} must be an array of real numbers") as e:
        make(bad)
    assert what in str(e.value)
    assert "could not convert" not in str(e.value)


@pytest.mark.parametrize("bad", ["0.5", True, 1 + 0j, np.complex128(0.5), None, [0.5]])
def test_scalar_checks_refuse_strings_booleans_and_complex(bad):
    with pytest.raises(ValidationError, match=r"^beta "):
        check_positive("beta", bad)
    with pytest.raises(ValidationError, match=r"^mixture "):
        check_unit_interval("mixture", bad)
    with pytest.raises(ValidationError, match=r"^beta "):
        Bandit.single([1.0, 2.0], bad)


# --------------------------------------------------------------- 5. exception types


@pytest.mark.parametrize(
    "bad", [None, "bandit", np.zeros((1, 2)), PreferenceGame([[0.5, 0.4], [0.6, 0.5]])]
)
def test_exact_quantities_refuse_a_non_bandit(bad):
    lp = np.log([0.5, 0.5])
    for call in (
        lambda: regret(bad, lp),
        lambda: value(bad, lp),
        lambda: kl_to_ref(bad, lp),
        lambda: optimal_policy(bad),
        lambda: optimal_value(bad),
    ):
        with pytest.raises(ValidationError, match=r"^bandit must be a Bandit"):
            call()


@pytest.mark.parametrize("bad", [None, 0.0, "x", [[0.0, 0.0j]]])
def test_exact_quantities_refuse_bad_policies(bad):
    b = Bandit.single([1.0, 2.0], 1.0)
    for f in (regret, value, kl_to_ref):
        with pytest.raises(ValidationError, match=r"^log_pi "):
            f(b, bad)


def test_exact_quantities_refuse_a_non_boolean_average():
    b = Bandit.single([1.0, 2.0], 1.0)
    with pytest.raises(ValidationError, match=r"^average "):
        regret(b, np.log([0.5, 0.5]), average="no")


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0, 0), (0,), (2, 2, 2)])
def test_empty_or_misshapen_rewards_are_refused(shape):
    with pytest.raises(ValidationError, match=r"^rewards must have shape"):
        Bandit(np.zeros(shape))


# ------------------------------------------ #21, second pass: games, arrays, CLIs, frictions

RPS = PreferenceGame([[0.5, 0.85, 0.1], [0.15, 0.5, 0.85], [0.9, 0.15, 0.5]], beta=0.1)
NOT_REAL = [[1 + 1j, 2, 3], ["a", "b", "c"], [[1, 2], [3]], [{"a": 1}, 2, 3], None]


@pytest.mark.parametrize("tol", ["x", -1.0, 0.0, float("nan"), True, None, 1j])
def test_game_solvers_check_tol(tol):
    from bandit import ipo_md_fixed_point, nash_equilibrium
    from bandit.games import damped_fixed_point_nash, mirror_descent_nash

    for call in (
        lambda: nash_equilibrium(RPS, tol=tol),
        lambda: ipo_md_fixed_point(RPS, 0.5, tol=tol),
        lambda: damped_fixed_point_nash(RPS, 0.1, tol=tol),
        lambda: mirror_descent_nash(RPS, 0.1, tol=tol),
    ):
        with pytest.raises(ValidationError, match="tol"):
            call()
    # Control: a valid tol certifies the equilibrium.
    assert nash_equilibrium(RPS, tol=1e-10).converged


def test_game_baselines_have_a_checked_budget():
    from bandit.games import damped_fixed_point_nash, mirror_descent_nash

    for bad in (0, -5, 1.5, True, 10**0.5):
        with pytest.raises(ValidationError, match="max_iter"):
            mirror_descent_nash(RPS, 0.1, max_iter=bad)
    with pytest.raises(ValidationError, match="step"):
        damped_fixed_point_nash(RPS, -1.0)
    out = mirror_descent_nash(RPS, 0.1, tol=1e-300, max_iter=7)  # a budget it cannot meet
    assert out.iterations == 7 and not out.converged  # stops there, marked not converged


@pytest.mark.parametrize("bad", NOT_REAL)
def test_games_and_policy_refuse_values_that_are_not_real_arrays(bad):
    """Complex, strings, ragged, dicts and None: a ValidationError naming the argument,
    never numpy's "could not convert" or a TypeError."""
    from bandit import best_response, exploitability, game_value, geometric_mixture, kl
    from bandit.games import fixed_point_residual
    from bandit.policy import log_softmax

    lp = np.log(np.ones(3) / 3)
    calls = {
        "log_pi": [
            lambda: exploitability(RPS, bad),
            lambda: best_response(RPS, bad),
            lambda: fixed_point_residual(RPS, bad, 0.5),
            lambda: geometric_mixture(bad, lp, 0.5),
        ],
        "log_pi1": [lambda: game_value(RPS, bad, lp)],
        "log_p": [lambda: kl(bad, lp)],
        "logits": [lambda: log_softmax(bad)],
    }
    for name, fns in calls.items():
        for f in fns:
            with pytest.raises(ValidationError, match=name):
                f()
    assert exploitability(RPS, lp) > 0  # control: real input is accepted


def test_figure1_config_refuses_non_numbers_and_non_booleans():
    from bandit.figure1 import Figure1Config

    for d, name in [
        ({"rewards": [{"a": 1}, 2, 3]}, "rewards"),
        ({"rewards": [1 + 1j, 2, 3]}, "rewards"),
        ({"beta": True}, "beta"),
        ({"beta": "0.5"}, "beta"),
    ]:
        with pytest.raises(ValidationError, match=name):
            Figure1Config.from_dict(d).problem()
    for d, name in [({"drop_last": "no"}, "drop_last"), ({"dataset_size": 10**20}, "dataset_size")]:
        with pytest.raises(ValidationError, match=name):
            Figure1Config.from_dict(d).train_config(10)
    Figure1Config.from_dict({"drop_last": True}).train_config(10)  # control


def _cli(module, argv, capsys):
    from bandit.cli import cli

    rc = cli(module.main)(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err


def test_cli_bad_sizes_and_files_end_in_one_line(tmp_path, capsys):
    """#21 item 9: each ends with exit 2 and one line naming the problem, before any work."""
    from bandit import figure1, frontier, rps

    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    cfg = tmp_path / "c.json"
    cases = [
        (figure1, ["--epochs", "999999999999"], "GiB"),
        (figure1, ["--config", str(cfg)], "dataset_size"),
        (figure1, ["--methods", "copg,copg"], "more than once"),
        (frontier, ["--methods", "ipo,copg,ipo"], "'ipo' given more than once"),
        (figure1, ["--methods", "copg,ppo"], "not an offline method"),
        (figure1, ["--methods", "copg,online_ipo"], "not an offline method"),
        (rps, ["--steps", "99999999999999999999"], "steps must be at most"),
        (rps, ["--matrix", str(deep)], "nested too deeply"),
        (rps, ["--matrix", "[[0.5,0.8,0.1],[0.1,0.5,0.8],[0.9,0.1,0.5]]"], r"\(M \+ 1 − Mᵀ\)/2"),
    ]
    for module, argv, want in cases:
        cfg.write_text('{"dataset_size": 1e20}')
        rc, err = _cli(module, [*argv, "--out", str(tmp_path / "o")], capsys)
        assert rc == 2 and len(err) == 1, (argv, err)
        assert pytest.importorskip("re").search(want, err[0]), (argv, err)
    assert not (tmp_path / "o").exists()  # nothing was written


def test_slic_lp_failure_is_a_not_certified_result(monkeypatch):
    import scipy.optimize

    class Failed:
        status, message = 2, "The problem is infeasible."

    bandit, data = (
        Bandit.single([1.0, 0.0, -1.0], 0.5),
        OfflineData([0.2, 0.3, 0.5], [0.3] * 2 + [0.4]),
    )
    ok = fixed_point("slic", bandit, data)
    assert np.isfinite(ok.residual) and "NOT CERTIFIED" not in ok.message  # control
    monkeypatch.setattr(scipy.optimize, "linprog", lambda *a, **k: Failed())
    fp = fixed_point("slic", bandit, data)
    assert fp.residual == np.inf and "NOT CERTIFIED" in fp.message and not fp.unique


def test_one_prompt_fixed_point_prints_its_row():
    fp = fixed_point(
        "copg", Bandit.single([1.0, 2.0, 3.0], 0.5), OfflineData([0.2, 0.3, 0.5], [0.2, 0.3, 0.5])
    )
    assert "log_policy=array([-" in repr(fp) and "[[" not in repr(fp)
    assert fp.log_policy.shape == (1, 3)  # the field keeps its (X, n) shape
    two = fixed_point(
        "copg",
        Bandit(np.eye(2, 3), beta=0.5),
        OfflineData(np.full((2, 3), 1 / 3), np.full((2, 3), 1 / 3)),
    )
    assert "[[" in repr(two)  # control: several prompts print as a matrix


def test_theory_claims_run_does_not_overwrite_the_full_report(tmp_path, monkeypatch, capsys):
    import theory.__main__ as tm

    monkeypatch.chdir(tmp_path)
    (tmp_path / "figures").mkdir()
    full = tmp_path / "figures" / "theory_report.md"
    full.write_text("full report")
    tm.main(["--claims", "copg.thm1", "--instances", "1", "--no-progress"])
    assert full.read_text() == "full report"
    assert "no report written" in capsys.readouterr().out
    tm.main(["--claims", "copg.thm1", "--instances", "1", "--no-progress", "--report", "p.md"])
    assert (tmp_path / "p.md").read_text().startswith("# Theory report")  # control


def test_rps_with_four_actions_plots_probabilities_over_time():
    from bandit import rps

    P = [[0.5, 0.6, 0.3, 0.5], [0.4, 0.5, 0.7, 0.2], [0.7, 0.3, 0.5, 0.6], [0.5, 0.8, 0.4, 0.5]]
    result = rps.compute(P, mixtures=[0.0, 1.0], steps=20)
    left = rps.plot(result).axes[0]
    assert len(left.lines) == 2 * 4 and "probabilities" in left.get_title()
    three = rps.plot(rps.compute(mixtures=[0.0], steps=20)).axes[0]
    assert "trajectories" in three.get_title()  # control: n = 3 keeps the simplex view


def test_figure1_title_names_the_problem():
    from bandit import figure1

    cfg = figure1.Figure1Config(
        rewards=(1.0, 0.0), mu1=(0.5, 0.5), mu2=(0.5, 0.5), dataset_size=64, batch_size=32
    )
    result = figure1.compute(cfg, methods=["copg"], seeds=2, epochs=1)
    assert figure1.plot(result).axes[0].get_title().startswith("custom config")
    assert (
        figure1.plot(result, name="config x.json").axes[0].get_title().startswith("config x.json")
    )
    paper = figure1.compute(figure1.Figure1Config(), methods=["copg"], seeds=2, epochs=1)
    assert figure1.plot(paper).axes[0].get_title().startswith("CoPG §5 bandit")  # control


# ------------------------------------------------- #21, third pass (independent rerun)


@pytest.mark.parametrize("bad", [None, "bandit", 3, np.zeros(3), RPS])
def test_trainer_refuses_a_non_bandit_and_a_non_config(bad):
    """The rerun found AttributeErrors ('... has no attribute n_prompts/dataset_size') and,
    for an array config, numpy's "truth value is ambiguous"."""
    from bandit.trainer import TrainConfig, check_layout, minibatches, sampled_minibatches

    b, d = Bandit.single([1.0, 2.0], 1.0), OfflineData([0.5, 0.5], [0.5, 0.5])
    for call in (
        lambda: minibatches(bad, d, n_seeds=1),
        lambda: sampled_minibatches(bad, d, n_seeds=1),
        lambda: check_layout(bad, TrainConfig(), 1),
    ):
        with pytest.raises(ValidationError, match=r"^bandit must be a bandit\.Bandit"):
            call()
    if bad is not None:
        for call in (
            lambda: minibatches(b, d, n_seeds=1, config=bad),
            lambda: sampled_minibatches(b, d, n_seeds=1, config=bad),
        ):
            with pytest.raises(ValidationError, match=r"^config must be a bandit\.TrainConfig"):
                call()
    # Control: the same call with a Bandit and a TrainConfig draws its batches.
    cfg = TrainConfig(dataset_size=8, batch_size=4, epochs=1)
    assert minibatches(b, d, n_seeds=1, config=cfg).dataset.sum() == 8


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        ({"seeds": None}, "seeds"),  # the TypeError: None + 1
        ({"seeds": 0}, "seeds"),
        ({"seeds": True}, "seeds"),
        ({"seeds": 1.5}, "seeds"),
        ({"epochs": None}, "epochs"),
        ({"epochs": 0}, "epochs"),
        ({"seed": -1}, "seed"),
        ({"seed": "0"}, "seed"),
        ({"config": {"beta": 0.5}}, "config"),
    ],
)
def test_figure1_compute_checks_its_arguments_before_any_work(kw, name):
    from bandit import figure1

    with pytest.raises(ValidationError, match=rf"^{name} must be"):
        figure1.compute(**kw)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"steps": 10**12}, r"^steps must be an integer in \[0, 2147483647\]"),  # was an OOM
        ({"steps": 10**20}, r"^steps must be an integer in"),  # was a TypeError from JAX
        ({"steps": 2**30, "record_every": 1}, r"^the recorded log-policies would take"),
        ({"record_every": 10**20, "steps": 10**20}, r"^steps must be"),
    ],
)
def test_game_dynamics_refuse_runs_too_large_before_compiling(kw, match):
    """#21: "check the size before allocating". 2³⁰ records of 3 float64 = 24 GiB > 4 GiB."""
    from bandit import exact_dynamics, sampled_dynamics

    lp = np.log(np.ones(3) / 3)
    kw = {"steps": 2, "lr": 0.1, **kw}
    with pytest.raises(ValidationError, match=match):
        exact_dynamics("ipo_md", RPS, lp, **kw)
    with pytest.raises(ValidationError, match=match):
        sampled_dynamics("ipo_md", RPS, lp, batch_size=4, seed=0, **kw)


def test_sampled_dynamics_refuse_huge_batches_and_seeds_jax_cannot_hold():
    from bandit import Online, sampled_dynamics, sampled_source_dynamics

    lp = np.log(np.ones(3) / 3)
    kw = {"steps": 1, "lr": 0.1}
    with pytest.raises(ValidationError, match=r"^one step's minibatches would take"):
        sampled_dynamics("ipo_md", RPS, lp, batch_size=10**15, seed=0, **kw)  # was an OOM
    for seed in (2**63, 2**64):  # was an OverflowError from jax.random.key
        with pytest.raises(ValidationError, match=r"^seed must be an integer in \[0, "):
            sampled_dynamics("ipo_md", RPS, lp, batch_size=4, seed=seed, **kw)
    b = Bandit.single([1.0, 2.0, 3.0], 1.0)
    with pytest.raises(ValidationError, match=r"use a smaller fresh"):
        sampled_source_dynamics(
            "online_ipo", b, Online(), lp, batch_size=4, fresh=10**15, seeds=1, seed=0, **kw
        )
    # Control: the largest seed a JAX key holds runs, on both samplers.
    top = 2**63 - 1
    out = sampled_dynamics("ipo_md", RPS, lp, batch_size=4, seed=top, **kw)
    assert out.log_policies.shape == (1, 2, 3)
    out = sampled_source_dynamics(
        "online_ipo", b, Online(), lp, batch_size=4, seeds=1, seed=top, **kw
    )
    assert np.all(np.isfinite(out.log_policies))


@given(
    m=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True, width=32),
        st.floats(-1.0, 2.0),
    ),
    form=st.sampled_from(["float", "0-d", "float32", "1-d", "column", "jax"]),
)
def test_geometric_mixture_range_checks_every_concrete_form(m, form):
    """#21 item 8: a 0-d, float32, per-row or concrete JAX coefficient outside [0, 1] (or
    NaN) is refused like a float; one inside gives the float's mixture. The float32 cast
    can move a value across 0 or 1 only at the ends, so the range is judged on the cast;
    float32 rounding of the logits (|log π| < 3) bounds its error by 3·2⁻²³ < 1e-6."""
    import jax.numpy as jnp

    from bandit import geometric_mixture

    lp, lr = np.log([0.2, 0.3, 0.5]), np.log([0.6, 0.3, 0.1])
    coef = {
        "float": lambda: m,
        "0-d": lambda: np.array(m),
        "float32": lambda: np.float32(m),
        "1-d": lambda: np.array([m]),
        "column": lambda: np.array([[m], [0.5]]),
        "jax": lambda: jnp.asarray(m),  # float32: x64 is off outside bandit.precision
    }[form]()
    lp2 = np.stack([lp, lp]) if form == "column" else lp
    lr2 = np.stack([lr, lr]) if form == "column" else lr
    v = float(np.asarray(coef).ravel()[0])
    if not 0.0 <= v <= 1.0:
        with pytest.raises(ValidationError, match=r"^mixture must"):
            geometric_mixture(lp2, lr2, coef)
    else:  # the float form's value: the same formula, to rounding (|log π| < 3, ≤ 1e-12)
        got = np.asarray(geometric_mixture(lp2, lr2, coef)).reshape(-1, 3)[0]
        want = np.asarray(geometric_mixture(lp, lr, v))
        np.testing.assert_allclose(
            got, want, rtol=0, atol=1e-6 if form in ("float32", "jax") else 1e-12
        )


def test_geometric_mixture_leaves_traced_coefficients_to_the_caller():
    """Control of the concrete checks: under jit and grad the coefficient is a tracer and
    the mixture is computed, not refused (and its gradient is finite)."""
    import jax
    import jax.numpy as jnp

    from bandit import geometric_mixture
    from bandit.precision import float64

    lp, lr = jnp.log(jnp.array([0.2, 0.3, 0.5])), jnp.log(jnp.array([0.6, 0.3, 0.1]))
    f = float64(jax.jit(lambda m: geometric_mixture(lp, lr, m)))
    assert np.all(np.isfinite(np.asarray(f(0.3))))
    g = float64(jax.grad(lambda m: geometric_mixture(lp, lr, m)[0]))(0.3)
    assert np.isfinite(float(g))
    with pytest.raises(ValidationError, match="mixture"):  # not traced: checked
        geometric_mixture(lp, lr, 0.5 + 0j)
