"""Every example in a public docstring runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import tradeoff.objectives
import tradeoff.search
import tradeoff.spaces
import tradeoff.studies

MODULES = sorted(
    f"{pkg.__name__}.{info.name}"
    for pkg in (tradeoff.spaces, tradeoff.objectives, tradeoff.studies, tradeoff.search)
    for info in pkgutil.iter_modules(pkg.__path__)
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
