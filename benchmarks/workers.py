"""Workers on PostgreSQL: storage cost per trial, real trials per hour, and many workers on one server (issue 24).

Usage:  python benchmarks/workers.py [--quick] [--out /tmp/tradeoff-workers.json]
        [--storage-trials 200] [--real-trials 16] [--real-workers 1,2,4] [--sim-workers 8,32,64]
        [--sim-trial-s 2] [--sim-trials-per-worker 4] [--sim-light auto|always|never]
        [--sim-grpc auto|always|never] [--parts storage,real,sim]

Takes ~13 min on a 2-core machine (``--quick``: ~2 min). Needs Debian's PostgreSQL (initdb, pg_ctl,
postgres) and psycopg 3 (``pip install -e ".[test]"``). A private cluster is started in a temporary
folder (``tests/pg.py``'s ``PgCluster``) with what a default PostgreSQL has: ``max_connections = 100``
and durable commits (fsync, synchronous_commit and full_page_writes on; the test suite turns them off);
it is stopped when the script ends, whatever happens.

Three measurements:

1. **Storage work of one trial, SQLite against PostgreSQL** (one process, no model): the runner's
   storage protocol (``Runner._loop`` / ``_run_one``) for ``--storage-trials`` trials of a growing
   study: under ``StudyLock`` fail stale trials, read the budget from the study, count the trials,
   ``study.ask()``; then the worker attribute, 6 suggestions, the two reads of the trials a trial makes
   (duplicate check, latency reuse), 13 user attributes and a constraint of the real record's sizes
   (``rec.write``), the hypervolume read and attribute, and ``study.tell`` with 4 values, inside
   Optuna's heartbeat thread as the runner runs it. RandomSampler, so the sampler's cost does not hide
   the storage's; then 20 trials (``TPE_ASKS``) with the workers' TPE (multivariate, constant liar) on
   the grown study. Optuna 5 samples a trial's joint (relative) parameters lazily, at its first
   ``suggest``, not in ``study.ask()``: TPE's cost shows as suggest time less the random sampler's, and
   runs outside the study lock (the baseline trial carries every knob's identity value, as the runner's
   does, so TPE models all six jointly). Storage is opened with
   ``tradeoff.studies.storage.open_storage`` (heartbeats on, as the runner opens it) on PostgreSQL with
   durable commits, on PostgreSQL with the test suite's settings (no fsync), and on an SQLite file.
   Reported: median and p90 ms per trial, and the median of the first and last ``--window`` trials.
2. **Real trials per hour on PostgreSQL with 1, 2 and 4 workers**: ``tradeoff launch studies/demo.toml
   --storage <fresh database> --trials N --workers W``, the real CLI on the built-in ``digits`` task.
   Trials per hour = finished candidate trials (complete or stopped at a rung) / the time from the first
   candidate trial's start to the last one's completion (Optuna's ``datetime_start``/``datetime_complete``).
3. **Many workers on one server** (a simulation of many hosts): W processes, each running the runner's
   storage protocol above against one database with fake trials (sleep ``--sim-trial-s``), a shared
   budget of ``--sim-trials-per-worker`` x W candidate trials, tradeoff's ``open_storage`` (heartbeats
   every 10 s, grace 60 s, reconnect 120 s: the spec's defaults) and ``StudyLock``, and the workers'
   sampler (``TPESampler(multivariate=True, constant_liar=True)``, seeded per worker). Per W: wall time
   from the start signal to the last trial's completion against the ideal (budget x trial / W),
   trials/s, the server's client connections at peak (``pg_stat_activity`` polled from this process),
   the wait for and the hold of the study lock, ``study.ask()`` and the suggestions (where TPE samples)
   (p50/p90), retries after lost or refused connections (tradeoff's reconnect lines on the workers'
   stderr) and "too many clients" refusals in the server's log, and whether exactly the budget finished
   with nothing left RUNNING. When the shipped configuration runs out of connections (``auto``) it is run
   again with a connection-light one (``--sim-light``): the same storage with SQLAlchemy's ``NullPool``
   (``open_storage`` has no engine option, so this is its server branch with that one change), and through
   Optuna's gRPC storage proxy (``--sim-grpc``, when grpcio is installed: ``pip install grpcio``; one
   proxy process in front of the database, workers on ``GrpcStorageProxy``, which cannot carry heartbeats,
   and the study lock still taken on PostgreSQL directly).

The simulation's processes never import torch: ``import tradeoff.studies.storage`` would run
``tradeoff/studies/__init__.py``, which imports torch (~300 MB and ~0.5 s a process), so the storage,
reconnect and workers modules are loaded from their files with the two packages registered bare, and
the two names they take from torch-importing siblings (``record.RETRY_OF``, ``spec.SpecError``) stand in
with the same values (read from the source). The code that runs is tradeoff's own. Processes come from a
``forkserver`` that preloaded Optuna, SQLAlchemy and psycopg: cheap to start, and nothing of this
process's connections is inherited.

Everything runs on this machine: the server, the clients and (part 2) the trials share its cores, so
part 3 is a pessimistic picture of many hosts (their suggestions and writes would run on their own CPUs;
the lock's critical section, which bounds throughput, is measured all the same).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime
import importlib
import json
import multiprocessing
import os
import platform
import queue
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/pg.py: the private PostgreSQL cluster

# The spec's fault-tolerance defaults ([study] heartbeat_s, grace_s, reconnect_s): what a worker runs with.
HEARTBEAT_S = 10
GRACE_S = 60
RECONNECT_S = 120
DEFAULT_MAX_CONNECTIONS = 100  # PostgreSQL's own default: what an untouched server allows
STUDY = "workers-bench"  # the study's name in every database (one database per measurement)
DIRECTIONS = ["maximize", "minimize", "minimize", "minimize"]  # accuracy, size, latency, energy: tradeoff's four
POLL_S = 0.05  # how often pg_stat_activity is sampled during a simulation run (a peak lasts longer than this)
READY_TIMEOUT_S = 300  # simulated workers must have loaded the study by then (64 start in ~20 s here)
RUN_TIMEOUT_S = 900  # a simulation run taking longer than this is stopped and reported (a hang, not a result)
REAL_TIMEOUT_S = 1200  # one `tradeoff launch` (16 trials at one worker take ~75 s here): 15x headroom
TPE_ASKS = 20  # TPE trials timed on the grown study (its cost varies 2x from ask to ask; 20 give a steady median)

# The runner's knobs for the demo space (what study.ask()/suggest sees): the demo's five plus one more, so
# "about 6 params" as a per_group or lr knob adds.
SPACE: dict[str, tuple[str, Any]] = {
    "pruning.ratio": ("float", (0.0, 0.8)),
    "quantization.weight_bits": ("cat", (4, 8, 32)),
    "quantization.activation_bits": ("cat", (8, 32)),
    "distillation.temperature": ("float", (1.0, 8.0)),
    "distillation.alpha": ("float", (0.0, 1.0)),
    "pruning.importance": ("cat", ("l2", "l1")),
}
# The identity recipe (no pruning, fp32, no distillation) as the baseline's params (``space.identity_params()``).
IDENTITY = {
    "pruning.ratio": 0.0,
    "quantization.weight_bits": 32,
    "quantization.activation_bits": 32,
    "distillation.temperature": 1.0,
    "distillation.alpha": 0.0,
    "pruning.importance": "l2",
}
# JSON bytes of each user attribute of a real digits-demo trial (read from one): what rec.write stores.
TRIAL_ATTR_BYTES = {
    "deployable": 87,
    "deployable_form": 6,
    "figures": 590,
    "finetune": 635,
    "provenance": 2066,
    "recipe": 422,
    "role": 11,
    "rung_point": 254,
    "rungs": 145,
    "screened": 5,
    "seconds": 91,
    "seed": 1,
    "stopped": 5,
}  # + "worker" before the trial and "hypervolume" after it: 15 attributes, ~4.3 kB
STUDY_ATTR_BYTES = {"format": 18, "lr": 764, "sampler": 129, "spec": 1216, "task": 382}  # a real study's, + budget


# -- tradeoff's storage code without torch --------------------------------------------------------


def _source_constant(path: Path, name: str) -> Any:
    """The literal value assigned to ``name`` at the top level of the Python file ``path``."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise LookupError(f"{name} is not assigned in {path}")


