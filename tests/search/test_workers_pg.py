"""One study from several processes and hosts on a real PostgreSQL, and the faults it survives (issue 24).

Every test runs the installed ``tradeoff`` command against a private PostgreSQL cluster the fixtures
start (tests/pg.py); nothing is mocked. "Another host" is another process: what a host adds (its
name in ``host:pid``) is checked where it matters, in the refusals.
"""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from tests.e2e.test_cli import EXE, env_for, run
from tests.pg import PgCluster
from tests.studies.fake_study import fake_study
from tests.studies.user_task import make_task
from tradeoff.studies import record
from tradeoff.studies.spec import load_spec

SPEC = """\
[study]
name = "{name}"
n_trials = {n}
sampler = "random"
heartbeat_s = {heartbeat}
grace_s = {grace}
reconnect_s = {reconnect}
{extra_study}
[task]
name = "{task}"
[space.quantization]
weight_bits = [32]
activation_bits = [32]
[space.distillation]
steps = {steps}
[search]
warm_start = []
rungs = []
reuse_duplicates = false
"""


def _spec(
    tmp: Path,
    name: str,
    n: int,
    *,
    steps: int = 8,
    heartbeat: int = 10,
    grace: int = 60,
    reconnect: int = 120,
    task: str = "tests.studies.user_task:make_task",
    extra_study: str = "",
) -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(
        SPEC.format(
            name=name, n=n, steps=steps, heartbeat=heartbeat, grace=grace, reconnect=reconnect, task=task,
            extra_study=extra_study,
        )
    )  # fmt: skip
    return path


def _popen(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [EXE, *args], cwd=cwd, env=env_for(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _wait_for(what: Callable[[], object], timeout: float, why: str) -> object:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if found := what():
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {why}")


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials()


def _exists(url: str, name: str) -> bool:
    try:
        return name in optuna.get_all_study_names(url)
    except Exception:  # noqa: BLE001 - tables not created yet
        return False


def _running_by(
    url: str, name: str, pid: int, *, knobs: frozenset[str] = frozenset()
) -> optuna.trial.FrozenTrial | None:
    """The candidate trial ``pid`` is running, once it holds every one of ``knobs`` (it is RUNNING, and
    marked with its worker, before its knobs are suggested one by one)."""
    worker = f"{socket.gethostname()}:{pid}"
    if not _exists(url, name):
        return None
    for t in _trials(url, name):
        mine = t.state == TrialState.RUNNING and t.user_attrs.get(record.WORKER) == worker and t.number > 0
        if mine and knobs <= t.params.keys():
            return t
    return None


def _knobs(spec: Path) -> frozenset[str]:
    """Every knob a trial of ``spec`` (on tests.studies.user_task's model) is asked for."""
    return frozenset(load_spec(spec).recipe_space(make_task().model).distributions())


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def _settled(trials: list[optuna.trial.FrozenTrial]) -> None:
    """No trial left RUNNING or WAITING, and trial numbers are 0..n-1 with none twice."""
    assert [t.state for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)] == []
    assert sorted(t.number for t in trials) == list(range(len(trials)))


def _has_tables(url: str) -> bool:
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            return sqlalchemy.inspect(conn).has_table("studies")
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------------------ scale out


def test_three_workers_run_exactly_the_study_budget(pg_url: str, tmp_path: Path) -> None:
    """1. launch + two `tradeoff worker`s, 30 trials: exactly 30 finished, numbers unique, three processes."""
    _spec(tmp_path, "three", 30)
    launch = _popen("launch", "three.toml", "--storage", pg_url, "--workers", "1", cwd=tmp_path)
    _wait_for(lambda: _exists(pg_url, "three"), 120, "the study to be created")
    workers = [_popen("worker", "three", "--storage", pg_url, "--workers", "1", cwd=tmp_path) for _ in range(2)]
    for proc in (launch, *workers):
        rc, err = _finish(proc)
        assert rc == 0, err
    trials = _trials(pg_url, "three")
    _settled(trials)
    assert len(trials) == 30
    assert all(t.state == TrialState.COMPLETE for t in trials)
    ran = {t.user_attrs[record.WORKER] for t in trials}
    assert ran == {f"{socket.gethostname()}:{p.pid}" for p in (launch, *workers)}  # all three took trials
    study = optuna.load_study(study_name="three", storage=pg_url)
    assert study.user_attrs[record.STUDY_BUDGET] == 30
    host = study.user_attrs[f"{record.STUDY_HOST_PREFIX}{socket.gethostname()}"]
    assert host["fingerprint"] == study.user_attrs[record.STUDY_TARGET]
    shown = run("show", "three", "--storage", pg_url, cwd=tmp_path)
    assert f"hosts: {socket.gethostname()} (30 trials)" in shown.stdout


def test_launch_with_forked_workers_on_postgresql_works_as_on_sqlite(pg_url: str, tmp_path: Path) -> None:
    """`launch --workers 2` on PostgreSQL: two processes of this host share the study and its budget."""
    _spec(tmp_path, "forked", 8)
    result = run("launch", "forked.toml", "--storage", pg_url, "--workers", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr  # e.g. Optuna's "heartbeat is for Study.optimize": the runner runs it
    trials = _trials(pg_url, "forked")
    _settled(trials)
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs[record.WORKER] for t in trials}) == 2


