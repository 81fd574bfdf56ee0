"""How much faster int8 runs than fp32 on this host: the fashion-mnist network at width 64, batch 1, one thread.

Usage:  python benchmarks/int8_speedup.py [--width 64] [--blocks 6]

Random weights (seed 0), every conv/linear layer at 8-bit weights and 8-bit activations, built by the
int8 builder of whichever ``tradeoff`` is imported, then timed against the fp32 eager model with
``torch.utils.benchmark`` at one thread, in ABBA order (fp32/int8, then int8/fp32, ...), each block
``blocked_autorange(min_run_time=1.0)``. Prints both medians and their ratio.

Why it exists: the int8 speed-up sets how fast a compressed config can be at batch 1, and it differs
between hosts that report the same CPU name (docs/BENCHMARKS.md, issue 25 item 6). The script also runs
against older checkouts, whose int8 builder had another name (``deployable_form``), so the code of two
commits can be timed on one host in one sitting: import the old checkout first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.utils import benchmark


def build(model: nn.Module, example: tuple[torch.Tensor, ...], calibration: list[tuple[torch.Tensor, ...]]):
    """The int8 program of ``model`` from the imported tradeoff, and which builder made it."""
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    try:
        from tradeoff.spaces.int8 import build_int8  # 2026-12-06 on
    except ImportError:  # the 2026-12-02 code: one entry point for every form
        from tradeoff.spaces.deploy import deployable_form

        bits = dict.fromkeys(layers, 8)
        form = deployable_form(
            model,
            weight_bits=bits,
            activation_bits=8,
            example_inputs=example,
            calibration=calibration,
            threads=1,
            backend="inductor",
        )
        return form.module, "tradeoff.spaces.deploy.deployable_form"
    form = build_int8(model, list(layers), [], layers, example, calibration, threads=1, backend="inductor")
    return form.module, "tradeoff.spaces.int8.build_int8"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=64, help="FashionResNet width (64: the fashion-mnist teacher)")
    parser.add_argument("--blocks", type=int, default=6, help="timed blocks per model, ABBA (6: 3 of each order)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # batch-1 latency is measured at one thread everywhere in tradeoff
    torch.manual_seed(0)
    try:
        from tradeoff.studies.architectures import FashionResNet
    except ImportError:  # the 2026-12-02 layout
        from tradeoff.studies.tasks import FashionResNet
    fp32 = FashionResNet(width=args.width).eval()
    example = (torch.randn(1, 1, 28, 28),)
    calibration = [(torch.randn(1, 1, 28, 28),) for _ in range(8)]
    start = time.perf_counter()
    int8, builder = build(fp32, example, calibration)
    print(f"built with {builder} in {time.perf_counter() - start:.1f} s")
    ms: dict[str, list[float]] = {"fp32": [], "int8": []}
    with torch.no_grad():
        for _ in range(20):  # warm both up (first calls allocate and, for int8, finish compiling)
            fp32(*example), int8(*example)
        for block in range(args.blocks):
            pair = (("fp32", fp32), ("int8", int8))
            for name, model in pair if block % 2 == 0 else pair[::-1]:
                timer = benchmark.Timer("m(*x)", globals={"m": model, "x": example}, num_threads=1)
                ms[name].append(timer.blocked_autorange(min_run_time=1.0).median * 1e3)
    a, b = statistics.median(ms["fp32"]), statistics.median(ms["int8"])
    print(f"fp32 {a:.3f} ms, int8 {b:.3f} ms, int8 speed-up {a / b:.2f}x (measured, batch 1, one thread)")
    print("blocks (ms):", {k: [round(v, 3) for v in vs] for k, vs in ms.items()})


if __name__ == "__main__":
    main()
