"""The export bundle: the chosen config, the compressed model, and how every figure was obtained.

``tradeoff export STUDY --out DIR`` writes, into a temporary folder moved into place whole (a
failure never leaves half a bundle):

* ``config.json`` (format ``tradeoff.config/2``): the recipe and seed, the four values, the
  baseline's, cost, weights and pick rule, constraints, provenance of every figure, the spec, the
  teacher's weights hash, versions, and the figures of the model as rebuilt for the bundle;
* ``deployable.pt2``: the program that was timed, as a ``torch.export`` program that plain torch
  loads at any batch size (``torch.export.load("deployable.pt2").module()``, after importing
  ``torch.ao.quantization.fx._decomposed``, which registers its quantize/dequantize ops): for int8 the
  converted PT2E graph (quantize/dequantize around the convs, fp32 arithmetic until compiled:
  ``torch.compile(..., dynamic=False)`` under inductor's ``freezing`` turns it into the int8
  kernels that were timed), for 16 bits the cast model, for fp32 the model;
* ``deployable.ts`` instead, for the fx int8 backend, whose eager quantized modules ``torch.export``
  cannot take (their packed weights are TorchScript objects): the timed program itself, which the fx
  builder runs as frozen TorchScript (:data:`TORCHSCRIPT_FILE`), and which plain torch loads at any
  batch size (``torch.jit.load("deployable.ts")``);
* ``scored_model.pt2``: the simulation the accuracy search scored (weights on their quantized grid,
  activations fake-quantized, computed in fp32), the same way;
* ``state_dict.pt``: its plain state dict; ``packed_weights.pt``: the weights packed at their
  bit-widths (what ``size_bytes`` counts);
* ``README.md``: how to load it and what was measured; ``report.html``: the front, this trial marked.

The model is rebuilt by re-applying the trial's recipe with the trial's seed to the task's teacher
(a few seconds on digits); its accuracy must come out within :data:`ACCURACY_TOLERANCE` of the
trial's, and its size exactly, or the export fails.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import optuna
import torch
from torch import nn

from tradeoff.objectives import Weights, evaluate, measure_latency, packed_state_dict, profile
from tradeoff.spaces import ApplyContext, Compressed, FixedBatch, Recipe, compress, torch_threads

from . import record
from .bundle_readme import bundle_readme
from .onnx_export import ONNX_FILE, OnnxError, batch_dynamic_shapes, require_onnx, verify_onnx, write_onnx
from .report import write_report
from .results import FrontEntry, baseline_trial, objective_names_of, pick, ranked_front, study_spec, values_of
from .shared import at_batch_size, shared_inputs
from .spec import Spec, parse_spec, parse_stored_spec
from .tasks import Task, TaskError, load_task
from .teachers import weights_sha256

CONFIG_FORMAT = "tradeoff.config/2"  # /2: executed_as renamed deployable_form
READABLE_CONFIG_FORMATS = ("tradeoff.config/1", CONFIG_FORMAT)  # apply reads neither renamed field
ACCURACY_TOLERANCE = 0.005  # same seed and data: equal up to reordered float sums across machines
# latency ratio to the teacher, timed side by side: two runs on this shared 2-core machine differ by up
# to ~20 % (docs/BENCHMARKS.md, "Latency repeatability"), so a ratio a quarter off says the program is another
LATENCY_RATIO_TOLERANCE = 0.25
EXPORT_BATCH = 2  # trace at batch >= 2 with a dynamic batch dim: batch 1 would be specialised away
TORCHSCRIPT_FILE = "deployable.ts"  # the fx int8 program, which has no torch.export form


class ExportError(RuntimeError):
    """The bundle cannot be made faithfully (e.g. the rebuilt model does not match the trial)."""


def versions() -> dict[str, str]:
    """Versions of tradeoff and of the libraries that shaped the numbers."""
    out = {"torch": torch.__version__, "optuna": optuna.__version__}
    for dist in ("tradeoff", "torch-pruning", "torchao"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


@dataclass
class Rebuilt:
    """A trial's model rebuilt from its recipe and seed, with the figures it gives now."""

    task: Task
    compressed: Compressed
    example_inputs: tuple[torch.Tensor, ...]
    figures: dict[str, float]  # accuracy, size_bytes, params, nonzero_params, macs, bops
    teacher_sha256: str
    val: Any = None  # the validation samples the figures were scored on (the study's reported part)