def tradeoff_storage() -> tuple[types.ModuleType, types.ModuleType]:
    """``tradeoff.studies.storage`` and ``tradeoff.search.workers``, loaded from their files without torch.

    The packages ``tradeoff.studies`` and ``tradeoff.search`` are registered bare (their ``__init__``
    imports every room, torch included); ``record`` and ``spec``, which import torch, stand in with the
    only names the two modules take from them, ``RETRY_OF`` (its value read from record.py) and
    ``SpecError``. Everything else, ``reconnect`` included, is tradeoff's code as it is.
    """
    if "tradeoff.search.workers" in sys.modules:
        return sys.modules["tradeoff.studies.storage"], sys.modules["tradeoff.search.workers"]
    for package, folder in (("tradeoff.studies", ROOT / "studies"), ("tradeoff.search", ROOT / "search")):
        if package not in sys.modules:
            module = types.ModuleType(package)
            module.__path__ = [str(folder)]
            sys.modules[package] = module
    record = types.ModuleType("tradeoff.studies.record")
    record.RETRY_OF = _source_constant(ROOT / "studies" / "record.py", "RETRY_OF")  # type: ignore[attr-defined]
    spec = types.ModuleType("tradeoff.studies.spec")
    spec.SpecError = type("SpecError", (ValueError,), {})  # type: ignore[attr-defined]
    sys.modules.setdefault("tradeoff.studies.record", record)
    sys.modules.setdefault("tradeoff.studies.spec", spec)
    storage = importlib.import_module("tradeoff.studies.storage")
    workers = importlib.import_module("tradeoff.search.workers")
    if "torch" in sys.modules:
        raise RuntimeError("loading tradeoff's storage modules imported torch")
    return storage, workers


def open_light_storage(url: str) -> Any:
    """``open_storage``'s server branch with heartbeats, but SQLAlchemy's ``NullPool`` (a connection per call).

    ``open_storage`` takes no engine options; this is its code with ``poolclass=NullPool`` added, so a
    worker holds a connection only while a call runs (plus the study lock's while it waits or holds it).
    """
    import optuna
    import sqlalchemy

    storage, _ = tradeoff_storage()
    reconnect = sys.modules["tradeoff.studies.reconnect"]
    storage.check_server(url, must_exist=False)
    engine = {
        "poolclass": sqlalchemy.pool.NullPool,
        "connect_args": {"connect_timeout": storage.CONNECT_TIMEOUT_S},
    }
    rdb = optuna.storages.RDBStorage(
        url,
        engine_kwargs=engine,
        heartbeat_interval=HEARTBEAT_S,
        grace_period=GRACE_S,
        heartbeat_stale_trial_callback=storage.RetryStale(max_retry=storage.MAX_RETRY),
    )
    return reconnect.Reconnecting(optuna.storages.get_storage(rdb), limit_s=RECONNECT_S)


