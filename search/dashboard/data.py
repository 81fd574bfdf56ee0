"""What the dashboard shows, read from the storage and never written to it.

A study is read once per revision (:func:`study_view`: the storage is asked for its trials only
when their count or their newest completion changed), through :mod:`tradeoff.studies.record`, so
reading needs no user code. The front under the page's weights and limits is computed from that
read: a non-dominated sort of the feasible completed trials in the normalised space, then the
weighted cost and the knee, as ``tradeoff pareto`` computes them.

SQLite storage is opened read-only (``mode=ro``): a write would fail, not happen.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from tradeoff.objectives import (
    Constraints,
    Weights,
    constraint_values,
    knee_index,
    normalise,
    weighted_cost,
)
from tradeoff.studies import record
from tradeoff.studies.results import ResultsError, history_of, objective_names_of, study_spec
from tradeoff.studies.storage import (
    CONNECT_TIMEOUT_S,
    StorageError,
    check_server,
    check_storage_url,
    is_server,
    sqlite_path,
)

MAX_NAME = 200  # study names longer than this are refused before the storage is asked
NAME_OK = re.compile(
    r"[\w.\-:+ ]{1,200}"
)  # what a study name from a URL may hold (Optuna allows more; tradeoff's do not)
UNITS = {"accuracy": "fraction", "size_bytes": "bytes", "latency_ms": "ms", "energy_mj": "mJ"}


def first_front(points: np.ndarray) -> np.ndarray:
    """Mask of the non-dominated rows of ``points`` (every column minimised), without ranking the rest.

    Rows are visited in lexicographic order, so a row can only be dominated by one visited before it;
    each is compared with the front found so far (vectorised), which stays small on real studies:
    about n x front-size comparisons instead of a full non-dominated sort's n^2.

    Example:
        >>> first_front(np.array([[1.0, 2.0], [2.0, 1.0], [2.0, 2.0], [1.0, 2.0]])).tolist()
        [True, True, False, True]
    """
    n = len(points)
    mask = np.zeros(n, dtype=bool)
    order = np.lexsort(points.T[::-1])
    front = np.empty((0, points.shape[1]))
    for i in order:
        p = points[i]
        if len(front):
            no_worse = (front <= p).all(axis=1)
            better = (front < p).any(axis=1)
            if (no_worse & better).any():
                continue
        mask[i] = True
        front = np.vstack([front, p])
    return mask


class DashboardError(ValueError):
    """A page asked for something that is not there; the message is shown instead of the page."""


# every transaction of the dashboard's PostgreSQL sessions is read-only: the server refuses any write
READ_ONLY_SESSION = "-c default_transaction_read_only=on"


def read_only_storage(url: str) -> optuna.storages.BaseStorage:
    """``url`` opened for reading: SQLite in ``mode=ro`` (the file must exist); PostgreSQL in read-only
    transactions (the database must hold studies; no table is created)."""
    check_storage_url(url)
    if is_server(url):
        try:
            check_server(url, must_exist=True)
        except StorageError as exc:
            raise DashboardError(str(exc)) from None
        engine = {
            "pool_pre_ping": True,
            "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S, "options": READ_ONLY_SESSION},
        }
        return optuna.storages.RDBStorage(url, engine_kwargs=engine, skip_table_creation=True)
    path = sqlite_path(url)
    if path is None:
        return optuna.storages.RDBStorage(url)
    if not path.exists():
        raise DashboardError(f"no study storage at {str(path)!r}; run `tradeoff launch` or `tradeoff demo` first.")
    return optuna.storages.RDBStorage(f"sqlite:///file:{path.resolve()}?mode=ro&uri=true")


@dataclass(frozen=True)
class Point:
    """One trial as the pages show it."""

    number: int
    state: str  # complete, screened, stopped, duplicate, failed, running, waiting
    role: str  # baseline | candidate
    values: dict[str, float]  # empty when the trial has none (stopped, failed, running)
    feasible: bool
    recipe: dict[str, Any]
    figures: dict[str, Any]
    provenance: dict[str, Any]
    deployable_form: str | None
    stop_reason: str | None
    rungs: list[dict[str, Any]]
    finetune: dict[str, Any]
    complete_s: float | None  # seconds from the study's first start to this trial's completion


def _state(t: FrozenTrial, a: Mapping[str, Any]) -> str:
    if t.state == TrialState.COMPLETE:
        if a.get(record.SCREENED):
            return "screened"
        return "duplicate" if a.get(record.DUPLICATE_OF) is not None else "complete"
    if t.state == TrialState.PRUNED:
        return "stopped"
    return {"FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}.get(t.state.name, t.state.name.lower())


@dataclass
class StudyView:
    """One study as read at one revision: its spec's names, weights and limits, and every trial."""

    name: str
    names: tuple[str, ...]
    task: str
    device: str
    budget: int
    weights: Weights
    limits: dict[str, float]
    baseline: dict[str, float] | None
    points: list[Point]
    revision: tuple[int, str]
    hypervolume: list[dict[str, Any]] = field(default_factory=list)
    task_importable: bool = False  # whether this host can rebuild the model (the full bundle is offered)
    _fronts: dict[tuple[Any, ...], list[Point]] = field(default_factory=dict, repr=False)

    def point(self, number: int) -> Point:
        for p in self.points:
            if p.number == number:
                return p
        raise DashboardError(f"study {self.name!r} has no trial {number}.")

    def completed(self) -> list[Point]:
        return [p for p in self.points if p.values]

    def front_points(self, limits: Constraints) -> list[Point]:
        """The feasible non-dominated trials under ``limits``: sorted once per revision and limits (the
        weights do not change which trials are on it, so a slider move costs no sort)."""
        key = tuple(
            getattr(limits, f) for f in ("max_accuracy_drop", "max_latency_ms", "max_size_bytes", "max_energy_mj")
        )
        with _LOCK:
            cached = self._fronts.get(key)
        if cached is not None:
            return cached
        done = [p for p in self.completed() if self._meets(p, limits)] if self.baseline is not None else []
        front: list[Point] = []
        if done:
            points = np.stack([normalise(p.values, self.baseline, self.names) for p in done])
            front = [p for p, m in zip(done, first_front(points), strict=True) if m]
        with _LOCK:
            self._fronts[key] = front
        return front

    def front(self, weights: Weights, limits: Constraints) -> list[tuple[Point, float]]:
        """The feasible non-dominated trials under ``limits``, lowest weighted cost first, with their cost."""
        if self.baseline is None:
            return []
        ranked = [(p, weighted_cost(p.values, self.baseline, weights)) for p in self.front_points(limits)]
        return sorted(ranked, key=lambda pc: (pc[1], pc[0].number))

    def knee(self, front: list[tuple[Point, float]]) -> Point | None:
        if not front or self.baseline is None:
            return None
        points = np.stack([normalise(p.values, self.baseline, self.names) for p, _ in front])
        return front[knee_index(points, [c for _, c in front])][0]

    def _meets(self, p: Point, limits: Constraints) -> bool:
        if self.baseline is None:
            return False
        figures = {**p.figures, **p.values}
        return all(v <= 0 for v in constraint_values(figures, self.baseline, limits).values())


