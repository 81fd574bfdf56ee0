"""The private PostgreSQL cluster the workers' tests run on (tests/pg.py and conftest's fixtures).

Skipped without PostgreSQL; under ``TRADEOFF_REQUIRE_POSTGRES=1`` (.ci/run) they fail instead.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.pg import PgCluster

psycopg = pytest.importorskip("psycopg")


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_right_password_connects_and_a_wrong_one_is_refused(pg_cluster: PgCluster, pg_url: str) -> None:
    database = pg_url.rsplit("/", 1)[1]
    with pg_cluster.connect(database) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == ("tradeoff", database)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        pg_cluster.connect(database, password="not-the-password")
    # The same through SQLAlchemy's URL, as the workers will see it.
    engine = sa.create_engine(pg_cluster.url(database, password="not-the-password"))
    with pytest.raises(sa.exc.OperationalError, match="password authentication failed"):
        engine.connect()
    engine.dispose()


def test_the_url_works_with_sqlalchemy_and_the_settings_are_applied(pg_cluster: PgCluster, pg_url: str) -> None:
    assert pg_url.startswith(f"postgresql+psycopg://tradeoff:tradeoff-test@127.0.0.1:{pg_cluster.port}/")
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            show = {name: conn.execute(sa.text(f"SHOW {name}")).scalar() for name in
                    ("listen_addresses", "max_connections", "fsync", "synchronous_commit", "full_page_writes")}  # fmt: skip
    finally:
        engine.dispose()
    assert show == {
        "listen_addresses": "127.0.0.1",
        "max_connections": "200",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
    }


def test_stop_refuses_connections_and_restart_brings_back_port_and_data(pg_cluster: PgCluster, pg_url: str) -> None:
    database = pg_url.rsplit("/", 1)[1]
    port = pg_cluster.port
    with pg_cluster.connect(database) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (1), (2), (3)")
        conn.commit()

    open_conn = pg_cluster.connect(database)  # a client connected across the stop ("fast" drops it)
    pg_cluster.stop()
    assert not pg_cluster.running
    assert not _port_open(port)
    with pytest.raises(psycopg.OperationalError):
        pg_cluster.connect(database, connect_timeout=3)
    with pytest.raises(psycopg.OperationalError):
        open_conn.execute("SELECT 1")
    open_conn.close()
    pg_cluster.stop()  # already stopped: nothing to do

    pg_cluster.restart()  # from stopped
    assert pg_cluster.running and pg_cluster.port == port
    with pg_cluster.connect(database) as conn:
        assert conn.execute("SELECT sum(x) FROM kept").fetchone() == (6,)

    pg_cluster.restart()  # from running
    assert pg_cluster.running and pg_cluster.port == port
    engine = sa.create_engine(pg_url)  # the URL handed out before the stops
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM kept")).scalar() == 3
    finally:
        engine.dispose()


_SEEN: list[tuple[str, str]] = []  # (URL, database) of the runs of the next test so far


@pytest.mark.parametrize("run", ["first", "second"])
def test_each_test_gets_its_own_empty_database(pg_cluster: PgCluster, pg_url: str, run: str) -> None:
    database = pg_url.rsplit("/", 1)[1]
    with pg_cluster.connect(database) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        assert tables == (0,), "a fresh database has no tables"
        conn.execute("CREATE TABLE mine (x int)")
        conn.commit()
    with pg_cluster.connect() as conn:
        names = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
    assert database in names
    for earlier_url, earlier_db in _SEEN:  # the other run, when it ran before this one
        assert earlier_url != pg_url and earlier_db != database
        assert earlier_db not in names, "the earlier test's database was dropped at its teardown"
    _SEEN.append((pg_url, database))


def test_a_test_may_leave_the_server_stopped(pg_cluster: PgCluster, pg_url: str) -> None:
    pg_cluster.stop()
    assert not pg_cluster.running  # pg_url's teardown starts it again for the next test


def test_the_next_test_finds_it_running_again(pg_cluster: PgCluster, pg_url: str) -> None:
    assert pg_cluster.running  # pg_url's setup could not have created a database otherwise, either
    with pg_cluster.connect(pg_url.rsplit("/", 1)[1]) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_cluster_of_its_own_starts_stops_and_admits_tcp_only(pg_cluster: PgCluster, tmp_path: Path) -> None:
    # pg_cluster only for its skip/fail when PostgreSQL is missing; this test makes a second cluster.
    cluster = PgCluster(tmp_path / "own", max_connections=20)
    try:
        assert not cluster.running
        cluster.stop()  # never started: nothing to do
        cluster.start()
        assert cluster.running and cluster.port != pg_cluster.port
        cluster.start()  # running: nothing to do
        url = cluster.create_database("study")
        assert url == f"postgresql+psycopg://tradeoff:tradeoff-test@127.0.0.1:{cluster.port}/study"
        with cluster.connect("study") as conn:
            assert conn.execute("SHOW max_connections").fetchone() == ("20",)
        # The Unix socket in root admits nobody, with or without a password: pg_hba.conf has TCP only.
        if any(cluster.socket_dir.glob(".s.PGSQL.*")):
            with pytest.raises(psycopg.OperationalError, match="no pg_hba.conf entry"):
                psycopg.connect(host=str(cluster.socket_dir), port=cluster.port, user="tradeoff",
                                password="tradeoff-test", dbname="study")  # fmt: skip
        cluster.drop_database("study")
        cluster.drop_database("study")  # IF EXISTS: no error
        with cluster.connect() as conn:
            assert "study" not in {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        cluster.stop()
        assert not cluster.running and not _port_open(cluster.port)
        assert not (cluster.data / "postmaster.pid").exists()
        cluster.stop()  # stopped: nothing to do
    finally:
        cluster.stop("immediate")
