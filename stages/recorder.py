"""The recorder's own MP4s: find them beside the slices and read their index.

With ``avFileType`` ``["hls", "mp4"]`` the recorder writes ``<sid>_<cname>_<index>.mp4`` itself (and
``bak<n>_…`` ones after a failover) beside the slices. ``RecorderStage`` (before fetching) reads each
of those that is not recpipe's own (``stages.outputs.is_own``) — its ``moov`` only, with ranged reads,
never the media — and, when any is there, has recpipe name its own MP4s ``….recpipe.mp4``. Whether
the set covers the recording is decided in ``stages.coverage``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import replace

from pipeline.model.exceptions import MediaError, NamingError
from pipeline.model.job import Job, RecorderMp4
from pipeline.model.naming import AgoraName, parse_name
from pipeline.storage.base import ObjectInfo, Storage
from stages.base import StageContext
from stages.media.mp4 import parse_mp4
from stages.outputs import is_own

log = logging.getLogger(__name__)

BLOCK_BYTES = 1024 * 1024
"""Ranged reads of an MP4's index are made in blocks of this size (an hour's ``moov`` is ~0.5 MB)."""
MAX_INDEX_READ_BYTES = 64 * 1024 * 1024
"""The most of one MP4 read to find and parse its ``moov``; a larger index is reported unreadable."""


class BlockReader:
    """``read_at(offset, count)`` over a stored object, in cached ``BLOCK_BYTES`` ranged reads."""

    def __init__(self, storage: Storage, key: str, *, size: int) -> None:
        self._storage = storage
        self._key = key
        self._size = size
        self._blocks: dict[int, bytes] = {}

    def __call__(self, offset: int, count: int) -> bytes:
        end = min(offset + count, self._size)
        pieces = []
        for block in range(offset // BLOCK_BYTES, math.ceil(end / BLOCK_BYTES)):
            data = self._block(block)
            start = block * BLOCK_BYTES
            pieces.append(data[max(offset - start, 0) : end - start])
        return b"".join(pieces)

    def _block(self, number: int) -> bytes:
        data = self._blocks.get(number)
        if data is None:
            if (len(self._blocks) + 1) * BLOCK_BYTES > MAX_INDEX_READ_BYTES:
                raise MediaError(f"its index is larger than {MAX_INDEX_READ_BYTES // (1024 * 1024)} MiB")
            count = min(BLOCK_BYTES, self._size - number * BLOCK_BYTES)
            data = self._storage.read_range(self._key, offset=number * BLOCK_BYTES, count=count)
            self._blocks[number] = data
        return data


def read_recorder_mp4(storage: Storage, obj: ObjectInfo, *, name: AgoraName) -> RecorderMp4:
    """The recorder's MP4 as recpipe reads it: its duration and tracks, or why they cannot be read."""
    found = RecorderMp4(key=obj.key, index=name.index or 0, backup=name.backup, bytes=obj.size, etag=obj.etag)
    try:
        info = parse_mp4(BlockReader(storage, obj.key, size=obj.size), size=obj.size)
    except MediaError as err:
        return replace(found, error=str(err))
    return replace(found, duration_s=info.duration_s, tracks=info.track_kinds)


# --- the stage ----------------------------------------------------------------------------------------------


def recorder_mp4s_of(job: Job, *, storage: Storage, own: Callable[[str], bool]) -> tuple[RecorderMp4, ...]:
    """Read every MP4 at the recorder's names that is not recpipe's own."""
    found = []
    for obj in job.recording.mp4s:
        if own(obj.key):
            continue
        try:
            name = parse_name(obj.key.rpartition("/")[2])
        except NamingError:
            continue
        found.append(read_recorder_mp4(storage, obj, name=name))
    return tuple(found)


class RecorderStage:
    """Find the recorder's own MP4s of the recording, read their index, and decide recpipe's MP4 names."""

    name = "recorder"

    def run(self, job: Job, ctx: StageContext) -> Job:
        """Set ``recorder_mp4s`` and, when there are any, ``mp4_alongside``."""
        if not job.recording.mp4s:
            return job
        mp4s = recorder_mp4s_of(job, storage=ctx.storage, own=lambda key: is_own(ctx.storage, key))
        for mp4 in mp4s:
            ctx.logger.info(
                "the recorder's MP4 %s: %s",
                mp4.key,
                mp4.error or f"{mp4.duration_s or 0:.3f} s, {'+'.join(mp4.tracks)}",
            )
        return replace(job, recorder_mp4s=mp4s, mp4_alongside=bool(mp4s))
