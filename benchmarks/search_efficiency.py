"""Search efficiency: hypervolume against wall-clock time and trial count, tradeoff against hand-written loops.

Usage:  python benchmarks/search_efficiency.py [--task digits|fashion-mnist] [--trials 60] [--seeds 0 1 2 3 4]
            [--methods M ...] [--steps N] [--task-arg NAME=VALUE] [--threads N] [--quick] [--audit-stops]
            [--max-accuracy-drop D] [--max-size-ratio R] [--max-latency-ratio R] [--max-energy-ratio R]
            [--out benchmarks/results/search_efficiency.json] [--svg benchmarks/results/search_efficiency.svg]

In one process, on one task, with the same trial budget (the uncompressed baseline included), the same
seeds, knobs, ranges, distillation steps, evaluation samples and hypervolume, it runs these searches over
the demo spec's space (``studies/demo.toml``):

  tradeoff          ``tradeoff``'s defaults: ``Runner`` with sampler ``auto`` and ``workers = "auto"``
                    (forked worker processes, cores // target.threads: two on a 2-core machine), a fresh
                    SQLite file per run;
  tradeoff-1w       the same with ``workers = 1``: one process, for the per-trial comparison;
  tradeoff-plain    ``tradeoff`` with ``balanced_start = false``: TPE's start-up draws the bit-widths
                    independently, as every default did before issue 25's seventh session (the runs labelled
                    ``tradeoff`` and ``tradeoff-1w`` in earlier results); what the balanced start adds;
  tradeoff-1w-plain the same with one worker;
  tradeoff-1w-cold  the same with no warm starts (``warm_start = []``): what the warm starts add, per trial,
                    on each task (a warm start that helps on one task and hurts on the other is not a default);
  tradeoff-1w-indep tradeoff-1w with its TPE built as ``create_study`` builds it, independent per knob
                    (``multivariate=False``) where ``auto`` builds a multivariate one: a candidate design
                    measured against the default (issue 25: on digits the multivariate TPE spends most late
                    trials at 50-80 % pruning, where the front gains least);
  tradeoff-1w-startup tradeoff-1w with TPE's random start-up lengthened by the baseline and the warm starts
                    (``n_startup_trials = 10 + 1 + warm starts``): Optuna counts enqueued trials as start-up
                    trials, so by default they replace six of its ten random ones; a candidate design
                    (issue 25: at 120 trials the single-worker search falls behind the TPE loop);
  tradeoff-1w-cover tradeoff-1w whose warm starts also cover every (weight, activation) width pair the auto
                    list leaves out, one config each at the pruning range's midpoint (:func:`covering_warm_starts`):
                    a candidate design (issue 25: on digits with the frozen fx program, four of five single-worker
                    runs never tried ``w4a8``, the pair that holds the small end of the front, and stalled);
                    on the demo space that is 9 warm starts, which with the baseline fill all 10 of TPE's
                    start-up trials (none left random); like the other candidates before it, measured with
                    ``balanced_start = false``, and run so;
  tradeoff-1w-exact tradeoff-1w with sampler ``exact`` (``search/exact.py``): size and modelled energy computed
                    exactly for each candidate before training, latency interpolated from measured trials of the
                    same widths, accuracy from a Gaussian process at its upper bound, the candidate adding the most
                    hypervolume chosen (SMS-EGO); a candidate design (issue 25: "model the cheap objectives
                    exactly")
  tradeoff-exact    tradeoff's defaults (two workers here) with sampler ``exact``: the candidate as a default
                    would run, other workers' running trials believed at the GP's mean
  user-tpe          what a user writes by hand with Optuna (section (b)): ``optuna.create_study``'s default
                    sampler, ``TPESampler(seed=...)``; prune -> quantize -> distil (Adam at 1e-3, the teacher
                    run on every step) -> bake -> deployable form -> tradeoff's own objectives on the same
                    samples, constraints set on the trial; no caching, screening, rungs, warm starts or reuse;
                    one process at torch's default thread count (every core: what a script that sets nothing
                    gets; ``--threads`` changes it);
  user-nsga2        the same loop with ``NSGAIISampler(population_size=10)``, a population 60 trials can
                    evolve (the default 50 never leaves its random first generation);
  user-random       the same loop with ``RandomSampler``.

Every run's hypervolume is computed the same way (docs/DESIGN.md, "Definitions everyone computes the same
way"): COMPLETE feasible trials (every constraint value <= 0; screened or stopped trials excluded),
normalised by that run's own baseline (trial 0), reference ``(max_accuracy_drop / acc0, 1, 1, 1)``;
recomputed after each finished trial in completion order, against the wall time since the run began
(task build included; the teacher itself is trained and cached before any run) and the trial count.

Reported, with the level at 95 % of the best final hypervolume seen in any run:
  * per method, the median over seeds of the time and of the trial count at which a run first reaches
    the level ("> T" when the median run never does: its total is a lower bound);
  * the median hypervolume at 30, 60, 120, 240 and 480 s of wall clock and after 10, 20, 30, 40, 60, 90
    and 120 trials, up to ``--trials`` (figures that do not hang on one run's first crossing);
  * the same medians and ratios at 80, 85 and 90 % of the best, which medians reach when 95 % is one
    run's luck (reported beside the target, not in its place);
  * two ratios, reported apart: **wall clock**, the best user loop's median time / tradeoff's (everyone on
    the same cores; target >= 3x), and **per trial**, user-tpe's median trial count / tradeoff-1w's (one
    process each; target > 1x: fewer trials, i.e. the search itself is better, not only cheaper);
  * with ``--audit-stops``: after each run of tradeoff's defaults (not timed), every trial a fidelity rung stopped is run to
    the end in a side study (no rungs, one worker, its own baseline; nothing is fed back to the run) and
    the report says how many would have been feasible, how many would have been on the run's final front,
    and the share of the hypervolume the stops lost (target < 2 %).

Before the first timed run the uncompressed model is measured once (the base of ``--max-*-ratio``
constraints: ``--max-size-ratio 0.5`` is ``max_size_bytes`` = 0.5 x its size) and one int8 form is
compiled, so the process's first ``torch.compile`` is charged to no run; the order of the methods
rotates with the seed because later compiles hit inductor's caches. Without options the demo spec's
constraints apply (``max_accuracy_drop = 0.03``). ``--quick`` (one seed, 8 trials, 50 distillation
steps, three methods) is a smoke run of the whole pipeline, too short to rank the methods.
``--task fashion-mnist --task-arg width=16 --task-arg train_size=12000 --task-arg val_size=2000`` is the
reduced fashion-mnist setting of docs/BENCHMARKS.md. Also writes an SVG of hypervolume against wall-clock
seconds, and after every run a ``.partial.json`` next to ``--out`` (what an interrupted run keeps). ``--resume
PARTIAL_JSON`` keeps an earlier invocation's runs (same settings, checked) and makes only the missing
ones. Each run says how many cores other processes kept busy meanwhile: on a shared machine the wall-clock figures
inflate (two-thread training oversubscribed by other work slowed trials 10x here); tradeoff's worker
processes are counted as this run's own.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from torch import nn

from tradeoff.objectives import (
    DIRECTIONS,
    Constraints,
    EvalContext,
    Objective,
    constraint_values,
    default_objectives,
    describe_device,
    hypervolume,
    normalise,
    pareto_mask,
    reference_point,
)
from tradeoff.objectives.accuracy import evaluate
from tradeoff.search import Runner, samplers, warm_start_params
from tradeoff.search.warm_start import WARM_DISTILLATION
from tradeoff.search.backend_choice import choose_backend, needs_choice
from tradeoff.spaces import (
    ApplyContext,
    Deployable,
    DistillationConfig,
    FixedBatch,
    PruningConfig,
    QuantizationConfig,
    Recipe,
    RecipeSpace,
    distillation_loss,
    reset_auto_backend,
)
from tradeoff.spaces.quantization import CALIBRATION_BATCHES
from tradeoff.studies import Spec, SpecError, Task, demo_spec, load_task, parse_spec, shared_inputs

METHODS = (
    "tradeoff",
    "tradeoff-1w",
    "tradeoff-plain",
    "tradeoff-1w-plain",
    "tradeoff-1w-cold",
    "tradeoff-1w-indep",
    "tradeoff-1w-startup",
    "tradeoff-1w-cover",
    "tradeoff-1w-exact",
    "tradeoff-exact",
    "user-tpe",
    "user-nsga2",
    "user-random",
)
USER_METHODS = ("user-tpe", "user-nsga2", "user-random")  # the loops a user writes by hand (section (b))
# candidates measured before balanced_start existed: run as they were measured (and their factories, which
# replace plain "tpe", only take effect with it off)
LEGACY_CANDIDATES = ("tradeoff-1w-cold", "tradeoff-1w-indep", "tradeoff-1w-startup", "tradeoff-1w-cover")
QUICK_METHODS = ("tradeoff", "tradeoff-1w", "user-tpe")  # --quick: a smoke run of both kinds of run
COLOURS = {
    "tradeoff": "#1f77b4",
    "tradeoff-1w": "#17becf",
    "tradeoff-1w-cold": "#9467bd",
    "tradeoff-1w-indep": "#bcbd22",
    "tradeoff-1w-startup": "#2ca02c",
    "tradeoff-1w-cover": "#8c564b",
    "tradeoff-plain": "#aec7e8",
    "tradeoff-1w-plain": "#d62728",
    "tradeoff-1w-exact": "#e377c2",
    "tradeoff-exact": "#7f3f98",
    "user-tpe": "#d62728",
    "user-nsga2": "#ff7f0e",
    "user-random": "#8c8c8c",
}
DASHES = ("", "6,3", "2,3", "8,3,2,3", "1,2")  # one per seed (in order of --seeds)
FRACTION = 0.95  # of the best final hypervolume seen: the level whose time to reach is compared
TARGET_SPEEDUP = 3.0  # best user loop / tradeoff, wall clock, medians (the target)
USER_LR = 1e-3  # the hand-written loop's fine-tuning rate: Adam's usual one (tradeoff derives its own)
NSGA_POPULATION = 10  # sized to the budget: 60 trials are 6 generations (Optuna's default 50 never leaves gen 0)
AT_SECONDS = (30.0, 60.0, 120.0, 240.0, 480.0)  # wall-clock times at which every method's median HV is reported
AT_TRIALS = (10, 20, 30, 40, 60, 90, 120)  # trial counts (baseline included) for the same; those past --trials drop
LOWER_LEVELS = (0.80, 0.85, 0.90)  # shares below FRACTION that medians reach sooner: reported, not targets
QUICK = {"trials": 8, "seeds": [0], "steps": 50}
BUSY_CORES = 0.25  # other processes using more than this share of the cores during a run: timings are suspect


@dataclass
class Finished:
    """One finished trial of a run, in the form every hypervolume curve is computed from."""

    number: int
    state: str  # COMPLETE, PRUNED or FAIL
    elapsed_s: float  # since the run began
    values: dict[str, float] | None
    feasible: bool  # COMPLETE, fully measured (not screened nor stopped) and every constraint <= 0
    duration_s: float = 0.0  # the trial's own wall time (start to complete)
    note: str = ""  # deployable_form, screened / stopped / duplicate, or why it failed
    params: dict[str, Any] | None = None  # the sampled knobs (the report's record of what each trial tried)
    stopped: bool = False  # a fidelity rung stopped it (tradeoff only): what --audit-stops runs to the end


@dataclass
class Run:
    method: str
    seed: int
    total_s: float
    baseline: dict[str, float]  # trial 0 of this run
    trials: list[Finished]  # baseline first, then in completion order
    other_cores: float | None = None  # CPU used by other processes during the run, in cores (0: quiet machine)


def cpu_snapshot() -> tuple[float, float, float] | None:
    """(busy CPU seconds of the whole machine since boot, this process's CPU seconds and its finished
    children's (tradeoff's forked workers), wall clock), Linux only."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError, IndexError):
        return None
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    own = os.times()
    return busy, own.user + own.system + own.children_user + own.children_system, time.perf_counter()


