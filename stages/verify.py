"""Verify: is every second of the recording there, sound, and where the recorder says it is?

The fetch stage has read every slice with recpipe's own MPEG-TS reader while it streamed; this stage
reconciles the three clocks into one timeline (``stages.timeline``) and turns what it sees into
findings. Each check is a pure function from segments to findings, so each is tested with a table.
The stage marks unusable segments (``Segment.defect``) so remux leaves them out; it never fixes
anything. ``stages.screen`` applies the per-slice half of the same rules to slices while they stream.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import TypeVar

from pipeline.model.exceptions import NamingError
from pipeline.model.job import Expectations, Finding, Job, Recording, Segment, Severity
from pipeline.model.naming import parse_name
from pipeline.model.report import media_seconds
from stages.base import StageContext
from stages.coverage import recorder_findings
from stages.failover import failover_findings
from stages.screen import unusable
from stages.timeline import (
    Timeline,
    build_timeline,
    describe_kinds,
    entry_finding,
    readable_media,
    repeated_entries,
)

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

DURATION_TOLERANCE_S = 1.0
"""EXTINF and the slice's media may differ by this much before it is reported. Writers of HLS
version < 3 playlists give whole seconds (a 15.49 s slice is listed as 15), and a slice's audio may
end a PES after its last video frame; more than a second is media the playlist misdescribes."""
STREAM_KINDS = {0: frozenset({"audio"}), 1: frozenset({"video"}), 2: frozenset({"audio", "video"})}
"""``streamTypes`` of the start request → the streams every slice must carry."""


def about(
    seg: Segment, *, code: str, severity: Severity, detail: str, seconds: float | None = None
) -> Finding:
    """A finding that concerns one placed playlist entry: at its start, for its EXTINF unless told."""
    seconds = seg.duration if seconds is None else seconds
    return entry_finding(seg, code=code, severity=severity, at_s=seg.at_s, seconds=seconds, detail=detail)


def find_missing(segments: Sequence[Segment]) -> tuple[Finding, ...]:
    """``MISSING_SEGMENT`` for every listed, safe slice that is not in storage."""
    return tuple(
        about(
            seg,
            code="MISSING_SEGMENT",
            severity="error",
            detail=f"slice {seg.uri} is listed in the playlist (entry {seg.index}) but is not in storage",
        )
        for seg in segments
        if seg.key is not None and not seg.present
    )


def find_no_media(segments: Sequence[Segment]) -> tuple[Finding, ...]:
    """``NO_MEDIA`` when not one slice of the recording can be used: nothing to verify or publish, under
    any policy (a best-effort MP4 of nothing is no MP4)."""
    if any(s.present and s.defect is None and (s.media is None or s.media.media_streams) for s in segments):
        return ()
    what = "the playlist lists no slice" if not segments else f"none of its {len(segments)} entries is usable"
    return (Finding(code="NO_MEDIA", severity="error", detail=f"the recording has no media: {what}"),)


def backup_pending(segments: Sequence[Segment]) -> tuple[Finding, ...]:
    """``BACKUP_PENDING`` (the recording is pending) when listed slices are not in storage yet and the
    recorder said some files are still coming from Agora's backup cloud."""
    missing = [s.uri for s in segments if s.key is not None and not s.present]
    if not missing:
        return ()
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    detail = (
        f"{len(missing)} listed slice(s) are not in storage yet and the recorder reported that files are "
        f"still coming from Agora's backup cloud: {shown}; try again later"
    )
    return (Finding(code="BACKUP_PENDING", severity="info", detail=detail),)


def find_empty(segments: Sequence[Segment]) -> tuple[Finding, ...]:
    """``EMPTY_SEGMENT`` for every fetched slice of zero bytes."""
    return tuple(
        about(seg, code="EMPTY_SEGMENT", severity="error", detail=f"slice {seg.uri} is empty (0 bytes)")
        for seg in segments
        if seg.present and seg.size == 0
    )


