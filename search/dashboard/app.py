"""The Dash app: the studies in a storage, and one study's front, weights, trials and export.

Pages (``dcc.Location``): ``/`` lists the studies; ``/study/<name>`` shows one. Every callback reads
through :mod:`.data` (read-only storage, one read per study revision) and builds its figure or table
with the plain functions below, which the tests call directly. A name or trial id from a URL or a
click is validated before the storage is asked; what is not there gets a message, never a traceback.
Nothing a page sends is executed, imported or opened as a file.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

import dash
import plotly.graph_objects as go
from dash import Input, Output, State, dash_table, dcc, html

from tradeoff.objectives import Constraints, Weights
from tradeoff.search.display_data import study_row
from tradeoff.studies.export import build_config
from tradeoff.studies.results import pick

from .data import (
    UNITS,
    DashboardError,
    Point,
    StudyView,
    parse_trial_number,
    read_only_storage,
    study_names,
    study_view,
)

STYLE = (  # a little table and error styling; no external stylesheet (the dashboard works offline)
    "<style>table{border-collapse:collapse}th,td{padding:4px 14px;text-align:left;border-bottom:1px solid #ddd}"
    ".error{color:#b00020}pre{background:#f6f6f6;padding:8px;max-height:300px;overflow:auto}</style>"
)
POLL_MS = 5000  # live updates: a running study's pages re-read it this often (one cheap revision query)
LIMIT_KEYS = ("max_accuracy_drop", "max_size_bytes", "max_latency_ms", "max_energy_mj")
MARKERS = {  # state -> (symbol, colour, label)
    "front": ("circle", "#1f77b4", "Pareto front"),
    "dominated": ("circle", "rgba(120,120,120,0.35)", "dominated"),
    "infeasible": ("circle-open", "#d62728", "infeasible"),
    "screened": ("x", "#ff7f0e", "screened (limit broken before fine-tuning)"),
    "baseline": ("star", "#2ca02c", "baseline (uncompressed)"),
}


def axis_title(view: StudyView, name: str) -> str:
    """An objective's axis title: its unit and how it was obtained (measured, computed or estimated)."""
    sources = {p.provenance.get(name, {}).get("source") for p in view.completed()} - {None}
    how = "/".join(sorted(sources)) or "?"
    return f"{name} ({UNITS.get(name, '')}, {how})"


def classify(
    view: StudyView, weights: Weights, limits: Constraints
) -> tuple[dict[str, list[Point]], list[tuple[Point, float]]]:
    """The completed trials in marker groups, and the front ranked under ``weights`` and ``limits``."""
    front = view.front(weights, limits)
    on_front = {p.number for p, _ in front}
    groups: dict[str, list[Point]] = {k: [] for k in MARKERS}
    for p in view.completed():
        if p.role == "baseline":
            groups["baseline"].append(p)
        elif p.state == "screened":
            groups["screened"].append(p)
        elif p.number in on_front:
            groups["front"].append(p)
        elif not view._meets(p, limits):
            groups["infeasible"].append(p)
        else:
            groups["dominated"].append(p)
    return groups, front


def recipe_text(p: Point) -> str:
    """A short recipe for hovers: pruning ratio, bit-widths, T and alpha."""
    r = p.recipe
    pr, q, d = r.get("pruning", {}), r.get("quantization", {}), r.get("distillation", {})
    return (
        f"trial {p.number} · prune {pr.get('ratio', 0):.2f} · w{q.get('weight_bits', 32)}/a{q.get('activation_bits', 32)}"
        f" · T {d.get('temperature', '-')} · alpha {d.get('alpha', '-')} · {p.deployable_form or '-'}"
    )


