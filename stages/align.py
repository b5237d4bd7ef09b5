"""Individual mode: put one user's audio and video streams on one clock. Pure: segments in, a plan out.

Each stream was verified on its own; its slices carry a start (``at_s``) on the stream's own
timeline, whose zero is the wall-clock time in its first slice's name. The recorder's ``<utc>``
names are the one clock the two streams share, so the user's clock starts at the earlier of the two
streams, and each stream is placed on it by the difference of their first names — that is what
keeps lips and voice together.

A user who left and came back leaves a stretch in which neither stream has media: an *absence*.
``keep`` leaves it in the MP4 (the picture holds the last frame, the sound is silence), so a
position in the MP4 is the time since the user's first media; ``cut`` removes it from both streams
at once, so the MP4 holds only the time the user was there, still in sync. A stretch that only one
stream lacks (microphone or camera off) is never cut: the picture holds, or silence is inserted.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pipeline.model.exceptions import MediaError
from pipeline.model.job import Absent, Segment
from pipeline.model.media import TICKS_PER_S
from stages.splice import wrap_shift
from stages.timeline import GAP_TOLERANCE_S, OVERLAP_TOLERANCE_S

log = logging.getLogger(__name__)

StreamName = Literal["audio", "video"]

STREAMS: tuple[StreamName, ...] = ("video", "audio")
BASE_TICKS = 10 * TICKS_PER_S
"""Every output timestamp is planned this much late and taken back by ffmpeg (``-output_ts_offset``),
so a video's first decode time (before its first presentation time) never goes below zero."""
SILENCE_MIN_S = 0.1
"""Holes in the sound shorter than this are left to the player (a few AAC frames of jitter)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Piece:
    """One slice placed on the output's clock."""

    stream: StreamName
    index: int
    """Its entry index in its stream's playlist."""
    shift: int
    """Ticks added to every timestamp of the slice (modulo 2^33)."""
    start_s: float
    end_s: float


@dataclass(frozen=True, kw_only=True, slots=True)
class Span:
    """A stretch of time, in seconds."""

    start_s: float
    seconds: float

    @property
    def end_s(self) -> float:
        """Where it ends."""
        return self.start_s + self.seconds


@dataclass(frozen=True, kw_only=True, slots=True)
class MergePlan:
    """How one user's streams become one MP4."""

    origin: datetime
    """The user's clock zero: the wall-clock time of the earlier stream's first slice."""
    starts: Mapping[StreamName, float]
    """Where each stream's first slice begins on the user's clock."""
    pieces: Mapping[StreamName, tuple[Piece, ...]]
    absences: tuple[Span, ...]
    """Stretches on the user's clock in which neither stream has media."""
    silences: tuple[Span, ...]
    """Holes in the sound, on the output's clock, to be filled with silence."""
    dropped: tuple[Piece, ...]
    """Slices left out because they cover time an earlier slice of the same stream already covers."""
    absent: Absent

    @property
    def duration_s(self) -> float:
        """How long the MP4 should last: to the end of the last slice, on the output's clock."""
        return max((p.end_s for ps in self.pieces.values() for p in ps), default=0.0)

    def output_start(self, stream: StreamName) -> float | None:
        """Where the stream's first slice begins in the MP4."""
        pieces = self.pieces.get(stream, ())
        return pieces[0].start_s if pieces else None


def stream_origin(segments: Sequence[Segment]) -> datetime | None:
    """The wall-clock time of the stream's timeline zero, from the first placed slice with a name time."""
    for seg in segments:
        if seg.utc is not None and seg.at_s is not None:
            return seg.utc - timedelta(seconds=seg.at_s)
    return None


def absences(spans: Sequence[Span]) -> tuple[Span, ...]:
    """The stretches between ``spans`` (start to end of them all) that none of them covers, longer
    than the timeline's gap tolerance."""
    out: list[Span] = []
    reach: float | None = None
    for span in sorted(spans, key=lambda s: s.start_s):
        if reach is not None and span.start_s - reach > GAP_TOLERANCE_S:
            out.append(Span(start_s=reach, seconds=span.start_s - reach))
        reach = span.end_s if reach is None else max(reach, span.end_s)
    return tuple(out)


