"""The fine-tuning rate derived, not fixed (``lr = "auto"``): :func:`find_lr`, a learning-rate range test.

After Smith ("Cyclical learning rates", 2017): on a copy of the teacher, in fine-tuning mode, Adam takes
one step per cached training batch at rates rising 10x every :data:`RANGE_STEPS_PER_DECADE` steps
from :data:`RANGE_LOW`, and after each step the copy's outputs on a fixed probe batch are compared
with the teacher's cached ones (KL divergence at ``T = 1``). The first rate at which that
divergence passes :data:`RANGE_KL_LIMIT` is where steps start to destroy what the network knows;
the rate used is the test's previous one, :data:`RANGE_SAFETY` lower, clipped to
``[RANGE_LOW, RANGE_HIGH]``. (A decade lower, the usual range-test margin, left heavily pruned
``digits`` students unrecovered: 75 % pruned ended at 0.53 after 200 steps, against 0.97 at 1e-3.)

It runs once per study, on the teacher, before any trial; the students near the teacher fine-tune at
the rate it finds (``tradeoff.spaces.distillation``, "near").
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._base import as_args
from .distillation import Batch, distillation_loss, tuning_mode

__all__ = [
    "RANGE_HIGH",
    "RANGE_KL_LIMIT",
    "RANGE_LOW",
    "RANGE_SAFETY",
    "RANGE_STEPS_PER_DECADE",
    "LrFinding",
    "find_lr",
]

RANGE_LOW, RANGE_HIGH = 1e-6, 1e-2  # the rates the range test spans: below 1e-6 nothing moves in 200 steps;
# above 1e-2 Adam rewrites trained weights wholesale
RANGE_STEPS_PER_DECADE = 8  # 32 steps over the four decades: enough resolution for a /10 safety margin
RANGE_KL_LIMIT = 0.02  # nats of KL(teacher || copy) on the probe batch: ~1-2 % of top-1 answers changed
RANGE_SAFETY = 10 ** (1 / RANGE_STEPS_PER_DECADE)  # the last rate of the test that did no damage


@dataclass(frozen=True)
class LrFinding:
    """What :func:`find_lr` measured and the rate it chose.

    Args:
        lr: The rate to fine-tune with.
        divergence_lr: The first rate whose step pushed the probe divergence past the limit
            (``None``: none did, up to the top of the range).
        lrs: The rate of each step of the test.
        divergence: KL(teacher || copy) on the probe batch after each step, in nats.
        rule: The rule, in words, for the record.
    """

    lr: float
    divergence_lr: float | None
    lrs: list[float] = field(default_factory=list)
    divergence: list[float] = field(default_factory=list)
    rule: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "divergence_lr": self.divergence_lr,
            "rule": self.rule,
            "curve": [[round(a, 9), round(b, 6)] for a, b in zip(self.lrs, self.divergence, strict=True)],
        }


def find_lr(
    teacher: nn.Module,
    train: Sequence[Batch],
    teacher_logits: Sequence[torch.Tensor],
    *,
    temperature: float = 4.0,
    alpha: float = 0.5,
    batchnorm: str = "frozen",
    seed: int = 0,
) -> LrFinding:
    """The fine-tuning rate for this network: a decade below where a range test sees damage begin.

    The rule is in the module docstring. The test runs on a copy (the teacher is not touched),
    :data:`RANGE_STEPS_PER_DECADE` steps a decade from :data:`RANGE_LOW` to :data:`RANGE_HIGH`,
    cycling through ``train``; the probe is the first training batch, whose teacher outputs are
    cached. It costs about 32 training steps and as many probe forward passes, once per study.

    Example:
        >>> from tradeoff.spaces import cache_teacher_outputs
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
        >>> data = [(torch.randn(32, 4), torch.randint(0, 3, (32,))) for _ in range(4)]
        >>> found = find_lr(net, data, cache_teacher_outputs(net, data))
        >>> RANGE_LOW <= found.lr <= RANGE_HIGH and len(found.lrs) == len(found.divergence)
        True
    """
    if not train:
        raise ValueError("find_lr needs training batches to take its steps on; the task's train is empty.")
    copy_ = copy.deepcopy(teacher)
    opt = torch.optim.Adam(copy_.parameters(), lr=RANGE_LOW)
    probe, probe_logits = as_args(train[0][0]), F.log_softmax(teacher_logits[0].float(), dim=-1)
    decades = math.log10(RANGE_HIGH / RANGE_LOW)
    n = round(decades * RANGE_STEPS_PER_DECADE) + 1
    lrs = [RANGE_LOW * 10 ** (k / RANGE_STEPS_PER_DECADE) for k in range(n)]
    divergence: list[float] = []
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train), generator=generator).tolist()
    first_bad = None
    for k, lr in enumerate(lrs):
        inputs, targets = train[order[k % len(order)]]
        tuning_mode(copy_, batchnorm)
        loss = distillation_loss(
            copy_(*as_args(inputs)), teacher_logits[order[k % len(order)]], targets, temperature, alpha
        )
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        copy_.eval()
        with torch.no_grad():
            out = F.log_softmax(copy_(*probe).float(), dim=-1)
            kl = float(F.kl_div(out, probe_logits, reduction="batchmean", log_target=True))
        divergence.append(kl if math.isfinite(kl) else float("inf"))
        if not math.isfinite(kl) or kl > RANGE_KL_LIMIT:
            first_bad = lr
            break
    top = first_bad if first_bad is not None else RANGE_HIGH
    chosen = min(max(top / RANGE_SAFETY, RANGE_LOW), RANGE_HIGH)
    rule = (
        f"range test (Adam, BatchNorm {batchnorm}): KL(teacher || copy) on a probe batch passed "
        f"{RANGE_KL_LIMIT} nats at lr {top:.3g}"
        if first_bad is not None
        else f"range test (Adam, BatchNorm {batchnorm}): KL stayed under {RANGE_KL_LIMIT} nats up to lr {RANGE_HIGH:g}"
    ) + f"; lr = the test's rate before that ({RANGE_SAFETY:.3g}x lower)"
    return LrFinding(chosen, first_bad, lrs[: len(divergence)], divergence, rule)
