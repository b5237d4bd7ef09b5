"""Read a fragmented MP4 (what ffmpeg writes for recpipe) into per-track sample tables.

ffmpeg keeps the whole sample index of a regular MP4 in memory until the file ends (about 48 bytes a
sample: 10 MB an hour for 15 fps video and AAC audio). Asked for a fragmented MP4 it keeps only the
current fragment, and recpipe builds the regular ``moov`` itself from the fragments afterwards
(``stages.media.faststart``), in compact arrays (about 5 bytes a sample)::

    ftyp  moov (no samples; mvex/trex defaults; edts/elst with the start offsets)
    moof ─┬─ mfhd
          └─ traf ─┬─ tfhd            track, default duration/size/flags, where offsets count from
                   ├─ tfdt            decode time of the fragment's first sample
                   └─ trun ...        per-sample duration/size/flags/composition offset + data offset
    mdat  (the samples of the moof before it)
    moof  mdat  moof  mdat  ...   mfra

Each ``trun`` describes samples lying back to back in the file: one chunk of the regular file.
Everything inconsistent (fields past their box, samples outside an ``mdat``) is a MediaError.
"""

from __future__ import annotations

import bisect
import os
import struct
import sys
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.model.exceptions import MediaError
from stages.media.mp4 import Box, ReadAt, iter_boxes, unpack

NON_SYNC = 0x00010000
"""``sample_is_non_sync_sample`` in the sample flags."""
MAX_HEADER_BYTES = 16 * 1024 * 1024
"""A ``moov`` or ``moof`` larger than this is refused (ffmpeg's are a few KB)."""
MAX_RUN_SAMPLES = 1_000_000
"""A ``trun`` with more samples is refused (ffmpeg's hold one fragment: a few hundred)."""

# tfhd flags
BASE_DATA_OFFSET, SAMPLE_DESCRIPTION, DEFAULT_DURATION, DEFAULT_SIZE, DEFAULT_FLAGS = (
    0x1,
    0x2,
    0x8,
    0x10,
    0x20,
)
DEFAULT_BASE_IS_MOOF = 0x20000
# trun flags
DATA_OFFSET, FIRST_SAMPLE_FLAGS = 0x1, 0x4
SAMPLE_DURATION, SAMPLE_SIZE, SAMPLE_FLAGS, SAMPLE_CTO = 0x100, 0x200, 0x400, 0x800


@dataclass(frozen=True, slots=True)
class Defaults:
    """A track's per-sample defaults (``trex``, overridden per fragment by ``tfhd``)."""

    description: int = 1
    duration: int = 0
    size: int = 0
    flags: int = 0


def runs_append(runs: list[list[int]], value: int, count: int = 1) -> None:
    """Add ``count`` samples of ``value`` to run-length coded ``[count, value]`` runs."""
    if runs and runs[-1][1] == value:
        runs[-1][0] += count
    else:
        runs.append([count, value])


def all_equal(values: array[int]) -> bool:
    """Whether every value is the same (compared as bytes, in C: no Python int per value)."""
    return values.tobytes() == values[:1].tobytes() * len(values)


def add_column(runs: list[list[int]], values: array[int]) -> None:
    """Add a trun's per-sample values to run-length coded runs (one step when they are all equal)."""
    if values and all_equal(values):
        runs_append(runs, values[0], len(values))
        return
    for value in values:
        runs_append(runs, value)


NARROW, WIDE = "H", "I"
"""The typecodes of a sample size column: two bytes, then four (``SampleTable.sizes``)."""
MAX_NARROW = 0xFFFF


