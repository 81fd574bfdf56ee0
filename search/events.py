"""What the runner reports after each trial, for progress displays (``search/display.py``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TrialEvent"]


@dataclass
class TrialEvent:
    """What the runner reports after each trial (for progress displays).

    ``state`` is ``COMPLETE``, ``SCREENED`` (complete, infeasible before fine-tuning), ``STOPPED``
    (a fidelity rung stopped it; no values), ``DUPLICATE`` (reused trial ``duplicate_of``), ``FAIL``, or
    ``LOST`` (heartbeats failed it while it ran, after this host was cut off: its config is retried).
    """

    number: int
    state: str
    values: dict[str, float] | None
    done: int
    total: int
    front_size: int
    hypervolume: float | None = None
    error: str | None = None
    duplicate_of: int | None = None
