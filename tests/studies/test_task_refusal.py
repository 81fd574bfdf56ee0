"""A task reference that is clearly not a task factory is refused before it could be called."""

from __future__ import annotations

import functools
import sys
import sysconfig
from pathlib import Path

import pytest

from tradeoff.studies import SpecError, TaskError, load_task, parse_spec
from tradeoff.studies.tasks import _in_stdlib, check_task_arguments, refuse_non_factory, resolve_task

REFUSED = {
    "os:system": "names a function of Python's standard library",
    "subprocess:run": "names a function of Python's standard library",
    "shutil:rmtree": "names a function of Python's standard library",
    "posix:system": "names a function of Python's standard library",  # os.system's C module
    "subprocess:Popen": "names a class of Python's standard library",
    "builtins:eval": "names a Python built-in",
    "builtins:exec": "names a Python built-in",
    "torch:zeros": "names a compiled callable without Python source (torch.zeros)",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_builtins_stdlib_and_compiled_functions_are_refused(name: str) -> None:
    with pytest.raises(TaskError) as refused:
        resolve_task(name)
    assert str(refused.value) == (
        f"task {name!r} {REFUSED[name]}, not a task factory; "
        "name a function that returns tradeoff.studies.Task (README: 'Your own model')."
    )


def test_os_system_is_refused_and_its_command_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    kwargs = {"command": f"touch {marker}"}
    with pytest.raises(TaskError, match="standard library, not a task factory"):
        load_task("os:system", kwargs)
    with pytest.raises(TaskError, match="standard library"):
        check_task_arguments("os:system", kwargs)
    with pytest.raises(SpecError, match=r"task: task 'os:system' names a function of Python's standard library"):
        parse_spec({"study": {"name": "s"}, "task": {"name": "os:system", **kwargs}})
    with pytest.raises(TaskError, match="standard library"):  # the arguments need not bind to be refused
        load_task("shutil:rmtree", {"no_such_argument": str(tmp_path)})
    assert not marker.exists() and tmp_path.exists()


def test_a_user_module_re_exporting_a_stdlib_function_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "mytasks.py").write_text("from os import system as make_task\nfrom subprocess import run\n")
    for func in ("make_task", "run"):
        with pytest.raises(TaskError, match="standard library, not a task factory"):
            load_task(
                f"{tmp_path / 'mytasks.py'}:{func}", {"command": f"touch {marker}"} if func == "make_task" else {}
            )
    assert not marker.exists()


def test_builtin_and_user_tasks_still_resolve() -> None:
    assert resolve_task("digits").__name__ == "digits"
    assert resolve_task("fashion-mnist").__name__ == "fashion_mnist"
    assert resolve_task("tradeoff.studies.builtin_tasks:digits").__name__ == "digits"
    assert resolve_task("tests.studies.user_task:make_task").__name__ == "make_task"
    assert resolve_task("torch.nn:Linear") is not None  # a Python class of an installed package is not refused


def test_python_callables_of_every_shape_outside_the_stdlib_pass(tmp_path: Path) -> None:
    (tmp_path / "shapes.py").write_text(
        "import functools\n"
        "from tests.studies.user_task import make_task\n"
        "cached = functools.cache(make_task)\n"
        "four = functools.partial(make_task, classes=4)\n"
        "class Factory:\n"
        "    def __call__(self, classes=3):\n"
        "        return make_task(classes=classes)\n"
        "factory = Factory()\n"
        "bound = Factory().__call__\n"
        "dispatched = functools.singledispatch(make_task)\n"  # a Python wrapper of the stdlib's around yours
        "@functools.wraps(make_task)\n"
        "def decorated(*args, **kwargs):\n"
        "    return make_task(*args, **kwargs)\n"
    )
    for func in ("make_task", "cached", "four", "factory", "bound", "Factory", "dispatched", "decorated"):
        assert callable(resolve_task(f"{tmp_path / 'shapes.py'}:{func}")), func
    four = load_task(f"{tmp_path / 'shapes.py'}:four")
    assert four.model(four.example_inputs[0]).shape[-1] == 4
    assert load_task(f"{tmp_path / 'shapes.py'}:factory", {"classes": 2}).name == "user-mlp"


def test_stdlib_is_told_by_where_the_code_lives_not_by_the_module_name(tmp_path: Path) -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    assert _in_stdlib(str(stdlib / "os.py"))
    assert not _in_stdlib(sysconfig.get_paths()["purelib"] + "/torch/__init__.py")  # inside a venv's lib folder
    assert not _in_stdlib(str(stdlib / "site-packages" / "pkg" / "mod.py"))  # site-packages inside the stdlib folder
    assert not _in_stdlib(str(tmp_path / "test" / "tasks.py"))
    # a user's package may share a stdlib module's name ("code", "email", ...): its code is the user's
    (tmp_path / "mytask.py").write_text("def build():\n    pass\n")
    build = resolve_task(f"{tmp_path / 'mytask.py'}:build")
    build.__module__ = "code.mytask"
    assert "code" in sys.stdlib_module_names
    refuse_non_factory("code.mytask:build", build)


def test_a_stdlib_function_behind_a_partial_or_a_cache_is_still_refused() -> None:
    import os

    wrapped = functools.partial(os.system, "true")
    with pytest.raises(TaskError, match="standard library"):
        refuse_non_factory("mine:wrapped", wrapped)
    with pytest.raises(TaskError, match="standard library"):
        refuse_non_factory("mine:cached", functools.cache(os.getcwd))
    with pytest.raises(TaskError, match="standard library"):
        refuse_non_factory("mine:dispatched", functools.singledispatch(os.getcwd))
