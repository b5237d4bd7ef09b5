"""The recorder's own MP4s: tell them from recpipe's, read their index, judge whether they cover the slices.

With ``avFileType`` ``["hls", "mp4"]`` the recorder writes ``<sid>_<cname>_<index>.mp4`` itself (and
``bak<n>_…`` ones after a failover) beside the slices. recpipe gives its own MP4s the same names, so:

- an MP4 at one of these names is recpipe's when it carries recpipe's label (``OWNER_LABEL``, written
  as object metadata with every output); any other is the recorder's, and recpipe never overwrites or
  deletes it;
- ``RecorderStage`` (before fetching) reads each of the recorder's MP4s' ``moov`` with ranged reads —
  never the media — and, when any is there, has recpipe name its own MP4s ``….recpipe.mp4``
  (``alongside_name``), which the recorder never writes;
- ``covers`` decides, once the playlist is read, whether the recorder's set makes recpipe's own
  unnecessary: every index from 0 present and readable, the tracks the recording has, and together
  as long as the playlist (within ``COVER_TOLERANCE_S`` per file);
- ``recorder_findings`` judges the set again after verification, against the slices' own media,
  places each MP4 on the recording's clock and reports ``RECORDER_MP4``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from pipeline.model.exceptions import MediaError, NamingError, ObjectNotFound
from pipeline.model.job import Finding, Job, RecorderMp4, Segment
from pipeline.model.naming import AgoraName, parse_name
from pipeline.storage.base import ObjectInfo, Storage
from stages.base import StageContext
from stages.media.mp4 import parse_mp4

log = logging.getLogger(__name__)

OWNER_LABEL = "recpipe-output"
"""Metadata recpipe writes with each of its outputs (value: the recording's name): what tells its MP4s
from the recorder's when both carry Agora's names."""
ALONGSIDE_SUFFIX = ".recpipe.mp4"
"""What recpipe's MP4 names end in when the recorder's set is there: a name the recorder never writes."""
COVER_TOLERANCE_S = 1.0
"""Per MP4: how far the set's total duration may be from the slices'. The recorder starts each MP4
where a slice starts and AAC and video frames end a few tens of milliseconds apart, so a faithful set
lands well inside; a second per file leaves room for the recorder's own rounding."""
BLOCK_BYTES = 1024 * 1024
"""Ranged reads of an MP4's index are made in blocks of this size (an hour's ``moov`` is ~0.5 MB)."""
MAX_INDEX_READ_BYTES = 64 * 1024 * 1024
"""The most of one MP4 read to find and parse its ``moov``; a larger index is reported unreadable."""

EXPECTED_TRACKS = {0: ("audio",), 1: ("video",), 2: ("video", "audio")}
"""``streamTypes`` of the start request → the tracks an MP4 of the recording must have."""


def expected_tracks(segments: Sequence[Segment], *, stream_types: int | None) -> tuple[str, ...]:
    """The tracks an MP4 must have: every stream its slices carry (verify reports any shortfall against
    the profile as ``STREAMS_MISMATCH``); the profile's streamTypes when slices were not read."""
    if not segments or any(s.media is None for s in segments):
        return EXPECTED_TRACKS.get(2 if stream_types is None else stream_types, ())
    kinds = {kind for s in segments if s.media for kind in s.media.kinds}
    return tuple(k for k in ("video", "audio") if k in kinds)


def alongside_name(name: str) -> str:
    """``x_0.mp4`` → ``x_0.recpipe.mp4``: recpipe's MP4 beside the recorder's of the same index."""
    return name.removesuffix(".mp4") + ALONGSIDE_SUFFIX


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


def is_own(storage: Storage, key: str) -> bool:
    """Whether the object carries recpipe's label (it is one of recpipe's outputs); an object that is
    gone counts as recpipe's too (there is nothing of anyone else's to keep there)."""
    try:
        return OWNER_LABEL in storage.read_metadata(key)
    except ObjectNotFound:
        return True


def owner_label(job: Job) -> dict[str, str]:
    """The metadata recpipe writes with each output of ``job``."""
    return {OWNER_LABEL: job.recording.stem}


def label_for(key: str) -> dict[str, str]:
    """The metadata recpipe writes with one of its own objects that is not a recording's output (a
    report): the object's name without its extensions."""
    return {OWNER_LABEL: key.rpartition("/")[2].partition(".")[0]}


def name_taken(storage: Storage, key: str) -> bool:
    """Whether an object that is not recpipe's sits at ``key`` (so recpipe must not write there)."""
    return storage.exists(key) and not is_own(storage, key)


# --- judging the set (pure) -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Verdict:
    """Whether the recorder's MP4s make recpipe's own unnecessary, and what keeps them from it."""

    covers: bool
    problems: tuple[str, ...]
    total_s: float


def judge(mp4s: Sequence[RecorderMp4], *, tracks: Sequence[str], expected_s: float) -> Verdict:
    """Judge the recorder's set against ``expected_s`` seconds of media with ``tracks``."""
    problems = list(missing_indexes(mp4s))
    for mp4 in mp4s:
        name = mp4.key.rpartition("/")[2]
        if mp4.error is not None:
            problems.append(f"{name} cannot be read: {mp4.error}")
        elif lacking := [t for t in tracks if t not in mp4.tracks]:
            problems.append(f"{name} has no {' or '.join(lacking)} track")
    total = math.fsum(m.duration_s or 0.0 for m in mp4s)
    tolerance = COVER_TOLERANCE_S * max(len(mp4s), 1)
    readable = all(m.error is None for m in mp4s)
    if mp4s and readable and abs(total - expected_s) > tolerance:
        shortfall = "short of" if total < expected_s else "longer than"
        problems.append(f"together they last {total:.3f} s, {shortfall} the slices' {expected_s:.3f} s")
    return Verdict(covers=bool(mp4s) and not problems, problems=tuple(problems), total_s=total)


def missing_indexes(mp4s: Sequence[RecorderMp4]) -> tuple[str, ...]:
    """A problem for each gap in the indexes of each set (the original's, each failover's)."""
    problems = []
    for backup in sorted({m.backup for m in mp4s}, key=lambda b: -1 if b is None else b):
        have = {m.index for m in mp4s if m.backup == backup}
        absent = sorted(set(range(max(have) + 1)) - have)
        if absent:
            which = "" if backup is None else f" of failover set bak{backup}"
            problems.append(f"MP4 index {', '.join(map(str, absent))}{which} is missing")
    return tuple(problems)


def place(mp4s: Sequence[RecorderMp4], segments: Sequence[Segment]) -> tuple[RecorderMp4, ...]:
    """Each MP4 (originals first, then failover sets, by index) with where it starts on the recording's
    clock and the first and last usable slice it covers, laid end to end over the slices' media."""
    usable = [s for s in segments if s.present and s.defect is None and s.at_s is not None]
    ordered = sorted(mp4s, key=lambda m: (-1 if m.backup is None else m.backup, m.index))
    placed, covered, i = [], 0.0, 0
    for mp4 in ordered:
        start_index = i
        end = covered + (mp4.duration_s or 0.0)
        while i < len(usable) and covered + usable[i].length_s / 2 <= end:
            covered += usable[i].length_s
            i += 1
        first = usable[start_index] if start_index < len(usable) else None
        names = (first.uri, usable[i - 1].uri) if first is not None and i > start_index else ()
        placed.append(replace(mp4, start_s=first.at_s if first is not None else None, slices=names))
    return tuple(placed)


def recorder_findings(job: Job, *, expected_s: float) -> tuple[tuple[RecorderMp4, ...], tuple[Finding, ...]]:
    """``RECORDER_MP4`` after verification: info when the recorder's set covers the slices' media, a
    warning per problem otherwise; each MP4 placed on the recording's clock."""
    mp4s = job.recorder_mp4s
    if not mp4s:
        return (), ()
    tracks = expected_tracks(job.usable_segments, stream_types=job.expect.stream_types)
    verdict = judge(mp4s, tracks=tracks, expected_s=expected_s)
    placed = place(mp4s, job.segments)
    names = ", ".join(m.key.rpartition("/")[2] for m in placed[:5]) + (" ..." if len(placed) > 5 else "")
    if verdict.covers:
        detail = (
            f"the recorder's {len(mp4s)} MP4(s) ({names}) cover the recording: {verdict.total_s:.3f} s "
            f"of the slices' {expected_s:.3f} s, with {'+'.join(tracks) or 'no'} tracks"
        )
        return placed, (Finding(code="RECORDER_MP4", severity="info", detail=detail),)
    outcome = "recpipe writes its own MP4s beside them (….recpipe.mp4)" if job.want_mp4 else "no MP4 wanted"
    findings = tuple(
        Finding(code="RECORDER_MP4", severity="warning", detail=f"the recorder's MP4s: {p}; {outcome}")
        for p in verdict.problems
    )
    return placed, findings


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


def covers(job: Job) -> bool:
    """Before fetching: whether the recorder's set makes recpipe's own MP4s unnecessary (judged against
    the playlist's EXTINFs and the profile's streams; ``recorder_findings`` judges again afterwards)."""
    if not job.recorder_mp4s:
        return False
    tracks = expected_tracks((), stream_types=job.expect.stream_types)
    return judge(job.recorder_mp4s, tracks=tracks, expected_s=job.playlist_duration).covers
