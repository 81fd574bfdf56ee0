"""Bring your own model, example 3: a small transformer that classifies token sequences.

The task is generated in code, deterministically, so nothing is downloaded: a sequence of random
"filler" tokens holds one QUERY token, and the token right after it is one of ``classes`` VALUE
tokens. The label is that value. Other VALUE tokens are sprinkled through the sequence as
distractors, so counting tokens is not enough: a logistic regression on token counts reaches ~44 %
(chance is 1/8); the model must look at *which* token follows the QUERY, i.e. relate two
positions, which is what attention does. A two-block transformer learns it to > 99 % in a few
hundred steps.

Why a transformer compresses differently from a CNN: its weight layers are Linear (attention
projections, the MLP), not convolutions; the residual stream ties every block's input and output
width together (pruning it prunes the embedding, every LayerNorm and every block at once), while
each block's MLP hidden width is free; and attention scores are matrix products between two
activations, which no weight width changes. That is why the spec (``transformer_seq.toml``) gives
the attention projections and the MLPs their own weight widths (``[space] groups`` with
``per_group = true``), keeps one pruning ratio for the coupled widths, and protects the per-head
query/key/value widths from pruning.

Run it with ``tradeoff launch examples/transformer_seq.toml`` from the repository root. tradeoff
never trains the model: :func:`make_task` plays the part of the user's own pretraining, done once
(seeded) and cached on disk.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tradeoff.studies import Task, cached_teacher

# --------------------------------------------------------------------------- the data

QUERY = 0  # token 0 marks the position whose next token is the answer
FILLERS = 16  # filler tokens: enough variety that the model cannot memorise sequences
DISTRACTOR_RATE = 0.25  # share of positions that hold a random VALUE token; makes token counts uninformative


def vocab_size(classes: int) -> int:
    """QUERY, then ``classes`` VALUE tokens (1..classes), then the fillers."""
    return 1 + classes + FILLERS


def make_sequences(n: int, length: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` sequences of ``length`` tokens and their labels, the same for the same arguments.

    Args:
        n: How many sequences.
        length: Tokens per sequence.
        classes: How many VALUE tokens (= classes).
        seed: Seed of the generator; train and validation use different seeds.

    Returns:
        ``(tokens, labels)``: int64 tensors of shape ``(n, length)`` and ``(n,)``.
    """
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1 + classes, vocab_size(classes), (n, length), generator=g)  # fillers
    distractors = torch.randint(1, 1 + classes, (n, length), generator=g)
    tokens = torch.where(torch.rand(n, length, generator=g) < DISTRACTOR_RATE, distractors, tokens)
    labels = torch.randint(0, classes, (n,), generator=g)
    where = torch.randint(0, length - 1, (n,), generator=g)  # the QUERY's position; the answer follows it
    rows = torch.arange(n)
    tokens[rows, where] = QUERY
    tokens[rows, where + 1] = 1 + labels
    return tokens, labels


# --------------------------------------------------------------------------- the model


class SelfAttention(nn.Module):
    """Multi-head self-attention with one ``nn.Linear`` per projection.

    Written out rather than ``nn.MultiheadAttention``, which keeps its query/key/value projection
    as one bare parameter: tools that act on ``nn.Linear`` layers (tradeoff's per-layer widths,
    its MAC count) would not see it. Here every projection is a Linear layer they can quantize.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (proj(x).view(b, n, self.heads, -1).transpose(1, 2) for proj in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v)  # (b, heads, n, head width)
        return self.out(y.transpose(1, 2).reshape(b, n, -1))


class Block(nn.Module):
    """A pre-LayerNorm transformer block: self-attention, then a two-layer MLP, each with a residual."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class SeqTransformer(nn.Module):
    """Token + positional embedding, ``depth`` blocks, mean over positions, LayerNorm, Linear head.

    Args:
        vocab: Number of distinct tokens.
        length: Longest sequence (positions get learned embeddings).
        classes: Output classes.
        dim: Width of the residual stream (a multiple of ``heads``).
        heads: Attention heads per block.
        hidden: Hidden width of each block's MLP.
        depth: Number of blocks.
    """

    def __init__(
        self, vocab: int, length: int, classes: int, dim: int = 64, heads: int = 4, hidden: int = 256, depth: int = 2
    ) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(length, dim)  # an Embedding, not a bare Parameter: pruning can follow it
        self.blocks = nn.Sequential(*(Block(dim, heads, hidden) for _ in range(depth)))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.blocks(self.tok(tokens) + self.pos(positions))
        return self.head(self.ln(x).mean(dim=1))


