"""Fetch: read the playlist, check its URIs, stream the slices concurrently and hand them on in order.

Nothing is downloaded for a playlist that is unsafe (``UNSAFE_URI``) or unfinished
(``NO_ENDLIST``). Slices are never written to disk: each is downloaded into memory by a worker
thread; in playlist order, each is then read by recpipe's MPEG-TS reader (verification while the
recording streams) and handed to the stage's consumer (the remux feeder), then dropped. Memory is
bounded by ``fetch_window_bytes``: no new download starts while that many bytes are in flight or
waiting. The report's ``fetch`` time therefore includes feeding ffmpeg; ``remux`` is finishing and
checking the MP4s.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeVar

from pipeline.model.exceptions import NamingError, ObjectNotFound, ObjectTooLarge, PlaylistError, StorageError
from pipeline.model.job import Finding, Job, Recording, Segment
from pipeline.model.naming import parse_name
from pipeline.storage.base import ObjectInfo, Storage
from stages.base import Fetched, SliceConsumer, StageContext
from stages.failover import failover_summary, join_parts
from stages.media.ts import read_slice
from stages.playlist import Playlist, decode_playlist, parse_playlist, unsafe_reason
from stages.snapshots import (
    MAX_SNAPSHOTS,
    MAX_TOTAL_ENTRIES_FACTOR,
    Choice,
    choose_playlist,
    snapshot_findings,
)

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
    same = (name.sid, name.cname, name.uid, name.media, name.codec) == (
        recording.sid,
        recording.cname,
        recording.uid,
        recording.media,
        recording.codec,
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


def first_entries(segments: Sequence[Segment]) -> dict[str, int]:
    """Each safe key's first entry: every object is read once, however often the playlist lists it
    (so the bytes a playlist can make recpipe read are bounded by what is in storage)."""
    first: dict[str, int] = {}
    for seg in segments:
        if seg.key is not None:
            first.setdefault(seg.key, seg.index)
    return first


def map_in_order(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    executor: Executor,
    window: int,
    weight: Callable[[T], int] | None = None,
    budget: int | None = None,
    started: Callable[[T], Future[R] | None] | None = None,
) -> Iterator[R]:
    """``fn`` over ``items`` on ``executor``, yielding results in input order.

    At most ``window`` items are in flight or waiting to be consumed; with ``weight`` and ``budget``,
    also at most ``budget`` of their summed weight (a single heavier item still goes, alone). An item
    for which ``started`` gives a future (its result already on its way) takes that future's result,
    and no worker.
    """
    source = iter(items)
    pending: deque[tuple[Future[R], int]] = deque()
    waiting: list[T] = []
    """At most one item taken from ``source`` that did not fit yet."""
    load = 0

    def fill() -> None:
        nonlocal load
        while len(pending) < window:
            if not waiting:
                waiting.extend(itertools.islice(source, 1))
                if not waiting:
                    return
            cost = weight(waiting[0]) if weight is not None else 0
            if pending and budget is not None and load + cost > budget:
                return
            item = waiting.pop()
            future = started(item) if started is not None else None
            pending.append((future if future is not None else executor.submit(fn, item), cost))
            load += cost

    try:
        fill()
        while pending:
            future, cost = pending.popleft()
            result = future.result()
            load -= cost
            fill()
            yield result
    finally:
        for future, _ in pending:
            future.cancel()


def fetch_segment(
    seg: Segment, *, storage: Storage, listed: Mapping[str, ObjectInfo], attempts: int, max_bytes: int
) -> Fetched:
    """Download one slice into memory; a missing object gives ``data=None``."""
    assert seg.key is not None
    data = fetch_slice(seg.key, storage=storage, listed=listed, attempts=attempts, max_bytes=max_bytes)
    return as_fetched(seg, data)


def fetch_slice(
    key: str, *, storage: Storage, listed: Mapping[str, ObjectInfo], attempts: int, max_bytes: int
) -> bytes | None:
    """A slice's bytes, of the size the listing gave (read again if not); None when it is missing."""
    expected = listed.get(key)
    for attempt in range(1, attempts + 1):
        try:
            data = storage.read_bytes(key, max_bytes=max_bytes)
        except ObjectNotFound:
            return None
        if expected is None or len(data) == expected.size:
            return data
        log.warning("slice %s: %d bytes, listed as %d (attempt %d)", key, len(data), expected.size, attempt)
    raise StorageError(
        f"slice size keeps differing from the listing after {attempts} attempts; it may be being rewritten",
        key=key,
    )


