"""What is kept: study specs, tasks (model + data), storage, results tables, export bundles."""

from __future__ import annotations

from .export import CONFIG_FORMAT, ExportError, apply_config, export_bundle, load_config, rebuild
from .host import check_target_fits
from .record import TrialRecord
from .results import (
    Feasibility,
    FrontEntry,
    Violation,
    baseline_trial,
    feasibility,
    least_violating,
    pick,
    ranked_front,
    study_hypervolume,
    trials_frame,
)
from .sections import SAMPLER_NAMES
from .shared import at_batch_size, shared_inputs, val_subset
from .spec import Spec, SpecError, demo_spec, load_spec, parse_spec
from .storage import DEFAULT_STORAGE, StorageError, load_study, open_storage, resolve_storage_url
from .tasks import Task, TaskError, load_task, validate_task
from .teachers import cached_teacher, weights_sha256

__all__ = [
    "CONFIG_FORMAT",
    "DEFAULT_STORAGE",
    "SAMPLER_NAMES",
    "ExportError",
    "Feasibility",
    "FrontEntry",
    "Spec",
    "SpecError",
    "StorageError",
    "Task",
    "TaskError",
    "TrialRecord",
    "Violation",
    "apply_config",
    "at_batch_size",
    "baseline_trial",
    "cached_teacher",
    "check_target_fits",
    "demo_spec",
    "export_bundle",
    "feasibility",
    "least_violating",
    "load_config",
    "load_spec",
    "load_study",
    "load_task",
    "open_storage",
    "parse_spec",
    "pick",
    "ranked_front",
    "rebuild",
    "resolve_storage_url",
    "shared_inputs",
    "study_hypervolume",
    "trials_frame",
    "val_subset",
    "validate_task",
    "weights_sha256",
]
