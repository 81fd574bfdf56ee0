"""The dashboard on a study of 10,000 trials: page load and each callback, server side (issue 23).

Usage:  python benchmarks/dashboard.py [--trials 10000] [--repeats 5]

A synthetic study in the real trial-record format (``tests/studies/fake_study.synthetic_study``)
is written into a fresh SQLite file. Then, through the same functions the Dash callbacks call:

* first load: the study read from the storage (``study_view``) and the study page built;
* slider move: the front re-ranked under new weights, figure, best text, table and progress;
* axis change: the same with other axes;
* limit change: a new accuracy limit (the non-dominated sort runs again for it);
* trial click: the trial's detail;
* export: the trial's ``config.json``.

Each is timed ``--repeats`` times (median and max, seconds, wall clock at one thread). optuna-
dashboard is timed on the same file when it is installed (its study API, which its front end calls
on every page load).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test helper that writes the synthetic study

from tests.studies.fake_study import synthetic_study
from tradeoff.objectives import Constraints, Weights, describe_device
from tradeoff.search.dashboard import read_only_storage, study_view
from tradeoff.search.dashboard.app import (
    best_summary,
    config_json,
    front_views,
    progress_figure,
    study_page,
    trial_detail,
    trial_rows,
)
from tradeoff.search.dashboard.data import _CACHE


def timed(fn: Any, repeats: int) -> dict[str, float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "max_s": max(times)}


def optuna_dashboard_time(url: str, repeats: int) -> dict[str, Any]:
    try:
        import optuna_dashboard
        from optuna_dashboard._app import create_app as od_app  # the bottle app its server runs
    except ImportError as exc:
        return {"ran": False, "why": f"optuna-dashboard not installed ({exc})"}
    import optuna
    from werkzeug.test import Client  # calls any WSGI app (optuna-dashboard's is bottle's)

    storage = optuna.storages.RDBStorage(url)
    client = Client(od_app(storage))
    study_id = storage.get_study_id_from_name("synthetic")

    def get() -> None:
        response = client.get(f"/api/studies/{study_id}")
        if response.status_code != 200:
            raise RuntimeError(f"optuna-dashboard answered {response.status_code}")

    result = timed(get, repeats)
    return {"ran": True, "version": optuna_dashboard.__version__, "study_api": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dashboard.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'synthetic.db'}"
        t0 = time.perf_counter()
        synthetic_study(url, args.trials)
        write_s = time.perf_counter() - t0
        storage = read_only_storage(url)

        def first_load() -> None:
            _CACHE.clear()
            study_page(study_view(storage, url, "synthetic"))

        view = study_view(storage, url, "synthetic")
        w1, w2 = view.weights, Weights((0.1, 0.7, 0.1, 0.1), view.names)
        lim = Constraints(**view.limits)
        swap = [True]

        def slider() -> None:
            swap[0] = not swap[0]
            w = w1 if swap[0] else w2
            v = study_view(storage, url, "synthetic")
            front_views(v, "2d", "size_bytes", "accuracy", w, lim)
            best_summary(v, w, lim)
            trial_rows(v)
            progress_figure(v)

        def axes() -> None:
            v = study_view(storage, url, "synthetic")
            front_views(v, "2d", "latency_ms", "energy_mj", w1, lim)
            best_summary(v, w1, lim)

        drops = iter([0.01 * k for k in range(1, 100)])

        def limit() -> None:
            v = study_view(storage, url, "synthetic")
            new = Constraints(max_accuracy_drop=next(drops))
            front_views(v, "2d", "size_bytes", "accuracy", w1, new)
            best_summary(v, w1, new)

        front = view.front(w1, lim)
        pick = front[0][0].number
        results = {
            "first_load": timed(first_load, args.repeats),
            "slider_move": timed(slider, args.repeats),
            "axis_change": timed(axes, args.repeats),
            "limit_change": timed(limit, args.repeats),
            "trial_click": timed(lambda: trial_detail(study_view(storage, url, "synthetic"), pick), args.repeats),
            "export_config": timed(lambda: config_json(storage, "synthetic", pick, w1), args.repeats),
        }
        results["optuna_dashboard"] = optuna_dashboard_time(url, args.repeats)
    meta = {
        "trials": args.trials,
        "front": len(front),
        "write_s": round(write_s, 1),
        "machine": describe_device("cpu"),
        "date": datetime.date.today().isoformat(),
    }
    print("| step | median s | max s |")
    print("|---|---:|---:|")
    for k, v in results.items():
        if "median_s" in v:
            print(f"| {k} | {v['median_s']:.3f} | {v['max_s']:.3f} |")
    od = results["optuna_dashboard"]
    if od.get("ran"):
        api = od["study_api"]
        print(f"| optuna-dashboard {od['version']}: study API | {api['median_s']:.3f} | {api['max_s']:.3f} |")
    print(json.dumps({"meta": meta, "optuna_dashboard": results["optuna_dashboard"]}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