def as_fetched(seg: Segment, data: bytes | None) -> Fetched:
    """The entry with the bytes read for it (None: missing)."""
    return Fetched(segment=seg if data is None else replace(seg, size=len(data)), data=data)


def head_start_keys(
    recording: Recording, *, count: int, quiet_s: float, budget: int, now: float
) -> tuple[str, ...]:
    """The slices to read while the playlist is read: the first ``count`` listed, as long as their
    sizes add up to at most ``budget`` (the first always), when the playlist was last written
    ``quiet_s`` or more before ``now`` (a recording still going rewrites it with every slice: its
    playlist says it is unfinished, and nothing would be read for it). Nothing for a recording with
    snapshot playlists or failover sets, whose playlists order the slices their own way."""
    playlist = recording.playlist
    if count < 1 or playlist is None or playlist.modified is None or now - playlist.modified < quiet_s:
        return ()
    if recording.snapshots or recording.failovers:
        return ()
    keys: list[str] = []
    total = 0
    for info in recording.slices[:count]:
        total += info.size
        if keys and total > budget:
            break
        keys.append(info.key)
    return tuple(keys)


def adopted(seg: Segment, read: Future[bytes | None]) -> Future[Fetched]:
    """The entry ``seg`` fetched by a read already under way for its key."""
    out: Future[Fetched] = Future()
    out.set_running_or_notify_cancel()  # only its read can end it: never cancelled, always set

    def done(finished: Future[bytes | None]) -> None:
        try:
            out.set_result(as_fetched(seg, finished.result()))
        except BaseException as err:  # the read's error, raised where the entry is taken
            out.set_exception(err)

    read.add_done_callback(done)
    return out


def read_media(fetched: Fetched) -> Fetched:
    """The slice with what recpipe's MPEG-TS reader finds in its bytes (nothing to read when empty).

    Slices are read here, one at a time in playlist order, not in the download threads: reading is
    CPU work under Python's GIL, and downloads (which mostly wait) must not hold up the one thread
    that keeps ffmpeg fed.
    """
    if not fetched.data:
        return fetched
    return replace(fetched, segment=replace(fetched.segment, media=read_slice((fetched.data,))))


def read_playlist(storage: Storage, key: str, *, max_bytes: int, max_entries: int) -> Playlist:
    """Read and parse the playlist object (within the size and entry limits)."""
    try:
        data = storage.read_bytes(key, max_bytes=max_bytes)
    except ObjectTooLarge as err:
        raise PlaylistError(
            f"the playlist is over the {max_bytes}-byte limit (RECPIPE_MAX_PLAYLIST_BYTES)"
        ) from err
    return parse_playlist(decode_playlist(data), max_entries=max_entries)


def read_playlists(storage: Storage, recording: Recording, *, max_bytes: int, max_entries: int) -> Choice:
    """Read the recording's playlists — its own, its snapshot playlists, and its failover sets' — and
    choose what to process: for each part the one complete playlist, or all of them merged
    (``stages.snapshots``); the parts joined in order (``stages.failover``).

    Every playlist must be readable: one that is not makes the recording ``PLAYLIST_INVALID``
    (named in the message), since the slices only it lists would otherwise be left out unnoticed.
    """
    parts = [p for p in (recording, *recording.failovers) if p.playlist_key is not None or p.snapshots]
    if not recording.failovers or not parts:
        return _read_part(storage, recording, max_bytes=max_bytes, max_entries=max_entries)
    choices = [_read_part(storage, p, max_bytes=max_bytes, max_entries=max_entries) for p in parts]
    return join_parts(choices, max_entries=max_entries)


