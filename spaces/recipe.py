"""A Recipe: one chosen config per technique, in the order they apply, and how a trial samples it.

Order: prune (channels removed) -> attach quantization (fake-quant, calibrated) -> distil
(quantization-aware fine-tuning) -> bake the quantized weights. The result is the *scored* model
(accuracy and size at the chosen widths) and its *deployable* form (what runs and is timed).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import optuna
import torch
from torch import nn

from ._base import ApplyContext
from .deploy import Deployable
from .distillation import DistillationConfig, DistillationSpace, Distiller
from .pruning import PruningConfig, PruningSpace
from .quantization import QuantizationConfig, QuantizationSpace, strip_activation_quant

RECIPE_FORMAT = "tradeoff.recipe/1"


@dataclass(frozen=True)
class Recipe:
    """The configs of one trial. The default recipe is the identity (the uncompressed baseline).

    Example:
        >>> r = Recipe(pruning=PruningConfig(ratio=0.5), quantization=QuantizationConfig(weight_bits=8))
        >>> Recipe.from_json(r.to_json()) == r
        True
    """

    format: ClassVar[str] = RECIPE_FORMAT

    pruning: PruningConfig = field(default_factory=PruningConfig)
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    distillation: DistillationConfig = field(default_factory=lambda: DistillationConfig(steps=0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "pruning": self.pruning.to_dict(),
            "quantization": self.quantization.to_dict(),
            "distillation": self.distillation.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        if data.get("format") != RECIPE_FORMAT:
            raise ValueError(
                f"not a recipe this tradeoff reads: format {data.get('format')!r}, expected {RECIPE_FORMAT!r}."
            )
        missing = [k for k in ("pruning", "quantization", "distillation") if k not in data]
        if missing:
            raise ValueError(f"recipe is missing {missing}.")
        return cls(
            pruning=PruningConfig.from_dict(data["pruning"]),
            quantization=QuantizationConfig.from_dict(data["quantization"]),
            distillation=DistillationConfig.from_dict(data["distillation"]),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Recipe:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class RecipeSpace:
    """The spaces of all techniques; ``sample`` draws one Recipe from a trial.

    Example:
        >>> space = RecipeSpace().resolved(1e-3)  # a rate of "auto" is derived per study (find_lr)
        >>> space.sample(optuna.trial.FixedTrial({
        ...     "pruning.ratio": 0.25, "quantization.weight_bits": 8, "quantization.activation_bits": 8,
        ...     "distillation.temperature": 2.0, "distillation.alpha": 0.5})).pruning.ratio
        0.25
    """

    pruning: PruningSpace = field(default_factory=PruningSpace)
    quantization: QuantizationSpace = field(default_factory=QuantizationSpace)
    distillation: DistillationSpace = field(default_factory=DistillationSpace)

    def sample(self, trial: optuna.trial.BaseTrial) -> Recipe:
        return Recipe(
            pruning=self.pruning.sample(trial),
            quantization=self.quantization.sample(trial),
            distillation=self.distillation.sample(trial),
        )

    def resolved(self, lr: float) -> RecipeSpace:
        """This space with a distillation rate of ``"auto"`` replaced by the rate the study derived."""
        return replace(self, distillation=self.distillation.resolved(lr))

    def identity(self) -> Recipe:
        return Recipe(self.pruning.identity(), self.quantization.identity(), self.distillation.identity())

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """Every knob a trial is asked for, with its distribution."""
        return {
            **self.pruning.distributions(),
            **self.quantization.distributions(),
            **self.distillation.distributions(),
        }

    def identity_params(self) -> dict[str, Any]:
        """The identity recipe as trial parameters, for the knobs whose identity value is in the space."""
        return {
            **self.pruning.identity_params(),
            **self.quantization.identity_params(),
            **self.distillation.identity_params(),
        }


@dataclass
class Compressed:
    """The outcome of applying a recipe."""

    scored: nn.Module  # accuracy and size are of this model (chosen widths, fake-quant activations)
    deployable: Deployable  # the form that runs on the target: what latency times (module, form, backend, note)
    weight_bits: dict[str, int]
    activation_bits: int
    seconds: dict[str, float]  # wall time per phase: prune, quantize, distil, deploy


@contextmanager
def _timed(seconds: dict[str, float], phase: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[phase] = seconds.get(phase, 0.0) + time.perf_counter() - start


class Compression:
    """A recipe being applied to a copy of a model, one stage at a time.

    Construction prunes and attaches quantization (fake-quant, calibrated); :meth:`deployable`
    builds the form that executes from the model as it stands (its speed, size and energy do not
    depend on fine-tuned weight values, so a trial can measure them before fine-tuning);
    :meth:`distil_to` fine-tunes up to a number of steps, resumably; :meth:`finish` bakes the
    quantized weights. :func:`compress` runs all stages in one go and gives the same model.

    Example:
        >>> m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
        >>> c = Compression(Recipe(pruning=PruningConfig(ratio=0.5)), m, ApplyContext((torch.randn(2, 8),)))
        >>> c.student[0].out_features, m[0].out_features
        (8, 16)
    """

    def __init__(self, recipe: Recipe, model: nn.Module, ctx: ApplyContext) -> None:
        if ctx.seed is not None:
            torch.manual_seed(ctx.seed)
        self.recipe = recipe
        self.ctx = ctx
        self.seconds: dict[str, float] = {}
        student = copy.deepcopy(model)
        with _timed(self.seconds, "prune"):
            student = recipe.pruning.apply_(student, ctx)
        with _timed(self.seconds, "quantize"):
            student = recipe.quantization.apply_(student, ctx)
        self.student = student
        self._distiller: Distiller | None = None

    @property
    def steps_done(self) -> int:
        return 0 if self._distiller is None else self._distiller.done

    @property
    def losses(self) -> list[float]:
        """The training loss of each fine-tuning step taken so far."""
        return [] if self._distiller is None else list(self._distiller.losses)

    @property
    def tuning(self) -> tuple[DistillationConfig, float | None]:
        """The distillation config the student is tuned with (its ``"auto"`` parts settled once fine-tuning
        began) and the student's agreement with the teacher that settled them (``None``: not measured)."""
        if self._distiller is None:
            return self.recipe.distillation, None
        return self._distiller.config, self._distiller.agreement

    def snapshot(self) -> tuple[nn.Module, Deployable]:
        """The student as it stands, baked (a copy), and its deployable form; the student is untouched.

        Global random state is saved and restored around it, so taking a snapshot mid-way changes
        nothing in the fine-tuning that follows.
        """
        with _timed(self.seconds, "deploy"), torch.random.fork_rng(devices=[]):
            baked = self.recipe.quantization.bake_(copy.deepcopy(self.student)).eval()
            return baked, self.recipe.quantization.deploy(baked, self.ctx)

    def deploy(self, scored: nn.Module) -> Deployable:
        """The deployable form of a baked model (the finished student), built as :meth:`snapshot` builds it."""
        with _timed(self.seconds, "deploy"), torch.random.fork_rng(devices=[]):
            return self.recipe.quantization.deploy(scored, self.ctx)

    def distil_to(self, steps: int) -> nn.Module:
        """Fine-tune until ``steps`` of the recipe's distillation steps are done (capped at all of them)."""
        cfg = self.recipe.distillation
        with _timed(self.seconds, "distil"):
            if cfg.steps > 0 and steps > self.steps_done:
                if self._distiller is None:
                    self._distiller = Distiller(cfg, self.student, self.ctx)
                self._distiller.run_to(steps)
        return self.student

    def finish(self) -> nn.Module:
        """Fine-tune what is left, bake the quantized weights and return the scored model (eval mode)."""
        self.distil_to(self.recipe.distillation.steps)
        with _timed(self.seconds, "quantize"):
            self.student = self.recipe.quantization.bake_(self.student).eval()
        return self.student


