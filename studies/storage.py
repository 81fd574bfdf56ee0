"""Storage URL -> Optuna storage. Default: an SQLite file in the working directory.

Precedence: ``--storage`` on the command line, then ``$TRADEOFF_STORAGE``, then the spec's
``study.storage``, then :data:`DEFAULT_STORAGE`.
"""

from __future__ import annotations

import os
from pathlib import Path

import optuna
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_STORAGE = "sqlite:///tradeoff.db"  # embedded, nothing to install or start
ENV_VAR = "TRADEOFF_STORAGE"
SUPPORTED = ("sqlite", "postgresql", "mysql")
SQLITE_TIMEOUT_S = 60.0  # a writer waits this long for another worker's transaction (sqlite3's default: 5 s)


class StorageError(ValueError):
    """A storage URL is malformed, unsupported, or names nothing that exists."""


def resolve_storage_url(cli: str | None = None, spec: str | None = None) -> str:
    """The storage URL in force (see module docstring for the precedence)."""
    url = cli or os.environ.get(ENV_VAR) or spec or DEFAULT_STORAGE
    check_storage_url(url)
    return url


def check_storage_url(url: str) -> None:
    """Raise :class:`StorageError` unless ``url`` is a database URL Optuna can use."""
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        raise StorageError(
            f"storage {url!r} is not a database URL; expected e.g. {DEFAULT_STORAGE!r} or 'postgresql://user@host/db'."
        ) from None
    if backend not in SUPPORTED:
        raise StorageError(f"storage {url!r}: backend {backend!r} is not supported; use one of {SUPPORTED}.")


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL (``None`` for other backends and in-memory SQLite)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def open_storage(url: str, *, must_exist: bool = False) -> optuna.storages.RDBStorage:
    """Open ``url`` as Optuna storage; with ``must_exist`` never create an empty SQLite file."""
    check_storage_url(url)
    path = sqlite_path(url)
    if must_exist and path is not None and not path.exists():
        raise StorageError(f"no study storage at {str(path)!r}; run `tradeoff launch` or `tradeoff demo` first.")
    if path is not None:  # workers on this host write to one file: wait for its lock instead of failing at 5 s
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": SQLITE_TIMEOUT_S}})
    return optuna.storages.RDBStorage(url)


def load_study(name: str, url: str) -> optuna.Study:
    """Load an existing study, or say which studies the storage holds."""
    storage = open_storage(url, must_exist=True)
    names = optuna.get_all_study_names(storage)
    if name not in names:
        known = ", ".join(sorted(names)) or "none"
        raise StorageError(f"no study named {name!r} in {url}; studies there: {known}.")
    return optuna.load_study(study_name=name, storage=storage)