def rebuild(
    spec: Spec,
    recipe: dict[str, Any],
    seed: int | None,
    *,
    task: Task | None = None,
    kept: str = "finetuned",
    deploy: bool = False,  # build the deployable form too (the bundle carries it): compiles, seconds
    backend: str | None = None,  # the int8 builder the trial used (its deployable_backend); None: the spec's
) -> Rebuilt:
    """Re-apply ``recipe`` with ``seed`` to the spec's task (or ``task``) and measure the exact figures.

    ``kept="zero_shot"``: the trial kept its weights from before fine-tuning (``finetune.kept``), so
    the model is rebuilt without fine-tuning. The data is split as the study split it (``[search]
    select_on``): fine-tuned on the same batches, accuracy scored on the same validation samples. A
    recipe written before any data was kept apart (distillation config version 1) is re-applied on
    all the training batches and scored on the whole validation set, as it was then. With ``deploy``
    the deployable form is built as the trial built it and scored too (``deployable_accuracy``): with
    ``backend``, by the builder the trial recorded (under ``auto`` the study chose one by timing both).
    """
    if task is None:
        try:
            task = load_task(spec.task.name, spec.task.kwargs)
        except TaskError as exc:
            raise ExportError(
                f"rebuilding the model needs the study's task, which cannot be loaded here: {exc}. Run export or "
                "apply where the task's code is importable (e.g. the directory the study was launched from); "
                "ls, show and pareto read the study without it."
            ) from None
    parsed = Recipe.from_dict(recipe)
    if kept == "zero_shot":
        parsed = dataclasses.replace(parsed, distillation=dataclasses.replace(parsed.distillation, steps=0))
    select_on = spec.search.select_on if (recipe.get("distillation") or {}).get("version", 1) >= 2 else None
    with torch_threads(spec.target.threads):  # as the trial ran: the fine-tuned weights depend on it
        shared = shared_inputs(task, spec.target.batch_size, select_on=select_on, select_size=spec.search.rung_val_size)
        ctx = ApplyContext(
            shared.example_inputs,
            shared.train,
            shared.teacher_logits,
            seed,
            threads=spec.target.threads,
            backend=backend if backend in ("inductor", "fx") else spec.target.backend,
        )
        compressed = compress(parsed, task.model, ctx, deploy=deploy)
        prof = profile(compressed.scored, shared.example_inputs, compressed.weight_bits, compressed.activation_bits)
        figures = {"accuracy": evaluate(compressed.scored, shared.val, task.metric), **prof.figures()}
        if deploy and not parsed.quantization.is_identity:  # as the trial scored it: at the batch it was built for
            run = FixedBatch(compressed.deployable.module, int(shared.example_inputs[0].shape[0]))
            figures["deployable_accuracy"] = evaluate(run, shared.val, task.metric)
    return Rebuilt(task, compressed, shared.example_inputs, figures, weights_sha256(task.model), shared.val)


