from __future__ import annotations

from dataclasses import replace

import optuna

from tests.studies.fake_study import fake_study
from tradeoff.objectives import Constraints, default_objectives
from tradeoff.search import AccuracyOutOfReach, DominatedAtRung, RungStopping
from tradeoff.search.trial import TrialEnv
from tradeoff.studies import record
from tradeoff.studies.results import baseline_trial, values_of
from tradeoff.studies.spec import SearchSection


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


def test_a_trial_is_stopped_when_enough_trials_at_its_rung_dominate_it() -> None:
    rungs = _rungs(stop_dominated_by=2)
    study = fake_study([])  # the baseline alone: trial 0
    env = _env_stub(study)
    names = env.names
    better = dict(zip(names, (0.9, 100.0, 0.1, 0.1), strict=True))
    worse = dict(zip(names, (0.5, 200.0, 0.2, 0.2), strict=True))
    for _ in range(2):
        t = study.ask()
        t.set_user_attr(record.RUNG_POINT, {"0.25": better})
    copy = study.ask()  # a duplicate's copied point is not a second opinion
    copy.set_user_attr(record.RUNG_POINT, {"0.25": better})
    copy.set_user_attr(record.DUPLICATE_OF, 1)
    me = study.ask()
    assert rungs.at_rung(study, me, env, 0.25, worse) is True
    assert me.user_attrs[record.RUNG_POINT]["0.25"] == worse  # stored for others to compare with
    assert me.user_attrs[record.STOP_REASON] == "dominated at rung 0.25 by 2 trials there (>= 2)"
    assert rungs.at_rung(study, study.ask(), env, 0.5, worse) is False  # nobody else at that rung
    assert rungs.at_rung(study, study.ask(), env, 0.25, better) is False  # equal is not dominated


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
    point = dict(zip(env.names, (0.5, 1.0, 1.0, 1.0), strict=True))
    other = study.ask()
    other.set_user_attr(record.RUNG_POINT, {"0.25": dict(zip(env.names, (0.6, 0.5, 0.5, 0.5), strict=True))})
    me = study.ask()
    trials = study.get_trials(deepcopy=False)
    assert (
        DominatedAtRung(1).why_stop(me, trials, env, "0.25", point) == "dominated at rung 0.25 by 1 trials there (>= 1)"
    )
    assert DominatedAtRung(2).why_stop(me, trials, env, "0.25", point) is None
    assert DominatedAtRung(1).why_stop(other, trials, env, "0.25", point) is None  # its own point is not counted
    assert AccuracyOutOfReach(1).why_stop([], env, "0.25", 0.1) is None  # no evidence yet
