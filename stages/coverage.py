"""Whether the recorder's own MP4s cover the recording (pure decisions on what ``stages.recorder`` read).

``covers`` decides, once the playlist is read, whether the recorder's set makes recpipe's own
unnecessary: every index from 0 present and readable, the tracks the recording has, and together as
long as the playlist (within ``COVER_TOLERANCE_S`` per file). ``recorder_findings`` judges the set
again after verification, against the slices' own media, places each MP4 on the recording's clock
and reports ``RECORDER_MP4``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from pipeline.model.job import Finding, Job, RecorderMp4, Segment

COVER_TOLERANCE_S = 1.0
"""Per MP4: how far the set's total duration may be from the slices'. The recorder starts each MP4
where a slice starts and AAC and video frames end a few tens of milliseconds apart, so a faithful set
lands well inside; a second per file leaves room for the recorder's own rounding."""


EXPECTED_TRACKS = {0: ("audio",), 1: ("video",), 2: ("video", "audio")}
"""``streamTypes`` of the start request → the tracks an MP4 of the recording must have."""


def expected_tracks(segments: Sequence[Segment], *, stream_types: int | None) -> tuple[str, ...]:
    """The tracks an MP4 must have: every stream its slices carry (verify reports any shortfall against
    the profile as ``STREAMS_MISMATCH``); the profile's streamTypes when slices were not read."""
    if not segments or any(s.media is None for s in segments):
        return EXPECTED_TRACKS.get(2 if stream_types is None else stream_types, ())
    kinds = {kind for s in segments if s.media for kind in s.media.kinds}
    return tuple(k for k in ("video", "audio") if k in kinds)


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


def covers(job: Job) -> bool:
    """Before fetching: whether the recorder's set makes recpipe's own MP4s unnecessary (judged against
    the playlist's EXTINFs and the profile's streams; ``recorder_findings`` judges again afterwards)."""
    if not job.recorder_mp4s:
        return False
    tracks = expected_tracks((), stream_types=job.expect.stream_types)
    return judge(job.recorder_mp4s, tracks=tracks, expected_s=job.playlist_duration).covers
