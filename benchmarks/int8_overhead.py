"""Where an int8 forward pass spends its time at batch 1: oneDNN's kernels against everything around them.

Usage:  python benchmarks/int8_overhead.py [--model fashion|digits] [--width 64] [--ratios 0 0.4 0.6] [--blocks 4]

For each pruning ratio, the fashion-mnist network (``FashionResNet``, random weights, seed 0; or with
``--model digits`` the built-in digits task's trained teacher, at its 8x8 input) is pruned
with ``PruningConfig(ratio=...)`` (channels removed), every conv/linear layer is made int8 by
``build_int8`` (inductor), and the result is timed at batch 1 and one thread against the
fp32 eager teacher, in ABBA order with ``torch.utils.benchmark`` (measured). The same int8 program is
also built with inductor's C++ wrapper (``torch._inductor.config.cpp_wrapper``), which tradeoff does not
use, to show how much of the time is the Python wrapper and what that wrapper's compile time costs;
with the fx builder (its program frozen as TorchScript, as trials run it); and with the fx builder
left eager (``fx eager``: Python calling each quantized op, as fx programs ran before).
The teacher is also timed frozen as TorchScript (``fp32 ts``), which is not what a study's baseline
is, to show how much of an int8 program's speed-up is the interpreter rather than int8.

Then oneDNN's own verbose log (``torch.backends.mkldnn.verbose``) gives the execution time of each
primitive of one forward pass. Their sum is the time the int8 kernels themselves take; the rest of the
wall time is per-operator overhead: the quantized ops' argument handling, dynamo's guard check, the
wrapper code. Why it exists: issue 25 item 6 asks for a knee >= 4x faster than the teacher at batch 1,
and this says whether the kernels or the overhead bound it (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import os
import statistics
import tempfile
import time

import torch
import torch._inductor.config as inductor_config
from torch import nn
from torch.utils import benchmark

from tradeoff.spaces._base import ApplyContext
from tradeoff.spaces._int8_fx import fx_int8
from tradeoff.spaces.cpu import has_vnni
from tradeoff.spaces.int8 import build_int8
from tradeoff.spaces.pruning import PruningConfig
from tradeoff.studies import load_task
from tradeoff.studies.architectures import FashionResNet


def kernel_ms(model: nn.Module, example: tuple[torch.Tensor, ...]) -> tuple[float, int]:
    """Sum of oneDNN's reported execution times (ms) over one forward pass, and the primitive count.

    oneDNN prints its verbose lines from C to file descriptor 1, so that descriptor is pointed at a
    temporary file for the one call.
    """
    with tempfile.TemporaryFile(mode="w+") as log, torch.no_grad():
        saved = os.dup(1)
        os.dup2(log.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                model(*example)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        log.seek(0)
        lines = [line.split(",") for line in log if line.startswith("onednn_verbose") and ",exec," in line]
    return sum(float(parts[-1]) for parts in lines), len(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["fashion", "digits"], default="fashion", help="which network to time")
    parser.add_argument("--width", type=int, default=64, help="FashionResNet width (64: the fashion-mnist teacher)")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.4, 0.6], help="pruning ratios to build")
    parser.add_argument("--blocks", type=int, default=4, help="timed blocks per model, ABBA (4: 2 of each order)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # batch-1 latency is measured at one thread everywhere in tradeoff
    torch.manual_seed(0)
    if args.model == "digits":
        task = load_task("digits")  # its teacher trains in ~10 s on first use, then comes from the cache
        teacher = task.model.eval()
        example = tuple(x[:1] for x in task.example_inputs)
        calibration = [(batch[0][:8],) for batch in itertools.islice(task.train, 8)]
    else:
        teacher = FashionResNet(width=args.width).eval()
        example = (torch.randn(1, 1, 28, 28),)
        calibration = [(torch.randn(1, 1, 28, 28),) for _ in range(8)]
    print(f"model: {type(teacher).__name__}, input {tuple(example[0].shape)}")
    print(f"CPU has VNNI: {has_vnni()}")
    with torch.no_grad():
        frozen_teacher = torch.jit.freeze(torch.jit.trace(teacher, example).eval())
    models: dict[str, nn.Module] = {"fp32": teacher, "fp32 ts": frozen_teacher}
    for ratio in args.ratios:
        pruned = copy.deepcopy(teacher)
        if ratio:
            pruned = PruningConfig(ratio=ratio).apply_(pruned, ApplyContext(example_inputs=example)).eval()
        layers = {n: m for n, m in pruned.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
        for backend, cpp in (("inductor", False), ("inductor", True), ("fx", False)):
            with inductor_config.patch(cpp_wrapper=cpp):
                start = time.perf_counter()
                form = build_int8(pruned, list(layers), [], layers, example, calibration, threads=1, backend=backend)
                name = f"int8 r={ratio:g}{' cpp' if cpp else ''}{' fx' if backend == 'fx' else ''}"
                models[name] = form.module
                print(f"{name}: built in {time.perf_counter() - start:.1f} s", flush=True)
        start = time.perf_counter()  # the fx program as it ran before issue 25: eager, Python calling each op
        models[f"int8 r={ratio:g} fx eager"] = fx_int8(pruned, list(layers), example, calibration, 1, scripted=False)[0]
        print(f"int8 r={ratio:g} fx eager: built in {time.perf_counter() - start:.1f} s", flush=True)
    ms: dict[str, list[float]] = {name: [] for name in models}
    with torch.no_grad():
        for model in models.values():
            for _ in range(20):  # warm up: first calls allocate and, for int8, finish compiling
                model(*example)
        for block in range(args.blocks):
            items = list(models.items())
            for name, model in items if block % 2 == 0 else items[::-1]:
                timer = benchmark.Timer("m(*x)", globals={"m": model, "x": example}, num_threads=1)
                ms[name].append(timer.blocked_autorange(min_run_time=1.0).median * 1e3)
    fp32 = statistics.median(ms["fp32"])
    print("model                wall ms  speed-up  oneDNN kernels ms (primitives)  overhead ms  blocks ms")
    for name, model in models.items():
        wall = statistics.median(ms[name])
        kernels = [kernel_ms(model, example) for _ in range(5)] if name.startswith("int8") else []
        k = statistics.median(t for t, _ in kernels) if kernels else float("nan")
        count = kernels[0][1] if kernels else 0
        print(
            f"{name:20s} {wall:7.3f}  {fp32 / wall:7.2f}x  {k:17.3f} ({count:2d})  {wall - k:18.3f}  "
            f"{[round(v, 3) for v in ms[name]]}"
        )
    print("wall: measured (torch.utils.benchmark, batch 1, one thread); kernels: oneDNN's verbose exec times")


if __name__ == "__main__":
    main()
