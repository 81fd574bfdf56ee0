"""A self-contained HTML page of a study's front, one trial highlighted (Plotly, no network needed)."""

from __future__ import annotations

from pathlib import Path

import optuna
import plotly.graph_objects as go
from optuna.trial import TrialState

from .results import FrontEntry, objective_names_of

LABELS = {
    "accuracy": "accuracy",
    "size_bytes": "size (bytes)",
    "params": "parameters",
    "nonzero_params": "non-zero parameters",
    "macs": "MACs",
    "bops": "BOPs",
    "latency_ms": "latency (ms)",
    "energy_mj": "energy (mJ)",
}


def front_figure(study: optuna.Study, front: list[FrontEntry], chosen: FrontEntry) -> go.Figure:
    """Scatter matrix of the four objectives: every completed trial, the front, the chosen trial."""
    names = objective_names_of(study)
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    on_front = {e.trial.number for e in front}

    def trace(trials: list, name: str, color: str, size: int, symbol: str) -> go.Splom:
        return go.Splom(
            dimensions=[
                {"label": LABELS.get(n, n), "values": [t.values[i] for t in trials]} for i, n in enumerate(names)
            ],
            text=[f"trial {t.number}" for t in trials],
            name=name,
            marker={"color": color, "size": size, "symbol": symbol, "line": {"width": 0.5, "color": "white"}},
            diagonal_visible=False,
            showupperhalf=False,
        )

    fig = go.Figure(
        [
            trace([t for t in done if t.number not in on_front], "dominated or infeasible", "#bbbbbb", 6, "circle"),
            trace([e.trial for e in front], "Pareto front (feasible)", "#1f77b4", 8, "circle"),
            trace([chosen.trial], f"exported: trial {chosen.trial.number}", "#d62728", 14, "star"),
        ]
    )
    fig.update_layout(
        title=f"{study.study_name}: trial {chosen.trial.number} on the front of {len(done)} completed trials",
        height=820,
        width=980,
        legend={"orientation": "h", "x": 0, "y": 1.06},
        margin={"b": 110},
    )
    return fig


def write_report(study: optuna.Study, front: list[FrontEntry], chosen: FrontEntry, path: Path, note: str) -> None:
    """Write the page; ``note`` says how the figures were obtained."""
    fig = front_figure(study, front, chosen)
    fig.add_annotation(text=note, xref="paper", yref="paper", x=0, y=-0.12, showarrow=False, align="left")
    fig.write_html(path, include_plotlyjs=True, full_html=True)  # self-contained: plotly.js inlined
