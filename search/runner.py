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
import math
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import optuna
import torch
from optuna.storages._heartbeat import get_heartbeat_thread  # what Study.optimize runs
from optuna.trial import TrialState

from tradeoff.objectives import DIRECTIONS, NonFinite, target_fingerprint
from tradeoff.spaces import RecipeSpace, torch_threads
from tradeoff.studies import Task, TrialRecord, check_target_fits, load_task, open_storage, record
from tradeoff.studies.identity import (
    StudyMismatch,
    artifact_store,
    check_target,
    check_task_identity,
    fetch_teacher,
    note_host,
    publish_teacher,
    task_identity,
)
from tradeoff.studies.reconnect import StorageLost
from tradeoff.studies.results import ResultsError, baseline_trial, study_hypervolume
from tradeoff.studies.spec import Spec, parse_stored_spec
from tradeoff.studies.storage import NoStudies, check_not_networked

from .events import TrialEvent
from .failures import counted, fail_stale, fail_trial, failure_reason, wait_for_running, worker_name
from .reuse import DuplicateReuse, LatencyReuse
from .rungs import RungStopping
from .samplers import make_sampler, sampler_for
from .trial import evaluate_recipe
from .trial_env import TrialEnv, with_baseline
from .warm_start import WarmStarts, warm_start_params
from .workers import INTERRUPTED, StudyLock, Workers, noting_sigint, resolve_workers, sigint_seen

__all__ = ["INTERRUPTED", "Runner", "StudyMismatch", "warm_start_params"]


# the [study] fields a resumed or joined study may change: the budget, where the storage and the teacher's
# artifact store are reached from, and the fault-tolerance timings
RESUME_MAY_CHANGE = ("n_trials", "storage", "artifacts", "heartbeat_s", "grace_s", "reconnect_s")


def _comparable(spec_dict: dict) -> dict:
    """A spec without the fields that may change on resume (:data:`RESUME_MAY_CHANGE`)."""
    study = {k: v for k, v in spec_dict["study"].items() if k not in RESUME_MAY_CHANGE}
    return {**spec_dict, "study": study}


