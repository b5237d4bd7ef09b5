"""Remux: stream-copy the usable slices into MP4s while they are fetched, then check each MP4.

``Feeder`` is the fetch stage's consumer. As each slice arrives (in playlist order) it is placed on
the timeline and judged (``stages.screen.Screen``), given its shift, cuts and MP4 part
(``stages.splice``), rewritten where the clock needs it (``stages.media.retime``) and written to the
stdin of the part's ffmpeg (``-f mpegts -i pipe:0``, ``-protocol_whitelist file,pipe``): concatenated
MPEG-TS slices are one transport stream, which is how HLS defines them. ffmpeg never sees the vendor
playlist or a URL, and no copy of the slices is written to disk. Each slice is held back until the
next one arrives, because an overlap is resolved by cutting the earlier slice's tail.

``RemuxStage`` runs after verification: it checks each finished MP4 with recpipe's MP4 reader and
names it. ffmpeg is started, fed and checked through ``stages.ffmpeg``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.model.exceptions import MediaError, NoSpace, PipelineError, RemuxError
from pipeline.model.job import Finding, Job, Output, Segment
from stages.base import Fetched, StageContext, check_space, space_needed
from stages.coverage import covers, expected_tracks
from stages.ffmpeg import FfmpegProcess, remux_argv
from stages.follow import Following
from stages.media.faststart import Layout, moov_first
from stages.media.mp4 import Mp4Info
from stages.media.retime import retime
from stages.outputs import DURATION_TOLERANCE_S, alongside_name, mp4_file_name, name_taken, owner_label
from stages.screen import Screen
from stages.splice import Part, Splicer
from stages.upload import GrowingUpload

log = logging.getLogger(__name__)


FATAL_DEFECTS = frozenset({"MISSING_SEGMENT", "EMPTY_SEGMENT", "CORRUPT_SEGMENT"})
"""Defects whose findings are errors: under the strict policy the recording cannot be published."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PartFile:
    """A finished MP4 in the work directory, the slices it holds, its name and its upload (if streamed)."""

    part: Part
    path: Path
    name: str
    follow: Following
    """The thread that read the file while ffmpeg wrote it (a ``GrowingUpload`` when it also sent it)."""


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
        self._opened: list[tuple[Path, str, Following]] = []
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
        # Its first MP4 is written with the first slice: it waits here, beside the first slices'
        # download, until the destination may be written, so that one which may not (the leftovers
        # of a killed run could not be cleared) stops the fetch at once.
        ctx.destination.cleared()
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
            PartFile(part=part, path=path, name=name, follow=follow)
            for part, (path, name, follow) in zip(self._splicer.parts(), self._opened, strict=True)
        )

    def abandon(self) -> None:
        """Stop any running ffmpeg and throw away every upload not completed; nothing is published."""
        self._held = None
        if self._proc is not None:
            self._proc.kill()
            self._proc = None
        for _, _, follow in self._opened:
            follow.stop()
            if isinstance(follow, GrowingUpload):
                follow.upload.abort()

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
        self._proc = FfmpegProcess(remux_argv(ctx.ffmpeg, output=path))
        upload = ctx.destination.writable().begin_upload(
            ctx.destination.directory + name, metadata=owner_label(self._job)
        )
        follow = (
            Following(path)
            if upload is None
            else GrowingUpload(upload, path, part_bytes=ctx.config.upload_part_bytes)
        )
        self._opened.append((path, name, follow))
        follow.start()

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
            self._opened[-1][2].stop()


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
        durable = ctx.destination.links_from(ctx.workdir)
        for file in files:
            layout = file.follow.layout()
            info = layout.info()
            segs = [by_index[i] for i in file.part.entries]
            tracks = expected_tracks(segs, stream_types=job.expect.stream_types)
            findings += check_output(info, expected_tracks=tracks, expected_s=file.part.duration_s)
            outputs.append(finish_output(file, layout=layout, info=info, durable=durable))
        return replace(
            job,
            outputs=(*job.outputs, *outputs),
            findings=job.findings + tuple(findings),
            mp4_source="recpipe",
        )

    def close(self) -> None:
        """Throw away whatever was not published (ffmpeg still running, uploads not completed)."""
        self.feeder.abandon()


def finish_output(file: PartFile, *, layout: Layout, info: Mp4Info, durable: bool) -> Output:
    """The checked MP4 as an output with ``moov`` first: its upload finished (all but completing it),
    or a moov-first copy written beside it in the work directory (on disk already when ``durable``)."""
    output = Output(
        key=file.name,
        kind="mp4",
        bytes=layout.size,
        sha256="",
        duration_s=info.duration_s,
        tracks=info.track_kinds,
        start_s=file.part.start_s,
    )
    if isinstance(file.follow, GrowingUpload):
        return replace(output, sha256=file.follow.finish(layout), upload=file.follow.upload)
    final = file.path.with_name(file.name)
    sha256 = moov_first(file.path, final, layout=layout, sync=durable)
    file.path.unlink()
    return replace(output, sha256=sha256, local=final)
