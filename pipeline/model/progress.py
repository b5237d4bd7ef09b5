"""Progress reporting for long work: a small protocol, a silent sink and a terminal line."""

from __future__ import annotations

import logging
import time
from typing import Protocol, TextIO

log = logging.getLogger(__name__)


class Progress(Protocol):
    """Receives progress of one task at a time (fetch, remux ...)."""

    def start(self, task: str, *, total: int, unit: str) -> None:
        """A task begins; ``total`` units are expected."""
        ...

    def advance(self, amount: int = 1) -> None:
        """``amount`` more units are done."""
        ...

    def finish(self) -> None:
        """The current task ended (successfully or not)."""
        ...


class NullProgress:
    """Prints nothing: for --quiet, --json and non-terminal runs."""

    def start(self, task: str, *, total: int, unit: str) -> None:
        """Ignore."""

    def advance(self, amount: int = 1) -> None:
        """Ignore."""

    def finish(self) -> None:
        """Ignore."""


def format_amount(value: int, *, unit: str) -> str:
    """``value`` for humans: bytes as kB/MB/GB, anything else as a count."""
    if unit != "B":
        return f"{value} {unit}"
    size = float(value)
    for suffix in ("B", "kB", "MB", "GB"):
        if size < 1000 or suffix == "GB":
            return f"{size:.0f} {suffix}" if suffix == "B" else f"{size:.1f} {suffix}"
        size /= 1000
    raise AssertionError("unreachable")


class TerminalProgress:
    """One self-overwriting status line on a terminal stream (stderr)."""

    def __init__(self, stream: TextIO, *, min_interval: float = 0.1) -> None:
        self._stream = stream
        self._min_interval = min_interval
        self._task = ""
        self._unit = ""
        self._total = 0
        self._done = 0
        self._started = 0.0
        self._last = 0.0

    def start(self, task: str, *, total: int, unit: str) -> None:
        """Begin a task line."""
        self._task, self._total, self._unit, self._done = task, total, unit, 0
        self._started = self._last = time.monotonic()
        self._draw()

    def advance(self, amount: int = 1) -> None:
        """Update the line, at most every ``min_interval`` seconds."""
        self._done += amount
        now = time.monotonic()
        if now - self._last >= self._min_interval or self._done >= self._total:
            self._last = now
            self._draw()

    def finish(self) -> None:
        """End the line with the elapsed time."""
        if self._task:
            self._draw(final=f" in {time.monotonic() - self._started:.1f} s\n")
        self._task = ""

    def _draw(self, final: str = "") -> None:
        pct = f"{100 * self._done / self._total:3.0f}%" if self._total else "   -"
        done = format_amount(self._done, unit=self._unit)
        total = format_amount(self._total, unit=self._unit)
        self._stream.write(f"\r{self._task:<7} {pct}  {done} / {total}\x1b[K{final}")
        self._stream.flush()
