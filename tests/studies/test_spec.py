from __future__ import annotations

import tomllib

import pytest

from tradeoff.studies import SpecError, demo_spec, load_spec, parse_spec
from tradeoff.studies.spec import demo_spec_text

MINIMAL = {"study": {"name": "s"}, "task": {"name": "digits"}}


def test_demo_spec_is_valid_and_builds_the_domain_objects() -> None:
    spec = demo_spec()
    assert spec.study.name == "digits-demo" and spec.task.name == "digits"
    space = spec.recipe_space()
    assert space.quantization.weight_bits == (4, 8, 32)
    assert spec.weights()["accuracy"] == 0.6
    assert spec.objective_names() == ("accuracy", "size_bytes", "latency_ms", "energy_mj")
    assert spec.target.energy == "auto"
    assert spec.constraints_().max_accuracy_drop == 0.03
    assert parse_spec(tomllib.loads(demo_spec_text())).to_dict() == spec.to_dict()


def test_minimal_spec_gets_documented_defaults() -> None:
    spec = parse_spec(MINIMAL)
    assert spec.target.threads == 1 and spec.target.batch_size == 1
    assert spec.study.sampler == "auto" and spec.space.pruning.ratio == (0.0, 0.8)


@pytest.mark.parametrize(
    "patch,expected",
    [
        ({"study": {"name": "s", "trials": 3}}, "study.trials: unknown field"),
        ({"study": {"name": "s", "n_trials": "40"}}, "study.n_trials: Input should be a valid integer; got '40'"),
        ({"space": {"pruning": {"ratio": [0.2, 1.0]}}}, "space.pruning.ratio[1]: Input should be less than 1; got 1.0"),
        (
            {"space": {"pruning": {"ratio": [-0.1, 0.5]}}},
            "space.pruning.ratio[0]: Input should be greater than or equal to 0",
        ),
        ({"space": {"pruning": {"ratio": [0.6, 0.2]}}}, "space.pruning.ratio must be [low, high] with low <= high"),
        (
            {"space": {"quantization": {"weight_bits": [4, 12]}}},
            "space.quantization.weight_bits[1]: Input should be 2, 3, 4",
        ),
        ({"task": {"name": "imagenet"}}, "unknown task 'imagenet'"),
        ({"task": {"name": "digits", "colour": 1}}, "does not accept arguments ['colour']"),
        (
            {"study": {"name": "s", "sampler": "cmaes"}},
            "study.sampler: Input should be 'auto', 'tpe', 'gp', 'nsga2', 'nsga3', 'random' or 'exact'",
        ),
        ({"search": {"rungs": [0.5, 0.25]}}, "search.rungs: must be strictly increasing fractions in (0, 1)"),
        ({"search": {"rungs": [0.5, 1.0]}}, "search.rungs[1]: Input should be less than 1"),
        ({"search": {"warm_start": "int8"}}, "search.warm_start: must be 'auto' or a list of tables of knob values"),
        ({"search": {"stop_dominated_by": 0}}, "search.stop_dominated_by: Input should be greater than or equal to 1"),
        ({"search": {"workers": 0}}, "search.workers: must be a positive number of worker processes or 'auto', got 0"),
        (
            {"search": {"stop_infeasible_after": -1}},
            "search.stop_infeasible_after: Input should be greater than or equal to 0",
        ),
        ({"search": {"screening": True}}, "search.screening: unknown field"),
        (
            {"constraints": {"max_accuracy_drop": 2}},
            "constraints.max_accuracy_drop: Input should be less than or equal to 1",
        ),
    ],
)
def test_errors_name_the_field_the_value_and_what_is_allowed(patch: dict, expected: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec({**MINIMAL, **patch})
    assert expected in str(info.value)


def test_the_spec_picks_the_complexity_objective_and_weighs_it_by_name() -> None:
    spec = parse_spec({**MINIMAL, "objectives": {"complexity": "bops", "bops": 0.5, "accuracy": 0.5}})
    assert spec.objective_names() == ("accuracy", "bops", "latency_ms", "energy_mj")
    assert spec.weights().as_dict() == {"accuracy": 0.5, "bops": 0.5, "latency_ms": 0.25, "energy_mj": 0.25}
    assert parse_spec({**MINIMAL, "objectives": {"complexity": "macs"}}).weights()["macs"] == 0.25


@pytest.mark.parametrize(
    "patch,expected",
    [
        (
            {"objectives": {"size_bytes": 0.5, "complexity": "bops"}},
            "objectives.size_bytes is weighted but the complexity objective is 'bops'",
        ),
        ({"objectives": {"complexity": "flops"}}, "objectives.complexity: Input should be 'size_bytes', 'params'"),
        ({"target": {"energy": "rapl"}}, "target.energy: energy source 'rapl' is not available here"),
        ({"target": {"energy": "joulemeter"}}, "target.energy: Input should be 'auto', 'model', 'rapl' or 'nvml'"),
        ({"target": {"device": "tpu"}}, "target.device: String should match pattern"),
    ],
)
def test_measurement_choices_are_validated(patch: dict, expected: str) -> None:
    if "rapl" in str(patch) and __import__("tradeoff.objectives", fromlist=["x"]).open_counter("auto") is not None:
        pytest.skip("this machine has RAPL counters")
    with pytest.raises(SpecError) as info:
        parse_spec({**MINIMAL, **patch})
    assert expected in str(info.value)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_cuda_target_without_a_gpu_is_refused() -> None:
    with pytest.raises(SpecError, match="no CUDA device on this machine"):
        parse_spec({**MINIMAL, "target": {"device": "cuda"}})


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SpecError, match=r"\(3 problems\)"):
        parse_spec({"study": {"name": "s", "n_trials": 0, "x": 1}, "task": {"name": "nope"}})