def find_corrupt(segments: Sequence[Segment]) -> tuple[Finding, ...]:
    """``CORRUPT_SEGMENT`` for every non-empty slice the MPEG-TS reader found damaged."""
    findings = []
    for seg in segments:
        if seg.media is None or not seg.media.problems():
            continue
        usable = "the rest is used" if seg.media.readable else "it is left out of the MP4"
        detail = f"slice {seg.uri} {'; '.join(seg.media.problems())}"
        if seg.media.readable and seg.media.duration_s is not None:
            detail += f"; it holds {seg.media.duration_s:.3f} s of media of its {seg.duration:.3f} s EXTINF"
        findings.append(about(seg, code="CORRUPT_SEGMENT", severity="error", detail=f"{detail} ({usable})"))
    return tuple(findings)


def find_duplicates(segments: Sequence[Segment]) -> tuple[Finding, ...]:
    """``DUPLICATE_SEGMENT`` for every entry that repeats an earlier entry's URI (left out of the MP4)."""
    first: dict[str, int] = {}
    findings = []
    for seg in segments:
        if seg.uri in first:
            detail = (
                f"entry {seg.index} repeats entry {first[seg.uri]} ({seg.uri}); "
                "the repeat is left out of the MP4"
            )
            findings.append(about(seg, code="DUPLICATE_SEGMENT", severity="warning", detail=detail))
        first.setdefault(seg.uri, seg.index)
    return tuple(findings)


def find_name_mismatches(segments: Sequence[Segment], *, recording: Recording) -> tuple[Finding, ...]:
    """``NAME_MISMATCH`` for safe URIs that are not this recording's slice names."""
    expected = (
        f"{recording.stem}_<17-digit UTC>.ts"
        if recording.codec is None
        else f"{recording.stem.removesuffix(recording.codec)}<17-digit UTC>_{recording.codec}.ts"
    )
    return tuple(
        about(
            seg,
            code="NAME_MISMATCH",
            severity="warning",
            detail=f"slice {seg.uri} does not follow the naming convention {expected}",
        )
        for seg in segments
        if seg.key is not None and seg.utc is None
    )


def find_orphans(
    segments: Sequence[Segment], *, recording: Recording, timeline: Timeline | None = None
) -> tuple[Finding, ...]:
    """``ORPHAN_SEGMENT`` for slices of this recording in storage that the playlist does not list."""
    listed = {seg.key for seg in segments}
    findings = []
    for obj in recording.slices:
        if obj.key in listed:
            continue
        name = obj.key.rpartition("/")[2]
        detail = (
            f"{obj.key} ({obj.size} bytes) is named as a slice of this recording "
            "but not listed in the playlist"
        )
        at = orphan_offset(name, timeline=timeline)
        gap = covering_gap(at, timeline) if at is not None else None
        if gap is not None:
            detail += f"; its start time falls in the {gap.seconds:.3f} s gap at {gap.at_s:.3f} s"
        findings.append(
            Finding(code="ORPHAN_SEGMENT", severity="warning", segment=name, at_s=at, detail=detail)
        )
    return tuple(findings)


def orphan_offset(name: str, *, timeline: Timeline | None) -> float | None:
    """Where an unlisted slice's name puts it on the recording's timeline."""
    if timeline is None or timeline.origin is None:
        return None
    try:
        utc = parse_name(name).utc
    except NamingError:
        return None
    return None if utc is None else (utc - timeline.origin).total_seconds()


def covering_gap(at: float, timeline: Timeline | None) -> Finding | None:
    """The TIMELINE_GAP finding whose stretch contains ``at``, if any."""
    for f in timeline.findings if timeline else ():
        if (
            f.code == "TIMELINE_GAP"
            and f.at_s is not None
            and f.seconds is not None
            and f.at_s - 0.001 <= at < f.at_s + f.seconds
        ):
            return f
    return None


def find_target_exceeded(segments: Sequence[Segment], *, target: float | None) -> tuple[Finding, ...]:
    """``TARGET_DURATION_EXCEEDED`` where an EXTINF rounds above #EXT-X-TARGETDURATION (RFC 8216 4.3.3.1).

    Agora's own playlists do this; players cope, so it is a warning.
    """
    if target is None:
        return ()
    return tuple(
        about(
            seg,
            code="TARGET_DURATION_EXCEEDED",
            severity="warning",
            detail=f"EXTINF {seg.duration:.3f} s is longer than the target duration {target:g} s",
        )
        for seg in segments
        if round(seg.duration) > target
    )


