"""Worker processes on this host: how many run a study's trials at once, and starting and stopping them.

A trial runs whole at ``target.threads`` (one by default: the quietest and, on small machines, the
fastest), so on a 2-core machine one process leaves a core idle for the whole search.
``[search] workers = "auto"`` runs ``cores // target.threads`` processes (at most
:data:`MAX_AUTO`; one on a GPU), each asking the same study for trials through its storage, so
the sampler, the rungs, duplicate and latency reuse see every worker's trials as they finish.

What keeps the figures honest while trials run side by side:

* latency and energy are measured under the host-wide measurement lock
  (:mod:`tradeoff.objectives._lock`): two workers never time at once;
* a candidate's latency is its ratio to the teacher, timed interleaved with it (ABBA), so the
  load of a worker fine-tuning on the other core slows both sides alike; the baseline's absolute
  latency is measured before any worker starts (``benchmarks/measurement.py --load`` measures
  what a busy neighbour core does to the ratios);
* each worker's sampler gets its own seed (the study's seed + the worker's index), and Optuna's
  TPE lies about running trials (``constant_liar``) so workers do not suggest the same config.

With more than one worker the order in which trials finish, and so what the sampler has seen
when it suggests, depends on timing: a seed no longer fixes the study. ``workers = 1`` does.

The processes are forked (Linux): they start with the parent's task, teacher outputs and
compiled kernels in memory, so a worker costs no start-up. Where ``fork`` does not exist, or
the storage is an in-memory SQLite database that a second process cannot see, one worker runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, Self

import sqlalchemy

from tradeoff.studies.reconnect import RECONNECT_S, retrying
from tradeoff.studies.spec import SpecError
from tradeoff.studies.storage import CONNECT_TIMEOUT_S, is_server, sqlite_path

INTERRUPTED = "interrupted: the process stopped while the trial ran"  # the error of a trial Ctrl-C stopped
ENV_VAR = "TRADEOFF_WORKERS"  # overrides the spec's [search] workers (as --workers on the command line)
MAX_AUTO = 4  # past a few workers the one-at-a-time measurement lock and SQLite's one writer are the bottleneck
GRACE_S = 2.0  # after Ctrl-C: a worker that got it too is left this long to stop before it is signalled again
JOIN_S = 10.0  # after Ctrl-C: how long a worker may take to mark its trial failed before it is terminated
# (marking takes well under a second; the parent then marks whatever a terminated worker left RUNNING)


def resolve_workers(
    setting: int | str, *, threads: int, device: str, storage_url: str, override: int | str | None = None
) -> tuple[int, str]:
    """How many worker processes run the study, and why.

    ``override`` (``--workers``) wins, then ``$TRADEOFF_WORKERS``, then ``setting`` (the spec's
    ``[search] workers``); each is a count or ``"auto"``.

    Example:
        >>> resolve_workers("auto", threads=1, device="cpu", storage_url="sqlite:///s.db", override=3)
        (3, '--workers: 3')
        >>> resolve_workers("auto", threads=1, device="cuda", storage_url="sqlite:///s.db")[0]
        1

    Raises:
        SpecError: the override or the environment variable is neither a positive count nor ``auto``.
    """
    source, value = "named", setting
    if override is not None:
        source, value = "--workers", override
    elif os.environ.get(ENV_VAR):
        source, value = f"${ENV_VAR}", os.environ[ENV_VAR]
    if value != "auto":
        try:
            count = int(value)
        except (TypeError, ValueError):
            count = 0
        if count < 1:
            raise SpecError(f"{source}: expected a positive number of workers or 'auto', got {value!r}.")
        n, reason = count, f"{source}: {count}"
    elif device != "cpu":
        n, reason = 1, f"auto: one worker on {device} (trials would share one accelerator)"
    else:
        cores = os.cpu_count() or 1
        n = max(1, min(cores // max(threads, 1), MAX_AUTO))
        reason = f"auto: {cores} cores // {threads} thread(s) a trial" + (
            f", at most {MAX_AUTO}" if n == MAX_AUTO else ""
        )
    if n > 1 and "fork" not in multiprocessing.get_all_start_methods():
        return 1, f"{reason}; one, since this platform cannot fork"
    if n > 1 and storage_url.startswith("sqlite") and sqlite_path(storage_url) is None:
        return 1, f"{reason}; one, since an in-memory database is not shared between processes"
    return n, reason


class Workers:
    """Forked worker processes ``1 .. n-1`` running ``target(index)`` (the caller is worker 0).

    A child that gets Ctrl-C exits with code 130 after its target has marked its trial failed; any
    other exception prints its traceback on stderr and exits with 1.
    """

    def __init__(self, n: int, target: Callable[[int], None]) -> None:
        ctx = multiprocessing.get_context("fork")
        self.lock: Any = ctx.Lock()  # taken around "is the budget met? ask" so workers never overshoot it
        self._procs = [
            ctx.Process(target=_child, args=(target, i), name=f"tradeoff-worker-{i}", daemon=True) for i in range(1, n)
        ]

    def start(self) -> None:
        for p in self._procs:
            p.start()

    @property
    def pids(self) -> tuple[int, ...]:
        """The worker processes' ids (started ones)."""
        return tuple(p.pid for p in self._procs if p.pid is not None)

    def stop(self, *, interrupt: bool = False) -> list[str]:
        """Wait for the workers to finish their trials (with ``interrupt``: Ctrl-C each, and terminate one
        that has not stopped after :data:`JOIN_S`); what went wrong, one line each."""
        if interrupt:
            for p in self._procs:  # Ctrl-C on a terminal reached them too: let them mark their trials failed
                p.join(GRACE_S)
            for p in self._procs:  # a signal sent to this process alone did not
                if p.is_alive() and p.pid is not None:
                    os.kill(p.pid, signal.SIGINT)
        problems = []
        for p in self._procs:
            p.join(JOIN_S if interrupt else None)  # a worker still running a trial finishes it first
            if p.is_alive():
                p.terminate()
                p.join()
                problems.append(f"{p.name} did not stop within {JOIN_S:.0f} s and was terminated")
            elif p.exitcode != 0 and not (interrupt and p.exitcode == 130):  # 130: it stopped on Ctrl-C
                problems.append(f"{p.name} exited with code {p.exitcode} (its error is above, on stderr)")
        return problems