def test_missing_tables_are_named() -> None:
    with pytest.raises(SpecError, match="study: required field is missing"):
        parse_spec({"task": {"name": "digits"}})


def test_load_spec_reports_unreadable_and_malformed_files(tmp_path) -> None:
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[study\nname = 1")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(bad)


def _with_space(space: dict) -> object:
    return parse_spec({**MINIMAL, "space": space})


def test_per_group_knobs_use_auto_groups_of_the_model() -> None:
    from tests.architectures import ResNetStyle

    spec = _with_space({"pruning": {"per_group": True}, "quantization": {"per_group": True}})
    space = spec.recipe_space(ResNetStyle())
    assert space.pruning.groups == {"stem": "stem", "layers": "layers", "fc": "fc"}
    assert "quantization.weight_bits@fc" in space.distributions()


def test_named_groups_with_several_patterns_and_every_new_knob() -> None:
    from tests.architectures import ResNetStyle

    spec = _with_space(
        {
            "groups": {"early": ["stem", "layers.0"], "late": "layers.[12]"},
            "pruning": {
                "per_group": True,
                "kind": ["structured", "unstructured"],
                "importance": ["l1", "taylor"],
                "scope": "global",
                "protect": ["stem"],
            },
            "quantization": {"float16": "fp16"},
        }
    )
    space = spec.recipe_space(ResNetStyle())
    assert space.pruning.groups == {"early": "stem,layers.0", "late": "layers.[12]"}
    assert space.quantization.groups == {}  # per_group is off for quantization
    assert space.pruning.protect == ("stem",) and space.pruning.scope == "global"
    assert space.quantization.float16 == "fp16"
    assert {"pruning.kind", "pruning.importance", "pruning.ratio@late"} <= set(space.distributions())


def test_a_group_that_selects_no_layer_is_named_with_the_models_layers() -> None:
    from tests.architectures import ResNetStyle

    spec = _with_space({"groups": {"stage9": "layer9"}, "pruning": {"per_group": True}})
    with pytest.raises(SpecError, match=r"space.groups: 'stage9' select\(s\) no conv or linear layer.*stem.0"):
        spec.recipe_space(ResNetStyle())


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        ({"groups": {"bad name": "x"}}, "space.groups: group name 'bad name' may only hold"),
        ({"groups": {"a": []}}, "space.groups: group 'a' needs a layer pattern"),
        ({"groups": "all"}, "space.groups: must be 'auto' or a table"),
        ({"pruning": {"importance": ["random"]}}, "space.pruning.importance[0]"),
        ({"pruning": {"scope": "model"}}, "space.pruning.scope"),
        ({"quantization": {"float16": "fp8"}}, "space.quantization.float16"),
    ],
)
def test_bad_new_space_fields_name_the_field(space: dict, expected: str) -> None:
    with pytest.raises(SpecError) as info:
        _with_space(space)
    assert expected in str(info.value)


def test_search_defaults_and_warm_starts_written_with_dotted_keys() -> None:
    spec = parse_spec(MINIMAL)
    assert spec.search.screen and spec.search.reuse_duplicates and spec.search.warm_start == "auto"
    assert spec.search.rungs == [0.25, 0.5] and spec.search.stop_dominated_by == 3
    assert spec.search.stop_infeasible_after == 3 and spec.search.workers == "auto"
    text = """
[study]
name = "s"
[task]
name = "digits"
[[search.warm_start]]
pruning.ratio = 0.5
quantization.weight_bits = 8
[[search.warm_start]]
"pruning.ratio" = 0.25
"""
    spec = parse_spec(tomllib.loads(text))
    assert spec.search.warm_start == [{"pruning.ratio": 0.5, "quantization.weight_bits": 8}, {"pruning.ratio": 0.25}]
    assert parse_spec(spec.to_dict()).search == spec.search  # the stored spec reads back the same


def test_an_empty_space_is_the_spaces_own_defaults() -> None:
    """The [space.*] defaults are read from the spaces, so the two can never drift apart."""
    from tradeoff.spaces import RecipeSpace

    assert parse_spec({**MINIMAL, "space": {}}).recipe_space() == RecipeSpace()
    assert parse_spec(MINIMAL).recipe_space() == RecipeSpace()


def test_fine_tuning_defaults_suit_trained_networks_and_a_fixed_rate_is_every_students() -> None:
    spec = parse_spec(MINIMAL)
    d = spec.space.distillation
    assert (d.lr, d.batchnorm, d.schedule, d.recovery_lr) == ("auto", "auto", "auto", 1e-3)
    assert spec.search.select_on == "validation" and spec.search.keep_better
    space = spec.recipe_space().distillation
    assert space.lr == "auto" and space.recovery_lr == 1e-3
    fixed = parse_spec({**MINIMAL, "space": {"distillation": {"lr": 3e-4}}}).recipe_space().distillation
    assert fixed.lr == fixed.recovery_lr == 3e-4  # a user who fixes the rate means it for every student
    both = parse_spec({**MINIMAL, "space": {"distillation": {"lr": 3e-4, "recovery_lr": 2e-3}}}).recipe_space()
    assert (both.distillation.lr, both.distillation.recovery_lr) == (3e-4, 2e-3)
    with pytest.raises(SpecError, match="select_on"):
        parse_spec({**MINIMAL, "search": {"select_on": "test"}})


def test_a_stored_spec_from_before_select_on_reads_as_held_back() -> None:
    from tradeoff.studies.spec import parse_stored_spec

    stored = parse_spec(MINIMAL).to_dict()
    assert parse_stored_spec(stored).search.select_on == "validation"  # written today: as written
    del stored["search"]["select_on"]
    assert parse_stored_spec(stored).search.select_on == "held_back"  # written before: as it ran