def narrowed(sizes: array[int]) -> array[int] | None:
    """``sizes`` in two bytes each, or None when one does not fit.

    Four-byte values (a ``trun``'s) are narrowed on their bytes where the machine is little-endian
    (every value's upper two bytes must be zero, and the lower two are the narrow value), so no Python
    int is made per sample: 2 ms an hour of samples, against 13 ms through ``max`` and ``array``.
    """
    if sys.byteorder != "little" or sizes.itemsize != 4:
        return array(NARROW, sizes) if max(sizes, default=0) <= MAX_NARROW else None
    raw, zeros = sizes.tobytes(), bytes(len(sizes))
    if raw[2::4] != zeros or raw[3::4] != zeros:
        return None
    two = bytearray(2 * len(sizes))
    two[0::2], two[1::2] = raw[0::4], raw[1::4]
    return array(NARROW, two)


@dataclass(slots=True)
class SampleTable:
    """One track's samples, in the shapes of the regular MP4's tables."""

    track_id: int
    sizes: array[int] = field(default_factory=lambda: array(NARROW))
    """``stsz``: every sample's size, in two bytes while all of them fit (AAC frames always do, and
    video frames under 64 KB), in four from the first that does not (``add_sizes``): the largest table
    recpipe keeps, 3.6 MB for 4 h of video and AAC in four bytes."""
    durations: list[list[int]] = field(default_factory=list)
    """``stts``: ``[count, duration]`` runs."""
    offsets: list[list[int]] = field(default_factory=list)
    """``ctts``: ``[count, composition offset]`` runs (all zero without B-frames)."""
    all_sync: bool = True
    """Every sample so far is a sync sample (audio's are): ``sync`` stays empty and no ``stss`` is
    written, as ffmpeg writes none (4 bytes a sample kept otherwise: 2.6 MB for 4 h of AAC)."""
    sync: array[int] = field(default_factory=lambda: array("I"))
    """``stss``: 1-based numbers of the sync samples, once a sample is not one (``all_sync`` False)."""
    chunks: array[int] = field(default_factory=lambda: array("Q"))
    """Where each chunk (one ``trun``'s samples) starts in the fragmented file."""
    chunk_sizes: array[int] = field(default_factory=lambda: array("Q"))
    """Bytes of each chunk."""
    per_chunk: list[list[int]] = field(default_factory=list)
    """``stsc``: ``[first chunk (1-based), samples per chunk, sample description]`` wherever it changes."""
    start: int | None = None
    """Decode time of the first sample (the first ``tfdt``; ffmpeg starts every track at 0)."""
    end: int = 0
    """Decode time just past the last sample."""

    @property
    def sample_count(self) -> int:
        """Samples in the track."""
        return len(self.sizes)

    @property
    def duration(self) -> int:
        """Sum of the sample durations, in the track's timescale."""
        return sum(count * value for count, value in self.durations)

    def add_run(
        self,
        *,
        at: int,
        sizes: array[int],
        durations: array[int],
        flags: array[int],
        offsets: array[int],
        description: int,
    ) -> None:
        """Append one ``trun``: its samples lie back to back from file offset ``at``."""
        first = len(self.sizes) + 1
        self.add_sizes(sizes)
        add_column(self.durations, durations)
        add_column(self.offsets, offsets)
        if all_equal(flags[1:]):  # the usual trun: only the first sample's flags differ
            head = [first] if not flags[0] & NON_SYNC else []
            rest = range(first + 1, first + len(flags)) if not flags[-1] & NON_SYNC else range(0)
            if not self.all_sync or len(head) + len(rest) < len(flags):
                self._list_sync(first)
                self.sync.extend([*head, *rest])
        elif not self.all_sync or any(f & NON_SYNC for f in flags):
            self._list_sync(first)
            self.sync.extend(first + i for i, f in enumerate(flags) if not f & NON_SYNC)
        self.chunks.append(at)
        self.chunk_sizes.append(sum(sizes))
        if not self.per_chunk or self.per_chunk[-1][1:] != [len(sizes), description]:
            self.per_chunk.append([len(self.chunks), len(sizes), description])
        self.end += sum(durations)

    def add_sizes(self, sizes: array[int]) -> None:
        """Append sample sizes, widening the column to four bytes once one does not fit in two."""
        if self.sizes.typecode == NARROW:
            narrow = narrowed(sizes)
            if narrow is not None:
                self.sizes.extend(narrow)
                return
            self.sizes = array(WIDE, self.sizes)
        self.sizes.extend(sizes if sizes.typecode == WIDE else array(WIDE, sizes))

    def _list_sync(self, first: int) -> None:
        """The first sample that is not a sync sample is coming: list the ones before it, all sync."""
        if self.all_sync:
            self.sync.extend(range(1, first))
            self.all_sync = False

    def move_to(self, decode_time: int) -> None:
        """A fragment starts at ``decode_time``: the regular file has no such jump, so the last sample
        lasts until then (as ffmpeg's regular muxer does when timestamps jump)."""
        if self.start is None:
            self.start = self.end = decode_time
            return
        change = decode_time - self.end
        if not change:
            return
        if not self.durations:
            raise MediaError(f"track {self.track_id}: a fragment starts before any sample was seen")
        count, last = self.durations[-1]
        if last + change <= 0:
            raise MediaError(f"track {self.track_id}: fragment at {decode_time} goes back in time")
        if count == 1:
            self.durations.pop()
        else:
            self.durations[-1][0] -= 1
        runs_append(self.durations, last + change)
        self.end = decode_time


