"""Following the fragmented MP4 ffmpeg is writing: each top-level box read once it is complete.

ffmpeg writes its fragmented MP4 front to back and never goes back (``stages.ffmpeg.remux_argv``):
``ftyp``, ``moov``, then ``moof`` and ``mdat`` pairs, ``mfra`` last. A thread looks at the file every
``POLL_S``, and gives the boxes completed since its last look to a ``FragmentedReader``, so the
moov-first layout (``stages.media.faststart``) is ready as soon as ffmpeg exits, instead of being read
from the whole file afterwards (0.2 s an hour, at the end of every run). ``stages.upload.GrowingUpload``
also sends the media while it is written.

Reading along is only a head start: if it failed, or the finished file is not what was read (its
``moov`` rewritten, a box left unfinished), the layout is read from the whole file as before, and that
reading's error, if any, is the one reported.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path

from pipeline.model.exceptions import MediaError
from stages.media.faststart import Layout, layout_of, plan
from stages.media.fragments import FragmentedReader, whole
from stages.media.mp4 import Box, parse_box_header

log = logging.getLogger(__name__)

POLL_S = 0.05
"""How often the file is looked at."""


class Following:
    """A thread following the MP4 at ``path`` until ``stop``; ``layout`` once ffmpeg has exited."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self.media: list[tuple[int, int]] = []
        """``[start, end)`` of each complete ``mdat`` payload found so far."""
        self._reader = FragmentedReader()
        self._broken: MediaError | None = None
        self._scanned = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="recpipe-follow", daemon=True)
        self._error: BaseException | None = None
        self.read_along = False
        """Whether the last ``layout`` came from the boxes read along (not from the whole file)."""

    def start(self) -> None:
        """Begin following the file."""
        self._thread.start()

    def stop(self) -> None:
        """ffmpeg has exited (or is killed): stop following."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def layout(self) -> Layout:
        """The moov-first layout of the finished file: from the boxes read along when they are the whole
        file as it is now, else read from the whole file (``faststart.plan``)."""
        self.stop()
        if self._error is not None:
            log.debug("%s: reading along stopped (%s); reading the whole file", self._path.name, self._error)
            return plan(self._path)
        try:
            with self._path.open("rb") as f:
                fd = f.fileno()
                self._scan(fd)
                if self._read_all(fd):
                    layout = layout_of(self._reader.result())
                    self.read_along = True
                    return layout
        except (OSError, MediaError) as err:
            log.debug("%s: reading along gave no layout (%s); reading the whole file", self._path.name, err)
        return plan(self._path)

    def _read_all(self, fd: int) -> bool:
        """Whether the boxes read along are the whole file as it is now, ``moov`` unchanged."""
        moov = self._reader.moov
        if self._broken is not None or moov is None or self._scanned != os.fstat(fd).st_size:
            return False
        return whole(lambda offset, count: os.pread(fd, count, offset), moov) == self._reader.moov_bytes

    def _follow(self) -> None:
        try:
            with contextlib.ExitStack() as stack:
                fd = None
                while not self._stop.wait(POLL_S):
                    if fd is None:
                        try:
                            fd = stack.enter_context(self._path.open("rb")).fileno()
                        except FileNotFoundError:
                            continue  # ffmpeg has not created it yet
                    self._scan(fd)
                    self._looked()
        except BaseException as err:  # reported by whoever finishes the file
            self._error = err

    def _looked(self) -> None:
        """After each look at the file (``GrowingUpload`` sends the parts completed)."""

    def _scan(self, fd: int) -> None:
        """Read the top-level boxes ffmpeg has finished writing since the last look."""
        size = os.fstat(fd).st_size
        while self._scanned + 8 <= size:
            header = os.pread(fd, 16, self._scanned)
            box = parse_box_header(header, offset=self._scanned, limit=1 << 62)
            if box.size == 0 or box.end > size:  # still being written
                return
            if box.type == "mdat" and box.end > box.body:
                self.media.append((box.body, box.end))
            self._read(box, fd)
            self._scanned = box.end

    def _read(self, box: Box, fd: int) -> None:
        if self._broken is not None:
            return
        try:
            self._reader.add(box, lambda offset, count: os.pread(fd, count, offset))
        except MediaError as err:  # the whole file is read at the end, and reports it
            self._broken = err