def clock_mapping(gone: Sequence[Span], *, absent: Absent) -> Callable[[float], float]:
    """User's clock → output clock: the identity for ``keep``; for ``cut``, every absence before a time
    taken out of it."""
    if absent == "keep" or not gone:
        return lambda t: t

    def cut(t: float) -> float:
        removed = math.fsum(a.seconds for a in gone if a.end_s <= t + 1e-9)
        return t - removed

    return cut


def place_stream(
    stream: StreamName, segments: Sequence[Segment], *, offset_s: float, to_output: Callable[[float], float]
) -> tuple[tuple[Piece, ...], tuple[Piece, ...]]:
    """The stream's usable slices as pieces on the output clock, and those left out as overlapping."""
    kept: list[Piece] = []
    dropped: list[Piece] = []
    for seg in sorted(segments, key=lambda s: (s.at_s or 0.0, s.index)):
        media = seg.media
        assert seg.at_s is not None
        assert media is not None
        assert media.start_ticks is not None
        start = to_output(offset_s + seg.at_s)
        target = round(start * TICKS_PER_S) + BASE_TICKS
        piece = Piece(
            stream=stream,
            index=seg.index,
            shift=wrap_shift(target - media.start_ticks),
            start_s=start,
            end_s=start + seg.length_s,
        )
        if kept and piece.start_s < kept[-1].end_s - OVERLAP_TOLERANCE_S:
            dropped.append(piece)
            continue
        kept.append(piece)
    return tuple(kept), tuple(dropped)


def sound_holes(pieces: Sequence[Piece]) -> tuple[Span, ...]:
    """Holes between consecutive audio pieces (output clock) long enough to fill with silence."""
    holes = []
    for prev, nxt in itertools.pairwise(pieces):
        if nxt.start_s - prev.end_s >= SILENCE_MIN_S:
            holes.append(Span(start_s=prev.end_s, seconds=nxt.start_s - prev.end_s))
    return tuple(holes)


def placeable(segments: Sequence[Segment]) -> tuple[Segment, ...]:
    """The slices that can go into the MP4: usable, placed, with readable timestamps."""
    return tuple(
        s
        for s in segments
        if s.present
        and s.defect is None
        and s.at_s is not None
        and s.media is not None
        and s.media.start_ticks is not None
    )


def plan_merge(streams: Mapping[StreamName, Sequence[Segment]], *, absent: Absent) -> MergePlan:
    """Plan one user's MP4 from the verified segments of each of their streams.

    MediaError when no stream has a placeable slice, or a stream's slices carry no name time to
    align it by.
    """
    usable = {name: placeable(segs) for name, segs in streams.items()}
    usable = {name: segs for name, segs in usable.items() if segs}
    if not usable:
        raise MediaError("neither the audio nor the video stream has a usable slice")
    origins: dict[StreamName, datetime] = {}
    for name, segs in usable.items():
        found = stream_origin(segs)
        if found is None:
            raise MediaError(f"the {name} slices carry no time in their names: the streams cannot be aligned")
        origins[name] = found
    origin = min(origins.values())
    starts = {name: (when - origin).total_seconds() for name, when in origins.items()}
    spans = [
        Span(start_s=starts[name] + s.at_s, seconds=s.length_s)
        for name, segs in usable.items()
        for s in segs
        if s.at_s is not None
    ]
    gone = absences(spans)
    to_output = clock_mapping(gone, absent=absent)
    pieces: dict[StreamName, tuple[Piece, ...]] = {}
    dropped: list[Piece] = []
    for name in STREAMS:
        if name in usable:
            pieces[name], left_out = place_stream(
                name, usable[name], offset_s=starts[name], to_output=to_output
            )
            dropped += left_out
    return MergePlan(
        origin=origin,
        starts=starts,
        pieces=pieces,
        absences=gone,
        silences=sound_holes(pieces.get("audio", ())),
        dropped=tuple(dropped),
        absent=absent,
    )
