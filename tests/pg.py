"""A private, throw-away PostgreSQL cluster for the test suite.

The workers' tests need a real server they can stop, restart and lie to (a wrong password), so a
shared or system-wide PostgreSQL will not do: :class:`PgCluster` runs ``initdb`` into a folder of
its own, starts the server on a free port of 127.0.0.1 with ``pg_ctl`` and stops it again.

Running as root (CI containers do), the server cannot run as root (PostgreSQL refuses), so every
``initdb``/``pg_ctl`` call runs as the ``postgres`` system user (``runuser -u postgres --``, else
``su``), the cluster's folder is handed to that user, and the folders above it get the
search (``o+x``) bit where they lack it so that user can reach its folder (pytest's
``/tmp/pytest-of-root`` and ``mktemp -d`` folders are 0700).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import re
import shutil
import socket
import stat
import subprocess
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    import psycopg

_BINARIES = ("initdb", "pg_ctl", "postgres")
_SERVICE_USER = "postgres"  # Debian's postgresql package creates this system user
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes on Linux, one of them the terminating NUL
_WAIT_S = 60  # pg_ctl -t: how long start/stop may take before pg_ctl gives up


def _version_key(directory: str) -> tuple[int, ...]:
    """Sort key for ``/usr/lib/postgresql/<version>/bin``: ``"15"`` -> ``(15,)``, ``"9.6"`` -> ``(9, 6)``."""
    version = Path(directory).parent.name
    return tuple(int(part) for part in re.findall(r"\d+", version)) or (-1,)


def _find_bindir() -> Path | None:
    """The folder holding all of ``initdb``, ``pg_ctl`` and ``postgres``, or None.

    ``initdb`` on PATH comes first (followed through symlinks: Debian's ``/usr/local/bin/initdb``
    style links point into the versioned folder that also holds ``postgres``), then
    ``/usr/lib/postgresql/*/bin``, highest version first. The three binaries must come from one
    folder: an ``initdb`` of one major version cannot set up a cluster for another's server.
    """
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)
        candidates.append(Path(on_path).parent)  # the PATH folder itself, when it holds all three
    candidates += [Path(d) for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)]
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in _BINARIES):
            return directory
    return None


def _free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now (the kernel picks it for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _is_root() -> bool:
    return os.geteuid() == 0


class PgCluster:
    """One PostgreSQL cluster in a folder of its own, reachable over TCP on 127.0.0.1 only.

    The superuser is :attr:`USER` with password :attr:`PASSWORD`; host connections authenticate
    with scram-sha-256, so a wrong password is refused as on a real deployment. Nothing listens
    anywhere but 127.0.0.1, and the Unix socket (in ``root/socket``) admits nobody.

    Layout of ``root``: ``data/`` (the cluster), ``socket/`` (the Unix socket), ``postgresql.log``
    (the server's log; start errors quote its tail).

    Args:
        root: Folder for the cluster; created if missing. When running as root it is handed to the
            ``postgres`` user.
        max_connections: The server's ``max_connections``: many workers, each with an SQLAlchemy
            pool, connect to one study at once, so the default is well above PostgreSQL's 100.

    Example:
        >>> cluster = PgCluster(tmp_path)  # doctest: +SKIP
        >>> cluster.start()  # doctest: +SKIP
        >>> cluster.create_database("study")  # doctest: +SKIP
        'postgresql+psycopg://tradeoff:tradeoff-test@127.0.0.1:<port>/study'
        >>> cluster.stop()  # doctest: +SKIP
    """

    USER = "tradeoff"
    PASSWORD = "tradeoff-test"
    CONF_NAME = "tradeoff_test.conf"  # our settings, included from postgresql.conf (rewritten on a port change)

    def __init__(self, root: Path, *, max_connections: int = 200) -> None:
        self.root = Path(root).absolute()
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log = self.root / "postgresql.log"
        self.max_connections = max_connections
        self.port: int | None = self._configured_port()  # known already when root holds a cluster
        self._bindir = _find_bindir()
        # start/stop/restart may be called from a test's thread (a server stopped for a while
        # mid-run) and from fixtures' teardown at once: one at a time.
        self._lock = threading.RLock()
        self._atexit_registered = False

    # -- discovery ---------------------------------------------------------------------------

    @staticmethod
    def available() -> str | None:
        """None when a cluster can be started here, else a one-line reason why not."""
        if _find_bindir() is None:
            return (
                "PostgreSQL's initdb, pg_ctl and postgres are not on PATH nor in /usr/lib/postgresql/*/bin "
                "(apt-get install postgresql)"
            )
        if _is_root():
            try:
                import pwd

                pwd.getpwnam(_SERVICE_USER)
            except KeyError:
                return f"running as root and there is no {_SERVICE_USER!r} user to run the server as"
            if not (shutil.which("runuser") or shutil.which("su")):
                return f"running as root and neither runuser nor su is there to run the server as {_SERVICE_USER!r}"
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return "psycopg 3 is not installed (pip install -e '.[test]')"
        return None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        """Whether ``initdb`` has made the cluster in ``root/data``."""
        return (self.data / "PG_VERSION").is_file()

    @property
    def running(self) -> bool:
        """Whether the server is up (``pg_ctl status``, which also sees a stale postmaster.pid as down)."""
        if not self.initialized:
            return False
        return self._pg_ctl("status").returncode == 0

    def start(self) -> None:
        """Create the cluster if needed and start the server; return once it accepts connections.

        A running server is left as it is. The first start picks a free port; later starts (see
        :meth:`restart`) keep it, so URLs handed out before a stop work again after it.

        Raises:
            RuntimeError: ``initdb`` or the server failed; the message quotes the log's tail.
        """
        with self._lock:
            reason = self.available()
            if reason is not None:
                raise RuntimeError(reason)
            if not self.initialized:
                self._initdb()
            if self.running:
                return
            # Another process may take the port between _free_port() and the server's bind; on a
            # first start nobody knows the port yet, so pick another one and try again.
            first_start = not self.log.exists() or self.log.stat().st_size == 0
            for _attempt in range(3):
                offset = self.log.stat().st_size if self.log.exists() else 0
                result = self._pg_ctl("start", "-l", str(self.log), "-w", "-t", str(_WAIT_S), "-s")
                if result.returncode == 0:
                    self._register_atexit()
                    return
                log = self._log_since(offset)
                if first_start and "could not bind" in log:
                    self.port = _free_port()
                    self._write_conf()
                    continue
                break
            raise RuntimeError(
                f"PostgreSQL in {self.data} did not start (pg_ctl exit {result.returncode}): "
                f"{result.stdout.strip()} {result.stderr.strip()}\n--- {self.log} ---\n{log[-3000:]}"
            )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server and wait until it is down; a no-op when it is not running.

        Args:
            mode: ``pg_ctl``'s shutdown mode: ``"smart"`` (wait for clients to leave), ``"fast"``
                (disconnect them; a checkpoint keeps the data) or ``"immediate"`` (like a crash;
                the next start replays the WAL).

        Raises:
            RuntimeError: The server was still up after pg_ctl gave up.
        """
        with self._lock:
            if not self.running:
                return
            result = self._pg_ctl("stop", "-m", mode, "-w", "-t", str(_WAIT_S), "-s")
            if result.returncode != 0 and self.running:
                raise RuntimeError(
                    f"PostgreSQL in {self.data} did not stop (pg_ctl exit {result.returncode}): "
                    f"{result.stdout.strip()} {result.stderr.strip()}"
                )

    def restart(self) -> None:
        """Stop the server (if running) and start it again: same port, same data."""
        with self._lock:
            self.stop()
            self.start()

    # -- connecting --------------------------------------------------------------------------

    def url(self, database: str, *, password: str | None = None) -> str:
        """SQLAlchemy URL of ``database``: ``postgresql+psycopg://tradeoff:<pw>@127.0.0.1:<port>/<database>``.

        Args:
            database: Database name (need not exist).
            password: Password to put in the URL instead of the right one (to test refusals).
        """
        port = self._require_port()
        pw = self.PASSWORD if password is None else password
        return f"postgresql+psycopg://{self.USER}:{quote(pw, safe='')}@127.0.0.1:{port}/{quote(database, safe='')}"

    def connect(self, database: str = "postgres", *, password: str | None = None, **kwargs: Any) -> psycopg.Connection:
        """A psycopg connection to ``database`` over TCP (keyword arguments go to ``psycopg.connect``)."""
        import psycopg

        kwargs.setdefault("connect_timeout", 10)
        return psycopg.connect(
            host="127.0.0.1",
            port=self._require_port(),
            user=self.USER,
            password=self.PASSWORD if password is None else password,
            dbname=database,
            **kwargs,
        )

    def create_database(self, name: str) -> str:
        """Create the empty database ``name`` and return its :meth:`url`.

        Raises:
            ValueError: ``name`` is longer than PostgreSQL's 63 bytes (it would be truncated silently
                and the URL would name a database that does not exist).
            psycopg.errors.DuplicateDatabase: It exists already.
        """
        from psycopg import sql

        if len(name.encode()) > 63:
            raise ValueError(f"database name {name!r} is longer than PostgreSQL's 63 bytes")
        # CREATE/DROP DATABASE cannot run inside a transaction block: autocommit.
        with self.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, disconnecting its clients (``WITH (FORCE)``, PostgreSQL 13+)."""
        from psycopg import sql

        with self.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    # -- internals ---------------------------------------------------------------------------

    def _require_port(self) -> int:
        if self.port is None:
            raise RuntimeError(f"the cluster in {self.root} was never started: no port yet")
        return self.port

    def _as_service_user(self, args: list[str]) -> list[str]:
        """``args`` to run as the ``postgres`` user when we are root (the server refuses root)."""
        if not _is_root():
            return args
        if shutil.which("runuser"):
            return ["runuser", "-u", _SERVICE_USER, "--", *args]
        import shlex

        return ["su", "-s", "/bin/sh", _SERVICE_USER, "-c", shlex.join(args)]

    def _run(self, args: list[str], *, timeout: float = _WAIT_S + 30) -> subprocess.CompletedProcess[str]:
        # PG* variables of the caller's shell (PGDATA, PGPORT, PGOPTIONS, ...) must not steer our cluster.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        # cwd=root: initdb and pg_ctl resolve their own path from the working directory and fail
        # ("could not identify current directory") when the postgres user cannot read it.
        return subprocess.run(
            self._as_service_user(args),
            check=False,  # callers read the exit status: pg_ctl status exits 3 when the server is down
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def _pg_ctl(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        assert self._bindir is not None
        return self._run([str(self._bindir / "pg_ctl"), command, "-D", str(self.data), *args])

    def _chown(self, path: Path) -> None:
        if _is_root():
            shutil.chown(path, user=_SERVICE_USER, group=_SERVICE_USER)

    def _prepare_root(self) -> None:
        """Create ``root`` (and the socket folder) and, as root, hand them to the postgres user."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if not _is_root():
            return
        self._chown(self.root)
        self._chown(self.socket_dir)
        # The postgres user must be able to walk down to root: add the search bit (not read, not
        # write) to folders above it that lack it, e.g. pytest's 0700 /tmp/pytest-of-root.
        for parent in self.root.parents:
            mode = os.stat(parent).st_mode
            if not mode & stat.S_IXOTH:
                os.chmod(parent, stat.S_IMODE(mode) | stat.S_IXOTH)

    def _initdb(self) -> None:
        assert self._bindir is not None
        self._prepare_root()
        if self.port is None:
            self.port = _free_port()
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.PASSWORD + "\n")
        os.chmod(pwfile, 0o600)
        self._chown(pwfile)
        try:
            result = self._run(
                [
                    str(self._bindir / "initdb"),
                    "-D", str(self.data),
                    "-U", self.USER,
                    f"--pwfile={pwfile}",
                    # scram-sha-256 everywhere; pg_hba.conf below then drops the local lines.
                    "--auth=scram-sha-256",
                    # C locale, UTF-8: the same cluster whatever the host's LANG is (or lacks).
                    "-E", "UTF8", "--locale=C",
                    # No fsync of the new files: the cluster is thrown away after the tests.
                    "--no-sync",
                ]
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise RuntimeError(
                f"initdb into {self.data} failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
            )
        # Host (TCP) connections from 127.0.0.1 only, with a password; no line for the Unix socket
        # (local), so nothing gets in without the password, not even the postgres OS user.
        hba = self.data / "pg_hba.conf"
        hba.write_text(
            "# Written by tests/pg.py: TCP from 127.0.0.1 with scram-sha-256 passwords, nothing else.\n"
            "# TYPE  DATABASE  USER  ADDRESS       METHOD\n"
            "host    all       all   127.0.0.1/32  scram-sha-256\n"
        )
        os.chmod(hba, 0o600)
        self._chown(hba)
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(f"\n# tests/pg.py's settings (port, speed):\ninclude '{self.CONF_NAME}'\n")
        self._write_conf()

    def _write_conf(self) -> None:
        """Write our settings to ``data/tradeoff_test.conf`` (included last from postgresql.conf)."""
        assert self.port is not None
        socket_file = self.socket_dir / f".s.PGSQL.{self.port}.lock"  # the longest name the server makes there
        # The socket admits nobody (pg_hba.conf) but the server still makes one unless told not to;
        # keep it inside root, or make none when root's path is too long for a socket address.
        socket_dirs = str(self.socket_dir) if len(str(socket_file).encode()) <= _SUN_PATH_MAX else ""
        settings = {
            # TCP on loopback only: tests connect over TCP (like workers on other hosts would), and
            # nothing outside this machine can reach a server with a published password.
            "listen_addresses": "127.0.0.1",
            "port": self.port,
            # Not the system's /var/run/postgresql: no clash with (or write access to) a system server.
            "unix_socket_directories": socket_dirs,
            # Throw-away test data: no crash safety needed, and skipping the flushes makes each commit
            # (Optuna writes one per trial report) much faster. A fast/smart stop still checkpoints,
            # so data survives stop/restart; only a crash of the machine could lose it.
            "fsync": False,
            "synchronous_commit": False,
            "full_page_writes": False,
            # Many workers with connection pools at once.
            "max_connections": self.max_connections,
        }
        lines = ["# Written by tests/pg.py; see there why each setting is what it is."]
        for key, value in settings.items():
            if isinstance(value, bool):
                rendered = "on" if value else "off"
            elif isinstance(value, int):
                rendered = str(value)
            else:
                rendered = "'" + str(value).replace("'", "''") + "'"
            lines.append(f"{key} = {rendered}")
        conf = self.data / self.CONF_NAME
        conf.write_text("\n".join(lines) + "\n")
        os.chmod(conf, 0o600)
        self._chown(conf)

    def _configured_port(self) -> int | None:
        """The port in an existing cluster's ``tradeoff_test.conf`` (None without one)."""
        try:
            text = (self.data / self.CONF_NAME).read_text()
        except OSError:
            return None
        match = re.search(r"^port = (\d+)$", text, re.MULTILINE)
        return int(match.group(1)) if match else None

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _register_atexit(self) -> None:
        """Stop the server when this Python process exits, should the owner of the cluster forget to."""
        if not self._atexit_registered:
            self._atexit_registered = True
            atexit.register(self._stop_quietly)

    def _stop_quietly(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit there is nobody left to tell
            self.stop("immediate")

    def __repr__(self) -> str:
        return f"PgCluster({str(self.root)!r}, port={self.port})"
