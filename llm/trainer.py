"""A ``transformers.Trainer`` for every pairwise method of the registry, offline and online.

    from llm.trainer import PairwiseConfig, PairwiseTrainer

    args = PairwiseConfig(output_dir="out", method="copg", beta=0.1)
    PairwiseTrainer(model, args, train_dataset=ds, processing_class=tok).train()

Why ``transformers.Trainer`` and not TRL's base: TRL's trainers are themselves
``transformers.Trainer`` subclasses, each hard-wiring one family of losses in its
``compute_loss``; building on ``Trainer`` directly gives the same engine (``accelerate
launch``/``torchrun``, DeepSpeed and FSDP configs, gradient accumulation, mixed precision,
``report_to`` logging, safetensors checkpoints and ``resume_from_checkpoint``) without
TRL's per-trainer data pipelines and loss branches, so one ``compute_loss`` serves all 13
methods through :func:`llm.method_loss`, the torch wrapper of the one definition in
:mod:`bandit.losses`.

Each step (:meth:`PairwiseTrainer.compute_loss`):

1. The batch (:mod:`llm.data` documents it: ``input_ids`` (B, k, T) etc.) holds k
   completions per prompt. Offline methods read them from the dataset. Online methods
   (``bandit.get_method(name).sampling`` ≠ ``"offline"``) generate them with
   :func:`llm.mixture_generate`: completion j from π (``"policy"``), from the geometric
   mixture π^(1−m)·π_ref^m with m the ``mixture`` parameter (``"mixture"``), or completion 0
   from π and 1 from the mixture (``"policy_vs_mixture"``, Nash-MD-PG); then score them
   with ``reward_fn(prompts, completions) -> (B·k,)`` rewards (reward methods; row k·i + j
   is completion j of prompt i) or ``preference_fn(prompts, completions_0, completions_1)
   -> (B,)`` p(0 ≻ 1) (preference methods). Prompts and completions are text when a
   ``processing_class`` is given, else lists of token ids. An online method given a
   dataset with completions uses those as its samples.
2. log π(y|x) (with gradient) and log π_ref(y|x) (``no_grad``) by
   :func:`llm.model_sequence_logps`: one backbone pass and the fused LM head, never the
   [B, T, V] logits. Under a wrapper (DDP), the policy's pass goes through the wrapper's
   forward so that its gradient hooks run, and the head's input is handed to the same fused
   head (:func:`llm.fused_sequence_logps`).
3. Per-pair losses ℓ_i = ``llm.method_loss(method, logps, ref, reduction="none", ...)``
   with the method's parameters (``mixture``, ``clip_eps``, ``k``) and, for ``pg_value``,
   the ``baseline`` column (or ``PairwiseConfig.baseline``); P3O's π_old is sg[π], the
   policy that sampled the step's completions.
4. loss = mean_i(w_i·ℓ_i), w = :meth:`PairwiseTrainer.pair_weights` (the batch's ``weight``
   column; absent ⇒ 1). A dataset holding every (x, y, y') once with weight
   N·ρ(x)μ1(y)μ2(y'), trained in one full batch, minimises the exact expected loss.

Logged every ``logging_steps`` (averaged over steps and processes): ``loss``;
``logratio/j``, the mean h(y_j) = log π(y_j|x) − log π_ref(y_j|x) of completion j;
``logratio/margin`` = mean(h(y_0) − h(y_1)); ``reward/mean`` and ``reward/margin`` =
mean(R(y_0) − R(y_1)) (reward methods) or ``preference/margin`` = mean(p) − ½ (preference
methods); ``kl``, the Monte-Carlo estimate KL(π‖π_ref) ≈ mean over y ∼ π of
log π(y|x) − log π_ref(y|x) (the unbiased "k1" estimator of the sequence-level KL, one
sample per prompt: the step's own completions when they come from π, otherwise one fresh
completion per prompt generated from π; ``kl_estimate=False`` turns the extra generation off).

PEFT/LoRA: pass ``peft_config`` (the model is wrapped with ``peft.get_peft_model``) or a
``PeftModel``; with ``ref_model=None`` the reference is the same model under
``disable_adapter()``, as in TRL. Otherwise ``ref_model=None`` copies the initial policy.
"""

