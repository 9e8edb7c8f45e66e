"""A contextual "sequence bandit" small enough to enumerate: the LLM pipeline against the
exact engine (issue #17).

The vocabulary is ``n_symbols`` symbols and EOS, and nothing else, so every next-token
distribution of a causal LM over it is a distribution over {symbols, EOS}. A completion
of at most L = ``max_new_tokens`` new tokens either stops with EOS after k < L symbols or
is cut after L symbols: there are Σ_{k<L} s^k + s^L of them (1 + 3 + 9 = 13 for s = 3,
L = 2), and their probabilities under any autoregressive model sum to exactly 1 (by
induction on L: the prefixes of length k < L that have not stopped carry the mass that
their s + 1 one-token continuations split). :meth:`SequenceBandit.log_policy` checks it.

So a model *is* a tabular policy π(y|x) (X prompts × n completions), read off by
enumeration with :func:`llm.model_sequence_logps`, and the engine (:mod:`bandit`) knows
where every method must take it. :meth:`SequenceBandit.bandit` maps the problem to a
contextual :class:`bandit.Bandit` (rewards (X, n), π_ref read off the reference model,
ρ, β); :meth:`SequenceBandit.offline_data` gives the pair distribution
:class:`bandit.OfflineData`. The datasets hold every (x, y, y′) once with
``weight`` = N·ρ(x)·q_x(y, y′)·(label weight) (contract hook 1 of llm/trainer.py), so one
full-batch step of the trainer is a step on the exact expected loss
E[ℓ] = Σ_x ρ(x) Σ_{y,y′} q_x(y, y′) ℓ(x, y, y′) (:func:`bandit.expected.expected_value`);
:func:`exact_online_weights` is the weighting sg[π(y|x)π(y′|x)]·ρ(x) of online IPO
(IPO-MD Eq. 11), the exact online expectation (contract hook 2).

:func:`check_fixed_point` certifies that a trained model sits at the engine's fixed point:
the trained loss's own gradient, pulled back to the tabular logits through the model's
Jacobian, bounds the distance to the exact fixed point (see its docstring).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from bandit import Bandit, OfflineData
from bandit.methods import Method
from bandit.validation import ValidationError, check_finite, check_int, check_positive

from .fused import model_sequence_logps
from .trainer import PairwiseTrainer

__all__ = [
    "EOS",
    "ExactCheck",
    "ExactOnlineTrainer",
    "SequenceBandit",
    "check_fixed_point",
    "exact_online_weights",
    "pair_dataset",
    "tabular_gradient",
]

#: The text of the end-of-sequence token.
EOS = "<eos>"
_SYMBOLS = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class SequenceBandit:
    """Prompts and every completion of at most ``max_new_tokens`` tokens, enumerated.

    Token ids: symbol i is id i (``"a"``, ``"b"``, ...), EOS is id ``n_symbols``; the
    vocabulary has no other token, so it also pads (masked out everywhere).

    Attributes:
      n_symbols: s, the symbols besides EOS (1 to 26).
      max_new_tokens: L, the most tokens a completion has (EOS included), >= 1.
      prompts: the prompts as tuples of symbol ids; default one one-token prompt per
        symbol, ``((0,), (1,), ...)``, the first ``min(s, 3)``.
    """

    n_symbols: int = 3
    max_new_tokens: int = 2
    prompts: tuple[tuple[int, ...], ...] | None = None

    def __post_init__(self) -> None:
        s = check_int("n_symbols", self.n_symbols, low=1)
        if s > len(_SYMBOLS):
            raise ValidationError(f"n_symbols must be at most {len(_SYMBOLS)}, got {s}")
        check_int("max_new_tokens", self.max_new_tokens, low=1)
        prompts = self.prompts
        if prompts is None:
            prompts = tuple((i,) for i in range(min(s, 3)))
        prompts = tuple(tuple(int(t) for t in p) for p in prompts)
        if not prompts or any(not p for p in prompts):
            raise ValidationError(f"prompts must be non-empty token tuples, got {self.prompts!r}")
        bad = [p for p in prompts if any(not 0 <= t < s for t in p)]
        if bad:
            raise ValidationError(
                f"prompts must hold symbol ids in [0, {s}) (no EOS), got {bad[0]!r}"
            )
        # A prompt that is a prefix of another would share its contexts with the other's
        # completions (prompt "a" + completion "b…" reads as prompt "ab"): not a bandit.
        for p, q in itertools.permutations(prompts, 2):
            if q[: len(p)] == p:
                raise ValidationError(
                    f"prompts must be distinct and none a prefix of another, got {p!r} and {q!r}"
                )
        object.__setattr__(self, "prompts", prompts)

    @property
    def eos_id(self) -> int:
        return self.n_symbols

    @property
    def vocab(self) -> tuple[str, ...]:
        """The token strings by id: the symbols, then :data:`EOS`."""
        return (*_SYMBOLS[: self.n_symbols], EOS)

    @cached_property
    def completions(self) -> tuple[tuple[int, ...], ...]:
        """Every completion, EOS included: k symbols then EOS (k < L), then L symbols."""
        s, L = self.n_symbols, self.max_new_tokens
        out = [(*c, self.eos_id) for k in range(L) for c in itertools.product(range(s), repeat=k)]
        return (*out, *itertools.product(range(s), repeat=L))

    @property
    def n_prompts(self) -> int:
        return len(self.prompts)

    @property
    def n_completions(self) -> int:
        return len(self.completions)

    def text(self, ids: Sequence[int]) -> str:
        """Token ids as text, one character per symbol and :data:`EOS` spelled out."""
        return "".join(self.vocab[i] for i in ids)

    def batch(self) -> dict[str, torch.Tensor]:
        """Every (prompt, completion): row x·n + j is prompt x with completion j.

        Returns ``input_ids`` (X·n, T), right-padded (with EOS, masked out), its
        ``attention_mask`` and the ``completion_mask`` of the tokens counted in log π(y|x).
        """
        rows = [(p, c) for p in self.prompts for c in self.completions]
        T = max(len(p) for p in self.prompts) + self.max_new_tokens
        ids = torch.full((len(rows), T), self.eos_id, dtype=torch.long)
        attn = torch.zeros((len(rows), T), dtype=torch.long)
        comp = torch.zeros((len(rows), T), dtype=torch.bool)
        for r, (p, c) in enumerate(rows):
            ids[r, : len(p) + len(c)] = torch.tensor((*p, *c))
            attn[r, : len(p) + len(c)] = 1
            comp[r, len(p) : len(p) + len(c)] = True
        return {"input_ids": ids, "attention_mask": attn, "completion_mask": comp}

    def sequence_logps(self, model: torch.nn.Module) -> torch.Tensor:
        """log π(y|x), shape (X, n), in the model's autograd mode and dtype (float64 for a
        float64 model): one :func:`llm.model_sequence_logps` pass over :meth:`batch`."""
        b = self.batch()
        device = model.get_output_embeddings().weight.device
        lp = model_sequence_logps(
            model,
            b["input_ids"].to(device),
            b["completion_mask"].to(device),
            attention_mask=b["attention_mask"].to(device),
        )
        return lp.view(self.n_prompts, self.n_completions)

    def log_policy(self, model: torch.nn.Module, *, atol: float | None = None) -> NDArray:
        """The model's exact log-distribution over completions, log π(y|x), (X, n) float64.

        Checks that every row sums to 1 (module doc) within ``atol``, by default 64 ulps of
        the model's dtype per token of a sequence (the rounding of the summed token
        log-probs and of the final logsumexp), and returns it renormalised in log-space.
        Raises ValidationError when the vocabulary of the model is not this one.
        """
        V = model.get_output_embeddings().weight.shape[0]
        if V != len(self.vocab):
            raise ValidationError(
                f"model: its vocabulary has {V} tokens, expected {len(self.vocab)} "
                f"({', '.join(self.vocab)}): any other token would take probability mass"
            )
        with torch.no_grad():
            lp = self.sequence_logps(model)
        eps = torch.finfo(lp.dtype).eps
        tol = (
            64 * eps * (max(map(len, self.prompts)) + self.max_new_tokens) if atol is None else atol
        )
        mass = torch.logsumexp(lp.double(), dim=-1)
        worst = float(mass.abs().max())
        if not worst <= tol:
            raise ValidationError(
                f"model: log Σ_y π(y|x) must be 0 within {tol:.3g} for every prompt, got "
                f"{mass.tolist()}"
            )
        return (lp.double() - mass[:, None]).cpu().numpy()

    def bandit(
        self,
        rewards: ArrayLike,
        ref_model: torch.nn.Module,
        *,
        beta: float,
        rho: ArrayLike | None = None,
    ) -> Bandit:
        """The contextual :class:`bandit.Bandit`: R (X, n), π_ref = the reference model's
        exact distribution (:meth:`log_policy`), ρ (default uniform), β."""
        R = check_finite("rewards", rewards)
        if R.shape != (self.n_prompts, self.n_completions):
            raise ValidationError(
                f"rewards must have shape ({self.n_prompts}, {self.n_completions}) "
                f"(prompts, completions), got {R.shape}"
            )
        ref = np.exp(self.log_policy(ref_model))
        return Bandit(R, ref / ref.sum(axis=-1, keepdims=True), rho, check_positive("beta", beta))

    def offline_data(self, mu1: ArrayLike, mu2: ArrayLike) -> OfflineData:
        """Offline pairs y ∼ μ1(·|x), y′ ∼ μ2(·|x), each of shape (X, n) (CoPG Eq. 6)."""
        data = OfflineData(mu1, mu2)
        if data.mu1.shape != (self.n_prompts, self.n_completions):
            raise ValidationError(
                f"mu1 must have shape ({self.n_prompts}, {self.n_completions}), got "
                f"{data.mu1.shape}"
            )
        return data

    def model(
        self,
        *,
        seed: int = 0,
        n_embd: int = 32,
        n_layer: int = 2,
        n_head: int = 2,
        dtype: torch.dtype = torch.float64,
        tie: bool = False,
    ) -> torch.nn.Module:
        """A tiny GPT-2 over this vocabulary, randomly initialised from ``seed`` (no
        download), dropout off, in ``dtype`` (float64 by default, so that a gradient of
        1e-10 still means something).

        The LM head is untied from the input embeddings by default (``tie``): then the
        head is a free linear map from the final hidden states of the contexts to their
        next-token logits, and full-batch Adam reaches a tabular gradient of ~1e-6 in a few
        hundred steps, where the tied model stalls near 1e-3 (measured on the test's problem).
        """
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config(
            vocab_size=len(self.vocab),
            n_positions=max(map(len, self.prompts)) + self.max_new_tokens,
            n_embd=n_embd,
            n_layer=n_layer,
            n_head=n_head,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=self.eos_id,
            eos_token_id=self.eos_id,
            pad_token_id=self.eos_id,
            tie_word_embeddings=tie,
        )
        torch.manual_seed(seed)
        return GPT2LMHeadModel(cfg).to(dtype)


# ----------------------------------------------------------------- datasets


def _exchange_symmetric(method: Method, params: dict[str, Any]) -> bool:
    """Whether ℓ(y, y′; p) = ℓ(y′, y; 1 − p) (and R swapped), checked on random float64
    inputs: then a pair and its mirror image are one row with their weights summed."""
    from .losses import method_loss

    if method.n_completions(params) != 2:
        return False
    g = torch.Generator().manual_seed(0)
    lp, ref, r = (-torch.rand(16, 2, generator=g, dtype=torch.float64) * 3 for _ in range(3))
    p = torch.rand(16, generator=g, dtype=torch.float64)
    sig = {"rewards": r} if method.signal == "reward" else {"preference": p}
    mirror = {"rewards": r.flip(-1)} if method.signal == "reward" else {"preference": 1 - p}
    kw = {"beta": 0.7, "reduction": "none", **params}
    a = method_loss(method, lp, ref, **sig, **kw)
    b = method_loss(method, lp.flip(-1), ref.flip(-1), **mirror, **kw)
    return bool(torch.allclose(a, b, rtol=1e-12, atol=1e-12))


def _flat_on_diagonal(method: Method, params: dict[str, Any]) -> bool:
    """Whether a pair of identical completions has zero gradient, ∇ℓ(y, y) = 0 (checked
    on random float64 inputs): true of every loss of h(y) − h(y′) alone (copg, ipo, dpo)."""
    from .losses import method_loss

    if method.n_completions(params) != 2:
        return False
    g = torch.Generator().manual_seed(1)
    lp = (-torch.rand(16, 1, generator=g, dtype=torch.float64) * 3).expand(16, 2)
    lp = lp.clone().requires_grad_(True)
    ref = (-torch.rand(16, 1, generator=g, dtype=torch.float64) * 3).expand(16, 2)
    r = torch.rand(16, 1, generator=g, dtype=torch.float64).expand(16, 2)
    p = torch.rand(16, generator=g, dtype=torch.float64)
    sig = {"rewards": r} if method.signal == "reward" else {"preference": p}
    loss = method_loss(method, lp, ref, beta=0.7, reduction="sum", **sig, **params)
    (grad,) = torch.autograd.grad(loss, lp)
    return bool(grad.sum(-1).abs().max() <= 1e-12)


def pair_dataset(
    sb: SequenceBandit,
    problem: Bandit,
    method: str | Method,
    data: OfflineData | None = None,
    *,
    preferences: ArrayLike | None = None,
    diagonal: bool = True,
    **params: Any,
):
    """Every pair (x, y, y′) once, as a ``datasets.Dataset`` in :mod:`llm.data`'s formats
    (token-id lists: train with ``processing_class=None``).

    Columns ``prompt``, ``completion_a``, ``completion_b`` and ``reward_a``/``reward_b``
    (reward methods) or the soft ``preference`` p(y ≻ y′|x) (preference methods: the
    problem's Bradley–Terry σ(R(x, y) − R(x, y′)), or ``preferences`` (X, n, n)), and
    ``weight`` = N·ρ(x)·q_x(y, y′), N the number of rows, so that the trainer's full-batch
    mean (1/N)Σ weight·ℓ is E[ℓ] = Σ_x ρ(x) Σ_{y,y′} q_x(y, y′) ℓ(x, y, y′), the exact
    expected loss (:func:`bandit.expected.expected_value`). q = μ1 ⊗ μ2 (``data.joint``)
    for an offline method. For an online method q ≡ 1 and the weight misses its
    sg[π(y|x)π(y′|x)], which :class:`ExactOnlineTrainer` multiplies in at every step.

    Every preference loss is linear in p, so one soft-labelled row stands for both hard
    labels. When the method's per-pair loss is exchange-symmetric, ℓ(y, y′; p) =
    ℓ(y′, y; 1 − p) (checked numerically), the pairs (y, y′) and (y′, y) are one row
    weighted q(y, y′) + q(y′, y): 91 rows per prompt instead of 169 at n = 13.

    ``diagonal=False`` leaves out the pairs (y, y), for a method whose loss has zero
    gradient there (checked numerically, else a ValidationError): the full-batch loss is
    then E[ℓ] less a constant, with the same gradient, from n fewer rows per prompt.
    """
    from datasets import Dataset

    from bandit import prepare

    prep = prepare(method, problem, data, preferences=preferences, **params)
    m = prep.method
    X, n = prep.shape
    if (X, n) != (sb.n_prompts, sb.n_completions):
        raise ValidationError(
            f"problem has shape {(X, n)} (prompts, actions), but the sequence bandit has "
            f"{(sb.n_prompts, sb.n_completions)}"
        )
    if not diagonal and not _flat_on_diagonal(m, prep.params):
        raise ValidationError(
            f"diagonal: method {m.name!r} has a non-zero gradient on pairs (y, y), so "
            "diagonal=False would change the expected gradient; keep diagonal=True"
        )
    q = np.ones((X, n, n)) if prep.joint is None else np.asarray(prep.joint)
    if _exchange_symmetric(m, prep.params):
        pairs = [(i, j) for i in range(n) for j in range(i, n)]
        w = [q[:, i, j] + (q[:, j, i] if i != j else 0.0) for i, j in pairs]
    else:
        pairs = [(i, j) for i in range(n) for j in range(n)]
        w = [q[:, i, j] for i, j in pairs]
    if not diagonal:
        keep = [k for k, (i, j) in enumerate(pairs) if i != j]
        pairs, w = [pairs[k] for k in keep], [w[k] for k in keep]
    rho = np.asarray(prep.tables.rho)
    rows = [(x, i, j, rho[x] * w[k][x]) for x in range(X) for k, (i, j) in enumerate(pairs)]
    N = len(rows)
    cols: dict[str, list[Any]] = {
        "prompt": [list(sb.prompts[x]) for x, *_ in rows],
        "completion_a": [list(sb.completions[i]) for _, i, _, _ in rows],
        "completion_b": [list(sb.completions[j]) for _, _, j, _ in rows],
        "weight": [float(N * wt) for *_, wt in rows],
    }
    if m.signal == "reward":
        R = np.asarray(prep.tables.rewards)
        cols["reward_a"] = [float(R[x, i]) for x, i, _, _ in rows]
        cols["reward_b"] = [float(R[x, j]) for x, _, j, _ in rows]
    else:
        P = np.asarray(prep.tables.pref)
        cols["preference"] = [float(P[x, i, j]) for x, i, j, _ in rows]
    return Dataset.from_dict(cols)


# ----------------------------------------------------------------- exact online weights


class ExactOnlineTrainer(PairwiseTrainer):
    """:class:`~llm.trainer.PairwiseTrainer` whose per-pair weight is the dataset's
    ``weight`` times sg[π(y|x)π(y′|x)] (contract hook 2).

    On :func:`pair_dataset` of an online method (q ≡ 1, weight N·ρ(x)), a full-batch step
    then minimises Σ_x ρ(x) Σ_{y,y′} sg[π(y|x)π(y′|x)] ℓ(x, y, y′), the exact expected
    loss of online IPO (IPO-MD Eq. 11, Alg. 2), whose field is the engine's.
    """

    def pair_weights(self, model: torch.nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        return exact_online_weights(self, model, inputs)


def exact_online_weights(
    trainer: PairwiseTrainer, model: torch.nn.Module, inputs: dict[str, Any]
) -> torch.Tensor:
    """``weight``·sg[π(y|x)π(y′|x)] per pair of the batch (B,), from one no-grad pass."""
    ids, attn, cmask = inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"]
    B, k = ids.shape[:2]
    with torch.no_grad():
        lp = trainer.sequence_logps(model, *(t.flatten(0, 1) for t in (ids, attn, cmask)))
    w = inputs.get("weight")
    pi = torch.exp(lp.view(B, k).sum(-1))
    return pi if w is None else w.to(pi.dtype) * pi


# ----------------------------------------------------------------- the certificate


def tabular_gradient(
    sb: SequenceBandit, model: torch.nn.Module, loss_fn: Callable[[], torch.Tensor]
) -> tuple[NDArray, dict[str, float]]:
    """∇_θ L at the model's policy: the gradient of a loss of the model with respect to the
    tabular logits θ (X, n), pulled back from the weights w.

    L(w) depends on w only through the model's policy (every loss here is built from the
    log π(y|x) of these completions), L(w) = E(z(w)) with z = θ[:, :-1] − θ[:, -1:] the
    reduced logits; so ∇_w L = J_wᵀ ∇_z E with J_w = ∂z/∂w, and ∇_z E is the least-squares
    solution. That needs J_w of full row rank X(n − 1): the model can move its policy in
    every direction (``sigma_min`` > 0), hence a stationary point of L in w is one in θ.

    Returns:
      (g, info): g (X, n) with Σ_y g = 0 (the gradient in θ, gauge-free), and ``residual``
      ‖J_wᵀu − ∇_w L‖/‖∇_w L‖ (≈ 0 when L depends on w only through π), ``sigma_min`` and
      ``sigma_max`` of J_w.
    """
    params = [p for p in model.parameters() if p.requires_grad]

    def flat(gs: Sequence[torch.Tensor | None]) -> torch.Tensor:
        pairs = zip(params, gs, strict=True)
        return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in pairs])

    lp = sb.sequence_logps(model)
    z = (lp[:, :-1] - lp[:, -1:]).reshape(-1)
    Jw = torch.stack(
        [
            flat(torch.autograd.grad(z[i], params, retain_graph=True, allow_unused=True))
            for i in range(z.numel())
        ]
    ).double()
    gw = flat(torch.autograd.grad(loss_fn(), params, allow_unused=True)).double()
    u = torch.linalg.lstsq(Jw.T, gw[:, None], driver="gelsd").solution[:, 0]
    s = torch.linalg.svdvals(Jw)
    res = float(
        torch.linalg.vector_norm(Jw.T @ u - gw) / torch.linalg.vector_norm(gw).clamp_min(1e-300)
    )
    U = u.view(sb.n_prompts, sb.n_completions - 1).cpu().numpy()
    g = np.concatenate([U, -U.sum(axis=1, keepdims=True)], axis=1)
    return g, {"residual": res, "sigma_min": float(s.min()), "sigma_max": float(s.max())}


@dataclass(frozen=True)
class ExactCheck:
    """Whether a trained model sits at the engine's fixed point, with the numbers that say so.

    Distances and gradients are Euclidean norms in the reduced logits z = θ[:, :-1] −
    θ[:, -1:] (X(n − 1) numbers: logits up to a per-prompt constant), where the fixed point
    is isolated and :func:`bandit.fixed_points.roots.field_jacobian` lives.

    Attributes:
      distance: ‖ẑ − z*‖, the model's policy against the engine's fixed point.
      bound: 2‖J⁻¹‖·(‖F̂‖ + ‖F(z*)‖) + float rounding (see :func:`check_fixed_point`).
      gradient: ‖F̂‖, the field of the loss the model was trained on, at ẑ (pulled back).
      engine_gradient: ‖F(ẑ)‖, the engine's exact field of the method at ẑ.
      gradient_gap: ‖F̂ − F(ẑ)‖: zero when the pipeline minimises the engine's E[ℓ].
      inverse_jacobian: ‖J⁻¹‖₂ = 1/σ_min(J), J the field's Jacobian at z*.
      pullback: :func:`tabular_gradient`'s ``info``.
    """

    distance: float
    bound: float
    gradient: float
    engine_gradient: float
    gradient_gap: float
    inverse_jacobian: float
    pullback: dict[str, float]

    @property
    def passed(self) -> bool:
        return self.distance <= self.bound

    def __str__(self) -> str:
        return (
            f"distance {self.distance:.3g} vs bound {self.bound:.3g} "
            f"({'ok' if self.passed else 'FAILED'}); "
            f"‖F̂‖ {self.gradient:.3g}, engine ‖F‖ {self.engine_gradient:.3g}, gap "
            f"{self.gradient_gap:.3g}, ‖J⁻¹‖ {self.inverse_jacobian:.3g}, σ_min(J_w) "
            f"{self.pullback['sigma_min']:.3g}"
        )


def check_fixed_point(
    sb: SequenceBandit,
    model: torch.nn.Module,
    loss_fn: Callable[[], torch.Tensor],
    method: str | Method,
    problem: Bandit,
    fixed_point: Any,
    data: OfflineData | None = None,
    *,
    preferences: ArrayLike | None = None,
    **params: Any,
) -> ExactCheck:
    """Certify that ``model``, trained on ``loss_fn``, sits at ``fixed_point`` (a
    :class:`bandit.FixedPoint` of ``method`` on ``problem``), within its optimisation
    tolerance.

    Let F be the method's exact field in reduced logits (F = g[:, :-1] − g[:, -1:], g the
    exact expected gradient) and J = ∂F/∂z at the fixed point z*. Taylor's theorem gives
    F(ẑ) − F(z*) = J(ẑ − z*) + r with ‖r‖ ≤ (M/2)‖ẑ − z*‖² (M a Lipschitz constant of J),
    so ‖ẑ − z*‖ ≤ ‖J⁻¹‖(‖F(ẑ)‖ + ‖F(z*)‖) + ‖J⁻¹‖(M/2)‖ẑ − z*‖²; within the radius
    1/(M‖J⁻¹‖) of z* the last term is at most half the distance, whence
    ‖ẑ − z*‖ ≤ 2‖J⁻¹‖(‖F(ẑ)‖ + ‖F(z*)‖). ‖F(z*)‖ ≤ 2√d·``fixed_point.residual`` (|F| ≤
    2 max|g|, d = X(n − 1)) is the solver's certificate; float rounding of the model's
    log-probs adds 1e3·ε·√d·(1 + max|z*|).

    F(ẑ) is taken as F̂, the field of the *trained* loss (``loss_fn``, e.g. the trainer's
    full-batch loss), pulled back from the weights by :func:`tabular_gradient`: it measures
    how far the optimiser got, independently of the engine. A pipeline that minimises the
    engine's E[ℓ] has F̂ = F(ẑ) (``gradient_gap`` ≈ 0) and passes; one that minimises
    something else (a mispaired label, a wrong weight) converges too, F̂ ≈ 0, but lands
    elsewhere, and ``distance`` exceeds ``bound`` by orders of magnitude.
    """
    # JAX-backed: imported here, so that importing this module never loads JAX.
    from bandit.expected import expected_loss_and_grad
    from bandit.fixed_points.roots import _reduce, field_jacobian

    lp_hat = sb.log_policy(model)
    lp_star = np.asarray(fixed_point.log_policy)
    if not np.all(np.isfinite(lp_star)):
        raise ValidationError(
            "fixed_point: the fixed point is on the boundary (π = 0 somewhere); the distance "
            "in logits is infinite there, use an interior one (e.g. soft preferences for dpo)"
        )
    z_hat, z_star = _reduce(lp_hat), _reduce(lp_star)
    d = z_hat.size
    g_hat, info = tabular_gradient(sb, model, loss_fn)
    kw = {"preferences": preferences, **params}
    _, g_eng = expected_loss_and_grad(method, problem, lp_hat, data, **kw)
    J = field_jacobian(method, problem, lp_star, data, **kw)
    inv = 1.0 / float(np.linalg.svd(J, compute_uv=False).min())
    F_hat, F_eng = _reduce(g_hat), _reduce(np.asarray(g_eng))
    eps = float(np.finfo(np.float64).eps)
    floor = 1e3 * eps * np.sqrt(d) * (1.0 + float(np.max(np.abs(z_star))))
    at_star = 2.0 * np.sqrt(d) * float(fixed_point.residual)
    bound = 2.0 * inv * (float(np.linalg.norm(F_hat)) + at_star) + floor
    return ExactCheck(
        distance=float(np.linalg.norm(z_hat - z_star)),
        bound=bound,
        gradient=float(np.linalg.norm(F_hat)),
        engine_gradient=float(np.linalg.norm(F_eng)),
        gradient_gap=float(np.linalg.norm(F_hat - F_eng)),
        inverse_jacobian=inv,
        pullback=info,
    )
