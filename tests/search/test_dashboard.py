"""The dashboard's pages and callbacks on hand-made studies in SQLite: what it shows, and that it only reads."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.studies.fake_study import BASE, fake_study
from tradeoff.objectives import Constraints, Weights
from tradeoff.search.dashboard import (
    DashboardError,
    check_name,
    create_app,
    front_figure,
    parse_trial_number,
    read_only_storage,
    study_view,
    trial_detail,
)
from tradeoff.search.dashboard.app import best_summary, config_json, page_for, trial_rows
from tradeoff.studies import record

ACCURATE = {**BASE, "accuracy": 0.9, "size_bytes": 600.0}  # as accurate as the baseline, 40 % smaller
SMALL = {**BASE, "accuracy": 0.87, "size_bytes": 150.0}  # three points less accurate, 85 % smaller


@pytest.fixture
def storage_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    fake_study([ACCURATE, SMALL], storage=url, max_drop=0.05)
    return url


def digest(url: str) -> str:
    return hashlib.sha256(Path(url.removeprefix("sqlite:///")).read_bytes()).hexdigest()


def test_weights_re_rank_the_front_and_limits_filter_it(storage_url: str) -> None:
    view = study_view(read_only_storage(storage_url), storage_url, "fake")
    no_limits = Constraints()
    by_accuracy = view.front(Weights((1.0, 0.0, 0.0, 0.0), view.names), no_limits)
    by_size = view.front(Weights((0.0, 1.0, 0.0, 0.0), view.names), no_limits)
    assert by_accuracy[0][0].number != by_size[0][0].number  # the best trial moves with the weights
    assert by_size[0][0].number == 2  # the small one
    assert "Best under these weights: trial 2" in best_summary(
        view, Weights((0.0, 1.0, 0.0, 0.0), view.names), no_limits
    )
    tight = view.front(Weights((0.0, 1.0, 0.0, 0.0), view.names), Constraints(max_accuracy_drop=0.01))
    assert 2 not in {p.number for p, _ in tight}  # three points down: filtered out by a one-point limit


def test_the_front_plot_uses_webgl_marks_each_kind_and_labels_units_and_sources(storage_url: str) -> None:
    view = study_view(read_only_storage(storage_url), storage_url, "fake")
    fig = front_figure(view, "size_bytes", "accuracy", view.weights, Constraints())
    assert {t.type for t in fig.data} == {"scattergl"}
    names = [t.name for t in fig.data]
    assert any(n.startswith("Pareto front") for n in names) and any(n.startswith("baseline") for n in names)
    assert any(n.startswith("best under these weights: trial") for n in names) and any(
        n.startswith("knee") for n in names
    )
    assert fig.layout.xaxis.title.text == "size_bytes (bytes, measured)"  # fake_study labels every figure measured
    front = next(t for t in fig.data if t.name.startswith("Pareto front"))
    assert list(front.x) == sorted(front.x) and len(front.x) >= 2  # joined left to right


def test_pages_show_studies_and_trials_and_say_what_is_missing(storage_url: str) -> None:
    storage = read_only_storage(storage_url)
    home = json.dumps(page_for(storage, storage_url, "/").to_plotly_json(), default=str)
    assert "/study/fake" in home and "user-mlp" not in home
    page = json.dumps(page_for(storage, storage_url, "/study/fake").to_plotly_json(), default=str)
    assert "fake" in page and "front" in page
    for hostile in (
        "/study/nope",
        "/study/..%2F..%2Fetc%2Fpasswd",
        "/study/" + "x" * 5000,
        "/etc/passwd",
        "/study/a;b",
    ):
        shown = json.dumps(page_for(storage, storage_url, hostile).to_plotly_json(), default=str)
        assert "error" in shown and "Traceback" not in shown, hostile
    view = study_view(storage, storage_url, "fake")
    assert [r["trial"] for r in trial_rows(view)] == [0, 1, 2]
    detail = json.dumps(trial_detail(view, 2).to_plotly_json(), default=str)
    assert "Trial 2" in detail and "baseline" in detail and "measured" in detail
    with pytest.raises(DashboardError, match="no trial 7"):
        trial_detail(view, 7)


def test_names_and_trial_ids_from_pages_are_validated() -> None:
    for bad in ("../x", "a/b", "x" * 201, "", "a\nb"):
        with pytest.raises(DashboardError):
            check_name(bad)
    assert check_name("digits-demo") == "digits-demo"
    for bad in ("abc", "-1", "1.5", "9" * 12, None):
        with pytest.raises(DashboardError, match="not a trial number"):
            parse_trial_number(bad)
    assert parse_trial_number("12") == 12


def test_export_downloads_the_trials_config_and_nothing_is_written(storage_url: str) -> None:
    before = digest(storage_url)
    storage = read_only_storage(storage_url)
    view = study_view(storage, storage_url, "fake")
    config = json.loads(config_json(storage, "fake", 2, view.weights))
    assert config["trial"] == 2 and config["recipe"] == view.point(2).recipe
    page_for(storage, storage_url, "/study/fake")
    front_figure(view, "latency_ms", "energy_mj", view.weights, Constraints(max_accuracy_drop=0.02))
    create_app(storage_url).server.test_client().get("/study/fake")
    assert digest(storage_url) == before  # a session of reads left the database byte for byte as it was
    import optuna

    with pytest.raises(optuna.exceptions.StorageInternalError) as refused:  # the storage cannot write: SQLite mode=ro
        optuna.load_study(study_name="fake", storage=storage).set_user_attr("x", 1)
    assert "readonly" in repr(refused.value.__cause__ or refused.value.__context__)
    assert digest(storage_url) == before


def test_a_study_whose_task_is_not_importable_here_is_shown(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'foreign.db'}"
    study = fake_study([SMALL], storage=url)
    spec = dict(study.user_attrs[record.STUDY_SPEC])
    spec["task"] = {"name": "no_such_module_here:make_task"}
    study.set_user_attr(record.STUDY_SPEC, spec)
    view = study_view(read_only_storage(url), url, "fake")
    assert view.task == "no_such_module_here:make_task" and len(view.completed()) == 2


def test_a_missing_storage_is_a_message_not_a_new_file(tmp_path: Path) -> None:
    with pytest.raises(DashboardError, match="no study storage"):
        read_only_storage(f"sqlite:///{tmp_path / 'none.db'}")
    assert not (tmp_path / "none.db").exists()


def test_three_views_of_the_front_progress_and_a_comparison_of_two_studies(tmp_path: Path) -> None:
    from tradeoff.search.dashboard.app import compare_figure, front_views, progress_figure

    url = f"sqlite:///{tmp_path / 'two.db'}"
    fake_study([ACCURATE, SMALL], storage=url)
    other = fake_study([{**SMALL, "latency_ms": 1.0}], storage=url, name="other-target")
    storage = read_only_storage(url)
    view = study_view(storage, url, "fake")
    assert {t.type for t in front_views(view, "3d", "size_bytes", "accuracy", view.weights, Constraints()).data} == {
        "scatter3d"
    }
    assert {
        t.type for t in front_views(view, "matrix", "size_bytes", "accuracy", view.weights, Constraints()).data
    } == {"splom"}
    progress = progress_figure(view)
    assert [t.name for t in progress.data] == ["against trial number", "against minutes since the first trial"]
    views = [view, study_view(storage, url, other.study_name)]
    fig = compare_figure(views, "size_bytes", "accuracy", normalised=True)
    assert [t.name.split(" ")[0] for t in fig.data] == ["fake", "other-target"]
    assert max(max(t.x) for t in fig.data) <= 1.0  # relative to each study's baseline: compressed trials are < 1
    page = json.dumps(page_for(storage, url, "/compare/fake,other-target").to_plotly_json(), default=str)
    assert "compare-normalised" in page and "compare-absolute" in page
    for bad in ("/compare/fake", "/compare/fake,nope", "/compare/" + ",".join(["fake"] * 9)):
        assert "error" in json.dumps(page_for(storage, url, bad).to_plotly_json(), default=str), bad
    home = json.dumps(page_for(storage, url, "/").to_plotly_json(), default=str)
    assert "compare-pick" in home and "other-target" in home


@pytest.mark.parametrize("dims", [2, 3, 4])
def test_the_dashboards_front_is_the_non_dominated_set(dims: int) -> None:
    import numpy as np

    from tradeoff.objectives import pareto_mask
    from tradeoff.search.dashboard.data import first_front

    rng = np.random.default_rng(dims)
    points = rng.random((400, dims)).round(2)  # rounded: ties and duplicates happen
    points[::50] = points[1]  # exact duplicates of one row
    assert first_front(points).tolist() == pareto_mask(points).tolist()


def test_trial_detail_draws_the_recipe_over_layer_groups_and_knobs_meet_objectives(tmp_path: Path) -> None:
    import dataclasses

    from tradeoff.search.dashboard.app import parcoords_figure, recipe_figure
    from tradeoff.spaces import PruningConfig, QuantizationConfig, Recipe

    url = f"sqlite:///{tmp_path / 'groups.db'}"
    fake_study([SMALL], storage=url)
    grouped = Recipe(
        pruning=PruningConfig(ratio=0.2, groups={"stage1": 0.5}),
        quantization=QuantizationConfig(weight_bits=8, groups={"stage2": 4}),
    )
    view = study_view(read_only_storage(url), url, "fake")
    fig = recipe_figure(dataclasses.replace(view.point(1), recipe=grouped.to_dict()))
    bars = next(t for t in fig.data if t.type == "bar")
    bits = next(t for t in fig.data if t.type == "scatter")
    assert list(bars.x) == ["stage1", "stage2", "(other layers)"]
    assert list(bars.y) == [0.5, 0.2, 0.2] and list(bits.y) == [8, 4, 8]
    par = parcoords_figure(view)
    labels = [d["label"] for d in par.data[0].dimensions]
    assert labels[:5] == ["prune", "weight bits", "act. bits", "T", "alpha"] and labels[5:] == list(view.names)


def test_the_full_bundle_is_offered_only_where_the_task_is_on_this_host(storage_url: str, tmp_path: Path) -> None:
    from tradeoff.search.dashboard.data import _importable

    view = study_view(read_only_storage(storage_url), storage_url, "fake")
    assert view.task_importable  # digits is built in
    assert not _importable("no_such_module_here:make_task", {})
    assert not _importable(str(tmp_path / "missing.py") + ":make_task", {})
    (tmp_path / "mine.py").write_text("raise SystemExit('must not run when the dashboard looks for it')\n")
    assert _importable(str(tmp_path / "mine.py") + ":make_task", {})  # found, not executed


def test_the_fast_read_returns_what_optuna_returns(tmp_path: Path) -> None:
    from tests.studies.fake_study import synthetic_study
    from tradeoff.search.dashboard.data import _rows

    url = f"sqlite:///{tmp_path / 'syn.db'}"
    study = synthetic_study(url, 60, seed=3)
    rows = _rows(study)
    trials = study.get_trials(deepcopy=False)
    assert [r.number for r in rows] == [t.number for t in trials]
    for r, t in zip(rows, trials, strict=True):
        assert r.state == t.state and r.user_attrs == t.user_attrs and r.system_attrs == t.system_attrs
        assert r.values == (tuple(t.values) if t.values is not None else None)
        assert r.datetime_complete == t.datetime_complete and r.datetime_start == t.datetime_start


def test_trials_whose_two_accuracies_differ_are_flagged(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gap.db'}"
    two = {"scored_accuracy": 0.9, "deployable_accuracy": 0.9}
    fake_study(
        [ACCURATE, SMALL],
        storage=url,
        figures={1: {**two, "accuracy_gap": 0.002}, 2: {**two, "deployable_accuracy": 0.87, "accuracy_gap": -0.03}},
    )
    view = study_view(read_only_storage(url), url, "fake")
    gaps = {r["trial"]: r["acc_gap"] for r in trial_rows(view)}
    assert gaps == {0: "", 1: "+0.20 pt", 2: "-3.00 pt !"}
    fig = front_figure(view, "size_bytes", "accuracy", view.weights, Constraints())
    flagged = next(t for t in fig.data if t.name.startswith("accuracy of the deployable form"))
    assert list(flagged.customdata) == [2]
    detail = json.dumps(trial_detail(view, 2).to_plotly_json(), default=str)
    assert "0.8700 on the deployable form" in detail and "more than half a point apart" in detail


def test_on_postgresql_the_dashboard_reads_in_read_only_transactions(pg_url: str) -> None:
    """The fast SQL read works on PostgreSQL too, and its sessions cannot write: the server refuses."""
    import optuna
    import sqlalchemy

    with pytest.raises(DashboardError, match="holds no tradeoff studies"):  # an empty database: no table created
        read_only_storage(pg_url)
    fake_study([SMALL], storage=pg_url)
    storage = read_only_storage(pg_url)
    view = study_view(storage, pg_url, "fake")
    assert len(view.completed()) == 2 and view.point(1).values
    with pytest.raises(optuna.exceptions.StorageInternalError) as refused:
        optuna.load_study(study_name="fake", storage=storage).set_user_attr("x", 1)
    assert "read-only transaction" in str(refused.value.__cause__ or refused.value.__context__)
    engine = sqlalchemy.create_engine(pg_url)
    with engine.connect() as conn:  # nothing was written
        keys = conn.execute(sqlalchemy.text("SELECT key FROM study_user_attributes")).scalars().all()
    engine.dispose()
    assert "x" not in keys
