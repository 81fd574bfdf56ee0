"""What runs: the trial pipeline, the Optuna orchestration and the ``tradeoff`` command."""

from __future__ import annotations

from .runner import Runner, StudyMismatch, TrialEvent, sampler_for, warm_start_params
from .samplers import SAMPLERS, SamplerChoice, choose_sampler, make_sampler
from .trial import TrialEnv, deployable_key, evaluate_recipe
from .workers import resolve_workers

__all__ = [
    "SAMPLERS",
    "Runner",
    "SamplerChoice",
    "StudyMismatch",
    "TrialEnv",
    "TrialEvent",
    "choose_sampler",
    "evaluate_recipe",
    "deployable_key",
    "make_sampler",
    "resolve_workers",
    "sampler_for",
    "warm_start_params",
]
