"""The recording's timeline, reconciled from three clocks. Pure: segments in, positions and findings out.

The three clocks, and what each is good for:

- **media** — the slices' own PTS (90 kHz). Exact, but only comparable inside a *run*: slices
  not separated by ``#EXT-X-DISCONTINUITY`` (and not separated by an unsignalled jump).
- **names** — the ``<utc>`` in each slice name: the recorder's wall clock at the slice's start,
  to the millisecond. Survives discontinuities and missing slices; a single name can be wrong.
- **playlist** — the EXTINF durations. They add up to a timeline only if nothing is missing,
  so they are the fallback when neither other clock can place a slice.

Each slice is placed at a start time (seconds from the recording's start): by the media clock
when it agrees with the names, else by the two clocks that agree, else by the names. The
difference between where a slice starts and where the previous one ends is a gap or an overlap.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pipeline.model.job import Finding, Segment, Severity
from pipeline.model.media import TICKS_PER_S, SliceMedia, unwrap

log = logging.getLogger(__name__)

GAP_TOLERANCE_S = 0.25
"""A slice starting this much later than the previous one ends is still contiguous: slices end on
a frame (1/15 s at Agora's lowest frame rate) and audio on a PES, so up to a few frames of jitter
between the streams' ends is normal; a quarter second is media a viewer would notice missing."""
OVERLAP_TOLERANCE_S = 0.25
"""The same allowance backwards: audio of one slice may run a little past the next slice's video."""
CLOCK_AGREEMENT_S = 0.5
"""Two clocks placing a slice closer than this agree. Slice names are the recorder's wall clock at
the slice's start to the millisecond; the media clock is exact. Half a second absorbs the
recorder's own scheduling delay between cutting a slice and naming it."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Timeline:
    """Where each playlist entry starts (seconds from the recording's start), and what was found."""

    starts: dict[int, float]
    """Entry index → start. Every entry has one; repeated and unsafe entries sit where they are listed."""
    lengths: dict[int, float]
    """Entry index → seconds it covers: its media when readable, else its EXTINF."""
    origin: datetime | None
    """Wall-clock time of the timeline's zero, from the slice names (None without conforming names)."""
    findings: tuple[Finding, ...]

    @property
    def end_s(self) -> float:
        """End of the last entry."""
        return max((self.starts[i] + self.lengths[i] for i in self.starts), default=0.0)


def readable_media(seg: Segment) -> SliceMedia | None:
    """The slice's media facts when it holds readable, timestamped media."""
    media = seg.media
    if media is None or not media.readable or media.start_ticks is None:
        return None
    return media


def repeated_entries(segments: Iterable[Segment]) -> frozenset[int]:
    """Indexes of entries whose URI an earlier entry already listed."""
    seen: set[str] = set()
    repeats = set()
    for seg in segments:
        if seg.uri in seen:
            repeats.add(seg.index)
        seen.add(seg.uri)
    return frozenset(repeats)


@dataclass(slots=True)
class _Run:
    """The last slice placed with readable media (start, first tick): the next is measured from it."""

    start_s: float
    ticks: int


@dataclass(frozen=True, kw_only=True, slots=True)
class _Placement:
    start: float
    clock: str
    """Which clock placed the slice: ``media``, ``names`` or ``playlist``."""
    name_wrong: bool = False
    media_jump: float | None = None
    """Seconds the media clock jumps without a discontinuity tag (None when it does not)."""


def place(*, contiguous: float, by_media: float | None, by_name: float | None) -> _Placement:
    """Choose the slice's start from the clocks that can place it (see the module doc)."""
    if by_media is not None and by_name is not None:
        if abs(by_media - by_name) <= CLOCK_AGREEMENT_S:
            return _Placement(start=by_media, clock="media")
        if abs(by_media - contiguous) <= CLOCK_AGREEMENT_S:
            return _Placement(start=by_media, clock="media", name_wrong=True)
        return _Placement(start=by_name, clock="names", media_jump=by_media - by_name)
    if by_media is not None:
        return _Placement(start=by_media, clock="media")
    if by_name is not None:
        return _Placement(start=by_name, clock="names")
    return _Placement(start=contiguous, clock="playlist")


class TimelineBuilder:
    """Places entries one at a time, in playlist order: each placement needs only the entries before it.

    That is what lets the streaming pipeline place a slice as soon as its bytes are read;
    ``build_timeline`` is the same builder run over a whole playlist.
    """

    def __init__(self, *, repeats: frozenset[int]) -> None:
        self._repeats = repeats
        self._starts: dict[int, float] = {}
        self._lengths: dict[int, float] = {}
        self._findings: list[Finding] = []
        self._origin: datetime | None = None
        self._run: _Run | None = None
        self._prev: Segment | None = None

    def add(self, seg: Segment) -> float:
        """Place the next entry; returns its start (seconds from the recording's start)."""
        prev = self._prev
        self._lengths[seg.index] = seg.length_s
        contiguous = 0.0 if prev is None else self._starts[prev.index] + self._lengths[prev.index]
        if seg.key is None or seg.index in self._repeats:
            start = contiguous if prev is None else self._starts[prev.index]
            self._starts[seg.index] = start
            return start
        media = readable_media(seg)
        if prev is None:
            placed = _Placement(start=0.0, clock="names" if seg.utc else "playlist")
        else:
            placed = place(
                contiguous=contiguous, by_media=self._by_media(seg, media), by_name=self._by_name(seg)
            )
            self._findings += boundary_findings(prev, seg, placed=placed, contiguous=contiguous)
        self._starts[seg.index] = placed.start
        if seg.utc is not None and self._origin is None and not placed.name_wrong:
            self._origin = seg.utc - timedelta(seconds=placed.start)
        if media is not None:  # the next slice is measured from this one: short steps unwrap safely
            assert media.start_ticks is not None
            self._run = _Run(start_s=placed.start, ticks=media.start_ticks)
        self._prev = seg
        return placed.start

    def _by_media(self, seg: Segment, media: SliceMedia | None) -> float | None:
        run = self._run
        if media is None or run is None or seg.discontinuity:
            return None
        assert media.start_ticks is not None
        return run.start_s + (unwrap(media.start_ticks, run.ticks) - run.ticks) / TICKS_PER_S

    def _by_name(self, seg: Segment) -> float | None:
        if seg.utc is None or self._origin is None:
            return None
        return (seg.utc - self._origin).total_seconds()

    @property
    def origin(self) -> datetime | None:
        """Wall-clock time of the timeline's zero, once a slice name has given it."""
        return self._origin

    def timeline(self) -> Timeline:
        """Everything placed so far."""
        return Timeline(
            starts=dict(self._starts),
            lengths=dict(self._lengths),
            origin=self._origin,
            findings=tuple(self._findings),
        )


def build_timeline(segments: Sequence[Segment]) -> Timeline:
    """Place every entry and find gaps, overlaps, discontinuities and names that disagree with the media."""
    builder = TimelineBuilder(repeats=repeated_entries(segments))
    for seg in segments:
        builder.add(seg)
    return builder.timeline()


def entry_finding(
    seg: Segment,
    *,
    code: str,
    severity: Severity,
    at_s: float | None,
    detail: str,
    seconds: float | None = None,
) -> Finding:
    """A finding about playlist entry ``seg``."""
    return Finding(
        code=code,
        severity=severity,
        segment=seg.uri,
        entry=seg.index,
        at_s=at_s,
        seconds=seconds,
        detail=detail,
    )


def boundary_findings(prev: Segment, seg: Segment, *, placed: _Placement, contiguous: float) -> list[Finding]:
    """What the step from ``prev`` to ``seg`` shows: gap, overlap, discontinuity, a wrong name."""
    out: list[Finding] = []
    excess = placed.start - contiguous
    if excess > GAP_TOLERANCE_S:
        out.append(
            entry_finding(
                seg,
                code="TIMELINE_GAP",
                severity="error",
                at_s=contiguous,
                seconds=excess,
                detail=f"{excess:.3f} s of the recording are in no slice: {prev.uri} ends at "
                f"{contiguous:.3f} s and {seg.uri} starts at {placed.start:.3f} s "
                f"(by the {placed.clock} clock)",
            )
        )
    elif excess < -OVERLAP_TOLERANCE_S:
        out.append(
            entry_finding(
                seg,
                code="TIMELINE_OVERLAP",
                severity="error",
                at_s=placed.start,
                seconds=-excess,
                detail=f"{seg.uri} starts at {placed.start:.3f} s, {-excess:.3f} s before {prev.uri} ends "
                f"at {contiguous:.3f} s (by the {placed.clock} clock): that stretch is recorded twice",
            )
        )
    if placed.name_wrong:
        assert seg.utc is not None
        out.append(
            entry_finding(
                seg,
                code="NAME_MISMATCH",
                severity="warning",
                at_s=placed.start,
                detail=f"the time in the name of {seg.uri} ({clock_text(seg.utc)}) disagrees with its media "
                f"and the playlist, which place it at {placed.start:.3f} s; the name is ignored",
            )
        )
    reasons = discontinuity_reasons(prev, seg, excess=excess, media_jump=placed.media_jump)
    if seg.discontinuity or reasons.unsignalled:
        out.append(
            entry_finding(
                seg,
                code="DISCONTINUITY",
                severity="info" if seg.discontinuity else "warning",
                at_s=placed.start,
                detail=discontinuity_detail(seg, reasons),
            )
        )
    return out


@dataclass(frozen=True, kw_only=True, slots=True)
class Reasons:
    """What changes at a slice boundary."""

    changes: tuple[str, ...]
    unsignalled: bool
    """Whether something changes that players need a discontinuity tag for, and there is none."""


def discontinuity_reasons(prev: Segment, seg: Segment, *, excess: float, media_jump: float | None) -> Reasons:
    """The changes between two neighbouring slices: resolution, streams, an interruption, a timestamp jump."""
    changes: list[str] = []
    a, b = readable_media(prev), readable_media(seg)
    hard = False
    if a is not None and b is not None:
        if a.resolution and b.resolution and a.resolution != b.resolution:
            changes.append("resolution change {}x{} → {}x{}".format(*a.resolution, *b.resolution))
            hard = True
        if a.kinds != b.kinds:
            changes.append(f"streams change {describe_kinds(a.kinds)} → {describe_kinds(b.kinds)}")
            hard = True
        if a.video and b.video and a.video.codec != b.video.codec:
            changes.append(f"codec change {a.video.codec} → {b.video.codec}")
            hard = True
    if excess > GAP_TOLERANCE_S:
        changes.append(f"interruption: {excess:.3f} s without media")
    if media_jump is not None:
        changes.append(f"media timestamps jump {media_jump:+.3f} s against the slice names")
        hard = True
    elif seg.discontinuity and a is not None and b is not None and a.end_ticks is not None:
        assert b.start_ticks is not None
        step = (unwrap(b.start_ticks, a.end_ticks) - a.end_ticks) / TICKS_PER_S
        if abs(step) > CLOCK_AGREEMENT_S:
            changes.append(f"media timestamps restart ({step:+.3f} s)")
    return Reasons(changes=tuple(changes), unsignalled=hard and not seg.discontinuity)


def clock_text(when: datetime) -> str:
    """``2026-01-15 09:30:15.000 UTC``."""
    return f"{when:%Y-%m-%d %H:%M:%S}.{when.microsecond // 1000:03d} UTC"


def describe_kinds(kinds: Iterable[str]) -> str:
    """``audio+video``, ``audio``, ``video`` or ``none``."""
    return "+".join(sorted(kinds)) or "none"


def discontinuity_detail(seg: Segment, reasons: Reasons) -> str:
    """One sentence for a DISCONTINUITY finding."""
    what = "; ".join(reasons.changes) if reasons.changes else "no change is visible in the media"
    if seg.discontinuity:
        return f"#EXT-X-DISCONTINUITY before {seg.uri}: {what}"
    return f"unsignalled discontinuity before {seg.uri} (the playlist has no #EXT-X-DISCONTINUITY): {what}"
