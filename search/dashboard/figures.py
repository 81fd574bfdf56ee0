"""The dashboard's figures: the front in 2-D, 3-D or all pairs, progress, comparison, recipe, knobs.

Plain functions of a :class:`~tradeoff.search.dashboard.data.StudyView`, so the callbacks and the
tests call the same code. Each kind of trial keeps one marker and colour everywhere (:data:`MARKERS`).
"""

from __future__ import annotations

import plotly.graph_objects as go

from tradeoff.objectives import Constraints, Weights
from tradeoff.studies import record

from .data import UNITS, Point, StudyView

MARKERS = {  # state -> (symbol, colour, label)
    "front": ("circle", "#1f77b4", "Pareto front"),
    "dominated": ("circle", "rgba(120,120,120,0.35)", "dominated"),
    "infeasible": ("circle-open", "#d62728", "infeasible"),
    "screened": ("x", "#ff7f0e", "screened (limit broken before fine-tuning)"),
    "baseline": ("star", "#2ca02c", "baseline (uncompressed)"),
}


def _gap_flagged(p: Point) -> bool:
    gap = p.figures.get("accuracy_gap")
    return isinstance(gap, (int, float)) and abs(gap) > record.ACCURACY_GAP_FLAG


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
    flagged = [p for p in view.completed() if _gap_flagged(p)]
    if flagged:  # the program that runs scores more than half a point from the simulation (issue 27)
        fig.add_trace(
            go.Scattergl(
                x=[p.values[x] for p in flagged],
                y=[p.values[y] for p in flagged],
                mode="markers",
                name=f"accuracy of the deployable form > 0.5 pt from the scored ({len(flagged)})",
                marker={"symbol": "triangle-up-open", "size": 18, "color": "#9467bd", "line": {"width": 2}},
                customdata=[p.number for p in flagged],
                text=[
                    f"trial {p.number}: deployable {p.figures['deployable_accuracy']:.4f}, scored {p.figures['scored_accuracy']:.4f}"
                    for p in flagged
                ],
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