# How a simulated worker reaches the study: the shipped storage, the connection-light one, or Optuna's gRPC proxy.
MODES = {
    "pool": "open_storage as shipped",
    "null": "NullPool (connection-light)",
    "grpc": "gRPC proxy (no heartbeats)",
}


def open_bench_storage(url: str, *, mode: str = "pool", grpc_port: int | None = None) -> Any:
    """The storage a worker opens (``Runner._storage``), the connection-light variant, or a gRPC proxy client."""
    if mode == "null":
        return open_light_storage(url)
    if mode == "grpc":
        import optuna

        client = optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=grpc_port or 0)
        client.wait_server_ready(timeout=60)
        return client
    storage, _ = tradeoff_storage()
    return storage.open_storage(url, heartbeat_s=HEARTBEAT_S, grace_s=GRACE_S, reconnect_s=RECONNECT_S)


def grpc_available() -> str | None:
    """None when Optuna's gRPC proxy can run here, else why not."""
    try:
        import grpc  # noqa: F401
        from optuna.storages._grpc.auto_generated import api_pb2  # noqa: F401
    except ImportError as exc:
        return f"grpcio is not installed ({exc}); pip install grpcio"
    return None


def grpc_proxy(url: str, port: int, messages: Any) -> None:
    """Optuna's gRPC storage proxy in front of ``url`` (its own process; the workers' one way in).

    The proxy's storage is tradeoff's ``open_storage`` without heartbeats: ``GrpcStorageProxy`` is no
    ``BaseHeartbeat``, so a client can neither send heartbeats nor fail stale trials through it.
    """
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        quiet_warnings()
        storage, _ = tradeoff_storage()
        backend = storage.open_storage(url, reconnect_s=RECONNECT_S)
        from optuna.storages._grpc.server import make_server

        server = make_server(backend, "127.0.0.1", port)
        server.start()
        messages.put(("proxy", port, ""))
        server.wait_for_termination()
    except BaseException as exc:
        messages.put(("proxy-failed", port, f"{type(exc).__name__}: {exc}"))
        raise


def dispose(storage: Any) -> None:
    """Close the pooled connections of a storage (any wrapping: Reconnecting, Optuna's cache)."""
    seen = 0
    while storage is not None and seen < 5:
        engine = vars(storage).get("engine")
        if engine is not None:
            engine.dispose()
            return
        storage = vars(storage).get("_backend")
        seen += 1


# -- the runner's storage protocol -----------------------------------------------------------------


def _payload(n_bytes: int, rng: random.Random) -> Any:
    """A JSON value of about ``n_bytes`` (a dict of floats, as the records' figure dicts are)."""
    if n_bytes <= 12:
        return rng.choice([True, False]) if n_bytes == 5 else rng.randint(0, 9)
    entries = max(1, n_bytes // 26)  # '"k_000": 0.123456789012, ' is ~26 bytes
    return {f"k_{i:03d}": round(rng.random(), 12) for i in range(entries)}


def trial_attrs(rng: random.Random) -> dict[str, Any]:
    """The 13 user attributes ``TrialRecord.write`` stores, at a real trial's sizes."""
    attrs = {k: _payload(n, rng) for k, n in TRIAL_ATTR_BYTES.items()}
    attrs["role"], attrs["deployable_form"] = "candidate", "int8"
    return attrs


def new_study(storage: Any, name: str, budget: int, sampler: Any) -> Any:
    """A study as the runner leaves it before its loop: user attributes, budget and the baseline trial."""
    import optuna

    rng = random.Random(0)
    study = optuna.create_study(study_name=name, storage=storage, directions=DIRECTIONS, sampler=sampler)
    for key, n in STUDY_ATTR_BYTES.items():
        study.set_user_attr(key, _payload(n, rng))
    study.set_user_attr("budget", budget)
    # the runner records the identity recipe's value of every knob it lies inside of (here: all six), so
    # multivariate TPE's joint space is every knob, all sampled in study.ask(), under the study lock
    baseline = optuna.trial.create_trial(
        params=IDENTITY,
        distributions=distributions(),
        values=[0.98, 40_000.0, 0.3, 0.02],
        user_attrs={"role": "baseline", "worker": "bench:0"},
    )
    study.add_trial(baseline)
    return study


def distributions() -> dict[str, Any]:
    import optuna.distributions as d

    out: dict[str, Any] = {}
    for name, (kind, args) in SPACE.items():
        out[name] = d.FloatDistribution(*args) if kind == "float" else d.CategoricalDistribution(args)
    return out


def tpe(seed: int) -> Any:
    """The sampler tradeoff's workers run with (``search/samplers.py``: ``"tpe"``)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


def quiet_warnings() -> None:
    """Silence Optuna's experimental-feature warnings (as the CLI does) and its "Heartbeat of storage is
    supposed to be used with Study.optimize." (every ask of a heartbeat storage outside Study.optimize)."""
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used", category=UserWarning)


def _counted(t: Any) -> bool:
    """``tradeoff.search.failures.counted``: complete, stopped and real failures use up the budget (not lost or
    interrupted trials); a failure without an error is a lost worker's (``record.failure_reason``)."""
    from optuna.trial import TrialState

    if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    error = t.user_attrs.get("error")
    return t.state == TrialState.FAIL and error is not None and not str(error).startswith("interrupted")


def run_trial(study: Any, lock: Any, *, trial_s: float, rng: random.Random, worker: str) -> dict[str, float] | None:
    """One trial's storage work as ``Runner._loop`` and ``_run_one`` do it, the trial itself a sleep.

    Returns the seconds of each phase, or None when the budget is met (nothing asked).
    """
    import optuna
    from optuna.storages._heartbeat import get_heartbeat_thread
    from optuna.trial import TrialState

    perf = time.perf_counter
    t0 = perf()
    with lock:
        t1 = perf()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        t2 = perf()
        budget = int(study.user_attrs["budget"])
        t3 = perf()
        taken = sum(_counted(t) or t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False))
        t4 = perf()
        if taken >= budget:
            return None
        trial = study.ask()
        t5 = perf()
    t6 = perf()
    trial.set_user_attr("worker", worker)
    with get_heartbeat_thread(trial._trial_id, study._storage):
        for name, (kind, args) in SPACE.items():
            if kind == "float":
                trial.suggest_float(name, *args)
            else:
                trial.suggest_categorical(name, args)
        t7 = perf()
        study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))  # duplicate
        study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))  # latency reuse
        t8 = perf()
        if trial_s > 0:
            time.sleep(trial_s)  # the trial
        t9 = perf()
        for key, value in trial_attrs(rng).items():
            trial.set_user_attr(key, value)
        trial.set_constraint("max_accuracy_drop", rng.uniform(-0.02, 0.02))
        t10 = perf()
    study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))  # the study's hypervolume with this trial
    trial.set_user_attr("hypervolume", rng.random())
    t11 = perf()
    study.tell(trial, [rng.uniform(0.8, 0.99), rng.uniform(1e4, 4e4), rng.uniform(0.1, 0.3), rng.uniform(0.01, 0.02)])
    t12 = perf()
    return {
        "lock_wait": t1 - t0,
        "fail_stale": t2 - t1,
        "budget_read": t3 - t2,
        "count": t4 - t3,
        "ask": t5 - t4,
        "lock_hold": t6 - t1,
        "suggest": t7 - t6,
        "reads": (t8 - t7) + (t11 - t10),
        "attrs": t10 - t9,
        "tell": t12 - t11,
        "storage": (t12 - t0) - (t9 - t8),  # everything but the trial itself
        "end": time.time(),
    }


