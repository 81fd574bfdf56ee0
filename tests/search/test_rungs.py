from __future__ import annotations

from dataclasses import replace

import optuna

from tests.studies.fake_study import fake_study
from tradeoff.objectives import Constraints, default_objectives
from tradeoff.search import AccuracyOutOfReach, DominatedAtRung, RungStopping
from tradeoff.search.trial import TrialEnv
from tradeoff.studies import record
from tradeoff.studies.results import baseline_trial, values_of
from tradeoff.studies.sections import SearchSection


def _rungs(**search) -> RungStopping:
    return RungStopping.from_spec(SearchSection(**search))


def _env_stub(study: optuna.Study) -> TrialEnv:
    """A TrialEnv holding just what the rung rule reads: the objectives and the baseline's values."""
    return TrialEnv(
        task=None, example_inputs=(), train=[], teacher_logits=[], constraints=Constraints(), threads=1,
        device="cpu", objectives=default_objectives(), baseline=values_of(baseline_trial(study)),
    )  # fmt: skip


def test_the_spec_sets_the_rungs_and_both_rules() -> None:
    rungs = _rungs(rungs=[0.2, 0.6], stop_dominated_by=2, stop_infeasible_after=0)
    assert rungs == RungStopping((0.2, 0.6), DominatedAtRung(2), AccuracyOutOfReach(0))


def _completed(study: optuna.Study, names, at_rung: float, final: tuple[float, ...], **attrs) -> None:
    """A fully fine-tuned trial that passed rung 0.25 at ``at_rung`` and ended at ``final``."""
    t = study.ask()
    t.set_user_attr(record.RUNGS, [{"fraction": 0.25, "steps": 2, "samples": 10, "accuracy": at_rung}])
    t.set_user_attr(record.RUNG_POINT, {"0.25": dict(zip(names, (at_rung, *final[1:]), strict=True))})
    for name, value in attrs.items():
        t.set_user_attr(name, value)
    study.tell(t, list(final))


def test_a_trial_is_stopped_when_enough_completed_trials_dominate_the_best_it_could_still_end_at() -> None:
    rungs = _rungs(stop_dominated_by=2, stop_infeasible_after=0)  # the dominance rule alone
    study = fake_study([])  # the baseline alone: trial 0
    env = _env_stub(study)
    names = env.names

    def point(accuracy: float) -> dict[str, float]:
        return dict(zip(names, (accuracy, 200.0, 0.2, 0.2), strict=True))

    _completed(study, names, 0.80, (0.85, 100.0, 0.1, 0.1))  # two small, fast, accurate trials...
    _completed(study, names, 0.75, (0.84, 100.0, 0.1, 0.1))
    _completed(study, names, 0.30, (0.40, 300.0, 0.3, 0.3))  # ...and the evidence of gains from low down: +0.10
    _completed(study, names, 0.70, (0.90, 300.0, 0.3, 0.3))  # +0.20 from 0.70
    assert rungs.at_rung(study, study.ask(), env, 0.25, point(0.50)) is False  # one trial started as low: too little
    _completed(study, names, 0.35, (0.40, 300.0, 0.3, 0.3))  # +0.05
    _completed(study, names, 0.0, (1.0, 1.0, 0.01, 0.01), duplicate_of=1)  # a copy is neither dominator nor evidence
    me = study.ask()
    assert rungs.at_rung(study, me, env, 0.25, point(0.50)) is True  # 0.50 + 0.10 = 0.60: both small trials beat it
    assert me.user_attrs[record.RUNG_POINT]["0.25"] == point(0.50)  # its point there is stored
    assert me.user_attrs[record.STOP_REASON] == (
        "dominated at rung 0.25 by 2 completed trials (>= 2), even with the largest gain seen from there on "
        "2 completed trials at or below it (+0.1000)"
    )
    # 0.74 + 0.20 (seen from 0.70) = 0.94 beats both. The old rule compared rung points with rung points,
    # where both small trials (0.80 and 0.75 there) dominated it: it was stopped
    assert rungs.at_rung(study, study.ask(), env, 0.25, point(0.74)) is False
    assert rungs.at_rung(study, study.ask(), env, 0.25, point(0.25)) is False  # nobody started that low: no evidence
    assert rungs.at_rung(study, study.ask(), env, 0.5, point(0.10)) is False  # nobody passed that rung


