"""SIGTERM and SIGINT as a clean stop: ``KeyboardInterrupt`` raised in the main thread, so every
``finally`` runs (uploads aborted, leases released, work directories removed) — except inside
``deferred()``, a few statements that must not be cut in two (creating a lease and registering it
for release); a signal that arrives there is raised as soon as the block ends.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_depth = 0
_pending: str | None = None


def handle(signum: int, _frame: FrameType | None) -> None:
    """The signal handler ``recpipe`` installs."""
    global _pending
    name = signal.Signals(signum).name
    if _depth:
        _pending = name
        return
    raise KeyboardInterrupt(name)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGTERM/SIGINT (as installed by ``install``) until the block ends, then raise it."""
    global _depth, _pending
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
    if _depth == 0 and _pending is not None:
        name, _pending = _pending, None
        raise KeyboardInterrupt(name)


def install() -> None:
    """Make SIGTERM and SIGINT stop this process cleanly (main thread only)."""
    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
