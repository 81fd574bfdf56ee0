"""Compress-and-evaluate for one Recipe: prune -> quantize -> distil -> measure.

Knows nothing of Optuna beyond what a trial stores (:class:`~tradeoff.studies.record.TrialRecord`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from tradeoff.objectives import (
    Accuracy,
    EnergyMj,
    EvalContext,
    Measurement,
    Objective,
    constraint_values,
    describe_device,
    size_bytes_floor,
)
from tradeoff.objectives.energy import PJ_PER_MJ
from tradeoff.spaces import (
    NEAR_TEACHER,
    ApplyContext,
    Compression,
    FixedBatch,
    Recipe,
)
from tradeoff.studies import TrialRecord

from .deployable import LatencyLookup, deployable_key, reused_latency
from .finetune import SELECTION_WORDS, SHARP_DROP, explain_drop, selection_divergence
from .trial_env import TrialEnv, with_baseline

__all__ = ["LatencyLookup", "RungCallback", "TrialEnv", "deployable_key", "evaluate_recipe", "with_baseline"]


def _measure(
    scored: nn.Module, ctx: EvalContext, objectives: list[Objective], names: tuple[str, ...]
) -> dict[str, Measurement]:
    return {obj.name: obj.measure(scored, ctx) for obj in objectives if obj.name in names}


def _provenance(m: Measurement, ctx: EvalContext) -> dict[str, Any]:
    """A measurement's provenance with the fields every objective carries (issue 4)."""
    common = {
        "device": describe_device(ctx.device),
        "threads": ctx.threads,
        "batch_size": int(ctx.example_inputs[0].shape[0]),
        "torch": torch.__version__,
        "repeats": 1,  # one evaluation unless the measurement says otherwise
        "spread": None,  # exact or single-shot figures have none
    }
    return {**common, **m.provenance()}


RungCallback = Callable[[float, int, dict[str, float]], bool]
"""``(fraction, steps_done, values at the rung) -> stop?``: asked at each fidelity rung."""


def _subset_samples(batches: Sequence[Any]) -> int:
    return sum(len(targets) for _, targets in batches)


def evaluate_recipe(
    recipe: Recipe,
    env: TrialEnv,
    *,
    seed: int | None = None,  # torch's RNG left as it is (the runner always passes one)
    screen: bool = True,  # [search] screen's default: skip fine-tuning what it cannot mend
    rungs: Sequence[float] = (),  # no rungs: distil all the steps without looking (the baseline, direct calls)
    on_rung: RungCallback | None = None,  # nobody to ask: no trial stops at a rung
    latency_of: LatencyLookup | None = None,  # no study to ask: every deployable form is timed
) -> TrialRecord:
    """Apply ``recipe`` to the task's model, measure it, and return everything a trial stores.

    Order (docs/DESIGN.md, "One trial, from spec to stored record"): prune and attach quantization -> build the deployable form
    and measure it before fine-tuning (complexity, latency, energy) -> with ``screen``, when a
    size/latency/energy constraint already fails (size and modelled energy taken at the least fine-tuning
    could bring them to: :func:`_least_after_tuning`), stop there with the zero-shot accuracy
    (``screened``) -> distil, pausing at each of ``rungs`` (fractions of the steps) to score
    accuracy on ``env.rung_val`` and ask ``on_rung`` whether to stop (``stopped``: the record's
    accuracy is then that rung's, on the subset, and must not be told as a final value) -> bake,
    then accuracy on the reported validation data (``env.val``), complexity and energy of the final model.

    With ``latency_of``, a deployable form already timed in the study (same :func:`deployable_key`)
    is not timed again: its measurement is reused, labelled with the trial it came from, and the
    record's ``deployable`` says so (``latency_from``).

    With ``env.baseline`` unset the recipe is taken as the baseline itself (role ``baseline``):
    its latency is an absolute median; later trials are timed interleaved with the teacher and
    reported as baseline latency x ratio (see :mod:`tradeoff.objectives.latency`).
    """
    trial = _Trial.compress(recipe, env, seed)  # prune, attach quantization, build the deployable form
    trial.measure_deployable(latency_of)  # complexity, latency, energy before fine-tuning (latency: the final one)
    trial.measure_zero_shot()  # accuracy before fine-tuning: what fine-tuning must not make worse
    if screen and (zero_shot := trial.screen()) is not None:
        return trial.record(trial.snapshot, trial.on_target(trial.snapshot, zero_shot), screened=True)
    if (at_rung := trial.distil_through(rungs, on_rung)) is not None:
        return trial.record(trial.snapshot, at_rung, stopped=True)
    scored, accuracy = trial.finish()
    return trial.record(scored, trial.on_target(scored, accuracy))