def test_running_and_stopped_trials_do_not_dominate() -> None:
    rungs = _rungs(stop_dominated_by=1, stop_infeasible_after=0)
    study = fake_study([])
    env = _env_stub(study)
    names = env.names
    _completed(study, names, 0.50, (0.55, 300.0, 0.3, 0.3))  # the evidence: +0.05, and dominates nothing below
    running = study.ask()  # a trial at the rung with a far better point, still running
    running.set_user_attr(record.RUNG_POINT, {"0.25": dict(zip(names, (0.9, 1.0, 0.01, 0.01), strict=True))})
    stopped = study.ask()
    stopped.set_user_attr(record.RUNG_POINT, {"0.25": dict(zip(names, (0.9, 1.0, 0.01, 0.01), strict=True))})
    study.tell(stopped, state=optuna.trial.TrialState.PRUNED)
    mine = dict(zip(names, (0.5, 200.0, 0.2, 0.2), strict=True))
    assert rungs.at_rung(study, study.ask(), env, 0.25, mine) is False  # neither has a final point


def test_a_trial_is_stopped_when_the_accuracy_limit_is_out_of_reach_from_its_rung() -> None:
    search = {"stop_infeasible_after": 2, "stop_dominated_by": 99}  # the dominance rule never fires here
    rungs = _rungs(**search)
    study = fake_study([])
    env = replace(_env_stub(study), constraints=Constraints(max_accuracy_drop=0.05))
    limit = env.baseline["accuracy"] - 0.05

    def completed(at_rung: float, final: float, **attrs) -> None:
        t = study.ask()
        t.set_user_attr(record.RUNGS, [{"fraction": 0.25, "steps": 2, "samples": 10, "accuracy": at_rung}])
        for name, value in attrs.items():
            t.set_user_attr(name, value)
        study.tell(t, [final, 1.0, 1.0, 1.0])

    def point(accuracy: float) -> dict[str, float]:
        return dict(zip(env.names, (accuracy, 1.0, 1.0, 1.0), strict=True))

    completed(limit - 0.30, limit - 0.20)  # gained 0.10 from the rung to the end
    assert rungs.at_rung(study, study.ask(), env, 0.25, point(limit - 0.5)) is False  # one trial: no evidence yet
    completed(limit - 0.20, limit - 0.15)  # gained 0.05
    completed(0.0, 1.0, screened=True)  # neither a screened trial...
    completed(0.0, 1.0, duplicate_of=1)  # ...nor a copy is evidence of a gain
    me = study.ask()
    assert rungs.at_rung(study, me, env, 0.25, point(limit - 0.15)) is True  # even +0.10 ends below the limit
    assert (
        "largest gain seen on 2 completed trials that were at or below it there (+0.1000)"
        in (me.user_attrs[record.STOP_REASON])
    )
    assert rungs.at_rung(study, study.ask(), env, 0.25, point(limit - 0.09)) is False  # within reach
    # the gain grows with the room left, so only trials that started at least as low are evidence:
    # below both there is none, and between them only one (fewer than stop_infeasible_after = 2)
    assert rungs.at_rung(study, study.ask(), env, 0.25, point(limit - 0.31)) is False
    assert rungs.at_rung(study, study.ask(), env, 0.25, point(limit - 0.25)) is False
    completed(limit - 0.25, limit - 0.05)  # gained 0.20 from lower down
    assert rungs.at_rung(study, study.ask(), env, 0.25, point(limit - 0.19)) is False  # +0.20 reaches it
    assert rungs.at_rung(study, study.ask(), env, 0.25, point(limit - 0.21)) is True  # +0.20 falls short
    assert rungs.at_rung(study, study.ask(), env, 0.5, point(limit - 0.5)) is False  # nobody passed that rung
    off = _rungs(**{**search, "stop_infeasible_after": 0})
    assert off.at_rung(study, study.ask(), env, 0.25, point(limit - 0.5)) is False
    no_limit = replace(env, constraints=Constraints())
    assert rungs.at_rung(study, study.ask(), no_limit, 0.25, point(-1.0)) is False


def test_each_rule_on_its_own() -> None:
    study = fake_study([])
    env = replace(_env_stub(study), constraints=Constraints(max_accuracy_drop=0.05))
    names = env.names
    _completed(study, names, 0.3, (0.6, 0.5, 0.5, 0.5))  # +0.3 from the rung, and smaller
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    point = dict(zip(names, (0.3, 1.0, 1.0, 1.0), strict=True))  # at best 0.6: tied, and larger
    me = study.ask()
    assert DominatedAtRung(1).why_stop(me, trials, env, "0.25", point) == (
        "dominated at rung 0.25 by 1 completed trials (>= 1), even with the largest gain seen from there on "
        "1 completed trials at or below it (+0.3000)"
    )
    assert DominatedAtRung(2).why_stop(me, trials, env, "0.25", point) is None
    done = trials[-1]
    assert DominatedAtRung(1).why_stop(done, trials, env, "0.25", point) is None  # its own point is not counted
    assert AccuracyOutOfReach(1).why_stop([], env, "0.25", 0.1) is None  # no evidence yet