def other_cores(before: tuple[float, float, float] | None) -> float | None:
    """How many cores other processes kept busy since ``before`` (what a shared machine costs a run)."""
    after = cpu_snapshot()
    if before is None or after is None or after[2] <= before[2]:
        return None
    return max(0.0, (after[0] - before[0]) - (after[1] - before[1])) / (after[2] - before[2])


def _feasible(state: TrialState, constraints: Mapping[str, float], attrs: Mapping[str, Any]) -> bool:
    if state != TrialState.COMPLETE or attrs.get("screened") or attrs.get("stopped"):
        return False
    return all(v <= 0 for v in constraints.values())


def _finished(trial: FrozenTrial, start: datetime, names: Sequence[str]) -> Finished:
    assert trial.datetime_complete is not None
    values = dict(zip(names, trial.values, strict=True)) if trial.values is not None else None
    attrs = trial.user_attrs
    flags = [k for k in ("screened", "stopped") if attrs.get(k)]
    if attrs.get("stop_reason"):  # record.STOP_REASON: dominated at the rung, or the accuracy limit out of reach
        flags.append(f"({str(attrs['stop_reason'])[:120]})")
    if "duplicate_of" in attrs:
        flags.append(f"duplicate of {attrs['duplicate_of']}")
    if trial.state == TrialState.FAIL:
        note = str(attrs.get("error", ""))
    else:
        note = " ".join([str(attrs.get("deployable_form", "")), *flags])
    return Finished(
        number=trial.number,
        state=trial.state.name,
        elapsed_s=(trial.datetime_complete - start).total_seconds(),
        values=values,
        feasible=values is not None and _feasible(trial.state, trial.constraints, attrs),
        duration_s=(trial.datetime_complete - (trial.datetime_start or trial.datetime_complete)).total_seconds(),
        note=note.strip(),
        params=dict(trial.params),
        stopped=bool(attrs.get("stopped")),
    )