# -- numbers -----------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values``, linear between order statistics; NaN when empty."""
    if not values:
        return float("nan")
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def ms(values: list[float]) -> dict[str, float]:
    """p50 and p90 of seconds, as milliseconds."""
    return {"p50_ms": round(pct(values, 0.5) * 1e3, 2), "p90_ms": round(pct(values, 0.9) * 1e3, 2)}


# -- PostgreSQL ------------------------------------------------------------------------------------


@contextlib.contextmanager
def pg_cluster(max_connections: int) -> Iterator[Any]:
    """A private PostgreSQL cluster with a default server's durability, stopped on the way out."""
    from tests.pg import PgCluster

    reason = PgCluster.available()
    if reason is not None:
        raise SystemExit(f"cannot start PostgreSQL here: {reason}")
    root = Path(tempfile.mkdtemp(prefix="tradeoff-workers-"))
    cluster = PgCluster(root / "pg", max_connections=max_connections)
    try:
        cluster.start()
        set_durable(cluster, True)
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


def set_durable(cluster: Any, on: bool) -> None:
    """Durable commits as on a default server (on), or the test suite's no-fsync settings (off).

    ``ALTER SYSTEM`` lands in postgresql.auto.conf, read after the suite's settings; all three take a reload.
    """
    value = "on" if on else "off"
    with cluster.connect(autocommit=True) as conn:
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            conn.execute(f"ALTER SYSTEM SET {setting} = {value}")
        conn.execute("SELECT pg_reload_conf()")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the reload is asynchronous: wait until new sessions see it
        with cluster.connect() as conn:
            if conn.execute("SHOW fsync").fetchone()[0] == value:
                return
        time.sleep(0.1)
    raise RuntimeError(f"PostgreSQL did not take fsync = {value}")


def server_version(cluster: Any) -> str:
    with cluster.connect() as conn:
        return str(conn.execute("SHOW server_version").fetchone()[0])


class ActivityPoller(threading.Thread):
    """Samples the server's client connections (and advisory-lock waiters) every :data:`POLL_S`."""

    SQL = (
        "SELECT count(*) FILTER (WHERE backend_type = 'client backend'),"
        " count(*) FILTER (WHERE wait_event = 'advisory'),"
        " count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'active')"
        " FROM pg_stat_activity"
    )

    def __init__(self, cluster: Any) -> None:
        super().__init__(daemon=True)
        self.conn = cluster.connect(autocommit=True)
        self.stop_event = threading.Event()
        self.peak_clients = 0
        self.peak_waiting = 0
        self.peak_active = 0
        self.samples = 0

    def sample(self) -> int:
        clients, waiting, active = self.conn.execute(self.SQL).fetchone()
        clients, active = clients - 1, active - 1  # not this poller's own session
        self.peak_clients = max(self.peak_clients, clients)
        self.peak_waiting = max(self.peak_waiting, waiting)
        self.peak_active = max(self.peak_active, active)
        self.samples += 1
        return int(clients)

    def run(self) -> None:
        while not self.stop_event.wait(POLL_S):
            with contextlib.suppress(Exception):  # a sample lost to a busy server is just a gap
                self.sample()

    def finish(self) -> None:
        self.stop_event.set()
        self.join()
        self.conn.close()


def log_count(cluster: Any, offset: int, text: str) -> int:
    """Lines of the server's log after byte ``offset`` that contain ``text``."""
    with open(cluster.log, "rb") as f:
        f.seek(offset)
        return sum(text in line for line in f.read().decode(errors="replace").splitlines())


