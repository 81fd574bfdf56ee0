"""Knowledge distillation: fine-tune the compressed student on the teacher's softened outputs.

Loss (Hinton et al., 2015)::

    (1 - alpha) * CE(student, y) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))

The ``T^2`` factor keeps the soft term's gradients on the scale of the hard term as ``T`` grows.
The teacher's outputs are computed once per study (:func:`cache_teacher_outputs`) and reused by
every trial: running the teacher on every step cost 30-40 % of the fine-tune time on ``digits``.

Fine-tuning starts from trained weights and runs a few hundred steps at most, so it must not undo
what the teacher's own training did (issue 26: Adam at 1e-3 with BatchNorm in train mode took 25-30
points off the int8 forms of a pretrained depthwise-separable ImageNet network within five steps).
What protects a trained network and what lets a badly damaged one recover are opposites, so by
default (``batchnorm = "auto"``, ``schedule = "auto"``) each student gets the regime that suits it,
decided before its first step from its top-1 agreement with the teacher's cached outputs on the
first :data:`NEAR_PROBE_BATCHES` training batches (:func:`teacher_agreement`,
:meth:`DistillationConfig.settled`; no validation data is used; without teacher outputs, far):

* **near** (agreement at least :data:`NEAR_TEACHER`: int8 forms, light pruning): short fine-tuning
  from trained weights, as issue 26 asks: BatchNorm frozen, the rate derived for the network
  (``lr``, by default ``"auto"``), warm-up then cosine decay;
* **far** (heavy pruning, low bit-widths): recovery: BatchNorm updated with the moving weights,
  Adam at ``recovery_lr`` (:data:`DEFAULT_LR`), one rate throughout, the fine-tuning tradeoff
  always did. Frozen statistics go stale once pruned weights move far, and a rate derived to
  protect the teacher slows the recovery of a student that has little left to protect (both
  measured: docs/BENCHMARKS.md, issue 26).

Each part can be fixed in the spec instead. The parts:

* **BatchNorm frozen** (``batchnorm="frozen"``): its statistics were recalibrated after pruning
  (:func:`tradeoff.spaces.pruning.recalibrate_batchnorm`) and stay fixed while the weights tune, so
  a few small, augmented batches cannot drag them away from what the network was trained with.
* **The learning rate derived, not fixed** (``lr = "auto"``): a learning-rate range test on a copy of
  the teacher (:func:`tradeoff.spaces.lr_range.find_lr`, whose module says the rule and its margins).
* **Warm-up, then cosine decay** (``schedule="warmup_cosine"``): the rate rises linearly over the
  first :data:`WARMUP_FRACTION` of the steps and decays to zero along a cosine, so the first steps,
  taken while the optimiser's moments are still unknown, are small.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import optuna
import torch
import torch.nn.functional as F
from torch import nn

from ._base import ApplyContext, Config, Space, as_args, suggest_rounded

Batch = tuple[Any, torch.Tensor]

DEFAULT_STEPS = 200  # ~1-2 s on digits at batch 64: most of the recovery after pruning
DEFAULT_LR = 1e-3  # Adam's usual rate; right for teachers trained like the built-ins (not for every network)
AUTO = "auto"  # decided from the data: the rate per study (find_lr), the regime per student (settle)
LR_AUTO = AUTO  # the space's default rate: derived per study by find_lr
BATCHNORMS = ("auto", "frozen", "train")  # auto: frozen near the teacher, train far from it (settle)
SCHEDULES = ("auto", "warmup_cosine", "constant")  # auto: warm-up + cosine near the teacher, constant far
NEAR_TEACHER = 0.8  # top-1 agreement with the teacher that counts as "near": four answers in five kept.
# Measured students fall on either side with room: int8 forms 0.99+, 10 % pruned 0.90-0.99 (helped by the
# near regime), 50 % pruned 0.26-0.58 and 75 % pruned 0.16-0.33 (helped by the far one; docs/BENCHMARKS.md)
NEAR_PROBE_BATCHES = 4  # training batches the agreement is measured on: a few hundred samples, ~ms a batch
WARMUP_FRACTION = 0.1  # the usual share of warm-up steps: Adam's moment estimates settle within ~10 steps


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
        lr: Adam's peak learning rate near the teacher (a study derives it with :func:`find_lr` unless
            the spec fixes it); with fixed ``batchnorm`` and ``schedule``, the rate of every student.
        batchnorm: ``"auto"`` (the regime's: module docstring), ``"frozen"`` (statistics fixed while
            tuning) or ``"train"`` (updated per batch).
        schedule: ``"auto"``, ``"warmup_cosine"`` (linear warm-up, cosine decay to 0) or ``"constant"``.
        recovery_lr: The rate of a student far from the teacher, when ``batchnorm`` or ``schedule``
            is ``"auto"``.

    Version 1 recipes (before BatchNorm freezing and the schedule existed) read back with
    ``batchnorm="train"`` and ``schedule="constant"``, version 2 ones (before ``"auto"``) with the
    modes they name, so they rebuild the model they built then.

    Example:
        >>> DistillationConfig(temperature=4.0, alpha=0.5, steps=0).apply_(nn.Linear(2, 2), ApplyContext(()))
        Linear(in_features=2, out_features=2, bias=True)
    """

    technique = "distillation"
    version = 3  # 2: batchnorm and schedule; 3: "auto" modes (near or far from the teacher) and recovery_lr

    temperature: float = 4.0  # Hinton et al.'s usual pick
    alpha: float = 0.5  # half labels, half teacher: robust when either is noisy
    steps: int = DEFAULT_STEPS
    lr: float = DEFAULT_LR
    # each student gets the regime that suits it: protect a network near the teacher, recover one far from it
    batchnorm: Literal["auto", "frozen", "train"] = "auto"
    schedule: Literal["auto", "warmup_cosine", "constant"] = "auto"
    recovery_lr: float = DEFAULT_LR  # far from the teacher: Adam's usual rate recovered pruned students best

    def __post_init__(self) -> None:
        if not isinstance(self.temperature, (int, float)) or self.temperature <= 0:
            raise ValueError(f"distillation temperature must be > 0, got {self.temperature!r}.")
        if not isinstance(self.alpha, (int, float)) or not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"distillation alpha must be in [0, 1], got {self.alpha!r}.")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"distillation steps must be an integer >= 0, got {self.steps!r}.")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or self.lr <= 0:
            raise ValueError(f"distillation lr must be a number > 0, got {self.lr!r}.")
        if (
            isinstance(self.recovery_lr, bool)
            or not isinstance(self.recovery_lr, (int, float))
            or self.recovery_lr <= 0
        ):
            raise ValueError(f"distillation recovery_lr must be a number > 0, got {self.recovery_lr!r}.")
        if self.batchnorm not in BATCHNORMS:
            raise ValueError(f"distillation batchnorm must be one of {list(BATCHNORMS)}, got {self.batchnorm!r}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"distillation schedule must be one of {list(SCHEDULES)}, got {self.schedule!r}.")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DistillationConfig:
        """Rebuild a config written by :meth:`to_dict`; version 1 gets the behaviour it had (class docstring)."""
        if data.get("version") == 1:
            data = {**data, "version": cls.version, "batchnorm": "train", "schedule": "constant"}
        elif data.get("version") == 2:
            data = {**data, "version": cls.version}  # v2 named its modes (never "auto"); recovery_lr is unused then
        return super().from_dict(data)

    @property
    def adaptive(self) -> bool:
        """Whether the regime is decided per student (``batchnorm`` or ``schedule`` is ``"auto"``)."""
        return AUTO in (self.batchnorm, self.schedule)

    def settled(self, near: bool) -> DistillationConfig:
        """This config with its ``"auto"`` parts decided for a student ``near`` the teacher or far from it.

        Example:
            >>> cfg = DistillationConfig(lr=3e-4)
            >>> n, f = cfg.settled(near=True), cfg.settled(near=False)
            >>> (n.batchnorm, n.schedule, n.lr), (f.batchnorm, f.schedule, f.lr)
            (('frozen', 'warmup_cosine', 0.0003), ('train', 'constant', 0.001))
        """
        if not self.adaptive:
            return self
        return replace(
            self,
            batchnorm=self.batchnorm if self.batchnorm != AUTO else ("frozen" if near else "train"),
            schedule=self.schedule if self.schedule != AUTO else ("warmup_cosine" if near else "constant"),
            lr=self.lr if near else self.recovery_lr,
        )

    def lr_at(self, step: int) -> float:
        """The learning rate of step ``step`` (0-based) of this config's schedule.

        Example:
            >>> cfg = DistillationConfig(steps=100, lr=1.0, schedule="warmup_cosine")
            >>> [round(cfg.lr_at(s), 3) for s in (0, 9, 10, 55, 99)]
            [0.1, 1.0, 1.0, 0.5, 0.0]
        """
        if self.schedule != "warmup_cosine":  # constant (and "auto" before it is settled)
            return self.lr
        warm = max(1, round(WARMUP_FRACTION * self.steps))
        if step < warm:
            return self.lr * (step + 1) / warm
        rest = max(1, self.steps - warm)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * min(step - warm, rest) / rest))

    def apply_(self, model: nn.Module, ctx: ApplyContext) -> nn.Module:
        """Fine-tune ``model`` for ``steps`` steps over ``ctx.train`` against ``ctx.teacher_logits``."""
        if self.steps == 0:
            return model
        return Distiller(self, model, ctx).run_to(self.steps)