def _least_after_tuning(
    before: dict[str, float],
    snapshot: nn.Module,
    ctx: EvalContext,
    pre: dict[str, Measurement],
    objectives: Sequence[Objective],
) -> dict[str, float]:
    """The snapshot's figures ``before`` fine-tuning with size and modelled energy at the least any tuned weights
    could give: fine-tuning moves quantized weights onto other codes (at 2-4 bits many onto 0, where a sparser
    encoding wins), so size is :func:`~tradeoff.objectives.size_bytes_floor`, and an *estimated* energy loses the
    weight traffic of the bytes that floor saves. Latency and MACs do not depend on the weights' values."""
    floor = size_bytes_floor(snapshot, ctx.weight_bits)
    least = {**before, "size_bytes": floor}
    energy = next((o for o in objectives if isinstance(o, EnergyMj)), None)
    if energy is not None and "energy_mj" in pre and pre["energy_mj"].source == "estimated":
        saved = ctx.profile(snapshot).size_bytes - floor  # the bytes the energy model read at DRAM cost
        least["energy_mj"] = pre["energy_mj"].value - saved * energy.model.dram_pj_per_byte / PJ_PER_MJ
    return least


class _Trial:
    """One recipe on its way through :func:`evaluate_recipe`, one method per phase, in the order they run."""

    def __init__(self, recipe: Recipe, env: TrialEnv, seed: int | None, stages: Compression) -> None:
        self.recipe, self.env, self.seed, self.stages = recipe, env, seed, stages
        self.is_baseline = env.baseline is None
        self.snapshot, self.deployed = stages.snapshot()  # before fine-tuning: what executes, and what it weighs
        self.weight_bits = recipe.quantization.weight_bits_by_layer(self.snapshot)
        self.accuracy = Accuracy()
        self.rung_log: list[dict[str, Any]] = []
        self.measure_s = 0.0  # seconds spent measuring, added up phase by phase
        self.finetune: dict[str, Any] = {}  # how fine-tuning went: zero-shot figures, the weights kept, why
        self.zero_shot: Measurement | None = None  # the snapshot's accuracy on the reported validation data
        self.two_accuracies: dict[str, Any] = {}  # the scored model's and the deployable form's (on_target)
        # set by measure_deployable:
        self.ctx: EvalContext
        self.cheap_names: tuple[str, ...]
        self.pre: dict[str, Measurement]
        self.cheap: dict[str, float]
        self.deployable: dict[str, Any]

    @classmethod
    def compress(cls, recipe: Recipe, env: TrialEnv, seed: int | None) -> _Trial:
        """Prune and attach quantization to the task's model, and build the form that runs on the target."""
        ctx_apply = ApplyContext(
            example_inputs=env.example_inputs,
            train=env.train,
            teacher_logits=env.teacher_logits,
            seed=seed,
            threads=env.threads,
            backend=env.backend,
        )
        return cls(recipe, env, seed, Compression(recipe, env.task.model, ctx_apply))

    def context(self, val: Any) -> EvalContext:
        """What an objective measures the model with, scoring accuracy on ``val``."""
        env, deployed = self.env, self.deployed
        return EvalContext(
            example_inputs=env.example_inputs,
            val=val,
            metric=env.task.metric,
            weight_bits=self.weight_bits,
            activation_bits=self.recipe.quantization.activation_bits,
            deployable=deployed.module,
            deployable_form=deployed.form,
            deployable_details={"backend": deployed.backend, "note": deployed.note},
            reference=None if self.is_baseline else env.task.model,
            reference_latency_ms=None if self.is_baseline else env.baseline["latency_ms"],
            threads=env.threads,
            device=env.device,
        )

    def measure_deployable(self, latency_of: LatencyLookup | None) -> None:
        """Measure everything but accuracy on the snapshot; latency is reused when ``latency_of`` knows the form."""
        env = self.env
        start = time.perf_counter()
        self.cheap_names = tuple(n for n in env.names if n != "accuracy")
        self.ctx = self.context(env.task.val if env.val is None else env.val)
        key = deployable_key(
            self.snapshot,
            self.deployed,
            self.weight_bits,
            self.recipe.quantization.activation_bits,
            env.example_inputs,
            threads=env.threads,
            device=env.device,
        )
        earlier = None if self.is_baseline or latency_of is None else latency_of(key)
        timed = self.cheap_names if earlier is None else tuple(n for n in self.cheap_names if n != "latency_ms")
        self.pre = _measure(self.snapshot, self.ctx, env.objectives, timed)
        if earlier is not None:
            self.pre["latency_ms"] = reused_latency(earlier[1], earlier[0])
        self.deployable = {
            "key": key,
            "latency_ms": self.pre["latency_ms"].value,
            "latency_from": None if earlier is None else earlier[0],
        }
        self.measure_s += time.perf_counter() - start
        self.cheap = {name: self.pre[name].value for name in self.cheap_names}

    def score(self, model: nn.Module, ctx: EvalContext) -> Measurement:
        """``model``'s accuracy on ``ctx.val``, its time counted as measuring."""
        t0 = time.perf_counter()
        accuracy = self.accuracy.measure(model, ctx)
        self.measure_s += time.perf_counter() - t0
        return accuracy

    def measure_zero_shot(self) -> None:
        """The compressed model's accuracy before fine-tuning: on the reported validation data, and on the
        selection data that judges whether fine-tuning helped (the baseline is not fine-tuned)."""
        if self.is_baseline:
            return
        self.zero_shot = self.score(self.snapshot, self.ctx)
        self.finetune["zero_shot"] = self.zero_shot.value
        if self.recipe.distillation.steps > 0 and self.env.selection:
            self.finetune["selection"] = self.env.select_on
            self.finetune["selection_samples"] = _subset_samples(self.env.selection)
            self.finetune["selection_zero_shot"] = self.score(self.snapshot, self.context(self.env.selection)).value
            self.finetune["selection_zero_shot_kl"] = self.divergence(self.snapshot)

    def divergence(self, model: nn.Module) -> float:
        """KL(teacher || ``model``) on the selection data, in nats per sample: how near the teacher a model is,
        finer than accuracy (which ties on a small slice); its time counted as measuring."""
        t0 = time.perf_counter()
        kl = selection_divergence(model, self.env.selection, self.env.selection_logits)
        self.measure_s += time.perf_counter() - t0
        return kl

    def screen(self) -> Measurement | None:
        """The zero-shot accuracy when a size/latency/energy constraint already fails (no fine-tuning can
        mend these), else ``None``; the baseline is never screened. Size and modelled energy are judged at
        the least fine-tuning could bring them to (:func:`_least_after_tuning`), latency as measured."""
        if self.is_baseline:
            return None
        cheap_limits = replace(self.env.constraints, max_accuracy_drop=None)
        before = {**self.ctx.profile(self.snapshot).figures(), **self.cheap}
        least = _least_after_tuning(before, self.snapshot, self.ctx, self.pre, self.env.objectives)
        violated = {k: v for k, v in constraint_values(least, self.env.baseline, cheap_limits).items() if v > 0}
        return self.zero_shot if violated else None

    def distil_through(self, rungs: Sequence[float], on_rung: RungCallback | None) -> Measurement | None:
        """Distil up to each rung in turn, score it on ``env.rung_val`` and ask ``on_rung``: the accuracy
        at the rung that stopped the trial, or ``None`` when none did."""
        env, steps = self.env, self.recipe.distillation.steps
        if on_rung is None or self.is_baseline or steps <= 0:
            return None
        rung_ctx = self.context(env.rung_val)
        floor = None  # the zero-shot accuracy on the rung subset: with keep_better the trial never ends below it
        for fraction in rungs:
            n = round(fraction * steps)
            if n <= self.stages.steps_done or n >= steps:
                continue
            self.stages.distil_to(n)
            acc = self.score(self.stages.student, rung_ctx)
            if floor is None:
                floor = self.score(self.snapshot, rung_ctx).value
            entry = {"fraction": fraction, "steps": n, "samples": _subset_samples(env.rung_val), "accuracy": acc.value}
            if acc.value < floor - SHARP_DROP:
                entry["explanation"] = explain_drop(
                    self.stages.losses,
                    self.stages.tuning[0].lr,
                    before=floor,
                    after=acc.value,
                    where=f"rung {fraction:g}",
                )
                self.finetune.setdefault("explanation", entry["explanation"])
            self.rung_log.append(entry)
            best = max(acc.value, floor) if env.keep_better.enabled and env.selection else acc.value
            point = {**self.cheap, "accuracy": best}
            if on_rung(fraction, n, {name: point[name] for name in env.names}):
                return replace(acc, value=best) if best != acc.value else acc
        return None

    def finish(self) -> tuple[nn.Module, Measurement]:
        """Distil the remaining steps and bake: the final model and its accuracy on the reported validation data.

        With ``[search] keep_better``, when fine-tuning ended no higher than the zero-shot accuracy on the selection
        data (``[search] select_on``), the final model is the snapshot from before fine-tuning (its validation accuracy is
        already measured); a sharp fall is explained from the steps' losses (:func:`explain_drop`)."""
        scored = self.stages.finish()
        if self.is_baseline or self.recipe.distillation.steps == 0 or self.zero_shot is None:
            return scored, self.score(scored, self.ctx)
        ft = self.finetune
        ft["kept"] = "finetuned"
        if "selection_zero_shot" in ft:
            ft["selection_finetuned"] = self.score(scored, self.context(self.env.selection)).value
            ft["selection_finetuned_kl"] = self.divergence(scored)
            if self.env.keep_better.keeps_zero_shot(
                zero_shot=ft["selection_zero_shot"],
                tuned=ft["selection_finetuned"],
                zero_shot_kl=ft["selection_zero_shot_kl"],
                tuned_kl=ft["selection_finetuned_kl"],
            ):
                ft["kept"] = "zero_shot"
                ft["why_kept"] = (
                    f"fine-tuning ended at {ft['selection_finetuned']:.4f} on {ft['selection_samples']} "
                    f"{SELECTION_WORDS[ft['selection']]}, no higher than {ft['selection_zero_shot']:.4f} before it"
                    + (
                        f" and no nearer the teacher (KL {ft['selection_finetuned_kl']:.4g} against "
                        f"{ft['selection_zero_shot_kl']:.4g} nats)"
                        if ft["selection_finetuned"] == ft["selection_zero_shot"]
                        else ""
                    )
                    + ": kept the weights from before"
                )
        if ft["kept"] == "zero_shot":
            scored, accuracy = self.snapshot, self.zero_shot
            where = f"the end ({SELECTION_WORDS[ft['selection']]})"
            before, after = ft["selection_zero_shot"], ft["selection_finetuned"]
        else:
            accuracy = self.score(scored, self.ctx)
            before, after, where = self.zero_shot.value, accuracy.value, "the end"
        if after < before - SHARP_DROP:
            lr = self.stages.tuning[0].lr
            ft.setdefault("explanation", explain_drop(self.stages.losses, lr, before=before, after=after, where=where))
        return scored, accuracy

    def on_target(self, scored: nn.Module, accuracy: Measurement) -> Measurement:
        """The accuracy of the program that runs: the deployable form of ``scored`` on the same validation
        data, at the batch size it was built and timed at (:class:`~tradeoff.spaces.FixedBatch`).

        A quantized recipe's accuracy is scored on a simulation (weights on their grid, activations
        fake-quantized in fp32), its latency on the deployable form, whose int8 activation ranges are
        calibrated anew (7 bits on CPUs without VNNI) and whose kernels round differently; this measures
        how far apart the two are, and the front takes the deployable form's figure (docs/DESIGN.md,
        "Deployable form and honesty"). The deployable form built before fine-tuning serves when the
        weights are still those (screened, kept zero-shot, no steps); otherwise it is built again from
        the final weights. Recipes without quantization execute the scored model itself: unchanged.
        """
        if self.is_baseline or self.recipe.quantization.is_identity:
            return accuracy
        same_weights = scored is self.snapshot or self.stages.steps_done == 0  # the weights the snapshot was built on
        deployed = self.deployed if same_weights else self.stages.deploy(scored)
        batch = int(self.env.example_inputs[0].shape[0])
        on = self.score(FixedBatch(deployed.module, batch), self.ctx)
        gap = on.value - accuracy.value
        self.two_accuracies = {
            "scored_accuracy": accuracy.value,
            "deployable_accuracy": on.value,
            "accuracy_gap": gap,
        }
        return Measurement(
            on.value,
            accuracy.unit,
            "measured",
            f"task metric on the deployable form ({deployed.form}, {deployed.backend}) at batch {batch}",
            {
                **on.details,
                "scored_accuracy": accuracy.value,
                "accuracy_gap": gap,
                "accuracy_of": "deployable",
                "deployable_form": deployed.form,
                "deployable_backend": deployed.backend,
                "accuracy_batch": batch,
            },
        )

    def record(
        self,
        scored: nn.Module,
        accuracy: Measurement,
        *,
        screened: bool = False,  # most trials are neither screened...
        stopped: bool = False,  # ...nor stopped at a rung
    ) -> TrialRecord:
        """Everything the trial stores; a finished model's size, MACs and energy are measured anew (not a
        screened or stopped one's: it stays the snapshot, and latency is always the built form's)."""
        env, ctx = self.env, self.ctx
        t0 = time.perf_counter()
        measured = dict(self.pre)
        if not (screened or stopped):  # the final model: its own size, MACs and energy (latency: the built form)
            untimed = tuple(n for n in self.cheap_names if n != "latency_ms")
            measured.update(_measure(scored, ctx, env.objectives, untimed))
        measured["accuracy"] = accuracy
        values = {name: measured[name].value for name in env.names}
        figures = _figures(ctx.profile(scored).figures(), values["accuracy"], measured)
        if self.zero_shot is not None:
            figures["zero_shot_accuracy"] = self.zero_shot.value
        figures.update(self.two_accuracies)
        self.measure_s += time.perf_counter() - t0
        seconds = {**self.stages.seconds, "measure": self.measure_s}
        constraints = constraint_values({**figures, **values}, env.baseline or values, env.constraints)
        if stopped:  # its accuracy is a rung's, on a subset, mid-tuning: the sampler must not read it as the
            constraints.pop("max_accuracy_drop", None)  # trial's (issue 25); size, latency, energy are exact
        return TrialRecord(
            role="baseline" if self.is_baseline else "candidate",
            recipe=self.recipe.to_dict(),
            values=values,
            figures=figures,
            provenance={name: _provenance(m, ctx) for name, m in measured.items()},
            constraints=constraints,
            deployable_form=self.deployed.form,
            deployable=self.deployable,
            seconds={k: round(v, 4) for k, v in seconds.items()},
            screened=screened,
            stopped=stopped,
            rungs=self.rung_log,
            seed=self.seed,
            finetune=self._finetune_summary(),
        )

    def _finetune_summary(self) -> dict[str, Any]:
        """How fine-tuning went (``finetune`` in the trial record): the rate and its rule, the schedule,
        the loss, the zero-shot figures, the weights kept and why, an explanation of a sharp fall."""
        if self.is_baseline:
            return {}
        (d, agreement), losses = self.stages.tuning, self.stages.losses
        out = dict(self.finetune)
        out.update(lr=d.lr, batchnorm=d.batchnorm, schedule=d.schedule, steps_done=self.stages.steps_done)
        if agreement is not None:  # the regime was decided for this student ("auto")
            near = agreement >= NEAR_TEACHER
            out.update(agreement=agreement, regime="near" if near else "far")
        if self.env.lr is not None:
            out["lr_rule"] = self.env.lr.rule
        if losses:
            out.update(loss_first=losses[0], loss_min=min(losses), loss_last=losses[-1])
        return out


def _figures(profile: dict[str, Any], accuracy: float, measured: dict[str, Measurement]) -> dict[str, Any]:
    """The raw figures stored on a trial: the model's profile, its accuracy, and latency's and energy's parts."""
    figures: dict[str, Any] = {**profile, "accuracy": accuracy}
    lat, energy = measured["latency_ms"].details, measured["energy_mj"].details
    for key in ("median_ms", "iqr_ms", "ci_halfwidth", "rounds", "repeats", "ratio", "reference_ms"):
        if key in lat:
            figures[f"latency_{key}"] = lat[key]
    for key in ("compute_pj", "weights_pj", "activations_pj", "estimated_mj", "idle_w", "gross_mj"):
        if key in energy:
            figures[f"energy_{key}"] = energy[key]
    return figures
