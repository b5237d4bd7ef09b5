"""Remux: stream-copy the fetched slices into one MP4, then check it with recpipe's MP4 reader.

ffmpeg never sees the vendor playlist or a URL: recpipe pipes the bytes of the slices it fetched,
in playlist order, into ``-f mpegts -i pipe:0`` (``-protocol_whitelist file,pipe``). Concatenated
MPEG-TS slices of one recording are one continuous transport stream, which is exactly how HLS
defines them. This is the only module that runs ffmpeg, through ``run_ffmpeg``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shlex
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import ffmpeg

from pipeline.exceptions import MediaError, NamingError, RemuxError
from pipeline.job import Finding, Job, Output, Recording, Segment
from pipeline.naming import format_utc
from pipeline.report import covered
from stages.base import StageContext
from stages.media.mp4 import Mp4Info, read_mp4

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
TS_PACKET = 188
STDERR_TAIL_LINES = 15
DURATION_TOLERANCE_S = 0.5
"""Output vs. slice timeline: more than this is reported. A frame at 15 fps is 0.067 s and AAC
frames are 0.021 s, so a faithful copy lands well inside; half a second means lost media."""

FFMPEG_REBASE_GAP_S = 10.0
"""ffmpeg's ``-dts_delta_threshold`` default: reading MPEG-TS, it re-bases timestamps that jump further
than this, so a longer gap is closed in the MP4 while a shorter one is kept as a pause."""

EXPECTED_TRACKS = {0: ("audio",), 1: ("video",), 2: ("video", "audio")}
"""``streamTypes`` of the start request → the tracks the MP4 must have."""


GLOBAL_OPTIONS = ("-hide_banner", "-nostdin", "-loglevel", "error", "-y")


def build_remux_argv(*, ffmpeg_exe: str, output: Path) -> list[str]:
    """ffmpeg argv: MPEG-TS on stdin → MP4 at ``output``, stream copy, AAC fixed for MP4, faststart."""
    source = ffmpeg.input("pipe:0", f="mpegts", protocol_whitelist="file,pipe")
    stream = ffmpeg.output(
        source["v?"],
        source["a?"],
        str(output),
        c="copy",
        movflags="+faststart",
        fflags="+bitexact",
        format="mp4",
        **{"bsf:a": "aac_adtstoasc"},
    )
    # Global options first, the output path last: the order people expect when reading a log line.
    return [ffmpeg_exe, *GLOBAL_OPTIONS, *(str(a) for a in stream.get_args())]


def whole_packets(size: int) -> int:
    """Bytes of a slice to pass on: a truncated slice's partial last packet would desynchronise the
    demuxer at the start of the next slice, so it is left out."""
    return size - size % TS_PACKET


def _feed(proc: subprocess.Popen[bytes], inputs: Sequence[Path], advance: Callable[[int], None]) -> None:
    assert proc.stdin is not None
    try:
        for path in inputs:
            with path.open("rb") as fh:
                left = whole_packets(path.stat().st_size)
                while left and (chunk := fh.read(min(CHUNK, left))):
                    proc.stdin.write(chunk)
                    left -= len(chunk)
                    advance(len(chunk))
    except BrokenPipeError:
        log.debug("ffmpeg closed its input early")
    finally:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()


def _ignore(_: int) -> None:
    """Default progress callback."""


def run_ffmpeg(
    argv: Sequence[str], *, inputs: Sequence[Path] = (), advance: Callable[[int], None] = _ignore
) -> None:
    """Run ffmpeg with ``inputs`` concatenated on stdin; ``RemuxError`` with stderr's tail on failure."""
    log.debug("running %s", shlex.join(argv))
    with tempfile.TemporaryFile() as err_file:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err_file)
        except OSError as err:
            raise RemuxError(
                f"cannot start ffmpeg: {err}", argv=argv, returncode=None, stderr_tail=""
            ) from err
        _feed(proc, inputs, advance)
        returncode = proc.wait()
        err_file.seek(0)
        stderr = err_file.read().decode("utf-8", errors="replace")
    if returncode != 0:
        tail = "\n".join(stderr.splitlines()[-STDERR_TAIL_LINES:])
        raise RemuxError(
            "ffmpeg could not remux the slices", argv=argv, returncode=returncode, stderr_tail=tail
        )


