"""The study spec: one TOML file that says what to search, how to score it and where to keep it.

Validated with pydantic; every error names the field (``space.pruning.ratio``), the value it got
and what is allowed. See ``studies/demo.toml`` for a complete, commented example. The tables
themselves (``[study]``, ``[space.pruning]``, ...) are defined in ``studies/sections.py``.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError, ValidationInfo, field_validator
from torch import nn

from tradeoff.objectives import Constraints, Weights
from tradeoff.spaces import (
    DistillationSpace,
    PruningSpace,
    QuantizationSpace,
    RecipeSpace,
    auto_groups,
    unmatched_keys,
    weight_layer_names,
)

from .sections import (
    SAMPLER_NAMES,
    ConstraintsSection,
    ObjectivesSection,
    SearchSection,
    SpaceSection,
    StudySection,
    TargetSection,
    TaskSection,
    _Strict,
    recovery_lr_of,
)
from .tasks import TaskError, check_task_arguments

__all__ = [
    "SAMPLER_NAMES",
    "SearchSection",
    "Spec",
    "SpecError",
    "demo_spec",
    "load_spec",
    "parse_spec",
    "parse_stored_spec",
]


class SpecError(ValueError):
    """The spec is invalid; the message lists every problem, one per line."""


class Spec(_Strict):
    """A whole study spec (the TOML file's tables)."""

    study: StudySection
    task: TaskSection
    target: TargetSection = TargetSection()
    space: SpaceSection = SpaceSection()
    objectives: ObjectivesSection = ObjectivesSection()
    constraints: ConstraintsSection = ConstraintsSection()
    search: SearchSection = SearchSection()

    @field_validator("task")
    @classmethod
    def _task_exists(cls, task: TaskSection, info: ValidationInfo) -> TaskSection:
        if (info.context or {}).get("stored"):  # a stored study is read without its task's code (issue 23)
            return task
        try:
            check_task_arguments(task.name, task.kwargs)
        except TaskError as exc:
            raise ValueError(str(exc)) from None
        return task

    def layer_groups(self, model: nn.Module | None) -> dict[str, str]:
        """The spec's layer groups as name -> comma-separated patterns, checked against ``model``.

        Raises:
            SpecError: a group selects no layer of the model, or groups are ``"auto"`` with no model.
        """
        s = self.space
        if not (s.pruning.per_group or s.quantization.per_group):
            return {}
        if s.groups == "auto":
            if model is None:
                raise SpecError("space.groups = 'auto' needs the task's model to find its groups.")
            return auto_groups(model)
        groups = dict(s.groups)
        if model is not None:
            names = weight_layer_names(model)
            bad = [n for n, key in groups.items() if unmatched_keys([key], names)]
            if bad:
                raise SpecError(
                    f"space.groups: {', '.join(repr(b) for b in bad)} select(s) no conv or linear layer of the "
                    f"task's model; its layers are {names[:12]}{' ...' if len(names) > 12 else ''}. "
                    "Fix the pattern(s) (fnmatch globs over module names)."
                )
        return groups

    def recipe_space(self, model: nn.Module | None = None) -> RecipeSpace:
        """The search space; ``model`` (the task's) resolves ``space.groups`` when per-group knobs are on."""
        s = self.space
        groups = self.layer_groups(model)
        return RecipeSpace(
            pruning=PruningSpace(
                ratio=s.pruning.ratio,
                kind=tuple(s.pruning.kind),
                importance=tuple(s.pruning.importance),
                scope=s.pruning.scope,
                groups=groups if s.pruning.per_group else {},
                protect=tuple(s.pruning.protect),
            ),
            quantization=QuantizationSpace(
                weight_bits=tuple(s.quantization.weight_bits),
                activation_bits=tuple(s.quantization.activation_bits),
                groups=groups if s.quantization.per_group else {},
                float16=s.quantization.float16,
            ),
            distillation=DistillationSpace(
                temperature=s.distillation.temperature,
                alpha=s.distillation.alpha,
                steps=s.distillation.steps,
                lr=s.distillation.lr,
                batchnorm=s.distillation.batchnorm,
                schedule=s.distillation.schedule,
                recovery_lr=recovery_lr_of(s.distillation),
            ),
        )

    def objective_names(self) -> tuple[str, ...]:
        """The study's objective names: accuracy, the chosen complexity figure, latency, energy."""
        return self.objectives.names()

    def weights(self) -> Weights:
        return self.objectives.weights()

    def constraints_(self) -> Constraints:
        return Constraints(**self.constraints.model_dump())

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _field_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _format_errors(exc: ValidationError, source: str) -> str:
    n = exc.error_count()
    lines = [f"{source}: invalid spec ({n} problem{'s' if n > 1 else ''}):"]
    for err in exc.errors():
        where, kind = _field_path(err["loc"]), err["type"]
        if kind == "extra_forbidden":
            lines.append(
                f"  {where}: unknown field; remove it or check its spelling (README.md, 'The spec', lists every field)."
            )
        elif kind == "missing":
            lines.append(f"  {where}: required field is missing.")
        elif kind == "value_error":  # our own validators already name the value
            lines.append(f"  {where}: {err['msg'].removeprefix('Value error, ').rstrip('.')}.")
        else:
            lines.append(f"  {where}: {err['msg'].rstrip('.')}; got {err.get('input')!r}.")
    return "\n".join(lines)


def parse_spec(data: dict[str, Any], source: str = "spec", *, stored: bool = False) -> Spec:
    """Validate a spec given as a dict (the parsed TOML); raise :class:`SpecError` listing every problem.

    ``stored=True`` (a spec read back from a study or an exported config) skips resolving the task.

    Example:
        >>> parse_spec({"study": {"name": "s"}, "task": {"name": "digits"}}).study.n_trials
        30
    """
    try:
        return Spec.model_validate(data, context={"stored": stored})
    except ValidationError as exc:
        raise SpecError(_format_errors(exc, source)) from None


def parse_stored_spec(data: dict[str, Any], source: str = "stored spec", *, resolve_task: bool = False) -> Spec:
    """A spec a study or an exported config stored (``Spec.to_dict()``, every field written out).

    The task is not resolved: reading a study (``ls``, ``show``, ``pareto``, the dashboard) needs no
    user code; only ``export``, ``apply`` and ``tradeoff worker``, which build the model, load the task
    (``resolve_task=True`` checks the task reference as a spec file's is checked).

    A stored spec without ``search.select_on`` was written before the setting existed, when trials
    judged fine-tuning on held-back training batches and reported on the whole validation set: it
    reads as ``select_on = "held_back"``, not as today's default, so that a rebuilt trial sees the
    data its trial saw. One without ``search.balanced_start`` was created when TPE's start-up drew its
    categories independently: it reads as ``balanced_start = false``.

    Example:
        >>> parse_stored_spec({"study": {"name": "s"}, "task": {"name": "digits"}, "search": {}}).search.select_on
        'held_back'
    """
    search = data.get("search")
    if isinstance(search, dict) and "select_on" not in search:
        data = {**data, "search": {**search, "select_on": "held_back"}}
    search = data.get("search")
    if isinstance(search, dict) and "balanced_start" not in search:  # plain TPE's start-up, as it ran then
        data = {**data, "search": {**search, "balanced_start": False}}
    return parse_spec(data, source, stored=not resolve_task)


def load_spec(path: str | Path) -> Spec:
    """Read and validate a TOML spec file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read spec {str(path)!r}: {exc.strerror}.") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}.") from None
    return parse_spec(data, str(path))


def demo_spec_text() -> str:
    """The demo spec shipped with tradeoff (``tradeoff demo`` runs it)."""
    return resources.files("tradeoff.studies").joinpath("demo.toml").read_text(encoding="utf-8")


def demo_spec() -> Spec:
    return parse_spec(tomllib.loads(demo_spec_text()), "demo.toml")
