"""Storage URL -> Optuna storage. Default: an SQLite file in the working directory; PostgreSQL for many hosts.

Precedence: ``--storage`` on the command line, then ``$TRADEOFF_STORAGE``, then the spec's
``study.storage``, then :data:`DEFAULT_STORAGE`.

* **SQLite** (embedded, nothing to install) serves the worker processes of one host. It is the
  wrong tool for workers on several hosts, or for a file on a network file system (its locks are
  not safe there): both are refused with a message that names PostgreSQL.
* **PostgreSQL** (``postgresql+psycopg://user:password@host/db``, ``pip install "tradeoff[postgres]"``)
  serves one study from any number of hosts. Running trials send Optuna's heartbeats; a trial
  whose worker stops sending them (killed, host lost) is failed after the grace period and its
  config queued again (:class:`RetryStale`); a lost connection is retried (:mod:`.reconnect`).

Opening a storage never half-writes: a URL that cannot be reached, a wrong password, a corrupt or
locked SQLite file, or (``must_exist``) a database without studies gives one line naming the
problem (:class:`StorageError`) before anything is created.
"""

from __future__ import annotations

import copy
import os
import sqlite3
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from .reconnect import RECONNECT_S, Reconnecting
from .record import RETRY_OF

DEFAULT_STORAGE = "sqlite:///tradeoff.db"  # embedded, nothing to install or start
ENV_VAR = "TRADEOFF_STORAGE"
SUPPORTED = ("sqlite", "postgresql")  # what is tested; MySQL would work with Optuna but nothing here checks it
SQLITE_TIMEOUT_S = 60.0  # a writer waits this long for another worker's transaction (sqlite3's default: 5 s)
LOCK_PROBE_S = 10.0  # opening waits this long for a lock held by another program before saying so
CONNECT_TIMEOUT_S = 10  # a PostgreSQL host that does not answer in this long is called unreachable
MAX_RETRY = 3  # a config whose worker died is retried this often; one that kills every worker it runs on then stops
# network file systems on which SQLite's file locks are unreliable (SQLite's own FAQ): refused for a study
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "fuse.sshfs", "ceph", "glusterfs", "lustre", "afs", "fuse.s3fs"}
)
USE_POSTGRES = (
    'use PostgreSQL instead: pip install "tradeoff[postgres]" and --storage postgresql+psycopg://user:password@host/db '
    "(README: 'Many hosts')"
)


class StorageError(ValueError):
    """A storage URL is malformed, unsupported, cannot be reached, or names nothing that exists."""


class NoStudies(StorageError):
    """Opened with ``must_exist``: the SQLite file does not exist, or the database holds no studies."""


def resolve_storage_url(cli: str | None = None, spec: str | None = None) -> str:
    """The storage URL in force (see module docstring for the precedence)."""
    url = cli or os.environ.get(ENV_VAR) or spec or DEFAULT_STORAGE
    check_storage_url(url)
    return url


def check_storage_url(url: str) -> None:
    """Raise :class:`StorageError` unless ``url`` is a database URL Optuna can use.

    Example:
        >>> check_storage_url("mongodb://host/db")
        Traceback (most recent call last):
        ...
        tradeoff.studies.storage.StorageError: storage 'mongodb://host/db': backend 'mongodb' is not supported; ...
    """
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        raise StorageError(
            f"storage {url!r} is not a database URL; expected e.g. {DEFAULT_STORAGE!r} or "
            "'postgresql+psycopg://user:password@host/db'."
        ) from None
    if backend not in SUPPORTED:
        raise StorageError(
            f"storage {hide_password(url)!r}: backend {backend!r} is not supported; use one of {SUPPORTED}."
        )


