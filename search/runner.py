"""Create or resume a study and run its trials: trial 0 is the baseline, then sampled recipes.

The runner uses Optuna's ask-and-tell interface so it owns the loop: it records the baseline
first, stores every figure through :class:`~tradeoff.studies.record.TrialRecord`, keeps a failed
trial's reason on the trial and goes on, and marks the running trial failed on Ctrl-C so a
re-run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from tradeoff.objectives import DIRECTIONS, Measurement, dominating_count, normalise
from tradeoff.spaces import RecipeSpace, torch_threads
from tradeoff.studies import Task, TrialRecord, load_task, open_storage, record, weights_sha256
from tradeoff.studies.results import ResultsError, baseline_trial, objective_names_of, study_hypervolume
from tradeoff.studies.spec import Spec, SpecError
from tradeoff.studies.storage import sqlite_path

from .samplers import SamplerChoice, choose_sampler, make_sampler
from .trial import TrialEnv, evaluate_recipe, latency_measurement, with_baseline
from .workers import Workers, noting_sigint, resolve_workers, sigint_seen

INTERRUPTED = "interrupted: the process stopped while the trial ran"


class StudyMismatch(ValueError):
    """The named study exists but was launched with a different spec."""


def sampler_for(spec: Spec, space: RecipeSpace) -> tuple[optuna.samplers.BaseSampler, SamplerChoice]:
    """The spec's sampler, seeded; ``auto`` chooses from the space's knobs and the budget."""
    name = spec.study.sampler
    if name == "auto":
        choice = choose_sampler(space.distributions(), spec.study.n_trials)
    else:
        choice = SamplerChoice(name, "named in the spec")
    return make_sampler(choice.name, seed=spec.study.seed), choice


AUTO_WARM_STARTS: tuple[dict[str, Any], ...] = (  # what a practitioner tries first, where the space holds it,
    # cheapest and most often useful first (the order is the order they run in):
    # int8 weights with fp32 activations (weight-only: no int8 kernel or compile needed, ~no accuracy lost)
    # across the pruning range's quartiles, pruning being the one knob that moves size, latency and energy
    # together; it wins where int8 kernels do not (small models at batch 1, where quantize/dequantize
    # overhead outweighs the arithmetic)...
    {"pruning.ratio": 0.5, "quantization.weight_bits": 8, "quantization.activation_bits": 32},
    {"pruning.ratio": 0.75, "quantization.weight_bits": 8, "quantization.activation_bits": 32},
    {"pruning.ratio": 0.25, "quantization.weight_bits": 8, "quantization.activation_bits": 32},
    # ...then full int8 (fast where the target has int8 kernels and the model is big enough for them to pay;
    # each costs a compile), uniform and with half the channels pruned
    {"pruning.ratio": 0.0, "quantization.weight_bits": 8, "quantization.activation_bits": 8},
    {"pruning.ratio": 0.5, "quantization.weight_bits": 8, "quantization.activation_bits": 8},
)
WARM_DISTILLATION = {"distillation.temperature": 4.0, "distillation.alpha": 0.5}  # Hinton et al.'s usual pick


def _inside(dist: optuna.distributions.BaseDistribution, value: Any) -> bool:
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


def warm_start_params(spec: Spec, space: RecipeSpace) -> list[dict[str, Any]]:
    """The configs enqueued right after the baseline, as trial parameters (knobs left out are sampled).

    ``"auto"``: :data:`AUTO_WARM_STARTS`, each value applied to a knob and its per-group variants
    (``pruning.ratio@stage1``), keeping only values the space holds, with T and alpha at
    :data:`WARM_DISTILLATION` where in range. A spec's own list is checked knob by knob.

    Raises:
        SpecError: a listed knob is not in the space, or its value is outside the knob's range.
    """
    dists = space.distributions()
    warm = spec.search.warm_start
    if warm == "auto":
        out: list[dict[str, Any]] = []
        for base in AUTO_WARM_STARTS:
            wanted = {**base, **WARM_DISTILLATION}
            params = {n: wanted[n.split("@", 1)[0]] for n in dists if n.split("@", 1)[0] in wanted}
            params = {n: v for n, v in params.items() if _inside(dists[n], v)}
            tried = {n.split("@", 1)[0] for n in params}
            if not {"quantization.weight_bits", "pruning.ratio"} & tried or params in out:
                continue  # the space cannot hold this config (e.g. no 8-bit choice): skip it
            out.append(params)
        return out
    problems = []
    for i, params in enumerate(warm):
        for name, value in params.items():
            if name not in dists:
                problems.append(f"search.warm_start[{i}].{name}: not a knob of this space; knobs: {', '.join(dists)}")
            elif not _inside(dists[name], value):
                problems.append(f"search.warm_start[{i}].{name}: {value!r} is outside the knob's range {dists[name]}")
    if problems:
        raise SpecError("invalid warm start(s):\n  " + "\n  ".join(problems))
    return [dict(p) for p in warm]


def _comparable(spec_dict: dict) -> dict:
    """A spec without the fields that may change on resume (budget, storage location)."""
    study = {k: v for k, v in spec_dict["study"].items() if k not in ("n_trials", "storage")}
    return {**spec_dict, "study": study}


def _worker_name() -> str:
    """``host:pid`` of the process running a trial (workers on one host differ by pid)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _counted(t: optuna.trial.FrozenTrial) -> bool:
    """Trials that use up the budget: completed, stopped at a rung, real failures (not interruptions)."""
    if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return t.state == TrialState.FAIL and t.user_attrs.get(record.ERROR) != INTERRUPTED


