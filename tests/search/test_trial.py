from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tradeoff.objectives import Constraints, EnergyModel, size_bytes_floor
from tradeoff.objectives.energy import PJ_PER_MJ
from tradeoff.search.finetune import SELECTION_WORDS
from tradeoff.search.trial import TrialEnv, evaluate_recipe, with_baseline
from tradeoff.spaces import DistillationConfig, PruningConfig, QuantizationConfig, Recipe
from tradeoff.studies import at_batch_size, parse_spec

SPEC = parse_spec({"study": {"name": "t"}, "task": {"name": "digits"}, "constraints": {"max_accuracy_drop": 0.02}})


@pytest.fixture(scope="module")
def env(digits_task) -> TrialEnv:
    env = TrialEnv.prepare(SPEC, digits_task)
    return with_baseline(env, evaluate_recipe(Recipe(), env, seed=0))


def test_teacher_outputs_are_cached_once_for_every_training_batch(env: TrialEnv) -> None:
    assert len(env.teacher_logits) == len(env.train) > 0
    with torch.no_grad():
        assert torch.equal(env.teacher_logits[0], env.task.model(env.train[0][0]))


def test_baseline_record(digits_task) -> None:
    env = TrialEnv.prepare(SPEC, digits_task)
    rec = evaluate_recipe(Recipe(), env, seed=0)
    assert rec.role == "baseline"
    assert rec.values["accuracy"] >= 0.97
    assert rec.values["size_bytes"] == rec.figures["size_bytes"] > 200_000  # ~56k fp32 params + BN buffers
    assert "latency_ratio" not in rec.figures  # the baseline's latency is absolute
    assert rec.constraints == {"max_accuracy_drop": -0.02}


def test_compressed_trial_is_smaller_cheaper_and_says_how_each_figure_was_obtained(env: TrialEnv) -> None:
    recipe = Recipe(
        pruning=PruningConfig(ratio=0.5),
        quantization=QuantizationConfig(weight_bits=4, activation_bits=8),
        distillation=DistillationConfig(temperature=4.0, alpha=0.5, steps=60),
    )
    rec = evaluate_recipe(recipe, env, seed=1)
    base = env.baseline
    assert rec.role == "candidate"
    assert rec.values["size_bytes"] < base["size_bytes"] / 10  # half the channels at 4 bits: ~1/28
    assert rec.values["energy_mj"] < base["energy_mj"]
    assert rec.figures["params"] < 56_714 / 3 and rec.figures["macs"] < 1_000_000
    assert rec.provenance["accuracy"]["source"] == "measured"
    assert rec.provenance["latency_ms"]["source"] == "measured"
    lat = rec.provenance["latency_ms"]
    assert lat["deployable_form"] == rec.deployable_form == "int8"  # 4-bit weights, 8-bit activations: int8 kernels
    assert lat["deployable_backend"] in ("inductor", "fx") and "int8" in lat["deployable_note"]
    assert rec.provenance["size_bytes"]["source"] == "computed"  # exact arithmetic on the packed widths
    assert rec.provenance["energy_mj"]["source"] == "estimated"
    assert rec.values["latency_ms"] == pytest.approx(base["latency_ms"] * rec.figures["latency_ratio"])
    assert set(rec.seconds) == {"prune", "quantize", "distil", "deploy", "measure"}
    assert rec.recipe == recipe.to_dict()
    # the accuracy on the front is the program's that runs, scored at the batch it was built for (issue 27)
    acc, f = rec.provenance["accuracy"], rec.figures
    assert acc["accuracy_of"] == "deployable" and acc["deployable_form"] == "int8" and acc["accuracy_batch"] == 1
    assert (
        rec.values["accuracy"]
        == f["deployable_accuracy"]
        == f["accuracy"]
        == acc["scored_accuracy"] + f["accuracy_gap"]
    )
    assert f["scored_accuracy"] == acc["scored_accuracy"] and abs(f["accuracy_gap"]) < 0.05


