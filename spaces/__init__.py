"""What can be tried: each compression technique's knobs, how a trial samples them, how they apply.

Each technique is a frozen config with one verb (``apply_``) and a space that samples it from an
Optuna trial. This package knows nothing of objectives or of studies.
"""

from __future__ import annotations

from ._base import ApplyContext, Config, Space, torch_threads
from .deploy import (
    BACKENDS,
    INT8_MAX_BITS,
    Deployable,
    DeployError,
    deployable_form,
    reset_auto_backend,
    supports_float16,
)
from .distillation import (
    DistillationConfig,
    DistillationSpace,
    Distiller,
    cache_teacher_outputs,
    distillation_loss,
    materialise,
)
from .pruning import PruningConfig, PruningSpace, recalibrate_batchnorm
from .quantization import QuantizationConfig, QuantizationSpace, strip_activation_quant
from .recipe import RECIPE_FORMAT, Compressed, Compression, Recipe, RecipeSpace, compress

__all__ = [
    "BACKENDS",
    "INT8_MAX_BITS",
    "RECIPE_FORMAT",
    "ApplyContext",
    "Compressed",
    "Compression",
    "Config",
    "DeployError",
    "Deployable",
    "DistillationConfig",
    "DistillationSpace",
    "Distiller",
    "PruningConfig",
    "PruningSpace",
    "QuantizationConfig",
    "QuantizationSpace",
    "Recipe",
    "RecipeSpace",
    "Space",
    "cache_teacher_outputs",
    "compress",
    "deployable_form",
    "distillation_loss",
    "strip_activation_quant",
    "materialise",
    "recalibrate_batchnorm",
    "reset_auto_backend",
    "supports_float16",
    "torch_threads",
]