# -- part 1: storage work per trial ----------------------------------------------------------------


def storage_overhead(url: str, label: str, n: int, window: int) -> dict[str, Any]:
    """``n`` random-sampler trials then :data:`TPE_ASKS` TPE trials of the runner's storage protocol, one process."""
    import optuna

    _, workers = tradeoff_storage()
    storage = open_bench_storage(url)
    study = new_study(storage, STUDY, budget=1 + n + TPE_ASKS, sampler=optuna.samplers.RandomSampler(seed=0))
    lock = workers.StudyLock(url, STUDY)  # SQLite with one process: no lock, as the runner has none there
    rng = random.Random(1)
    rows = []
    for _ in range(n):
        row = run_trial(study, lock, trial_s=0.0, rng=rng, worker=f"bench:{os.getpid()}")
        assert row is not None
        rows.append(row)
    study.sampler = tpe(0)
    tpe_rows = [run_trial(study, lock, trial_s=0.0, rng=rng, worker=f"bench:{os.getpid()}") for _ in range(TPE_ASKS)]
    dispose(storage)
    total = [r["storage"] for r in rows]
    random_ask = [r["ask"] for r in rows[-window:]]
    tpe_ask = [r["ask"] for r in tpe_rows if r is not None]
    return {
        "backend": label,
        "trials": n,
        "per_trial": ms(total),
        "first_window_p50_ms": round(pct(total[:window], 0.5) * 1e3, 2),
        "last_window_p50_ms": round(pct(total[-window:], 0.5) * 1e3, 2),
        "phases_p50_ms": {
            k: round(pct([r[k] for r in rows], 0.5) * 1e3, 2)
            for k in ("lock_wait", "fail_stale", "budget_read", "count", "ask", "suggest", "reads", "attrs", "tell")
        },
        "random_ask_last_window": ms(random_ask),
        "tpe_ask": ms(tpe_ask),
        # multivariate TPE samples the knobs every finished trial has (all six) in ask(); a knob some trials
        # lack would be sampled alone when suggested, outside the lock
        "random_suggest_last_window": ms([r["suggest"] for r in rows[-window:]]),
        "tpe_suggest": ms([r["suggest"] for r in tpe_rows if r is not None]),
        "tpe_trial_storage": ms([r["storage"] for r in tpe_rows if r is not None]),
    }


def part_storage(cluster: Any, tmp: Path, n: int, window: int) -> list[dict[str, Any]]:
    results = []
    url = cluster.create_database("storage_durable")
    results.append(storage_overhead(url, "PostgreSQL (durable, server defaults)", n, window))
    set_durable(cluster, False)
    try:
        url = cluster.create_database("storage_nofsync")
        results.append(storage_overhead(url, "PostgreSQL (no fsync, test settings)", n, window))
    finally:
        set_durable(cluster, True)
    results.append(storage_overhead(f"sqlite:///{tmp / 'storage.db'}", "SQLite file", n, window))
    return results


# -- part 2: real trials with the CLI ----------------------------------------------------------------


def part_real(cluster: Any, tmp: Path, counts: list[int], n_trials: int) -> list[dict[str, Any]]:
    """``tradeoff launch`` of the demo spec into a fresh database per worker count; trials/hour from the study."""
    import optuna
    import sqlalchemy
    from optuna.trial import TrialState

    exe = Path(sys.executable).with_name("tradeoff")
    results = []
    for workers in counts:
        url = cluster.create_database(f"real_w{workers}")
        cmd = [str(exe), "launch", str(ROOT / "studies" / "demo.toml"), "--storage", url, "--trials", str(n_trials)]
        cmd += ["--workers", str(workers)]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=REAL_TIMEOUT_S, check=False)
        command_s = time.perf_counter() - start
        rdb = optuna.storages.RDBStorage(url, engine_kwargs={"poolclass": sqlalchemy.pool.NullPool})
        names = optuna.get_all_study_names(rdb)
        trials = optuna.load_study(study_name=names[0], storage=rdb).get_trials(deepcopy=False) if names else []
        candidates = [t for t in trials if t.user_attrs.get("role") != "baseline"]
        finished = [t for t in candidates if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        row: dict[str, Any] = {
            "workers": workers,
            "exit_code": proc.returncode,
            "command_s": round(command_s, 1),
            "trials": len(trials),
            "candidates": len(candidates),
            "complete": sum(t.state == TrialState.COMPLETE for t in candidates),
            "stopped": sum(t.state == TrialState.PRUNED for t in candidates),
            "failed": sum(t.state == TrialState.FAIL for t in candidates),
            "running_left": sum(t.state == TrialState.RUNNING for t in trials),
            # Optuna's UserWarning on every ask of a heartbeat storage outside Study.optimize: does the CLI show it?
            "heartbeat_warnings": (proc.stdout + proc.stderr).count("Heartbeat of storage is supposed"),
        }
        if proc.returncode != 0:
            row["output_tail"] = (proc.stdout + proc.stderr)[-2000:]
        if finished:
            first = min(t.datetime_start for t in candidates if t.datetime_start is not None)
            last = max(t.datetime_complete for t in finished if t.datetime_complete is not None)
            window_s = (last - first).total_seconds()
            durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in finished]
            row.update(
                window_s=round(window_s, 1),
                trials_per_hour=round(len(finished) / window_s * 3600, 1),
                median_trial_s=round(statistics.median(durations), 2),
            )
        results.append(row)
        print(f"  real: {workers} worker(s): {row}", flush=True)
    base = next((r for r in results if r["workers"] == 1 and "trials_per_hour" in r), None)
    for r in results:
        if base is not None and "trials_per_hour" in r:
            r["ratio_to_1"] = round(r["trials_per_hour"] / base["trials_per_hour"], 2)
    return results


