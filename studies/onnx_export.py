"""ONNX Runtime, the deployment path most CPU users take (``tradeoff export --format onnx``).

The deployable program (:attr:`tradeoff.spaces.Deployable.program`) is written as ONNX by
``torch.onnx.export(..., dynamo=True)`` with a dynamic batch dimension: an int8 program becomes QDQ
(``QuantizeLinear``/``DequantizeLinear`` around the convs and matmuls, which ONNX Runtime fuses into
its int8 kernels), a 16-bit or fp32 one plain operators. It is then verified in ONNX Runtime, in
this process:

* accuracy on the same validation samples as the trial's, within :data:`ONNX_ACCURACY_TOLERANCE`
  of the deployable form's (ORT's int8 kernels round their own way);
* latency at the trial's threads and batch size, timed side by side with the torch program that
  the trial timed (ABBA-interleaved rounds, :func:`tradeoff.objectives.measure_latency`), so that
  the report can say which runtime is faster here.

Needs the ``onnx`` extra (``pip install 'tradeoff[onnx]'``: onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tradeoff.objectives import evaluate, measure_latency
from tradeoff.spaces import torch_threads

ONNX_FILE = "deployable.onnx"
ONNX_ACCURACY_TOLERANCE = 0.01  # a point: ORT's int8 kernels requantize with their own rounding
ONNX_OPSET = 18  # QuantizeLinear/DequantizeLinear with per-axis scales, what ORT 1.17+ runs on CPU
PACKAGES = ("onnx", "onnxscript", "onnxruntime")


def batch_dynamic_shapes(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[Any, ...]:
    """``torch.export`` dynamic shapes with a dynamic batch (dimension 0) for every input of ``model``:
    one spec per positional parameter, or one tuple of them for a ``forward(*args)``.

    Example:
        >>> class Star(nn.Module):
        ...     def forward(self, *args): return args[0]
        >>> len(batch_dynamic_shapes(Star(), (torch.zeros(2, 3),))[0])  # nested for *args
        1
    """
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    per_input = tuple({0: batch} for _ in inputs)
    params = list(inspect.signature(model.forward).parameters.values())
    if len(params) == 1 and params[0].kind is inspect.Parameter.VAR_POSITIONAL:
        return (per_input,)
    return per_input


class OnnxError(RuntimeError):
    """The ONNX file cannot be written or does not verify; the message says what to do."""


def require_onnx() -> None:
    """Raise :class:`OnnxError` naming the extra when its packages are missing."""
    missing = [p for p in PACKAGES if importlib.util.find_spec(p) is None]
    if missing:
        raise OnnxError(
            f"--format onnx needs {', '.join(missing)}, which are not installed; install the extra with "
            "pip install 'tradeoff[onnx]' and export again."
        )


class OrtModule(nn.Module):
    """An ONNX Runtime session called like the torch program (tensors in, an fp32 tensor out)."""

    def __init__(self, path: Path, threads: int) -> None:
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # the trial's threads: a fair side-by-side
        options.inter_op_num_threads = 1
        self.__dict__["session"] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        feeds = {n: a.detach().cpu().numpy() for n, a in zip(self.names, args, strict=True)}
        return torch.from_numpy(self.session.run(None, feeds)[0])


def write_onnx(program: nn.Module | None, example_inputs: tuple[torch.Tensor, ...], path: Path, form: str) -> None:
    """Write ``program`` (the deployable form before compilation) as ONNX with a dynamic batch."""
    require_onnx()
    if program is None:
        raise OnnxError(
            f"the deployable form ({form}) ran on the fx int8 backend, whose eager quantized modules have no "
            "exportable program (under [target] backend = 'auto' the study timed fx as the faster builder here); "
            "for ONNX set [target] backend = 'inductor' and run the search again, or ship deployable.ts."
        )
    inputs = tuple(x.repeat(2, *([1] * (x.dim() - 1))) if x.shape[0] == 1 else x for x in example_inputs)
    try:
        if not isinstance(program, torch.fx.GraphModule):
            program = program.eval()
        with torch.no_grad():
            exported = torch.export.export(program, inputs, dynamic_shapes=batch_dynamic_shapes(program, inputs))
            onnx_program = torch.onnx.export(exported, inputs, dynamo=True, opset_version=ONNX_OPSET, verbose=False)
        onnx_program.save(str(path))
    except Exception as exc:  # the exporter's own message names the operator it cannot express
        path.unlink(missing_ok=True)
        raise OnnxError(
            f"the ONNX exporter cannot express this {form} program: {type(exc).__name__}: {str(exc)[:400]}; "
            "the torch bundle (deployable.pt2) is unaffected: export without --format onnx."
        ) from exc


def verify_onnx(
    path: Path,
    torch_module: nn.Module | Any,
    val: Any,
    metric: Any,
    example_inputs: tuple[torch.Tensor, ...],
    *,
    threads: int,
    deployable_accuracy: float | None,
) -> dict[str, Any]:
    """Score the ONNX file in ONNX Runtime and time it side by side with the torch program."""
    import onnxruntime as ort

    ort_module = OrtModule(path, threads)
    with torch_threads(threads):
        accuracy = evaluate(ort_module, val, metric)
        # ratio = ORT / torch: both at the trial's batch size and threads, interleaved in one run
        timed = measure_latency(ort_module, example_inputs, threads=threads, reference=torch_module)
    ok = deployable_accuracy is None or abs(accuracy - deployable_accuracy) <= ONNX_ACCURACY_TOLERANCE
    ratio = float(timed["ratio"])
    return {
        "file": path.name,
        "onnxruntime": ort.__version__,
        "opset": ONNX_OPSET,
        "accuracy": accuracy,
        "deployable_accuracy": deployable_accuracy,
        "tolerance": ONNX_ACCURACY_TOLERANCE,
        "ok": ok,
        "threads": threads,
        "batch_size": int(example_inputs[0].shape[0]),
        "ort_ms": float(timed["median_ms"]),
        "torch_ms": float(timed["reference_ms"]),
        "ratio": ratio,
        "faster": "onnxruntime" if ratio < 1 else "torch",
        "latency_source": "measured: ABBA-interleaved with the torch program, one run",
    }


__all__ = [
    "ONNX_ACCURACY_TOLERANCE",
    "ONNX_FILE",
    "OnnxError",
    "OrtModule",
    "batch_dynamic_shapes",
    "require_onnx",
    "verify_onnx",
    "write_onnx",
]
