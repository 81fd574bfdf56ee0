"""Create or resume a study and run its trials: trial 0 is the baseline, then sampled recipes.

The runner uses Optuna's ask-and-tell interface so it owns the loop: it records the baseline
first, stores every figure through :class:`~tradeoff.studies.record.TrialRecord`, keeps a failed
trial's reason on the trial and goes on, and marks the running trial failed on Ctrl-C so a
re-run resumes where it stopped.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from tradeoff.objectives import DIRECTIONS
from tradeoff.spaces import RecipeSpace
from tradeoff.studies import TrialRecord, load_task, open_storage, record
from tradeoff.studies.results import ResultsError, baseline_trial, study_hypervolume
from tradeoff.studies.spec import Spec
from tradeoff.studies.storage import sqlite_path
from tradeoff.studies.tasks import weights_sha256

from .trial import TrialEnv, evaluate_recipe, with_baseline

INTERRUPTED = "interrupted: the process stopped while the trial ran"


class StudyMismatch(ValueError):
    """The named study exists but was launched with a different spec."""


def make_sampler(spec: Spec) -> optuna.samplers.BaseSampler:
    """The sampler the spec names, seeded. ``auto`` is TPE for now (categorical bit-width knobs,
    ~9 ms a suggestion here, Optuna's multi-objective default); budget-aware choice comes later."""
    seed = spec.study.seed
    name = spec.study.sampler
    if name in ("auto", "tpe"):
        return optuna.samplers.TPESampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def _comparable(spec_dict: dict) -> dict:
    """A spec without the fields that may change on resume (budget, storage location)."""
    study = {k: v for k, v in spec_dict["study"].items() if k not in ("n_trials", "storage")}
    return {**spec_dict, "study": study}


def _counted(t: optuna.trial.FrozenTrial) -> bool:
    """Trials that use up the budget: completed ones and real failures (not interruptions)."""
    if t.state == TrialState.COMPLETE:
        return True
    return t.state == TrialState.FAIL and t.user_attrs.get(record.ERROR) != INTERRUPTED


@dataclass
class TrialEvent:
    """What the runner reports after each trial (for progress displays)."""

    number: int
    state: str
    values: dict[str, float] | None
    done: int
    total: int
    front_size: int
    hypervolume: float | None = None
    error: str | None = None


class Runner:
    """Runs one study to its trial budget.

    Args:
        spec: The validated spec.
        storage_url: Where the study lives.
        n_trials: Overrides ``spec.study.n_trials`` (trials in the study, baseline included).
        on_event: Called after every finished trial.
    """

    def __init__(
        self,
        spec: Spec,
        storage_url: str,
        *,
        n_trials: int | None = None,
        on_event: Callable[[TrialEvent], None] | None = None,
    ) -> None:
        self.spec = spec
        self.storage_url = storage_url
        self.n_trials = n_trials if n_trials is not None else spec.study.n_trials
        self.on_event = on_event or (lambda event: None)

    def open_study(self) -> optuna.Study:
        """Create the study, or load it and check it was launched with the same spec."""
        storage = open_storage(self.storage_url)
        name = self.spec.study.name
        if name in optuna.get_all_study_names(storage):
            study = optuna.load_study(study_name=name, storage=storage, sampler=make_sampler(self.spec))
            stored = study.user_attrs.get(record.STUDY_SPEC)
            if stored is not None and _comparable(stored) != _comparable(self.spec.to_dict()):
                raise StudyMismatch(
                    f"study {name!r} already exists in {self.storage_url} with a different spec; "
                    "give the study a new name, or launch it with the spec it was created with."
                )
            return study
        study = optuna.create_study(
            study_name=name, storage=storage, directions=list(DIRECTIONS), sampler=make_sampler(self.spec)
        )
        with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use; the names matter
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(self.spec.objective_names()))
        study.set_user_attr(record.STUDY_FORMAT_KEY, record.STUDY_FORMAT)
        study.set_user_attr(record.STUDY_SPEC, self.spec.to_dict())
        return study

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
        env = TrialEnv.prepare(self.spec, task)
        study = self.open_study()
        study.set_user_attr(
            record.STUDY_TASK, {"name": task.name, "teacher_sha256": weights_sha256(task.model), "info": task.info}
        )
        self._fail_stale(study)
        space = self.spec.recipe_space(task.model)
        seed0 = self.spec.study.seed or 0

        try:
            env = with_baseline(env, TrialRecord.read(baseline_trial(study), env.names))
        except ResultsError:  # no baseline yet: trial 0 (or the first trial after an interrupted one)
            env = self._run_baseline(study, env, space, seed0)

        while (done := sum(map(_counted, study.get_trials(deepcopy=False)))) < self.n_trials:
            self._run_one(study, env, space, seed0 + done)
        return study

    def _run_baseline(self, study: optuna.Study, env: TrialEnv, space: RecipeSpace, seed: int) -> TrialEnv:
        """Measure the uncompressed model and add it as a finished trial.

        It is added whole (``study.add_trial``) rather than asked of the sampler: nothing is sampled,
        and its parameters are the identity recipe's where they lie in the space, so samplers that
        model the intersection of all trials' parameters (GP) keep those knobs.
        """
        rec = evaluate_recipe(space.identity(), env, seed=seed)
        params = space.identity_params()
        distributions = space.distributions()
        trial = optuna.trial.create_trial(
            params=params,
            distributions={name: distributions[name] for name in params},
            values=rec.value_list(),
        )
        rec.write(trial)
        study.add_trial(trial)
        self._emit(study, study.get_trials(deepcopy=False)[-1].number, rec.values, hypervolume=0.0)
        return with_baseline(env, rec)

    def _run_one(self, study: optuna.Study, env: TrialEnv, space: RecipeSpace, seed: int) -> None:
        trial = study.ask()
        try:
            rec = evaluate_recipe(space.sample(trial), env, seed=seed)
        except KeyboardInterrupt:
            trial.set_user_attr(record.ERROR, INTERRUPTED)
            study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as exc:  # noqa: BLE001  # a recipe the model cannot take: the trial fails, the study goes on
            error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            trial.set_user_attr(record.ERROR, error)
            study.tell(trial, state=TrialState.FAIL)
            self._emit(study, trial.number, None, error=error)
            return
        rec.write(trial)
        study.tell(trial, rec.value_list())
        self._emit(study, trial.number, rec.values)

    def _emit(
        self,
        study: optuna.Study,
        number: int,
        values: Mapping[str, float] | None,
        *,
        error: str | None = None,
        hypervolume: float | None = None,
    ) -> None:
        self.on_event(
            TrialEvent(
                number=number,
                state="COMPLETE" if error is None else "FAIL",
                values=dict(values) if values is not None else None,
                done=sum(map(_counted, study.get_trials(deepcopy=False))),
                total=self.n_trials,
                front_size=len(study.best_trials),
                hypervolume=study_hypervolume(study) if hypervolume is None else hypervolume,
                error=error,
            )
        )