def _read_part(storage: Storage, recording: Recording, *, max_bytes: int, max_entries: int) -> Choice:
    """The playlist to process of one recorder's set: its own, or its snapshot playlists'."""
    main_key = recording.playlist_key
    if main_key is None and not recording.snapshots:
        raise PlaylistError(f"no playlist has been uploaded yet for {recording.label}")
    if main_key is not None and not recording.snapshots:
        main = read_playlist(storage, main_key, max_bytes=max_bytes, max_entries=max_entries)
        return choose_playlist((main_key, main), {}, utc_of=lambda _: None)
    if len(recording.snapshots) > MAX_SNAPSHOTS:
        raise PlaylistError(
            f"{len(recording.snapshots)} snapshot playlists, over the limit of {MAX_SNAPSHOTS} per recording"
        )
    budget, total = MAX_TOTAL_ENTRIES_FACTOR * max_entries, 0
    read: dict[str, Playlist] = {}
    for key in ([main_key] if main_key else []) + [o.key for o in recording.snapshots]:
        read[key] = _read_named(storage, key, max_bytes=max_bytes, max_entries=max_entries)
        total += len(read[key].entries)
        if total > budget:
            raise PlaylistError(f"the recording's playlists list over {budget} entries together")
    main_pair = (main_key, read.pop(main_key)) if main_key else None
    return choose_playlist(
        main_pair, read, utc_of=lambda uri: slice_utc(uri, recording=recording), max_entries=max_entries
    )


def _read_named(storage: Storage, key: str, *, max_bytes: int, max_entries: int) -> Playlist:
    """``read_playlist``, naming the playlist in a ``PlaylistError`` (a recording has several)."""
    try:
        return read_playlist(storage, key, max_bytes=max_bytes, max_entries=max_entries)
    except PlaylistError as err:
        raise PlaylistError(f"{key.rpartition('/')[2]}: {err}") from err


@dataclass(frozen=True, slots=True)
class _Reads:
    """What one fetch's reads share: the listing by key, the workers, and the reads under way (the head
    start's, each taken by its entry)."""

    listed: Mapping[str, ObjectInfo]
    executor: Executor
    ahead: dict[str, Future[bytes | None]]


