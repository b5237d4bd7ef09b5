"""Individual mode: one user's audio and video streams into one MP4, in sync (``stages.align`` plans it).

Two stages of a user's run: ``AlignStage`` lays the verified streams on the user's clock (for the
report, also when no MP4 is written), ``MergeStage`` writes the MP4. While a stream is fetched,
``Spool`` keeps its slices in one work file (the streams are fetched one after the other, and a
user's MP4 needs both). ``merge_user`` then writes each stream's placed slices, retimed onto the
user's clock (``stages.media.retime``), into one MPEG-TS file per stream — holes in the sound filled
with silence encoded by ffmpeg (AAC, same rate, channels and PID as the user's audio; the only thing
recpipe encodes) — and stream-copies both into one MP4 with ``-copyts``, so the timestamps it planned
are the ones the MP4 gets. Like the composite MP4s, it is written fragmented and published with
``moov`` first (``stages.media.faststart``). ffmpeg reads only those two files (``-protocol_whitelist
file,pipe``). The MP4 is checked: tracks, duration, and where each track starts against the plan
(within one frame).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from pipeline.model.exceptions import MediaError
from pipeline.model.job import Alignment, Finding, Job, Output, Segment
from pipeline.model.media import TICKS_PER_S, StreamFacts
from pipeline.model.report import covered
from stages import ffmpeg
from stages.align import BASE_TICKS, MergePlan, Span, StreamName, plan_merge
from stages.base import Fetched, StageContext
from stages.media.faststart import moov_first, plan
from stages.media.mp4 import Mp4Info, Mp4Track
from stages.media.retime import retime
from stages.media.ts import read_slice
from stages.outputs import DURATION_TOLERANCE_S, mp4_file_name
from stages.splice import wrap_shift

log = logging.getLogger(__name__)

AAC_FRAME_SAMPLES = 1024
SILENCE_KBPS = 32
SYNC_FRAMES = 1.0
"""A track may start this many of its own frames away from where the plan puts it."""


class Spool:
    """The fetch stage's consumer for one stream: every fetched slice appended to one work file."""

    def __init__(self, name: str) -> None:
        self.name = name
        """The work file's name (in the job's work directory)."""
        self.path: Path | None = None
        self._where: dict[int, tuple[int, int]] = {}
        self._file: IO[bytes] | None = None

    def start(self, job: Job, ctx: StageContext) -> None:
        """Open the work file."""
        self.path = ctx.workdir / self.name
        self._file = self.path.open("wb")

    def add(self, fetched: Fetched) -> None:
        """Keep the slice's bytes, if it was fetched."""
        if fetched.data is None or self._file is None:
            return
        self._where[fetched.segment.index] = (self._file.tell(), len(fetched.data))
        self._file.write(fetched.data)

    def finish(self, *, ok: bool) -> None:
        """Close the work file."""
        if self._file is not None:
            self._file.close()
            self._file = None

    @contextmanager
    def reading(self) -> Iterator[Callable[[int], bytes]]:
        """A reader of the spool: playlist entry index → its bytes (one open file for all of them)."""
        if self.path is None:
            raise MediaError(f"the {self.name} spool was never filled")
        with self.path.open("rb") as f:

            def read(index: int) -> bytes:
                offset, size = self._where[index]
                f.seek(offset)
                return f.read(size)

            yield read


def audio_facts(segments: Sequence[Segment]) -> StreamFacts | None:
    """The first audio stream, with its sample rate known, among the stream's slices."""
    for seg in segments:
        for stream in seg.media.media_streams if seg.media else ():
            if stream.kind == "audio" and stream.sample_rate:
                return stream
    return None


def make_silence(ffmpeg_exe: str, hole: Span, *, facts: StreamFacts, workdir: Path) -> bytes | None:
    """Silence filling ``hole`` (whole AAC frames, never past its end), timed to start where it starts."""
    assert facts.sample_rate
    frames = math.floor(hole.seconds * facts.sample_rate / AAC_FRAME_SAMPLES) - 1
    if frames < 1:
        return None
    path = workdir / "silence.ts"
    argv = ffmpeg.silence_argv(
        ffmpeg_exe,
        sample_rate=facts.sample_rate,
        channels=facts.channels or 1,
        pid=facts.pid,
        frames=frames,
        kbps=SILENCE_KBPS,
        output=path,
    )
    ffmpeg.run(argv, what="encode silence")
    data = path.read_bytes()
    path.unlink()
    start = read_slice([data]).start_ticks
    if start is None:
        raise MediaError("ffmpeg's silence holds no timestamped audio")
    target = round(hole.start_s * TICKS_PER_S) + BASE_TICKS
    return retime(data, shift=wrap_shift(target - start))


def write_stream(
    stream: StreamName, plan_: MergePlan, *, spool: Spool, fills: Sequence[tuple[float, bytes]], path: Path
) -> None:
    """The stream's placed slices (and, for audio, the silences) retimed, in time order, into ``path``."""
    items: list[tuple[float, int, bytes | int]] = [(p.start_s, 1, p.index) for p in plan_.pieces[stream]]
    items += [(start, 0, data) for start, data in fills]
    pieces = {p.index: p for p in plan_.pieces[stream]}
    with path.open("wb") as out, spool.reading() as read:
        for _, _, what in sorted(items, key=lambda item: (item[0], item[1])):
            if isinstance(what, bytes):
                out.write(what)
            else:
                out.write(retime(read(what), shift=pieces[what].shift))