from __future__ import annotations

import copy
import math
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import Trainer, TrainingArguments

from bandit.methods import Method, get_method
from bandit.validation import ValidationError, check_int, check_positive

from .data import PairCollator, dataset_format, tokenize_dataset
from .fused import fused_sequence_logps, head_transform, model_sequence_logps
from .losses import method_loss
from .sampling import MixtureSample, mixture_generate

__all__ = ["PairwiseConfig", "PairwiseTrainer"]

RewardFn = Callable[[list[Any], list[Any]], Sequence[float] | torch.Tensor]
PreferenceFn = Callable[[list[Any], list[Any], list[Any]], Sequence[float] | torch.Tensor]

_METHOD_PARAMS = ("mixture", "clip_eps", "k")


@dataclass
class PairwiseConfig(TrainingArguments):
    """``transformers.TrainingArguments`` plus the method and its parameters.

    Only the parameters a method takes may be set (``bandit.get_method(method).params``);
    the others stay None. ``remove_unused_columns`` defaults to False: the batch is ours.
    """

    method: str = field(default="copg", metadata={"help": "a name of bandit.METHODS"})
    beta: float = field(default=0.1, metadata={"help": "KL strength β > 0 (IPO-MD's τ)"})
    mixture: float | None = field(
        default=None, metadata={"help": "ipo_md / nash_md_pg: m of π^(1−m)·π_ref^m, in [0, 1]"}
    )
    clip_eps: float | None = field(default=None, metadata={"help": "p3o_v1/v2: clipping ε > 0"})
    k: int | None = field(default=None, metadata={"help": "rloo: completions per prompt, ≥ 2"})
    baseline: float | None = field(
        default=None,
        metadata={"help": "pg_value: the value baseline E_π[R] (a 'baseline' column overrides)"},
    )
    max_prompt_length: int | None = field(default=None, metadata={"help": "keep the last N"})
    max_completion_length: int | None = field(default=None, metadata={"help": "keep the first N"})
    max_new_tokens: int = field(default=16, metadata={"help": "online: tokens to generate"})
    average_logps: bool = field(
        default=False, metadata={"help": "length-average log π(y|x) (the papers use the sum)"}
    )
    disable_dropout: bool = field(default=True, metadata={"help": "dropout off in π and π_ref"})
    kl_estimate: bool = field(
        default=True,
        metadata={"help": "generate from π for the KL log where the batch has no π samples"},
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "keep False"})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.beta = check_positive("beta", self.beta)
        check_int("max_new_tokens", self.max_new_tokens, low=1)
        for name in ("max_prompt_length", "max_completion_length"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), low=1)
        if self.baseline is not None and not math.isfinite(self.baseline):
            raise ValidationError(f"baseline must be finite, got {self.baseline!r}")
        self.method_params()

    def method_params(self) -> dict[str, Any]:
        """The method's checked parameters (defaults filled in); a parameter set for a method
        that does not take it is refused."""
        m = get_method(self.method)
        given = {n: getattr(self, n) for n in _METHOD_PARAMS if getattr(self, n) is not None}
        return m.check_params(given)


class _AdapterOff:
    """A PEFT model's base model with the adapter disabled, callable as a causal LM: the
    reference for :func:`llm.mixture_generate`, which needs π and π_ref side by side."""

    def __init__(self, peft_model: Any) -> None:
        self._peft, self._base = peft_model, peft_model.get_base_model()
        self.forward = self._base.forward  # its signature tells the KV-cache keyword

    def __call__(self, **kwargs: Any) -> Any:
        with self._peft.disable_adapter():
            return self._base(**kwargs)