@dataclass(frozen=True, kw_only=True, slots=True)
class Fragmented:
    """A fragmented MP4 read: its header boxes and every track's samples."""

    moov: bytes
    """The whole ``moov`` box (header included), as ffmpeg wrote it: no samples."""
    media: tuple[tuple[int, int], ...]
    """``[start, end)`` of every ``mdat``'s payload, in file order."""
    tables: dict[int, SampleTable]
    """Sample tables by track id."""


def read_fragmented(path: Path) -> Fragmented:
    """Read the fragmented MP4 at ``path``; MediaError if it is not one or is inconsistent."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)

            def read_at(offset: int, count: int) -> bytes:
                return os.pread(f.fileno(), count, offset)

            return parse_fragmented(read_at, size=size)
    except OSError as err:
        raise MediaError(f"cannot read MP4 {path}: {err}") from err
    except MediaError as err:
        raise MediaError(f"{path.name}: {err}") from err


def parse_fragmented(read_at: ReadAt, *, size: int) -> Fragmented:
    """Read a fragmented MP4 of ``size`` bytes through ``read_at``."""
    reader = FragmentedReader()
    for box in iter_boxes(read_at, start=0, end=size):
        reader.add(box, read_at)
    return reader.result()


class FragmentedReader:
    """``parse_fragmented`` one top-level box at a time, in file order: boxes can be given as ffmpeg
    finishes writing them (``stages.follow``), so the tables are ready when it exits."""

    def __init__(self) -> None:
        self.moov: Box | None = None
        """Where the ``moov`` is."""
        self.moov_bytes = b""
        """The ``moov`` as read."""
        self._defaults: dict[int, Defaults] = {}
        self._tables: dict[int, SampleTable] = {}
        self.media: list[tuple[int, int]] = []
        """``[start, end)`` of every ``mdat``'s payload so far."""

    def add(self, box: Box, read_at: ReadAt) -> None:
        """Take the next top-level box (complete in the file)."""
        if box.type in ("moov", "moof") and box.size > MAX_HEADER_BYTES:
            raise MediaError(f"{box.type} at offset {box.offset} is {box.size} bytes, over the limit")
        if box.type == "moov":
            if self.moov_bytes:
                raise MediaError("more than one moov box")
            self.moov, self.moov_bytes = box, whole(read_at, box)
            self._defaults = read_trex(self.moov_bytes)
            self._tables = {track_id: SampleTable(track_id) for track_id in self._defaults}
        elif box.type == "moof":
            if not self.moov_bytes:
                raise MediaError("a moof comes before the moov")
            read_moof(whole(read_at, box), at=box.offset, defaults=self._defaults, tables=self._tables)
        elif box.type == "mdat":
            self.media.append((box.body, box.end))

    def result(self) -> Fragmented:
        """The file read (after its last box)."""
        if not self.moov_bytes:
            raise MediaError("not an MP4: no moov box")
        check_chunks_in_media(self._tables.values(), media=self.media)
        return Fragmented(moov=self.moov_bytes, media=tuple(self.media), tables=self._tables)