def mp4_file_name(recording: Recording, *, template: str, index: int, utc: datetime) -> str:
    """The MP4's file name from the configured template (fields: sid, cname, utc, index, uid, media)."""
    return template.format(
        sid=recording.sid,
        cname=recording.cname,
        utc=format_utc(utc),
        index=index,
        uid=recording.uid or "",
        media=recording.media or "",
    )


def first_utc(segments: Sequence[Segment]) -> datetime:
    """Start time of the first slice whose name carries one (the MP4 is named after it)."""
    for seg in segments:
        if seg.utc is not None:
            return seg.utc
    raise NamingError("cannot name the MP4: no usable slice name carries a start time")


def media_span(segments: Sequence[Segment]) -> float:
    """How long the MP4 of ``segments`` should last: their span on the recording's timeline, less
    the gaps ffmpeg closes (longer than ``FFMPEG_REBASE_GAP_S``)."""
    placed = sorted((s.at_s, s.at_s + s.length_s) for s in segments if s.at_s is not None)
    if len(placed) < len(segments):
        return math.fsum(s.length_s for s in segments)
    bridged, reach = [], -math.inf
    for start, end in placed:  # a pause ffmpeg keeps counts as covered
        bridged.append((reach if 0 < start - reach <= FFMPEG_REBASE_GAP_S else start, end))
        reach = max(reach, end)
    return covered(bridged)


def expected_tracks(job: Job) -> tuple[str, ...]:
    """The tracks the MP4 must have: every stream the slices carry (verify reports any shortfall
    against the profile as ``STREAMS_MISMATCH``); the profile's streamTypes when slices were not read."""
    if any(s.media is None for s in job.usable_segments):
        stream_types = 2 if job.expect.stream_types is None else job.expect.stream_types
        return EXPECTED_TRACKS.get(stream_types, ())
    kinds = {kind for s in job.usable_segments if s.media for kind in s.media.kinds}
    return tuple(k for k in ("video", "audio") if k in kinds)


def check_output(info: Mp4Info, *, expected_tracks: Sequence[str], expected_s: float) -> tuple[Finding, ...]:
    """Raise if the MP4 is unusable; findings for a duration that disagrees with the slices."""
    missing = [t for t in expected_tracks if t not in info.track_kinds]
    if not info.tracks or info.duration_s <= 0:
        raise MediaError(f"the MP4 has no media (tracks: {list(info.track_kinds)}, {info.duration_s:.3f} s)")
    if missing:
        raise MediaError(f"the MP4 lacks the {' and '.join(missing)} track(s) the recording should have")
    if math.fabs(info.duration_s - expected_s) <= DURATION_TOLERANCE_S:
        return ()
    return (
        Finding(
            code="DURATION_MISMATCH",
            severity="warning",
            seconds=info.duration_s - expected_s,
            detail=f"the MP4 lasts {info.duration_s:.3f} s but its slices span {expected_s:.3f} s",
        ),
    )


class RemuxStage:
    """Stream-copy the usable slices into one MP4 in the work directory."""

    name = "remux"

    def run(self, job: Job, ctx: StageContext) -> Job:
        """Add an unpublished MP4 ``Output`` (key = file name) when the profile asks for MP4."""
        if not job.want_mp4:
            return job
        inputs = job.usable_segments
        if not inputs:
            raise MediaError("no usable slices to remux")
        template = ctx.config.individual_mp4_template if job.recording.uid else ctx.config.mp4_template
        name = mp4_file_name(job.recording, template=template, index=0, utc=first_utc(inputs))
        part = ctx.workdir / "remux.mp4.part"
        ctx.progress.start("remux", total=sum(s.size or 0 for s in inputs), unit="B")
        try:
            argv = build_remux_argv(ffmpeg_exe=ctx.ffmpeg, output=part)
            run_ffmpeg(argv, inputs=[s.local for s in inputs if s.local], advance=ctx.progress.advance)
        finally:
            ctx.progress.finish()
        info = read_mp4(part)
        findings = check_output(info, expected_tracks=expected_tracks(job), expected_s=media_span(inputs))
        final = part.with_name(name)
        os.replace(part, final)
        output = Output(
            key=name,
            kind="mp4",
            bytes=final.stat().st_size,
            sha256="",
            duration_s=info.duration_s,
            tracks=info.track_kinds,
            local=final,
        )
        return replace(job, outputs=(*job.outputs, output), findings=job.findings + findings)
