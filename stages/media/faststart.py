"""The published MP4: a regular, moov-first file made from ffmpeg's fragmented output in one pass.

ffmpeg writes a fragmented MP4 (its memory stays flat however long the recording; see
``stages.media.fragments``). recpipe publishes a regular MP4 with ``moov`` first ("faststart"), which
every player handles and which starts playing over HTTP at once::

    ffmpeg wrote:  ftyp | moov (empty) | moof | mdat | moof | mdat | ... | mfra
    published:     ftyp' | moov' | mdat (the payloads of every mdat, in order)

``moov'`` is built from the fragments (``stages.media.moov``); the media bytes are copied unchanged,
inside the kernel (``copy_file_range``), while a second thread hashes the result, so the conversion
costs about as long as hashing alone. The output's disk space is allocated before the copy, in one
request (``reserve``). An output about to be published on local disk is made durable as it is written:
its writeback is started every ``WRITEBACK_BYTES`` and the closing ``fsync`` overlaps the hashing,
instead of writing 250 MB an hour out after both (0.35 s instead of 0.47 s here).
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import errno
import hashlib
import logging
import mmap
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import BinaryIO, cast

from pipeline.model.exceptions import MediaError, NoSpace
from stages.media.fragments import Fragmented, read_fragmented
from stages.media.moov import U32, brands, regular_moov
from stages.media.mp4 import Mp4Info, parse_mp4

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
"""Read size when ``copy_file_range`` is not there."""
BLOCK = 2 * 1024 * 1024
"""About how many media bytes are read, joined and hashed at a time (``block_groups``)."""
SPAN = 8 * 1024 * 1024
"""How much of the file one mapping spans where the pieces are hashed from it, not joined. Every
mapping costs its page faults, and unmapping it a TLB flush on each core the process's threads run
on: an hour's media (420 pieces) hashed in 0.153–0.155 s with 8 MiB spans, 0.167–0.169 s with 2 MiB
(0.152 with 16 or 32 MiB; 5 runs each). Its pages count in the process's memory while mapped."""
WRITEBACK_BYTES = 32 * 1024 * 1024
"""How often, in bytes written, the writeback of a synced output is started (``write``)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Layout:
    """The output as pieces: ``head`` bytes, then ``[start, end)`` ranges of the source file."""

    head: bytes | bytearray
    ranges: tuple[tuple[int, int], ...]

    @property
    def size(self) -> int:
        """Bytes of the output."""
        return len(self.head) + sum(end - start for start, end in self.ranges)

    def info(self) -> Mp4Info:
        """The structure of the output (its ``moov`` is in ``head``)."""
        head = bytes(self.head)
        return parse_mp4(lambda offset, count: head[offset : offset + count], size=self.size)


def mdat_header(size: int) -> bytes:
    """The header of an ``mdat`` holding ``size`` bytes."""
    if size + 8 < U32:
        return struct.pack(">I4s", size + 8, b"mdat")
    return struct.pack(">I4sQ", 1, b"mdat", size + 16)


def layout_of(fragmented: Fragmented, *, wide: bool | None = None) -> Layout:
    """The regular, moov-first file for ``fragmented``: media bytes in the order ffmpeg wrote them.
    Chunk offsets are 64-bit (``co64``) when ``wide``, or when None and the file passes 4 GiB."""
    ranges = tuple((a, b) for a, b in fragmented.media if b > a)
    starts = [a for a, _ in ranges]
    before = [0, *accumulate(b - a for a, b in ranges)]  # media bytes before each range
    body = before[-1]
    ftyp = brands(fragmented.moov)

    def build(*, wide: bool, head: int) -> bytes:
        def where(at: int) -> int:
            i = bisect.bisect_right(starts, at) - 1
            return head + before[i] + at - starts[i]

        return regular_moov(fragmented.moov, fragmented.tables, where=where, wide=wide)

    moov_size = len(build(wide=bool(wide), head=0))  # the values of chunk offsets do not change its size
    if wide is None:
        wide = len(ftyp) + moov_size + len(mdat_header(body)) + body >= U32
        if wide:
            moov_size = len(build(wide=True, head=0))
    head = len(ftyp) + moov_size + len(mdat_header(body))
    # one copy of a moov at a time (4 h: 1.7 MB each)
    return Layout(head=b"".join((ftyp, build(wide=wide, head=head), mdat_header(body))), ranges=ranges)


def plan(path: Path) -> Layout:
    """How to write the fragmented MP4 at ``path`` as a regular one with ``moov`` first."""
    return layout_of(read_fragmented(path))


def write(layout: Layout, *, src: Path, dest: BinaryIO, sync: bool = False) -> str:
    """Write ``layout`` (ranges read from ``src``) to ``dest``; returns the sha256 of what was written.

    The bytes are copied inside the kernel (``copy_file_range``) while a second thread hashes the same
    ranges (hashlib releases the GIL), so the copy costs about as long as hashing alone. With ``sync``,
    ``dest`` is on disk when this returns: a third thread asks the kernel to start writing it out as it
    grows (``start_writeback``: each request waits for the disk's queue, 10–20 ms per 32 MiB here,
    which the copy does not wait for: an hour published in an S3 → local run in 0.167 s instead of
    0.183, medians of 5), and the last ``fsync`` runs while the hashing finishes.
    """
    with contextlib.ExitStack() as threads:
        digest = threads.enter_context(ThreadPoolExecutor(1, "recpipe-hash")).submit(
            sha256_of, layout, src, join=False
        )  # this thread waits in the kernel
        flusher = threads.enter_context(ThreadPoolExecutor(1, "recpipe-writeback")) if sync else None
        reserve(dest.fileno(), layout.size)
        dest.write(layout.head)
        dest.flush()
        written = started = len(layout.head)
        with src.open("rb") as f:
            for start, end in layout.ranges:
                copy_range(f, dest, start=start, end=end)
                written += end - start
                if flusher is not None and written - started >= WRITEBACK_BYTES:
                    flusher.submit(start_writeback, dest.fileno(), start=started, end=written)
                    started = written
        if flusher is not None:
            flusher.shutdown()  # every request made while the file is open
            os.fsync(dest.fileno())
        return digest.result()


def reserve(fd: int, size: int) -> None:
    """Allocate the disk space of the file ``fd``, about to be written with ``size`` bytes, in one
    request (Linux's ``fallocate``); ``NoSpace`` if the file system has no room for it.

    Given its blocks up front, the file lies in a few large extents, and copying the media into it
    costs less than having the file system allocate it piece by piece as the writeback goes: a durable
    hour was copied and synced in 0.12–0.13 s instead of 0.17–0.26 s here (a local run, 1.01 → 0.98 s).
    A full disk is reported before anything is written. Where the call is missing or the file system
    cannot allocate ahead, nothing happens and the copy allocates as before (glibc's
    ``posix_fallocate`` would write a byte into every block instead, which costs more than it saves).
    """
    if _FALLOCATE is None or _FALLOCATE(fd, 0, 0, size) == 0:
        return
    code = ctypes.get_errno()
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        raise NoSpace(f"the work directory has no room for a file of {size} bytes ({os.strerror(code)})")
    log.debug("cannot allocate %d bytes ahead (%s); the copy allocates them", size, os.strerror(code))


def _libc_fallocate() -> Callable[[int, int, int, int], int] | None:
    """libc's ``fallocate64(fd, mode, offset, length)``, where there is one (Linux)."""
    try:
        call = ctypes.CDLL(None, use_errno=True).fallocate64
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    call.restype = ctypes.c_int
    return cast(Callable[[int, int, int, int], int], call)


_FALLOCATE = _libc_fallocate()


def start_writeback(fd: int, *, start: int, end: int) -> None:
    """Have the kernel start writing bytes ``[start, end)`` of ``fd`` to disk, without waiting for it.

    ``POSIX_FADV_DONTNEED`` does that on Linux (its pages still being written stay cached; the others
    are dropped, which nothing here reads again: a local output is published by a hard link). A hint
    only: where it is missing or refused, the closing ``fsync`` writes everything, as it would anyway.
    """
    advise = getattr(os, "posix_fadvise", None)
    if advise is None:
        return
    with contextlib.suppress(OSError):
        advise(fd, start, end - start, os.POSIX_FADV_DONTNEED)


def sha256_of(layout: Layout, src: Path, *, join: bool = True) -> str:
    """The sha256 of the output ``layout`` describes.

    Each block of media is hashed from a read-only mapping of just that stretch of ``src``, copied once
    out of the page cache, where reading it would copy it twice (0.22 instead of 0.25–0.32 cpu-s an hour
    here); a stretch is unmapped once hashed, so the process never holds more than a block of the file.
    Where a stretch cannot be mapped it is read (``read_pieces``).

    With ``join``, the pieces of a block are joined into one digest update (``block_groups`` says why:
    other Python threads are busy, as the upload's are while the hash runs). Without it each piece is
    hashed from the mapping itself, with no copy at all, for a caller whose other threads wait in the
    kernel (``write``'s copy), where the join's copy competes with that copy for memory: an hour
    published from a file written back to disk took 0.164–0.174 s joined, 0.138–0.140 s not; from
    the file ffmpeg has just written, in an S3 → local run, 0.191 s and 0.183 s (medians of 5)."""
    digest = hashlib.sha256(layout.head)
    with src.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        for group in block_groups(layout.ranges, span=BLOCK if join else SPAN):
            if group[-1][0] + group[-1][1] > size:  # mapped past the end, it would fault, not fail
                raise MediaError(f"{src.name} ended while being read")
            try:
                hash_mapped(digest.update, f.fileno(), group, join=join)
            except OSError as err:  # a file system that cannot map
                log.debug("cannot map %s (%s); reading it", src.name, err)
                digest.update(read_pieces(f.fileno(), group, name=src.name))
    return digest.hexdigest()


def hash_mapped(
    update: Callable[[bytes | memoryview], object],
    fd: int,
    pieces: Sequence[tuple[int, int]],
    *,
    join: bool = True,
) -> None:
    """Pass the ``(offset, count)`` pieces of the file ``fd`` (in file order, within it) to ``update``,
    from a mapping of the stretch they span: with ``join``, joined (one copy) into one update, for the
    reason ``block_groups`` gives; else, and for a single piece, each from the mapping itself."""
    first, last = pieces[0][0], pieces[-1][0] + pieces[-1][1]
    base = first - first % mmap.ALLOCATIONGRANULARITY
    with (
        mmap.mmap(fd, last - base, access=mmap.ACCESS_READ, offset=base) as mapped,
        memoryview(mapped) as view,
    ):
        if join and len(pieces) > 1:
            update(b"".join([view[o - base : o - base + n] for o, n in pieces]))
        else:
            for offset, count in pieces:
                update(view[offset - base : offset - base + count])


def block_groups(
    ranges: Sequence[tuple[int, int]], *, span: int | None = None
) -> Iterator[list[tuple[int, int]]]:
    """The ``(offset, count)`` pieces of ``ranges``, in order, grouped so that each group spans at most
    ``span`` bytes of the file (``BLOCK`` unless given).

    The ranges (one per fragment, a few hundred KB, a few bytes apart) are hashed a group at a time, so
    an hour of media takes a few dozen digest updates, not one or two per fragment: each of those lets
    go of Python's lock, and getting it back can wait for another thread's turn (milliseconds), which
    for thousands of small steps costs more than the hashing itself.
    """
    span = span or BLOCK
    group: list[tuple[int, int]] = []
    for start, end in ranges:
        for at in range(start, end, span):
            piece = (at, min(span, end - at))
            if group and piece[0] + piece[1] - group[0][0] > span:
                yield group
                group = []
            group.append(piece)
    if group:
        yield group


def read_pieces(
    fd: int, pieces: Sequence[tuple[int, int]], *, name: str, prefix: bytes | bytearray = b""
) -> bytes:
    """``prefix``, then the ``(offset, count)`` pieces of the file ``fd`` (in file order), joined: one
    read of the stretch they span, and one copy of the pieces out of it."""
    if not pieces:
        return bytes(prefix)
    first, last = pieces[0][0], pieces[-1][0] + pieces[-1][1]
    stretch = os.pread(fd, last - first, first)
    if len(stretch) != last - first:
        raise MediaError(f"{name} ended while being read")
    if len(pieces) == 1 and not prefix:
        return stretch
    view = memoryview(stretch)
    return b"".join([prefix, *(view[offset - first : offset - first + count] for offset, count in pieces)])


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


def moov_first(src: Path, dest: Path, *, layout: Layout | None = None, sync: bool = False) -> str:
    """Write ``src`` to ``dest`` with ``moov`` first (as ``layout`` says, if given); ``dest``'s sha256.
    With ``sync``, ``dest`` is on disk when this returns (see ``write``)."""
    layout = layout or plan(src)
    with dest.open("xb") as out:
        sha256 = write(layout, src=src, dest=out, sync=sync)
    log.debug("%s: written with moov first (%d bytes)", dest.name, layout.size)
    return sha256