@dataclass(frozen=True, kw_only=True, slots=True)
class Merged:
    """The checked MP4 (moov first) in the work directory, and what was found making it."""

    output: Output
    findings: tuple[Finding, ...]


def merge_user(
    plan_: MergePlan,
    *,
    spools: Mapping[StreamName, Spool],
    segments: Mapping[StreamName, Sequence[Segment]],
    name: str,
    ctx: StageContext,
) -> Merged:
    """Write the user's MP4 as ``name`` in the work directory, following ``plan_``."""
    workdir = ctx.workdir
    fills: list[tuple[float, bytes]] = []
    if plan_.silences:
        facts = audio_facts(segments.get("audio", ()))
        if facts is None:
            raise MediaError("the audio's sample rate is unknown: its holes cannot be filled with silence")
        for hole in plan_.silences:
            data = make_silence(ctx.ffmpeg, hole, facts=facts, workdir=workdir)
            if data is not None:
                fills.append((hole.start_s, data))
    inputs: dict[StreamName, Path] = {}
    for stream in plan_.pieces:
        inputs[stream] = workdir / f"{stream}.ts"
        write_stream(
            stream, plan_, spool=spools[stream], fills=fills if stream == "audio" else (), path=inputs[stream]
        )
    raw = workdir / f"{name}.ffmpeg"
    argv = ffmpeg.merge_argv(ctx.ffmpeg, inputs=inputs, offset_s=BASE_TICKS / TICKS_PER_S, output=raw)
    ffmpeg.run(argv, what="merge the user's streams")
    for path in inputs.values():
        path.unlink()
    layout = plan(raw)
    info = layout.info()
    findings = check_merged(info, plan_=plan_)
    final = workdir / name
    sha256 = moov_first(raw, final, layout=layout, sync=ctx.destination.links_from(ctx.workdir))
    raw.unlink()
    output = Output(
        key=name,
        kind="mp4",
        bytes=layout.size,
        sha256=sha256,
        duration_s=info.duration_s,
        tracks=info.track_kinds,
        start_s=0.0,
        local=final,
    )
    return Merged(output=output, findings=findings)


def frame_s(track: Mp4Track) -> float:
    """One frame of the track (its shortest sample), in seconds."""
    return track.shortest_sample_s or 1 / 15


def check_merged(info: Mp4Info, *, plan_: MergePlan) -> tuple[Finding, ...]:
    """MediaError if a stream is missing or starts off the plan; a finding if the duration disagrees."""
    for stream in plan_.pieces:
        track = next((t for t in info.tracks if t.kind == stream), None)
        if track is None:
            raise MediaError(f"the merged MP4 lacks the user's {stream} track")
        planned = plan_.output_start(stream)
        assert planned is not None
        if abs(track.start_s - planned) > SYNC_FRAMES * frame_s(track):
            raise MediaError(
                f"the {stream} track starts at {track.start_s:.3f} s in the merged MP4, "
                f"not at {planned:.3f} s as its slice names say"
            )
    if math.fabs(info.duration_s - plan_.duration_s) <= DURATION_TOLERANCE_S:
        return ()
    return (
        Finding(
            code="DURATION_MISMATCH",
            severity="warning",
            seconds=info.duration_s - plan_.duration_s,
            detail=f"the merged MP4 lasts {info.duration_s:.3f} s but the user's slices span "
            f"{plan_.duration_s:.3f} s",
        ),
    )


def streams_of(job: Job) -> dict[StreamName, Sequence[Segment]]:
    """The verified segments of each of the user's streams."""
    return {"audio" if s.recording.media == "audio" else "video": s.segments for s in job.streams}


def alignment(plan_: MergePlan) -> Alignment:
    """What the report keeps of the plan."""
    spans = [(p.start_s, p.end_s) for ps in plan_.pieces.values() for p in ps]
    return Alignment(
        starts={str(k): v for k, v in plan_.starts.items()},
        absences=tuple((a.start_s, a.seconds) for a in plan_.absences),
        media_s=covered(spans) if spans else None,
    )


class AlignStage:
    """Individual mode: lay the user's verified streams on one clock (``stages.align``)."""

    name = "align"

    def run(self, job: Job, ctx: StageContext) -> Job:
        """Set ``alignment``; MediaError when the streams cannot be placed."""
        if not job.streams:
            return job
        plan_ = plan_merge(streams_of(job), absent=job.absent or "keep")
        return replace(job, alignment=alignment(plan_))


class MergeStage:
    """Individual mode: write the user's MP4 from the spooled slices of their streams, in sync.

    Named ``remux`` in the report's timings and errors: it is the recording's remux step (stream copy),
    for a user's two streams at once."""

    name = "remux"

    def __init__(self, spools: Mapping[StreamName, Spool]) -> None:
        self._spools = spools

    def run(self, job: Job, ctx: StageContext) -> Job:
        """Add the user's MP4 as an unpublished output, and what checking it found."""
        if not job.want_mp4 or not job.streams:
            return job
        plan_ = plan_merge(streams_of(job), absent=job.absent or "keep")
        template = ctx.config.individual_mp4_template
        name = mp4_file_name(job.recording, template=template, index=0, utc=plan_.origin)
        merged = merge_user(plan_, spools=self._spools, segments=streams_of(job), name=name, ctx=ctx)
        return replace(job, outputs=(merged.output,), findings=job.findings + merged.findings)
