"""The export bundle: the chosen config and how every figure of it was obtained.

``tradeoff export`` writes ``DIR/config.json`` (format ``tradeoff.config/1``). The bundle is
written to a temporary folder beside ``DIR`` and moved into place whole, so a failure never
leaves half a bundle.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import optuna
import torch

from tradeoff.objectives import Weights

from . import record
from .results import FrontEntry, baseline_trial, objective_names_of, pick, study_spec, values_of

CONFIG_FORMAT = "tradeoff.config/1"


def versions() -> dict[str, str]:
    """Versions of tradeoff and of the libraries that shaped the numbers."""
    out = {"torch": torch.__version__, "optuna": optuna.__version__}
    for dist in ("tradeoff", "torch-pruning", "torchao"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def build_config(study: optuna.Study, entry: FrontEntry, rule: str, weights: Weights) -> dict[str, Any]:
    """The content of ``config.json`` for the chosen front entry."""
    spec = study_spec(study)
    attrs = entry.trial.user_attrs
    return {
        "format": CONFIG_FORMAT,
        "study": study.study_name,
        "trial": entry.trial.number,
        "pick": rule,
        "task": {"name": spec.task.name, "kwargs": spec.task.kwargs, **study.user_attrs.get(record.STUDY_TASK, {})},
        "recipe": attrs.get(record.RECIPE),
        "values": entry.values,
        "baseline": values_of(baseline_trial(study), objective_names_of(study)),
        "normalised": dict(zip(("e", "s", "l", "j"), map(float, entry.normalised))),
        "cost": entry.cost,
        "weights": weights.as_dict(),
        "constraints": dict(entry.trial.constraints),
        "executed_as": attrs.get(record.EXECUTED_AS),
        "figures": attrs.get(record.FIGURES, {}),
        "provenance": attrs.get(record.PROVENANCE, {}),
        "spec": spec.to_dict(),
        "versions": versions(),
    }


def export(study: optuna.Study, out_dir: str | Path, *, rule: str = "knee", weights: Weights | None = None) -> Path:
    """Write the bundle for the trial picked by ``rule`` into ``out_dir``; return the config path.

    An existing ``out_dir`` is replaced only once the new bundle is complete.
    """
    entry = pick(study, rule, weights)
    weights = weights or study_spec(study).weights()
    config = build_config(study, entry, rule, weights)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "config.json"
