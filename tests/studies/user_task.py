"""A user task as a user would write one: ``"tests.studies.user_task:make_task"`` in a spec."""

from __future__ import annotations

import torch
from torch import nn

from tradeoff.studies import Task


def make_task(*, classes: int = 3, seed: int = 0) -> Task:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(96, 12, generator=g)
    y = (x[:, :classes].argmax(dim=1)).long()  # a learnable rule
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, classes))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[:64]), y[:64]).backward()
        opt.step()
    train = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    val = [(x[64:], y[64:])]
    return Task(name="user-mlp", model=model.eval(), train=train, val=val, example_inputs=(x[:1],))


def not_a_task() -> str:
    return "a string"


def broken(**kwargs: object) -> Task:
    raise RuntimeError("the user's data server is down")


def _variant(**changes: object) -> Task:
    import dataclasses

    return dataclasses.replace(make_task(), **changes)


def val_not_pairs() -> Task:
    t = make_task()
    return _variant(val=[x for x, _ in t.val])


def val_mismatched() -> Task:
    t = make_task()
    x, y = t.val[0]
    return _variant(val=[(x, y[:-3])])


def metric_tensor() -> Task:
    return _variant(metric=lambda out, y: (out.argmax(-1) == y).float().mean())


def empty_val() -> Task:
    return _variant(val=[])


def half_model() -> Task:
    task = make_task()
    return _variant(model=task.model.half())


def inputs_on_meta() -> Task:
    t = make_task()
    return _variant(example_inputs=(t.example_inputs[0].to("meta"),))


class _FixedWidthNet(nn.Module):
    """A model whose forward hard-codes a layer's width: structured pruning cannot keep it running."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(12, 32)
        self.head = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.body(x)).view(-1, 4, 8)  # 32 features assumed
        return self.head(h.flatten(1))


def make_fixed_width_task() -> Task:
    task = make_task()
    torch.manual_seed(0)
    return Task(
        name="fixed-width",
        model=_FixedWidthNet().eval(),
        train=task.train,
        val=task.val,
        example_inputs=task.example_inputs,
    )


class _Faulty(nn.Module):
    """An MLP that misbehaves once its hidden layer was pruned (a recipe it cannot take)."""

    def __init__(self, trained: nn.Sequential, mode: str) -> None:
        super().__init__()
        self.body = nn.Sequential(trained[0], trained[1])
        self.head = trained[2]
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        if h.shape[1] != 32:  # pruned
            if self.mode == "nan":
                return self.head(h) * float("nan")
            if self.mode == "oom":
                torch.empty(1 << 50)  # 4 PiB of float32: no host allocates it, the allocator says so
            if self.mode == "raise":
                raise ValueError("this model cannot take pruning")
        return self.head(h)


def faulty(*, mode: str = "raise") -> Task:
    """``make_task``'s network, failing in ``mode`` ("raise", "nan", "oom") once a trial prunes it."""
    task = make_task()
    return _variant(model=_Faulty(task.model, mode).eval())
