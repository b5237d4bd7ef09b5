"""Remux: stream-copy the usable slices into MP4s while they are fetched, then check each MP4.

``Feeder`` is the fetch stage's consumer. As each slice arrives (in playlist order) it is placed on
the timeline and judged (``stages.verify.Screen``), given its shift, cuts and MP4 part
(``stages.splice``), rewritten where the clock needs it (``stages.media.retime``) and written to the
stdin of the part's ffmpeg (``-f mpegts -i pipe:0``, ``-protocol_whitelist file,pipe``): concatenated
MPEG-TS slices are one transport stream, which is how HLS defines them. ffmpeg never sees the vendor
playlist or a URL, and no copy of the slices is written to disk. Each slice is held back until the
next one arrives, because an overlap is resolved by cutting the earlier slice's tail.

``RemuxStage`` runs after verification: it checks each finished MP4 with recpipe's MP4 reader and
names it. This is the only module that runs ffmpeg (``FfmpegProcess``).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import IO

import ffmpeg

from pipeline.model.exceptions import MediaError, NoSpace, PipelineError, RemuxError
from pipeline.model.job import Finding, Job, Output, Recording, Segment
from pipeline.model.naming import format_utc
from stages.base import StageContext
from stages.fetch import Fetched
from stages.media.faststart import Layout, moov_first, plan
from stages.media.mp4 import Mp4Info
from stages.media.retime import retime
from stages.publish import GrowingUpload
from stages.recorder import alongside_name, covers, expected_tracks, name_taken, owner_label
from stages.splice import Part, Splicer
from stages.verify import Screen

log = logging.getLogger(__name__)

STDERR_TAIL_LINES = 15
DURATION_TOLERANCE_S = 0.5
"""Output vs. slice timeline: more than this is reported. A frame at 15 fps is 0.067 s and AAC
frames are 0.021 s, so a faithful copy lands well inside; half a second means lost media."""

FATAL_DEFECTS = frozenset({"MISSING_SEGMENT", "EMPTY_SEGMENT", "CORRUPT_SEGMENT"})
"""Defects whose findings are errors: under the strict policy the recording cannot be published."""

GLOBAL_OPTIONS = ("-hide_banner", "-nostdin", "-loglevel", "error", "-y")


FRAGMENT_MICROSECONDS = 5_000_000
"""ffmpeg cuts a fragment every 5 s of media: all it holds of the MP4's index (and media) at any
time. Shorter makes more fragments for recpipe to read afterwards (0.1 s an hour at 5 s)."""


FRAGMENTED_MOVFLAGS = "+empty_moov+delay_moov+default_base_moof"


def build_remux_argv(*, ffmpeg_exe: str, output: Path) -> list[str]:
    """ffmpeg argv: MPEG-TS on stdin → fragmented MP4 at ``output``, stream copy, AAC fixed for MP4.

    Fragmented, because ffmpeg's regular MP4 muxer keeps every sample's index entry in memory until
    the end (memory would grow with the recording); ``delay_moov`` writes the ``moov`` once the first
    fragment is known, so its edit lists carry each track's start. recpipe publishes a regular MP4
    with ``moov`` first, built from the fragments (``stages.media.faststart``); no ``+faststart``."""
    source = ffmpeg.input("pipe:0", f="mpegts", protocol_whitelist="file,pipe")
    stream = ffmpeg.output(
        source["v?"],
        source["a?"],
        str(output),
        c="copy",
        fflags="+bitexact",
        format="mp4",
        movflags=FRAGMENTED_MOVFLAGS,
        frag_duration=FRAGMENT_MICROSECONDS,
        **{"bsf:a": "aac_adtstoasc"},
    )
    # Global options first, the output path last: the order people expect when reading a log line.
    return [ffmpeg_exe, *GLOBAL_OPTIONS, *(str(a) for a in stream.get_args())]


PIPE_BYTES = 1024 * 1024
"""Pipe buffer to ffmpeg (Linux's default is 64 KiB): a slice can be handed over while ffmpeg is still
busy, so reading the next slice and remuxing overlap instead of taking turns."""


def widen_pipe(pipe: IO[bytes] | None) -> None:
    """Ask for a ``PIPE_BYTES`` buffer where the platform allows it (a hint; failure changes nothing)."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if pipe is None or set_size is None:
        return
    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe.fileno(), set_size, PIPE_BYTES)