def front_figure(view: StudyView, x: str, y: str, weights: Weights, limits: Constraints) -> go.Figure:
    """The 2-D front: WebGL scatter, front joined and highlighted, other kinds with their own marker,
    the best trial under ``weights`` ringed and the knee marked."""
    groups, front = classify(view, weights, limits)
    fig = go.Figure()
    for kind, (symbol, colour, label) in MARKERS.items():
        pts = groups[kind]
        if kind == "front":
            pts = sorted(pts, key=lambda p: p.values[x])
        fig.add_trace(
            go.Scattergl(
                x=[p.values[x] for p in pts],
                y=[p.values[y] for p in pts],
                mode="lines+markers" if kind == "front" else "markers",
                name=f"{label} ({len(pts)})",
                marker={"symbol": symbol, "color": colour, "size": 12 if kind in ("front", "baseline") else 8},
                text=[recipe_text(p) for p in pts],
                customdata=[p.number for p in pts],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    best, knee = (front[0][0] if front else None), view.knee(front)
    for p, label, symbol in ((best, "best under these weights", "circle-open"), (knee, "knee", "diamond-open")):
        if p is not None:
            fig.add_trace(
                go.Scattergl(
                    x=[p.values[x]],
                    y=[p.values[y]],
                    mode="markers",
                    name=f"{label}: trial {p.number}",
                    marker={"symbol": symbol, "size": 22, "color": "black", "line": {"width": 2}},
                    customdata=[p.number],
                    hoverinfo="skip",
                )
            )
    stopped = sum(1 for p in view.points if p.state == "stopped")
    fig.update_layout(
        xaxis_title=axis_title(view, x),
        yaxis_title=axis_title(view, y),
        margin={"l": 60, "r": 20, "t": 40, "b": 50},
        title=f"{view.name}: {len(view.completed())} trials with values, {stopped} stopped at a rung (no values)",
        legend={"orientation": "h", "y": -0.2},
        height=520,
    )
    return fig


def front_views(view: StudyView, kind: str, x: str, y: str, weights: Weights, limits: Constraints) -> go.Figure:
    """The front as ``kind``: ``"2d"`` (:func:`front_figure`), ``"3d"`` (x, y and the next objective)
    or ``"matrix"`` (every pair of the four objectives)."""
    if kind == "2d":
        return front_figure(view, x, y, weights, limits)
    groups, _ = classify(view, weights, limits)
    order = [k for k in MARKERS if groups[k]]
    if kind == "3d":
        z = next(n for n in view.names if n not in (x, y))
        fig = go.Figure(
            [
                go.Scatter3d(
                    x=[p.values[x] for p in groups[k]],
                    y=[p.values[y] for p in groups[k]],
                    z=[p.values[z] for p in groups[k]],
                    mode="markers",
                    name=MARKERS[k][2],
                    marker={"color": MARKERS[k][1], "size": 4},
                    text=[recipe_text(p) for p in groups[k]],
                    hovertemplate="%{text}<extra></extra>",
                )
                for k in order
            ]
        )
        fig.update_layout(
            scene={
                "xaxis_title": axis_title(view, x),
                "yaxis_title": axis_title(view, y),
                "zaxis_title": axis_title(view, z),
            },
            height=560,
            margin={"l": 0, "r": 0, "t": 30, "b": 0},
        )
        return fig
    fig = go.Figure(
        [
            go.Splom(
                dimensions=[{"label": n, "values": [p.values[n] for p in groups[k]]} for n in view.names],
                name=MARKERS[k][2],
                marker={"color": MARKERS[k][1], "size": 5},
                text=[recipe_text(p) for p in groups[k]],
                diagonal_visible=False,
            )
            for k in order
        ]
    )
    fig.update_layout(height=640, margin={"l": 60, "r": 20, "t": 30, "b": 40})
    return fig


def progress_figure(view: StudyView) -> go.Figure:
    """Hypervolume after each trial, against the trial number and against wall-clock time."""
    rows = [r for r in view.hypervolume if r["hypervolume"] is not None]
    fig = go.Figure(
        [
            go.Scatter(x=[r["trial"] for r in rows], y=[r["hypervolume"] for r in rows], mode="lines+markers",
                       name="against trial number", xaxis="x"),
            go.Scatter(x=[r["elapsed_s"] / 60 for r in rows], y=[r["hypervolume"] for r in rows], mode="lines+markers",
                       name="against minutes since the first trial", xaxis="x2"),
        ]
    )  # fmt: skip
    fig.update_layout(
        xaxis={"title": "trial", "domain": [0, 0.47]},
        xaxis2={"title": "minutes", "domain": [0.53, 1.0], "anchor": "y"},
        yaxis_title="hypervolume (normalised, feasible front)",
        height=320,
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
        legend={"orientation": "h", "y": -0.3},
    )
    return fig


def compare_figure(views: list[StudyView], x: str, y: str, *, normalised: bool) -> go.Figure:
    """The feasible fronts of several studies on one plot, in each study's normalised space (relative to
    its own baseline) or in absolute units: does a config transfer to the other target?"""
    fig = go.Figure()
    for view in views:
        limits = Constraints(**view.limits)
        front = sorted((p for p, _ in view.front(view.weights, limits)), key=lambda p: p.values[x])
        base = view.baseline or {}

        def at(p: Point, n: str, base: dict[str, float] = base) -> float:
            if not normalised or n not in base or not base[n]:
                return p.values[n]
            return p.values[n] / base[n]

        fig.add_trace(
            go.Scattergl(
                x=[at(p, x) for p in front],
                y=[at(p, y) for p in front],
                mode="lines+markers",
                name=f"{view.name} ({view.device}, {len(front)} on the front)",
                text=[f"{view.name}: {recipe_text(p)}" for p in front],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    suffix = " / its study's baseline" if normalised else ""
    fig.update_layout(
        xaxis_title=f"{x}{suffix}",
        yaxis_title=f"{y}{suffix}",
        height=480,
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def best_summary(view: StudyView, weights: Weights, limits: Constraints) -> str:
    front = view.front(weights, limits)
    if not front:
        return "No completed trial meets these limits."
    best, cost = front[0]
    knee = view.knee(front)
    return (
        f"Best under these weights: trial {best.number} (cost {cost:.3f}); knee: trial "
        f"{knee.number if knee else '-'}; {len(front)} trials on the front."
    )


def trial_rows(view: StudyView) -> list[dict[str, Any]]:
    """The trials table: state, fidelity reached, stop reason, the knobs and the four values."""
    rows = []
    for p in view.points:
        r = p.recipe
        q = r.get("quantization", {})
        rows.append(
            {
                "trial": p.number,
                "state": p.state,
                "fidelity": f"{p.rungs[-1]['fraction']:g}"
                if p.state == "stopped" and p.rungs
                else ("1" if p.values else "-"),
                "stop_reason": p.stop_reason or "",
                "prune": r.get("pruning", {}).get("ratio", 0),
                "wbits": q.get("weight_bits", 32),
                "abits": q.get("activation_bits", 32),
                "form": p.deployable_form or "",
                **{n: (float(f"{p.values[n]:.4g}") if n in p.values else None) for n in view.names},
            }
        )
    return rows


def _spread(value: Any) -> str:
    return "-" if value is None else (f"{value:.3g}" if isinstance(value, (int, float)) else str(value))


def trial_detail(view: StudyView, number: int) -> html.Div:
    """Recipe, every figure with its provenance, the baseline beside it, and the form it executed as."""
    p = view.point(number)
    base = view.baseline or {}
    rows = [
        html.Tr(
            [
                html.Td(n),
                html.Td(f"{p.values[n]:.6g}" if n in p.values else "-"),
                html.Td(f"{base[n]:.6g}" if n in base else "-"),
                html.Td(p.provenance.get(n, {}).get("source", "?")),
                html.Td(p.provenance.get(n, {}).get("method", "")),
                html.Td(
                    f"{p.provenance.get(n, {}).get('device', '')}, {p.provenance.get(n, {}).get('threads', '?')} thr"
                ),
                html.Td(str(p.provenance.get(n, {}).get("repeats", "-"))),
                html.Td(_spread(p.provenance.get(n, {}).get("spread"))),
            ]
        )
        for n in view.names
    ]
    head = html.Tr(
        [
            html.Th(h)
            for h in ("objective", f"trial {p.number}", "baseline", "source", "method", "where", "repeats", "spread")
        ]
    )
    return html.Div(
        [
            html.H4(f"Trial {p.number}: {p.state}, executed as {p.deployable_form or '-'}"),
            html.Table([head, *rows], className="detail"),
            dcc.Graph(figure=recipe_figure(p), id="trial-recipe-chart"),
            html.Pre(json.dumps(p.recipe, indent=1), id="trial-recipe"),
            html.P(p.finetune.get("why_kept") or p.finetune.get("explanation") or ""),
        ]
    )


def recipe_figure(p: Point) -> go.Figure:
    """The recipe over the model's layer groups: pruning ratio and weight bits per group (the rest of
    the layers take the recipe's own ratio and width)."""
    pr, q = p.recipe.get("pruning", {}), p.recipe.get("quantization", {})
    groups = list(dict.fromkeys([*pr.get("groups", {}), *q.get("groups", {})])) + ["(other layers)"]
    ratios = [pr.get("groups", {}).get(g, pr.get("ratio", 0.0)) for g in groups]
    bits = [q.get("groups", {}).get(g, q.get("weight_bits", 32)) for g in groups]
    fig = go.Figure(
        [
            go.Bar(x=groups, y=ratios, name="channels pruned (fraction)", yaxis="y"),
            go.Scatter(
                x=groups,
                y=bits,
                name="weight bits",
                yaxis="y2",
                mode="markers",
                marker={"size": 14, "symbol": "diamond"},
            ),
        ]
    )
    fig.update_layout(
        yaxis={"title": "pruned", "range": [0, 1]},
        yaxis2={"title": "weight bits", "overlaying": "y", "side": "right", "range": [0, 33]},
        height=260,
        margin={"l": 50, "r": 50, "t": 20, "b": 40},
        legend={"orientation": "h", "y": -0.35},
    )
    return fig


def parcoords_figure(view: StudyView) -> go.Figure:
    """Knobs against objectives, one line per trial with values, coloured by accuracy."""
    done = view.completed()

    def knob(p: Point, technique: str, key: str, default: float) -> float:
        value = p.recipe.get(technique, {}).get(key, default)
        return float(value) if isinstance(value, (int, float)) else default

    dims = [
        {"label": "prune", "values": [knob(p, "pruning", "ratio", 0.0) for p in done]},
        {"label": "weight bits", "values": [knob(p, "quantization", "weight_bits", 32) for p in done]},
        {"label": "act. bits", "values": [knob(p, "quantization", "activation_bits", 32) for p in done]},
        {"label": "T", "values": [knob(p, "distillation", "temperature", 0.0) for p in done]},
        {"label": "alpha", "values": [knob(p, "distillation", "alpha", 0.0) for p in done]},
        *({"label": n, "values": [p.values[n] for p in done]} for n in view.names),
    ]
    fig = go.Figure(
        go.Parcoords(dimensions=dims, line={"color": [p.values[view.names[0]] for p in done], "colorscale": "Viridis"})
    )
    fig.update_layout(height=380, margin={"l": 60, "r": 60, "t": 70, "b": 20})
    return fig


def config_json(storage: Any, name: str, number: int, weights: Weights) -> str:
    """The selected trial's ``config.json`` (as ``tradeoff export`` writes it, without the model files)."""
    import optuna

    study = optuna.load_study(study_name=name, storage=storage)
    entry = pick(study, str(number), weights)
    return json.dumps(build_config(study, entry, str(number), weights), indent=2) + "\n"


def bundle_zip(storage: Any, name: str, number: int, weights: Weights) -> str:
    """The full export bundle of a trial (``tradeoff export``), zipped into a temporary folder."""
    import shutil
    import tempfile
    from pathlib import Path

    import optuna

    from tradeoff.studies.export import export_bundle

    study = optuna.load_study(study_name=name, storage=storage)
    folder = Path(tempfile.mkdtemp(prefix="tradeoff-bundle-"))
    export_bundle(study, folder / f"{name}-trial-{number}", rule=str(number), weights=weights)
    return shutil.make_archive(str(folder / f"{name}-trial-{number}"), "zip", folder / f"{name}-trial-{number}")


def _weights(view: StudyView, values: list[float | None]) -> Weights:
    vals = tuple(float(v or 0.0) for v in values)
    return Weights(vals, view.names) if sum(vals) > 0 else view.weights


def _limits(values: list[Any]) -> Constraints:
    out = {}
    for key, v in zip(LIMIT_KEYS, values, strict=True):
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0:
            out[key] = float(v)
    return Constraints(**out)


def sparkline(view: StudyView) -> dcc.Graph:
    """A study's hypervolume against trials, small enough for a table cell."""
    rows = [r for r in view.hypervolume if r["hypervolume"] is not None]
    fig = go.Figure(go.Scatter(x=[r["trial"] for r in rows], y=[r["hypervolume"] for r in rows], mode="lines"))
    fig.update_layout(
        height=36, width=140, margin={"l": 0, "r": 0, "t": 0, "b": 0}, xaxis_visible=False, yaxis_visible=False
    )
    return dcc.Graph(figure=fig, config={"staticPlot": True}, style={"height": "36px", "width": "140px"})


def compare_page(views: list[StudyView]) -> html.Div:
    """Fronts of several studies overlaid, relative to each study's own baseline and in absolute units."""
    x, y = views[0].names[1], views[0].names[0]
    return html.Div(
        [
            html.H2("Compare: " + ", ".join(v.name for v in views)),
            html.P("Each study's feasible front under its own weights and limits."),
            dcc.Graph(id="compare-normalised", figure=compare_figure(views, x, y, normalised=True)),
            dcc.Graph(id="compare-absolute", figure=compare_figure(views, x, y, normalised=False)),
        ]
    )


def studies_page(storage: Any, url: str = "") -> html.Div:
    rows = []
    for name in study_names(storage):
        import optuna

        s = optuna.load_study(study_name=name, storage=storage)
        r = study_row(s)
        hv = r["hypervolume"]
        try:
            view = study_view(storage, url, name)
            device, spark = view.device, sparkline(view)
        except DashboardError:  # an Optuna study tradeoff did not make: listed, not drawn
            device, spark = "-", ""
        rows.append(
            html.Tr(
                [
                    html.Td(dcc.Link(name, href=f"/study/{name}")),
                    html.Td(r["task"] or "-"),
                    html.Td(device),
                    html.Td(f"{r['complete']} / {r['budget'] or '?'}"),
                    html.Td(str(r["front"])),
                    html.Td("-" if hv is None else f"{hv:.4f}"),
                    html.Td(spark),
                    html.Td("running" if r["running"] else ""),
                ]
            )
        )
    head = html.Tr(
        [
            html.Th(h)
            for h in ("study", "task", "target", "trials done / budget", "front", "hypervolume", "over trials", "")
        ]
    )
    names = study_names(storage)
    return html.Div(
        [
            html.H2("Studies"),
            html.Table([head, *rows], id="studies"),
            html.H3("Compare fronts"),
            dcc.Checklist(names, [], id="compare-pick", inline=True),
            dcc.Link("pick two or more studies", href="/", id="compare-link"),
        ]
    )


def study_page(view: StudyView) -> html.Div:
    w = view.weights.as_dict()
    sliders = [
        html.Div(
            [
                html.Label(n),
                dcc.Slider(0, 1, 0.05, value=w.get(n, 0.0), id={"type": "weight", "name": n}, marks=None),
            ],
            className="slider",
        )
        for n in view.names
    ]  # fmt: skip
    limits = [
        html.Div(
            [html.Label(k), dcc.Input(type="number", min=0, value=view.limits.get(k), id={"type": "limit", "name": k})]
        )
        for k in LIMIT_KEYS
    ]
    return html.Div(
        [
            dcc.Store(id="study-name", data=view.name),
            dcc.Store(id="selected", data=None),
            dcc.Store(id="revision", data=list(view.revision)),  # what this page's table and progress show
            html.H2(f"{view.name} · task {view.task} · {view.device} · {len(view.completed())}/{view.budget} trials"),
            html.Div(
                [
                    html.Div(  # the controls, in a column beside the plot
                        [
                            html.H4("Axes"),
                            html.Label("x"),
                            dcc.Dropdown(list(view.names), view.names[1], id="x-axis", clearable=False),
                            html.Label("y"),
                            dcc.Dropdown(list(view.names), view.names[0], id="y-axis", clearable=False),
                            html.H4("Weights (re-rank the front; nothing is saved)"),
                            html.Div(sliders, className="weights"),
                            html.H4("Limits (filter the front)"),
                            html.Div(limits, className="limits"),
                        ],
                        style={"flex": "0 0 300px", "fontSize": "13px"},
                    ),
                    html.Div(
                        [
                            html.P(id="best", style={"fontWeight": "bold"}),
                            dcc.RadioItems(
                                [{"label": "2-D", "value": "2d"}, {"label": "3-D", "value": "3d"},
                                 {"label": "all four", "value": "matrix"}],
                                "2d", id="view-kind", inline=True,
                            ),
                            dcc.Graph(id="front"),
                        ],
                        style={"flex": "1 1 auto", "minWidth": "0"},
                    ),
                ],
                style={"display": "flex", "gap": "24px"},
            ),
            html.H3("Progress"),
            dcc.Graph(id="progress", figure=progress_figure(view)),
            html.H3("Trials"),
            dash_table.DataTable(
                id="trials",
                columns=[{"name": c, "id": c} for c in ("trial", "state", "fidelity", "stop_reason", "prune", "wbits", "abits", "form", *view.names)],
                data=trial_rows(view),
                sort_action="native",
                filter_action="native",
                page_size=15,
            ),
            dcc.Graph(id="parcoords", figure=parcoords_figure(view)),
            html.Div(id="detail"),
            html.Button("Download config.json", id="export"),
            html.Button(
                "Download the bundle (rebuilds the model here: seconds)",
                id="export-bundle",
                disabled=not view.task_importable,
                title="" if view.task_importable else f"the task {view.task!r} cannot be imported on this host",
            ),
            dcc.Download(id="download"),
            dcc.Download(id="download-bundle"),
        ]
    )  # fmt: skip


def page_for(storage: Any, url: str, pathname: str | None) -> html.Div:
    """The page at ``pathname``: the studies, one study, or a message saying what is not there."""
    path = unquote(pathname or "/")
    try:
        if path in ("/", ""):
            return studies_page(storage, url)
        if path.startswith("/compare/"):
            names = [n for n in path[len("/compare/") :].split(",") if n]
            if not 2 <= len(names) <= 8:
                raise DashboardError("compare two to eight studies: /compare/NAME,NAME")
            return compare_page([study_view(storage, url, n) for n in names])
        if path.startswith("/study/"):
            return study_page(study_view(storage, url, path[len("/study/") :]))
        raise DashboardError(f"no page at {path[:80]!r}; the studies are at /.")
    except DashboardError as exc:
        return html.Div([html.P(str(exc), className="error"), dcc.Link("all studies", href="/")])


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