def test_a_worker_killed_mid_trial_has_its_config_retried_by_another(pg_url: str, tmp_path: Path) -> None:
    """2. kill -9 in the middle of a trial: heartbeats fail it after the grace period, another worker runs the
    same config, the retry points back at it, and the study ends with its budget of complete trials."""
    knobs = _knobs(_spec(tmp_path, "killed", 6, steps=3000, heartbeat=1, grace=3))
    launch = _popen("launch", "killed.toml", "--storage", pg_url, "--workers", "1", cwd=tmp_path)
    _wait_for(lambda: _exists(pg_url, "killed"), 120, "the study to be created")
    victim = _popen("worker", "killed", "--storage", pg_url, "--workers", "1", cwd=tmp_path)
    # killed once its trial holds every knob: a kill while they are being suggested leaves a partial config,
    # whose missing knobs a retry samples afresh (that race is the test's, not the retry's)
    running = _wait_for(
        lambda: _running_by(pg_url, "killed", victim.pid, knobs=knobs), 120, "the worker to run a whole config"
    )
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)
    rc, err = _finish(launch)
    assert rc == 0, err
    trials = _trials(pg_url, "killed")
    _settled(trials)
    lost = trials[running.number]
    assert lost.state == TrialState.FAIL and record.failure_reason(lost) == "lost"
    retries = [t for t in trials if record.retry_of(t) == running.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == lost.params  # the same config, run again
    assert retries[0].user_attrs[record.WORKER] == f"{socket.gethostname()}:{launch.pid}"
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 6


def test_workers_ride_out_a_20_s_database_outage(pg_cluster: PgCluster, pg_url: str, tmp_path: Path) -> None:
    """3. PostgreSQL stopped for 20 s mid-run, then started: the worker retries with backoff and carries on."""
    _spec(tmp_path, "outage", 8, steps=600)
    launch = _popen("launch", "outage.toml", "--storage", pg_url, "--workers", "1", cwd=tmp_path)
    _wait_for(lambda: _running_by(pg_url, "outage", launch.pid), 120, "a candidate trial to run")
    pg_cluster.stop()
    time.sleep(20)
    pg_cluster.start()
    rc, err = _finish(launch)
    assert rc == 0, err
    assert "storage unreachable" in err and "reachable again" in err
    trials = _trials(pg_url, "outage")
    _settled(trials)
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials)