class FfmpegProcess:
    """One ffmpeg remuxing MPEG-TS written to its stdin into one MP4 file."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        log.debug("running %s", shlex.join(self.argv))
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process; closed in close/kill
        try:
            self._proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr
            )
        except OSError as err:
            self._stderr.close()
            raise RemuxError(
                f"cannot start ffmpeg: {err}", argv=self.argv, returncode=None, stderr_tail=""
            ) from err
        self._broken = False
        widen_pipe(self._proc.stdin)

    def write(self, data: bytes) -> None:
        """Pass ``data`` on; if ffmpeg has stopped reading, the error shows when it is closed."""
        if self._broken or not data:
            return
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(data)
        except BrokenPipeError:
            self._broken = True
            log.debug("ffmpeg closed its input early")

    def close(self) -> None:
        """End the input and wait; ``RemuxError`` with the tail of stderr if ffmpeg failed."""
        assert self._proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self._proc.stdin.close()
        returncode = self._proc.wait()
        self._stderr.seek(0)
        stderr = self._stderr.read().decode("utf-8", errors="replace")
        self._stderr.close()
        if returncode != 0:
            tail = "\n".join(stderr.splitlines()[-STDERR_TAIL_LINES:])
            raise RemuxError(
                "ffmpeg could not remux the slices", argv=self.argv, returncode=returncode, stderr_tail=tail
            )

    def kill(self) -> None:
        """Stop ffmpeg at once (the output is thrown away)."""
        with contextlib.suppress(OSError):
            self._proc.kill()
        with contextlib.suppress(OSError, BrokenPipeError):
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        self._proc.wait()
        self._stderr.close()


@dataclass(frozen=True, kw_only=True, slots=True)
class PartFile:
    """A finished MP4 in the work directory, the slices it holds, its name and its upload (if streamed)."""

    part: Part
    path: Path
    name: str
    growing: GrowingUpload | None


@dataclass(slots=True)
class _Held:
    """The last usable slice, kept until the next one says whether its tail must be cut."""

    data: bytes
    shift: int


class Feeder:
    """The fetch stage's consumer: feeds usable slices, in order, to one ffmpeg per MP4 part.

    A failure here (ffmpeg, an upload) does not stop fetching, which verification still needs: the
    feeder stops feeding, throws away what it started, and the remux stage reports the error.
    """

    def __init__(self) -> None:
        self._ctx: StageContext | None = None
        self._screen: Screen | None = None
        self._splicer: Splicer | None = None
        self._held: _Held | None = None
        self._proc: FfmpegProcess | None = None
        self._opened: list[tuple[Path, str, GrowingUpload | None]] = []
        self._files: tuple[PartFile, ...] | None = None
        self._job: Job | None = None
        self._error: PipelineError | None = None
        self._alongside = False
        self.inert = False
        """True when the recorder's own MP4s cover the recording: nothing is remuxed."""

    def start(self, job: Job, ctx: StageContext) -> None:
        """Get ready for ``job``'s slices (or, when the recorder's MP4s cover them, to ignore them)."""
        self._ctx = ctx
        self._job = job
        if covers(job):
            ctx.logger.info(
                "the recorder's MP4s cover %s: recpipe writes none of its own", job.recording.label
            )
            self.inert = True
            return
        self._screen = Screen(job.segments)
        self._alongside = job.mp4_alongside or name_taken(
            ctx.destination.storage, ctx.destination.directory + self._name(0, first=None)
        )
        self._splicer = Splicer(max_seconds=ctx.config.max_mp4_seconds, max_bytes=ctx.config.max_mp4_bytes)
        need = space_needed(sum(s.size or 0 for s in job.segments))
        try:
            check_space(ctx.workdir, need=need, reserve=ctx.config.workdir_reserve_bytes)
        except NoSpace as err:
            self._fail(err)

    def add(self, fetched: Fetched) -> None:
        """Place and judge the next entry; pass the previous usable slice on, cut where this one overlaps."""
        if self.inert:
            return
        assert self._screen is not None
        assert self._splicer is not None
        seg = self._screen.add(fetched.segment)
        if self._error is not None or seg.defect is not None or fetched.data is None:
            self._give_up_if_doomed(seg)
            return
        step = self._splicer.add(seg)
        if step.closed_gap_s:
            log.debug("closing a %.3f s gap before %s", step.closed_gap_s, seg.uri)
        try:
            self._release(cuts=step.cut_previous)
            if step.new_part:
                self._close_part()
                self._open_part(step.part, first=seg)
        except PipelineError as err:
            self._fail(err)
            return
        self._held = _Held(data=fetched.data, shift=step.shift)

    def finish(self, *, ok: bool) -> None:
        """Flush the last slice and close the last MP4 (or kill ffmpeg when fetching failed)."""
        if self.inert:
            return
        if not ok or self._error is not None:
            self.abandon()
            return
        try:
            self._release(cuts={})
            self._close_part()
        except PipelineError as err:
            self._fail(err)
            return
        assert self._splicer is not None
        self._files = tuple(
            PartFile(part=part, path=path, name=name, growing=growing)
            for part, (path, name, growing) in zip(self._splicer.parts(), self._opened, strict=True)
        )

    def abandon(self) -> None:
        """Stop any running ffmpeg and throw away every upload not completed; nothing is published."""
        self._held = None
        if self._proc is not None:
            self._proc.kill()
            self._proc = None
        for _, _, growing in self._opened:
            if growing is not None:
                growing.stop()
                growing.upload.abort()

    def _give_up_if_doomed(self, seg: Segment) -> None:
        """Under the strict policy a missing, empty or unreadable slice fails the recording whatever
        comes next: stop remuxing (and uploading) at once instead of finishing an MP4 nobody gets."""
        assert self._job is not None
        if self._error is None and self._job.policy == "strict" and seg.defect in FATAL_DEFECTS:
            self._fail(
                RemuxError(f"stopped: {seg.uri} is {seg.defect}", argv=[], returncode=None, stderr_tail="")
            )

    def _fail(self, err: PipelineError) -> None:
        log.debug("remuxing stopped: %s", err)
        self._error = err
        self.abandon()

    def files(self) -> tuple[PartFile, ...]:
        """The finished MP4s, in order (after ``finish``); raises what stopped remuxing, if anything did."""
        if self._error is not None:
            raise self._error
        if self._files is None:
            raise RemuxError(
                "the slices were not all fed to ffmpeg", argv=[], returncode=None, stderr_tail=""
            )
        return self._files

    def _release(self, *, cuts: dict[int, int]) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        assert self._proc is not None
        self._proc.write(retime(held.data, shift=held.shift, cuts=cuts))

    def _open_part(self, index: int, *, first: Segment) -> None:
        """Start the ffmpeg for MP4 ``index`` (and its upload, where the destination streams them)."""
        assert self._ctx is not None
        assert self._job is not None
        assert self._screen is not None
        ctx = self._ctx
        name = self._name(index, first=first)
        path = ctx.workdir / f"part-{index}.mp4.part"
        self._proc = FfmpegProcess(build_remux_argv(ffmpeg_exe=ctx.ffmpeg, output=path))
        upload = ctx.destination.storage.begin_upload(
            ctx.destination.directory + name, metadata=owner_label(self._job)
        )
        growing = None
        if upload is not None:
            growing = GrowingUpload(upload, path, part_bytes=ctx.config.upload_part_bytes)
        self._opened.append((path, name, growing))
        if growing is not None:
            growing.start()

    def _name(self, index: int, *, first: Segment | None) -> str:
        """The file name of MP4 ``index`` (whose first slice is ``first``, when known)."""
        assert self._ctx is not None
        assert self._job is not None
        assert self._screen is not None
        recording, config = self._job.recording, self._ctx.config
        template = config.mp4_template
        if recording.codec is not None:
            template = config.raw_mp4_template
        elif recording.uid is not None:
            template = config.individual_mp4_template
        utc = self._screen.wall_clock(first) if first is not None and "{utc}" in template else None
        name = mp4_file_name(recording, template=template, index=index, utc=utc)
        return alongside_name(name) if self._alongside else name

    def _close_part(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.close()
        finally:
            growing = self._opened[-1][2]
            if growing is not None:
                growing.stop()


SPACE_MARGIN = 64 * 1024 * 1024
"""Room for ffmpeg's fragment indexes and the file system's own needs."""


def space_needed(slice_bytes: int) -> int:
    """Work-directory bytes the MP4s need: ffmpeg's file plus the moov-first copy (about twice the
    slices, which an MP4 never exceeds); parts are finished one after another, so at most all of it."""
    return 2 * slice_bytes + SPACE_MARGIN if slice_bytes else SPACE_MARGIN


def check_space(directory: Path, *, need: int, reserve: int) -> None:
    """``NoSpace`` unless ``directory`` has ``need`` bytes free beyond ``reserve``."""
    free = shutil.disk_usage(directory).free
    if free - reserve < need:
        mb = 1024 * 1024
        raise NoSpace(
            f"the work directory {directory.parent} has {free // mb} MiB free"
            + (f" ({reserve // mb} MiB reserved)" if reserve else "")
            + f"; the MP4 needs about {need // mb} MiB (set RECPIPE_WORKDIR to a larger disk)"
        )


def mp4_file_name(recording: Recording, *, template: str, index: int, utc: datetime | None) -> str:
    """The MP4's file name from the configured template (fields: sid, cname, utc, index, uid, media,
    codec); ``utc``, the MP4's first slice's time, is needed only by a template that uses it."""
    return template.format(
        sid=recording.sid,
        cname=recording.cname,
        utc=format_utc(utc) if utc is not None else "",
        index=index,
        uid=recording.uid or "",
        media=recording.media or "",
        codec=recording.codec or "",
    )


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
    """Check and name the MP4s the feeder wrote while the slices streamed; get each ready to publish."""

    name = "remux"

    def __init__(self, feeder: Feeder | None = None) -> None:
        self.feeder = feeder or Feeder()

    def run(self, job: Job, ctx: StageContext) -> Job:
        """Add an unpublished ``Output`` per MP4 when the profile asks for MP4 (none when the recorder's
        own MP4s cover the recording)."""
        if not job.want_mp4:
            return job
        if self.feeder.inert:
            return replace(job, mp4_source="recorder")
        files = self.feeder.files()
        if not files:
            raise MediaError("no usable slices to remux")
        by_index = {s.index: s for s in job.segments}
        outputs: list[Output] = []
        findings: list[Finding] = []
        for file in files:
            layout = plan(file.path)
            info = layout.info()
            segs = [by_index[i] for i in file.part.entries]
            tracks = expected_tracks(segs, stream_types=job.expect.stream_types)
            findings += check_output(info, expected_tracks=tracks, expected_s=file.part.duration_s)
            outputs.append(finish_output(file, layout=layout, info=info))
        return replace(
            job,
            outputs=(*job.outputs, *outputs),
            findings=job.findings + tuple(findings),
            mp4_source="recpipe",
        )

    def close(self) -> None:
        """Throw away whatever was not published (ffmpeg still running, uploads not completed)."""
        self.feeder.abandon()


def finish_output(file: PartFile, *, layout: Layout, info: Mp4Info) -> Output:
    """The checked MP4 as an output with ``moov`` first: its upload finished (all but completing it),
    or a moov-first copy written beside it in the work directory."""
    output = Output(
        key=file.name,
        kind="mp4",
        bytes=layout.size,
        sha256="",
        duration_s=info.duration_s,
        tracks=info.track_kinds,
        start_s=file.part.start_s,
    )
    if file.growing is not None:
        return replace(output, sha256=file.growing.finish(layout), upload=file.growing.upload)
    final = file.path.with_name(file.name)
    sha256 = moov_first(file.path, final, layout=layout)
    file.path.unlink()
    return replace(output, sha256=sha256, local=final)
