"""What recpipe learned from reading a slice's bytes: frozen records, no I/O.

``stages.media.ts`` fills these in; verify and the timeline reason about them. Timestamps are
kept in MPEG's 90 kHz ticks, *unwrapped* (they keep counting past the 33-bit wrap), so
differences are plain subtraction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

log = logging.getLogger(__name__)

TICKS_PER_S = 90_000
"""MPEG system clock for PTS/DTS."""
TS_PACKET = 188
PTS_WRAP = 1 << 33
"""PTS, DTS and the PCR base are 33-bit fields: they wrap about every 26.5 hours."""

StreamKind = Literal["video", "audio", "other"]


def unwrap(raw: int, previous: int | None) -> int:
    """``raw`` (33-bit) placed on the continuous timeline nearest to ``previous``."""
    if previous is None:
        return raw
    delta = (raw - previous) % PTS_WRAP
    if delta >= PTS_WRAP // 2:
        delta -= PTS_WRAP
    return previous + delta


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamFacts:
    """One elementary stream of a slice, as the program map declares it and its packets show it."""

    pid: int
    stream_type: int
    kind: StreamKind
    codec: str
    """``h264``, ``hevc``, ``aac``, ``mp3`` ... or ``stream type 0xNN``."""
    pes_count: int = 0
    first_pts: int | None = None
    last_pts: int | None = None
    min_pts: int | None = None
    max_pts: int | None = None
    first_dts: int | None = None
    last_dts: int | None = None
    frame_ticks: int | None = None
    """Duration of one frame (video) or one PES (audio): the smallest positive PTS step seen."""
    tail_ticks: int | None = None
    """How long the last PES lasts (its AAC frames counted; else ``frame_ticks``)."""
    keyframe_at_start: bool | None = None
    """Video only: whether the first access unit is an IDR (None when it could not be told)."""
    width: int | None = None
    height: int | None = None
    sample_rate: int | None = None
    channels: int | None = None

    @property
    def has_media(self) -> bool:
        """Whether at least one timestamped PES of this stream was read."""
        return self.min_pts is not None

    @property
    def start_ticks(self) -> int | None:
        """Presentation time of the earliest frame."""
        return self.min_pts

    @property
    def end_ticks(self) -> int | None:
        """Presentation time just after the last frame ends."""
        if self.max_pts is None:
            return None
        return self.max_pts + (self.tail_ticks or 0)


@dataclass(frozen=True, kw_only=True, slots=True)
class SliceMedia:
    """Everything the MPEG-TS reader found in one slice."""

    size: int
    packets: int
    """Whole 188-byte packets read in sync."""
    skipped_bytes: int = 0
    """Bytes that were not part of any packet in sync (garbage, lost sync)."""
    resyncs: int = 0
    """Times sync was lost and found again after the first packet."""
    trailing_bytes: int = 0
    """Bytes after the last whole packet: a truncated file."""
    has_pat: bool = False
    has_pmt: bool = False
    streams: tuple[StreamFacts, ...] = ()
    cc_errors: tuple[tuple[int, int], ...] = ()
    """``(pid, count)`` of continuity-counter jumps: lost or reordered packets."""
    transport_errors: int = 0
    """Packets whose transport_error_indicator is set."""
    # Worked out once (``__post_init__``): verification and the timeline ask for them dozens of times a
    # slice.
    media_streams: tuple[StreamFacts, ...] = field(init=False, repr=False, compare=False)
    """Video and audio streams that carry timestamped data."""
    start_ticks: int | None = field(init=False, repr=False, compare=False)
    """The earliest presentation time of any media stream."""
    end_ticks: int | None = field(init=False, repr=False, compare=False)
    """The latest end of any media stream."""

    def __post_init__(self) -> None:
        media = tuple(s for s in self.streams if s.kind != "other" and s.has_media)
        starts = [s.start_ticks for s in media if s.start_ticks is not None]
        ends = [s.end_ticks for s in media if s.end_ticks is not None]
        object.__setattr__(self, "media_streams", media)
        object.__setattr__(self, "start_ticks", min(starts) if starts else None)
        object.__setattr__(self, "end_ticks", max(ends) if ends else None)

    @property
    def kinds(self) -> frozenset[str]:
        """``{"video", "audio"}`` or a subset: what the slice really carries."""
        return frozenset(s.kind for s in self.media_streams)

    @property
    def video(self) -> StreamFacts | None:
        """The first video stream with data, if any."""
        return next((s for s in self.media_streams if s.kind == "video"), None)

    @property
    def readable(self) -> bool:
        """Whether the slice holds any usable media (program tables and timestamped audio or video)."""
        return self.has_pmt and bool(self.media_streams)

    @property
    def duration_s(self) -> float | None:
        """Seconds of media in the slice (union of its streams), or None if there is none."""
        start, end = self.start_ticks, self.end_ticks
        if start is None or end is None:
            return None
        return (end - start) / TICKS_PER_S

    @property
    def resolution(self) -> tuple[int, int] | None:
        """Video ``(width, height)`` from the first SPS, when known."""
        v = self.video
        if v is None or v.width is None or v.height is None:
            return None
        return (v.width, v.height)

    def problems(self) -> tuple[str, ...]:
        """Why the slice is not sound MPEG-TS, as phrases (empty when it is)."""
        out = []
        in_sync = self.packets * TS_PACKET
        if self.packets == 0:
            return ("holds no MPEG-TS packets (no 0x47 sync byte every 188 bytes)",)
        if in_sync * 2 < self.size and not self.readable:
            return (f"is not MPEG-TS: only {in_sync} of its {self.size} bytes look like 188-byte packets",)
        if self.skipped_bytes:
            out.append(f"has {self.skipped_bytes} bytes out of packet sync ({self.resyncs} resyncs)")
        if self.trailing_bytes:
            out.append(f"ends with a partial {self.trailing_bytes}-byte packet (truncated)")
        if self.packets and not self.has_pat:
            out.append("has no program association table")
        elif self.packets and not self.has_pmt:
            out.append("has no program map table")
        elif self.packets and not self.media_streams:
            out.append("has no audio or video with timestamps")
        if self.transport_errors:
            out.append(f"has {self.transport_errors} packets flagged with transport errors")
        return tuple(out)
