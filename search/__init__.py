"""What runs: the trial pipeline, the Optuna orchestration, its policies and the ``tradeoff`` command.

Each ``[search]`` setting of a spec has one home: ``screen`` in :func:`evaluate_recipe`, ``rungs``,
``stop_dominated_by`` and ``stop_infeasible_after`` in :mod:`.rungs`, ``reuse_duplicates`` and
``reuse_latency`` in :mod:`.reuse`, ``warm_start`` in :mod:`.warm_start`, ``workers`` in
:mod:`.workers`; :class:`Runner` builds them from the spec and runs the study.
"""

from __future__ import annotations

from .backend_choice import BackendChoice, choose_backend
from .events import TrialEvent
from .reuse import DuplicateReuse, LatencyReuse, Reused
from .rungs import AccuracyOutOfReach, DominatedAtRung, RungStopping
from .runner import Runner, StudyMismatch
from .samplers import SAMPLERS, SamplerChoice, choose_sampler, make_sampler, sampler_for
from .trial import deployable_key, evaluate_recipe
from .trial_env import TrialEnv
from .warm_start import WarmStarts, warm_start_params
from .workers import resolve_workers

__all__ = [
    "SAMPLERS",
    "AccuracyOutOfReach",
    "BackendChoice",
    "DominatedAtRung",
    "DuplicateReuse",
    "LatencyReuse",
    "Reused",
    "RungStopping",
    "Runner",
    "SamplerChoice",
    "StudyMismatch",
    "TrialEnv",
    "TrialEvent",
    "WarmStarts",
    "choose_backend",
    "choose_sampler",
    "deployable_key",
    "evaluate_recipe",
    "make_sampler",
    "resolve_workers",
    "sampler_for",
    "warm_start_params",
]