def whole(read_at: ReadAt, box: Box) -> bytes:
    """All of ``box``'s bytes, header included."""
    data = read_at(box.offset, box.size)
    if len(data) != box.size:
        raise MediaError(f"{box.type} box at offset {box.offset} is truncated")
    return data


def boxes_in(data: bytes, start: int, end: int) -> Iterator[Box]:
    """The boxes lying one after another in ``data[start:end]``."""
    return iter_boxes(lambda offset, count: data[offset : offset + count], start=start, end=end)


def find_path(data: bytes, box: Box, *path: str) -> Iterator[Box]:
    """Every box reached from container ``box`` along ``path`` of box types."""
    if not path:
        yield box
        return
    for child in boxes_in(data, box.body, box.end):
        if child.type == path[0]:
            yield from find_path(data, child, *path[1:])


def top(data: bytes) -> Box:
    """The box that ``data`` is."""
    (box,) = boxes_in(data, 0, len(data))
    return box


def read_trex(moov: bytes) -> dict[int, Defaults]:
    """Every track's sample defaults from ``moov/mvex/trex``."""
    found: dict[int, Defaults] = {}
    for trex in find_path(moov, top(moov), "mvex", "trex"):
        track_id, description, duration, size, flags = unpack(">4x5I", moov, trex.body)
        found[track_id] = Defaults(description, duration, size, flags)
    for tkhd in find_path(moov, top(moov), "trak", "tkhd"):
        version = moov[tkhd.body]
        (track_id,) = unpack(">I", moov, tkhd.body + (20 if version == 1 else 12))
        found.setdefault(track_id, Defaults())
    return found


def read_moof(moof: bytes, *, at: int, defaults: dict[int, Defaults], tables: dict[int, SampleTable]) -> None:
    """Add the samples of one ``moof`` (found at file offset ``at``) to ``tables``."""
    data_end = at  # where the previous traf's data ended (the base when nothing else is said)
    for traf in find_path(moof, top(moof), "traf"):
        children = list(boxes_in(moof, traf.body, traf.end))
        tfhd = next((b for b in children if b.type == "tfhd"), None)
        if tfhd is None:
            raise MediaError(f"traf at offset {at + traf.offset} has no tfhd")
        track_id, own, base = read_tfhd(moof, tfhd, defaults=defaults, moof_at=at, previous_end=data_end)
        table = tables[track_id]
        tfdt = next((b for b in children if b.type == "tfdt"), None)
        if tfdt is not None:
            table.move_to(read_tfdt(moof, tfdt))
        elif table.start is None:
            table.start = 0
        position = base
        for trun in (b for b in children if b.type == "trun"):
            position = read_trun(moof, trun, base=base, position=position, defaults=own, table=table)
        data_end = position