def hide_password(url: str) -> str:
    """``url`` with its password masked, for messages and logs.

    Example:
        >>> hide_password("postgresql+psycopg://me:secret@db/s")
        'postgresql+psycopg://me:***@db/s'
    """
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def is_server(url: str) -> bool:
    """Whether ``url`` names a database server (shared by hosts) rather than an SQLite file."""
    return make_url(url).get_backend_name() != "sqlite"


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL (``None`` for other backends and in-memory SQLite)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def filesystem_type(path: Path, mounts: str | None = None) -> str | None:
    """The type of the file system holding ``path`` (from ``/proc/self/mounts``; None where unknown).

    Example:
        >>> filesystem_type(Path("/srv/x/s.db"), "server:/x /srv/x nfs4 rw 0 0\\n/dev/sda1 / ext4 rw 0 0\\n")
        'nfs4'
    """
    if mounts is None:
        try:
            mounts = Path("/proc/self/mounts").read_text()
        except OSError:
            return None
    target = str(path.resolve() if path.exists() else path.absolute().parent.resolve() / path.name)
    best, kind = "", None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def check_not_networked(url: str, mounts: str | None = None) -> None:
    """Refuse an SQLite file on a network file system, naming PostgreSQL.

    Example:
        >>> check_not_networked("sqlite:////srv/x/s.db", "server:/x /srv/x nfs4 rw 0 0\\n")
        Traceback (most recent call last):
        ...
        tradeoff.studies.storage.StorageError: storage '/srv/x/s.db' is on a network file system (nfs4), ...
    """
    path = sqlite_path(url)
    if path is None:
        return
    kind = filesystem_type(path, mounts)
    if kind in NETWORK_FILESYSTEMS:
        raise StorageError(
            f"storage {str(path)!r} is on a network file system ({kind}), where SQLite's locks are not safe and "
            f"workers on several hosts would corrupt it; {USE_POSTGRES}."
        )


def _check_sqlite_file(path: Path, *, write: bool) -> None:
    """A corrupt or locked SQLite file is named before Optuna touches it (nothing is written)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode={'rw' if write else 'ro'}", uri=True, timeout=LOCK_PROBE_S)
    except sqlite3.Error as exc:
        raise StorageError(f"storage {str(path)!r} cannot be opened: {exc}.") from None
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchall()  # reads the header: a non-database fails here
        if write:
            conn.execute("BEGIN IMMEDIATE")  # the write lock, taken and given back: nothing is written
            conn.rollback()
    except sqlite3.DatabaseError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise StorageError(
                f"storage {str(path)!r} is locked by another program (waited {LOCK_PROBE_S:.0f} s): close the "
                "program holding it (a database browser, an unfinished `sqlite3` session), then run this again."
            ) from None
        raise StorageError(
            f"storage {str(path)!r} is not a usable SQLite database ({exc}); give another --storage file, or move "
            "this one aside (a study storage is never repaired in place)."
        ) from None
    finally:
        conn.close()


def _connect_error(url: str, exc: BaseException) -> StorageError:
    """One line for a server that refused or did not answer, without the password."""
    cause: BaseException = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    detail = str(getattr(cause, "orig", None) or cause).strip().splitlines()
    text = detail[0] if detail else type(cause).__name__
    u = make_url(url)
    where = f"{u.host or 'localhost'}:{u.port or 5432}"
    if "too many clients" in text or "remaining connection slots" in text:
        hint = (
            f"the server at {where} has no free connection ({text}): each tradeoff worker holds up to 3; "
            "raise the server's max_connections (docs/BENCHMARKS.md, 'Workers on PostgreSQL') or run fewer workers"
        )
    elif "password authentication failed" in text or "no password supplied" in text:
        hint = f"user {u.username!r} was refused: check the password in the URL (or ~/.pgpass)"
    elif "does not exist" in text and "database" in text:
        hint = f"database {u.database!r} does not exist on {where}: create it (createdb {u.database}) or fix the URL"
    elif any(
        s in text for s in ("Connection refused", "could not connect", "timeout", "timed out", "resolve", "translate")
    ):
        hint = (
            f"cannot reach PostgreSQL at {where} ({text}): check that the server runs and the host and port are right"
        )
    else:
        hint = text
    return StorageError(f"storage {hide_password(url)}: {hint}.")


def check_server(url: str, *, must_exist: bool) -> None:
    """Connect once (a clear line on failure) and, with ``must_exist``, require Optuna's tables."""
    engine = sqlalchemy.create_engine(
        url, poolclass=sqlalchemy.pool.NullPool, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
    )
    try:
        with engine.connect() as conn:
            has_studies = sqlalchemy.inspect(conn).has_table("studies")
    except SQLAlchemyError as exc:
        raise _connect_error(url, exc) from None
    except ImportError as exc:
        raise StorageError(f"storage {hide_password(url)}: {exc}; {USE_POSTGRES}.") from None
    finally:
        engine.dispose()
    if must_exist and not has_studies:
        raise NoStudies(
            f"storage {hide_password(url)} holds no tradeoff studies (no Optuna tables); "
            "run `tradeoff launch` with this --storage first."
        )


