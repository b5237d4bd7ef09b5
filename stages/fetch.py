"""Fetch: read the playlist, check its URIs, download the slices concurrently and in order.

Nothing is downloaded for a playlist that is unsafe (``UNSAFE_URI``) or unfinished
(``NO_ENDLIST``). Slices are saved under recpipe's own names (``00000.ts`` ...) in the job's
work directory, never under names taken from the playlist.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from pipeline.exceptions import NamingError, ObjectNotFound, PlaylistError, StorageError
from pipeline.job import Finding, Job, Recording, Segment
from pipeline.naming import parse_name
from pipeline.storage.base import ObjectInfo, Storage
from stages.base import StageContext
from stages.playlist import Playlist, decode_playlist, parse_playlist, unsafe_reason

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

ExecutorFactory = Callable[[int], Executor]


def build_segments(playlist: Playlist, *, recording: Recording) -> tuple[Segment, ...]:
    """One ``Segment`` per entry; ``key`` only for safe URIs, ``utc`` only for conforming names."""
    segments = []
    for entry in playlist.entries:
        safe = unsafe_reason(entry.uri) is None
        segments.append(
            Segment(
                index=entry.index,
                num=entry.num,
                uri=entry.uri,
                duration=entry.duration,
                discontinuity=entry.discontinuity,
                key=recording.directory + entry.uri if safe else None,
                utc=slice_utc(entry.uri, recording=recording) if safe else None,
            )
        )
    return tuple(segments)


def slice_utc(uri: str, *, recording: Recording) -> datetime | None:
    """The start time in a slice name that belongs to ``recording``, else None."""
    try:
        name = parse_name(uri)
    except NamingError:
        return None
    same = (name.sid, name.cname, name.uid, name.media) == (
        recording.sid,
        recording.cname,
        recording.uid,
        recording.media,
    )
    return name.utc if same and name.kind == "slice" else None


def playlist_findings(playlist: Playlist, segments: Iterable[Segment]) -> tuple[Finding, ...]:
    """``UNSAFE_URI`` for every unsafe entry and ``NO_ENDLIST`` for an unfinished playlist."""
    findings = [
        Finding(
            code="UNSAFE_URI",
            severity="error",
            segment=seg.uri,
            entry=seg.index,
            detail=f"entry {seg.index} names {seg.uri!r}, which has {unsafe_reason(seg.uri)}; "
            "nothing was fetched",
        )
        for seg in segments
        if seg.key is None
    ]
    if not playlist.endlist:
        findings.append(
            Finding(
                code="NO_ENDLIST",
                severity="info",
                detail="the playlist has no #EXT-X-ENDLIST: "
                "the recording is still in progress (or was not stopped)",
            )
        )
    return tuple(findings)


def map_in_order(fn: Callable[[T], R], items: Iterable[T], *, executor: Executor, window: int) -> Iterator[R]:
    """``fn`` over ``items`` on ``executor``, yielding results in input order, ``window`` in flight."""
    source = iter(items)
    pending: deque[Future[R]] = deque(
        executor.submit(fn, item) for _, item in zip(range(window), source, strict=False)
    )
    try:
        while pending:
            result = pending.popleft().result()
            for item in source:
                pending.append(executor.submit(fn, item))
                break
            yield result
    finally:
        for future in pending:
            future.cancel()


def fetch_segment(
    seg: Segment, *, storage: Storage, dest: Path, listed: Mapping[str, ObjectInfo], attempts: int
) -> Segment:
    """Download one slice; a missing object gives a segment with ``local=None``."""
    assert seg.key is not None
    expected = listed.get(seg.key)
    for attempt in range(1, attempts + 1):
        try:
            info = storage.get(seg.key, dest)
        except ObjectNotFound:
            return seg
        if expected is None or info.size == expected.size:
            return replace(seg, local=dest, size=info.size)
        log.warning(
            "slice %s: %d bytes, listed as %d (attempt %d)", seg.key, info.size, expected.size, attempt
        )
    raise StorageError(
        f"slice size keeps differing from the listing after {attempts} attempts; it may be being rewritten",
        key=seg.key,
    )


def read_playlist(storage: Storage, key: str, *, max_bytes: int) -> Playlist:
    """Read and parse the playlist object."""
    return parse_playlist(decode_playlist(storage.read_bytes(key, max_bytes=max_bytes)))


class FetchStage:
    """Read the playlist and download every listed slice that is safe to read."""

    name = "fetch"

    def __init__(self, *, executor_factory: ExecutorFactory | None = None) -> None:
        self._executor_factory = executor_factory or (lambda n: ThreadPoolExecutor(n, "recpipe-fetch"))

    def run(self, job: Job, ctx: StageContext) -> Job:
        """Fill ``job.segments`` (fetched where possible) and add the playlist's findings."""
        recording = job.recording
        if recording.playlist_key is None:
            raise PlaylistError(f"no playlist has been uploaded yet for {recording.label}")
        playlist = read_playlist(ctx.storage, recording.playlist_key, max_bytes=ctx.config.max_playlist_bytes)
        segments = build_segments(playlist, recording=recording)
        findings = playlist_findings(playlist, segments)
        job = replace(
            job,
            segments=segments,
            findings=job.findings + findings,
            playlist_duration=playlist.duration,
            target_duration=playlist.target_duration,
            endlist=playlist.endlist,
        )
        if findings and any(f.code in {"UNSAFE_URI", "NO_ENDLIST"} for f in findings):
            return job
        return replace(job, segments=self._download(segments, recording=recording, ctx=ctx))

    def _download(
        self, segments: tuple[Segment, ...], *, recording: Recording, ctx: StageContext
    ) -> tuple[Segment, ...]:
        folder = ctx.workdir / "slices"
        folder.mkdir(parents=True, exist_ok=True)
        listed = {o.key: o for o in recording.slices}
        total = sum(listed[s.key].size for s in segments if s.key in listed)

        def one(seg: Segment) -> Segment:
            dest = folder / f"{seg.index:05d}.ts"
            return fetch_segment(
                seg, storage=ctx.storage, dest=dest, listed=listed, attempts=ctx.config.fetch_attempts
            )

        done = []
        ctx.progress.start("fetch", total=total, unit="B")
        try:
            with self._executor_factory(ctx.config.fetch_workers) as executor:
                for seg in map_in_order(one, segments, executor=executor, window=ctx.config.fetch_window):
                    done.append(seg)
                    ctx.progress.advance(seg.size or 0)
        finally:
            ctx.progress.finish()
        return tuple(done)
