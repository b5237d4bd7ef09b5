"""The stretches of a recpipe S3 → S3 run in which at most one core can work, from the S3 server's log.

``<link>.s3_to_s3_floor`` spreads a run's CPU seconds (recpipe's, the S3 server's, the proxy's) perfectly
over every core. Two stretches of every run cannot be spread: from the command's start to its first
slice GET (the interpreter, the imports, the client, the listing and the playlist: one thread, then one
request at a time), and the server's CompleteMultipartUpload (moto joins the parts on one thread while
the client waits for its answer). With ``serial`` seconds of those and ``busy`` CPU seconds in all, a
run takes at least ``serial + (busy - serial) / cores``: the serial stretches use at most ``serial``
CPU seconds, and the rest can at best be spread. ``<link>.s3_to_s3_floor_serial`` is that bound, run by
run, against the naive pipeline.

The start-up stretch is one core's only when ffmpeg's version is already known (``stages.ffmpeg``'s
version cache, which every run after the first finds); the first run of a new ffmpeg asks it beside
the start-up, which can only make its bound a little high.

The S3 server (``tests.bench.s3server --timeline PATH``) appends one line per such request, in epoch
seconds: ``get <start>`` for a GET of a ``.ts`` object, ``complete <start> <end>`` for a
CompleteMultipartUpload.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, slots=True)
class Serial:
    """A run's single-core stretches, seconds."""

    startup: float
    """From the command's start to its first slice GET reaching the server."""
    complete: float
    """The CompleteMultipartUploads the server answered during the run."""

    @property
    def seconds(self) -> float:
        return self.startup + self.complete

    def bound(self, *, busy: float, cores: int) -> float:
        """The least wall time of a run that used ``busy`` CPU seconds in all on ``cores`` cores."""
        serial = min(self.seconds, busy)
        return self.seconds + (busy - serial) / cores


def request_kind(method: str, path: str, query: str) -> str | None:
    """``get`` (a slice GET), ``complete`` (CompleteMultipartUpload) or None (not logged)."""
    if method == "GET" and path.endswith(".ts"):
        return "get"
    if method == "POST" and "uploadId=" in query:
        return "complete"
    return None


def serial_stretches(lines: Iterable[str], *, start: float, end: float) -> Serial | None:
    """The stretches of the run between ``start`` and ``end`` (epoch seconds) from the server's
    timeline lines (completions that overlap are counted once; a line that does not parse, such as one
    cut short, is skipped); None when it made no slice GET (not a run this can bound)."""
    first_get: float | None = None
    completions: list[tuple[float, float]] = []
    for line in lines:
        kind, _, rest = line.partition(" ")
        try:
            times = [float(stamp) for stamp in rest.split()]
        except ValueError:
            continue
        if not times or not start <= times[0] <= end:
            continue
        if kind == "get":
            first_get = times[0] if first_get is None else min(first_get, times[0])
        elif kind == "complete" and len(times) == 2:
            completions.append((times[0], min(times[1], end)))
    if first_get is None:
        return None
    return Serial(startup=first_get - start, complete=covered(completions))


def covered(intervals: Iterable[tuple[float, float]]) -> float:
    """Seconds covered by the union of ``(start, end)`` intervals."""
    total, reach = 0.0, float("-inf")
    for begin, finish in sorted(intervals):
        if finish > reach:
            total += finish - max(begin, reach)
            reach = finish
    return total
