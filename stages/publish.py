"""Publish: commit the outputs to the destination, then the report — atomically, idempotently.

Outputs are committed first and the report last, so a report always describes outputs that exist.
A run whose inputs, policy and wanted outputs match an existing successful report does nothing.

On an object store, an MP4 is uploaded while ffmpeg is still writing it (``GrowingUpload``): the
media bytes go up part by part as they settle, the first part (with ``moov`` moved to the front)
last, and the multipart upload is completed here — after verification — or aborted.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.exceptions import MediaError, ObjectNotFound
from pipeline.job import Job, Recording
from pipeline.naming import report_name
from pipeline.report import dump_report, load_report
from pipeline.storage.base import Storage, Upload
from stages.base import Destination, StageContext
from stages.media.faststart import Layout, sha256_of

log = logging.getLogger(__name__)

MAX_REPORT_BYTES = 64 * 1024 * 1024
HASH_CHUNK = 1024 * 1024
MAX_PARTS_IN_FLIGHT = 3
POLL_S = 0.05


def report_key(recording: Recording, *, directory: str) -> str:
    """Key of the recording's report in the destination directory."""
    return directory + report_name(recording.sid, recording.cname, uid=recording.uid, media=recording.media)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def is_up_to_date(report: Mapping[str, Any], *, job: Job) -> bool:
    """Whether ``report`` already covers this job: same inputs and policy, published, same outputs wanted."""
    has_mp4 = any(o.get("kind") == "mp4" for o in report.get("outputs", []))
    return (
        report.get("inputs_digest") == job.inputs_digest
        and report.get("policy") == job.policy
        and report.get("status") in {"ok", "degraded"}
        and has_mp4 == job.want_mp4
    )


def outputs_intact(report: Mapping[str, Any], *, storage: Storage) -> bool:
    """Whether every output the report lists is still there with its size."""
    try:
        return all(storage.stat(o["key"]).size == o["bytes"] for o in report.get("outputs", []))
    except (ObjectNotFound, KeyError, TypeError):
        return False


def read_existing_report(storage: Storage, key: str) -> dict[str, Any] | None:
    """The report at ``key``, or None if there is none (or it is not a recpipe report)."""
    try:
        return load_report(storage.read_bytes(key, max_bytes=MAX_REPORT_BYTES))
    except ObjectNotFound:
        return None


def write_report(report: Mapping[str, Any], *, recording: Recording, destination: Destination) -> str:
    """Write the report beside the recording's outputs (after them); returns its key."""
    key = report_key(recording, directory=destination.directory)
    destination.storage.put_bytes(dump_report(report), key)
    return key


class GrowingUpload:
    """Uploads an MP4 while ffmpeg writes it, in the order the published file will have (moov first).

    Part 1 is the head (``ftyp`` and the moved ``moov``) plus the file's first ``part_bytes``; parts
    2, 3, ... are ``part_bytes`` stretches from there on. While ffmpeg runs, a thread sends each
    stretch once the file has grown ``settle_bytes`` past it: ffmpeg only ever appends media there,
    and writes its ``moov`` (which must be smaller than that) last. ``finish`` sends the rest and
    part 1. Nothing is visible until ``Upload.complete``.
    """

    def __init__(self, upload: Upload, path: Path, *, part_bytes: int, settle_bytes: int) -> None:
        self.upload = upload
        self._path = path
        self._part = part_bytes
        self._settle = settle_bytes
        self._sent: dict[int, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="recpipe-follow", daemon=True)
        self._error: BaseException | None = None

    def start(self) -> None:
        """Begin following the file."""
        self._thread.start()

    def stop(self) -> None:
        """ffmpeg has exited: stop following (what was sent stays sent)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _follow(self) -> None:
        number, start = 2, self._part
        try:
            while not self._stop.wait(POLL_S):
                settled = self._size() - self._settle
                while start + self._part <= settled and self.upload.in_flight() < MAX_PARTS_IN_FLIGHT:
                    self._send(number, start, start + self._part)
                    number, start = number + 1, start + self._part
        except BaseException as err:  # reported by finish()
            self._error = err

    def _size(self) -> int:
        try:
            return self._path.stat().st_size
        except FileNotFoundError:
            return 0

    def _send(self, number: int, start: int, end: int, *, head: bytes | bytearray = b"") -> None:
        """Hand part ``number`` (``head`` + the file's ``[start, end)``) to the upload, once there is
        room: at most ``MAX_PARTS_IN_FLIGHT`` parts are held in memory."""
        while self.upload.in_flight() >= MAX_PARTS_IN_FLIGHT:
            time.sleep(POLL_S / 5)
        with self._path.open("rb") as f:
            data = os.pread(f.fileno(), end - start, start)
        if len(data) != end - start:
            raise MediaError(f"{self._path.name} is shorter than expected while uploading it")
        self.upload.put_part(number, bytes(head) + data if head else data)
        self._sent[number] = (start, end)

    def finish(self, layout: Layout) -> str:
        """Send every part not sent yet, following ``layout``; returns the published file's sha256."""
        self.stop()
        if self._error is not None:
            raise self._error
        body_start, body_end = layout.ranges[0]
        if len(layout.ranges) > 1 or any(end > body_end for _, end in self._sent.values()):
            raise MediaError("the MP4's layout does not allow it to be uploaded while it was written")
        streamed = len(self._sent)
        with ThreadPoolExecutor(1, "recpipe-hash") as pool:
            digest = pool.submit(sha256_of, layout, self._path)
            start = max((end for _, end in self._sent.values()), default=self._part)
            number = max(self._sent, default=1) + 1
            while start < body_end:
                end = min(start + self._part, body_end)
                self._send(number, start, end)
                number, start = number + 1, end
            self._send(1, body_start, min(self._part, body_end), head=layout.head)
            log.debug(
                "%s: %d of %d parts were sent while ffmpeg wrote", self.upload.key, streamed, len(self._sent)
            )
            return digest.result()


class PublishStage:
    """Upload every output recpipe produced to the destination under its final key."""

    name = "publish"

    def run(self, job: Job, ctx: StageContext) -> Job:
        """Replace each local output with its published record (key, size, sha256)."""
        published = []
        for out in job.outputs:
            if out.upload is not None:
                info = out.upload.complete()
                ctx.logger.info("published %s (%d bytes)", info.key, info.size)
                published.append(replace(out, key=info.key, bytes=info.size, upload=None))
                continue
            if out.local is None:
                published.append(out)
                continue
            key = ctx.destination.directory + out.key
            sha256 = out.sha256 or sha256_file(out.local)
            info = ctx.destination.storage.put(out.local, key)
            ctx.logger.info("published %s (%d bytes)", key, info.size)
            published.append(replace(out, key=key, bytes=info.size, sha256=sha256, local=None))
        return replace(job, outputs=tuple(published))
