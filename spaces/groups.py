"""Layer groups: which layers a per-group knob (a pruning ratio, a weight width) applies to.

A group is named in the spec and selects layers by their qualified module names with glob
patterns (``fnmatch``): ``"layer1"`` selects ``layer1`` and everything inside it, ``"layer[34]"``
selects two stages, ``"*.conv1"`` every block's first conv. A config stores its per-group values
keyed by the group's patterns (comma-separated), so the config alone says which layers it means:
the group names only name the trial's parameters (``pruning.ratio@stage1``).

The first group that selects a layer gives its value; layers no group selects take the config's
default value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any, TypeVar

from torch import nn

from .widths import WEIGHT_LAYERS

V = TypeVar("V")
GROUP_SEP = "@"  # trial parameter of a group: "<technique>.<field>@<group name>"


def selects(key: str, name: str) -> bool:
    """Whether a group key (comma-separated glob patterns) selects the module called ``name``.

    A pattern selects the module it names and every module inside it.

    Example:
        >>> selects("layer1", "layer1.0.conv1"), selects("layer[34]", "layer2.conv"), selects("*.fc,head", "head")
        (True, False, True)
    """
    for pattern in (p.strip() for p in key.split(",")):
        if pattern and (fnmatchcase(name, pattern) or fnmatchcase(name, pattern + ".*")):
            return True
    return False


def value_for(name: str, groups: Mapping[str, V], default: V) -> V:
    """The value the first selecting group gives layer ``name``, else ``default``.

    Example:
        >>> value_for("layer2.0.conv1", {"layer1": 0.1, "layer2": 0.5}, 0.3)
        0.5
    """
    for key, value in groups.items():
        if selects(key, name):
            return value
    return default


def weight_layer_names(model: nn.Module) -> list[str]:
    """Qualified names of the conv and linear layers, in module order.

    Example:
        >>> weight_layer_names(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)))
        ['0', '2']
    """
    return [n for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)]


def unmatched_keys(groups: Iterable[str], names: Iterable[str]) -> list[str]:
    """Group keys that select no layer (a typo in the spec, usually).

    Example:
        >>> unmatched_keys(["layer1", "layr2"], ["layer1.conv", "layer2.conv"])
        ['layr2']
    """
    names = list(names)
    return [key for key in groups if not any(selects(key, n) for n in names)]


def auto_groups(model: nn.Module) -> dict[str, str]:
    """One group per top-level child module that holds conv or linear layers, named after it.

    Example:
        >>> auto_groups(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)))
        {'0': '0', '2': '2'}
    """
    out: dict[str, str] = {}
    for child_name, child in model.named_children():
        if isinstance(child, WEIGHT_LAYERS) or any(isinstance(m, WEIGHT_LAYERS) for m in child.modules()):
            out[child_name] = child_name
    return out


def check_groups(groups: Mapping[str, Any], what: str) -> None:
    """Keys must be non-empty pattern strings; raise ``ValueError`` naming the bad one.

    Example:
        >>> check_groups({"layer1": 0.5}, "pruning")
        >>> check_groups({"": 0.5}, "pruning")
        Traceback (most recent call last):
        ...
        ValueError: pruning group key must be a non-empty layer pattern such as 'layer1', got ''.
    """
    if not isinstance(groups, Mapping):
        raise TypeError(f"{what} groups must be a mapping of layer patterns to values, got {type(groups).__name__}.")
    for key in groups:
        if not isinstance(key, str) or not key.strip(",").strip():
            raise ValueError(f"{what} group key must be a non-empty layer pattern such as 'layer1', got {key!r}.")
