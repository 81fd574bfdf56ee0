"""Knowledge distillation: fine-tune the compressed student on the teacher's softened outputs.

Loss (Hinton et al., 2015)::

    (1 - alpha) * CE(student, y) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))

The ``T^2`` factor keeps the soft term's gradients on the scale of the hard term as ``T`` grows.
The teacher's outputs are computed once per study (:func:`cache_teacher_outputs`) and reused by
every trial: running the teacher on every step cost 30-40 % of the fine-tune time on ``digits``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
import torch
import torch.nn.functional as F
from torch import nn

from ._base import ApplyContext, Config, Space, as_args, suggest_rounded

Batch = tuple[Any, torch.Tensor]

DEFAULT_STEPS = 200  # ~1-2 s on digits at batch 64: most of the recovery after pruning
DEFAULT_LR = 1e-3  # Adam's usual rate; fine-tuning from trained weights stays stable


def materialise(batches: Iterable[Batch], max_batches: int | None = None) -> list[Batch]:
    """One pass over ``batches`` kept in memory, so every trial sees the same data in the same order."""
    out: list[Batch] = []
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        inputs, targets = batch
        out.append((inputs, targets))
    return out


@torch.no_grad()
def cache_teacher_outputs(teacher: nn.Module, batches: Sequence[Batch]) -> list[torch.Tensor]:
    """The teacher's logits for each batch, computed once (eval mode, no grad).

    Example:
        >>> t = nn.Linear(3, 2)
        >>> [x.shape for x in cache_teacher_outputs(t, [(torch.randn(5, 3), torch.zeros(5))])]
        [torch.Size([5, 2])]
    """
    was_training = teacher.training
    teacher.eval()
    try:
        return [teacher(*as_args(inputs)).detach() for inputs, _ in batches]
    finally:
        teacher.train(was_training)


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor, temperature: float, alpha: float
) -> torch.Tensor:
    """The loss of the module docstring, averaged over the batch.

    Example:
        >>> s = torch.tensor([[2.0, 0.0]]); y = torch.tensor([0])
        >>> float(distillation_loss(s, s, y, 4.0, 1.0))  # student equals teacher: no soft loss
        0.0
    """
    hard = F.cross_entropy(student, targets) if alpha < 1.0 else student.new_zeros(())
    if alpha == 0.0:
        return hard
    soft = F.kl_div(
        F.log_softmax(student / temperature, dim=-1),
        F.log_softmax(teacher / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    return (1.0 - alpha) * hard + alpha * temperature**2 * soft


@dataclass(frozen=True)
class DistillationConfig(Config):
    """Chosen distillation values.

    Args:
        temperature: Softening temperature ``T`` (> 0).
        alpha: Weight of the soft (teacher) term, in [0, 1]; 0 is plain fine-tuning on labels.
        steps: Optimiser steps; 0 leaves the model as it is.
        lr: Adam learning rate.

    Example:
        >>> DistillationConfig(temperature=4.0, alpha=0.5, steps=0).apply_(nn.Linear(2, 2), ApplyContext(()))
        Linear(in_features=2, out_features=2, bias=True)
    """

    technique = "distillation"

    temperature: float = 4.0
    alpha: float = 0.5
    steps: int = DEFAULT_STEPS
    lr: float = DEFAULT_LR

    def __post_init__(self) -> None:
        if not isinstance(self.temperature, (int, float)) or self.temperature <= 0:
            raise ValueError(f"distillation temperature must be > 0, got {self.temperature!r}.")
        if not isinstance(self.alpha, (int, float)) or not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"distillation alpha must be in [0, 1], got {self.alpha!r}.")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"distillation steps must be an integer >= 0, got {self.steps!r}.")
        if not isinstance(self.lr, (int, float)) or self.lr <= 0:
            raise ValueError(f"distillation lr must be > 0, got {self.lr!r}.")

    def apply_(self, model: nn.Module, ctx: ApplyContext) -> nn.Module:
        """Fine-tune ``model`` for ``steps`` steps over ``ctx.train`` against ``ctx.teacher_logits``."""
        if self.steps == 0:
            return model
        return Distiller(self, model, ctx).run_to(self.steps)


class Distiller:
    """Fine-tuning that can pause: ``run_to(n)`` continues until ``n`` steps are done in all.

    Running to 50, then to 200, gives exactly the model that running to 200 at once does (one
    optimiser, one shuffling generator), so a trial can be scored at fidelity rungs on the way.

    Example:
        >>> cfg = DistillationConfig(alpha=0.0, steps=4)
        >>> data = [(torch.randn(8, 3), torch.randint(0, 2, (8,)))]
        >>> _ = torch.manual_seed(0); a = Distiller(cfg, nn.Linear(3, 2), ApplyContext((), train=data)).run_to(4)
        >>> _ = torch.manual_seed(0); d = Distiller(cfg, nn.Linear(3, 2), ApplyContext((), train=data))
        >>> b = d.run_to(1); b = d.run_to(4)
        >>> torch.equal(a.weight, b.weight), d.done
        (True, 4)
    """

    def __init__(self, config: DistillationConfig, model: nn.Module, ctx: ApplyContext) -> None:
        if not ctx.train:
            raise ValueError("distillation needs training batches (ApplyContext.train is empty).")
        if config.alpha > 0 and (ctx.teacher_logits is None or len(ctx.teacher_logits) != len(ctx.train)):
            raise ValueError(
                "distillation with alpha > 0 needs the teacher's outputs for every training batch; "
                "compute them once with cache_teacher_outputs(teacher, train)."
            )
        self.config = config
        self.model = model
        self.ctx = ctx
        self.done = 0
        self._gen = torch.Generator().manual_seed(ctx.seed or 0)
        self._opt = torch.optim.Adam(model.parameters(), lr=config.lr)
        self._order: list[int] = []

    def run_to(self, steps: int) -> nn.Module:
        """Fine-tune until ``steps`` steps are done in all (at most the config's ``steps``); eval mode after."""
        cfg, ctx, model = self.config, self.ctx, self.model
        model.train()
        while self.done < min(steps, cfg.steps):
            if not self._order:  # a fresh shuffled pass over the cached batches
                self._order = torch.randperm(len(ctx.train), generator=self._gen).tolist()
            i = self._order.pop()
            inputs, targets = ctx.train[i]
            teacher = ctx.teacher_logits[i] if ctx.teacher_logits is not None else None
            out = model(*as_args(inputs))
            loss = distillation_loss(
                out, teacher if teacher is not None else out.detach(), targets, cfg.temperature, cfg.alpha
            )
            self._opt.zero_grad(set_to_none=True)
            loss.backward()
            self._opt.step()
            self.done += 1
        model.eval()
        return model


@dataclass(frozen=True)
class DistillationSpace(Space):
    """Ranges of the distillation knobs (from the spec's ``[space.distillation]``).

    Example:
        >>> s = DistillationSpace(temperature=(1.0, 8.0), alpha=(0.0, 1.0), steps=100)
        >>> s.sample(optuna.trial.FixedTrial({"distillation.temperature": 2.0, "distillation.alpha": 0.5}))
        DistillationConfig(temperature=2.0, alpha=0.5, steps=100, lr=0.001)
    """

    temperature: tuple[float, float] = (1.0, 8.0)  # T=1 is plain softmax; above ~8 targets go flat
    alpha: tuple[float, float] = (0.0, 1.0)
    steps: int = DEFAULT_STEPS  # see DEFAULT_STEPS for why
    lr: float = DEFAULT_LR  # see DEFAULT_LR for why

    def __post_init__(self) -> None:
        DistillationConfig(self.temperature[0], self.alpha[0], self.steps, self.lr)  # validates
        DistillationConfig(self.temperature[1], self.alpha[1], self.steps, self.lr)
        for name, (lo, hi) in (("temperature", self.temperature), ("alpha", self.alpha)):
            if lo > hi:
                raise ValueError(f"distillation {name} range must be [low, high] with low <= high, got {[lo, hi]}.")

    def sample(self, trial: optuna.trial.BaseTrial) -> DistillationConfig:
        return DistillationConfig(
            # rounded so that near-identical suggestions are one recipe, trained once (duplicates reuse it):
            # 0.1 in T and 0.01 in alpha change the soft targets by far less than run-to-run noise
            temperature=suggest_rounded(trial, "distillation.temperature", self.temperature, decimals=1),
            alpha=suggest_rounded(trial, "distillation.alpha", self.alpha, decimals=2),
            steps=self.steps,
            lr=self.lr,
        )

    def identity(self) -> DistillationConfig:
        # steps=0: nothing is fine-tuned; T and alpha are the range's low ends so the baseline's
        # recorded parameters lie in the space (they have no effect without steps)
        return DistillationConfig(temperature=self.temperature[0], alpha=self.alpha[0], steps=0, lr=self.lr)