# =====================================================================================================
# (a) tradeoff itself, through its Runner (defaults, one worker, no warm starts)
# =====================================================================================================


WIDTHS = ("quantization.weight_bits", "quantization.activation_bits")  # the pair tradeoff-1w-cover covers


def covering_warm_starts(spec: Spec) -> list[dict[str, Any]]:
    """The ``auto`` warm starts, then one config for each (weight, activation) width pair they leave out.

    Each added config sets the pair, the pruning ratio at its range's midpoint and T and alpha at
    ``WARM_DISTILLATION`` (where the space holds them); other knobs are sampled. Pairs are added in the
    order of the space's choices. A space without both width knobs gets the ``auto`` list unchanged.
    """
    space = spec.recipe_space()
    dists = space.distributions()
    auto = warm_start_params(
        spec.model_copy(update={"search": spec.search.model_copy(update={"warm_start": "auto"})}), space
    )
    if not all(isinstance(dists.get(n), optuna.distributions.CategoricalDistribution) for n in WIDTHS):
        return auto
    seen = {tuple(p.get(n) for n in WIDTHS) for p in auto}
    ratio = dists.get("pruning.ratio")
    extra: dict[str, Any] = dict(WARM_DISTILLATION)
    if isinstance(ratio, optuna.distributions.FloatDistribution):
        extra["pruning.ratio"] = (ratio.low + ratio.high) / 2
    extra = {n: v for n, v in extra.items() if n in dists and dists[n]._contains(dists[n].to_internal_repr(v))}
    out = list(auto)
    for w in dists[WIDTHS[0]].choices:
        for a in dists[WIDTHS[1]].choices:
            if (w, a) not in seen:
                out.append({**extra, WIDTHS[0]: w, WIDTHS[1]: a})
    return out


def run_tradeoff(spec_dict: dict[str, Any], method: str, seed: int) -> Run:
    data = copy.deepcopy(spec_dict)
    sampler = "exact" if method.endswith("-exact") else "auto"  # the candidate is a sampler chosen by name
    data["study"].update(name=f"efficiency-{method}-s{seed}", seed=seed, sampler=sampler)
    if method.startswith("tradeoff-1w"):  # one process: the per-trial comparison with the user loop
        data.setdefault("search", {})["workers"] = 1
    if method == "tradeoff-1w-cold":  # no warm starts: what they add, on each task, per trial
        data.setdefault("search", {})["warm_start"] = []
    if method.endswith("-plain") or method in LEGACY_CANDIDATES:  # TPE's start-up as before balanced_start
        data.setdefault("search", {})["balanced_start"] = False
    if method == "tradeoff-1w-cover":  # the auto warm starts, then one config per width pair they leave out
        data.setdefault("search", {})["warm_start"] = covering_warm_starts(parse_spec(data, "search_efficiency.py"))
    spec = parse_spec(data, "search_efficiency.py")
    names = spec.objective_names()
    reset_auto_backend()  # a fallback to fx remembered by an earlier run must not carry over
    # the candidates: one process (workers = 1), so replacing the factory here is what the study builds
    candidates: dict[str, Callable[[int | None], optuna.samplers.BaseSampler]] = {
        "tradeoff-1w-indep": lambda seed: optuna.samplers.TPESampler(seed=seed, constant_liar=True),
        # Optuna counts every finished trial towards n_startup_trials, enqueued ones included: here the
        # baseline and the warm starts come on top of TPE's default 10 random ones instead of replacing them
        "tradeoff-1w-startup": lambda seed: optuna.samplers.TPESampler(
            seed=seed,
            multivariate=True,
            constant_liar=True,
            n_startup_trials=10 + 1 + len(warm_start_params(spec, spec.recipe_space())),
        ),
    }
    factories = {"tpe": candidates[method]} if method in candidates else {}
    with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(samplers._FACTORIES, factories):
        url = f"sqlite:///{Path(tmp) / 'study.db'}"
        start, t0 = datetime.now(), time.perf_counter()
        study = Runner(spec, url).run()
        total_s = time.perf_counter() - t0
        trials = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and t.datetime_complete]
    base = next((t for t in trials if t.user_attrs.get("role") == "baseline" and t.state == TrialState.COMPLETE), None)
    if base is None:
        raise RuntimeError(f"{method} seed {seed}: the study has no completed baseline trial")
    rest = sorted((t for t in trials if t is not base), key=lambda t: t.datetime_complete)
    return Run(
        method=method,
        seed=seed,
        total_s=total_s,
        baseline=dict(zip(names, base.values, strict=True)),
        trials=[_finished(t, start, names) for t in [base, *rest]],
    )


# =====================================================================================================
# (b) What a user writes by hand: a plain Optuna loop over the same knobs.
#
# optuna.create_study's default sampler (TPE), or NSGA-II with a population of 10, or random search;
# in-memory storage, study.optimize, constraints set on the trial; the same space (the
# spec's knobs and ranges, sampled by the spec's RecipeSpace), steps, learning rate, batches and loss
# as tradeoff; every trial deep-copies the teacher, prunes, attaches fake-quant, distils with the
# teacher run on every step, bakes, builds the deployable form and measures it with tradeoff's own
# objectives (so the numbers mean the same), the baseline measured the same way first. No caching of
# teacher outputs, no screening, no fidelity rungs, no warm starts, no reuse of duplicate recipes.
# =====================================================================================================


@dataclass
class UserEnv:
    spec: Spec
    task: Task
    example_inputs: tuple[torch.Tensor, ...]
    train: list[tuple[Any, torch.Tensor]]
    val: Any  # the samples tradeoff reports accuracy on (validation without its selection slice)
    space: RecipeSpace
    objectives: list[Objective]
    constraints: Constraints
    backend: str  # the int8 builder: under "auto", timed on the teacher as tradeoff's runner does (same programs)


def _args(inputs: Any) -> tuple[Any, ...]:
    return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)


def user_setup(spec: Spec) -> UserEnv:
    task = load_task(spec.task.name, spec.task.kwargs)
    shared = shared_inputs(task, spec.target.batch_size)  # example inputs, materialised batches (logits unused)
    backend = spec.target.backend
    if needs_choice(backend, spec.target.device, tuple(spec.space.quantization.activation_bits)):
        # the same evaluation as tradeoff's: its runner builds every int8 program with the faster builder
        calibration = [_args(inputs) for inputs, _ in list(shared.train)[:CALIBRATION_BATCHES]]
        choice = choose_backend(task.model, shared.example_inputs, calibration, threads=spec.target.threads)
        backend = choice.backend if choice is not None else backend
    return UserEnv(
        spec=spec,
        task=task,
        example_inputs=shared.example_inputs,
        train=list(shared.train),
        val=shared.val,
        # the user writes Adam's usual rate where tradeoff derives one per study (find_lr)
        space=spec.recipe_space(task.model).resolved(USER_LR),
        objectives=default_objectives(complexity=spec.objectives.complexity, energy_source=spec.target.energy),
        constraints=spec.constraints_(),
        backend=backend,
    )


