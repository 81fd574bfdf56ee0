"""The import rule of docs/DESIGN.md, enforced: imports flow one way between the four rooms.

``spaces`` and ``objectives`` know nothing of each other or of studies; ``studies`` may import
both; ``search`` imports everything. A room never imports another room's private (``_name``)
module: what a room offers the others is its package's public names and public modules. Within
the package, no two modules import each other at load time.

The check reads the source (``ast``), so it sees every import, also those inside functions, and
runs nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("spaces", "objectives", "studies", "search")
ALLOWED = {  # room -> rooms it may import (besides itself)
    "spaces": set(),
    "objectives": set(),
    "studies": {"spaces", "objectives"},
    "search": {"spaces", "objectives", "studies"},
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return "tradeoff." + ".".join(parts)


def _sources() -> dict[str, Path]:
    return {_module_name(p): p for room in ROOMS for p in sorted((ROOT / room).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str, path: Path, known: set[str], *, load_time_only: bool = False) -> list[tuple[int, str]]:
    """``(line, imported module)`` for every import in ``path``, relative imports resolved.

    ``from pkg import name`` yields ``pkg.name`` when that is one of the ``known`` modules, else ``pkg``.
    With ``load_time_only``, only imports that run when the module loads (top level, not inside a
    function or an ``if TYPE_CHECKING`` block).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[tuple[int, str]] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                out.extend((node.lineno, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    out.append((node.lineno, sub if sub in known else target))
            elif isinstance(node, ast.If) and load_time_only and _is_type_checking(node):
                visit(node.orelse)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and load_time_only:
                continue
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    visit([n for n in getattr(node, field, []) if isinstance(n, ast.AST)])  # type: ignore[misc]

    visit(tree.body)
    return sorted(set(out))


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "tradeoff" and parts[1] in ROOMS else None


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def rule_breaks(sources: dict[str, Path]) -> list[str]:
    """Every import that goes against the one-way rule or reaches into another room's private module."""
    problems = []
    for module, path in sources.items():
        mine = _room(module)
        for line, target in imports_of(module, path, set(sources)):
            theirs = _room(target)
            if theirs is None or theirs == mine:
                continue
            where = f"{_shown(path)}:{line} imports {target}"
            if theirs not in ALLOWED[mine]:
                problems.append(f"{where}: {mine} may not import {theirs} (docs/DESIGN.md, 'The import rule')")
            private = [p for p in target.split(".")[2:] if p.startswith("_")]
            if private:
                problems.append(f"{where}: {private[0]} is private to {theirs}; import a public name of tradeoff.{theirs}")
    return problems


def cycles(sources: dict[str, Path], *, load_time_only: bool = False) -> list[list[str]]:
    """Cycles in the graph of imports between our modules: every import, also one deferred into a
    function (a deferred import that closes a cycle hides it; it does not remove it), unless
    ``load_time_only``. A package's ``__init__`` importing its own modules is how a package is built,
    so edges into a parent package count only from outside it."""
    graph: dict[str, set[str]] = {m: set() for m in sources}
    for module, path in sources.items():
        for _, target in imports_of(module, path, set(sources), load_time_only=load_time_only):
            if target in sources and target != module and not module.startswith(target + "."):
                graph[module].add(target)
    found, state = [], dict.fromkeys(graph, 0)  # 0 new, 1 on the stack, 2 done

    def walk(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state[nxt] == 1:
                found.append(stack[stack.index(nxt) :] + [nxt])
            elif state[nxt] == 0:
                walk(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if state[node] == 0:
            walk(node, [])
    return found


def test_imports_flow_one_way_and_never_into_another_rooms_private_modules() -> None:
    problems = rule_breaks(_sources())
    assert not problems, "\n".join(problems)


def test_no_two_modules_import_each_other() -> None:
    found = cycles(_sources())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


@pytest.mark.parametrize(
    ("room", "code", "expected"),
    [
        ("studies", "from tradeoff.spaces._groups import auto_groups\n", "private to spaces"),
        ("spaces", "from tradeoff.objectives import top1\n", "spaces may not import objectives"),
        ("objectives", "import tradeoff.studies.record\n", "objectives may not import studies"),
        ("studies", "from tradeoff.search import Runner\n", "studies may not import search"),
    ],
)
def test_the_check_catches_what_it_forbids(tmp_path: Path, room: str, code: str, expected: str) -> None:
    """The rule is not vacuous: each kind of break, planted in a module of ``room``, is reported."""
    (tmp_path / "planted.py").write_text(code)
    problems = rule_breaks({**_sources(), f"tradeoff.{room}.planted": tmp_path / "planted.py"})
    assert any(expected in p and p.startswith("planted.py") for p in problems), problems


def test_the_cycle_check_catches_a_cycle(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from tradeoff.objectives import b\n")
    (tmp_path / "b.py").write_text("import tradeoff.objectives.a\n\n\ndef f():\n    import tradeoff.objectives.c\n")
    (tmp_path / "c.py").write_text("from tradeoff.objectives import a\n")
    sources = {f"tradeoff.objectives.{n}": tmp_path / f"{n}.py" for n in "abc"}
    # a <-> b at load time; a -> b -> c -> a only through an import deferred into a function
    assert [sorted(set(c)) for c in cycles(sources, load_time_only=True)] == [["tradeoff.objectives.a", "tradeoff.objectives.b"]]
    assert len(cycles(sources)) == 2