# --------------------------------------------------------------------------- the user's own pretraining


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``, in batches of 1000."""
    model.eval()
    with torch.no_grad():
        hits = sum(int((model(x[i : i + 1000]).argmax(1) == y[i : i + 1000]).sum()) for i in range(0, len(x), 1000))
    return hits / len(x)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: dict[str, Any]) -> None:
    """AdamW with a cosine schedule to zero over ``settings["epochs"]`` seeded shuffles of ``(x, y)``.

    No warm-up: the rule is found at full learning rate after ~100-250 steps (5 seeds tried), and a
    warm-up spends those steps at a fraction of it.
    """
    torch.manual_seed(settings["seed"])
    batch, epochs = settings["batch_size"], settings["epochs"]
    steps = epochs * (len(x) // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x) - batch + 1, batch):  # drop the last partial batch: every step the same size
            idx = order[i : i + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()


# --------------------------------------------------------------------------- the task tradeoff compresses


def make_task(
    *,
    train_size: int = 20_000,  # 156 steps an epoch at batch 128; fresh sequences, so no overfitting
    val_size: int = 2_000,  # 2,000 held-out sequences: accuracy to within ~1 point
    length: int = 16,  # tokens per sequence: long enough that the answer's position varies a lot
    classes: int = 8,  # chance is 12.5 %, token counts give ~44 %
    epochs: int = 3,  # ~470 steps: the rule is found after ~100-250 (5 seeds tried), then refined
    dim: int = 64,  # residual width, 4 heads of 16: finds the rule within ~250 steps (5 seeds tried)
    hidden: int = 256,  # MLP width 4x dim, as in most transformers: the part pruning can thin freely
    seed: int = 0,  # seeds the data, the initial weights and the training order
    batch_size: int = 64,  # batches tradeoff fine-tunes and calibrates on
) -> Task:
    """The sequence classifier and its data, teacher trained once and cached.

    Args:
        train_size: Training sequences (teacher training and tradeoff's fine-tuning).
        val_size: Held-out sequences tradeoff measures accuracy on.
        length: Tokens per sequence.
        classes: Number of VALUE tokens, i.e. classes.
        epochs: Teacher training epochs.
        dim: Width of the residual stream.
        hidden: Hidden width of each block's MLP.
        seed: Seed of the data and of the teacher's training.
        batch_size: Batch size of the training batches handed to tradeoff.
    """
    x_train, y_train = make_sequences(train_size, length, classes, seed)
    x_val, y_val = make_sequences(val_size, length, classes, seed + 1)  # another seed: held-out sequences
    torch.manual_seed(seed)
    model = SeqTransformer(vocab_size(classes), length, classes, dim=dim, hidden=hidden)
    settings = {
        "arch": "SeqTransformer/v1",  # bump when the class above changes: old cached weights no longer fit
        "train_size": train_size,
        "length": length,
        "classes": classes,
        "dim": dim,
        "hidden": hidden,
        "epochs": epochs,
        "lr": 3e-3,  # high for a transformer, fine for one this small with pre-LayerNorm; finds the rule fastest
        "weight_decay": 0.01,  # AdamW's usual light decay
        "batch_size": 128,  # big enough for smooth gradients, small enough for many steps per epoch
        "seed": seed,
    }
    info = cached_teacher(  # trained once (seeded, one thread), then loaded from the cache
        model,
        name="examples/transformer-seq",  # in $TRADEOFF_CACHE_DIR/examples/, else ~/.cache/tradeoff/examples/
        recipe=settings,  # the file is named by a hash of these: changing any of them trains anew
        train=lambda m: train(m, x_train, y_train, settings),
        seed=seed,
    )
    info["teacher_val_accuracy"] = accuracy(model, x_val, y_val)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(train_size, generator=g)  # one seeded shuffle; tradeoff reshuffles batches per trial
    batches = [
        (x_train[order[i : i + batch_size]], y_train[order[i : i + batch_size]])
        for i in range(0, train_size, batch_size)
    ]
    val = [(x_val[i : i + 500], y_val[i : i + 500]) for i in range(0, val_size, 500)]
    return Task(
        name="transformer-seq",
        model=model.eval(),
        train=batches,
        val=val,
        example_inputs=(x_val[:1],),  # one sequence: tradeoff repeats it to the target's batch size
        info=info,
    )
