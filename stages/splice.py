"""How the usable slices become MP4 timestamps and MP4 files. Pure: placed slices in, decisions out.

The rules, one slice at a time in playlist order:

- **Continuous clock** (the normal case): the slice keeps its own timestamps (shift 0, bytes untouched).
- **Gap** (the slice starts more than ``GAP_TOLERANCE_S`` after the previous one ends): the gap is
  *closed* — the slice and everything after it move earlier by the gap's length. The MP4 holds the
  media that exists, back to back: no frozen picture, no stretched audio sample, and every slice keeps
  its own audio/video alignment. The report names each gap with its place on the recording's clock.
- **Timestamps restart** (an interruption, a new encoder): the slice's own clock says nothing about
  the previous one, and its name places it only to the millisecond, so it simply follows the previous
  slice on the output clock (a pause before it is closed like a gap); only an overlap the names show
  beyond the tolerance is cut as below.
- **Overlap** (the slice starts before the previous one ends): the previous slice's streams are cut
  where this slice's begin, each stream at its own first decode time; the overlap is seen once.
- **Split**: a new MP4 begins at a slice boundary when adding the slice would take the current one past
  ``max_seconds`` of media or ``max_bytes`` of input, as the recorder itself does (~2 hours, ~2 GB).

Ticks are MPEG's 90 kHz clock. A slice's *shift* is what is added to each of its timestamps; output
positions are seconds from the start of the recording's first usable slice, with closed gaps removed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pipeline.model.job import Segment
from pipeline.model.media import PTS_WRAP, TICKS_PER_S, SliceMedia, StreamFacts, unwrap
from stages.timeline import GAP_TOLERANCE_S, OVERLAP_TOLERANCE_S

log = logging.getLogger(__name__)

GAP_TOLERANCE_TICKS = round(GAP_TOLERANCE_S * TICKS_PER_S)
OVERLAP_TOLERANCE_TICKS = round(OVERLAP_TOLERANCE_S * TICKS_PER_S)
SAME_CLOCK_TICKS = 2
"""A slice is on its predecessor's media clock when the two clocks' steps differ by at most this:
placements are seconds (floats) computed from ticks, and the round trip may lose a tick."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Step:
    """What to do with one usable slice."""

    index: int
    """The slice's playlist entry."""
    part: int
    """Which MP4 it goes into (0, 1, 2 ...)."""
    new_part: bool
    """Whether it starts that MP4."""
    shift: int
    """Ticks added to every PTS, DTS and PCR of the slice (0: bytes pass unchanged)."""
    cut_previous: dict[int, int] = field(default_factory=dict)
    """PID of the previous slice → decode time (its own clock) from which that stream is dropped."""
    closed_gap_s: float = 0.0
    """Seconds of gap closed before this slice."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Part:
    """One MP4 file's worth of slices."""

    index: int
    entries: tuple[int, ...]
    start_s: float
    """Where its first slice starts on the recording's clock (seconds from the recording's start)."""
    duration_s: float
    """The media it must hold: from its first slice's start to its last one's end, gaps closed."""
    input_bytes: int


@dataclass(slots=True)
class _Placed:
    seg: Segment
    media: SliceMedia
    at: int
    """Start on the recording's clock, ticks."""
    length: int
    media_start: int
    """The slice's first tick on its own media clock."""
    shift: int
    out_start: int
    """Start on the output clock (recording clock minus gaps closed), ticks."""


@dataclass(slots=True)
class _Open:
    index: int
    entries: list[int]
    start_s: float
    out_start: int
    out_end: int
    input_bytes: int