# -- part 3: the simulation --------------------------------------------------------------------------


def sim_worker(
    index: int,
    url: str,
    mode: str,
    grpc_port: int | None,
    trial_s: float,
    messages: Any,
    go: Any,
    out_path: str,
    err_path: str,
) -> None:
    """A simulated worker (its own process): open the storage, load the study, wait for ``go``, run trials."""
    fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 2)  # tradeoff's reconnect lines and any traceback, the heartbeat thread's too
    os.close(fd)
    result: dict[str, Any] = {"index": index, "trials": [], "error": None}
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        quiet_warnings()
        _, workers = tradeoff_storage()
        storage = open_bench_storage(url, mode=mode, grpc_port=grpc_port)
        study = optuna.load_study(study_name=STUDY, storage=storage, sampler=tpe(index))
        lock = workers.StudyLock(url, STUDY, reconnect_s=RECONNECT_S)
        messages.put(("ready", index, ""))
        if not go.wait(READY_TIMEOUT_S + 60):
            raise RuntimeError("no start signal")
        rng = random.Random(index)
        while (row := run_trial(study, lock, trial_s=trial_s, rng=rng, worker=f"sim:{os.getpid()}")) is not None:
            result["trials"].append(row)
        dispose(storage)
    except Exception as exc:  # noqa: BLE001 - reported, not raised: the parent tells the story
        result["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        traceback.print_exc()
        messages.put(("failed", index, result["error"]))
    finally:
        Path(out_path).write_text(json.dumps(result))


def sim_context() -> Any:
    """Processes forked from a server that has Optuna, SQLAlchemy and psycopg loaded (never torch)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["optuna", "optuna.samplers", "sqlalchemy", "psycopg", "sqlalchemy.dialects.postgresql"])
    return ctx


def sim_run(cluster: Any, tmp: Path, w: int, per_worker: int, trial_s: float, *, mode: str) -> dict[str, Any]:
    """W simulated workers on one fresh database; returns the figures of the run."""
    import optuna
    import sqlalchemy
    from optuna.trial import TrialState

    config = MODES[mode]
    db = f"sim_{mode}_w{w}"
    url = cluster.create_database(db)
    budget = 1 + per_worker * w  # the baseline + the candidates
    setup = optuna.storages.RDBStorage(url, engine_kwargs={"poolclass": sqlalchemy.pool.NullPool})
    new_study(setup, STUDY, budget, sampler=optuna.samplers.RandomSampler(seed=0))
    dispose(setup)
    folder = tmp / db
    folder.mkdir()
    ctx = sim_context()
    messages, go = ctx.Queue(), ctx.Event()
    proxy = None
    grpc_port = None
    if mode == "grpc":
        from tests.pg import _free_port

        grpc_port = _free_port()
        proxy = ctx.Process(target=grpc_proxy, args=(url, grpc_port, messages), daemon=True)
        proxy.start()
        kind, _, text = messages.get(timeout=60)
        if kind != "proxy":
            raise RuntimeError(f"the gRPC proxy did not start: {text}")
    procs = [
        ctx.Process(
            target=sim_worker,
            args=(i, url, mode, grpc_port, trial_s, messages, go, str(folder / f"{i}.json"), str(folder / f"{i}.err")),
            daemon=True,
        )
        for i in range(w)
    ]
    log_offset = cluster.log.stat().st_size
    poller = ActivityPoller(cluster)  # connected before the workers: a full server would refuse it later
    started = time.perf_counter()
    for p in procs:
        p.start()
    ready, failed = 0, []
    deadline = time.monotonic() + READY_TIMEOUT_S
    while ready + len(failed) < w and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            kind, index, text = messages.get(timeout=1)
            if kind == "ready":
                ready += 1
            else:
                failed.append(f"worker {index}: {text}")
    startup_s = time.perf_counter() - started
    at_ready = poller.sample()
    poller.start()
    go_time = time.time()
    go.set()
    for p in procs:
        p.join(max(1.0, RUN_TIMEOUT_S - (time.time() - go_time)))
    hung = [p.pid for p in procs if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join()
    exit_s = time.time() - go_time
    poller.finish()
    if proxy is not None:
        proxy.terminate()
        proxy.join()

    rows: list[dict[str, float]] = []
    errors: list[str] = list(failed)
    tracebacks: list[str] = []  # the stderr tail of the first few workers that failed, for the report
    reconnect_lines = 0
    for i in range(w):
        out, err = folder / f"{i}.json", folder / f"{i}.err"
        if out.exists():
            data = json.loads(out.read_text())
            rows += data["trials"]
            if data["error"] and f"worker {i}: {data['error']}" not in errors:
                errors.append(f"worker {i}: {data['error']}")
        else:
            errors.append(f"worker {i}: no result (exit code {procs[i].exitcode})")
        if err.exists():
            text = err.read_text(errors="replace")
            reconnect_lines += text.count("tradeoff: storage unreachable")
            if "Traceback" in text and not any(e.startswith(f"worker {i}:") for e in errors):
                errors.append(f"worker {i}: traceback on stderr: {text.strip().splitlines()[-1][:200]}")
            if "Traceback" in text and len(tracebacks) < 3:
                tracebacks.append(f"worker {i}:\n" + "\n".join(text.strip().splitlines()[-60:]))
    refused = log_count(cluster, log_offset, "too many clients")

    check = optuna.storages.RDBStorage(url, engine_kwargs={"poolclass": sqlalchemy.pool.NullPool})
    trials = optuna.load_study(study_name=STUDY, storage=check).get_trials(deepcopy=False)
    dispose(check)
    cands = [t for t in trials if t.user_attrs.get("role") != "baseline"]
    complete = [t for t in cands if t.state == TrialState.COMPLETE]
    running = sum(t.state == TrialState.RUNNING for t in trials)
    last = max((t.datetime_complete.timestamp() for t in complete if t.datetime_complete), default=go_time)
    wall = last - go_time
    ideal = per_worker * w * trial_s / w
    hold = [r["lock_hold"] for r in rows]
    result = {
        "config": config,
        "workers": w,
        "budget_candidates": budget - 1,
        "trial_s": trial_s,
        "startup_s": round(startup_s, 1),
        "wall_s": round(wall, 2),
        "ideal_s": round(ideal, 2),
        "efficiency": round(ideal / wall, 3) if wall > 0 else None,
        "trials_per_s": round(len(complete) / wall, 2) if wall > 0 else None,
        "ideal_trials_per_s": round(w / trial_s, 2),
        "to_last_exit_s": round(exit_s, 2),
        "connections_at_ready": at_ready,
        "peak_connections": poller.peak_clients,
        "peak_active": poller.peak_active,
        "peak_lock_waiters": poller.peak_waiting,
        "lock_wait": ms([r["lock_wait"] for r in rows]),
        "lock_hold": ms(hold),
        "ask": ms([r["ask"] for r in rows]),
        "suggest": ms([r["suggest"] for r in rows]),  # where TPE samples (first suggest), outside the lock
        "fail_stale": ms([r["fail_stale"] for r in rows]),
        "budget_read": ms([r["budget_read"] for r in rows]),
        "count": ms([r["count"] for r in rows]),
        "tell": ms([r["tell"] for r in rows]),
        "attrs": ms([r["attrs"] for r in rows]),
        "storage_per_trial": ms([r["storage"] for r in rows]),
        # the lock admits at most 1 / hold trials a second; a trial of trial_s keeps this many workers fed
        "lock_ceiling_trials_per_s": round(1 / pct(hold, 0.5), 1) if hold else None,
        "lock_saturates_at_workers": round(trial_s / pct(hold, 0.5)) if hold else None,
        "finished": len(complete),
        "trials_in_study": len(trials),
        "failed": sum(t.state == TrialState.FAIL for t in cands),
        "running_left": running,
        "budget_respected": len(cands) == budget - 1 and len(complete) == budget - 1 and running == 0,
        "reconnect_retries": reconnect_lines,
        "too_many_clients_refusals": refused,
        "errors": errors[:10],
        "errors_total": len(errors),
        "tracebacks": tracebacks,
        "hung_workers": hung,
    }
    print(
        f"  sim: {config}, W={w}: wall {result['wall_s']} s (ideal {result['ideal_s']}), peak connections "
        f"{result['peak_connections']}, lock wait p50 {result['lock_wait']['p50_ms']} ms, hold p50 "
        f"{result['lock_hold']['p50_ms']} ms, ask p50 {result['ask']['p50_ms']} ms, refusals {refused}, "
        f"retries {reconnect_lines}, errors {len(errors)}, budget ok {result['budget_respected']}",
        flush=True,
    )
    shutil.rmtree(folder, ignore_errors=True)
    return result


def part_sim(
    cluster: Any, tmp: Path, counts: list[int], per_worker: int, trial_s: float, light: str, grpc: str
) -> list[dict[str, Any]]:
    """The shipped storage at every W; then, when it ran short of connections (``auto``) or when asked
    (``always``), the connection-light storage and the gRPC proxy (when grpcio is installed)."""
    results = [sim_run(cluster, tmp, w, per_worker, trial_s, mode="pool") for w in counts]
    short = any(r["too_many_clients_refusals"] or r["reconnect_retries"] or r["errors_total"] for r in results)
    if light == "always" or (light == "auto" and short):
        results += [sim_run(cluster, tmp, w, per_worker, trial_s, mode="null") for w in counts]
    if grpc == "always" or (grpc == "auto" and short):
        why = grpc_available()
        if why is None:
            results += [sim_run(cluster, tmp, w, per_worker, trial_s, mode="grpc") for w in counts]
        else:
            print(f"  sim: gRPC proxy not measured: {why}", flush=True)
    return results


# -- report --------------------------------------------------------------------------------------------


def loadavg() -> str:
    """/proc/loadavg's 1, 5 and 15 minute figures: other work on the machine skews every timing here."""
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "unknown"


def machine() -> dict[str, Any]:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
        mem_gib = round(kb / 2**20, 1)
    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": mem_gib, "python": platform.python_version()}


def print_tables(results: dict[str, Any]) -> None:
    if results.get("storage"):
        print("\nStorage work of one trial (one process, RandomSampler; ms):")
        print(
            "| backend | trials | p50 | p90 | first p50 | last p50 | ask p50 random / TPE | suggest p50 random / TPE |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in results["storage"]:
            print(
                f"| {r['backend']} | {r['trials']} | {r['per_trial']['p50_ms']} | {r['per_trial']['p90_ms']} "
                f"| {r['first_window_p50_ms']} | {r['last_window_p50_ms']} "
                f"| {r['random_ask_last_window']['p50_ms']} / {r['tpe_ask']['p50_ms']} "
                f"| {r['random_suggest_last_window']['p50_ms']} / {r['tpe_suggest']['p50_ms']} |"
            )
        print("\nPhases, p50 ms: " + "; ".join(f"{r['backend']}: {r['phases_p50_ms']}" for r in results["storage"]))
    if results.get("real"):
        print("\nReal trials on PostgreSQL (tradeoff launch, digits demo):")
        print("| workers | finished (stopped) | window s | trials/hour | ratio to 1 | median trial s | exit |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for r in results["real"]:
            print(
                f"| {r['workers']} | {r['complete'] + r['stopped']} ({r['stopped']}) | {r.get('window_s', '-')} "
                f"| {r.get('trials_per_hour', '-')} | {r.get('ratio_to_1', '-')} | {r.get('median_trial_s', '-')} "
                f"| {r['exit_code']} |"
            )
    if results.get("sim"):
        print("\nSimulated workers on one PostgreSQL (fake trials; ms are p50 / p90):")
        print(
            "| config | W | wall s (ideal) | trials/s (ideal) | peak conns | lock wait | lock hold | ask "
            "| suggest (TPE) | refusals | retries | errors | budget ok |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in results["sim"]:
            print(
                f"| {r['config']} | {r['workers']} | {r['wall_s']} ({r['ideal_s']}) | {r['trials_per_s']} "
                f"({r['ideal_trials_per_s']}) | {r['peak_connections']} "
                f"| {r['lock_wait']['p50_ms']} / {r['lock_wait']['p90_ms']} "
                f"| {r['lock_hold']['p50_ms']} / {r['lock_hold']['p90_ms']} "
                f"| {r['ask']['p50_ms']} / {r['ask']['p90_ms']} "
                f"| {r['suggest']['p50_ms']} / {r['suggest']['p90_ms']} "
                f"| {r['too_many_clients_refusals']} | {r['reconnect_retries']} | {r['errors_total']} "
                f"| {r['budget_respected']} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (~2 min): small counts everywhere")
    parser.add_argument("--parts", default="storage,real,sim", help="which parts to run, comma-separated")
    parser.add_argument("--storage-trials", type=int, default=None, help="part 1 trials per backend (200; quick 40)")
    parser.add_argument("--window", type=int, default=None, help="part 1: first/last trials compared (50; quick 10)")
    parser.add_argument("--real-trials", type=int, default=None, help="part 2 budget, baseline included (16; quick 5)")
    parser.add_argument("--real-workers", default=None, help="part 2 worker counts (1,2,4; quick 1,2)")
    parser.add_argument("--sim-workers", default=None, help="part 3 worker processes (8,32,64; quick 4,16)")
    parser.add_argument("--sim-trials-per-worker", type=int, default=None, help="part 3 budget / W (4; quick 2)")
    parser.add_argument("--sim-trial-s", type=float, default=None, help="part 3 fake trial length (2 s; quick 1 s)")
    parser.add_argument(
        "--sim-light",
        choices=("auto", "always", "never"),
        default="auto",
        help="part 3 again with NullPool (auto: when the shipped configuration ran short of connections)",
    )
    parser.add_argument(
        "--sim-grpc",
        choices=("auto", "always", "never"),
        default="auto",
        help="part 3 again through Optuna's gRPC proxy (needs grpcio; auto as for --sim-light)",
    )
    parser.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "tradeoff-workers.json")
    args = parser.parse_args()
    q = args.quick
    storage_trials = args.storage_trials or (40 if q else 200)
    window = args.window or (10 if q else 50)
    real_trials = args.real_trials or (5 if q else 16)
    real_workers = [int(x) for x in (args.real_workers or ("1,2" if q else "1,2,4")).split(",")]
    sim_workers = [int(x) for x in (args.sim_workers or ("4,16" if q else "8,32,64")).split(",")]
    per_worker = args.sim_trials_per_worker or (2 if q else 4)
    trial_s = args.sim_trial_s or (1.0 if q else 2.0)
    parts = set(args.parts.split(","))

    import optuna
    import psycopg
    import sqlalchemy

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    quiet_warnings()
    results: dict[str, Any] = {}
    load_before = loadavg()
    start = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="tradeoff-workers-") as tmp_name,
        pg_cluster(args.max_connections) as cluster,
    ):
        tmp = Path(tmp_name)
        version = server_version(cluster)
        if "storage" in parts:
            print("part 1: storage work per trial", flush=True)
            results["storage"] = part_storage(cluster, tmp, storage_trials, window)
        if "real" in parts:
            print("part 2: real trials with tradeoff launch", flush=True)
            results["real"] = part_real(cluster, tmp, real_workers, real_trials)
        if "sim" in parts:
            print("part 3: simulated workers", flush=True)
            results["sim"] = part_sim(cluster, tmp, sim_workers, per_worker, trial_s, args.sim_light, args.sim_grpc)
    meta = {
        "machine": machine(),
        "postgresql": version,
        "max_connections": args.max_connections,
        "optuna": optuna.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "psycopg": psycopg.__version__,
        "date": datetime.date.today().isoformat(),
        "quick": q,
        "settings": {
            "storage_trials": storage_trials,
            "window": window,
            "tpe_asks": TPE_ASKS,
            "real_trials": real_trials,
            "real_workers": real_workers,
            "sim_workers": sim_workers,
            "sim_trials_per_worker": per_worker,
            "sim_trial_s": trial_s,
            "heartbeat_s": HEARTBEAT_S,
            "grace_s": GRACE_S,
            "reconnect_s": RECONNECT_S,
        },
        "total_s": round(time.perf_counter() - start, 1),
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    }
    print_tables(results)
    print(json.dumps(meta))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
