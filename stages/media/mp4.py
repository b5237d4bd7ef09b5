"""A small ISO-BMFF (MP4) reader: tracks, codecs, durations and faststart, without ffprobe.

Only box headers, a few small leaf boxes and ``stts`` are read (by seeking), never ``mdat``::

    ftyp  moov ─┬─ mvhd                                   movie timescale + duration
                └─ trak ─┬─ tkhd                          track id, width/height (16.16)
                         ├─ edts ── elst                  empty edits before the media (start time)
                         └─ mdia ─┬─ mdhd                 track timescale + duration
                                  ├─ hdlr                 vide → video, soun → audio
                                  └─ minf ── stbl ─┬─ stsd    first sample entry's fourcc
                                                   ├─ stts    sample durations (run-length coded)
                                                   └─ stsz    sample count (or stz2)
    mdat  free  ...

Everything malformed (truncated boxes, sizes past their parent or EOF, missing boxes) is a MediaError.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from pipeline.model.exceptions import MediaError

log = logging.getLogger(__name__)

ReadAt = Callable[[int, int], bytes]
"""``read_at(offset, size)`` returns at most ``size`` bytes starting at ``offset``."""

LEAF_READ_BYTES = 256
"""How much of a leaf box is read; every field recpipe needs lies in its first 100 bytes."""
MAX_STTS_ENTRIES = 1_000_000
"""``stts`` run-length codes sample durations: a few entries for a steady stream, one per sample at
worst (a 4-hour 30 fps video has 432,000 frames). More than this is refused as malformed."""
MAX_EDITS = 64
"""Edit-list entries looked at; ffmpeg writes one or two."""
HANDLER_KINDS = {"vide": "video", "soun": "audio"}


@dataclass(frozen=True, kw_only=True, slots=True)
class Mp4Track:
    """One track of an MP4 file."""

    track_id: int
    kind: str
    """``"video"``, ``"audio"``, or any other handler type as written (e.g. ``"text"``)."""
    codec: str
    """The first sample entry's fourcc, e.g. ``"avc1"`` or ``"mp4a"``."""
    duration_s: float
    timescale: int
    width: int | None
    """Presentation width from ``tkhd`` (None when zero, as for audio)."""
    height: int | None
    sample_count: int
    sample_durations: tuple[tuple[int, int], ...] = ()
    """``stts`` as written: ``(count, duration)`` runs, durations in ``timescale`` units."""
    start_s: float = 0.0
    """When the track's media begins in the presentation: its leading empty edits (``elst``)."""

    @property
    def longest_sample_s(self) -> float:
        """The longest sample duration (a frozen picture or stretched sound shows up here)."""
        return max((d for n, d in self.sample_durations if n), default=0) / self.timescale

    @property
    def shortest_sample_s(self) -> float:
        """The shortest sample duration (sped-up or squashed media shows up here)."""
        return min((d for n, d in self.sample_durations if n), default=0) / self.timescale


@dataclass(frozen=True, kw_only=True, slots=True)
class Mp4Info:
    """What recpipe checks in an MP4 output."""

    duration_s: float
    tracks: tuple[Mp4Track, ...]
    faststart: bool
    """Whether ``moov`` comes before the first ``mdat`` (true when there is no ``mdat``)."""

    @property
    def track_kinds(self) -> tuple[str, ...]:
        """The kind of each track, in file order."""
        return tuple(t.kind for t in self.tracks)


class Box(NamedTuple):
    """Where one box lies: ``offset`` of its header, ``header`` length, total ``size``."""

    type: str
    offset: int
    header: int
    size: int

    @property
    def body(self) -> int:
        """Offset of the box's payload."""
        return self.offset + self.header

    @property
    def end(self) -> int:
        """Offset just past the box."""
        return self.offset + self.size


