"""What can be quantized, and to which widths: the one home of these facts.

:mod:`~tradeoff.spaces.quantization` (fake-quant), :mod:`~tradeoff.spaces.deploy` (the executable
form), :mod:`~tradeoff.spaces.int8` and the study spec all read them from here.

Example:
    >>> INT8_MAX_BITS in WEIGHT_BITS, sorted(FLOAT16_KINDS)
    (True, ['bf16', 'fp16'])
"""

from __future__ import annotations

import torch
from torch import nn

# 16 = a 16-bit float, 32 = left in fp32; 2-8 are integer grids (2 bits is the narrowest symmetric grid)
WEIGHT_BITS: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8, 16, 32)
# below 4 bits the activations of small nets collapse; 16 = a 16-bit float, 32 = unquantized
ACTIVATION_BITS: tuple[int, ...] = (4, 5, 6, 7, 8, 16, 32)
INT8_MAX_BITS = 8  # widths up to 8 execute as int8 (the nearest executable form), wider ones do not
# what "16 bits" means, by name: the two 16-bit floats PyTorch has kernels for
FLOAT16_KINDS: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}
# the layers whose widths are chosen and whose channels are pruned: the ones holding most weights and MACs
WEIGHT_LAYERS: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