@dataclass
class _Row:
    """The part of a trial the dashboard reads (what :func:`tradeoff.studies.record.attrs` needs too)."""

    number: int
    state: TrialState
    values: tuple[float, ...] | None
    user_attrs: dict[str, Any]
    system_attrs: dict[str, Any]
    datetime_start: datetime.datetime | None
    datetime_complete: datetime.datetime | None


def _when(value: Any) -> datetime.datetime | None:
    if value is None or isinstance(value, datetime.datetime):
        return value
    return datetime.datetime.fromisoformat(str(value))


def _rows(study: optuna.Study) -> list[_Row]:
    """Every trial of ``study``: four SQL queries on an RDB storage (Optuna's ORM read took 7 s for
    10,000 trials here), else through Optuna."""
    storage = study._storage
    storage = getattr(storage, "_backend", storage)  # Optuna wraps an RDB storage in a cache
    engine = getattr(storage, "engine", None)
    if engine is None:
        return [
            _Row(t.number, t.state, tuple(t.values) if t.values is not None else None, t.user_attrs, t.system_attrs,
                 t.datetime_start, t.datetime_complete)
            for t in study.get_trials(deepcopy=False)
        ]  # fmt: skip
    sid = {"id": study._study_id}
    inf = {"INF_POS": math.inf, "INF_NEG": -math.inf}
    with engine.connect() as conn:
        trials = conn.execute(
            sqlalchemy.text(
                "SELECT trial_id, number, state, datetime_start, datetime_complete FROM trials "
                "WHERE study_id = :id ORDER BY number"
            ),
            sid,
        ).all()
        values: dict[int, dict[int, float]] = {}
        for tid, objective, value, kind in conn.execute(
            sqlalchemy.text(
                "SELECT v.trial_id, v.objective, v.value, v.value_type FROM trial_values v "
                "JOIN trials t ON t.trial_id = v.trial_id WHERE t.study_id = :id"
            ),
            sid,
        ):
            values.setdefault(tid, {})[objective] = inf.get(str(kind), value)
        attrs: dict[str, dict[int, dict[str, Any]]] = {"trial_user_attributes": {}, "trial_system_attributes": {}}
        for table, found in attrs.items():
            for tid, key, value_json in conn.execute(
                sqlalchemy.text(
                    f"SELECT a.trial_id, a.key, a.value_json FROM {table} a "  # fixed table names
                    "JOIN trials t ON t.trial_id = a.trial_id WHERE t.study_id = :id"
                ),
                sid,
            ):
                found.setdefault(tid, {})[key] = json.loads(value_json)
    out = []
    for tid, number, state, start, complete in trials:
        v = values.get(tid)
        out.append(
            _Row(
                number,
                TrialState[str(state)],
                tuple(v[k] for k in sorted(v)) if v else None,
                attrs["trial_user_attributes"].get(tid, {}),
                attrs["trial_system_attributes"].get(tid, {}),
                _when(start),
                _when(complete),
            )
        )
    return out


