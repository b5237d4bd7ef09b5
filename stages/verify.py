"""Verify: is every listed slice there, sound, and named as the recorder names it?

Each check is a pure function from segments to findings, so each is tested with a table.
The stage marks unusable segments (``Segment.defect``) so remux leaves them out.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

from pipeline.job import Finding, Job, Recording, Segment, Severity
from stages.base import StageContext

log = logging.getLogger(__name__)

TS_PACKET = 188
TS_SYNC = 0x47


def offsets(segments: Iterable[Segment]) -> Iterator[tuple[Segment, float]]:
    """Each segment with its start offset on the playlist's timeline (sum of earlier EXTINFs)."""
    starts = itertools.accumulate((s.duration for s in segments), initial=0.0)
    return zip(segments, starts, strict=False)


def about(seg: Segment, at: float, *, code: str, severity: Severity, detail: str) -> Finding:
    """A finding that concerns one playlist entry, placed on the playlist's timeline."""
    return Finding(
        code=code,
        severity=severity,
        segment=seg.uri,
        entry=seg.index,
        at_s=at,
        seconds=seg.duration,
        detail=detail,
    )


def find_missing(segments: tuple[Segment, ...]) -> tuple[Finding, ...]:
    """``MISSING_SEGMENT`` for every listed, safe slice that is not in storage."""
    return tuple(
        about(
            seg,
            at,
            code="MISSING_SEGMENT",
            severity="error",
            detail=f"slice {seg.uri} is listed in the playlist (entry {seg.index}) but is not in storage",
        )
        for seg, at in offsets(segments)
        if seg.key is not None and not seg.present
    )


def find_empty(segments: tuple[Segment, ...]) -> tuple[Finding, ...]:
    """``EMPTY_SEGMENT`` for every fetched slice of zero bytes."""
    return tuple(
        about(seg, at, code="EMPTY_SEGMENT", severity="error", detail=f"slice {seg.uri} is empty (0 bytes)")
        for seg, at in offsets(segments)
        if seg.present and seg.size == 0
    )


def ts_problem(head: bytes, *, size: int) -> str | None:
    """Why a non-empty slice cannot be MPEG-TS, from its first packet and size, or None."""
    if head[:1] != bytes([TS_SYNC]):
        return f"does not start with the MPEG-TS sync byte 0x47 (starts with {head[:4].hex() or 'nothing'})"
    if size % TS_PACKET:
        return f"is {size} bytes, not a whole number of 188-byte packets (truncated?)"
    return None


def find_corrupt(segments: tuple[Segment, ...], heads: dict[int, bytes]) -> tuple[Finding, ...]:
    """``CORRUPT_SEGMENT`` for every fetched, non-empty slice that is not MPEG-TS."""
    findings = []
    for seg, at in offsets(segments):
        if seg.index not in heads or not seg.size:
            continue
        problem = ts_problem(heads[seg.index], size=seg.size)
        if problem:
            findings.append(
                about(seg, at, code="CORRUPT_SEGMENT", severity="error", detail=f"slice {seg.uri} {problem}")
            )
    return tuple(findings)


def find_duplicates(segments: tuple[Segment, ...]) -> tuple[Finding, ...]:
    """``DUPLICATE_SEGMENT`` for every entry that repeats an earlier entry's URI."""
    first: dict[str, int] = {}
    findings = []
    for seg, at in offsets(segments):
        if seg.uri in first:
            detail = f"entry {seg.index} repeats entry {first[seg.uri]} ({seg.uri})"
            findings.append(about(seg, at, code="DUPLICATE_SEGMENT", severity="error", detail=detail))
        first.setdefault(seg.uri, seg.index)
    return tuple(findings)


def find_name_mismatches(segments: tuple[Segment, ...], *, recording: Recording) -> tuple[Finding, ...]:
    """``NAME_MISMATCH`` for safe URIs that are not this recording's slice names."""
    expected = f"{recording.label}_<17-digit UTC>.ts"
    return tuple(
        Finding(
            code="NAME_MISMATCH",
            severity="warning",
            segment=seg.uri,
            entry=seg.index,
            at_s=at,
            detail=f"slice {seg.uri} does not follow the naming convention {expected}",
        )
        for seg, at in offsets(segments)
        if seg.key is not None and seg.utc is None
    )


def find_orphans(segments: tuple[Segment, ...], *, recording: Recording) -> tuple[Finding, ...]:
    """``ORPHAN_SEGMENT`` for slices of this recording in storage that the playlist does not list."""
    listed = {seg.key for seg in segments}
    return tuple(
        Finding(
            code="ORPHAN_SEGMENT",
            severity="warning",
            segment=obj.key.rpartition("/")[2],
            detail=f"{obj.key} ({obj.size} bytes) is named as a slice of this recording "
            "but not listed in the playlist",
        )
        for obj in recording.slices
        if obj.key not in listed
    )


def find_target_exceeded(segments: tuple[Segment, ...], *, target: float | None) -> tuple[Finding, ...]:
    """``TARGET_DURATION_EXCEEDED`` where an EXTINF rounds above #EXT-X-TARGETDURATION (RFC 8216 4.3.3.1)."""
    if target is None:
        return ()
    return tuple(
        about(
            seg,
            at,
            code="TARGET_DURATION_EXCEEDED",
            severity="warning",
            detail=f"EXTINF {seg.duration:.3f} s is longer than the target duration {target:g} s",
        )
        for seg, at in offsets(segments)
        if round(seg.duration) > target
    )


UNUSABLE = ("MISSING_SEGMENT", "EMPTY_SEGMENT", "CORRUPT_SEGMENT", "DUPLICATE_SEGMENT")


def mark_defects(segments: tuple[Segment, ...], findings: Iterable[Finding]) -> tuple[Segment, ...]:
    """Segments with ``defect`` set from the findings that make them unusable for the MP4."""
    defects: dict[int, str] = {}
    for f in findings:
        if f.code in UNUSABLE and f.entry is not None:
            defects.setdefault(f.entry, f.code)
    return tuple(replace(s, defect=defects[s.index]) if s.index in defects else s for s in segments)


def read_head(path: Path, *, size: int = TS_PACKET) -> bytes:
    """The first ``size`` bytes of a file."""
    with path.open("rb") as fh:
        return fh.read(size)


class VerifyStage:
    """Check presence, integrity and naming of every slice; report without fixing."""

    name = "verify"

    def run(self, job: Job, ctx: StageContext) -> Job:
        """Add findings and mark unusable segments."""
        segs, rec = job.segments, job.recording
        heads = {s.index: read_head(s.local) for s in segs if s.local is not None and s.size}
        findings = (
            find_missing(segs)
            + find_empty(segs)
            + find_corrupt(segs, heads)
            + find_duplicates(segs)
            + find_name_mismatches(segs, recording=rec)
            + find_orphans(segs, recording=rec)
            + find_target_exceeded(segs, target=job.target_duration)
        )
        for f in findings:
            ctx.logger.debug("%s %s: %s", f.severity, f.code, f.detail)
        return replace(job, findings=job.findings + findings, segments=mark_defects(segs, findings))