class StudyLock:
    """One process at a time, across every process and host running the study, for "is the budget met? ask".

    On PostgreSQL a session-level advisory lock (``pg_advisory_lock``) keyed by the study's name: the
    database is the coordinator every host already shares, and a process that dies loses its session
    and with it the lock, so a killed worker never leaves the study locked. On SQLite (one host) the
    ``local`` lock the host's forked workers share (:attr:`Workers.lock`); with none, no locking.

    Example:
        >>> with StudyLock("sqlite:///:memory:", "doc"):
        ...     "budget checked, trial asked"
        'budget checked, trial asked'
    """

    def __init__(self, url: str, study_name: str, *, local: Any = None, reconnect_s: float = RECONNECT_S) -> None:
        self.url = url
        self.local = local
        self.reconnect_s = reconnect_s
        digest = hashlib.sha256(f"tradeoff-study:{study_name}".encode()).digest()
        self.key = int.from_bytes(digest[:8], "big", signed=True)  # advisory locks take one bigint
        self._engine: sqlalchemy.Engine | None = None
        self._engine_pid = -1  # a forked worker opens its own connections, never its parent's
        self._conn: sqlalchemy.Connection | None = None

    def _take(self) -> sqlalchemy.Connection:
        if self._engine is None or self._engine_pid != os.getpid():
            self._engine = sqlalchemy.create_engine(
                self.url, poolclass=sqlalchemy.pool.NullPool, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
            )
            self._engine_pid = os.getpid()
        conn = self._engine.connect()
        try:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": self.key})
            conn.commit()  # the lock belongs to the session, not the transaction
        except BaseException:
            conn.close()
            raise
        return conn

    def __enter__(self) -> Self:
        if is_server(self.url):
            self._conn = retrying(self._take, limit_s=self.reconnect_s, what="the study's lock")
        elif self.local is not None:
            self.local.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):  # a lost connection has released it already
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
                conn.commit()
            with contextlib.suppress(Exception):
                conn.close()
        elif not is_server(self.url) and self.local is not None:
            self.local.release()


def _child(target: Callable[[int], None], index: int) -> None:
    with noting_sigint():
        try:
            target(index)
        except KeyboardInterrupt:
            sys.exit(130)
        except Exception:
            if sigint_seen():  # Ctrl-C that SQLite turned into a storage error
                sys.exit(130)
            raise


_SIGINT_SEEN = [False]  # this process got Ctrl-C inside noting_sigint() (a forked worker has its own)


@contextlib.contextmanager
def noting_sigint() -> Iterator[None]:
    """Ctrl-C still raises ``KeyboardInterrupt`` inside, and is also remembered (:func:`sigint_seen`).

    A Ctrl-C that lands while SQLite runs a statement does not arrive as ``KeyboardInterrupt``:
    SQLite aborts the statement (``OperationalError: interrupted``) and Optuna wraps that as a
    ``StorageInternalError``. Remembering the signal lets the runner tell that from a real storage
    error and stop as an interruption (exit 130, trial marked interrupted), not as a failure.

    Example:
        >>> with noting_sigint():
        ...     sigint_seen()
        False
    """
    _SIGINT_SEEN[0] = False
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        _SIGINT_SEEN[0] = True
        signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt, as without this handler

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def sigint_seen() -> bool:
    """Whether Ctrl-C reached this process inside the current :func:`noting_sigint` block."""
    return _SIGINT_SEEN[0]