def compress(
    recipe: Recipe,
    model: nn.Module,
    ctx: ApplyContext,
    *,
    deploy: bool = True,
) -> Compressed:
    """Apply ``recipe`` to a deep copy of ``model`` (the original is never touched).

    Args:
        recipe: The configs to apply.
        model: The trained fp32 model (the teacher).
        ctx: Data and seed; ``ctx.teacher_logits`` must hold the cached teacher outputs when the
            recipe distils with ``alpha > 0``.
        deploy: Build the deployable form (int8 kernels, compiled) for timing; ``False`` gives the
            fp32 form only (export and apply need no timing).

    Example:
        >>> m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
        >>> c = compress(Recipe(pruning=PruningConfig(ratio=0.5)), m, ApplyContext((torch.randn(2, 8),)))
        >>> c.scored[0].out_features, m[0].out_features
        (8, 16)
    """
    stages = Compression(recipe, model, ctx)
    student = stages.finish()
    with _timed(stages.seconds, "deploy"):
        if deploy:
            deployed = recipe.quantization.deploy(student, ctx)
        else:
            deployed = Deployable(strip_activation_quant(student), "fp32", "eager", 0.0, "deployable form not built")
    return Compressed(
        scored=student,
        deployable=deployed,
        weight_bits=recipe.quantization.weight_bits_by_layer(student),
        activation_bits=recipe.quantization.activation_bits,
        seconds=stages.seconds,
    )
