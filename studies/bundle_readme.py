"""The export bundle's ``README.md``: which file is which, which figures belong to which file, how to load each.

Written from ``config.json``'s content alone (``studies/export.py`` builds it), so the README can never
say something the config does not.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["bundle_readme"]


def bundle_readme(config: dict[str, Any]) -> str:
    """The bundle's ``README.md`` from its ``config.json`` content: which file is which, what was measured how.

    Example:
        >>> config = {
        ...     "study": "demo", "trial": 7, "pick": "knee", "task": {"name": "digits"},
        ...     "values": {"accuracy": 0.98}, "baseline": {"accuracy": 0.99},
        ...     "provenance": {"accuracy": {"source": "measured"}}, "deployable_form": "fp32",
        ...     "files": {"deployable": "deployable.pt2"}, "cost": 0.5, "weights": {"accuracy": 1.0},
        ...     "recipe": {}, "seed": 0,
        ... }
        >>> text = bundle_readme(config)
        >>> text.splitlines()[0], "| accuracy | 0.98 | 0.99 | measured |  |" in text
        ('# demo: trial 7 (knee)', True)
    """
    v, b, names = config["values"], config["baseline"], list(config["values"])
    prov = config["provenance"]
    form, files, f = config.get("deployable_form"), config.get("files", {}), config.get("figures", {})
    lat = prov.get("latency_ms", {})
    backend, batch = lat.get("deployable_backend", "?"), lat.get("batch_size", "?")
    lines = [
        f"# {config['study']}: trial {config['trial']} ({config['pick']})",
        "",
        "Which file is which, and which figures belong to it:",
        "",
        "| file | what it is | its figures below |",
        "|---|---|---|",
    ]
    if "deployable" in files:
        lines.append(
            f"| `deployable.pt2` | the program that was timed (`deployable_form` {form}, run by {backend}): "
            + (
                "the converted int8 graph, quantize/dequantize around fp32 ops until compiled as below"
                if form and form.startswith("int8")
                else "the model as it executes"
            )
            + " | latency, energy"
            + (
                f"; accuracy {f['deployable_accuracy']:.4f} (the front's)"
                if "deployable_accuracy" in f
                else "; accuracy"
            )
            + " |"
        )
    if "deployable_torchscript" in files:
        lines.append(
            f"| `{files['deployable_torchscript']}` | the program that was timed (`deployable_form` {form}, run by "
            f"{backend}), as the TorchScript it ran as: quantized ops run by TorchScript's interpreter | latency, "
            "energy"
            + (
                f"; accuracy {f['deployable_accuracy']:.4f} (the front's)"
                if "deployable_accuracy" in f
                else "; accuracy"
            )
            + " |"
        )
    lines += [
        "| `scored_model.pt2` | the simulation the search scored: weights on their quantized grid, activations "
        "fake-quantized at the chosen width, computed in fp32 | "
        + (f"accuracy {f['scored_accuracy']:.4f} (scored)" if "scored_accuracy" in f else "accuracy")
        + "; size (of `packed_weights.pt`) |",
        "| `state_dict.pt` | the scored model's plain state dict | - |",
        "| `packed_weights.pt` | the weights packed at their bit-widths (`<layer>.weight.packed` uint8 codes, "
        "`.scale` per output channel, `.shape`) | `size_bytes` counts these |",
        "",
        "Load either with plain PyTorch (tradeoff not needed), at any batch size:",
        "",
        "```python",
        "import torch",
        "import torch.ao.quantization.fx._decomposed  # registers the quantize/dequantize ops an int8 graph calls",
        'model = torch.export.load("deployable.pt2").module()'
        if "deployable" in files
        else 'model = torch.export.load("scored_model.pt2").module()',
        f"outputs = model(x)  # x shaped like the task's inputs; task: {config['task']['name']}",
        "```",
        "",
    ]
    if "deployable" in files and form and form.startswith("int8") and backend == "inductor":
        lines += [
            "Loaded this way the int8 graph computes in fp32 between quantize/dequantize steps: right, but not",
            "fast. For the speed that was measured, compile it with inductor's freezing on, as the trial did:",
            "",
            "```python",
            "import torch._inductor.config as inductor_config",
            "with inductor_config.patch(freezing=True), torch.no_grad():",
            "    fast = torch.compile(model, dynamic=False)  # one static graph per batch size",
            "    outputs = fast(x)",
            "```",
            "",
            f"Latency was timed at batch {batch}; each new batch size compiles once more (a dynamic-batch graph",
            "fails in inductor's int8 conv lowering, so keep `dynamic=False`).",
            "",
        ]
    elif "deployable_torchscript" in files:
        lines += [
            f"No `deployable.pt2`: the timed program ran on the `{backend}` int8 backend, whose eager quantized",
            f"modules `torch.export` cannot save. `{files['deployable_torchscript']}` is that program as TorchScript,",
            "with its int8 kernels (PyTorch has deprecated TorchScript, but loads and runs it); plain PyTorch runs it",
            "at any batch size:",
            "",
            "```python",
            f'fast = torch.jit.load("{files["deployable_torchscript"]}")',
            "with torch.no_grad():",
            "    outputs = fast(x)",
            "```",
            "",
        ]
    elif "deployable" not in files:
        lines += [
            f"No `deployable.pt2`: the timed program ran on the `{backend}` int8 backend, whose eager quantized",
            "modules `torch.export` cannot save; rebuild it with `tradeoff apply config.json`.",
            "",
        ]
    onnx = config.get("onnx")
    if onnx:
        lines += [
            f"`deployable.onnx` is the same program for ONNX Runtime (opset {onnx['opset']}"
            + (", QDQ int8" if form and form.startswith("int8") else "")
            + f"), verified in onnxruntime {onnx['onnxruntime']}: accuracy {onnx['accuracy']:.4f} on the same "
            f"validation samples (the torch program: {onnx['deployable_accuracy']:.4f}, tolerance {onnx['tolerance']}); "
            f"latency {onnx['ort_ms']:.4g} ms against {onnx['torch_ms']:.4g} ms for the torch program, measured side by "
            f"side at {onnx['threads']} thread(s), batch {onnx['batch_size']}: **{onnx['faster']} is faster here** "
            f"(ORT / torch = {onnx['ratio']:.2f}).",
            "",
            "```python",
            "import onnxruntime as ort",
            'session = ort.InferenceSession("deployable.onnx", providers=["CPUExecutionProvider"])',
            "outputs = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]",
            "```",
            "",
        ]
    lines += ["| objective | this model | uncompressed | source | method |", "|---|---:|---:|---|---|"]
    for n in names:
        p = prov.get(n, {})
        lines.append(f"| {n} | {v[n]:.6g} | {b[n]:.6g} | {p.get('source', '?')} | {p.get('method', '')} |")
    lat = prov.get("latency_ms", {})
    lines += [
        "",
        f"Measured on: {lat.get('device', 'unknown device')}, {lat.get('threads', '?')} thread(s), batch size "
        f"{lat.get('batch_size', '?')}, torch {lat.get('torch', '?')}.",
        f"Weighted cost {config['cost']:.4f} with weights {config['weights']} (lower is better; the baseline scores "
        f"{sum(list(config['weights'].values())[1:]):.2f}).",
        "",
        "Recipe (re-apply with `tradeoff apply config.json`):",
        "",
        "```json",
        json.dumps({"recipe": config["recipe"], "seed": config["seed"]}, indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)