@dataclass
class TrialEvent:
    """What the runner reports after each trial (for progress displays).

    ``state`` is ``COMPLETE``, ``SCREENED`` (complete, infeasible before fine-tuning), ``STOPPED``
    (a fidelity rung stopped it; no values), ``DUPLICATE`` (reused trial ``duplicate_of``) or ``FAIL``.
    """

    number: int
    state: str
    values: dict[str, float] | None
    done: int
    total: int
    front_size: int
    hypervolume: float | None = None
    error: str | None = None
    duplicate_of: int | None = None


class Runner:
    """Runs one study to its trial budget.

    Args:
        spec: The validated spec.
        storage_url: Where the study lives.
        n_trials: Overrides ``spec.study.n_trials`` (trials in the study, baseline included).
        on_event: Called after every trial this process finishes (other workers' trials are counted
            in ``done`` but not reported one by one).
        workers: Overrides ``[search] workers`` and ``$TRADEOFF_WORKERS`` (a count or ``"auto"``):
            processes on this host running the study's trials at once (:mod:`tradeoff.search.workers`).
    """

    def __init__(
        self,
        spec: Spec,
        storage_url: str,
        *,
        n_trials: int | None = None,
        on_event: Callable[[TrialEvent], None] | None = None,
        workers: int | str | None = None,
    ) -> None:
        self.spec = spec
        self.storage_url = storage_url
        self.n_trials = n_trials if n_trials is not None else spec.study.n_trials
        self.on_event = on_event or (lambda event: None)
        self.workers, self.workers_reason = resolve_workers(
            spec.search.workers,
            threads=spec.target.threads,
            device=spec.target.device,
            storage_url=storage_url,
            override=workers,
        )

    def open_study(self, space: RecipeSpace) -> tuple[optuna.Study, bool]:
        """Create the study, or load it and check it was launched with the same spec.

        Returns the study and whether it was created now. A resumed study keeps the sampler it
        was created with (what ``auto`` chose is stored on it).
        """
        storage = open_storage(self.storage_url)
        name = self.spec.study.name
        if name in optuna.get_all_study_names(storage):
            study = optuna.load_study(study_name=name, storage=storage)
            stored = study.user_attrs.get(record.STUDY_SPEC)
            if stored is not None and _comparable(stored) != _comparable(self.spec.to_dict()):
                raise StudyMismatch(
                    f"study {name!r} already exists in {self.storage_url} with a different spec; "
                    "give the study a new name, or launch it with the spec it was created with."
                )
            study.sampler = self._stored_sampler(study, space)
            return study, False
        sampler, choice = sampler_for(self.spec, space)
        study = optuna.create_study(study_name=name, storage=storage, directions=list(DIRECTIONS), sampler=sampler)
        with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use; the names matter
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(self.spec.objective_names()))
        study.set_user_attr(record.STUDY_FORMAT_KEY, record.STUDY_FORMAT)
        study.set_user_attr(record.STUDY_SPEC, self.spec.to_dict())
        study.set_user_attr(record.STUDY_SAMPLER, choice.as_json())
        return study, True

    def _stored_sampler(self, study: optuna.Study, space: RecipeSpace, index: int = 0) -> optuna.samplers.BaseSampler:
        """The sampler the study was created with (what ``auto`` chose is stored on it), seeded with
        the study's seed + ``index`` (worker ``index``'s own draws)."""
        chosen = study.user_attrs.get(record.STUDY_SAMPLER)
        name = chosen["name"] if chosen is not None else sampler_for(self.spec, space)[1].name
        seed = self.spec.study.seed
        return make_sampler(name, seed=None if seed is None else seed + index)

    def _fail_stale(self, study: optuna.Study) -> None:
        """An embedded (SQLite) study has one host: a RUNNING trial left there was interrupted."""
        if sqlite_path(self.storage_url) is None:
            return  # shared storage: other workers may be running; heartbeats handle it (later)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study._storage.set_trial_user_attr(t._trial_id, record.ERROR, INTERRUPTED)
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)

    def run(self) -> optuna.Study:
        """Build the task, open the study, record the baseline if needed, run until the budget is met."""
        task = load_task(self.spec.task.name, self.spec.task.kwargs)
        space = self.spec.recipe_space(task.model)
        warm = warm_start_params(self.spec, space)  # checked before anything is written
        # the whole trial (fine-tuning and calibration too, not only timing) runs at the target's thread
        # count: torch's default of every core oversubscribes a shared machine (236 s vs 6.6 s seen here)
        with torch_threads(self.spec.target.threads), noting_sigint():
            try:
                return self._run(task, space, warm)
            except Exception as exc:
                if sigint_seen():  # Ctrl-C that SQLite turned into a storage error: still an interruption
                    raise KeyboardInterrupt from exc
                raise

    def _run(self, task: Task, space: RecipeSpace, warm: list[dict[str, Any]]) -> optuna.Study:
        env = TrialEnv.prepare(self.spec, task)
        study, created = self.open_study(space)
        study.set_user_attr(
            record.STUDY_TASK, {"name": task.name, "teacher_sha256": weights_sha256(task.model), "info": task.info}
        )
        self._fail_stale(study)
        seed0 = self.spec.study.seed or 0

        try:
            env = with_baseline(env, TrialRecord.read(baseline_trial(study), env.names))
        except ResultsError:  # no baseline yet: trial 0 (or the first trial after an interrupted one)
            env = self._run_baseline(study, env, space, seed0)
            if created:
                for params in warm[: self.n_trials - 1]:  # right after the baseline, within the budget
                    study.enqueue_trial(params, skip_if_exists=True)

        if self.workers == 1:
            self._loop(study, env, space, seed0, contextlib.nullcontext())
            return study
        # the baseline is measured and the warm starts are queued: the other workers start from here
        workers = Workers(self.workers, lambda index: self._work(env, space, seed0, index, workers.lock))
        workers.start()
        try:
            self._loop(study, env, space, seed0, workers.lock)
        except BaseException:
            workers.stop(interrupt=True)
            self._fail_stale(study)  # a worker stopped between asking and telling leaves no RUNNING trial
            raise
        problems = workers.stop()
        if problems:
            raise RuntimeError("worker processes failed: " + "; ".join(problems))
        return study

    def _loop(
        self, study: optuna.Study, env: TrialEnv, space: RecipeSpace, seed0: int, lock: contextlib.AbstractContextManager
    ) -> None:
        """Ask for and run trials until the budget is met, counting other workers' running trials.

        Checking the budget and asking happen under ``lock`` (shared by this host's workers), so
        the study never gets more trials than its budget.
        """
        while True:
            with lock:
                taken = sum(_counted(t) or t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False))
                if taken >= self.n_trials:
                    return
                trial = study.ask()
            self._run_one(study, trial, env, space, seed0 + taken)

    def _work(self, env: TrialEnv, space: RecipeSpace, seed0: int, index: int, lock: Any) -> None:
        """Worker ``index`` >= 1, in a forked process: its own storage connection and sampler seed."""
        import torch

        with contextlib.suppress(ImportError, AttributeError):  # compile in-process: the parent's pool is not ours
            import torch._inductor.config as inductor_config

            inductor_config.compile_threads = 1
        torch.set_num_threads(self.spec.target.threads)  # a forked process does not keep the count
        self.on_event = lambda event: None  # the parent reports progress
        study = optuna.load_study(study_name=self.spec.study.name, storage=open_storage(self.storage_url))
        study.sampler = self._stored_sampler(study, space, index)  # not the parent's draws
        self._loop(study, env, space, seed0, lock)

    def _run_baseline(self, study: optuna.Study, env: TrialEnv, space: RecipeSpace, seed: int) -> TrialEnv:
        """Measure the uncompressed model and add it as a finished trial.

        It is added whole (``study.add_trial``) rather than asked of the sampler: nothing is sampled,
        and its parameters are the identity recipe's where they lie in the space, so samplers that
        model the intersection of all trials' parameters (GP) keep those knobs.
        """
        started = datetime.datetime.now()
        rec = evaluate_recipe(space.identity(), env, seed=seed)
        params = space.identity_params()
        distributions = space.distributions()
        trial = optuna.trial.create_trial(
            params=params,
            distributions={name: distributions[name] for name in params},
            values=rec.value_list(),
        )
        trial.datetime_start = started  # its duration is its measurement, as for every other trial
        rec.write(trial)
        trial.set_user_attr(record.HYPERVOLUME, 0.0)  # the baseline is the reference corner: it adds nothing
        trial.set_user_attr(record.WORKER, _worker_name())
        study.add_trial(trial)
        self._emit(study, study.get_trials(deepcopy=False)[-1].number, "COMPLETE", rec.values, hypervolume=0.0)
        return with_baseline(env, rec)

    def _run_one(self, study: optuna.Study, trial: optuna.Trial, env: TrialEnv, space: RecipeSpace, seed: int) -> None:
        trial.set_user_attr(record.WORKER, _worker_name())
        try:
            recipe = space.sample(trial)
            if self.spec.search.reuse_duplicates and self._reuse(study, trial, json.loads(recipe.to_json())):
                return
            search = self.spec.search
            rec = evaluate_recipe(
                recipe,
                env,
                seed=seed,
                screen=search.screen,
                rungs=search.rungs,
                on_rung=lambda fraction, steps, values: self._at_rung(study, trial, env, fraction, values),
                latency_of=(lambda key: self._latency_of(study, key)) if search.reuse_latency else None,
            )
        except KeyboardInterrupt:
            trial.set_user_attr(record.ERROR, INTERRUPTED)
            study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as exc:  # noqa: BLE001  # a recipe the model cannot take: the trial fails, the study goes on
            if sigint_seen():  # Ctrl-C that SQLite turned into a storage error mid-trial
                trial.set_user_attr(record.ERROR, INTERRUPTED)
                study.tell(trial, state=TrialState.FAIL)
                raise KeyboardInterrupt from exc
            error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            trial.set_user_attr(record.ERROR, error)
            study.tell(trial, state=TrialState.FAIL)
            self._emit(study, trial.number, "FAIL", None, error=error)
            return
        rec.write(trial)
        if rec.stopped:  # low-fidelity accuracy is never told as a value: the trial is PRUNED
            study.tell(trial, state=TrialState.PRUNED)
            self._emit(study, trial.number, "STOPPED", None)
            return
        hv = self._hypervolume_with(study, env, rec)
        trial.set_user_attr(record.HYPERVOLUME, hv)
        study.tell(trial, rec.value_list())
        self._emit(study, trial.number, "SCREENED" if rec.screened else "COMPLETE", rec.values, hypervolume=hv)

    def _reuse(self, study: optuna.Study, trial: optuna.Trial, recipe: dict[str, Any]) -> bool:
        """When a finished trial applied the same recipe, copy its outcome onto ``trial`` and say so.

        ``recipe`` is compared as stored (JSON: tuples are lists).

        Its values, constraints and user attributes (seed included: an export rebuilds the same
        model) are copied, with ``duplicate_of`` naming the trial; its state too (a stopped or
        failed recipe stays stopped or failed).
        """
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)):
            if t.user_attrs.get(record.RECIPE) != recipe or t.user_attrs.get(record.ROLE) == "baseline":
                continue
            if t.state == TrialState.FAIL and t.user_attrs.get(record.ERROR) == INTERRUPTED:
                continue
            original = t.user_attrs.get(record.DUPLICATE_OF, t.number)
            for key, value in record.attrs(t).items():
                if key not in (record.HYPERVOLUME, record.WORKER):
                    trial.set_user_attr(key, value)
            trial.set_user_attr(record.DUPLICATE_OF, original)
            for name, value in t.constraints.items():
                trial.set_constraint(name, value)
            if t.state == TrialState.COMPLETE:
                trial.set_user_attr(record.HYPERVOLUME, study_hypervolume(study))  # a copy adds no volume
                study.tell(trial, list(t.values))
                values = dict(zip(objective_names_of(study), t.values, strict=True))
            else:
                study.tell(trial, state=t.state)
                values = None
            self._emit(study, trial.number, "DUPLICATE", values, duplicate_of=original)
            return True
        return False

    def _latency_of(self, study: optuna.Study, key: str) -> tuple[int, Measurement] | None:
        """The first trial that timed the deployable form ``key`` (read from the storage, so workers on
        other hosts share it; the key holds the device, so another machine never matches), and its
        latency measurement; ``None`` when none has."""
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            a = record.attrs(t)
            exe = a.get(record.DEPLOYABLE) or {}
            if (
                exe.get("key") == key
                and exe.get("latency_from") is None  # timed on this trial, not itself reused
                and a.get(record.ROLE) != "baseline"  # the baseline's latency is absolute, candidates' are ratios
                and record.DUPLICATE_OF not in a
                and "latency_ms" in (a.get(record.PROVENANCE) or {})
            ):
                return t.number, latency_measurement(a[record.PROVENANCE]["latency_ms"], exe["latency_ms"])
        return None

    def _at_rung(
        self, study: optuna.Study, trial: optuna.Trial, env: TrialEnv, fraction: float, values: dict[str, float]
    ) -> bool:
        """Record the trial's point at a rung; stop it when enough trials at that rung dominate it, or
        when the accuracy limit is out of reach from there (:meth:`_accuracy_out_of_reach`).

        The point is the trial's accuracy at that rung (on the fixed validation subset) with its
        size, latency and energy (final already: they do not depend on fine-tuning), normalised to
        the baseline. Other trials' points at the same rung are read from the storage, so workers on
        other hosts compare with each other too.
        """
        key = f"{fraction:g}"
        points = dict(trial.user_attrs.get(record.RUNG_POINT) or {})
        points[key] = values
        trial.set_user_attr(record.RUNG_POINT, points)
        base = env.baseline or {}
        mine = normalise(values, base, env.names)
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
        others = [
            normalise(t.user_attrs[record.RUNG_POINT][key], base, env.names)
            for t in trials
            if t.number != trial.number
            and key in (t.user_attrs.get(record.RUNG_POINT) or {})
            and record.DUPLICATE_OF not in t.user_attrs  # a copy is not a second opinion
        ]
        need = self.spec.search.stop_dominated_by
        if others and (count := dominating_count(mine, others)) >= need:
            trial.set_user_attr(record.STOP_REASON, f"dominated at rung {key} by {count} trials there (>= {need})")
            return True
        completed = [t for t in trials if t.state == TrialState.COMPLETE]
        out_of_reach = self._accuracy_out_of_reach(completed, env, key, values["accuracy"])
        if out_of_reach is not None:
            trial.set_user_attr(record.STOP_REASON, out_of_reach)
            return True
        return False

    def _accuracy_out_of_reach(
        self, completed: Sequence[optuna.trial.FrozenTrial], env: TrialEnv, key: str, accuracy: float
    ) -> str | None:
        """Why ``max_accuracy_drop`` cannot be met from ``accuracy`` at rung ``key``, or ``None`` when it can.

        The evidence is the study's ``completed`` trials that were fully fine-tuned and passed this rung
        at an accuracy no higher than ``accuracy`` (read from the storage, so workers share it): the largest
        gain any of them made from its accuracy at the rung to its final accuracy. Only trials that
        started at least as low count, because the gain grows with the room left: on ``digits`` a
        student at 0.78 after a quarter of its steps ended at 0.98 (+0.20) where the largest gain
        of the trials that had started higher was +0.16, so the old rule, which took any trials'
        largest gain, stopped trials that finish feasible, right at the accuracy limit where the
        front's most compressed points are. A gain from lower down bounds the gain from higher up;
        one from higher up does not. A trial whose rung accuracy plus that most optimistic gain still ends
        below the limit would finish infeasible; until ``[search] stop_infeasible_after`` such
        trials exist, nothing is stopped this way.
        """
        need = self.spec.search.stop_infeasible_after
        drop = env.constraints.max_accuracy_drop
        if need == 0 or drop is None or env.baseline is None:
            return None
        limit = env.baseline["accuracy"] - drop
        at = env.names.index("accuracy")
        gains = []
        for t in completed:
            a = t.user_attrs
            if a.get(record.ROLE) == "baseline" or a.get(record.SCREENED) or record.DUPLICATE_OF in a:
                continue
            rung = next((r["accuracy"] for r in a.get(record.RUNGS) or () if f"{r['fraction']:g}" == key), None)
            if rung is not None and t.values is not None and rung <= accuracy:  # started at least as low
                gains.append(t.values[at] - rung)
        if len(gains) < need or accuracy + max(gains) >= limit:
            return None
        return (
            f"accuracy {accuracy:.4f} at rung {key} plus the largest gain seen on {len(gains)} completed trials "
            f"that were at or below it there ({max(gains):+.4f}) stays below the limit {limit:.4f} "
            f"(max_accuracy_drop {drop:g})"
        )

    def _hypervolume_with(self, study: optuna.Study, env: TrialEnv, rec: TrialRecord) -> float:
        """The study's feasible hypervolume once ``rec`` (not told yet) is counted."""
        extra = rec.values if all(v <= 0 for v in rec.constraints.values()) else None
        return study_hypervolume(study, extra=extra)

    def _emit(
        self,
        study: optuna.Study,
        number: int,
        state: str,
        values: Mapping[str, float] | None,
        *,
        error: str | None = None,
        hypervolume: float | None = None,
        duplicate_of: int | None = None,
    ) -> None:
        self.on_event(
            TrialEvent(
                number=number,
                state=state,
                values=dict(values) if values is not None else None,
                done=sum(map(_counted, study.get_trials(deepcopy=False))),
                total=self.n_trials,
                front_size=len(study.best_trials),
                hypervolume=study_hypervolume(study) if hypervolume is None else hypervolume,
                error=error,
                duplicate_of=duplicate_of,
            )
        )