def find_duration_mismatches(segments: Sequence[Segment]) -> tuple[Finding, ...]:
    """``DURATION_MISMATCH`` where a sound slice's media and its EXTINF differ by more than the tolerance."""
    findings = []
    for seg in segments:
        media = readable_media(seg)
        if media is None or media.problems() or media.duration_s is None:
            continue
        diff = media.duration_s - seg.duration
        if abs(diff) > DURATION_TOLERANCE_S:
            detail = (
                f"slice {seg.uri} holds {media.duration_s:.3f} s of media "
                f"but its EXTINF says {seg.duration:.3f} s"
            )
            findings.append(
                about(seg, code="DURATION_MISMATCH", severity="warning", seconds=abs(diff), detail=detail)
            )
    return tuple(findings)


def find_no_keyframe(segments: Sequence[Segment]) -> tuple[Finding, ...]:
    """``NO_KEYFRAME_AT_START`` for slices whose video does not begin with a keyframe.

    The recorder does this on a forced cut (past ~5.5 min or ~50 MB); played on its own, or after a
    gap, such a slice shows broken pictures until its first keyframe. A warning.
    """
    findings = []
    for seg in segments:
        media = readable_media(seg)
        video = media.video if media else None
        if video is not None and video.keyframe_at_start is False:
            detail = f"the video of slice {seg.uri} does not start with a keyframe ({video.codec} IDR)"
            findings.append(about(seg, code="NO_KEYFRAME_AT_START", severity="warning", detail=detail))
    return tuple(findings)


def find_continuity_errors(segments: Sequence[Segment]) -> tuple[Finding, ...]:
    """``CONTINUITY_COUNTER`` for slices in which packets were lost or reordered (one finding per slice)."""
    findings = []
    for seg in segments:
        media = seg.media
        if media is None or not media.cc_errors:
            continue
        total = sum(n for _, n in media.cc_errors)
        pids = ", ".join(f"PID {pid}: {n}" for pid, n in media.cc_errors)
        detail = f"slice {seg.uri} has {total} continuity-counter jumps (lost or reordered packets; {pids})"
        findings.append(about(seg, code="CONTINUITY_COUNTER", severity="warning", detail=detail))
    return tuple(findings)


def runs(items: Iterable[tuple[Segment, K | None]]) -> Iterator[tuple[K, list[Segment]]]:
    """Consecutive segments with the same non-None key, grouped."""
    for key, group in itertools.groupby(items, key=lambda item: item[1]):
        if key is not None:
            yield key, [seg for seg, _ in group]


def grouped(segs: list[Segment], *, code: str, severity: Severity, detail: str) -> Finding:
    """One finding for a run of slices: at the first one's start, for their summed length."""
    return about(segs[0], code=code, severity=severity, seconds=sum(s.length_s for s in segs), detail=detail)


def span_text(segs: list[Segment]) -> str:
    """``slice X`` or ``N slices from X to Y``."""
    if len(segs) == 1:
        return f"slice {segs[0].uri}"
    return f"{len(segs)} slices from {segs[0].uri} to {segs[-1].uri}"


def find_streams_mismatch(segments: Sequence[Segment], *, expect: Expectations) -> tuple[Finding, ...]:
    """``STREAMS_MISMATCH``: slices lacking a stream the profile (or the rest of the recording) has.

    A missing stream is media lost (error); a stream the profile did not ask for is a warning.
    Consecutive slices with the same difference make one finding.
    """
    readable = [(seg, media) for seg in segments if (media := readable_media(seg)) is not None]
    if not readable:
        return ()
    wanted = STREAM_KINDS.get(expect.stream_types) if expect.stream_types is not None else None
    expected = wanted if wanted is not None else frozenset().union(*(m.kinds for _, m in readable))
    source = "the profile's streamTypes" if wanted is not None else "the rest of the recording"
    findings = []
    for lacking, segs in runs((seg, frozenset(expected - m.kinds) or None) for seg, m in readable):
        detail = f"{span_text(segs)} lack {describe_kinds(lacking)}, which {source} has"
        findings.append(grouped(segs, code="STREAMS_MISMATCH", severity="error", detail=detail))
    if wanted is not None:
        for extra, segs in runs((seg, frozenset(m.kinds - wanted) or None) for seg, m in readable):
            detail = (
                f"{span_text(segs)} carry {describe_kinds(extra)}, which streamTypes {expect.stream_types} "
                "does not ask for"
            )
            findings.append(grouped(segs, code="STREAMS_MISMATCH", severity="warning", detail=detail))
    return tuple(sorted(findings, key=lambda f: f.entry or 0))


