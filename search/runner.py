"""Create or resume a study and run its trials: trial 0 is the baseline, then sampled recipes.

The runner uses Optuna's ask-and-tell interface so it owns the loop: it records the baseline
first, stores every figure through :class:`~tradeoff.studies.record.TrialRecord`, keeps a failed
trial's reason on the trial and goes on, and marks the running trial failed on Ctrl-C so a
re-run resumes where it stopped.

The ``[search]`` policies live in files of their own and the runner only wires them: warm starts
(:mod:`.warm_start`), stopping at fidelity rungs (:mod:`.rungs`), duplicate and latency reuse
(:mod:`.reuse`), worker processes (:mod:`.workers`); screening is a phase of
:func:`~tradeoff.search.trial.evaluate_recipe`.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from tradeoff.objectives import DIRECTIONS
from tradeoff.spaces import RecipeSpace, torch_threads
from tradeoff.studies import Task, TrialRecord, load_task, open_storage, record, weights_sha256
from tradeoff.studies.results import ResultsError, baseline_trial, study_hypervolume
from tradeoff.studies.spec import Spec
from tradeoff.studies.storage import sqlite_path

from .reuse import DuplicateReuse, LatencyReuse
from .rungs import RungStopping
from .samplers import SamplerChoice, choose_sampler, make_sampler
from .trial import TrialEnv, evaluate_recipe, with_baseline
from .warm_start import WarmStarts, warm_start_params
from .workers import INTERRUPTED, Workers, noting_sigint, resolve_workers, sigint_seen

__all__ = ["INTERRUPTED", "Runner", "StudyMismatch", "TrialEvent", "sampler_for", "warm_start_params"]


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
    return t.state == TrialState.FAIL and record.attrs(t).get(record.ERROR) != INTERRUPTED


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

    Attributes:
        screen: ``[search] screen``, passed to every trial.
        rungs: ``[search] rungs``, ``stop_dominated_by``, ``stop_infeasible_after`` (:class:`.RungStopping`).
        duplicates: ``[search] reuse_duplicates`` (:class:`.DuplicateReuse`).
        latency: ``[search] reuse_latency`` (:class:`.LatencyReuse`).
        workers: ``[search] workers`` resolved, and ``workers_reason`` why.

    Example:
        >>> from tradeoff.studies import parse_spec
        >>> spec = parse_spec({"study": {"name": "r"}, "task": {"name": "digits"}, "search": {"rungs": [0.5]}})
        >>> runner = Runner(spec, "sqlite:///:memory:", workers=1)
        >>> runner.rungs.fractions, runner.duplicates.enabled, runner.workers
        ((0.5,), True, 1)
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
        # the [search] policies ([search] warm_start needs the space: WarmStarts is built in run())
        search = spec.search
        self.screen = search.screen  # decided per trial, in evaluate_recipe's screen phase
        self.rungs = RungStopping.from_spec(search)
        self.duplicates = DuplicateReuse(search.reuse_duplicates)
        self.latency = LatencyReuse(search.reuse_latency)

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
        warm = WarmStarts.from_spec(self.spec, space)  # checked before anything is written
        # the whole trial (fine-tuning and calibration too, not only timing) runs at the target's thread
        # count: torch's default of every core oversubscribes a shared machine (236 s vs 6.6 s seen here)
        with torch_threads(self.spec.target.threads), noting_sigint():
            try:
                return self._run(task, space, warm)
            except Exception as exc:
                if sigint_seen():  # Ctrl-C that SQLite turned into a storage error: still an interruption
                    raise KeyboardInterrupt from exc
                raise

    def _run(self, task: Task, space: RecipeSpace, warm: WarmStarts) -> optuna.Study:
        env = TrialEnv.prepare(self.spec, task)
        study, created = self.open_study(space)
        env = env.with_lr(self.spec, study.user_attrs.get(record.STUDY_LR))  # lr = "auto": derived once per study
        if env.lr is not None:
            if record.STUDY_LR not in study.user_attrs:
                study.set_user_attr(record.STUDY_LR, env.lr.as_json())
            space = space.resolved(env.lr.lr)
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
                warm.enqueue(study, self.n_trials)

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
            if sigint_seen():  # a Ctrl-C whose KeyboardInterrupt Python swallowed (it landed in a GC callback)
                raise KeyboardInterrupt
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
            if (reused := self.duplicates.reuse(study, trial, recipe)) is not None:
                self._emit(study, trial.number, "DUPLICATE", reused.values, duplicate_of=reused.original)
                return
            rec = evaluate_recipe(
                recipe,
                env,
                seed=seed,
                screen=self.screen,
                rungs=self.rungs.fractions,
                on_rung=lambda fraction, steps, values: self.rungs.at_rung(study, trial, env, fraction, values),
                latency_of=self.latency.lookup(study),
            )
        except KeyboardInterrupt:
            trial.set_user_attr(record.ERROR, INTERRUPTED)
            study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as exc:  # a recipe the model cannot take: the trial fails, the study goes on
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