class Runner:
    """Runs one study to its trial budget, from this host, alongside any other hosts running it.

    Args:
        spec: The validated spec (``tradeoff worker`` passes the one stored on the study).
        storage_url: Where the study lives.
        n_trials: The study's budget: trials in the study, baseline included, across every host
            (:data:`record.STUDY_BUDGET`). ``None``: ``spec.study.n_trials``, or with
            ``keep_budget`` the budget already stored on the study.
        on_event: Called after every trial this process finishes (other workers' trials are counted
            in ``done`` but not reported one by one).
        workers: Overrides ``[search] workers`` and ``$TRADEOFF_WORKERS`` (a count or ``"auto"``):
            processes on this host running the study's trials at once (:mod:`tradeoff.search.workers`).
        keep_budget: Join with the budget the study has (``tradeoff worker`` without ``--trials``).

    Attributes:
        screen: ``[search] screen``, passed to every trial.
        rungs: ``[search] rungs``, ``stop_dominated_by``, ``stop_infeasible_after`` (:class:`.RungStopping`).
        duplicates: ``[search] reuse_duplicates`` (:class:`.DuplicateReuse`).
        latency: ``[search] reuse_latency`` (:class:`.LatencyReuse`).
        workers: ``[search] workers`` resolved, and ``workers_reason`` why.
        fingerprint: This host as a measurement target (:func:`tradeoff.objectives.target_fingerprint`).

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
        keep_budget: bool = False,
    ) -> None:
        self.spec = spec
        self.storage_url = storage_url
        self._budget_given = n_trials is not None or not keep_budget  # this command sets the study's budget
        self.n_trials = n_trials if n_trials is not None else spec.study.n_trials
        self.on_event = on_event or (lambda event: None)
        self.on_note: Callable[[str], None] = lambda note: None  # what the runner did besides trials (CLI prints it)
        self.workers, self.workers_reason = resolve_workers(
            spec.search.workers,
            threads=spec.target.threads,
            device=spec.target.device,
            storage_url=storage_url,
            override=workers,
        )
        self.fingerprint = target_fingerprint(spec.target.device, spec.target.threads)
        # the [search] policies ([search] warm_start needs the space: WarmStarts is built in run())
        search = spec.search
        self.screen = search.screen  # decided per trial, in evaluate_recipe's screen phase
        self.rungs = RungStopping.from_spec(search)
        self.duplicates = DuplicateReuse(search.reuse_duplicates)
        self.latency = LatencyReuse(search.reuse_latency)

    def _storage(self) -> optuna.storages.BaseStorage:
        """The study's storage; on a server, with heartbeats and reconnection as ``[study]`` sets them."""
        s = self.spec.study
        return open_storage(self.storage_url, heartbeat_s=s.heartbeat_s, grace_s=s.grace_s, reconnect_s=s.reconnect_s)

    def existing_study(self) -> optuna.Study | None:
        """The study if it exists, checked before this host builds anything or writes a thing.

        Checks that it was launched with the same spec and measures on this kind of machine, and puts
        a teacher shared through ``[study] artifacts`` into this host's cache (so it is not trained here).

        Raises:
            StudyMismatch: another spec or another target.
            StorageError: the storage cannot be used from here, or the shared teacher cannot be read.
        """
        check_not_networked(self.storage_url)
        s = self.spec.study
        try:  # nothing is created here: a task that fails to build afterwards leaves no empty storage behind
            storage = open_storage(
                self.storage_url,
                must_exist=True,
                heartbeat_s=s.heartbeat_s,
                grace_s=s.grace_s,
                reconnect_s=s.reconnect_s,
            )
        except NoStudies:
            return None
        name = s.name
        if name not in optuna.get_all_study_names(storage):
            return None
        study = optuna.load_study(study_name=name, storage=storage)
        attrs = study.user_attrs
        stored = attrs.get(record.STUDY_SPEC)
        ours = self.spec.to_dict()
        if stored is not None and "balanced_start" not in stored.get("search", {}):
            # created before the setting existed: its start-up was plain TPE's (parse_stored_spec), kept on resume
            ours = {**ours, "search": {k: v for k, v in ours["search"].items() if k != "balanced_start"}}
        if stored is not None and _comparable(stored) != _comparable(ours):
            raise StudyMismatch(
                f"study {name!r} already exists in {self.storage_url} with a different spec; "
                "give the study a new name, or launch it with the spec it was created with."
            )
        check_target(name, attrs.get(record.STUDY_TARGET), self.fingerprint)
        if note := fetch_teacher(attrs, self.spec.study.artifacts):
            self.on_note(note)
        return study

    def open_study(self, space: RecipeSpace, existing: optuna.Study | None = None) -> tuple[optuna.Study, bool]:
        """The study (``existing``, from :meth:`existing_study`), or a new one; and whether it was created now.

        A resumed study keeps the sampler it was created with (what ``auto`` chose is stored on it).
        Two hosts creating one study at once: one creates it, the other loads it.
        """
        if existing is not None:
            existing.sampler = self._stored_sampler(existing, space)
            return existing, False
        name = self.spec.study.name
        sampler, choice = sampler_for(self.spec, space)
        try:
            study = optuna.create_study(
                study_name=name, storage=self._storage(), directions=list(DIRECTIONS), sampler=sampler
            )
        except optuna.exceptions.DuplicatedStudyError:  # another host created it a moment ago
            found = self.existing_study()
            assert found is not None  # it was just created
            return self.open_study(space, found)
        with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use; the names matter
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(self.spec.objective_names()))
        study.set_user_attr(record.STUDY_FORMAT_KEY, record.STUDY_FORMAT)
        study.set_user_attr(record.STUDY_SPEC, self.spec.to_dict())
        study.set_user_attr(record.STUDY_SAMPLER, choice.as_json())
        study.set_user_attr(record.STUDY_TARGET, self.fingerprint)
        return study, True

    def _stored_sampler(self, study: optuna.Study, space: RecipeSpace, index: int = 0) -> optuna.samplers.BaseSampler:
        """The sampler the study was created with (what ``auto`` chose is stored on it), seeded with
        the study's seed + ``index`` (worker ``index``'s own draws)."""
        chosen = study.user_attrs.get(record.STUDY_SAMPLER)
        name = chosen["name"] if chosen is not None else sampler_for(self.spec, space)[1].name
        seed = self.spec.study.seed
        stored = study.user_attrs.get(record.STUDY_SPEC)  # the study's own setting, whichever host resumes it
        balanced = (self.spec if stored is None else parse_stored_spec(stored)).search.balanced_start
        return make_sampler(name, seed=None if seed is None else seed + index, balanced_start=balanced)

    def _fail_stale(self, study: optuna.Study, *, pids: tuple[int, ...] = ()) -> None:
        fail_stale(study, self.storage_url, pids=pids)

    def run(self) -> optuna.Study:
        """Check the study (if it exists), build the task, open the study, record the baseline if needed,
        and run trials until the study's budget is met."""
        check_target_fits(self.spec)  # threads beyond this host's cores: refused before anything runs at them
        # the whole trial (fine-tuning and calibration too, not only timing) runs at the target's thread
        # count: torch's default of every core oversubscribes a shared machine (236 s vs 6.6 s seen here)
        with torch_threads(self.spec.target.threads), noting_sigint():
            try:
                existing = self.existing_study()  # before any work: a host that may not join learns it now
                task = load_task(self.spec.task.name, self.spec.task.kwargs)
                space = self.spec.recipe_space(task.model)
                warm = WarmStarts.from_spec(self.spec, space)  # checked before anything is written
                return self._run(task, space, warm, existing)
            except Exception as exc:
                if sigint_seen():  # Ctrl-C that SQLite turned into a storage error: still an interruption
                    raise KeyboardInterrupt from exc
                raise

    def _run(self, task: Task, space: RecipeSpace, warm: WarmStarts, existing: optuna.Study | None) -> optuna.Study:
        env = TrialEnv.prepare(self.spec, task)
        identity = task_identity(task, self.spec.task.kwargs, env.data_sha256)
        if existing is not None:  # refused before anything is written: another teacher or other data
            check_task_identity(self.spec.study.name, existing.user_attrs.get(record.STUDY_TASK), identity)
        if existing is None and self.spec.study.artifacts:  # a store it cannot write: refused before creating
            artifact_store(self.spec.study.artifacts)
        study, created = self.open_study(space, existing)
        stored_task = study.user_attrs.get(record.STUDY_TASK) or {}
        if not stored_task.get("data_sha256"):  # created now, or by a tradeoff that stored less
            study.set_user_attr(record.STUDY_TASK, {**identity, **{k: v for k, v in stored_task.items() if v}})
        if record.STUDY_TARGET not in study.user_attrs:
            study.set_user_attr(record.STUDY_TARGET, self.fingerprint)
        if self._budget_given or record.STUDY_BUDGET not in study.user_attrs:
            study.set_user_attr(record.STUDY_BUDGET, self.n_trials)
        publish_teacher(study, task, self.spec.study.artifacts)
        note_host(study, self.fingerprint, self.workers)
        seed0 = self.spec.study.seed or 0

        lock = StudyLock(self.storage_url, self.spec.study.name, reconnect_s=self.spec.study.reconnect_s)
        with lock:  # one host derives the rate and measures the baseline; the others wait and read them
            self._fail_stale(study)
            env = env.for_study(self.spec, study)  # lr and backend "auto": derived once per study, stored on it
            if env.lr is not None:
                space = space.resolved(env.lr.lr)
            try:
                env = with_baseline(env, TrialRecord.read(baseline_trial(study), env.names))
            except ResultsError:  # no baseline yet: trial 0 (or the first trial after an interrupted one)
                env = self._run_baseline(study, env, space, seed0)
                if created:
                    warm.enqueue(study, self.n_trials)

        if self.workers == 1:
            self._loop(study, env, space, seed0, lock)
            return study
        # the baseline is measured and the warm starts are queued: the other workers start from here
        workers = Workers(self.workers, lambda index: self._work(env, space, seed0, index, lock))
        lock.local = workers.lock  # SQLite: the budget check is shared by this host's processes
        workers.start()
        try:
            self._loop(study, env, space, seed0, lock)
        except BaseException:
            workers.stop(interrupt=True)
            self._fail_stale(study, pids=workers.pids)  # a worker stopped between asking and telling
            raise
        problems = workers.stop()
        if problems:
            raise RuntimeError("worker processes failed: " + "; ".join(problems))
        return study

    def _loop(
        self,
        study: optuna.Study,
        env: TrialEnv,
        space: RecipeSpace,
        seed0: int,
        lock: contextlib.AbstractContextManager,
    ) -> None:
        """Ask for and run trials until the study's budget is met, counting every host's running trials.

        Failing stale trials, reading the budget, counting and asking happen under ``lock`` (every
        process and host running the study), so the study never gets more trials than its budget.

        With heartbeats (a server), the budget being taken is not the end while other workers' trials run
        (:func:`~tradeoff.search.failures.wait_for_running` says for how long): the loop polls a heartbeat
        interval at a time, and runs a dead worker's trial once heartbeats fail it and queue it again.
        """
        waiting_since: float | None = None
        while True:
            if sigint_seen():  # a Ctrl-C whose KeyboardInterrupt Python swallowed (it landed in a GC callback)
                raise KeyboardInterrupt
            with lock:
                with warnings.catch_warnings():  # experimental since Optuna 2.9; what Study.optimize calls
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(study)  # a dead worker's trial failed, its config queued
                self.n_trials = int(study.user_attrs.get(record.STUDY_BUDGET, self.n_trials))
                trials = study.get_trials(deepcopy=False)
                taken = sum(counted(t) or t.state == TrialState.RUNNING for t in trials)
                if taken >= self.n_trials:
                    s = self.spec.study
                    waiting_since = wait_for_running(
                        study, trials, waiting_since, grace_s=s.grace_s, heartbeat_s=s.heartbeat_s
                    )
                    if waiting_since is None:
                        return
                    trial = None  # wait outside the lock for the running trials to end or be failed
                else:
                    waiting_since = None
                    with warnings.catch_warnings():  # Optuna warns that heartbeats belong to Study.optimize: this
                        warnings.filterwarnings("ignore", message="Heartbeat of storage")  # loop runs them itself
                        trial = study.ask()
            if trial is None:
                time.sleep(self.spec.study.heartbeat_s)  # a poll, one heartbeat apart
                continue
            self._run_one(study, trial, env, space, seed0 + taken)

    def _work(self, env: TrialEnv, space: RecipeSpace, seed0: int, index: int, lock: Any) -> None:
        """Worker ``index`` >= 1, in a forked process: its own storage connection and sampler seed."""
        with contextlib.suppress(ImportError, AttributeError):  # compile in-process: the parent's pool is not ours
            import torch._inductor.config as inductor_config

            inductor_config.compile_threads = 1
        torch.set_num_threads(self.spec.target.threads)  # a forked process does not keep the count
        self.on_event = lambda event: None  # the parent reports progress
        study = optuna.load_study(study_name=self.spec.study.name, storage=self._storage())
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
        trial.set_user_attr(record.WORKER, worker_name())
        study.add_trial(trial)
        self._emit(study, study.get_trials(deepcopy=False)[-1].number, "COMPLETE", rec.values, hypervolume=0.0)
        return with_baseline(env, rec)

    def _run_one(self, study: optuna.Study, trial: optuna.Trial, env: TrialEnv, space: RecipeSpace, seed: int) -> None:
        trial.set_user_attr(record.WORKER, worker_name())
        try:
            # on a server, a thread records the trial's heartbeat while it runs (as Study.optimize does)
            with get_heartbeat_thread(trial._trial_id, study._storage):
                rec = self._evaluate(study, trial, env, space, seed)
                if rec is None:
                    return
                rec.write(trial)
        except optuna.exceptions.UpdateFinishedTrialError:
            # heartbeats failed this trial while it ran (this host was cut off for longer than the grace
            # period) and its config is queued again: its result is dropped, the retry stands
            self._emit(study, trial.number, "LOST", None, error="failed by heartbeat while it ran; retried")
            return
        except KeyboardInterrupt:
            fail_trial(study, trial, INTERRUPTED, "interrupted")
            raise
        except StorageLost:  # the storage is gone: nothing can be written; heartbeats fail the trial
            raise
        except Exception as exc:  # a recipe the model cannot take: the trial fails, the study goes on
            if sigint_seen():  # Ctrl-C that SQLite turned into a storage error mid-trial
                fail_trial(study, trial, INTERRUPTED, "interrupted")
                raise KeyboardInterrupt from exc
            error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            fail_trial(study, trial, error, failure_reason(exc))
            self._emit(study, trial.number, "FAIL", None, error=error)
            return
        if rec.stopped:  # low-fidelity accuracy is never told as a value: the trial is PRUNED
            study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
            self._emit(study, trial.number, "STOPPED", None)
            return
        feasible = all(v <= 0 for v in rec.constraints.values())  # the front once rec (not told yet) counts
        hv = study_hypervolume(study, extra=rec.values if feasible else None)
        trial.set_user_attr(record.HYPERVOLUME, hv)
        study.tell(trial, rec.value_list(), skip_if_finished=True)
        self._emit(study, trial.number, "SCREENED" if rec.screened else "COMPLETE", rec.values, hypervolume=hv)

    def _evaluate(
        self, study: optuna.Study, trial: optuna.Trial, env: TrialEnv, space: RecipeSpace, seed: int
    ) -> TrialRecord | None:
        """The trial's record, or None when it reuses a duplicate's (already told)."""
        recipe = space.sample(trial)
        if (reused := self.duplicates.reuse(study, trial, recipe)) is not None:
            self._emit(study, trial.number, "DUPLICATE", reused.values, duplicate_of=reused.original)
            return None
        rec = evaluate_recipe(
            recipe,
            env,
            seed=seed,
            screen=self.screen,
            rungs=self.rungs.fractions,
            on_rung=lambda fraction, steps, values: self.rungs.at_rung(study, trial, env, fraction, values),
            latency_of=self.latency.lookup(study),
        )
        bad = {name: v for name, v in rec.values.items() if not math.isfinite(v)}
        if bad and not rec.stopped:
            raise NonFinite(f"objective values are not finite: {bad}")
        return rec

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
                done=sum(map(counted, study.get_trials(deepcopy=False))),
                total=self.n_trials,
                front_size=len(study.best_trials),
                hypervolume=study_hypervolume(study) if hypervolume is None else hypervolume,
                error=error,
                duplicate_of=duplicate_of,
            )
        )