def user_distil(env: UserEnv, student: nn.Module, cfg: DistillationConfig, seed: int) -> nn.Module:
    """Hinton et al.'s distillation as one writes it without a cache: the teacher runs on every step."""
    if cfg.steps == 0:
        return student
    teacher = env.task.model.eval()
    gen = torch.Generator().manual_seed(seed)  # shuffled passes over the batches, seeded
    opt = torch.optim.Adam(student.parameters(), lr=cfg.lr)
    student.train()
    order: list[int] = []
    for _ in range(cfg.steps):
        if not order:
            order = torch.randperm(len(env.train), generator=gen).tolist()
        inputs, targets = env.train[order.pop()]
        with torch.no_grad():
            soft = teacher(*_args(inputs))
        loss = distillation_loss(student(*_args(inputs)), soft, targets, cfg.temperature, cfg.alpha)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return student.eval()


def user_compress(env: UserEnv, recipe: Recipe, seed: int) -> tuple[nn.Module, Deployable]:
    """Prune, attach fake-quant, distil, bake and build the deployable form of a copy of the teacher."""
    torch.manual_seed(seed)
    target = env.spec.target
    ctx = ApplyContext(env.example_inputs, train=env.train, seed=seed, threads=target.threads, backend=env.backend)
    student = copy.deepcopy(env.task.model)
    student = recipe.pruning.apply_(student, ctx)
    student = recipe.quantization.apply_(student, ctx)
    student = user_distil(env, student, recipe.distillation, seed)
    student = recipe.quantization.bake_(student).eval()
    return student, recipe.quantization.deploy(student, ctx)


def user_measure(
    env: UserEnv, recipe: Recipe, scored: nn.Module, deployed: Deployable, baseline: dict[str, float] | None
) -> tuple[dict[str, float], dict[str, float]]:
    """The four objectives, measured as tradeoff measures them, and the constraint values (<= 0: met)."""
    ctx = EvalContext(
        example_inputs=env.example_inputs,
        val=env.val,
        metric=env.task.metric,
        weight_bits=recipe.quantization.weight_bits_by_layer(scored),
        activation_bits=recipe.quantization.activation_bits,
        deployable=deployed.module,
        deployable_form=deployed.form,
        deployable_details={"backend": deployed.backend, "note": deployed.note},
        reference=None if baseline is None else env.task.model,  # timed interleaved with the teacher
        reference_latency_ms=None if baseline is None else baseline["latency_ms"],
        threads=env.spec.target.threads,
        device=env.spec.target.device,
    )
    values = {obj.name: obj.measure(scored, ctx).value for obj in env.objectives}
    if not recipe.quantization.is_identity:  # the front's accuracy is the program that runs, as in tradeoff (issue 27)
        batch = int(env.example_inputs[0].shape[0])
        values["accuracy"] = evaluate(FixedBatch(deployed.module, batch), env.val, env.task.metric)
    figures = {**ctx.profile(scored).figures(), **values}
    return values, constraint_values(figures, baseline or values, env.constraints)


def user_baseline(env: UserEnv, seed: int) -> tuple[dict[str, float], dict[str, float]]:
    identity = env.space.identity()
    scored, deployed = user_compress(env, identity, seed)
    return user_measure(env, identity, scored, deployed, None)