class FetchStage:
    """Read the playlist, stream every listed slice that is safe to read, and read each in order."""

    name = "fetch"

    def __init__(
        self, *, consumer: SliceConsumer | None = None, executor_factory: ExecutorFactory | None = None
    ) -> None:
        self._consumer = consumer
        self._executor_factory = executor_factory or (lambda n: ThreadPoolExecutor(n, "recpipe-fetch"))

    def run(self, job: Job, ctx: StageContext) -> Job:
        """Fill ``job.segments`` (sizes and media facts where fetched); add the playlist's findings."""
        listed = {o.key: o for o in job.recording.slices}
        with self._executor_factory(ctx.config.fetch_workers) as executor:
            ahead = self._head_start(job.recording, listed=listed, ctx=ctx, executor=executor)
            try:
                return self._run(job, ctx, reads=_Reads(listed=listed, executor=executor, ahead=ahead))
            finally:
                for read in ahead.values():  # read ahead for entries the playlist does not have
                    read.cancel()
                ahead.clear()

    def _head_start(
        self,
        recording: Recording,
        *,
        listed: Mapping[str, ObjectInfo],
        ctx: StageContext,
        executor: Executor,
    ) -> dict[str, Future[bytes | None]]:
        """Start reading the first slices listed, while the playlist is read (``head_start_keys``): the
        playlist's round trip is not left idle before the first slices' (an hour over the bench's 40 ms
        link: 5.48–5.49 → 5.42–5.43 s, medians of 6). Each is taken by its entry once the playlist names
        it; a read's error shows there."""
        config = ctx.config
        keys = head_start_keys(
            recording,
            count=min(config.fetch_head_start, config.fetch_workers - 1),
            quiet_s=config.fetch_head_start_after_s,
            budget=config.fetch_window_bytes,
            now=time.time(),
        )
        if keys:
            log.debug("reading %d slices while the playlist is read", len(keys))
        return {
            key: executor.submit(
                fetch_slice,
                key,
                storage=ctx.storage,
                listed=listed,
                attempts=config.fetch_attempts,
                max_bytes=config.max_slice_bytes,
            )
            for key in keys
        }

    def _run(self, job: Job, ctx: StageContext, *, reads: _Reads) -> Job:
        recording = job.recording
        limits = {"max_bytes": ctx.config.max_playlist_bytes, "max_entries": ctx.config.max_playlist_entries}
        choice = read_playlists(ctx.storage, recording, **limits)
        playlist = choice.playlist
        segments = build_segments(playlist, recording=recording)
        findings = (
            snapshot_findings(choice) + failover_summary(choice) + playlist_findings(playlist, segments)
        )
        job = replace(
            job,
            segments=segments,
            findings=job.findings + findings,
            playlist_duration=playlist.duration,
            target_duration=playlist.target_duration,
            endlist=playlist.endlist,
            playlists=choice.used,
            failover_joins=choice.joins,
        )
        if findings and any(f.code in {"UNSAFE_URI", "NO_ENDLIST"} for f in findings):
            return job
        return replace(job, segments=self._stream(job, ctx=ctx, reads=reads))

    def _stream(self, job: Job, *, ctx: StageContext, reads: _Reads) -> tuple[Segment, ...]:
        listed, executor, ahead = reads.listed, reads.executor, reads.ahead
        first = first_entries(job.segments)
        total = sum(listed[key].size for key in first if key in listed)
        config = ctx.config

        def one(seg: Segment) -> Fetched:
            if seg.key is None or first[seg.key] != seg.index:  # unsafe, or a repeat: not read again
                return Fetched(segment=seg, data=None)
            return fetch_segment(
                seg,
                storage=ctx.storage,
                listed=listed,
                attempts=config.fetch_attempts,
                max_bytes=config.max_slice_bytes,
            )

        def weight(seg: Segment) -> int:
            info = listed.get(seg.key or "")
            return info.size if info is not None and first[info.key] == seg.index else 0

        def started(seg: Segment) -> Future[Fetched] | None:
            read = ahead.pop(seg.key, None) if seg.key is not None and first[seg.key] == seg.index else None
            return adopted(seg, read) if read is not None else None

        done: list[Segment] = []
        consumer = self._consumer
        ok = False
        ctx.progress.start("fetch" if consumer is None else "fetch+remux", total=total, unit="B")
        try:
            with executor:  # the reads end before the consumer is told it is over
                # The consumer gets ready while the first slices are on their way (the remux feeder
                # asks the destination whether its MP4's name is taken: a round trip).
                ready = executor.submit(consumer.start, job, ctx) if consumer is not None else None
                for fetched in map_in_order(
                    one,
                    job.segments,
                    executor=executor,
                    window=config.fetch_window,
                    weight=weight,
                    budget=config.fetch_window_bytes,
                    started=started,
                ):
                    fetched = read_media(fetched)
                    seg = fetched.segment
                    if seg.key is not None and first[seg.key] != seg.index:  # what its first entry read
                        read = done[first[seg.key]]
                        fetched = Fetched(segment=replace(seg, size=read.size, media=read.media), data=None)
                    done.append(fetched.segment)
                    if consumer is not None:
                        if ready is not None:  # ready before its first slice, or its error raised
                            ready.result()
                            ready = None
                        consumer.add(fetched)
                    ctx.progress.advance(fetched.segment.size or 0)
                if ready is not None:  # no slice at all
                    ready.result()
            ok = True
        finally:
            if consumer is not None:
                consumer.finish(ok=ok)
            ctx.progress.finish()
        return tuple(done)
