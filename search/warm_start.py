"""``[search] warm_start``: the configs a study tries first, right after the baseline.

Warm starts are enqueued (``study.enqueue_trial``) once, when the study is created, within the
trial budget; a knob a warm start leaves out is sampled as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from tradeoff.spaces import RecipeSpace
from tradeoff.studies.spec import Spec, SpecError

AUTO_WARM_STARTS: tuple[dict[str, Any], ...] = (  # what a practitioner tries first, where the space holds it,
    # cheapest and most often useful first (the order is the order they run in):
    # int8 weights with fp32 activations (weight-only: no int8 kernel or compile needed, ~no accuracy lost)
    # across the pruning range's quartiles, pruning being the one knob that moves size, latency and energy
    # together; it wins where int8 kernels do not (small models at batch 1, where quantize/dequantize
    # overhead outweighs the arithmetic)...
    {"pruning.ratio": 0.5, "quantization.weight_bits": 8, "quantization.activation_bits": 32},
    {"pruning.ratio": 0.75, "quantization.weight_bits": 8, "quantization.activation_bits": 32},
    {"pruning.ratio": 0.25, "quantization.weight_bits": 8, "quantization.activation_bits": 32},
    # ...then full int8 (fast where the target has int8 kernels and the model is big enough for them to pay;
    # each costs a compile), uniform and with half the channels pruned
    {"pruning.ratio": 0.0, "quantization.weight_bits": 8, "quantization.activation_bits": 8},
    {"pruning.ratio": 0.5, "quantization.weight_bits": 8, "quantization.activation_bits": 8},
)
WARM_DISTILLATION = {"distillation.temperature": 4.0, "distillation.alpha": 0.5}  # Hinton et al.'s usual pick


def _inside(dist: optuna.distributions.BaseDistribution, value: Any) -> bool:
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


def _auto(dists: dict[str, optuna.distributions.BaseDistribution]) -> list[dict[str, Any]]:
    """:data:`AUTO_WARM_STARTS` as far as the space holds them (see :func:`warm_start_params`)."""
    out: list[dict[str, Any]] = []
    for base in AUTO_WARM_STARTS:
        wanted = {**base, **WARM_DISTILLATION}
        params = {n: wanted[n.split("@", 1)[0]] for n in dists if n.split("@", 1)[0] in wanted}
        params = {n: v for n, v in params.items() if _inside(dists[n], v)}
        tried = {n.split("@", 1)[0] for n in params}
        if not {"quantization.weight_bits", "pruning.ratio"} & tried or params in out:
            continue  # the space cannot hold this config (e.g. no 8-bit choice): skip it
        out.append(params)
    return out


def warm_start_params(spec: Spec, space: RecipeSpace) -> list[dict[str, Any]]:
    """The configs enqueued right after the baseline, as trial parameters (knobs left out are sampled).

    ``"auto"``: :data:`AUTO_WARM_STARTS`, each value applied to a knob and its per-group variants
    (``pruning.ratio@stage1``), keeping only values the space holds, with T and alpha at
    :data:`WARM_DISTILLATION` where in range. A spec's own list is checked knob by knob.

    Raises:
        SpecError: a listed knob is not in the space, or its value is outside the knob's range.

    Example:
        >>> from tradeoff.studies import parse_spec
        >>> spec = parse_spec({"study": {"name": "w"}, "task": {"name": "digits"},
        ...                    "search": {"warm_start": [{"pruning.ratio": 0.3}]}})
        >>> warm_start_params(spec, spec.recipe_space())
        [{'pruning.ratio': 0.3}]
    """
    dists = space.distributions()
    warm = spec.search.warm_start
    if warm == "auto":
        return _auto(dists)
    problems = []
    for i, params in enumerate(warm):
        for name, value in params.items():
            if name not in dists:
                problems.append(f"search.warm_start[{i}].{name}: not a knob of this space; knobs: {', '.join(dists)}")
            elif not _inside(dists[name], value):
                problems.append(f"search.warm_start[{i}].{name}: {value!r} is outside the knob's range {dists[name]}")
    if problems:
        raise SpecError("invalid warm start(s):\n  " + "\n  ".join(problems))
    return [dict(p) for p in warm]


@dataclass(frozen=True)
class WarmStarts:
    """``[search] warm_start`` for one study: the checked configs, and queueing them after the baseline.

    Example:
        >>> warm = WarmStarts(({"pruning.ratio": 0.5}, {"pruning.ratio": 0.25}))
        >>> study = optuna.create_study()
        >>> warm.enqueue(study, n_trials=2)  # the baseline takes one trial of the two
        >>> len(study.get_trials(states=(optuna.trial.TrialState.WAITING,)))
        1
    """

    params: Sequence[dict[str, Any]]

    @classmethod
    def from_spec(cls, spec: Spec, space: RecipeSpace) -> WarmStarts:
        """The spec's warm starts, checked against ``space`` (:func:`warm_start_params`).

        Raises:
            SpecError: a listed knob is not in the space, or its value is outside the knob's range.
        """
        return cls(tuple(warm_start_params(spec, space)))

    def enqueue(self, study: optuna.Study, n_trials: int) -> None:
        """Queue the warm starts right after the baseline, as many as the budget of ``n_trials`` leaves."""
        for params in self.params[: n_trials - 1]:  # right after the baseline, within the budget
            study.enqueue_trial(params, skip_if_exists=True)