def read_tfhd(
    moof: bytes, box: Box, *, defaults: dict[int, Defaults], moof_at: int, previous_end: int
) -> tuple[int, Defaults, int]:
    """``(track id, this fragment's defaults, base data offset)`` from a ``tfhd``."""
    (flags,) = unpack(">I", moof, box.body)
    flags &= 0xFFFFFF
    (track_id,) = unpack(">I", moof, box.body + 4)
    if track_id not in defaults:
        raise MediaError(f"a fragment names track {track_id}, which the moov does not have")
    d = defaults[track_id]
    pos = box.body + 8
    base = moof_at if flags & DEFAULT_BASE_IS_MOOF else previous_end
    values = {}
    for flag, fmt, name in (
        (BASE_DATA_OFFSET, ">Q", "base"),
        (SAMPLE_DESCRIPTION, ">I", "description"),
        (DEFAULT_DURATION, ">I", "duration"),
        (DEFAULT_SIZE, ">I", "size"),
        (DEFAULT_FLAGS, ">I", "flags"),
    ):
        if flags & flag:
            (values[name],) = unpack(fmt, moof, pos)
            pos += struct.calcsize(fmt)
    if pos > box.end:
        raise MediaError(f"tfhd of track {track_id} is shorter than its flags say")
    base = values.pop("base", base)
    own = Defaults(
        values.get("description", d.description),
        values.get("duration", d.duration),
        values.get("size", d.size),
        values.get("flags", d.flags),
    )
    return track_id, own, base


def read_tfdt(moof: bytes, box: Box) -> int:
    """The decode time in a ``tfdt``."""
    version = moof[box.body]
    (time,) = unpack(">Q" if version == 1 else ">I", moof, box.body + 4)
    return int(time)


def read_trun(
    moof: bytes, box: Box, *, base: int, position: int, defaults: Defaults, table: SampleTable
) -> int:
    """Add a ``trun``'s samples to ``table``; returns the file offset just past its data."""
    version = moof[box.body]
    (flags, count) = unpack(">II", moof, box.body)
    flags &= 0xFFFFFF
    pos = box.body + 8
    if flags & DATA_OFFSET:
        (offset,) = unpack(">i", moof, pos)
        position = base + offset
        pos += 4
    first_flags = None
    if flags & FIRST_SAMPLE_FLAGS:
        (first_flags,) = unpack(">I", moof, pos)
        pos += 4
    if count > MAX_RUN_SAMPLES:
        raise MediaError(f"trun of track {table.track_id} claims {count} samples, over the limit")
    fields = [f for f in (SAMPLE_DURATION, SAMPLE_SIZE, SAMPLE_FLAGS, SAMPLE_CTO) if flags & f]
    width = 4 * len(fields)
    if pos + width * count > box.end:
        raise MediaError(f"trun of track {table.track_id} claims {count} samples, more than it holds")
    column = {}
    if fields:
        table_data = array("I", moof[pos : pos + width * count])
        if table_data.itemsize != 4:
            raise MediaError("this platform's array sizes do not match MP4 fields")
        table_data.byteswap()
        column = {f: table_data[i :: len(fields)] for i, f in enumerate(fields)}
    sizes = column.get(SAMPLE_SIZE) or array("I", [defaults.size] * count)
    durations = column.get(SAMPLE_DURATION) or array("I", [defaults.duration] * count)
    sample_flags = column.get(SAMPLE_FLAGS) or array("I", [defaults.flags] * count)
    offsets = column.get(SAMPLE_CTO) or array("I", [0] * count)
    if version == 1:  # signed composition offsets
        offsets = array("i", offsets.tobytes())
    if first_flags is not None and count:
        sample_flags[0] = first_flags
    if position < 0:
        raise MediaError(f"trun of track {table.track_id} points before the file")
    if count:
        table.add_run(
            at=position,
            sizes=sizes,
            durations=durations,
            flags=sample_flags,
            offsets=array("q", offsets),
            description=defaults.description,
        )
    return position + sum(sizes)


def check_chunks_in_media(tables: Iterable[SampleTable], *, media: list[tuple[int, int]]) -> None:
    """Every chunk must lie inside one ``mdat`` payload."""
    starts = [start for start, _ in media]
    for table in tables:
        for at, size in zip(table.chunks, table.chunk_sizes, strict=True):
            i = bisect.bisect_right(starts, at) - 1
            if i < 0 or at + size > media[i][1]:
                raise MediaError(f"track {table.track_id} has samples outside the media data")
