"""Move an MP4's ``moov`` in front of its media ("faststart"), in one sequential pass that also hashes it.

ffmpeg writes ``ftyp``, then ``mdat`` as the media streams in, then ``moov`` at the end. Players that
fetch over HTTP want ``moov`` first. ffmpeg's own ``+faststart`` does that by re-reading and rewriting
the whole file in place after muxing; recpipe instead writes the published copy in the new order
while it makes that copy anyway (and hashes it on the way), so the move costs no extra pass:

    before:  ftyp | free | mdat ........ | moov            (chunk offsets point into mdat)
    after:   ftyp | moov' | free | mdat ........           (moov' = moov with offsets + len(moov))

Only ``stco``/``co64`` (chunk offset) entries change. A file whose ``moov`` already comes first is
copied as it is.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
from array import array
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import BufferedReader
from pathlib import Path
from typing import BinaryIO

from pipeline.exceptions import MediaError
from stages.media.mp4 import Box, iter_boxes

log = logging.getLogger(__name__)

CONTAINERS = frozenset({"moov", "trak", "mdia", "minf", "stbl", "edts", "dinf", "mvex", "udta"})
"""Boxes whose payload is more boxes: the path from ``moov`` down to every chunk offset table."""
CHUNK = 1024 * 1024
"""Read size while hashing: hashlib is as fast on 1 MiB as on more, and memory stays small."""
MAX_MOOV_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, kw_only=True, slots=True)
class Layout:
    """The output as pieces: ``head`` bytes, then ``[start, end)`` ranges of the source file."""

    head: bytes | bytearray
    ranges: tuple[tuple[int, int], ...]

    @property
    def size(self) -> int:
        """Bytes of the output."""
        return len(self.head) + sum(end - start for start, end in self.ranges)


def shift_chunk_offsets(buf: bytearray, delta: int, *, at: int = 0) -> None:
    """Add ``delta`` to every chunk offset (``stco``, ``co64``) inside the whole ``moov`` box that
    starts at ``at`` in ``buf`` and runs to its end, in place."""
    header = 16 if struct.unpack_from(">I", buf, at)[0] == 1 else 8
    _shift_in(buf, start=at + header, end=len(buf), delta=delta)


def _shift_in(buf: bytearray, *, start: int, end: int, delta: int) -> None:
    for box in iter_boxes(lambda offset, count: bytes(buf[offset : offset + count]), start=start, end=end):
        if box.type in CONTAINERS:
            _shift_in(buf, start=box.body, end=box.end, delta=delta)
        elif box.type in ("stco", "co64"):
            _shift_table(buf, box, delta=delta)


def _shift_table(buf: bytearray, box: Box, *, delta: int) -> None:
    (count,) = struct.unpack_from(">I", buf, box.body + 4)
    width = 4 if box.type == "stco" else 8
    first = box.body + 8
    if first + count * width > box.end:
        raise MediaError(f"{box.type} at offset {box.offset} claims {count} entries, more than it holds")
    table = array("I" if width == 4 else "Q")
    if table.itemsize != width:
        raise MediaError("this platform's array sizes do not match MP4 offset widths")
    table.frombytes(bytes(buf[first : first + count * width]))
    table.byteswap()
    moved = [offset + delta for offset in table]
    if moved and max(moved) >= 1 << (8 * width):
        raise MediaError("the MP4 is too large for 32-bit chunk offsets once moov moves to the front")
    shifted = array(table.typecode, moved)
    shifted.byteswap()
    buf[first : first + count * width] = shifted.tobytes()


def plan(path: Path) -> Layout:
    """How to write ``path`` with ``moov`` first."""
    size = path.stat().st_size
    with path.open("rb") as f:
        start = f.read(min(size, 64 * 1024))
        top = _top_boxes(f, size=size, head=start)
        moov = next((b for b in top if b.type == "moov"), None)
        mdat = next((b for b in top if b.type == "mdat"), None)
        if moov is None:
            raise MediaError(f"{path.name}: not an MP4, no moov box")
        if mdat is None or moov.offset < mdat.offset:
            return Layout(head=b"", ranges=((0, size),))
        if moov.size > MAX_MOOV_BYTES:
            raise MediaError(
                f"{path.name}: moov of {moov.size} bytes is over the {MAX_MOOV_BYTES}-byte limit"
            )
        insert = top[0].end if top[0].type == "ftyp" else 0
        head = bytearray(insert + moov.size)  # what will precede the media, built in place
        _read_exactly(f, 0, memoryview(head)[:insert], name=path.name)
        _read_exactly(f, moov.offset, memoryview(head)[insert:], name=path.name)
    shift_chunk_offsets(head, moov.size, at=insert)
    ranges = ((insert, moov.offset), (moov.end, size))
    return Layout(head=head, ranges=tuple((a, b) for a, b in ranges if b > a))


def _read_exactly(f: BufferedReader, offset: int, view: memoryview, *, name: str) -> None:
    """Fill ``view`` with the file's bytes from ``offset``."""
    f.seek(offset)
    if f.readinto(view) != len(view):
        raise MediaError(f"{name} changed while being read")


