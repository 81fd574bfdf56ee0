"""``tradeoff dashboard``: the studies of a storage in a browser, read-only (Dash).

Example:
    >>> from tradeoff.search.dashboard import DEFAULT_HOST
    >>> DEFAULT_HOST
    '127.0.0.1'
"""

from __future__ import annotations

from .app import create_app, front_figure, trial_detail, trial_rows
from .data import DashboardError, StudyView, check_name, parse_trial_number, read_only_storage, study_view

DEFAULT_HOST = "127.0.0.1"  # this machine only, unless told otherwise: a study can reveal a model's design
DEFAULT_PORT = 8050  # Dash's usual port


def serve(url: str, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve the dashboard over the storage at ``url`` until interrupted."""
    app = create_app(url)
    where = "this machine only" if host in ("127.0.0.1", "localhost") else f"every interface matching {host}"
    print(f"tradeoff dashboard on http://{host}:{port}/ ({where}; read-only: {url})", flush=True)
    app.run(host=host, port=port, debug=False)


__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DashboardError",
    "StudyView",
    "check_name",
    "create_app",
    "front_figure",
    "parse_trial_number",
    "read_only_storage",
    "serve",
    "study_view",
    "trial_detail",
    "trial_rows",
]