def user_sampler(method: str, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler of each hand-written loop: what ``create_study`` gives (TPE), NSGA-II with a population
    the budget can evolve, and random search."""
    if method == "user-tpe":
        return optuna.samplers.TPESampler(seed=seed)  # optuna.create_study's default sampler
    if method == "user-nsga2":
        return optuna.samplers.NSGAIISampler(population_size=NSGA_POPULATION, seed=seed)
    if method == "user-random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"not a user loop: {method!r}; expected one of {USER_METHODS}")


def run_user(spec: Spec, method: str, seed: int) -> Run:
    start, t0 = datetime.now(), time.perf_counter()
    env = user_setup(spec)
    names = tuple(obj.name for obj in env.objectives)
    baseline, baseline_constraints = user_baseline(env, seed)  # trial 0: the uncompressed model
    baseline_s = (datetime.now() - start).total_seconds()

    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        recipe = env.space.sample(trial)  # the spec's knobs and ranges
        try:
            scored, deployed = user_compress(env, recipe, seed + trial.number + 1)
            values, constraints = user_measure(env, recipe, scored, deployed, baseline)
        except Exception as exc:  # kept for the report; study.optimize(catch=...) marks the trial failed
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
            raise
        trial.set_user_attr("deployable_form", deployed.form)
        for name, value in constraints.items():
            trial.set_constraint(name, value)  # Optuna 5: TPE and NSGA-II read these
        return tuple(values[n] for n in names)

    study = optuna.create_study(directions=list(DIRECTIONS), sampler=user_sampler(method, seed))
    study.optimize(objective, n_trials=spec.study.n_trials - 1, catch=(Exception,))
    total_s = time.perf_counter() - t0
    # ------------------------------------------------------------------ end of what the user writes
    done = sorted((t for t in study.trials if t.datetime_complete), key=lambda t: t.datetime_complete)
    base = Finished(0, "COMPLETE", baseline_s, baseline, all(v <= 0 for v in baseline_constraints.values()))
    trials = [base] + [_finished(t, start, names) for t in done]
    for i, t in enumerate(trials):
        t.number = i  # the baseline is trial 0, as in tradeoff's studies
    return Run(method=method, seed=seed, total_s=total_s, baseline=baseline, trials=trials)


# =====================================================================================================
# (d) --audit-stops: every trial a rung stopped, run to the end in a side study that feeds nothing back
# =====================================================================================================


def audit_stops(spec_dict: dict[str, Any], run: Run) -> dict[str, Any] | None:
    """Run ``run``'s stopped configs to the end in a side study (no rungs, one worker, its own baseline) and
    report how many would have been feasible, how many would have been on the run's final front, and the
    share of the hypervolume the stops lost (side points normalised by the side study's own baseline, as
    every run's are). ``None`` when nothing was stopped."""
    stopped = [t for t in run.trials if t.stopped and t.params]
    if not stopped:
        return None
    data = copy.deepcopy(spec_dict)
    data["study"].update(name=f"audit-{run.method}-s{run.seed}", seed=run.seed, n_trials=1 + len(stopped))
    data.setdefault("search", {}).update(
        rungs=[], workers=1, reuse_duplicates=False, warm_start=[t.params for t in stopped]
    )
    spec = parse_spec(data, "search_efficiency.py --audit-stops")
    names = spec.objective_names()
    reset_auto_backend()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        study = Runner(spec, f"sqlite:///{Path(tmp) / 'audit.db'}").run()
        side = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    base = next(t for t in side if t.user_attrs.get("role") == "baseline")
    side_base = dict(zip(names, base.values, strict=True))
    ended = [t for t in side if t is not base and t.values is not None]
    feasible = [t for t in ended if _feasible(t.state, t.constraints, t.user_attrs)]
    ref = reference_point(run.baseline["accuracy"], spec.constraints.max_accuracy_drop)
    kept = [normalise(t.values, run.baseline, names) for t in run.trials if t.feasible and t.values is not None]
    extra = [normalise(dict(zip(names, t.values, strict=True)), side_base, names) for t in feasible]
    hv_run = hypervolume(kept, ref) if kept else 0.0
    hv_all = hypervolume(kept + extra, ref) if kept + extra else 0.0
    front = [False] * len(feasible)
    if extra:
        front = [bool(f) for f in pareto_mask(kept + extra)[len(kept) :]]  # normalised points are all minimised
    ended_by_number = {t.number: t for t in ended}
    result_of = {id(t): (bool(f), t) for t, f in zip(feasible, front, strict=True)}
    return {
        "stopped": len(stopped),
        "ran_to_end": len(ended),
        "feasible": len(feasible),
        "on_final_front": sum(front),
        "hv_run": hv_run,
        "hv_with_stopped": hv_all,
        "hv_lost_share": 0.0 if hv_all <= 0 else (hv_all - hv_run) / hv_all,
        "seconds": time.perf_counter() - t0,
        "ended": [  # side trial i + 1 ran stopped config i (one worker, enqueued in order)
            {
                "trial": stopped[n - 1].number,
                "note": stopped[n - 1].note,
                "values": list(t.values),
                "feasible": id(t) in result_of,
                "on_final_front": result_of.get(id(t), (False, t))[0],
            }
            for n, t in sorted(ended_by_number.items())
            if 0 < n <= len(stopped)
        ],
        "configs": [{"trial": t.number, "note": t.note, "params": t.params} for t in stopped],
    }


# =====================================================================================================
# Hypervolume curves and the report
# =====================================================================================================


def curve(run: Run, max_accuracy_drop: float | None) -> list[dict[str, Any]]:
    """Hypervolume after each finished trial (baseline first), with elapsed seconds and trial count."""
    names = tuple(run.baseline)
    ref = reference_point(run.baseline["accuracy"], max_accuracy_drop)
    points: list[Any] = []
    out = []
    for n, t in enumerate(run.trials, start=1):
        if t.feasible and t.values is not None:
            points.append(normalise(t.values, run.baseline, names))
        hv = hypervolume(points, ref) if points else 0.0
        out.append(
            {
                "n": n,
                "trial": t.number,
                "state": t.state,
                "feasible": t.feasible,
                "elapsed_s": t.elapsed_s,
                "duration_s": t.duration_s,
                "hv": hv,
                "values": t.values,
                "note": t.note,
                "params": t.params,
            }
        )
    return out


def first_reaching(points: list[dict[str, Any]], level: float) -> dict[str, Any] | None:
    return next((p for p in points if p["hv"] >= level and level > 0), None)


def median_time(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over seeds of the time to the level; runs that never reach it sort last and, at the median,
    give a lower bound (their total time)."""

    def seconds_of(r: dict[str, Any]) -> float:
        return r["reached"]["elapsed_s"] if r["reached"] else r["total_s"]

    keyed = sorted(rows, key=lambda r: (r["reached"] is None, seconds_of(r)))
    mid = (len(keyed) - 1) / 2
    picked = [keyed[int(mid)], keyed[int(mid + 0.5)]]
    seconds = statistics.mean(seconds_of(r) for r in picked)
    trials = [r["reached"]["n"] if r["reached"] else r["trials"] for r in picked]
    bound = any(r["reached"] is None for r in picked)
    return {"seconds": seconds, "trials": statistics.mean(trials), "lower_bound": bound}


def median_trials(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over seeds of the trial count (the baseline included) at which the level is first reached;
    runs that never reach it sort last and, at the median, give a lower bound (their trial count)."""
    counts = sorted(
        ((r["reached"]["n"], False) if r["reached"] else (r["trials"], True) for r in rows),
        key=lambda c: (c[1], c[0]),  # runs that never reach it last
    )
    mid = (len(counts) - 1) / 2
    picked = [counts[int(mid)], counts[int(mid + 0.5)]]
    return {"trials": statistics.mean(c[0] for c in picked), "lower_bound": any(c[1] for c in picked)}


def hv_at_seconds(points: list[dict[str, Any]], seconds: float) -> float:
    """The hypervolume a run had at ``seconds`` of wall clock (its last value if it ended sooner)."""
    return max([0.0] + [p["hv"] for p in points if p["elapsed_s"] <= seconds])


def hv_after_trials(points: list[dict[str, Any]], n: int) -> float | None:
    """The hypervolume after the first ``n`` finished trials (baseline included); ``None`` past the run."""
    return points[n - 1]["hv"] if len(points) >= n else None


def ratio(slow: dict[str, Any], fast: dict[str, Any], key: str) -> dict[str, Any]:
    """``slow / fast`` of two medians of ``key`` (seconds or trials), with what lower bounds make of it."""
    value = slow[key] / fast[key] if fast[key] > 0 else float("inf")
    if fast["lower_bound"]:
        return {"value": value, "kind": "unknown" if slow["lower_bound"] else "at most"}
    return {"value": value, "kind": "at least" if slow["lower_bound"] else "exact"}


def _fmt_median(m: dict[str, Any] | None) -> str:
    if m is None:
        return "-"
    return f"{'> ' if m['lower_bound'] else ''}{m['seconds']:.1f} s"


def _fmt_hit(hit: dict[str, Any] | None) -> str:
    return "not reached" if hit is None else f"{hit['elapsed_s']:.1f} s"


def _fmt_speedup(s: dict[str, Any] | None) -> str:
    if s is None:
        return "-"
    prefix = {"exact": "", "at least": ">= ", "at most": "<= ", "unknown": "? "}[s["kind"]]
    return "unknown (neither reached)" if s["kind"] == "unknown" else f"{prefix}{s['value']:.2f}x"


def level_row(by: dict[str, list[dict[str, Any]]], methods: Sequence[str], level: float) -> dict[str, Any]:
    """Every method's median time and trials to ``level``, and the two ratios there (as for the target level)."""
    times, counts = {}, {}
    for m in methods:
        rows = [{**r, "reached": first_reaching(r["curve"], level)} for r in by[m]]
        times[m] = median_time(rows)
        counts[m] = median_trials(rows)
    users = [m for m in methods if m in USER_METHODS]
    best_user = min(users, key=lambda m: (times[m]["lower_bound"], times[m]["seconds"])) if users else None
    wall = ratio(times[best_user], times["tradeoff"], "seconds") if best_user and "tradeoff" in times else None
    per_trial = (
        ratio(counts["user-tpe"], counts["tradeoff-1w"], "trials")
        if "user-tpe" in counts and "tradeoff-1w" in counts
        else None
    )
    return {
        "level": level,
        "time": times,
        "trials": counts,
        "best_user": best_user,
        "wall": wall,
        "per_trial": per_trial,
    }


def write_svg(runs: list[dict[str, Any]], level: float, path: Path, title: str) -> None:
    """Hypervolume against wall-clock seconds, one step line per run, a colour per method."""
    w, h, left, right, top, bottom = 820, 480, 70, 190, 40, 55
    xmax = max(r["total_s"] for r in runs) or 1.0
    ymax = max([p["hv"] for r in runs for p in r["curve"]] + [level]) * 1.1 or 1.0

    def x(v: float) -> float:
        return left + (w - left - right) * v / xmax

    def y(v: float) -> float:
        return h - bottom - (h - top - bottom) * v / ymax

    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{left}" y="22" font-size="14">{title}</text>',
    ]
    for i in range(6):
        xv, yv = xmax * i / 5, ymax * i / 5
        svg += [
            f'<line x1="{x(xv):.1f}" y1="{top}" x2="{x(xv):.1f}" y2="{h - bottom}" stroke="#eee"/>',
            f'<text x="{x(xv):.1f}" y="{h - bottom + 16}" text-anchor="middle">{xv:.0f}</text>',
            f'<line x1="{left}" y1="{y(yv):.1f}" x2="{w - right}" y2="{y(yv):.1f}" stroke="#eee"/>',
            f'<text x="{left - 6}" y="{y(yv) + 4:.1f}" text-anchor="end">{yv:.3g}</text>',
        ]
    svg += [
        f'<rect x="{left}" y="{top}" width="{w - left - right}" height="{h - top - bottom}" '
        'fill="none" stroke="#444"/>',
        f'<text x="{(left + w - right) / 2}" y="{h - 15}" text-anchor="middle">'
        "wall-clock seconds since the run began</text>",
        f'<text transform="translate(18,{(top + h - bottom) / 2}) rotate(-90)" text-anchor="middle">hypervolume</text>',
        f'<line x1="{left}" y1="{y(level):.1f}" x2="{w - right}" y2="{y(level):.1f}" stroke="#2ca02c" '
        'stroke-dasharray="4,4"/>',
        f'<text x="{left + 6}" y="{y(level) - 5:.1f}" fill="#2ca02c">{FRACTION:.0%} of the best final hypervolume'
        "</text>",
    ]
    seeds = sorted({r["seed"] for r in runs})
    for i, r in enumerate(runs):
        pts, prev = [f"{x(0):.1f},{y(0):.1f}"], 0.0
        for p in r["curve"]:
            pts += [f"{x(p['elapsed_s']):.1f},{y(prev):.1f}", f"{x(p['elapsed_s']):.1f},{y(p['hv']):.1f}"]
            prev = p["hv"]
        pts.append(f"{x(r['total_s']):.1f},{y(prev):.1f}")
        colour, dash = COLOURS.get(r["method"], "#000"), DASHES[seeds.index(r["seed"]) % len(DASHES)]
        svg.append(
            f'<polyline points="{" ".join(pts)}" fill="none" stroke="{colour}" stroke-width="1.8" '
            f'stroke-dasharray="{dash}"/>'
        )
        ly = top + 14 + 18 * i
        svg += [
            f'<line x1="{w - right + 10}" y1="{ly}" x2="{w - right + 40}" y2="{ly}" stroke="{colour}" '
            f'stroke-width="1.8" stroke-dasharray="{dash}"/>',
            f'<text x="{w - right + 46}" y="{ly + 4}">{r["method"]} seed {r["seed"]}</text>',
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([*svg, "</svg>"]) + "\n")


# =====================================================================================================
# main
# =====================================================================================================


def build_spec_dict(args: argparse.Namespace) -> dict[str, Any]:
    data = demo_spec().to_dict()
    data["task"] = {"name": args.task, **dict(args.task_arg)}
    data["study"]["n_trials"] = args.trials
    if args.steps is not None:
        data["space"]["distillation"]["steps"] = args.steps
    if args.max_accuracy_drop is not None:
        data["constraints"]["max_accuracy_drop"] = args.max_accuracy_drop
    return data


def task_arg(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` of ``--task-arg``: the value as JSON when it parses, else the string itself."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE (e.g. val_size=2000), got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def run_settings(args: argparse.Namespace, spec: Spec) -> dict[str, Any]:
    """What makes two invocations' runs comparable: the task, trials per run, steps and constraints."""
    return {
        "task": args.task,
        "task_args": dict(args.task_arg),
        "trials_per_run": args.trials,
        "distillation_steps": spec.space.distillation.steps,
        "constraints": spec.constraints.model_dump(),
    }


def load_partial(path: Path, settings: dict[str, Any]) -> tuple[list[Run], dict[str, dict[str, Any]]]:
    """The runs and audits of an earlier invocation's ``.partial.json``, if it was made with ``settings``.

    Raises:
        ValueError: the file is unreadable, has no settings, or was made with other settings (the message
            names the ones that differ).
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"--resume {path}: cannot read it ({exc}); pass a .partial.json this script wrote") from exc
    theirs = data.get("settings") if isinstance(data, dict) else None
    if not isinstance(theirs, dict):
        raise ValueError(
            f"--resume {path}: it records no settings (written before --resume existed, or not a .partial.json), "
            "so its runs cannot be checked against this invocation's; rerun those runs instead"
        )
    differ = sorted(k for k in settings if theirs.get(k) != settings[k])
    if differ:
        detail = "; ".join(f"{k}: file {theirs.get(k)!r}, now {settings[k]!r}" for k in differ)
        raise ValueError(
            f"--resume {path}: made with other settings ({detail}); pass the same options or drop --resume"
        )
    runs = [
        Run(**{**r, "trials": [Finished(**t) for t in r["trials"]]})  # the dataclasses as written by asdict
        for r in data.get("runs", [])
    ]
    return runs, dict(data.get("audits", {}))


def warm_up(env: UserEnv) -> float:
    """Build one int8 deployable form (the process's first torch.compile) before any timed run."""
    bits = [b for b in env.space.quantization.weight_bits if b <= 8]
    acts = [b for b in env.space.quantization.activation_bits if b <= 8]
    if not bits or not acts:
        return 0.0
    start = time.perf_counter()
    recipe = Recipe(
        pruning=PruningConfig(ratio=0.0),
        quantization=QuantizationConfig(weight_bits=max(bits), activation_bits=max(acts)),
        distillation=DistillationConfig(steps=0),
    )
    user_compress(env, recipe, seed=0)
    reset_auto_backend()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="digits", choices=["digits", "fashion-mnist"])
    parser.add_argument("--trials", type=int, default=None, help="trials per run, the baseline included (60)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="(0 1 2 3 4)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=None, help=f"({' '.join(METHODS)})")
    parser.add_argument("--steps", type=int, default=None, help="distillation steps per trial (the spec's)")
    parser.add_argument(
        "--task-arg",
        type=task_arg,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an argument of the task (repeatable), e.g. val_size=2000 for fashion-mnist; the value is read "
        "as JSON when it parses (2000, 0.5, true), else as a string",
    )
    parser.add_argument("--quick", action="store_true", help="one seed, 8 trials, 50 steps: under 3 minutes")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,  # torch's own default (every core): what a user's script that sets nothing gets
        help="torch intra-op threads of this process, i.e. of the user loop's fine-tuning and of building the task "
        "(tradeoff's runs pin every trial to the spec's target.threads in each worker, and latency is always timed "
        "at target.threads); default: torch's own, every core, as a script that sets nothing runs",
    )
    parser.add_argument("--max-accuracy-drop", type=float, default=None, help="absolute (the demo spec's: 0.03)")
    parser.add_argument("--max-size-ratio", type=float, default=None, help="max_size_bytes = R x the baseline's")
    parser.add_argument("--max-latency-ratio", type=float, default=None, help="max_latency_ms = R x the baseline's")
    parser.add_argument("--max-energy-ratio", type=float, default=None, help="max_energy_mj = R x the baseline's")
    parser.add_argument(
        "--audit-stops",
        action="store_true",
        help="after each run of tradeoff's defaults, run every trial a rung stopped to the end in a side study (not timed, "
        "feeds nothing back) and report how many would have been feasible, on the front, and the hypervolume lost",
    )
    parser.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="PARTIAL_JSON",
        help="a .partial.json of an earlier invocation with the same settings: its runs (and audits) are kept and "
        "only the missing (method, seed) runs are made, so a long comparison can be split across sittings",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/search_efficiency.json"))
    parser.add_argument("--svg", type=Path, default=Path("benchmarks/results/search_efficiency.svg"))
    args = parser.parse_args()
    defaults = QUICK if args.quick else {"trials": 60, "seeds": [0, 1, 2, 3, 4], "steps": None}
    args.trials = args.trials if args.trials is not None else defaults["trials"]
    args.seeds = args.seeds if args.seeds is not None else defaults["seeds"]
    args.steps = args.steps if args.steps is not None else defaults["steps"]
    if args.methods is None:
        args.methods = list(QUICK_METHODS if args.quick else METHODS)
    if args.trials < 2:
        parser.error("--trials must be at least 2 (the baseline and one candidate)")
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the user loop's caught failures are counted below
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    wall0 = time.perf_counter()

    # ---- before any timed run: the teacher (trained and cached on first use), the baseline, one compile
    data = build_spec_dict(args)
    prep0 = time.perf_counter()
    try:  # a bad --task-arg (or other option) is a spec problem: say it, exit 2, before any work
        first = parse_spec(data, "search_efficiency.py")
    except SpecError as exc:
        parser.error(str(exc))
    env = user_setup(first)
    task_s = time.perf_counter() - prep0
    base0 = time.perf_counter()
    base, _ = user_baseline(env, seed=0)
    baseline_s = time.perf_counter() - base0
    warm_s = warm_up(env)
    for flag, key, name in (
        (args.max_size_ratio, "max_size_bytes", "size_bytes"),
        (args.max_latency_ratio, "max_latency_ms", "latency_ms"),
        (args.max_energy_ratio, "max_energy_mj", "energy_mj"),
    ):
        if flag is not None:
            data["constraints"][key] = float(flag * base[name])
    spec = parse_spec(data, "search_efficiency.py")
    print(
        f"machine: {describe_device(spec.target.device)}; python {platform.python_version()}, "
        f"torch {torch.__version__}, optuna {optuna.__version__}"
    )
    print(
        f"task {args.task}: built in {task_s:.1f} s (teacher {env.task.info.get('teacher_trained_s') or 'cached'}), "
        f"baseline measured in {baseline_s:.1f} s { ({k: round(v, 4) for k, v in base.items()}) }, "
        f"warm-up compile {warm_s:.1f} s"
    )
    print(
        f"constraints: { ({k: v for k, v in spec.constraints.model_dump().items() if v is not None}) }; "
        f"{args.trials} trials per run, {spec.space.distillation.steps} distillation steps, seeds {args.seeds}, "
        f"{torch.get_num_threads()} torch threads"
    )

    # ---- the runs: the order of the methods rotates with the seed (later compiles hit inductor's caches)
    settings = run_settings(args, spec)
    runs: list[Run] = []
    audits: dict[str, dict[str, Any]] = {}
    if args.resume is not None:
        try:
            runs, audits = load_partial(args.resume, settings)
        except ValueError as exc:
            parser.error(str(exc))
        kept = sorted({(r.method, r.seed) for r in runs})
        print(f"resumed {len(runs)} run(s) from {args.resume}: {', '.join(f'{m} seed {s}' for m, s in kept)}")
    done = {(r.method, r.seed) for r in runs}
    for i, seed in enumerate(args.seeds):
        order = args.methods[i % len(args.methods) :] + args.methods[: i % len(args.methods)]
        for method in order:
            if (method, seed) in done:
                continue
            before = cpu_snapshot()
            if method in USER_METHODS:
                run = run_user(spec, method, seed)
            else:
                run = run_tradeoff(spec.to_dict(), method, seed)
            run.other_cores = other_cores(before)
            runs.append(run)
            states = Counter(t.state for t in run.trials)
            busy = "" if run.other_cores is None else f", other processes used {run.other_cores:.2f} cores"
            print(
                f"  {method:<16} seed {seed}: {len(run.trials)} trials in {run.total_s:6.1f} s, "
                f"{sum(t.feasible for t in run.trials)} feasible, {dict(states)}{busy}",
                flush=True,
            )
            if args.audit_stops and method == "tradeoff":  # the defaults' stops; after the run, not timed
                audit = audit_stops(spec.to_dict(), run)
                if audit is not None:
                    audits[f"{method} seed {seed}"] = audit
                    print(
                        f"    audit: {audit['stopped']} stopped, {audit['feasible']} would have been feasible, "
                        f"{audit['on_final_front']} on the final front, "
                        f"{100 * audit['hv_lost_share']:.2f} % of the hypervolume lost ({audit['seconds']:.0f} s)",
                        flush=True,
                    )
            partial = {"settings": settings, "runs": [dataclasses.asdict(r) for r in runs], "audits": audits}
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.with_suffix(".partial.json").write_text(json.dumps(partial))  # survives an interrupted run
    report(args, spec, runs, audits, base, {"task_s": task_s, "baseline_s": baseline_s, "warm_s": warm_s}, wall0)


def report(
    args: argparse.Namespace,
    spec: Spec,
    runs: list[Run],
    audits: dict[str, dict[str, Any]],
    base: dict[str, float],
    prep: dict[str, float],
    wall0: float,
) -> None:
    """Hypervolume curves, the level, medians at fixed times and trial counts, the two ratios, the targets."""
    max_drop = spec.constraints.max_accuracy_drop
    rows = []
    for run in runs:
        points = curve(run, max_drop)
        rows.append(
            {
                "method": run.method,
                "seed": run.seed,
                "total_s": run.total_s,
                "trials": len(run.trials),
                "feasible": sum(t.feasible for t in run.trials),
                "stopped": sum(t.stopped for t in run.trials),
                "states": dict(Counter(t.state for t in run.trials)),
                "other_cores": run.other_cores,
                "baseline": run.baseline,
                "final_hv": points[-1]["hv"],
                "curve": points,
            }
        )
    best = max(r["final_hv"] for r in rows)
    level = FRACTION * best
    for r in rows:
        hit = first_reaching(r["curve"], level)
        r["reached"] = None if hit is None else {"elapsed_s": hit["elapsed_s"], "n": hit["n"]}
    present = {r["method"] for r in rows}  # resumed runs may add methods this invocation did not name
    methods = [m for m in dict.fromkeys([*args.methods, *METHODS]) if m in present]
    by = {m: [r for r in rows if r["method"] == m] for m in methods}
    levels = {share: level_row(by, methods, share * best) for share in (*LOWER_LEVELS, FRACTION)}
    times, counts = levels[FRACTION]["time"], levels[FRACTION]["trials"]
    best_user, wall, per_trial = levels[FRACTION]["best_user"], levels[FRACTION]["wall"], levels[FRACTION]["per_trial"]
    at_s = {m: {t: statistics.median(hv_at_seconds(r["curve"], t) for r in by[m]) for t in AT_SECONDS} for m in methods}
    at_n: dict[str, dict[int, float | None]] = {}
    for m in methods:
        at_n[m] = {}
        for n in (n for n in AT_TRIALS if n <= args.trials):
            hvs = [hv_after_trials(r["curve"], n) for r in by[m]]
            at_n[m][n] = statistics.median(hvs) if hvs and all(h is not None for h in hvs) else None

    cold = (
        ratio(counts["tradeoff-1w-cold"], counts["tradeoff-1w"], "trials")
        if "tradeoff-1w-cold" in counts and "tradeoff-1w" in counts
        else None
    )
    wall_met = wall is not None and wall["kind"] in ("exact", "at least") and wall["value"] >= TARGET_SPEEDUP
    trial_met = per_trial is not None and per_trial["kind"] in ("exact", "at least") and per_trial["value"] > 1.0

    print()
    print(f"best final hypervolume {best:.4f}; level = {FRACTION:.0%} of it = {level:.4f}")
    print("| method | seed | trials | feasible | stopped | final HV | reached at | trials to reach | total s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        hit = r["reached"]
        print(
            f"| {r['method']} | {r['seed']} | {r['trials']} | {r['feasible']} | {r['stopped']} | "
            f"{r['final_hv']:.4f} | {_fmt_hit(hit)} | {hit['n'] if hit else '-'} | {r['total_s']:.1f} |"
        )
    print()
    head = " | ".join([f"HV at {t:.0f} s" for t in AT_SECONDS] + [f"after {n}" for n in at_n[methods[0]]])
    print(f"| method | median time to level | median trials to level | {head} |")
    print("|---|---:|---:|" + "---:|" * (len(AT_SECONDS) + len(at_n[methods[0]])))
    for m in methods:
        cells = [f"{at_s[m][t]:.4f}" for t in AT_SECONDS]
        cells += ["-" if at_n[m][n] is None else f"{at_n[m][n]:.4f}" for n in at_n[m]]
        trials = f"{'> ' if counts[m]['lower_bound'] else ''}{counts[m]['trials']:.0f}"
        print(f"| {m} | {_fmt_median(times[m])} | {trials} | {' | '.join(cells)} |")
    print()
    print(
        "| share of the best | " + " | ".join(methods) + " | wall: best user loop / tradeoff | per trial: "
        "user-tpe / tradeoff-1w |"
    )
    print("|---|" + "---|" * len(methods) + "---:|---:|")
    for share, row in levels.items():
        cells = [
            f"{_fmt_median(row['time'][m])}, {'> ' if row['trials'][m]['lower_bound'] else ''}"
            f"{row['trials'][m]['trials']:.0f} trials"
            for m in methods
        ]
        print(
            f"| {share:.0%} | {' | '.join(cells)} | {_fmt_speedup(row['wall'])} ({row['best_user'] or '-'}) | "
            f"{_fmt_speedup(row['per_trial'])} |"
        )
    print()
    if wall is not None:
        print(
            f"wall clock, same cores: the best user loop ({best_user}) / tradeoff = {_fmt_speedup(wall)} "
            f"(target >= {TARGET_SPEEDUP:.0f}x): {'PASS' if wall_met else 'FAIL'}"
        )
    if per_trial is not None:
        print(
            f"per trial, one worker each: user-tpe / tradeoff-1w trials to the level = {_fmt_speedup(per_trial)} "
            f"(target > 1x, fewer trials): {'PASS' if trial_met else 'FAIL'}"
        )
    if cold is not None:
        print(f"warm starts, per trial: tradeoff-1w-cold / tradeoff-1w = {_fmt_speedup(cold)} (> 1x: they help)")
    for name, a in audits.items():
        print(
            f"audit {name}: {a['stopped']} stopped, {a['feasible']} feasible at the end, {a['on_final_front']} on the "
            f"final front, {100 * a['hv_lost_share']:.2f} % of the hypervolume lost"
        )
    if audits:
        worst = max(a["hv_lost_share"] for a in audits.values())
        print(f"stop audit: worst run lost {100 * worst:.2f} % (target < 2 %): {'PASS' if worst < 0.02 else 'FAIL'}")
    busy = [r for r in rows if (r["other_cores"] or 0) > BUSY_CORES]
    if busy:
        print(
            f"WARNING: the machine was busy during {len(busy)} run(s) (other processes used up to "
            f"{max(r['other_cores'] for r in busy):.2f} of {os.cpu_count()} cores): their wall-clock times are "
            "inflated, often by far more than that share (oversubscribed threads); rerun on a quiet machine."
        )
    wall_s = time.perf_counter() - wall0
    print(f"whole script: {wall_s:.1f} s")

    summary = {
        "machine": describe_device(spec.target.device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "optuna": optuna.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "task": args.task,
        "task_args": dict(args.task_arg),
        "quick": args.quick,
        "torch_threads": torch.get_num_threads(),
        "trials_per_run": args.trials,
        "seeds": sorted({r["seed"] for r in rows}),
        "methods": methods,
        "distillation_steps": spec.space.distillation.steps,
        "constraints": spec.constraints.model_dump(),
        "prepare": {**prep, "baseline": base},
        "best_final_hv": best,
        "level": level,
        "fraction": FRACTION,
        "median_time": times,
        "median_trials": counts,
        "hv_at_seconds": at_s,
        "hv_after_trials": at_n,
        "best_user_loop": best_user,
        "wall_clock_ratio": wall,
        "per_trial_ratio": per_trial,
        "warm_start_ratio": cold,
        "levels": {f"{share:.2f}": row for share, row in levels.items()},
        "targets": {"wall_clock": {"speedup": TARGET_SPEEDUP, "met": wall_met}, "per_trial": {"met": trial_met}},
        "audits": audits,
        "busy_runs": [f"{r['method']} seed {r['seed']}" for r in busy],
        "script_s": wall_s,
        "runs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    write_svg(
        rows, level, args.svg, f"{args.task}: hypervolume against wall-clock seconds ({args.trials} trials a run)"
    )
    print(f"wrote {args.out} and {args.svg}")


if __name__ == "__main__":
    main()
