"""Uploading an MP4 while ffmpeg still writes it (``GrowingUpload``), for destinations that take
multipart uploads: the remux stage starts one per MP4, the publish stage completes it (or it is aborted)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipeline.model.config import MIN_PART_BYTES
from pipeline.model.exceptions import MediaError
from pipeline.storage.base import Upload
from pipeline.storage.parts import UPLOAD_WORKERS
from stages.follow import POLL_S, Following
from stages.media.faststart import Layout, read_pieces, sha256_of

log = logging.getLogger(__name__)


class GrowingUpload(Following):
    """Uploads an MP4 while ffmpeg writes it, in the order the published file will have (moov first).

    The published file is a head (``ftyp``, the regular ``moov``, one ``mdat`` header) followed by the
    payloads of ffmpeg's ``mdat`` boxes back to back (``stages.media.faststart``). Following the file
    (``stages.follow``): once an ``mdat`` is complete its payload is final, and every ``part_bytes``
    stretch of the media is sent as soon as it is complete. Part 1 (the head plus the media's first
    ``first_bytes``) waits for ``finish``, which sends the rest and part 1 last. Nothing is visible
    until ``Upload.complete``.

    Part 1 is on the way from the end of the recording to the published MP4, so it holds as little
    media as a part may: by default S3's smallest part (5 MiB, whatever the head's size), where a
    whole ``part_bytes`` made it the largest part of the upload (the head, 0.9 MB an hour, on top).
    """

    def __init__(
        self, upload: Upload, path: Path, *, part_bytes: int, first_bytes: int = MIN_PART_BYTES
    ) -> None:
        super().__init__(path)
        self.upload = upload
        self._part = part_bytes
        self._first = min(first_bytes, part_bytes)
        self._sent: dict[int, tuple[int, int]] = {}
        self._next = (2, self._first)
        """The next part to send from the media found so far: its number and where it starts."""

    def _looked(self) -> None:
        number, start = self._next
        known = sum(end - begin for begin, end in self.media)
        while start + self._part <= known and self.upload.in_flight() < MAX_PARTS_IN_FLIGHT:
            self._send(number, start, start + self._part, media=self.media)
            number, start = number + 1, start + self._part
        self._next = (number, start)

    def _send(
        self,
        number: int,
        start: int,
        end: int,
        *,
        media: Sequence[tuple[int, int]],
        head: bytes | bytearray = b"",
    ) -> None:
        """Hand part ``number`` (``head`` + bytes ``[start, end)`` of the media) to the upload, once
        there is room: at most ``MAX_PARTS_IN_FLIGHT`` parts are held in memory."""
        while self.upload.in_flight() >= MAX_PARTS_IN_FLIGHT:
            time.sleep(POLL_S / 5)
        with self._path.open("rb") as f:
            pieces = list(media_pieces(media, start, end))
            data = read_pieces(f.fileno(), pieces, name=self._path.name, prefix=head)
        if len(data) != len(head) + end - start:
            raise MediaError(f"{self._path.name} is shorter than expected while uploading it")
        self.upload.put_part(number, data)
        self._sent[number] = (start, end)

    def finish(self, layout: Layout) -> str:
        """Send every part not sent yet, following ``layout``; returns the published file's sha256."""
        self.stop()
        if self._error is not None:
            raise self._error
        if tuple(self.media) != layout.ranges[: len(self.media)]:
            raise MediaError("the MP4 changed after parts of it were uploaded")
        streamed = len(self._sent)
        body = sum(end - start for start, end in layout.ranges)
        with ThreadPoolExecutor(1, "recpipe-hash") as pool:
            digest = pool.submit(sha256_of, layout, self._path)
            start = max((end for _, end in self._sent.values()), default=self._first)
            number = max(self._sent, default=1) + 1
            while start < body:
                end = min(start + self._part, body)
                self._send(number, start, end, media=layout.ranges)
                number, start = number + 1, end
            self._send(1, 0, min(self._first, body), media=layout.ranges, head=layout.head)
            log.debug(
                "%s: %d of %d parts were sent while ffmpeg wrote", self.upload.key, streamed, len(self._sent)
            )
            return digest.result()


def media_pieces(ranges: Sequence[tuple[int, int]], start: int, end: int) -> Iterator[tuple[int, int]]:
    """``(file offset, bytes)`` pieces holding bytes ``[start, end)`` of the ranges laid end to end."""
    skipped = 0
    for begin, stop in ranges:
        length = stop - begin
        if skipped + length > start and skipped < end and start < end:
            first = max(start - skipped, 0)
            last = min(end - skipped, length)
            yield begin + first, last - first
        skipped += length
        if skipped >= end:
            return


MAX_PARTS_IN_FLIGHT = UPLOAD_WORKERS
"""Parts handed to the upload and not sent yet, at most: as many as it sends at once."""
