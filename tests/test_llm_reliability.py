"""Reliability of the losses and of the llm entry points (issue 21, items 5, 7 and 8).

* For finite inputs every per-pair loss of :mod:`bandit.losses` returns exactly the values
  and gradients of the plain formulas it had before the guards against ``0·inf`` (a copy
  of them lives here), on NumPy, JAX and torch.
* A completion with log π = −inf gets the loss's limit: the value at log π = −T for a
  huge T, never a NaN; gradients stay finite where the loss is finite.
* NaN anywhere, +inf log-probs and infinite rewards or baselines are refused, naming the
  argument and the index; so are NaN log-probs in ``kl`` and bad ``mixture_generate`` /
  ``sequence_logps`` arguments.
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from array_api_compat import array_namespace
from hypothesis import assume, given
from hypothesis import strategies as st

import llm
from bandit import METHODS
from bandit import losses as L
from bandit.policy import kl
from bandit.validation import ValidationError
from llm import mixture_generate, sequence_logps

INF = float("inf")
NAN = float("nan")

# --------------------------------------------------------------- the formulas as they were
# A verbatim copy of bandit/losses.py before the limits were handled: the reference that
# finite inputs must reproduce exactly.


def _old_relu(xp, z):
    return xp.where(z > 0, z, 0 * z)


def _old_softplus(xp, z):
    return xp.logaddexp(0 * z, z)


def _old_regularised_reward(reward, logratio, beta):
    return reward - beta * logratio


def _old_copg(h1, h2, r1, r2, beta):
    d = _old_regularised_reward(r1, h1, beta) - _old_regularised_reward(r2, h2, beta)
    return d * d / (2 * beta)


def _old_pg(h1, h2, r1, r2, beta, baseline=0.0):
    w1 = L.stop_gradient(_old_regularised_reward(r1, h1, beta) - baseline)
    w2 = L.stop_gradient(_old_regularised_reward(r2, h2, beta) - baseline)
    return -(w1 * h1 + w2 * h2)


def _old_rloo(xp, logratios, rewards, beta):
    k = logratios.shape[-1]
    rb = L.stop_gradient(_old_regularised_reward(rewards, logratios, beta))
    loo = (xp.sum(rb, axis=-1, keepdims=True) - rb) / (k - 1)
    return -xp.sum((rb - loo) * logratios, axis=-1)


def _old_ipo(h1, h2, p, beta):
    rho = h1 - h2
    c = 1.0 / (2.0 * beta)
    return p * (rho - c) ** 2 + (1 - p) * (rho + c) ** 2


def _old_dpo(xp, h1, h2, p, beta):
    z = beta * (h1 - h2)
    return p * _old_softplus(xp, -z) + (1 - p) * _old_softplus(xp, z)


def _old_slic(xp, h1, h2, p, beta):
    z = beta * (h1 - h2)
    return p * _old_relu(xp, 1 - z) + (1 - p) * _old_relu(xp, 1 + z)


def _old_nash(h, p, beta):
    return -L.stop_gradient(p - 0.5 - beta * h) * h


def _old_p3o(xp, lp1, lp2, o1, o2, r1, r2, clip_eps, variant):
    delta = r1 - r2
    lr1, lr2 = lp1 - o1, lp2 - o2
    if variant == 1:
        q1, q2 = xp.exp(lr1), xp.exp(lr2)
        w1, w2 = L.stop_gradient(delta * q2), L.stop_gradient(-delta * q1)

        def clip(r):
            return xp.minimum(xp.maximum(r, 0 * r + (1 - clip_eps)), 0 * r + (1 + clip_eps))

        t1 = xp.minimum(w1 * q1, w1 * clip(q1))
        t2 = xp.minimum(w2 * q2, w2 * clip(q2))
        return -(t1 + t2) / 2
    w = L.stop_gradient(delta * xp.exp(lr1 + lr2))
    s, s_old = lp1 - lp2, o1 - o2
    s_clip = xp.minimum(xp.maximum(s, s_old - clip_eps), s_old + clip_eps)
    return -xp.minimum(w * s, w * s_clip) / 2


def _pairs(xp, a):
    """{kind: (new, old)} thunks of the losses on the columns of ``a`` (n, 8):
    h1 h2 r1 r2 p o1 o2 b."""
    h1, h2, r1, r2, p, o1, o2, b = (a[:, i] for i in range(8))
    lp1, lp2 = h1 + o1 * 0.1, h2 - o2 * 0.1  # policy log-probs near the sampler's
    beta, eps = 0.7, 0.2
    hs, rs = xp.stack([h1, h2, o1], axis=-1), xp.stack([r1, r2, b], axis=-1)
    h2s, r2s = hs[:, :2], rs[:, :2]
    return {
        "copg": (
            lambda: L.copg_loss(h1, h2, r1, r2, beta),
            lambda: _old_copg(h1, h2, r1, r2, beta),
        ),
        "pg": (
            lambda: L.pg_loss(h1, h2, r1, r2, beta, b),
            lambda: _old_pg(h1, h2, r1, r2, beta, b),
        ),
        "rloo2": (lambda: L.rloo_loss(h2s, r2s, beta), lambda: _old_rloo(xp, h2s, r2s, beta)),
        "rloo3": (lambda: L.rloo_loss(hs, rs, beta), lambda: _old_rloo(xp, hs, rs, beta)),
        "ipo": (lambda: L.ipo_loss(h1, h2, p, beta), lambda: _old_ipo(h1, h2, p, beta)),
        "dpo": (lambda: L.dpo_loss(h1, h2, p, beta), lambda: _old_dpo(xp, h1, h2, p, beta)),
        "slic": (lambda: L.slic_loss(h1, h2, p, beta), lambda: _old_slic(xp, h1, h2, p, beta)),
        "nash": (lambda: L.nash_md_pg_loss(h1, p, beta), lambda: _old_nash(h1, p, beta)),
        "p3o1": (
            lambda: L.p3o_loss(lp1, lp2, lp1 - o1, lp2 - o2, r1, r2, eps, 1),
            lambda: _old_p3o(xp, lp1, lp2, lp1 - o1, lp2 - o2, r1, r2, eps, 1),
        ),
        "p3o2": (
            lambda: L.p3o_loss(lp1, lp2, lp1 - o1, lp2 - o2, r1, r2, eps, 2),
            lambda: _old_p3o(xp, lp1, lp2, lp1 - o1, lp2 - o2, r1, r2, eps, 2),
        ),
        # β = 0 takes the other branch of regularised_reward.
        "reg0": (
            lambda: L.regularised_reward(r1, h1, 0.0),
            lambda: _old_regularised_reward(r1, h1, 0.0),
        ),
    }


KINDS = list(_pairs(np, np.zeros((1, 8))))


_finite = st.floats(-60.0, 60.0, allow_nan=False, allow_infinity=False)
# Exact zeros and ties (ρ = 0, Δ = 0, z = ±1 for SLiC) are where a guard could slip.
_value = st.one_of(_finite, st.sampled_from([0.0, -0.0, 1.0, -1.0, 1 / 0.7, -1 / 0.7]))
_pref = st.one_of(st.sampled_from([0.0, 1.0, 0.5]), st.floats(0.0, 1.0))
_rows = st.lists(st.tuples(*([_value] * 4), _pref, _value, _value, _value), min_size=1, max_size=6)


@given(_rows)
def test_finite_inputs_give_the_old_values_and_gradients_exactly(rows):
    """NumPy and torch (float64): == on values and on gradients, for every kind of loss."""
    a = torch.tensor(rows, dtype=torch.float64, requires_grad=True)
    w = torch.linspace(0.5, 1.5, a.shape[0], dtype=torch.float64)  # a generic cotangent
    for name, (new, old) in _pairs(array_namespace(a), a).items():
        v_new, v_old = new(), old()
        assert torch.equal(v_new, v_old), name
        (g_new,) = torch.autograd.grad((v_new * w).sum(), a, retain_graph=True)
        (g_old,) = torch.autograd.grad((v_old * w).sum(), a, retain_graph=True)
        assert torch.equal(g_new, g_old), name
    na = np.asarray(rows, dtype=np.float64)
    for name, (new, old) in _pairs(array_namespace(na), na).items():
        assert np.array_equal(new(), old()), name


@functools.cache
def _jax_value_and_grad(name: str, j: int):
    def f(x):
        return jnp.sum(_pairs(jnp, x)[name][j]() * jnp.linspace(0.5, 1.5, x.shape[0]))

    return jax.jit(jax.value_and_grad(f))


@given(_rows)
def test_finite_inputs_give_the_old_values_and_gradients_exactly_in_jax(rows):
    """JAX (float64) under jit, as the engine runs it: XLA fuses the new formula as the old
    one, so not even the last bit moves. Rows are padded to one shape (one compilation)."""
    rows = (rows * 6)[:6]
    with jax.enable_x64(True):
        a = jnp.asarray(rows, dtype=jnp.float64)
        for name in KINDS:
            (v_new, g_new), (v_old, g_old) = (_jax_value_and_grad(name, j)(a) for j in (0, 1))
            assert v_new == v_old, name
            assert np.array_equal(np.asarray(g_new), np.asarray(g_old)), name


def test_the_old_formulas_give_nan_at_minus_inf():
    """Negative control: the inputs of the limit tests below broke the plain formulas."""
    h1, h2, one = (torch.tensor([x], dtype=torch.float64) for x in (-INF, 0.0, 1.0))
    assert torch.isnan(_old_dpo(torch, h1, h2, one, 0.1)).all()
    assert torch.isnan(_old_slic(torch, h2, h1, one, 0.1)).all()
    assert torch.isnan(_old_ipo(h1, h2, one, 0.1)).all()
    assert torch.isnan(_old_rloo(torch, torch.stack([h1, h2], -1), torch.zeros(1, 2), 0.1)).all()
    nan_p3o = _old_p3o(torch, h1, h2, h2, h2, h2, one, 0.2, 2)
    assert torch.isnan(nan_p3o).all()


# ------------------------------------------------------------------ limits at log π = −inf

BACKENDS = {
    "numpy": lambda v: np.asarray(v, dtype=np.float64),
    "torch": lambda v: torch.tensor(v, dtype=torch.float64),
    "jax": lambda v: jnp.asarray(v, dtype=jnp.float32),
}


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_preference_limits_on_every_backend(backend):
    arr = BACKENDS[backend]
    # Columns: (winner at −inf), (loser at −inf), (loser at −inf, soft label).
    h1, h2, p = arr([-INF, 0.5, 0.5]), arr([0.5, -INF, -INF]), arr([1.0, 1.0, 0.5])
    want = {
        L.dpo_loss: [INF, 0.0, INF],
        L.slic_loss: [INF, 0.0, INF],
        L.ipo_loss: [INF, INF, INF],
    }
    for f, w in want.items():
        np.testing.assert_array_equal(np.asarray(f(h1, h2, p, 0.1)), w, err_msg=f.__name__)
        # p = 0 swaps the roles: the same limits with the completions exchanged.
        np.testing.assert_array_equal(np.asarray(f(h2, h1, 1 - p, 0.1)), w, err_msg=f.__name__)
    nash = np.asarray(L.nash_md_pg_loss(h1, p, 0.1))
    assert nash[0] == INF and np.isfinite(nash[1:]).all()
    rl = L.rloo_loss(arr([[-INF, 0.0], [-INF, INF], [-INF, -INF]]), arr([[0.0, 1.0]] * 3), 0.1)
    got = np.asarray(rl)
    assert got[0] == INF and got[1] == INF and np.isnan(got[2])  # two at −inf: no limit
    assert np.asarray(L.regularised_reward(arr([2.0]), arr([INF]), 0.0)) == 2.0


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_nan_still_propagates_through_the_guards(backend):
    arr = BACKENDS[backend]
    h1, h2 = arr([NAN, 0.0]), arr([0.0, NAN])
    for f in (L.dpo_loss, L.slic_loss, L.ipo_loss):
        for p in (0.0, 1.0, 0.5):
            assert np.isnan(np.asarray(f(h1, h2, p, 0.1))).all(), (f.__name__, p)
    assert np.isnan(np.asarray(L.rloo_loss(arr([[NAN, -INF]]), arr([[0.0, 0.0]]), 0.1))).all()


def _method_call(name: str, pol, ref, old, rewards, pref, beta):
    m = METHODS[name]
    kw = {"beta": beta, "reduction": "none"}
    if m.signal == "reward":
        kw["rewards"] = rewards
    else:
        kw["preference"] = pref
    if name.startswith("p3o"):
        kw["old_logps"] = old
    return llm.method_loss(name, pol, ref, **kw)


_lp = st.floats(-8.0, 0.0)
_entry = st.tuples(_lp, _lp, st.booleans(), st.booleans())  # policy, ref, policy/ref at −inf


@given(
    st.sampled_from(sorted(METHODS)),
    st.lists(
        st.tuples(_entry, _entry, st.floats(-3, 3), st.floats(-3, 3), _pref), min_size=1, max_size=4
    ),
    st.floats(0.05, 3.0),
)
def test_minus_inf_gives_the_limit_and_finite_gradients(name, rows, beta):
    """With log π = −inf (or log π_ref = −inf) the loss is its limit: the value at −T for a
    huge T. It is never NaN: either that limit, or a refusal where the limit depends on how
    the inputs go to −inf; and its gradient is finite where it is finite."""
    # T = 1e150 keeps the reference's squares finite ((2T)² < 1.8e308): with T = 1e300 the
    # reference itself overflows to 0·inf = NaN in a weight-0 term.
    T = 1e150

    def build(neg):
        pol, ref = [], []
        for e1, e2, *_ in rows:
            pol.append([neg if e[2] else e[0] for e in (e1, e2)])
            ref.append([neg if e[3] else e[1] for e in (e1, e2)])
        return torch.tensor(pol, dtype=torch.float64), torch.tensor(ref, dtype=torch.float64)

    pol, ref = build(-INF)
    assume(bool(torch.isinf(pol).any() | torch.isinf(ref).any()))
    old = torch.tensor([[e1[0], e2[0]] for e1, e2, *_ in rows], dtype=torch.float64)
    rewards = torch.tensor([[r[2], r[3]] for r in rows], dtype=torch.float64)
    pref = torch.tensor([r[4] for r in rows], dtype=torch.float64)
    # Where two entries of a row are infinite the limit may depend on their rates.
    several = (torch.isinf(pol).sum(-1) + torch.isinf(ref).sum(-1)) >= 2
    pol.requires_grad_(True)
    approx = _method_call(name, *build(-T), old, rewards, pref, beta)
    try:
        loss = _method_call(name, pol, ref, old, rewards, pref, beta)
    except ValidationError as e:
        assert "no limit" in str(e)
        assert bool(several.any())
        return
    assert not torch.isnan(loss).any()
    # An infinite limit: the loss at −T grows without bound in T (at least linearly: P3O is
    # positively homogeneous in Δ, IPO and CoPG are squares, DPO and SLiC linear), with the
    # limit's sign.
    half = _method_call(name, *build(-T / 2), old, rewards, pref, beta)
    grows = (approx.abs() >= 1.9 * half.abs()) & (approx != 0)
    same = (loss == approx) | (torch.isinf(loss) & grows & (torch.sign(loss) == torch.sign(approx)))
    close = torch.isclose(loss, approx, rtol=1e-9, atol=1e-12)
    assert bool((same | close | several).all()), (loss, approx)
    finite = torch.isfinite(loss)
    if bool(finite.any()):
        (g,) = torch.autograd.grad(loss[finite].sum(), pol, allow_unused=True)
        if g is not None:
            assert not torch.isnan(g[finite]).any()


def test_issue_example_and_sequence_logps_end_to_end():
    pol, ref = torch.tensor([[-INF, -1.0]]), torch.tensor([[-1.0, -1.0]])
    assert llm.dpo_loss(pol, ref, torch.tensor([1.0]), beta=0.1).item() == INF
    assert llm.dpo_loss(pol.flip(-1), ref, torch.tensor([1.0]), beta=0.1).item() == 0.0
    assert llm.ipo_loss(pol, ref, torch.tensor([1.0]), beta=0.1).item() == INF
    # sequence_logps returns −inf for a −inf label logit; the loss takes it.
    logits = torch.zeros(2, 3, 4, requires_grad=True)
    with torch.no_grad():
        logits[0, 0, 2] = -INF
    labels = torch.tensor([[0, 2, 1], [0, 2, 1]])
    lp = sequence_logps(logits, labels)
    assert lp[0].item() == -INF and math.isfinite(lp[1].item())
    loss = llm.dpo_loss(lp[None].flip(-1), torch.full((1, 2), -2.0), 1.0, beta=0.1)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all()


# ------------------------------------------------------------------------------ refusals

_NAMES = ["policy_logps", "ref_logps", "old_logps", "rewards", "baseline"]


@given(
    st.sampled_from(_NAMES),
    st.sampled_from([NAN, INF, -INF]),
    st.integers(0, 2),
    st.integers(0, 1),
)
def test_nan_and_inf_inputs_are_refused_by_name_and_index(arg, value, i, j):
    kw = {
        "policy_logps": torch.full((3, 2), -1.0),
        "ref_logps": torch.full((3, 2), -2.0),
        "old_logps": torch.full((3, 2), -1.5),
        "rewards": torch.zeros(3, 2),
        "baseline": torch.zeros(3),
    }
    # Negative control: the clean call is accepted.
    llm.method_loss("p3o_v2", beta=0.1, **kw)
    llm.pg_loss(
        kw["policy_logps"], kw["ref_logps"], kw["rewards"], beta=0.1, baseline=kw["baseline"]
    )
    kw[arg] = kw[arg].clone()
    kw[arg][(i, j) if kw[arg].ndim == 2 else (i,)] = value
    legit = value == -INF and arg in ("policy_logps", "ref_logps")
    idx = f"({i}, {j})" if arg != "baseline" else f"({i},)"
    try:
        method = "p3o_v2" if arg == "old_logps" else "pg_value"
        kws = {k: v for k, v in kw.items() if method == "p3o_v2" or k != "old_logps"}
        if method == "p3o_v2":
            kws.pop("baseline")
        out = llm.method_loss(method, beta=0.1, reduction="none", **kws)
    except ValidationError as e:
        assert not legit
        assert str(e).startswith(arg) and idx in str(e), str(e)
    else:
        assert legit and not torch.isnan(out).any()


@pytest.mark.parametrize("value", [NAN, INF])
def test_preference_losses_refuse_nan_and_inf_logps(value):
    pol = torch.tensor([[-1.0, value]])
    with pytest.raises(ValidationError, match=r"policy_logps .*index \(0, 1\)"):
        llm.dpo_loss(pol, torch.zeros(1, 2), 1.0, beta=0.1)
    with pytest.raises(ValidationError, match=r"ref_logps .*index \(0, 1\)"):
        llm.slic_loss(torch.zeros(1, 2), pol, 1.0, beta=0.1)


def test_undefined_log_ratio_is_refused():
    pol = ref = torch.tensor([[-INF, -1.0]])
    with pytest.raises(ValidationError, match="no limit at index"):
        llm.dpo_loss(pol, ref, 1.0, beta=0.1)


def test_kl_refuses_nan_and_keeps_zero_probabilities():
    assert kl([0.0], [0.0]) == 0.0  # negative control
    assert kl([0.0, -INF], [math.log(0.5)] * 2) == pytest.approx(math.log(2.0))
    for args, name in [
        (([NAN], [0.0]), "log_p"),
        (([0.0], [NAN]), "log_q"),
        (([INF], [0.0]), "log_p"),
    ]:
        with pytest.raises(ValidationError, match=name):
            kl(*args)
    with pytest.raises(ValidationError, match=r"log_q.*index \(1, 0\)"):
        kl(np.zeros((2, 1)), np.array([[0.0], [NAN]]))


class _StubLM:
    """A causal LM whose next-token distribution is uniform over V tokens."""

    V = 5

    def forward(
        self, input_ids, attention_mask=None, position_ids=None, use_cache=True, cache=None
    ):
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, self.V), cache=None)

    __call__ = forward


class _StubLMWithVocab(_StubLM):
    """The same, with a Hugging Face-style input embedding that tells its vocabulary."""

    def get_input_embeddings(self):
        return torch.nn.Embedding(self.V, 1)


def test_mixture_generate_checks_ids_only_against_a_known_vocabulary():
    """Negative control of the vocabulary checks: a model that does not tell its
    vocabulary is not refused for an id >= 5 (only negative ids are)."""
    out = mixture_generate(
        _StubLM(), _StubLM(), torch.tensor([[1, 9]]), mixture=0.5, max_new_tokens=1
    )
    assert out.sequences.shape == (1, 3)


@pytest.mark.parametrize(
    ("args", "kw", "match"),
    [
        (([[1, 2]],), {}, "input_ids"),
        ((1.5,), {}, "input_ids"),
        ((torch.tensor([[1.0, 2.0]]),), {}, "input_ids"),
        ((torch.tensor([[True, False]]),), {}, "input_ids"),
        ((torch.tensor([[1, 2]]), torch.tensor([[1, 2]])), {}, r"attention_mask.*0/1.*\(0, 1\)"),
        ((torch.tensor([[1, 2]]), [[1, 1]]), {}, "attention_mask"),
        ((torch.tensor([[1, 2]]),), {"pad_token_id": -5}, "pad_token_id"),
        ((torch.tensor([[1, 2]]),), {"pad_token_id": 1.5}, "pad_token_id"),
        ((torch.tensor([[1, 2]]),), {"pad_token_id": True}, "pad_token_id"),
        ((torch.tensor([[1, 2]]),), {"max_new_tokens": True}, "max_new_tokens"),
        # Token ids outside the model's vocabulary (an IndexError deep in the embedding).
        ((torch.tensor([[1, -1]]),), {}, r"input_ids must hold token ids in \[0, 5\), got -1"),
        ((torch.tensor([[1, 5]]),), {}, r"input_ids must hold token ids in \[0, 5\), got 5"),
        ((torch.tensor([[1, 2]]),), {"eos_token_id": 7}, "eos_token_id.*vocabulary size 5"),
        ((torch.tensor([[1, 2]]),), {"generator": "seed"}, "generator must be a torch.Generator"),
    ],
)
def test_mixture_generate_refuses_bad_input(args, kw, match):
    lm = _StubLMWithVocab()
    kw = {"mixture": 0.5, "max_new_tokens": 2, **kw}
    with pytest.raises(ValidationError, match=match):
        mixture_generate(lm, lm, *args, **kw)


def test_mixture_generate_accepts_good_input():
    lm = _StubLM()
    ids = torch.tensor([[1, 2], [3, 4]])
    for attn in (None, torch.tensor([[0, 1], [1, 1]]), torch.tensor([[False, True], [True, True]])):
        out = mixture_generate(
            lm,
            lm,
            ids,
            attn,
            mixture=0.5,
            max_new_tokens=3,
            eos_token_id=0,
            pad_token_id=np.int64(4),
        )
        assert out.sequences.shape[0] == 2 and 3 <= out.sequences.shape[1] <= 5
        assert set(out.sequences[:, 2:].flatten().tolist()) <= set(range(_StubLM.V))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"chunk_rows": 1.5}, "chunk_rows"),
        ({"chunk_rows": True}, "chunk_rows"),
        ({"chunk_rows": "2"}, "chunk_rows"),
        ({"chunk_rows": 0}, "chunk_rows"),
        ({"average": "no"}, "average"),
        ({"average": 1}, "average"),
        ({"average": None}, "average"),
        ({"shift": "yes"}, "shift"),
    ],
)
def test_sequence_logps_refuses_bad_options(kw, match):
    logits, labels = torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValidationError, match=match):
        sequence_logps(logits, labels, **kw)


def test_sequence_logps_accepts_good_options():
    logits, labels = torch.randn(2, 3, 4), torch.zeros(2, 3, dtype=torch.long)
    want = sequence_logps(logits, labels)
    for kw in ({"chunk_rows": 1}, {"chunk_rows": np.int64(2)}, {"average": False}, {"shift": True}):
        torch.testing.assert_close(sequence_logps(logits, labels, **kw), want)
    torch.testing.assert_close(sequence_logps(logits, labels, average=np.bool_(True)), want / 2)


# ------------------------------------------------- #21, third pass (independent rerun)


@pytest.mark.parametrize("beta", [None, True, "0.1", float("nan"), float("inf"), -1.0, 1j])
def test_p3o_refuses_a_beta_that_is_not_a_finite_number_at_least_0(beta):
    """#21 item 5: p3o_loss(beta=None) was a TypeError; beta=True passed as 1.0."""
    lp = torch.tensor([[-1.0, -2.0]])
    with pytest.raises(ValidationError, match=r"^beta must be"):
        llm.p3o_loss(lp, lp, lp, torch.tensor([[1.0, 0.0]]), beta=beta)


