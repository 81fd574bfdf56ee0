"""Riding out a database server that goes away for a while (a restart, a fail-over, a network blip).

Optuna's RDB storage raises ``StorageInternalError`` on the first lost connection, and a worker
that dies of it leaves its trial RUNNING until heartbeats fail it. :class:`Reconnecting` wraps a
server-backed storage (PostgreSQL) so that every storage call that fails because the connection
is gone is tried again with exponential backoff (:data:`BACKOFF_S`), up to a stated limit
(``[study] reconnect_s``); past the limit the worker stops with :class:`StorageLost`, a message
that says what happened and that running the same command again rejoins the study.

What is retried: only errors whose cause is a lost or refused connection
(``sqlalchemy.exc.OperationalError``, ``InterfaceError``, or a DBAPI error SQLAlchemy marked as
a disconnect). A constraint violation or a bad query is a bug and is raised at once.

Why retrying is safe: a statement whose connection is lost runs in a transaction the server rolls
back, so trying it again does not apply it twice. The one case that is not covered is a commit
that reached the server whose answer was lost with the connection: a retried ``create_new_trial``
then adds a second trial, which asks nobody for work and which heartbeats fail. SQLite is never
wrapped: it has no server to lose, and an interrupted statement there is Ctrl-C, which must stop.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import optuna
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat  # Optuna's heartbeat interface (RDBStorage implements it)
from sqlalchemy import exc as sa_exc

T = TypeVar("T")

BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)  # waits between tries, then 15 s each: quick after a blip, calm after
RECONNECT_S = 120  # [study] reconnect_s's default: a server restart or a fail-over takes seconds to a minute


class StorageLost(RuntimeError):
    """The storage server could not be reached for longer than the reconnect limit."""


def is_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a lost or refused database connection.

    Example:
        >>> is_disconnect(sa_exc.OperationalError("SELECT 1", {}, Exception("connection refused")))
        True
        >>> is_disconnect(ValueError("no"))
        False
    """
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError)):
            return True
        if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
            return True
        e = e.__cause__ or e.__context__
    return False


def retrying(fn: Callable[[], T], *, limit_s: float, what: str, sleep: Callable[[float], None] = time.sleep) -> T:
    """``fn()``, tried again with backoff while it fails for a lost connection, for up to ``limit_s`` seconds.

    The first failure and the recovery are reported on stderr, once each.

    Raises:
        StorageLost: still failing after ``limit_s`` seconds (its cause is the last error).

    Example:
        >>> calls = []
        >>> def flaky():
        ...     calls.append(1)
        ...     if len(calls) < 3:
        ...         raise sa_exc.OperationalError("SELECT 1", {}, Exception("connection refused"))
        ...     return "ok"
        >>> retrying(flaky, limit_s=10, what="doc", sleep=lambda s: None), len(calls)
        ('ok', 3)
    """
    start = time.monotonic()
    tries = 0
    while True:
        try:
            result = fn()
        except Exception as exc:
            if not is_disconnect(exc):
                raise
            waited = time.monotonic() - start
            if waited >= limit_s:
                raise StorageLost(
                    f"lost the storage for {waited:.0f} s ({what}: {_first_line(exc)}); stopping after the "
                    f"reconnect limit of {limit_s:.0f} s ([study] reconnect_s). The study stays consistent: this "
                    "process's running trial is failed by heartbeat and retried. Run the same command again to rejoin."
                ) from exc
            if tries == 0:
                print(
                    f"tradeoff: storage unreachable ({_first_line(exc)}); retrying for up to {limit_s:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
            sleep(min(BACKOFF_S[min(tries, len(BACKOFF_S) - 1)], max(limit_s - waited, 0.1)))
            tries += 1
            continue
        if tries:
            print(
                f"tradeoff: storage reachable again after {time.monotonic() - start:.1f} s", file=sys.stderr, flush=True
            )
        return result


def _first_line(exc: BaseException) -> str:
    e: BaseException = exc
    while e.__cause__ is not None:  # the driver's message is the informative one
        e = e.__cause__
    text = str(getattr(e, "orig", None) or e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _storage_methods() -> list[str]:
    """Every method a storage offers: BaseStorage's and BaseHeartbeat's (public and the stale-trial query)."""
    names = set()
    for cls in (BaseStorage, BaseHeartbeat):
        names.update(n for n, v in vars(cls).items() if callable(v) and not n.startswith("__"))
    return sorted(names)


class Reconnecting(BaseStorage, BaseHeartbeat):
    """A storage whose every call rides out a lost connection for up to ``limit_s`` seconds.

    Args:
        backend: The storage to wrap (Optuna's cached RDB storage for PostgreSQL).
        limit_s: How long one call keeps trying before :class:`StorageLost`.

    Example:
        >>> storage = Reconnecting(optuna.storages.InMemoryStorage(), limit_s=5)
        >>> study = optuna.create_study(storage=storage)
        >>> study.ask().number
        0
    """

    def __init__(self, backend: BaseStorage, *, limit_s: float = RECONNECT_S) -> None:
        self._backend = backend
        self.limit_s = limit_s

    def __getattr__(self, name: str) -> Any:  # anything else a backend offers (e.g. RDBStorage.engine)
        return getattr(self._backend, name)


def _wrap(name: str) -> Callable[..., Any]:
    def method(self: Reconnecting, *args: Any, **kwargs: Any) -> Any:
        call = getattr(self._backend, name)
        return retrying(functools.partial(call, *args, **kwargs), limit_s=self.limit_s, what=name)

    method.__name__ = name
    method.__doc__ = f"``{name}`` of the wrapped storage, retried while the connection is lost."
    return method


for _name in _storage_methods():
    setattr(Reconnecting, _name, _wrap(_name))


def _record_heartbeat(self: Reconnecting, trial_id: int) -> None:
    """A heartbeat that cannot reach the storage within the limit is skipped, not raised: it runs in Optuna's
    heartbeat thread, where an exception would only print a traceback; the trial's own next storage call
    meets the same limit and stops the worker with the message."""
    try:
        retrying(lambda: self._backend.record_heartbeat(trial_id), limit_s=self.limit_s, what="heartbeat")
    except StorageLost:
        return


def _heartbeat_interval(self: Reconnecting) -> int | None:
    backend = self._backend
    return backend.get_heartbeat_interval() if isinstance(backend, BaseHeartbeat) else None


def _stale_trial_callback(self: Reconnecting) -> Callable[[optuna.Study, Any], None] | None:
    backend = self._backend
    return backend.get_heartbeat_stale_trial_callback() if isinstance(backend, BaseHeartbeat) else None


Reconnecting.record_heartbeat = _record_heartbeat  # type: ignore[method-assign]
# settings, not database calls: nothing to retry, and a backend without heartbeats has none
Reconnecting.get_heartbeat_interval = _heartbeat_interval  # type: ignore[method-assign]
Reconnecting.get_heartbeat_stale_trial_callback = _stale_trial_callback  # type: ignore[method-assign]
Reconnecting.get_failed_trial_callback = _stale_trial_callback  # type: ignore[method-assign]
Reconnecting.__abstractmethods__ = frozenset()  # every abstract method is defined just above
