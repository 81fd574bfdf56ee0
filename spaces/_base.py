"""The contract of a compression technique: a frozen config that applies, a space that samples it.

After torchao (``quantize_(model, Int8WeightOnlyConfig())``): a :class:`Config` is a frozen
dataclass of chosen values with one verb, :meth:`Config.apply_`, that transforms a model in place
and returns it; it round-trips through JSON with a version. After Optuna's trial API: a
:class:`Space` holds the ranges from the spec and turns a trial's suggestions into a config;
``sample`` takes any ``optuna.trial.BaseTrial``, so ``FixedTrial`` reproduces a config by hand.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import optuna
import torch
from torch import nn
from torch.utils.benchmark.utils.common import set_torch_threads


def as_args(inputs: Any) -> tuple[Any, ...]:
    """Inputs of a batch as positional arguments: a tensor becomes a 1-tuple, a tuple stays."""
    return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)


@dataclass(frozen=True)
class ApplyContext:
    """What a technique may need besides the model.

    Args:
        example_inputs: Inputs of one forward pass (for tracing the dependency graph).
        train: Training ``(inputs, targets)`` batches, materialised (BatchNorm recalibration,
            activation calibration, fine-tuning).
        teacher_logits: The teacher's outputs for each batch of ``train``, computed once per
            study (see :func:`tradeoff.spaces.distillation.cache_teacher_outputs`).
        seed: Seed of everything random in the transformation.
        threads: Intra-op threads of the target (the deployable form is compiled for them).
        backend: How int8 executes on the target (see :mod:`tradeoff.spaces.deploy`).
    """

    example_inputs: tuple[Any, ...]
    train: Sequence[tuple[Any, torch.Tensor]] = ()
    teacher_logits: Sequence[torch.Tensor] | None = None
    seed: int | None = None
    threads: int = 1  # latency is measured at one thread by default (quietest on small machines)
    backend: str = "auto"


def suggest_rounded(trial: optuna.trial.BaseTrial, name: str, bounds: tuple[float, float], *, decimals: int) -> float:
    """Ask ``trial`` for a float in ``bounds`` and round it to ``decimals`` (kept inside the bounds).

    The trial's parameter keeps the sampler's exact value; the config applies the rounded one, so
    suggestions that differ only below the rounding build one and the same recipe.
    A range of one value asks nothing and returns it.

    Example:
        >>> suggest_rounded(optuna.trial.FixedTrial({"x": 0.12345}), "x", (0.0, 0.8), decimals=2)
        0.12
    """
    lo, hi = bounds
    if hi <= lo:
        return lo
    return min(max(round(trial.suggest_float(name, lo, hi), decimals), lo), hi)


def torch_threads(n: int) -> AbstractContextManager[None]:
    """Run the block at ``n`` intra-op threads, then restore the count.

    A trial runs whole at the target's thread count, and an export rebuilds its model at the same
    count: the order of floating-point sums, and with it the fine-tuned weights, depend on it.

    Example:
        >>> with torch_threads(1):
        ...     torch.get_num_threads()
        1
    """
    return set_torch_threads(n)  # torch's own: sets the count, restores the previous one on exit


class Config(abc.ABC):
    """A frozen dataclass of chosen values for one technique. Subclasses are ``@dataclass(frozen=True)``."""

    technique: ClassVar[str]
    version: ClassVar[int] = 1

    @abc.abstractmethod
    def apply_(self, model: nn.Module, ctx: ApplyContext) -> nn.Module:
        """Transform ``model`` in place and return it (possibly a new module)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values with the config's version.

        Example:
            >>> from tradeoff.spaces import PruningConfig
            >>> d = PruningConfig(ratio=0.5).to_dict()
            >>> d["version"], d["ratio"], d["kind"], d["groups"]
            (1, 0.5, 'structured', {})
        """
        return {"version": self.version, **dataclasses.asdict(self)}  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Rebuild a config written by :meth:`to_dict`; a different version is an error."""
        data = dict(data)
        version = data.pop("version", None)
        if version != cls.version:
            raise ValueError(
                f"{cls.__name__} version {version!r} cannot be read by this tradeoff, which reads "
                f"version {cls.version}; re-export the config with a matching tradeoff."
            )
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; expected {sorted(names)}.")
        return cls(**data)


class _Recorder:
    """Stands in for a trial to learn which knobs ``sample`` asks for, and their distributions."""

    def __init__(self) -> None:
        self.distributions: dict[str, optuna.distributions.BaseDistribution] = {}

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        self.distributions[name] = optuna.distributions.FloatDistribution(low, high, step=step, log=log)
        return low

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        self.distributions[name] = optuna.distributions.IntDistribution(low, high, step=step, log=log)
        return low

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        self.distributions[name] = optuna.distributions.CategoricalDistribution(list(choices))
        return choices[0]


class Space(abc.ABC):
    """Ranges for one technique's knobs and how a trial samples them.

    Parameters are named ``<technique>.<config field>`` (``pruning.ratio``), so a config's values
    and a trial's parameters map onto each other.
    """

    @abc.abstractmethod
    def sample(self, trial: optuna.trial.BaseTrial) -> Config:
        """Ask ``trial`` for every knob and return the chosen config."""

    @abc.abstractmethod
    def identity(self) -> Config:
        """The config that leaves the model as it is (the uncompressed baseline)."""

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """The knobs :meth:`sample` asks a trial for, with their distributions."""
        recorder = _Recorder()
        self.sample(recorder)  # type: ignore[arg-type]
        return recorder.distributions

    def identity_params(self) -> dict[str, Any]:
        """The identity config as trial parameters: each knob whose identity value lies in the space.

        Recorded on the baseline trial so that samplers which model the intersection of all trials'
        parameters (GP, CMA-ES) keep every knob the baseline can describe.
        """
        values = self.identity().to_dict()
        out: dict[str, Any] = {}
        for name, dist in self.distributions().items():
            # "pruning.ratio@stage1" is a group's ratio: its identity value is the field's own
            value = values.get(name.split(".", 1)[1].split("@", 1)[0])
            try:
                inside = dist._contains(dist.to_internal_repr(value))
            except (ValueError, TypeError):
                inside = False
            if inside:
                out[name] = value
        return out
