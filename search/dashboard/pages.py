"""The dashboard's pages: the studies, one study, a comparison, a trial's detail, and the exports.

Built from :mod:`.figures` and :mod:`.data`; :func:`page_for` routes a URL path to one, or to a
message saying what is not there.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

import plotly.graph_objects as go
from dash import dash_table, dcc, html

from tradeoff.objectives import Constraints, Weights
from tradeoff.search.display_data import study_row
from tradeoff.studies import record
from tradeoff.studies.export import build_config
from tradeoff.studies.results import pick

from .data import DashboardError, Point, StudyView, study_names, study_view
from .figures import compare_figure, parcoords_figure, progress_figure, recipe_figure

LIMIT_KEYS = ("max_accuracy_drop", "max_size_bytes", "max_latency_ms", "max_energy_mj")


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
                # deployable less scored accuracy, in points; "!" past half a point (record.gap_flagged)
                "acc_gap": _gap_text(p.figures.get("accuracy_gap")),
            }
        )
    return rows


def _gap_text(gap: Any) -> str:
    if not isinstance(gap, (int, float)):
        return ""
    return f"{100 * gap:+.2f} pt" + (" !" if abs(gap) > record.ACCURACY_GAP_FLAG else "")


def _flagged(p: Point) -> bool:
    gap = p.figures.get("accuracy_gap")
    return isinstance(gap, (int, float)) and abs(gap) > record.ACCURACY_GAP_FLAG


def _two_accuracies(p: Point) -> str:
    """The deployable form's accuracy (the front's) and the scored model's, when both were measured."""
    f = p.figures
    if "deployable_accuracy" not in f:
        return ""
    text = (
        f"accuracy {f['deployable_accuracy']:.4f} on the deployable form (the front's), "
        f"{f['scored_accuracy']:.4f} on the scored model ({100 * f['accuracy_gap']:+.2f} points)"
    )
    return text + (": more than half a point apart" if _flagged(p) else "")


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
            html.P(_two_accuracies(p), className="error" if _flagged(p) else ""),
            html.P(p.finetune.get("why_kept") or p.finetune.get("explanation") or ""),
        ]
    )


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
                columns=[{"name": c, "id": c} for c in ("trial", "state", "fidelity", "stop_reason", "prune", "wbits", "abits", "form", *view.names, "acc_gap")],
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
