"""What runs: the trial pipeline, the Optuna orchestration and the ``tradeoff`` command."""

from __future__ import annotations

from .runner import Runner, StudyMismatch, TrialEvent, make_sampler
from .trial import TrialEnv, evaluate_recipe

__all__ = ["Runner", "StudyMismatch", "TrialEnv", "TrialEvent", "evaluate_recipe", "make_sampler"]