def test_a_recipe_without_quantization_has_one_accuracy(env: TrialEnv) -> None:
    rec = evaluate_recipe(
        Recipe(pruning=PruningConfig(ratio=0.25), distillation=DistillationConfig(steps=5)), env, seed=1
    )
    assert "deployable_accuracy" not in rec.figures and "accuracy_of" not in rec.provenance["accuracy"]


def test_batch_size_of_the_target_is_honoured() -> None:
    x = torch.arange(6.0).reshape(3, 2)
    assert at_batch_size((x,), 2)[0].tolist() == [[0, 1], [2, 3]]
    assert at_batch_size((x,), 4)[0].shape == (4, 2)


def test_every_objective_carries_the_same_provenance_fields(env: TrialEnv) -> None:
    rec = evaluate_recipe(Recipe(pruning=PruningConfig(ratio=0.3)), env, seed=2)
    for name, prov in rec.provenance.items():
        missing = {"source", "method", "device", "threads", "batch_size", "repeats", "spread", "torch"} - set(prov)
        assert not missing, (name, missing)
    assert rec.provenance["latency_ms"]["repeats"] > 1 and rec.provenance["latency_ms"]["spread"] > 0
    assert rec.provenance["latency_ms"]["torch"] == torch.__version__
    assert {"latency_ci_halfwidth", "latency_rounds", "energy_compute_pj"} <= set(rec.figures)


def test_the_executable_key_follows_what_runs_and_nothing_else() -> None:
    from torch import nn

    from tradeoff.search import deployable_key
    from tradeoff.spaces import Deployable

    def net(width: int) -> nn.Module:
        return nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 2)).eval()

    x = (torch.randn(1, 4),)

    def key(model, form="fp32", bits=None, act=32, backend="eager", inputs=x):
        d = Deployable(model, form, backend, 0.0, "")
        return deployable_key(model, d, bits or {}, act, inputs, threads=1, device="cpu")

    a, b = net(8), net(8)
    with torch.no_grad():
        b[0].weight.mul_(3.0)  # other weight values (another T or alpha): the same program
    assert key(a) == key(b)
    assert key(a) != key(net(6))  # pruned: other shapes
    assert key(a, "int8", {"0": 8, "2": 8}, 8, "inductor") == key(a, "int8", {"0": 4, "2": 4}, 8, "inductor")
    assert key(a, "int8", {"0": 8, "2": 8}, 8, "inductor") != key(a)  # int8 kernels against fp32
    assert key(a, "int8+fp32", {"0": 8}, 8, "inductor") != key(a, "int8+fp32", {"2": 8}, 8, "inductor")
    assert key(a, "int8", {"0": 8, "2": 8}, 8, "inductor") != key(a, "int8", {"0": 8, "2": 8}, 8, "fx")
    assert key(a) != key(a, inputs=(torch.randn(4, 4),))  # another batch size
    frozen = torch.jit.freeze(torch.jit.trace(a, x))  # an fx program frozen as TorchScript, or left eager
    as_script = Deployable(frozen, "int8", "fx", 0.0, "")
    assert deployable_key(a, as_script, {"0": 8, "2": 8}, 8, x, threads=1, device="cpu") != key(
        a, "int8", {"0": 8, "2": 8}, 8, "fx"
    )


def test_every_candidate_records_its_accuracy_before_fine_tuning(env: TrialEnv) -> None:
    recipe = Recipe(pruning=PruningConfig(ratio=0.5), distillation=DistillationConfig(steps=40))
    rec = evaluate_recipe(recipe, env, seed=1)
    ft = rec.finetune
    assert 0 < rec.figures["zero_shot_accuracy"] == ft["zero_shot"] < rec.values["accuracy"]  # half pruned: recovers
    assert ft["kept"] == "finetuned" and ft["steps_done"] == 40 and ft["selection"] == "validation"
    assert ft["selection_finetuned"] >= ft["selection_zero_shot"]
    assert ft["lr"] == 1e-3 and ft["loss_last"] < ft["loss_first"]
    # digits: 360 validation images, the first fifth (72) judge fine-tuning and the other 288 are reported;
    # all 23 training batches (1,437 images in batches of 64) are tuned on
    assert ft["selection_samples"] == 72 == sum(len(t) for _, t in env.selection)
    assert sum(len(t) for _, t in env.val) == 288 and len(env.train) == 23
    first_reported = next(iter(env.val))[0]
    assert not any(torch.equal(first_reported[:1], x[:1]) for x, _ in env.selection)  # apart from the reported data