def read_mp4(path: Path) -> Mp4Info:
    """Read the structure of the MP4 at ``path``; MediaError if it cannot be read or is malformed."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)

            def read_at(offset: int, count: int) -> bytes:
                f.seek(offset)
                return f.read(count)

            return parse_mp4(read_at, size=size)
    except OSError as err:
        raise MediaError(f"cannot read MP4 {path}: {err}") from err
    except MediaError as err:
        raise MediaError(f"{path.name}: {err}") from err


def parse_mp4_bytes(data: bytes) -> Mp4Info:
    """Read the structure of an MP4 held in memory."""
    return parse_mp4(lambda offset, count: data[offset : offset + count], size=len(data))


def parse_mp4(read_at: ReadAt, *, size: int) -> Mp4Info:
    """Read the structure of an MP4 of ``size`` bytes through ``read_at``."""
    top = list(iter_boxes(read_at, start=0, end=size))
    moovs = [b for b in top if b.type == "moov"]
    if not moovs:
        raise MediaError("not an MP4: no moov box")
    if len(moovs) > 1:
        raise MediaError("more than one moov box")
    moov = moovs[0]
    mdat = next((b for b in top if b.type == "mdat"), None)
    children = children_of(read_at, moov)
    timescale, duration = parse_mvhd(read_leaf(read_at, require(children, "mvhd", parent="moov")))
    tracks = tuple(
        read_trak(read_at, trak, movie_timescale=timescale) for trak in children if trak.type == "trak"
    )
    movie_s = duration / timescale
    if movie_s == 0 and tracks:  # fragmented files leave mvhd's duration at zero
        movie_s = max(t.duration_s for t in tracks)
    return Mp4Info(duration_s=movie_s, tracks=tracks, faststart=mdat is None or moov.offset < mdat.offset)


def read_trak(read_at: ReadAt, trak: Box, *, movie_timescale: int) -> Mp4Track:
    """Read one ``trak`` box."""
    children = children_of(read_at, trak)
    edts = next((b for b in children if b.type == "edts"), None)
    elst = next((b for b in children_of(read_at, edts) if b.type == "elst"), None) if edts else None
    empty = read_empty_edits(read_at, elst) if elst is not None else 0
    track_id, width, height = parse_tkhd(read_leaf(read_at, require(children, "tkhd", parent="trak")))
    mdia = children_of(read_at, require(children, "mdia", parent="trak"))
    timescale, duration = parse_mdhd(read_leaf(read_at, require(mdia, "mdhd", parent="mdia")))
    handler = parse_hdlr(read_leaf(read_at, require(mdia, "hdlr", parent="mdia")))
    minf = children_of(read_at, require(mdia, "minf", parent="mdia"))
    stbl = children_of(read_at, require(minf, "stbl", parent="minf"))
    sizes = next((b for b in stbl if b.type in ("stsz", "stz2")), None)
    if sizes is None:
        raise MediaError("stbl has neither stsz nor stz2")
    return Mp4Track(
        track_id=track_id,
        kind=HANDLER_KINDS.get(handler, handler),
        codec=parse_stsd(read_leaf(read_at, require(stbl, "stsd", parent="stbl"))),
        duration_s=duration / timescale,
        timescale=timescale,
        width=round(width) or None,
        height=round(height) or None,
        sample_count=parse_stsz(read_leaf(read_at, sizes)),
        sample_durations=read_stts(read_at, require(stbl, "stts", parent="stbl")),
        start_s=empty / movie_timescale,
    )


def read_empty_edits(read_at: ReadAt, box: Box) -> int:
    """The summed duration (movie timescale) of the empty edits (media time -1) that open an ``elst``."""
    head = read_at(box.body, 8)
    version = parse_full_box(head)
    (count,) = unpack(">4xI", head)
    entry = 20 if version == 1 else 12
    if 8 + entry * count > box.size - box.header:
        raise MediaError(f"elst at offset {box.offset} claims {count} entries, more than it can hold")
    data = read_at(box.body + 8, entry * min(count, MAX_EDITS))
    total = 0
    for i in range(min(count, MAX_EDITS)):
        duration, media_time = unpack(">Qq" if version == 1 else ">Ii", data, i * entry)
        if media_time != -1:
            break
        total += duration
    return total


def read_stts(read_at: ReadAt, box: Box) -> tuple[tuple[int, int], ...]:
    """The ``(count, duration)`` runs of an ``stts`` box."""
    head = read_at(box.body, 8)
    parse_full_box(head)
    (count,) = unpack(">4xI", head)
    if count > MAX_STTS_ENTRIES or 8 + 8 * count > box.size - box.header:
        raise MediaError(f"stts at offset {box.offset} claims {count} entries, more than it can hold")
    data = read_at(box.body + 8, 8 * count)
    if len(data) != 8 * count:
        raise MediaError(f"stts box at offset {box.offset} is truncated")
    flat = struct.unpack(f">{2 * count}I", data)
    return tuple(zip(flat[0::2], flat[1::2], strict=True))


def require(boxes: list[Box], kind: str, *, parent: str) -> Box:
    """The first box of type ``kind``; MediaError if there is none."""
    found = next((b for b in boxes if b.type == kind), None)
    if found is None:
        raise MediaError(f"{parent} has no {kind} box")
    return found


def children_of(read_at: ReadAt, box: Box) -> list[Box]:
    """The boxes inside container ``box``."""
    return list(iter_boxes(read_at, start=box.body, end=box.end))


def read_leaf(read_at: ReadAt, box: Box) -> bytes:
    """The first bytes of a leaf box's payload (at most LEAF_READ_BYTES)."""
    count = min(box.size - box.header, LEAF_READ_BYTES)
    data = read_at(box.body, count)
    if len(data) != count:
        raise MediaError(f"{box.type} box at offset {box.offset} is truncated")
    return data