def wrap_shift(ticks: int) -> int:
    """A shift reduced modulo 2^33 to (-2^32, 2^32]: one that only re-wraps the clock becomes 0."""
    return -((-ticks + PTS_WRAP // 2) % PTS_WRAP - PTS_WRAP // 2)


def decode_first(stream: StreamFacts) -> int | None:
    """The stream's first decode time in the slice (DTS, or PTS when no DTS is sent)."""
    return stream.first_dts if stream.first_dts is not None else stream.first_pts


def decode_last(stream: StreamFacts) -> int | None:
    """The stream's last decode time in the slice."""
    return stream.last_dts if stream.last_dts is not None else stream.last_pts


def stream_of(media: SliceMedia, kind: str) -> StreamFacts | None:
    """The slice's first stream of ``kind`` that carries media."""
    return next((s for s in media.media_streams if s.kind == kind), None)


def cuts_between(prev: _Placed, seg_media: SliceMedia, *, shift: int) -> dict[int, int]:
    """Where each of the previous slice's streams must be cut (a decode time in its own clock: PES
    starting there or later are dropped) so that it ends before the same kind of stream in the next
    slice begins. Nothing is cut where a stream ends exactly where the next one starts.

    A PES lasts ``step`` ticks (a video frame; an audio PES of several AAC frames), so a stream is cut
    one step before the next slice's first decode time: the last PES kept ends by then.
    """
    cuts = {}
    for kind in ("video", "audio"):
        a, b = stream_of(prev.media, kind), stream_of(seg_media, kind)
        if a is None or b is None:
            continue
        a_last, b_first = decode_last(a), decode_first(b)
        if a_last is None or b_first is None:
            continue
        step = a.tail_ticks or a.frame_ticks or 0
        b_first_in_a = unwrap((b_first + shift - prev.shift) % PTS_WRAP, a_last)
        if a_last + step > b_first_in_a:
            cuts[a.pid] = b_first_in_a - step + 1
    return cuts


class Splicer:
    """Decides, slice by slice, the shift, the cuts and the MP4 each usable slice goes into."""

    def __init__(self, *, max_seconds: float, max_bytes: int) -> None:
        self._max_ticks = round(max_seconds * TICKS_PER_S)
        self._max_bytes = max_bytes
        self._prev: _Placed | None = None
        self._origin = 0
        self._closed = 0
        self._parts: list[Part] = []
        self._open: _Open | None = None

    def add(self, seg: Segment) -> Step:
        """The next usable slice, placed (``at_s``) and read (``media`` with timestamps)."""
        media = seg.media
        if seg.at_s is None or media is None or media.start_ticks is None or media.end_ticks is None:
            raise ValueError(f"slice {seg.uri} must be placed and read before it is spliced")
        at = round(seg.at_s * TICKS_PER_S)
        prev = self._prev
        before = self._closed
        if prev is None:
            self._origin = media.start_ticks - at
        else:
            self._closed = self._closing(prev, at=at, start_ticks=media.start_ticks)
        out_start = at - self._closed
        shift = wrap_shift(out_start + self._origin - media.start_ticks)
        cuts = cuts_between(prev, media, shift=shift) if prev is not None else {}
        placed = _Placed(
            seg=seg,
            media=media,
            at=at,
            length=media.end_ticks - media.start_ticks,
            media_start=media.start_ticks,
            shift=shift,
            out_start=out_start,
        )
        new_part = self._extend(placed)
        self._prev = placed
        assert self._open is not None
        return Step(
            index=seg.index,
            part=self._open.index,
            new_part=new_part,
            shift=shift,
            cut_previous=cuts,
            closed_gap_s=max(0, self._closed - before) / TICKS_PER_S,
        )

    def _closing(self, prev: _Placed, *, at: int, start_ticks: int) -> int:
        """Ticks of the recording's clock left out of the output up to this slice.

        On the previous slice's media clock, the clock is kept exactly and only a gap is closed. On a
        new clock (the names placed the slice, to the millisecond), the slice simply follows the
        previous one unless the names say the two overlap by more than the tolerance.
        """
        excess = at - (prev.at + prev.length)
        media_step = unwrap(start_ticks, prev.media_start) - prev.media_start
        same_clock = abs(media_step - (at - prev.at)) <= SAME_CLOCK_TICKS
        if same_clock:
            return self._closed + (excess if excess > GAP_TOLERANCE_TICKS else 0)
        if excess >= -OVERLAP_TOLERANCE_TICKS:
            return at - (prev.out_start + prev.length)
        return self._closed

    def _extend(self, placed: _Placed) -> bool:
        """Add the slice to the open MP4, or close it and open the next; True when a new one opens."""
        size = placed.seg.size or 0
        end = placed.out_start + placed.length
        part = self._open
        if part is not None and part.entries:
            too_long = max(part.out_end, end) - part.out_start > self._max_ticks
            too_big = part.input_bytes + size > self._max_bytes
            if not too_long and not too_big:
                part.entries.append(placed.seg.index)
                part.out_end = max(part.out_end, end)
                part.input_bytes += size
                return False
            self._parts.append(self._close(part))
        self._open = _Open(
            index=len(self._parts),
            entries=[placed.seg.index],
            start_s=placed.at / TICKS_PER_S,
            out_start=placed.out_start,
            out_end=end,
            input_bytes=size,
        )
        return True

    @staticmethod
    def _close(part: _Open) -> Part:
        return Part(
            index=part.index,
            entries=tuple(part.entries),
            start_s=part.start_s,
            duration_s=(part.out_end - part.out_start) / TICKS_PER_S,
            input_bytes=part.input_bytes,
        )

    def parts(self) -> tuple[Part, ...]:
        """Every MP4 so far, the open one included."""
        return (*self._parts, *((self._close(self._open),) if self._open else ()))
