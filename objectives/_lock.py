"""A host-wide lock per device, held while a figure is timed or its energy read.

Concurrent workers on one host must not time each other: every latency and energy measurement
runs inside :func:`measurement_lock`, an exclusive ``flock`` on a file named after the device in
the host's temporary folder (``$TRADEOFF_LOCK_DIR`` overrides it), so measurements on one device
take turns whatever process they come from. The lock is released when the holder exits or dies.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

POLL_S = 0.01  # how often a waiter with a timeout retries


def lock_path(device: str) -> Path:
    """The lock file of ``device`` (e.g. ``cpu``, ``cuda:0``)."""
    base = Path(os.environ.get("TRADEOFF_LOCK_DIR") or tempfile.gettempdir())
    return base / f"tradeoff-measure-{re.sub(r'[^A-Za-z0-9_.-]', '_', device)}.lock"


@contextmanager
def measurement_lock(device: str = "cpu", *, timeout: float | None = None) -> Iterator[float]:
    """Hold the host-wide measurement lock of ``device``; yields the seconds spent waiting.

    Args:
        device: The device being measured.
        timeout: Give up after this many seconds (``TimeoutError``); ``None`` waits for ever.

    Example:
        >>> with measurement_lock("cpu") as waited:
        ...     waited >= 0
        True
    """
    path = lock_path(device)
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(path, "a+b") as fh:
        if timeout is None:
            fcntl.flock(fh, fcntl.LOCK_EX)
        else:
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() - start >= timeout:
                        raise TimeoutError(
                            f"another process holds the measurement lock of {device!r} ({path}) "
                            f"after {timeout:.1f} s; is a study measuring on this host?"
                        ) from None
                    time.sleep(POLL_S)
        try:
            yield time.monotonic() - start
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
