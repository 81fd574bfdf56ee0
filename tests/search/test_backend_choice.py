"""The study's int8 builder under ``[target] backend = "auto"``: timed on the teacher, stored, used by every trial."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

from tradeoff.search import Runner, backend_choice
from tradeoff.search.backend_choice import BackendChoice, choose_backend
from tradeoff.spaces import DeployError
from tradeoff.studies import parse_spec, record


def _model_and_inputs() -> tuple[torch.nn.Module, tuple[torch.Tensor, ...], list[tuple[torch.Tensor, ...]]]:
    from tests.studies.user_task import make_task

    task = make_task()
    return task.model, task.example_inputs, [(x,) for x, _ in task.train]


def _spec(name: str = "b", *, backend: str = "auto", activation_bits: tuple[int, ...] = (8,), n: int = 3):
    return parse_spec({
        "study": {"name": name, "n_trials": n, "seed": 0},
        "task": {"name": "tests.studies.user_task:make_task"},
        "target": {"backend": backend},
        "space": {"distillation": {"steps": 5}, "quantization": {"weight_bits": [8], "activation_bits": list(activation_bits)}},
        "search": {"rungs": []},
    })  # fmt: skip


def _int8_backends(study: optuna.Study) -> list[str]:
    """The builder each candidate's timed int8 program came from, as the trial recorded it."""
    out = []
    for t in study.get_trials():
        attrs = record.attrs(t)
        if attrs.get(record.ROLE) == "candidate" and attrs.get(record.DEPLOYABLE_FORM) == "int8":
            out.append(attrs[record.PROVENANCE]["latency_ms"]["deployable_backend"])
    return out


def test_both_builders_are_timed_and_the_faster_is_kept() -> None:
    model, x, calibration = _model_and_inputs()
    choice = choose_backend(model, x, calibration, threads=1)
    assert choice is not None and set(choice.ms) == {"inductor", "fx"} and all(v > 0 for v in choice.ms.values())
    assert choice.backend == min(choice.ms, key=choice.ms.get)  # the faster one, not the first or the default
    assert "measured" in choice.reason and f"fx {choice.ms['fx']:.4g} ms" in choice.reason
    assert BackendChoice.from_json(choice.as_json()) == choice


def test_a_builder_that_cannot_build_the_teacher_loses_and_the_reason_says_why(monkeypatch) -> None:
    model, x, calibration = _model_and_inputs()
    real = backend_choice.build_int8

    def no_inductor(*args, **kwargs):
        if args[-1] == "inductor":
            raise DeployError("inductor could not compile the int8 graph (no C++ compiler)")
        return real(*args, **kwargs)

    monkeypatch.setattr(backend_choice, "build_int8", no_inductor)
    choice = choose_backend(model, x, calibration, threads=1)
    assert choice is not None and choice.backend == "fx" and choice.ms == {}
    assert choice.reason.startswith("inductor could not build the teacher's int8 program: inductor could not compile")

    def nothing(*args, **kwargs):
        raise DeployError("no int8 here")

    monkeypatch.setattr(backend_choice, "build_int8", nothing)
    assert choose_backend(model, x, calibration, threads=1) is None  # the study keeps auto's per-trial fallback


def test_a_bad_choice_is_refused() -> None:
    with pytest.raises(ValueError, match="backend must be one of"):
        BackendChoice("eager", "")


def test_an_auto_study_stores_its_choice_every_int8_trial_uses_it_and_a_resumed_run_reads_it(
    tmp_path: Path, monkeypatch
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = Runner(_spec(), url).run()
    stored = study.user_attrs[record.STUDY_BACKEND]
    assert stored["backend"] in ("inductor", "fx") and set(stored["ms"]) == {"inductor", "fx"}
    used = _int8_backends(study)
    assert used and set(used) == {stored["backend"]}
    # resumed: the stored choice is read, not timed again; store the other builder to see it is the one used
    other = "fx" if stored["backend"] == "inductor" else "inductor"
    study.set_user_attr(record.STUDY_BACKEND, {**stored, "backend": other})

    def timed_again(*args, **kwargs):
        raise AssertionError("a study with a stored choice timed the builders again")

    monkeypatch.setattr("tradeoff.search.trial_env.choose_backend", timed_again)
    resumed = Runner(_spec(), url, n_trials=5).run()
    assert _int8_backends(resumed)[len(used) :] == [other] * (len(_int8_backends(resumed)) - len(used))
    assert len(_int8_backends(resumed)) > len(used)


@pytest.mark.parametrize(("backend", "activation_bits"), [("fx", (8,)), ("auto", (32,))])
def test_a_named_backend_or_a_space_without_int8_times_nothing(
    backend: str, activation_bits: tuple[int, ...], tmp_path: Path, monkeypatch
) -> None:
    def timed(*args, **kwargs):
        raise AssertionError("timed the builders")

    monkeypatch.setattr("tradeoff.search.trial_env.choose_backend", timed)
    study = Runner(_spec(backend=backend, activation_bits=activation_bits), f"sqlite:///{tmp_path / 's.db'}").run()
    assert record.STUDY_BACKEND not in study.user_attrs
    assert set(_int8_backends(study)) <= {"fx"}  # fx as named; no int8 at 32-bit activations
