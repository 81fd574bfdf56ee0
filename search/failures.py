"""How trials fail, and which failures use up the budget: one place for the runner's failure rules.

A trial fails for a reason (:data:`tradeoff.studies.record.FAIL_REASONS`): the recipe raised
(``error``), the allocator refused (``out of memory``), the model's outputs or figures were NaN or
infinite (``non-finite``), Ctrl-C (``interrupted``), or its worker died and Optuna's heartbeats failed
it (``lost``: no error is written; the config runs again, ``retry_of``). Interrupted and lost trials
do not use up the budget.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Sequence

import optuna
import torch
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import TrialState

from tradeoff.objectives import NonFinite
from tradeoff.studies import record
from tradeoff.studies.storage import is_server

from .workers import INTERRUPTED


def worker_name() -> str:
    """``host:pid`` of the process running a trial (workers on one host differ by pid)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def counted(t: optuna.trial.FrozenTrial) -> bool:
    """Trials that use up the budget: completed, stopped at a rung, real failures. Not an interrupted trial,
    nor one whose worker was lost (heartbeats failed it and its config is queued again)."""
    if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return t.state == TrialState.FAIL and record.failure_reason(t) not in ("interrupted", "lost")


def failure_reason(exc: BaseException) -> str:
    """A trial's exception as one of :data:`record.FAIL_REASONS` (the cause chain is searched: torch.compile
    and Optuna wrap what went wrong)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in str(e):
            return "out of memory"
        if isinstance(e, NonFinite):
            return "non-finite"
        e = e.__cause__ or e.__context__
    return "error"


def alive_here(worker: str | None) -> bool:
    """Whether ``worker`` (``host:pid``) is a live process on this host."""
    host, _, pid = (worker or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def fail_stale(study: optuna.Study, storage_url: str, *, pids: tuple[int, ...] = ()) -> None:
    """Mark failed (interrupted) the RUNNING trials whose process is gone.

    On SQLite (one host) every RUNNING trial whose process is not alive on this host. On a server,
    only this host's worker processes ``pids`` (after Ctrl-C): other hosts' trials are their
    heartbeats' business.
    """
    here = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get(record.WORKER)
        if is_server(storage_url):
            if worker not in {f"{here}:{pid}" for pid in pids}:
                continue
        elif alive_here(worker):
            continue  # another process on this host is running it
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            study._storage.set_trial_user_attr(t._trial_id, record.ERROR, INTERRUPTED)
            study._storage.set_trial_user_attr(t._trial_id, record.FAIL_REASON, "interrupted")
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)


def fail_trial(study: optuna.Study, trial: optuna.Trial, error: str, reason: str) -> None:
    """Tell ``trial`` failed with ``error`` and its :data:`record.FAIL_REASONS` category."""
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # heartbeats failed it already
        trial.set_user_attr(record.ERROR, error)
        trial.set_user_attr(record.FAIL_REASON, reason)
    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def wait_for_running(
    study: optuna.Study,
    trials: Sequence[optuna.trial.FrozenTrial],
    since: float | None,
    *,
    grace_s: float,
    heartbeat_s: float,
) -> float | None:
    """Whether a worker whose budget is taken waits for other workers' running trials, and since when.

    With heartbeats (a server), one of those trials may belong to a worker that died, which only its
    missing heartbeats reveal, after the grace period; a failed one's config is queued again and a
    waiting worker runs it. So the worker waits while trials run, for at most the grace period and two
    heartbeats: a trial still running then has a live worker, which finishes it.

    Args:
        study: the study, to learn whether its storage keeps heartbeats.
        trials: the study's trials, read under the runner's lock.
        since: when this worker started waiting (``time.monotonic()``), or ``None`` if it was not waiting.
        grace_s: the study's heartbeat grace period.
        heartbeat_s: the study's heartbeat interval.

    Returns:
        When the wait started (``since``, or now), or ``None`` when the worker stops.

    Example:
        >>> import optuna
        >>> study = optuna.create_study()  # in memory: no heartbeats, nothing to wait for
        >>> wait_for_running(study, study.get_trials(), None, grace_s=60.0, heartbeat_s=10.0) is None
        True
    """
    running = any(t.state == TrialState.RUNNING for t in trials)
    if not (running and is_heartbeat_enabled(study._storage)):
        return None
    now = time.monotonic()
    since = now if since is None else since
    return since if now - since <= grace_s + 2 * heartbeat_s else None