def test_past_the_reconnect_limit_a_worker_stops_cleanly_and_the_study_recovers(
    pg_cluster: PgCluster, pg_url: str, tmp_path: Path
) -> None:
    """3b. An outage longer than [study] reconnect_s: one message, exit 1; the same command later finishes the
    study, and the abandoned trial is failed by heartbeat and its config retried, none left RUNNING."""
    _spec(tmp_path, "limit", 5, steps=600, heartbeat=1, grace=3, reconnect=4)
    launch = _popen("launch", "limit.toml", "--storage", pg_url, "--workers", "1", cwd=tmp_path)
    running = _wait_for(lambda: _running_by(pg_url, "limit", launch.pid), 120, "a candidate trial to run")
    pg_cluster.stop()
    try:
        rc, err = _finish(launch, timeout=120)
    finally:
        pg_cluster.start()
    assert rc == 1, err
    assert "reconnect limit of 4 s" in err and "Traceback" not in err
    again = run("launch", "limit.toml", "--storage", pg_url, "--workers", "1", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    trials = _trials(pg_url, "limit")
    _settled(trials)
    assert record.failure_reason(trials[running.number]) == "lost"
    assert [record.retry_of(t) for t in trials].count(running.number) == 1
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 5


@pytest.mark.parametrize("command", ["launch", "worker"])
def test_ctrl_c_then_the_same_command_resumes_without_duplicates(command: str, pg_url: str, tmp_path: Path) -> None:
    """4. Ctrl-C of launch or of a worker, then the same command again."""
    _spec(tmp_path, "ctrlc", 6, steps=300)
    if command == "launch":
        args = ("launch", "ctrlc.toml", "--storage", pg_url, "--workers", "1")
    else:
        first = run("launch", "ctrlc.toml", "--storage", pg_url, "--trials", "1", cwd=tmp_path)  # the baseline only
        assert first.returncode == 0, first.stderr
        args = ("worker", "ctrlc", "--storage", pg_url, "--workers", "1", "--trials", "6")
    proc = _popen(*args, cwd=tmp_path)
    _wait_for(lambda: _running_by(pg_url, "ctrlc", proc.pid), 120, "a candidate trial to run")
    proc.send_signal(signal.SIGINT)
    rc, err = _finish(proc)
    assert rc == 130, err
    trials = _trials(pg_url, "ctrlc")
    assert [t for t in trials if t.state == TrialState.RUNNING] == []
    assert [record.failure_reason(t) for t in trials if t.state == TrialState.FAIL] == ["interrupted"]
    again = run(*(a for a in args if a not in ("--trials", "6")), cwd=tmp_path)  # the budget is the study's now
    assert again.returncode == 0, again.stderr
    trials = _trials(pg_url, "ctrlc")
    _settled(trials)
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 6


# ------------------------------------------------------------------------------------------ refusals


def test_a_worker_on_another_kind_of_machine_or_with_another_teacher_is_refused(pg_url: str, tmp_path: Path) -> None:
    _spec(tmp_path, "who", 1)
    assert run("launch", "who.toml", "--storage", pg_url, cwd=tmp_path).returncode == 0
    study = optuna.load_study(study_name="who", storage=pg_url)
    target = study.user_attrs[record.STUDY_TARGET]
    study.set_user_attr(record.STUDY_TARGET, {**target, "cpu": "Some Other CPU 9000"})
    refused = run("worker", "who", "--storage", pg_url, "--trials", "3", cwd=tmp_path)
    assert refused.returncode == 2
    assert "measures on another target than this host: cpu: the study's 'Some Other CPU 9000'" in refused.stderr
    study.set_user_attr(record.STUDY_TARGET, target)
    task = study.user_attrs[record.STUDY_TASK]
    study.set_user_attr(record.STUDY_TASK, {**task, "teacher_sha256": "0" * 64})
    refused = run("worker", "who", "--storage", pg_url, "--trials", "3", cwd=tmp_path)
    assert refused.returncode == 2
    assert "was created with a different teacher than this host's task builds" in refused.stderr
    study.set_user_attr(record.STUDY_TASK, {**task, "data_sha256": "1" * 64})
    refused = run("worker", "who", "--storage", pg_url, "--trials", "3", cwd=tmp_path)
    assert refused.returncode == 2
    assert "was created with different training or validation data than this host's task builds" in refused.stderr
    assert len(_trials(pg_url, "who")) == 1  # none added a trial


def test_a_joining_host_loads_the_teacher_from_the_artifact_store_instead_of_training_it(
    pg_url: str, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    _spec(tmp_path, "art", 1, task="digits", extra_study=f'artifacts = "{shared}"')
    first = run(
        "launch", "art.toml", "--storage", pg_url, cwd=tmp_path, env={"TRADEOFF_CACHE_DIR": str(tmp_path / "a")}
    )
    assert first.returncode == 0, first.stderr
    entry = optuna.load_study(study_name="art", storage=pg_url).user_attrs[record.STUDY_TEACHER]
    assert (tmp_path / "a" / entry["file"]).read_bytes() == next(
        p for p in shared.rglob("*") if p.is_file()
    ).read_bytes()
    joined = run("worker", "art", "--storage", pg_url, "--trials", "2", cwd=tmp_path,
                 env={"TRADEOFF_CACHE_DIR": str(tmp_path / "b")})  # fmt: skip
    assert joined.returncode == 0, joined.stderr
    assert "teacher downloaded from the study's artifact store" in joined.stderr
    assert (tmp_path / "b" / entry["file"]).read_bytes() == (tmp_path / "a" / entry["file"]).read_bytes()
    shared.rename(tmp_path / "elsewhere")  # the store is not mounted on the next host
    lost = run("worker", "art", "--storage", pg_url, "--trials", "3", cwd=tmp_path,
               env={"TRADEOFF_CACHE_DIR": str(tmp_path / "c")})  # fmt: skip
    assert lost.returncode == 2
    assert f"study.artifacts {str(shared)!r} is not a directory this host can read" in lost.stderr
    assert len(_trials(pg_url, "art")) == 2


# ------------------------------------------------------------------------------------------ bad storage


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_bad_server_storage_gives_one_line_and_writes_nothing(
    pg_cluster: PgCluster, pg_url: str, tmp_path: Path
) -> None:
    """5. An unreachable URL, a wrong password, an unknown study name: one line, exit 2, nothing created."""
    _spec(tmp_path, "bad", 2)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    unreachable = f"postgresql+psycopg://tradeoff:x@127.0.0.1:{port}/nothing"
    for args in (("worker", "bad", "--storage", unreachable), ("launch", "bad.toml", "--storage", unreachable)):
        result = run(*args, cwd=tmp_path)
        assert result.returncode == 2
        assert f"cannot reach PostgreSQL at 127.0.0.1:{port}" in _one_error_line(result.stderr)
    database = pg_url.rpartition("/")[2]
    wrong = pg_cluster.url(database, password="wrong")
    result = run("launch", "bad.toml", "--storage", wrong, cwd=tmp_path)
    assert result.returncode == 2
    line = _one_error_line(result.stderr)
    assert "user 'tradeoff' was refused: check the password" in line and "wrong" not in line  # never the password
    result = run("worker", "nope", "--storage", pg_url, cwd=tmp_path)
    assert result.returncode == 2 and "holds no tradeoff studies" in _one_error_line(result.stderr)
    assert not _has_tables(pg_url)  # nothing written: not even Optuna's tables
    assert run("launch", "bad.toml", "--storage", pg_url, "--trials", "1", cwd=tmp_path).returncode == 0
    result = run("worker", "nope", "--storage", pg_url, cwd=tmp_path)
    assert result.returncode == 2 and "no study named 'nope'" in _one_error_line(result.stderr)
    assert optuna.get_all_study_names(pg_url) == ["bad"]


def test_bad_sqlite_storage_gives_one_line_and_writes_nothing(tmp_path: Path) -> None:
    """5. A corrupt SQLite file, one locked by another program, and SQLite for `tradeoff worker`."""
    _spec(tmp_path, "bad", 2)
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database, it is a grocery list\n" * 100)
    before = corrupt.read_bytes()
    for args in (("show", "bad"), ("launch", "bad.toml")):
        result = run(*args, "--storage", f"sqlite:///{corrupt}", cwd=tmp_path)
        assert result.returncode == 2
        assert "is not a usable SQLite database" in _one_error_line(result.stderr)
    assert corrupt.read_bytes() == before

    locked = tmp_path / "locked.db"
    fake_study(
        [{"accuracy": 0.9, "size_bytes": 100.0, "latency_ms": 1.0, "energy_mj": 1.0}],
        storage=f"sqlite:///{locked}",
        name="bad",
    )
    before = locked.read_bytes()
    holder = sqlite3.connect(locked, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another program holds the write lock and does not let go
    try:
        result = run("launch", "bad.toml", "--storage", f"sqlite:///{locked}", cwd=tmp_path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 2
    assert "is locked by another program" in _one_error_line(result.stderr)
    assert locked.read_bytes() == before

    result = run("worker", "bad", "--storage", f"sqlite:///{locked}", cwd=tmp_path)
    assert result.returncode == 2
    line = _one_error_line(result.stderr)
    assert "cannot serve safely; use PostgreSQL instead" in line and "--workers N" in line


def test_a_full_server_is_named_with_max_connections_and_nothing_is_written(tmp_path: Path) -> None:
    """A server with no free connection: one line naming max_connections, exit 2 (not Optuna's commit error)."""
    cluster = PgCluster(tmp_path / "small", max_connections=5)
    cluster.start()
    try:
        url = cluster.create_database("full")
        held = [cluster.connect("full") for _ in range(5)]  # every slot taken
        try:
            _spec(tmp_path, "full", 2)
            result = run("launch", "full.toml", "--storage", url, cwd=tmp_path)
        finally:
            for conn in held:
                conn.close()
        assert result.returncode == 2
        line = _one_error_line(result.stderr)
        assert "has no free connection" in line and "max_connections" in line
        assert not _has_tables(url)
    finally:
        cluster.stop()