@torch.no_grad()
def teacher_agreement(model: nn.Module, ctx: ApplyContext, n_batches: int = NEAR_PROBE_BATCHES) -> float | None:
    """Top-1 agreement of ``model`` (eval mode) with the teacher's cached outputs on the first training
    batches: how near the compressed student still is to the teacher (``None``: no teacher outputs).

    Example:
        >>> net = nn.Linear(3, 2); data = [(torch.randn(8, 3), torch.zeros(8, dtype=torch.long))]
        >>> teacher_agreement(net, ApplyContext((), train=data, teacher_logits=cache_teacher_outputs(net, data)))
        1.0
    """
    if not ctx.train or ctx.teacher_logits is None:
        return None
    was_training = model.training
    model.eval()
    same = total = 0
    for (inputs, _), teacher in list(zip(ctx.train, ctx.teacher_logits))[:n_batches]:
        same += int((model(*as_args(inputs)).argmax(-1) == teacher.argmax(-1)).sum())
        total += int(teacher.shape[0])
    model.train(was_training)
    return same / total if total else None


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
        self.agreement = teacher_agreement(model, ctx) if config.adaptive else None
        self.near = None if self.agreement is None else self.agreement >= NEAR_TEACHER
        self.config = config.settled(bool(self.near))  # the modes and rate this student is tuned with
        self.model = model
        self.ctx = ctx
        self.done = 0
        self.losses: list[float] = []  # the training loss of every step: why a trial went wrong, if it did
        self._gen = torch.Generator().manual_seed(ctx.seed or 0)
        self._opt = torch.optim.Adam(model.parameters(), lr=self.config.lr)
        self._order: list[int] = []

    def run_to(self, steps: int) -> nn.Module:
        """Fine-tune until ``steps`` steps are done in all (at most the config's ``steps``); eval mode after."""
        cfg, ctx, model = self.config, self.ctx, self.model
        tuning_mode(model, cfg.batchnorm)
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
            for group in self._opt.param_groups:
                group["lr"] = cfg.lr_at(self.done)
            self._opt.zero_grad(set_to_none=True)
            loss.backward()
            self._opt.step()
            self.losses.append(float(loss.detach()))
            self.done += 1
        model.eval()
        return model