@pytest.mark.parametrize("variant", [2.0, True, "2", 0, 3, None])
def test_p3o_variant_must_be_the_integer_1_or_2(variant):
    """2.0 and True were read as 2 and 1 and surfaced as "unknown method 'p3o_v2.0'"."""
    lp, r = torch.tensor([[-1.0, -2.0]]), torch.tensor([[1.0, 0.0]])
    with pytest.raises(ValidationError, match=r"^variant must be 1 or 2"):
        llm.p3o_loss(lp, lp, lp, r, beta=0.1, variant=variant)
    # Control: the integers (NumPy's too) and β = 0 (no KL penalty) are accepted.
    want = llm.p3o_loss(lp, lp, lp, r, beta=0.0, variant=2)
    torch.testing.assert_close(llm.p3o_loss(lp, lp, lp, r, beta=0, variant=np.int64(2)), want)


class _StubLMWithPositions(_StubLMWithVocab):
    """GPT-2-like: a learned position table of 4 rows, stated in its config."""

    config = SimpleNamespace(max_position_embeddings=4)


class _RotaryStubLM(_StubLMWithVocab):
    """Llama-like: states 4 positions but is rotary, so longer sequences still index."""

    config = SimpleNamespace(max_position_embeddings=4, rope_parameters={"rope_theta": 1e4})


