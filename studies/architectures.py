"""The built-in tasks' teacher architectures, public so that examples and benchmarks can reuse them.

Example:
    >>> import torch
    >>> DigitsCNN()(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    >>> FashionResNet(width=8)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import torch
from torch import nn


class DigitsCNN(nn.Module):
    """The digits teacher: three 3x3 conv blocks with BatchNorm, global pooling, a linear head.

    Wide enough (32-64-64 channels) that pruning has real channels to remove; ~56 k parameters.

    Args:
        width: Channels of the first conv; the others have ``2 * width``.
        classes: Output classes.
    """

    def __init__(self, width: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.classifier = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 conv-BN, identity (or 1x1 conv-BN) shortcut, ReLU after the sum.

    Args:
        c_in: Input channels.
        c_out: Output channels.
        stride: 2 halves the image's height and width (the shortcut then is a strided 1x1 conv-BN).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class FashionResNet(nn.Module):
    """The fashion-mnist teacher: a small ResNet. Stem conv at 28x28, max-pool, then three stages of
    one basic block each at 14x14, 7x7 and 4x4 with widths ``w, 2w, 4w``.

    w = 64 (the built-in default): ~1.2 M parameters, ~41 M MACs per image: enough work per forward
    pass that int8 kernels and pruning change batch-1 latency (int8 3.2x faster here; at w = 32,
    ~10 M MACs, per-operator overhead holds it to 1.4x), and small enough to train in ~17 min at one
    thread and to fine-tune for a few hundred steps a trial.

    Args:
        width: Stem channels ``w``; the stages have ``w, 2w, 4w``.
        classes: Output classes.
    """

    def __init__(self, width: int = 32, classes: int = 10) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(1, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2))
        self.layer1 = BasicBlock(w, w)
        self.layer2 = BasicBlock(w, 2 * w, 2)
        self.layer3 = BasicBlock(2 * w, 4 * w, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.pool(x).flatten(1))


class TinyMobileNet(nn.Module):
    """A MobileNet-style network for 1-channel images: depthwise-separable blocks, ReLU6, BatchNorm.

    A 3x3 stem conv-BN-ReLU6, then three blocks of a depthwise 3x3 conv (``groups`` = its channels)
    -BN-ReLU6 and a pointwise 1x1 conv-BN-ReLU6, widening ``w -> 2w -> 4w -> 4w``; the second block's
    depthwise conv is strided (8x8 -> 4x4). Global average pooling, a Linear head. For 28x28 images a
    strided stem (``stem_stride=2``, as MobileNet's own) makes it 28 -> 14 -> 7: four times fewer
    MACs, and a receptive field that covers the object rather than a third of it.

    It stands for the pretrained depthwise-separable networks users bring (issue 26): each depthwise
    filter sees one channel only, so its BatchNorm statistics and 8-bit grid are per-channel fragile
    in a way full convolutions are not. w = 32: ~31 k parameters, ~0.5 M MACs per 8x8 image.

    Args:
        width: Stem channels ``w``; the blocks widen to ``2w`` and ``4w``.
        classes: Output classes.
        stem_stride: 1 for small images (8x8 digits), 2 for 28x28 ones.

    Example:
        >>> TinyMobileNet(width=8)(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
        >>> TinyMobileNet(width=8, stem_stride=2)(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
        >>> sum(p.numel() for p in TinyMobileNet().parameters())
        31370
    """

    def __init__(self, width: int = 32, classes: int = 10, stem_stride: int = 1) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(1, w, 3, stem_stride, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU6())
        self.blocks = nn.Sequential(
            self._separable(w, 2 * w, stride=1),
            self._separable(2 * w, 4 * w, stride=2),  # the one strided block: halves height and width
            self._separable(4 * w, 4 * w, stride=1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * w, classes)

    @staticmethod
    def _separable(c_in: int, c_out: int, stride: int) -> nn.Sequential:
        """Depthwise 3x3 conv-BN-ReLU6, then pointwise 1x1 conv-BN-ReLU6."""
        return nn.Sequential(
            nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False), nn.BatchNorm2d(c_in), nn.ReLU6(),
            nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU6(),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.blocks(self.stem(x))).flatten(1))