def iter_boxes(read_at: ReadAt, *, start: int, end: int) -> Iterator[Box]:
    """The boxes lying one after another in ``[start, end)``; MediaError if one does not fit."""
    offset = start
    while offset < end:
        box = parse_box_header(read_at(offset, 16), offset=offset, limit=end)
        yield box
        offset = box.end


def parse_boxes(data: bytes) -> tuple[Box, ...]:
    """The top-level boxes of ``data``."""
    return tuple(iter_boxes(lambda offset, count: data[offset : offset + count], start=0, end=len(data)))


def parse_box_header(head: bytes, *, offset: int, limit: int) -> Box:
    """Decode the box header at the start of ``head`` (read at ``offset``); the box must end by ``limit``."""
    if len(head) < 8:
        raise MediaError(f"truncated box header at offset {offset}")
    size, raw = struct.unpack_from(">I4s", head)
    kind = bytes(raw).decode("latin-1")
    header = 8
    if size == 1:
        if len(head) < 16:
            raise MediaError(f"truncated 64-bit size of {kind!r} box at offset {offset}")
        (size,) = struct.unpack_from(">Q", head, 8)
        header = 16
    elif size == 0:
        size = limit - offset
    if size < header:
        raise MediaError(f"{kind!r} box at offset {offset} has impossible size {size}")
    if offset + size > limit:
        raise MediaError(f"{kind!r} box at offset {offset} ({size} bytes) runs past its end at {limit}")
    return Box(type=kind, offset=offset, header=header, size=size)


def unpack(fmt: str, data: bytes, offset: int = 0) -> tuple[int, ...]:
    """``struct.unpack_from`` that raises MediaError when ``data`` is too short."""
    if len(data) < offset + struct.calcsize(fmt):
        raise MediaError(f"box payload too short ({len(data)} bytes)")
    return tuple(struct.unpack_from(fmt, data, offset))


def parse_full_box(data: bytes) -> int:
    """The version of a full box payload (flags are ignored); MediaError for an unknown version."""
    (version,) = unpack(">B", data)
    if version not in (0, 1):
        raise MediaError(f"unsupported box version {version}")
    return version


def parse_timing(data: bytes) -> tuple[int, int]:
    """``(timescale, duration)`` of an ``mvhd`` or ``mdhd`` payload (v0 or v1)."""
    if parse_full_box(data) == 1:
        timescale, duration = unpack(">16xIQ", data, 4)
    else:
        timescale, duration = unpack(">8xII", data, 4)
    if timescale == 0:
        raise MediaError("timescale is zero")
    return timescale, duration


def parse_mvhd(data: bytes) -> tuple[int, int]:
    """``(timescale, duration)`` of the movie header."""
    return parse_timing(data)


def parse_mdhd(data: bytes) -> tuple[int, int]:
    """``(timescale, duration)`` of a media header."""
    return parse_timing(data)


def parse_tkhd(data: bytes) -> tuple[int, float, float]:
    """``(track_id, width, height)`` of a track header; width and height are 16.16 fixed point."""
    v1 = parse_full_box(data) == 1
    (track_id,) = unpack(">16xI" if v1 else ">8xI", data, 4)
    width, height = unpack(">II", data, 88 if v1 else 76)
    return track_id, width / 65536, height / 65536


def parse_hdlr(data: bytes) -> str:
    """The handler type (``vide``, ``soun``, ...) of an ``hdlr`` payload."""
    return fourcc(data, 8)


def parse_stsd(data: bytes) -> str:
    """The fourcc of the first sample entry of an ``stsd`` payload."""
    (count,) = unpack(">4xI", data)
    if count == 0:
        raise MediaError("stsd has no sample entries")
    return fourcc(data, 12)


def fourcc(data: bytes, offset: int) -> str:
    """The four characters at ``offset``; MediaError if ``data`` is too short."""
    if len(data) < offset + 4:
        raise MediaError(f"box payload too short ({len(data)} bytes)")
    return data[offset : offset + 4].decode("latin-1")


def parse_stsz(data: bytes) -> int:
    """The sample count of an ``stsz`` or ``stz2`` payload (same position in both)."""
    (count,) = unpack(">8xI", data)
    return int(count)