def test_mixture_generate_refuses_models_empty_batches_and_positions_past_the_table():
    """The rerun found an AttributeError for policy=None, a RuntimeError (reshape of 0
    elements) for an empty batch and an IndexError for max_new_tokens past GPT-2's table."""
    lm, ids = _StubLMWithPositions(), torch.tensor([[1, 2]])
    kw = {"mixture": 0.5, "max_new_tokens": 2}
    for policy, ref, name in [(None, lm, "policy"), (lm, "ref", "ref")]:
        with pytest.raises(ValidationError, match=rf"^{name} must be a causal LM"):
            mixture_generate(policy, ref, ids, **kw)
    with pytest.raises(ValidationError, match=r"^input_ids must have shape \(B, P\) with B, P"):
        mixture_generate(lm, lm, torch.zeros(0, 2, dtype=torch.long), **kw)
    with pytest.raises(ValidationError, match=r"^max_new_tokens: .* exceed the model's 4"):
        mixture_generate(lm, lm, ids, mixture=0.5, max_new_tokens=3)
    # Controls: 2 + 2 positions fit; a model not run at mixture 0 or 1 is not checked; a
    # rotary model is not held to its stated length.
    assert mixture_generate(lm, lm, ids, **kw).sequences.shape == (1, 4)
    assert mixture_generate(lm, None, ids, mixture=0.0, max_new_tokens=2).sequences.shape[0] == 1
    rot = _RotaryStubLM()
    assert mixture_generate(rot, rot, ids, mixture=0.5, max_new_tokens=5).sequences.shape == (1, 7)