def find_resolution_mismatch(segments: Sequence[Segment], *, expect: Expectations) -> tuple[Finding, ...]:
    """``RESOLUTION_MISMATCH`` (warning) for runs of slices whose video size is not transcodingConfig's."""
    if expect.width is None or expect.height is None:
        return ()
    wanted = (expect.width, expect.height)

    def off(seg: Segment) -> tuple[int, int] | None:
        media = readable_media(seg)
        size = media.resolution if media else None
        return size if size is not None and size != wanted else None

    return tuple(
        grouped(
            segs,
            code="RESOLUTION_MISMATCH",
            severity="warning",
            detail=f"{span_text(segs)} are {size[0]}x{size[1]}, "
            f"not the {wanted[0]}x{wanted[1]} of transcodingConfig",
        )
        for size, segs in runs((seg, off(seg)) for seg in segments)
    )


def check(segments: Sequence[Segment], *, job: Job) -> tuple[tuple[Segment, ...], tuple[Finding, ...]]:
    """Place the scanned segments on the timeline, find everything, mark what the MP4 must leave out."""
    timeline = build_timeline(segments)
    repeats = repeated_entries(segments)
    segs = [replace(s, at_s=timeline.starts[s.index], defect=unusable(s, repeats=repeats)) for s in segments]
    findings = (
        find_missing(segs)
        + find_empty(segs)
        + find_corrupt(segs)
        + find_duplicates(segs)
        + find_name_mismatches(segs, recording=job.recording)
        + timeline.findings
        + find_duration_mismatches(segs)
        + find_streams_mismatch(segs, expect=job.expect)
        + find_resolution_mismatch(segs, expect=job.expect)
        + find_no_keyframe(segs)
        + find_continuity_errors(segs)
        + find_target_exceeded(segs, target=job.target_duration)
        + find_orphans(segs, recording=job.recording, timeline=timeline)
    )
    if job.recording.mode == "individual":
        findings = absences_of_user(findings, segs)
    if job.backup_wait:
        findings += backup_pending(segs)
    findings += find_no_media(segs)
    findings = failover_findings(findings, joins=job.failover_joins)
    return tuple(segs), tuple(sorted(findings, key=position))


def absences_of_user(findings: Sequence[Finding], segments: Sequence[Segment]) -> tuple[Finding, ...]:
    """Individual mode: a stream's time without media before a signalled discontinuity is the user
    away (left, or turned the camera or microphone off), not lost media — ``USER_ABSENT``, info."""
    signalled = {s.index for s in segments if s.discontinuity}
    out = []
    for f in findings:
        if f.code == "TIMELINE_GAP" and f.entry in signalled:
            seconds = f.seconds or 0.0
            detail = f"the user's stream stops for {seconds:.3f} s before {f.segment} (#EXT-X-DISCONTINUITY)"
            f = replace(f, code="USER_ABSENT", severity="info", detail=detail)
        out.append(f)
    return tuple(out)


def position(f: Finding) -> tuple[int, float]:
    """Sort key: recording-level findings first, then by entry and time."""
    return (-1 if f.entry is None else f.entry, f.at_s or 0.0)


class VerifyStage:
    """Reconcile the timeline of the slices the fetch stage read, report without fixing."""

    name = "verify"

    def run(self, job: Job, ctx: StageContext) -> Job:
        """Add findings, place segments on the timeline, and mark unusable ones."""
        segs, findings = check(job.segments, job=job)
        job = replace(job, segments=segs)
        placed, about_recorder = recorder_findings(job, expected_s=media_seconds(job))
        findings += about_recorder
        for f in findings:
            ctx.logger.debug("%s %s: %s", f.severity, f.code, f.detail)
        return replace(job, findings=job.findings + findings, recorder_mp4s=placed or job.recorder_mp4s)