def _is_peft(model: Any) -> bool:
    peft = sys.modules.get("peft")  # a PeftModel exists only if peft was imported
    return peft is not None and isinstance(model, peft.PeftModel)


def _disable_dropout(model: torch.nn.Module) -> None:
    for mod in model.modules():
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0


def _positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids counted from each row's first real token (prompts may be left-padded)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _through_wrapper(
    wrapped: torch.nn.Module,
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    mask: torch.Tensor,
    attention_mask: torch.Tensor,
    average: bool,
) -> torch.Tensor:
    """log π(y|x) per row by the wrapper's forward (so DDP's gradient hooks run): a forward
    pre-hook on the LM head takes its input, the final hidden states, and hands the head an
    empty slice, so no logits are built; the fused head then does the reduction."""
    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear):
        raise ValidationError(
            f"model: expected a causal LM whose get_output_embeddings() is an nn.Linear, got "
            f"{type(head).__name__}"
        )
    seen: list[torch.Tensor] = []

    def take(_module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[torch.Tensor]:
        seen.append(args[0])
        return (args[0][..., :0, :],)

    handle = head.register_forward_pre_hook(take)
    try:
        wrapped(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=_positions(attention_mask),
            use_cache=False,
        )
    finally:
        handle.remove()
    return fused_sequence_logps(
        seen[0].to(head.weight.dtype),
        head.weight,
        input_ids,
        mask,
        bias=head.bias,
        average=average,
        **head_transform(model.config),
    )


def _pad_right(x: torch.Tensor, width: int, value: int) -> torch.Tensor:
    return torch.nn.functional.pad(x, (0, width - x.shape[-1]), value=value)


def _scores(name: str, values: object, n: int, device: torch.device) -> torch.Tensor:
    """The user's scores as a finite float64 (n,) tensor, or a ValidationError naming ``name``."""
    try:
        t = torch.as_tensor(values, dtype=torch.float64).to(device)
    except (TypeError, ValueError, RuntimeError):
        raise ValidationError(
            f"{name} must return {n} real numbers, got {type(values).__name__}"
        ) from None
    if t.shape != (n,):
        raise ValidationError(
            f"{name} must return {n} numbers (shape ({n},)), got {tuple(t.shape)}"
        )
    if not bool(torch.isfinite(t).all()):
        raise ValidationError(f"{name} returned non-finite values: {t.tolist()}")
    return t


class PairwiseTrainer(Trainer):
    """``transformers.Trainer`` training ``args.method`` (see the module docstring).

    Args:
      model: a ``transformers`` causal LM (or a ``PeftModel``).
      args: a :class:`PairwiseConfig`.
      train_dataset: a ``datasets.Dataset`` in a format of :mod:`llm.data`.
      eval_dataset: optional, the same format; ``trainer.evaluate()`` gives ``eval_loss``.
      ref_model: π_ref; None: the model with its adapter disabled (PEFT), else a frozen copy
        of the initial model.
      processing_class: a tokenizer, for text columns and for text given to the score
        functions; None: the columns are token ids.
      reward_fn: ``(prompts, completions) -> rewards``, online reward methods.
      preference_fn: ``(prompts, completions_0, completions_1) -> p(0 ≻ 1)``, online
        preference methods.
      peft_config: a ``peft`` config; the model is wrapped with ``peft.get_peft_model``.
      callbacks, optimizers: as in ``transformers.Trainer``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        args: PairwiseConfig | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        ref_model: torch.nn.Module | None = None,
        processing_class: Any = None,
        reward_fn: RewardFn | None = None,
        preference_fn: PreferenceFn | None = None,
        peft_config: Any = None,
        callbacks: list[Any] | None = None,
        optimizers: tuple[Any, Any] = (None, None),
    ) -> None:
        args = PairwiseConfig(output_dir="pairwise_trainer") if args is None else args
        if not isinstance(args, PairwiseConfig):
            raise ValidationError(f"args must be a PairwiseConfig, got {type(args).__name__}")
        from datasets import Dataset

        for name, ds in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            if not (isinstance(ds, Dataset) or (ds is None and name == "eval_dataset")):
                raise ValidationError(f"{name} must be a datasets.Dataset, got {type(ds).__name__}")
        self.method: Method = get_method(args.method)
        self.method_params = args.method_params()
        m = self.method
        if peft_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
        if args.disable_dropout:
            _disable_dropout(model)
        if ref_model is None and not _is_peft(model):
            ref_model = copy.deepcopy(model)
        if ref_model is not None:
            ref_model.eval().requires_grad_(False)
            if args.disable_dropout:
                _disable_dropout(ref_model)
        self.ref_model = ref_model
        fmt = dataset_format(train_dataset.column_names, m)
        if fmt == "prompt":
            fn, other = (
                ("reward_fn", reward_fn)
                if m.signal == "reward"
                else ("preference_fn", preference_fn)
            )
            if other is None:
                raise ValidationError(
                    f"{fn}: online method {m.name!r} scores its completions with {fn}; pass one"
                )
            if m.signal == "preference" and m.n_completions(self.method_params) != 2:
                raise ValidationError(f"method {m.name!r}: preferences need pairs (k = 2)")
        if (
            m.name == "pg_value"
            and args.baseline is None
            and "baseline" not in train_dataset.column_names
        ):
            raise ValidationError(
                "baseline: pg_value needs the value baseline E_π[R]: a 'baseline' column or "
                "PairwiseConfig(baseline=...)"
            )
        self.reward_fn, self.preference_fn = reward_fn, preference_fn
        tok = processing_class
        eos = getattr(tok, "eos_token_id", None)
        if eos is None:
            eos = getattr(getattr(model, "config", None), "eos_token_id", None)
        self._eos = eos
        pad = getattr(tok, "pad_token_id", None)
        if pad is None:
            pad = getattr(getattr(model, "config", None), "pad_token_id", None)
        self._pad = int(pad if pad is not None else (eos if isinstance(eos, int) else 0))
        lengths = {
            "max_prompt_length": args.max_prompt_length,
            "max_completion_length": args.max_completion_length,
        }
        train_dataset = tokenize_dataset(train_dataset, m, tok, **lengths)
        if eval_dataset is not None:
            eval_dataset = tokenize_dataset(eval_dataset, m, tok, **lengths)
        super().__init__(
            model=model,
            args=args,
            data_collator=PairCollator(self._pad),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
            optimizers=optimizers,
        )
        # compute_loss returns a per-batch mean: the Trainer divides it by the accumulation
        # steps, and never passes num_items_in_batch to the model.
        self.loss_is_scaled_for_ga = False
        self.model_accepts_loss_kwargs = False
        if self.ref_model is not None:
            self.ref_model = self.ref_model.to(self.accelerator.device)
        self._metrics: dict[str, list[torch.Tensor]] = defaultdict(list)

    # ------------------------------------------------------------- hooks

    def pair_weights(self, model: torch.nn.Module, inputs: dict[str, Any]) -> torch.Tensor | None:
        """Per-pair weights w (B,), ≥ 0, of the batch mean mean_i(w_i·ℓ_i); None ⇒ all 1.

        Default: the batch's ``weight`` column. Override to weight pairs otherwise (e.g. by
        sg[π(y|x)π(y'|x)]ρ(x) for the exact expectation of an online method over every pair).
        """
        return inputs.get("weight")

    # ------------------------------------------------------------- log-probs

    def sequence_logps(
        self,
        model: torch.nn.Module,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        completion_mask: torch.Tensor,
    ) -> torch.Tensor:
        """log π(y|x) per row (N,) of (N, T) sequences; gradients follow the autograd mode.

        An unwrapped model goes through :func:`llm.model_sequence_logps`; a wrapped one (DDP)
        through its wrapper's forward (see the module docstring), to the same fused head.
        """
        inner = self.accelerator.unwrap_model(model)
        avg = self.args.average_logps
        if inner is model:
            return model_sequence_logps(
                model,
                input_ids,
                completion_mask,
                attention_mask=attention_mask,
                average=avg,
                position_ids=_positions(attention_mask),
            )
        return _through_wrapper(model, inner, input_ids, completion_mask, attention_mask, avg)

    @torch.no_grad()
    def ref_logps(
        self,
        model: torch.nn.Module,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        completion_mask: torch.Tensor,
    ) -> torch.Tensor:
        """log π_ref(y|x) per row: the reference model, or the policy with its adapter off."""
        if self.ref_model is not None:
            return self.sequence_logps(self.ref_model, input_ids, attention_mask, completion_mask)
        inner = self.accelerator.unwrap_model(model)
        with inner.disable_adapter():
            return self.sequence_logps(inner, input_ids, attention_mask, completion_mask)

    # ------------------------------------------------------------- sampling

    def _generators(self, model: torch.nn.Module) -> tuple[Any, Any]:
        """(policy, reference) as causal LMs for :func:`llm.mixture_generate`."""
        inner = self.accelerator.unwrap_model(model)
        # PEFT: the base model carries the (active) adapter and takes the KV-cache keyword
        # that PeftModel.forward does not declare; the reference turns the adapter off.
        policy = inner.get_base_model() if _is_peft(inner) else inner
        return policy, (_AdapterOff(inner) if self.ref_model is None else self.ref_model)

    def _sample(
        self, model: torch.nn.Module, inputs: dict[str, Any], mixture: float
    ) -> MixtureSample:
        policy, ref = self._generators(model)
        return mixture_generate(
            policy,
            ref,
            inputs["prompt_input_ids"],
            inputs["prompt_attention_mask"],
            mixture=mixture,
            max_new_tokens=self.args.max_new_tokens,
            eos_token_id=self._eos,
            pad_token_id=self._pad,
        )

    def _decode(self, sample: MixtureSample, prompt_len: int) -> list[Any]:
        rows = [
            seq[prompt_len:][m[prompt_len:].bool()].tolist()
            for seq, m in zip(sample.sequences, sample.completion_mask, strict=True)
        ]
        tok = self.processing_class
        if tok is None:
            return rows
        return tok.batch_decode(rows, skip_special_tokens=True)

    def _online_batch(self, model: torch.nn.Module, inputs: dict[str, Any]) -> dict[str, Any]:
        """Generate the k completions of each prompt (the method's sampling) and score them."""
        m, kw = self.method, self.method_params
        k = m.n_completions(kw)
        mix = kw.get("mixture", 0.0)
        slots = [
            0.0 if m.sampling == "policy" or (m.sampling == "policy_vs_mixture" and j == 0) else mix
            for j in range(k)
        ]
        samples = [self._sample(model, inputs, s) for s in slots]
        P = inputs["prompt_input_ids"].shape[1]
        T = max(s.sequences.shape[1] for s in samples)
        stack = lambda name, v: torch.stack(  # noqa: E731
            [_pad_right(getattr(s, name), T, v) for s in samples], dim=1
        )
        batch: dict[str, Any] = {
            "input_ids": stack("sequences", self._pad),
            "attention_mask": stack("attention_mask", 0),
            "completion_mask": stack("completion_mask", 0).bool(),
            "from_policy": [s == 0.0 for s in slots],
        }
        prompts = list(inputs["prompt"])
        texts = [self._decode(s, P) for s in samples]  # texts[j][i]: completion j of prompt i
        B = len(prompts)
        dev = batch["input_ids"].device
        if m.signal == "reward":
            flat = [texts[j][i] for i in range(B) for j in range(k)]
            rep = [p for p in prompts for _ in range(k)]
            batch["rewards"] = _scores("reward_fn", self.reward_fn(rep, flat), B * k, dev).view(
                B, k
            )
        else:
            p = _scores("preference_fn", self.preference_fn(prompts, texts[0], texts[1]), B, dev)
            if bool(((p < 0) | (p > 1)).any()):
                raise ValidationError(
                    f"preference_fn must return values in [0, 1], got {p.tolist()}"
                )
            batch["preference"] = p
        return batch

    # ------------------------------------------------------------- the loss

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """mean_i(w_i·ℓ_i) over the batch's prompts, ℓ_i = ``llm.method_loss`` (per pair)."""
        m = self.method
        batch = inputs if "input_ids" in inputs else self._online_batch(model, inputs)
        ids, attn, cmask = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
        B, k = ids.shape[:2]
        flat = [x.flatten(0, 1) for x in (ids, attn, cmask)]
        logps = self.sequence_logps(model, *flat).view(B, k)
        ref = self.ref_logps(model, *flat).view(B, k)
        signal: dict[str, Any] = {}
        if m.signal == "reward":
            signal["rewards"] = batch["rewards"]
            if m.name == "pg_value":
                signal["baseline"] = inputs.get("baseline", self.args.baseline)
        else:
            signal["preference"] = batch["preference"]
        losses = method_loss(
            m, logps, ref, beta=self.args.beta, reduction="none", **signal, **self.method_params
        )
        w = self.pair_weights(model, inputs)
        if w is not None and tuple(w.shape) != (B,):
            raise ValidationError(
                f"pair_weights must return a ({B},) tensor (one weight per pair), got shape "
                f"{tuple(w.shape)}"
            )
        loss = losses.mean() if w is None else (w.to(losses.dtype) * losses).mean()
        if model.training:
            self._record(model, inputs, batch, logps.detach(), ref)
        return (loss, {"losses": losses}) if return_outputs else loss

    def prediction_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor, None, None]:
        """Evaluation: the same loss on the eval batch (``eval_loss``), no predictions."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    # ------------------------------------------------------------- logging

    def _record(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        batch: dict[str, Any],
        logps: torch.Tensor,
        ref: torch.Tensor,
    ) -> None:
        h = (logps - ref).float()
        rec = self._metrics
        for j in range(h.shape[1]):
            rec[f"logratio/{j}"].append(h[:, j].mean())
        rec["logratio/margin"].append((h[:, 0] - h[:, 1]).mean())
        if "rewards" in batch:
            r = batch["rewards"].float()
            rec["reward/mean"].append(r.mean())
            rec["reward/margin"].append((r[:, 0] - r[:, 1]).mean())
        else:
            rec["preference/margin"].append(batch["preference"].float().mean() - 0.5)
        from_policy = batch.get("from_policy")
        if from_policy and any(from_policy):  # completions drawn from π: the k1 estimator
            rec["kl"].append(h[:, [j for j, f in enumerate(from_policy) if f]].mean())
        elif self.args.kl_estimate and self._logs_this_step():
            sample = self._sample(model, inputs, 0.0)
            with torch.no_grad():
                args = (sample.sequences, sample.attention_mask, sample.completion_mask)
                inner = self.accelerator.unwrap_model(model)
                kl = self.sequence_logps(inner, *args) - self.ref_logps(model, *args)
            rec["kl"].append(kl.float().mean())

    def _logs_this_step(self) -> bool:
        """Whether the optimiser step under way will be logged (the Trainer logs once
        global_step, incremented after the step, is a multiple of logging_steps)."""
        if self.args.logging_strategy != "steps":
            return True
        step = self.state.global_step + 1
        return step % max(1, self.state.logging_steps) == 0 or (
            step == 1 and self.args.logging_first_step
        )

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the step metrics (means over the steps since the last log and over processes)."""
        if "loss" in logs and self._metrics:
            for key, vals in self._metrics.items():
                mean = torch.stack(vals).mean().reshape(1)
                logs[key] = float(self.accelerator.gather(mean).mean())
            self._metrics.clear()
        super().log(logs, start_time)