def _read(study: optuna.Study, revision: tuple[int, str]) -> StudyView:
    spec = study_spec(study)  # validated without the task (parse_stored_spec)
    names = objective_names_of(study)
    trials = _rows(study)
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    t0 = min(starts) if starts else None
    baseline = None
    points = []
    for t in trials:
        a = record.attrs(t)
        values = dict(zip(names, t.values, strict=True)) if t.values is not None else {}
        if a.get(record.ROLE) == "baseline" and values:
            baseline = values
        constraints = t.system_attrs.get("constraints") or []
        points.append(
            Point(
                number=t.number,
                state=_state(t, a),
                role=str(a.get(record.ROLE, "candidate")),
                values=values,
                feasible=all(c <= 0 for c in constraints),
                recipe=dict(a.get(record.RECIPE) or {}),
                figures=dict(a.get(record.FIGURES) or {}),
                provenance=dict(a.get(record.PROVENANCE) or {}),
                deployable_form=a.get(record.DEPLOYABLE_FORM),
                stop_reason=a.get(record.STOP_REASON),
                rungs=list(a.get(record.RUNGS) or []),
                finetune=record.finetune_of(t),
                complete_s=(t.datetime_complete - t0).total_seconds() if t.datetime_complete and t0 else None,
            )
        )
    return StudyView(
        name=study.study_name,
        names=names,
        task=spec.task.name,
        device=spec.target.device,
        budget=spec.study.n_trials,
        weights=spec.weights(),
        limits={k: v for k, v in spec.constraints.model_dump().items() if v is not None},
        baseline=baseline,
        points=points,
        revision=revision,
        hypervolume=history_of(trials),
        task_importable=_importable(spec.task.name, spec.task.kwargs),
    )


def _importable(name: str, kwargs: dict[str, Any]) -> bool:
    """Whether this host has the task's code (so the full bundle can be offered), found without
    importing or running it: a built-in, a ``file.py`` that exists, or a module Python can find."""
    import importlib.util

    from tradeoff.studies.tasks import BUILTIN_TASKS

    if name in BUILTIN_TASKS:
        return True
    module, sep, _ = name.rpartition(":")
    if not sep:
        return False
    if module.endswith(".py"):
        return Path(module).is_file()
    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None  # the top package: not executed
    except (ImportError, ValueError):
        return False


_CACHE: dict[tuple[str, str], StudyView] = {}
_LOCK = threading.Lock()


def check_name(name: str) -> str:
    """A study name from a URL or a callback, refused unless it could be one."""
    if not isinstance(name, str) or len(name) > MAX_NAME or not NAME_OK.fullmatch(name):
        raise DashboardError("not a study name: names hold letters, digits and . - _ : + and spaces, at most 200.")
    return name


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return sorted(optuna.get_all_study_names(storage))


def _revision(storage: optuna.storages.BaseStorage, name: str) -> tuple[int, str]:
    """How many trials the study has and when the newest one finished or changed state: one small
    SQL query on an RDB storage (reading every trial to learn this cost 0.8 s at 1,000 trials)."""
    study_id = storage.get_study_id_from_name(name)
    engine = getattr(storage, "engine", None)
    if engine is not None:
        with engine.connect() as conn:
            n, newest, running = conn.execute(
                sqlalchemy.text(
                    "SELECT COUNT(*), MAX(datetime_complete), SUM(CASE WHEN state = 'RUNNING' THEN 1 ELSE 0 END) "
                    "FROM trials WHERE study_id = :id"
                ),
                {"id": study_id},
            ).one()
        return int(n), f"{newest}|{running}"
    trials = storage.get_all_trials(study_id, deepcopy=False)
    newest = max((str(t.datetime_complete) for t in trials if t.datetime_complete), default="")
    return len(trials), newest


def study_view(storage: optuna.storages.BaseStorage, url: str, name: str) -> StudyView:
    """The study ``name`` at its current revision, read again only when it changed."""
    check_name(name)
    if name not in study_names(storage):
        raise DashboardError(f"no study named {name!r} in this storage.")
    revision = _revision(storage, name)
    key = (url, name)
    with _LOCK:
        cached = _CACHE.get(key)
        if cached is not None and cached.revision == revision:
            return cached
    try:
        view = _read(optuna.load_study(study_name=name, storage=storage), revision)
    except ResultsError as exc:
        raise DashboardError(str(exc)) from None
    with _LOCK:
        _CACHE[key] = view
    return view


def parse_trial_number(text: Any) -> int:
    """A trial id from a URL or a click: a non-negative integer, else :class:`DashboardError`."""
    s = str(text)
    if not s.isdigit() or len(s) > 9:
        raise DashboardError(f"not a trial number: {s[:40]!r}.")
    return int(s)
