"""What can be tried: each compression technique's knobs, how a trial samples them, how they apply.

Each technique is a frozen config with one verb (``apply_``) and a space that samples it from an
Optuna trial. This package knows nothing of objectives or of studies.
"""

from __future__ import annotations

from ._base import ApplyContext, Config, Space, as_args, torch_threads
from .cpu import cpu_capabilities, has_vnni, supports_float16
from .deploy import BACKENDS, Deployable, FixedBatch, deployable_form
from .distillation import (
    AUTO,
    BATCHNORMS,
    LR_AUTO,
    NEAR_TEACHER,
    SCHEDULES,
    DistillationConfig,
    DistillationSpace,
    Distiller,
    cache_teacher_outputs,
    distillation_loss,
    materialise,
    teacher_agreement,
    tuning_mode,
)
from .groups import GROUP_SEP, auto_groups, check_groups, selects, unmatched_keys, value_for, weight_layer_names
from .int8 import COMPILE_BUDGET_S, DeployError, auto_backend, reset_auto_backend
from .lr_range import LrFinding, find_lr
from .pruning import IMPORTANCES, KINDS, SCOPES, PruningConfig, PruningSpace, recalibrate_batchnorm
from .quantization import QuantizationConfig, QuantizationSpace, strip_activation_quant
from .recipe import RECIPE_FORMAT, Compressed, Compression, Recipe, RecipeSpace, compress
from .widths import ACTIVATION_BITS, FLOAT16_KINDS, INT8_MAX_BITS, WEIGHT_BITS, WEIGHT_LAYERS

__all__ = [
    "ACTIVATION_BITS",
    "AUTO",
    "BACKENDS",
    "BATCHNORMS",
    "COMPILE_BUDGET_S",
    "FLOAT16_KINDS",
    "GROUP_SEP",
    "IMPORTANCES",
    "INT8_MAX_BITS",
    "KINDS",
    "LR_AUTO",
    "NEAR_TEACHER",
    "RECIPE_FORMAT",
    "SCHEDULES",
    "SCOPES",
    "WEIGHT_BITS",
    "WEIGHT_LAYERS",
    "ApplyContext",
    "Compressed",
    "Compression",
    "Config",
    "DeployError",
    "Deployable",
    "DistillationConfig",
    "DistillationSpace",
    "Distiller",
    "FixedBatch",
    "LrFinding",
    "PruningConfig",
    "PruningSpace",
    "QuantizationConfig",
    "QuantizationSpace",
    "Recipe",
    "RecipeSpace",
    "Space",
    "as_args",
    "auto_backend",
    "auto_groups",
    "cache_teacher_outputs",
    "check_groups",
    "compress",
    "cpu_capabilities",
    "deployable_form",
    "distillation_loss",
    "find_lr",
    "has_vnni",
    "materialise",
    "recalibrate_batchnorm",
    "reset_auto_backend",
    "selects",
    "strip_activation_quant",
    "supports_float16",
    "teacher_agreement",
    "torch_threads",
    "tuning_mode",
    "unmatched_keys",
    "value_for",
    "weight_layer_names",
]