class RetryStale(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a trial whose heartbeat stopped, queued without the dead trial's partial record.

    The new trial gets the same parameters and ``retry_of`` (:data:`RETRY_OF`), the number of the
    trial it replaces; Optuna's ``failed_trial`` / ``retry_history`` system attributes are kept too.
    """

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        fresh = copy.copy(trial)
        fresh.user_attrs = {RETRY_OF: trial.number}  # not the dead trial's rung figures: the retry measures its own
        super().__call__(study, fresh)


def open_storage(
    url: str,
    *,
    must_exist: bool = False,  # never create: NoStudies when there is nothing to open
    heartbeat_s: int | None = None,
    grace_s: int | None = None,
    reconnect_s: float = RECONNECT_S,
) -> optuna.storages.BaseStorage:
    """Open ``url`` as Optuna storage, checking first that it can be used (see the module docstring).

    Args:
        url: The storage URL.
        must_exist: Never create anything: an SQLite file must exist, a server database must hold studies.
        heartbeat_s: On a server, running trials record a heartbeat this often (seconds; None: none).
        grace_s: A running trial without a heartbeat for this long is failed and its config retried.
        reconnect_s: On a server, how long a call rides out a lost connection (:mod:`.reconnect`).

    Example:
        >>> isinstance(open_storage("sqlite:///:memory:"), optuna.storages.RDBStorage)
        True
    """
    check_storage_url(url)
    path = sqlite_path(url)
    if path is not None:
        if must_exist and not path.exists():
            raise NoStudies(f"no study storage at {str(path)!r}; run `tradeoff launch` or `tradeoff demo` first.")
        if path.exists():
            _check_sqlite_file(path, write=not must_exist)
        # workers on this host write to one file: wait for its lock instead of failing at sqlite3's 5 s
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": SQLITE_TIMEOUT_S}})
    if not is_server(url):  # in-memory SQLite
        return optuna.storages.RDBStorage(url)
    check_server(url, must_exist=must_exist)
    kwargs: dict[str, Any] = {}
    if heartbeat_s is not None:
        kwargs = {
            "heartbeat_interval": heartbeat_s,
            "grace_period": grace_s,
            "heartbeat_stale_trial_callback": RetryStale(max_retry=MAX_RETRY),
        }
    # pool_pre_ping: a connection the server dropped (restart) is replaced before use, not failed on
    engine = {"pool_pre_ping": True, "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    try:
        rdb = optuna.storages.RDBStorage(url, engine_kwargs=engine, **kwargs)
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:  # Optuna wraps its schema check's
        raise _connect_error(url, exc) from None
    return Reconnecting(optuna.storages.get_storage(rdb), limit_s=reconnect_s)


def load_study(name: str, url: str) -> optuna.Study:
    """Load an existing study, or say which studies the storage holds."""
    storage = open_storage(url, must_exist=True)
    names = optuna.get_all_study_names(storage)
    if name not in names:
        known = ", ".join(sorted(names)) or "none"
        raise StorageError(f"no study named {name!r} in {hide_password(url)}; studies there: {known}.")
    return optuna.load_study(study_name=name, storage=storage)
