"""The Dash app: the studies in a storage, and one study's front, weights, trials and export.

Pages (``dcc.Location``): ``/`` lists the studies; ``/study/<name>`` shows one; ``/compare/A,B``
overlays several. Every callback reads through :mod:`.data` (read-only storage, one read per study
revision) and builds its figure or table with the plain functions of :mod:`.figures` and
:mod:`.pages`, which the tests call directly. A name or trial id from a URL or a click is validated
before the storage is asked; what is not there gets a message, never a traceback. Nothing a page
sends is executed, imported or opened as a file.
"""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, State, dcc, html

from tradeoff.objectives import Constraints, Weights

from .data import DashboardError, StudyView, parse_trial_number, read_only_storage, study_names, study_view
from .figures import compare_figure, front_figure, front_views, parcoords_figure, progress_figure, recipe_figure
from .pages import (
    LIMIT_KEYS,
    best_summary,
    bundle_zip,
    config_json,
    page_for,
    studies_page,
    study_page,
    trial_detail,
    trial_rows,
)

__all__ = [  # the figures and pages are re-exported: callers and tests import them from here too
    "best_summary",
    "bundle_zip",
    "compare_figure",
    "config_json",
    "create_app",
    "front_figure",
    "front_views",
    "page_for",
    "parcoords_figure",
    "progress_figure",
    "recipe_figure",
    "studies_page",
    "study_page",
    "trial_detail",
    "trial_rows",
]

STYLE = (  # a little table and error styling; no external stylesheet (the dashboard works offline)
    "<style>table{border-collapse:collapse}th,td{padding:4px 14px;text-align:left;border-bottom:1px solid #ddd}"
    ".error{color:#b00020}pre{background:#f6f6f6;padding:8px;max-height:300px;overflow:auto}</style>"
)


POLL_MS = 5000  # live updates: a running study's pages re-read it this often (one cheap revision query)


def _weights(view: StudyView, values: list[float | None]) -> Weights:
    vals = tuple(float(v or 0.0) for v in values)
    return Weights(vals, view.names) if sum(vals) > 0 else view.weights


def _limits(values: list[Any]) -> Constraints:
    out = {}
    for key, v in zip(LIMIT_KEYS, values, strict=True):
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0:
            out[key] = float(v)
    return Constraints(**out)


def create_app(url: str) -> dash.Dash:
    """The dashboard app over the storage at ``url`` (opened read-only)."""
    storage = read_only_storage(url)
    app = dash.Dash(__name__, title="tradeoff", suppress_callback_exceptions=True)
    app.index_string = app.index_string.replace("{%css%}", "{%css%}" + STYLE)
    app.layout = html.Div(
        [dcc.Location(id="url"), dcc.Interval(id="tick", interval=POLL_MS), html.H1(dcc.Link("tradeoff", href="/")), html.Div(id="page")],
        style={"fontFamily": "system-ui, sans-serif", "margin": "0 24px"},
    )  # fmt: skip

    def view_of(name: str) -> StudyView:
        return study_view(storage, url, name)

    @app.callback(Output("page", "children"), Input("url", "pathname"))
    def route(pathname: str | None) -> Any:
        return page_for(storage, url, pathname)

    @app.callback(
        Output("front", "figure"),
        Output("best", "children"),
        Input("view-kind", "value"),
        Input("x-axis", "value"),
        Input("y-axis", "value"),
        Input({"type": "weight", "name": dash.ALL}, "value"),
        Input({"type": "limit", "name": dash.ALL}, "value"),
        Input("tick", "n_intervals"),
        State("study-name", "data"),
    )
    def refresh(kind: str, x: str, y: str, weights: list[float], limits: list[Any], _tick: int, name: str) -> Any:
        view = view_of(name)
        if x not in view.names or y not in view.names or kind not in ("2d", "3d", "matrix"):
            raise dash.exceptions.PreventUpdate
        w, lim = _weights(view, weights), _limits(limits)
        return front_views(view, kind, x, y, w, lim), best_summary(view, w, lim)

    @app.callback(
        Output("trials", "data"),
        Output("progress", "figure"),
        Output("parcoords", "figure"),
        Output("revision", "data"),
        Input("tick", "n_intervals"),
        State("study-name", "data"),
        State("revision", "data"),
        prevent_initial_call=True,
    )
    def live(_tick: int, name: str, shown: list[Any] | None) -> Any:
        """The table and the progress plot follow a running study; a page whose study did not change
        since it last got them (its revision, kept in the page) is sent nothing."""
        view = view_of(name)
        if shown is not None and tuple(shown) == view.revision:
            raise dash.exceptions.PreventUpdate
        return trial_rows(view), progress_figure(view), parcoords_figure(view), list(view.revision)

    @app.callback(Output("compare-link", "href"), Output("compare-link", "children"), Input("compare-pick", "value"))
    def compare_link(picked: list[str] | None) -> Any:
        picked = [n for n in picked or [] if n in study_names(storage)]
        if len(picked) < 2:
            return "/", "pick two or more studies"
        return "/compare/" + ",".join(picked), "compare " + ", ".join(picked)

    @app.callback(
        Output("selected", "data"),
        Input("front", "clickData"),
        Input("trials", "active_cell"),
        State("trials", "derived_viewport_data"),
        prevent_initial_call=True,
    )
    def select(click: dict[str, Any] | None, cell: dict[str, Any] | None, rows: list[dict[str, Any]] | None) -> Any:
        if dash.ctx.triggered_id == "front" and click and click.get("points"):
            return parse_trial_number(click["points"][0].get("customdata"))
        if cell and rows and 0 <= cell.get("row", -1) < len(rows):
            return parse_trial_number(rows[cell["row"]]["trial"])
        raise dash.exceptions.PreventUpdate

    @app.callback(Output("detail", "children"), Input("selected", "data"), State("study-name", "data"))
    def detail(number: int | None, name: str) -> Any:
        if number is None:
            return html.P("Click a point or a row to see a trial.")
        try:
            return trial_detail(view_of(name), parse_trial_number(number))
        except DashboardError as exc:
            return html.P(str(exc), className="error")

    @app.callback(
        Output("download", "data"),
        Input("export", "n_clicks"),
        State("selected", "data"),
        State("study-name", "data"),
        State({"type": "weight", "name": dash.ALL}, "value"),
        prevent_initial_call=True,
    )
    def export(_clicks: int, number: int | None, name: str, weights: list[float]) -> Any:
        if number is None:
            raise dash.exceptions.PreventUpdate
        view = view_of(name)
        n = parse_trial_number(number)
        view.point(n)
        text = config_json(storage, name, n, _weights(view, weights))
        return {"content": text, "filename": f"{name}-trial-{n}-config.json"}

    @app.callback(
        Output("download-bundle", "data"),
        Input("export-bundle", "n_clicks"),
        State("selected", "data"),
        State("study-name", "data"),
        State({"type": "weight", "name": dash.ALL}, "value"),
        prevent_initial_call=True,
    )
    def export_bundle_zip(_clicks: int, number: int | None, name: str, weights: list[float]) -> Any:
        if number is None:
            raise dash.exceptions.PreventUpdate
        view = view_of(name)
        if not view.task_importable:
            raise dash.exceptions.PreventUpdate
        n = parse_trial_number(number)
        view.point(n)
        return dcc.send_file(bundle_zip(storage, name, n, _weights(view, weights)))

    return app