def _top_boxes(f: BufferedReader, *, size: int, head: bytes) -> list[Box]:
    def read_at(offset: int, count: int) -> bytes:
        if offset + count <= len(head):
            return head[offset : offset + count]
        f.seek(offset)
        return f.read(count)

    return list(iter_boxes(read_at, start=0, end=size))


def write(layout: Layout, *, src: Path, dest: BinaryIO) -> str:
    """Write ``layout`` (ranges read from ``src``) to ``dest``; returns the sha256 of what was written.

    The bytes are copied inside the kernel (``copy_file_range``) while a second thread hashes the same
    ranges (hashlib releases the GIL), so the copy costs about as long as hashing alone.
    """
    with ThreadPoolExecutor(1, "recpipe-hash") as pool:
        digest = pool.submit(sha256_of, layout, src)
        dest.write(layout.head)
        dest.flush()
        with src.open("rb") as f:
            for start, end in layout.ranges:
                copy_range(f, dest, start=start, end=end)
        return digest.result()


def sha256_of(layout: Layout, src: Path) -> str:
    """The sha256 of the output ``layout`` describes."""
    digest = hashlib.sha256(layout.head)
    with src.open("rb") as f:
        for start, end in layout.ranges:
            f.seek(start)
            left = end - start
            while left:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    raise MediaError(f"{src.name} ended while being hashed")
                digest.update(chunk)
                left -= len(chunk)
    return digest.hexdigest()


def copy_range(src: BinaryIO, dest: BinaryIO, *, start: int, end: int) -> None:
    """Append ``src[start:end]`` to ``dest`` (both real files), in the kernel where it can."""
    offset = start
    try:
        while offset < end:
            copied = os.copy_file_range(src.fileno(), dest.fileno(), end - offset, offset)
            if copied == 0:
                raise MediaError("the MP4 ended while being copied")
            offset += copied
    except OSError as err:  # no copy_file_range here (old kernel, other filesystems): plain reads
        log.debug("copy_file_range failed (%s); copying through memory", err)
        src.seek(offset)
        while offset < end:
            chunk = src.read(min(CHUNK, end - offset))
            if not chunk:
                raise MediaError("the MP4 ended while being copied") from err
            dest.write(chunk)
            offset += len(chunk)
        dest.flush()


def moov_first(src: Path, dest: Path, *, layout: Layout | None = None) -> str:
    """Write ``src`` to ``dest`` with ``moov`` first (as ``layout`` says, if given); ``dest``'s sha256."""
    layout = layout or plan(src)
    with dest.open("xb") as out:
        sha256 = write(layout, src=src, dest=out)
    log.debug("%s: moov moved to the front (%d bytes)", dest.name, layout.size)
    return sha256