def export_program(model: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> torch.export.ExportedProgram:
    """``torch.export`` the model with a dynamic batch dimension."""
    inputs = at_batch_size(example_inputs, EXPORT_BATCH)
    if not isinstance(model, torch.fx.GraphModule):  # a converted PT2E graph refuses .eval(): it has no modes
        model = model.eval()
    with torch.no_grad():
        return torch.export.export(model, inputs, dynamic_shapes=batch_dynamic_shapes(model, inputs))


def torchscript_program(model: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> torch.jit.ScriptModule:
    """The fx int8 program as TorchScript (it runs at any batch size).

    ``torch.export`` cannot take an fx int8 program: its quantized modules hold packed weights as
    TorchScript objects. The fx builder already runs it as frozen TorchScript (the very program
    the trial timed), which is returned as it is; an fx program that ran eagerly is traced here at
    :data:`EXPORT_BATCH`, which records the same quantized ops with the batch size read at run time.

    Example:
        >>> m = nn.Sequential(nn.Linear(4, 2)).eval()
        >>> ts = torchscript_program(m, (torch.randn(1, 4),))
        >>> ts(torch.randn(5, 4)).shape
        torch.Size([5, 2])
    """
    if isinstance(model, torch.jit.ScriptModule):
        return model
    inputs = at_batch_size(example_inputs, EXPORT_BATCH)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`torch.jit.trace", DeprecationWarning)  # known: the only way to save it
        return torch.jit.trace(model, inputs)


def _backend_of(config: dict[str, Any]) -> str | None:
    """The int8 builder that built the trial's timed program, as its latency provenance recorded it."""
    return ((config.get("provenance") or {}).get("latency_ms") or {}).get("deployable_backend")


def compare(exported: dict[str, Any], rebuilt: Rebuilt) -> list[dict[str, Any]]:
    """Rows of exported vs rebuilt figures with their tolerance and verdict."""
    rows = []
    trial_figures = exported.get("figures", {})
    checks = (
        ("accuracy", ACCURACY_TOLERANCE),
        ("deployable_accuracy", ACCURACY_TOLERANCE),
        ("size_bytes", 0.0),
        ("macs", 0.0),
        ("params", 0.0),
    )
    for name, tol in checks:
        if name not in trial_figures or name not in rebuilt.figures:
            continue
        # the rebuilt model is the scored one: its accuracy is compared with the trial's scored accuracy (the
        # trial's value is the deployable form's where the two differ)
        key = "scored_accuracy" if name == "accuracy" and "scored_accuracy" in trial_figures else name
        want, got = float(trial_figures[key]), float(rebuilt.figures[name])
        rows.append({"figure": name, "exported": want, "rebuilt": got, "tolerance": tol, "ok": abs(got - want) <= tol})
    return rows


def build_config(study: optuna.Study, entry: FrontEntry, rule: str, weights: Weights) -> dict[str, Any]:
    """The content of ``config.json`` for the chosen front entry (without the rebuilt figures)."""
    spec = study_spec(study)
    attrs = record.attrs(entry.trial)
    built = study.user_attrs.get(record.STUDY_TASK, {})
    return {
        "format": CONFIG_FORMAT,
        "study": study.study_name,
        "trial": entry.trial.number,
        "pick": rule,
        "task": {
            "name": spec.task.name,
            "kwargs": spec.task.kwargs,
            "teacher_sha256": built.get("teacher_sha256"),
            "info": built.get("info", {}),
        },
        "recipe": attrs.get(record.RECIPE),
        "seed": attrs.get(record.SEED),
        "values": entry.values,
        "baseline": values_of(baseline_trial(study), objective_names_of(study)),
        "normalised": dict(zip(("e", "s", "l", "j"), map(float, entry.normalised), strict=True)),
        "cost": entry.cost,
        "weights": weights.as_dict(),
        "constraints": dict(entry.trial.constraints),
        "deployable_form": attrs.get(record.DEPLOYABLE_FORM),
        "figures": attrs.get(record.FIGURES, {}),
        "finetune": attrs.get(record.FINETUNE, {}),
        "provenance": attrs.get(record.PROVENANCE, {}),
        "spec": spec.to_dict(),
        "versions": versions(),
    }


def _write_onnx(folder: Path, rebuilt: Rebuilt, config: dict[str, Any]) -> dict[str, Any]:
    """``deployable.onnx`` and its verification in ONNX Runtime; a failure is an :class:`ExportError`."""
    deployed, spec = rebuilt.compressed.deployable, parse_stored_spec(config["spec"], "config spec")
    want = rebuilt.figures.get("deployable_accuracy", rebuilt.figures["accuracy"])
    try:
        write_onnx(deployed.program, rebuilt.example_inputs, folder / ONNX_FILE, deployed.form)
        checked = verify_onnx(
            folder / ONNX_FILE,
            deployed.module,
            rebuilt.val,
            rebuilt.task.metric,
            rebuilt.example_inputs,
            threads=spec.target.threads,
            deployable_accuracy=want,
        )
    except OnnxError as exc:
        raise ExportError(str(exc)) from None
    if not checked["ok"]:
        raise ExportError(
            f"ONNX Runtime scores the exported program {checked['accuracy']:.4f}, the torch program {want:.4f}: more "
            f"than {checked['tolerance']} apart, so the ONNX file is not written; ship deployable.pt2 instead."
        )
    return checked


def _write_model_files(folder: Path, rebuilt: Rebuilt) -> dict[str, str]:
    scored, deployed = rebuilt.compressed.scored, rebuilt.compressed.deployable
    files = {}
    if deployed.program is not None:
        program = export_program(deployed.program, rebuilt.example_inputs)
        torch.export.save(program, folder / "deployable.pt2")
        files["deployable"] = "deployable.pt2"
    elif deployed.backend == "fx":
        program = torchscript_program(deployed.module, rebuilt.example_inputs)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`torch.jit.save", DeprecationWarning)
            torch.jit.save(program, folder / TORCHSCRIPT_FILE)
        files["deployable_torchscript"] = TORCHSCRIPT_FILE
    torch.export.save(export_program(scored, rebuilt.example_inputs), folder / "scored_model.pt2")
    torch.save(scored.state_dict(), folder / "state_dict.pt")
    torch.save(packed_state_dict(scored, rebuilt.compressed.weight_bits), folder / "packed_weights.pt")
    return {
        **files,
        "scored_model": "scored_model.pt2",
        "state_dict": "state_dict.pt",
        "packed_weights": "packed_weights.pt",
        "readme": "README.md",
        "report": "report.html",
    }


def export_bundle(
    study: optuna.Study,
    out_dir: str | Path,
    *,
    rule: str = "knee",
    weights: Weights | None = None,
    with_model: bool = True,
    formats: tuple[str, ...] = ("torch",),  # add "onnx" for deployable.onnx, verified in ONNX Runtime
) -> Path:
    """Write the bundle for the trial picked by ``rule`` into ``out_dir``; return the config path.

    An existing ``out_dir`` is replaced only once the new bundle is complete. With ``"onnx"`` in
    ``formats`` the deployable program is also written as ONNX and verified in ONNX Runtime
    (:mod:`tradeoff.studies.onnx_export`): its accuracy must come within tolerance of the trial's,
    and its latency is timed side by side with the torch program (``config["onnx"]``).
    """
    unknown = set(formats) - {"torch", "onnx"}
    if unknown:
        raise ExportError(f"export format must be torch or onnx, got {', '.join(sorted(unknown))}.")
    if "onnx" in formats:
        try:
            require_onnx()  # before any work: a missing extra is said at once
        except OnnxError as exc:
            raise ExportError(str(exc)) from None
    entry = pick(study, rule, weights)
    weights = weights or study_spec(study).weights()
    config = build_config(study, entry, rule, weights)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if with_model:
            if config["recipe"] is None:
                raise ExportError(f"trial {entry.trial.number} has no recipe stored; it cannot be rebuilt.")
            kept = (config.get("finetune") or {}).get("kept", "finetuned")
            rebuilt = rebuild(
                study_spec(study), config["recipe"], config["seed"], kept=kept, deploy=True, backend=_backend_of(config)
            )
            config["rebuilt"] = compare(config, rebuilt)
            bad = [r for r in config["rebuilt"] if not r["ok"]]
            if bad:
                raise ExportError(
                    "the rebuilt model does not match the trial: "
                    + "; ".join(f"{r['figure']} {r['rebuilt']:.6g} vs {r['exported']:.6g}" for r in bad)
                    + ". The teacher or the task's data changed since the search?"
                )
            if config["task"]["teacher_sha256"] not in (None, rebuilt.teacher_sha256):
                raise ExportError("the task's teacher is not the one the study searched (weights hash differs).")
            config["files"] = _write_model_files(tmp, rebuilt)
            if "onnx" in formats:
                config["onnx"] = _write_onnx(tmp, rebuilt, config)
                config["files"]["onnx"] = ONNX_FILE
            (tmp / "README.md").write_text(bundle_readme(config), encoding="utf-8")
            note = "accuracy measured; size computed; latency measured on the deployable form; energy " + config[
                "provenance"
            ].get("energy_mj", {}).get("source", "?")
            write_report(study, ranked_front(study, weights), entry, tmp / "report.html", note)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "config.json"


def load_config(path: str | Path) -> dict[str, Any]:
    """Read an exported ``config.json``; a wrong format is an error that says what was expected."""
    path = Path(path)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ExportError(f"cannot read {str(path)!r}: {exc.strerror}.") from None
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path} is not JSON ({exc}).") from None
    if not isinstance(config, dict) or config.get("format") not in READABLE_CONFIG_FORMATS:
        raise ExportError(f"{path} is not a tradeoff config (format {CONFIG_FORMAT!r} expected).")
    return config


def apply_config(config: dict[str, Any], *, task_name: str | None = None) -> tuple[Rebuilt, list[dict[str, Any]]]:
    """Re-apply an exported config to its task (or ``task_name``) and compare with the exported figures."""
    spec = parse_stored_spec(config["spec"], "config.json spec")
    if task_name is not None and task_name != spec.task.name:
        data = spec.to_dict()
        data["task"] = {"name": task_name}
        spec = parse_spec(data, f"--task {task_name}")
    kept = (config.get("finetune") or {}).get("kept", "finetuned")
    rebuilt = rebuild(spec, config["recipe"], config.get("seed"), kept=kept, deploy=True, backend=_backend_of(config))
    rows = compare(config, rebuilt)
    want = (config.get("figures") or {}).get("latency_ratio")
    if want is not None:  # the rebuilt program timed side by side with the teacher, as the trial timed it
        with torch_threads(spec.target.threads):
            timed = measure_latency(
                rebuilt.compressed.deployable.module,
                rebuilt.example_inputs,
                threads=spec.target.threads,
                reference=rebuilt.task.model,
            )
        tol = LATENCY_RATIO_TOLERANCE * float(want)
        got = float(timed["ratio"])
        rows.append(
            {
                "figure": "latency_ratio",
                "exported": float(want),
                "rebuilt": got,
                "tolerance": tol,
                "ok": abs(got - want) <= tol,
            }
        )
    return rebuilt, rows