@pytest.mark.parametrize("select_on", ["validation", "held_back"])
def test_fine_tuning_that_makes_a_trial_worse_is_undone_and_explained(digits_task, select_on: str) -> None:
    """A rate far too high wrecks a lightly compressed network: the trial keeps its weights from before."""
    spec = parse_spec({"study": {"name": "t"}, "task": {"name": "digits"}, "search": {"select_on": select_on}})
    env = TrialEnv.prepare(spec, digits_task)
    env = with_baseline(env, evaluate_recipe(Recipe(), env, seed=0))
    recipe = Recipe(quantization=QuantizationConfig(weight_bits=8), distillation=DistillationConfig(steps=20, lr=0.5))
    rec = evaluate_recipe(recipe, env, seed=1)
    ft = rec.finetune
    assert ft["kept"] == "zero_shot" and ft["selection_finetuned"] < ft["selection_zero_shot"]
    assert rec.values["accuracy"] == rec.figures["zero_shot_accuracy"] >= env.baseline["accuracy"] - 0.01
    assert "learning rate 0.5 too high" in ft["explanation"] and "kept the weights from before" in ft["why_kept"]
    assert ft["selection"] == select_on and SELECTION_WORDS[select_on] in ft["why_kept"]
    if select_on == "held_back":  # the last 3 of digits' 23 training batches, all 360 validation images reported
        assert len(env.train) + len(env.selection) == 23 and len(env.selection) == 3
        assert sum(len(t) for _, t in env.val) == 360


def test_without_keep_better_a_worse_fine_tune_stands(digits_task) -> None:
    spec = parse_spec({"study": {"name": "t"}, "task": {"name": "digits"}, "search": {"keep_better": False}})
    env = TrialEnv.prepare(spec, digits_task)
    env = with_baseline(env, evaluate_recipe(Recipe(), env, seed=0))
    recipe = Recipe(quantization=QuantizationConfig(weight_bits=8), distillation=DistillationConfig(steps=20, lr=0.5))
    rec = evaluate_recipe(recipe, env, seed=1)
    assert rec.finetune["kept"] == "finetuned" and rec.values["accuracy"] < rec.figures["zero_shot_accuracy"] - 0.02


def test_size_and_modelled_energy_are_screened_at_the_least_fine_tuning_could_reach(env: TrialEnv) -> None:
    """At 2 bits fine-tuning may round more weights to code 0, which then pack smaller: a size limit between that
    floor and the size before fine-tuning is no reason to skip fine-tuning (the old screen skipped it), one below
    the floor is; likewise the modelled energy, whose weight traffic is the size's bytes."""
    recipe = Recipe(quantization=QuantizationConfig(weight_bits=2), distillation=DistillationConfig(steps=5))
    teacher = env.task.model  # no pruning: the snapshot has the teacher's shapes
    floor = size_bytes_floor(teacher, recipe.quantization.weight_bits_by_layer(teacher))

    def run(**limits: float):
        return evaluate_recipe(recipe, replace(env, constraints=Constraints(**limits)), seed=1)

    below = run(max_size_bytes=floor - 1)
    assert below.screened and "distil" not in below.seconds and below.constraints["max_size_bytes"] > 0
    size, energy = below.figures["size_bytes"], below.values["energy_mj"]  # the snapshot's, before fine-tuning
    assert floor < size
    between = run(max_size_bytes=(floor + size) / 2)
    assert not between.screened and "distil" in between.seconds
    assert below.provenance["energy_mj"]["source"] == "estimated"
    least = energy - (size - floor) * EnergyModel().dram_pj_per_byte / PJ_PER_MJ
    assert not run(max_energy_mj=(least + energy) / 2).screened
    assert run(max_energy_mj=least * 0.999).screened