def tuning_mode(model: nn.Module, batchnorm: str = "frozen") -> nn.Module:
    """``model`` in training mode for fine-tuning; with ``batchnorm="frozen"`` its BatchNorm layers stay
    in eval mode (their running statistics are used and never updated).

    Example:
        >>> m = tuning_mode(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)))
        >>> m.training, m[1].training
        (True, False)
    """
    model.train()
    if batchnorm == "frozen":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    return model


@dataclass(frozen=True)
class DistillationSpace(Space):
    """Ranges of the distillation knobs (from the spec's ``[space.distillation]``).

    ``lr`` is ``"auto"`` (the default: derived once per study by :func:`find_lr`, then set with
    :meth:`resolved`), a rate, or a ``(low, high)`` range, which makes it a knob (``distillation.lr``,
    log-uniform).

    Example:
        >>> s = DistillationSpace(temperature=(1.0, 8.0), alpha=(0.0, 1.0), steps=100, lr=1e-3)
        >>> s.sample(optuna.trial.FixedTrial({"distillation.temperature": 2.0, "distillation.alpha": 0.5}))
        DistillationConfig(temperature=2.0, alpha=0.5, steps=100, lr=0.001, batchnorm='auto', schedule='auto', recovery_lr=0.001)
        >>> DistillationSpace(lr="auto").resolved(3e-4).lr
        0.0003
    """

    temperature: tuple[float, float] = (1.0, 8.0)  # T=1 is plain softmax; above ~8 targets go flat
    alpha: tuple[float, float] = (0.0, 1.0)
    steps: int = DEFAULT_STEPS  # see DEFAULT_STEPS for why
    lr: float | str | tuple[float, float] = LR_AUTO  # derived per network (find_lr); or a rate, or a [low, high] knob
    batchnorm: str = AUTO  # see DistillationConfig
    schedule: str = AUTO  # see DistillationConfig
    recovery_lr: float = DEFAULT_LR  # see DistillationConfig

    def __post_init__(self) -> None:
        lr = self._some_lr()
        for i in (0, 1):
            DistillationConfig(
                self.temperature[i],
                self.alpha[i],
                self.steps,
                lr,
                self.batchnorm,
                self.schedule,
                self.recovery_lr,  # type: ignore[arg-type]
            )
        for name, (lo, hi) in (("temperature", self.temperature), ("alpha", self.alpha)):
            if lo > hi:
                raise ValueError(f"distillation {name} range must be [low, high] with low <= high, got {[lo, hi]}.")
        if isinstance(self.lr, tuple) and not 0 < self.lr[0] <= self.lr[1]:
            raise ValueError(f"distillation lr range must be [low, high] with 0 < low <= high, got {list(self.lr)}.")

    def _some_lr(self) -> float:
        """A concrete rate for validation and for configs that never tune (the identity)."""
        if self.lr == LR_AUTO:
            return DEFAULT_LR
        if isinstance(self.lr, str):
            raise ValueError(f"distillation lr must be a number, [low, high] or 'auto', got {self.lr!r}.")
        return float(self.lr[0]) if isinstance(self.lr, tuple) else self.lr

    def resolved(self, lr: float) -> DistillationSpace:
        """This space with ``lr = "auto"`` replaced by the rate a study derived (a fixed rate or range stays)."""
        return replace(self, lr=float(lr)) if self.lr == LR_AUTO else self

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        # the knobs do not depend on which rate "auto" will resolve to
        return super(DistillationSpace, self.resolved(DEFAULT_LR)).distributions()

    def sample(self, trial: optuna.trial.BaseTrial) -> DistillationConfig:
        if self.lr == LR_AUTO:
            raise ValueError(
                "distillation lr 'auto' is derived once per study (tradeoff.spaces.find_lr); sample from "
                "space.resolved(find_lr(...).lr), or give the spec a rate."
            )
        recovery_lr = self.recovery_lr
        if isinstance(self.lr, tuple):
            # two significant digits: rates closer than that tune alike, and duplicates reuse their result
            lr = float(f"{trial.suggest_float('distillation.lr', *self.lr, log=True):.2g}")
            recovery_lr = lr  # a knob is the rate of every student, near the teacher or far from it
        else:
            lr = float(self.lr)  # type: ignore[arg-type]
        return DistillationConfig(
            # rounded so that near-identical suggestions are one recipe, trained once (duplicates reuse it):
            # 0.1 in T and 0.01 in alpha change the soft targets by far less than run-to-run noise
            temperature=suggest_rounded(trial, "distillation.temperature", self.temperature, decimals=1),
            alpha=suggest_rounded(trial, "distillation.alpha", self.alpha, decimals=2),
            steps=self.steps,
            lr=lr,
            batchnorm=self.batchnorm,  # type: ignore[arg-type]
            schedule=self.schedule,  # type: ignore[arg-type]
            recovery_lr=recovery_lr,
        )

    def identity(self) -> DistillationConfig:
        # steps=0: nothing is fine-tuned; T and alpha are the range's low ends so the baseline's
        # recorded parameters lie in the space (they have no effect without steps)
        return DistillationConfig(
            temperature=self.temperature[0],
            alpha=self.alpha[0],
            steps=0,
            lr=self._some_lr(),
            batchnorm=self.batchnorm,  # type: ignore[arg-type]
            schedule=self.schedule,  # type: ignore[arg-type]
            recovery_lr=self.recovery_lr,
        )
