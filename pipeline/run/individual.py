"""Individual mode: every user's audio and video streams verified on their own and merged into one MP4.

A user is the pair of playlists ``<sid>_<cname>__uid_s_<uid>__uid_e_audio|video.m3u8`` (either may be
absent: a user who only spoke, or only showed video). Per user, both streams are fetched and verified
exactly like a composite recording (their own findings, their own timeline), then merged in sync
(``stages.align`` plans, ``stages.merge`` writes) into ``<sid>_<cname>__uid_s_<uid>__uid_e_av_0.mp4``
(``audio``/``video`` in place of ``av`` when the user has only that stream), and a report per user
``<sid>_<cname>__uid_s_<uid>__uid_e_av.report.json`` is written. Processing a whole recording adds
``<sid>_<cname>.report.json``, which sums up the users. Each user holds their own lease, so users
are independent: two workers may process two users of one recording at once.

A user goes through the same runner as a recording (``pipeline.run.runner.execute``: lease,
idempotency, work directory, stages, report), with their own stage order (``user_stages``): the
streams (``StreamsStage``: each stream through the fetch and verify stages as a job of its own), the
alignment, the merge, publishing. Their report is built by ``pipeline.model.report`` like any other.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pipeline.model.exceptions import RecordingNotFound
from pipeline.model.job import Absent, Expectations, Finding, Job, Policy, Recording
from pipeline.model.naming import Media, parse_mixed_audio, report_name
from pipeline.model.report import UserResult, dump_report, summary_report
from pipeline.run.runner import Result, RunOptions, execute, make_job, run_job
from pipeline.storage.base import Storage
from stages.align import StreamName
from stages.base import Stage, StageContext, check_space, space_needed
from stages.discover import inputs_digest
from stages.fetch import FetchStage
from stages.merge import AlignStage, MergeStage, Spool
from stages.outputs import label_for
from stages.publish import PublishStage, read_existing_report
from stages.verify import VerifyStage

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class User:
    """One user of an individual-mode recording: their audio and/or video stream."""

    uid: str
    streams: Mapping[StreamName, Recording]

    @property
    def first(self) -> Recording:
        """Any of the user's streams (they share sid, cname and directory)."""
        return next(iter(self.streams.values()))

    @property
    def media(self) -> Media:
        """``av`` for both streams, else the one there is: what the user's files are named with."""
        return "av" if len(self.streams) > 1 else next(iter(self.streams))


def users_of(recordings: Sequence[Recording]) -> tuple[User, ...]:
    """Group individual-mode streams by uid (streams named ``av`` are not per-user streams; left out)."""
    by_uid: defaultdict[str, dict[StreamName, Recording]] = defaultdict(dict)
    for rec in recordings:
        if rec.uid is not None and rec.media in ("audio", "video"):
            by_uid[rec.uid]["audio" if rec.media == "audio" else "video"] = rec
    return tuple(
        User(uid=uid, streams=dict(sorted(streams.items(), key=lambda kv: kv[0] != "video")))
        for uid, streams in sorted(by_uid.items())
    )


def is_individual_set(recordings: Sequence[Recording]) -> bool:
    """Whether ``recordings`` are all streams of one individual-mode recording (one sid and cname)."""
    return (
        bool(recordings)
        and all(r.uid is not None for r in recordings)
        and len({(r.directory, r.sid, r.cname) for r in recordings}) == 1
    )


def user_recording(user: User) -> Recording:
    """The user as one recording: named ``...__uid_e_av``, all their slices."""
    first = user.first
    slices = tuple(sorted((o for rec in user.streams.values() for o in rec.slices), key=lambda o: o.key))
    return Recording(
        sid=first.sid,
        cname=first.cname,
        mode="individual",
        uid=user.uid,
        media=user.media,
        directory=first.directory,
        playlist_key=None,
        slices=slices,
    )


def stream_report(stream: Recording, *, storage: Storage, directory: str) -> dict[str, Any] | None:
    """The report of the user ``stream`` belongs to, with the stream's own inputs digest as
    ``inputs_digest`` (for ``recpipe ls``). A user with both streams has it under ``__uid_e_av``, a
    user with one under that stream's name."""
    for media in ("av", stream.media):
        key = directory + report_name(stream.sid, stream.cname, uid=stream.uid, media=media)
        report = read_existing_report(storage, key)
        if report is not None:
            streams = report.get("streams")
            mine = streams.get(stream.media) if isinstance(streams, dict) else None
            return {**report, "inputs_digest": mine.get("inputs_digest") if isinstance(mine, dict) else None}
    return None


def user_digest(user: User, *, absent: Absent) -> str:
    """Changes when any input of either stream changes, or the choice for absent time does."""
    parts = [f"{name}:{inputs_digest(rec)}" for name, rec in sorted(user.streams.items())]
    return hashlib.sha256("\n".join([*parts, f"absent:{absent}"]).encode()).hexdigest()


@dataclass(frozen=True, kw_only=True, slots=True)
class UserSettings:
    """How users are processed."""

    policy: Policy
    want_mp4: bool
    expect: Expectations
    absent: Absent
    options: RunOptions
    backup_wait: bool = False
    """Listed slices not there yet are still coming from Agora's backup cloud (``BACKUP_PENDING``)."""


def tagged(findings: Sequence[Finding], stream: str) -> tuple[Finding, ...]:
    """A stream's findings as the user's report shows them: playlist-level ones say which stream."""
    return tuple(f if f.segment else replace(f, detail=f"{stream} playlist: {f.detail}") for f in findings)


def stream_expectations(expect: Expectations, stream: StreamName) -> Expectations:
    """What one stream should hold: only its own kind (the profile's size and rate for video)."""
    if stream == "audio":
        return Expectations(stream_types=0)
    return replace(expect, stream_types=1)


def combine(job: Job, streams: Sequence[Job]) -> Job:
    """The user's job once each stream is verified: both streams' segments and findings (playlist-level
    ones tagged with their stream), the first stream's error, and their timings added up."""
    timings = dict(job.timings)
    for stream in streams:
        for stage, seconds in stream.timings.items():
            timings[stage] = timings.get(stage, 0.0) + seconds
    return replace(
        job,
        streams=tuple(streams),
        playlist_duration=max(s.playlist_duration for s in streams),
        endlist=all(s.endlist for s in streams),
        segments=tuple(seg for s in streams for seg in s.segments),
        findings=job.findings + tuple(f for s in streams for f in tagged(s.findings, str(s.recording.media))),
        error=next((s.error for s in streams if s.error is not None), None),
        timings=timings,
    )


class StreamsStage:
    """Individual mode: fetch and verify each of the user's streams as a job of its own (the same
    fetch and verify stages as a recording's, through the same ``run_job``), keeping their slices in
    spool files when the user's MP4 is to be written."""

    name = "streams"
    times_itself = True

    def __init__(self, user: User, *, spools: Mapping[StreamName, Spool]) -> None:
        self._user = user
        self._spools = spools

    def run(self, job: Job, ctx: StageContext) -> Job:
        """Set ``streams`` and everything ``combine`` sums up from them."""
        if self._spools:
            need = sum(space_needed(sum(o.size for o in rec.slices)) for rec in self._user.streams.values())
            check_space(ctx.workdir, need=need, reserve=ctx.config.workdir_reserve_bytes)
        streams = []
        for name, rec in self._user.streams.items():
            stream = make_job(
                rec, policy=job.policy, want_mp4=False, expect=stream_expectations(job.expect, name)
            )
            stream = replace(stream, backup_wait=job.backup_wait)
            fetch = FetchStage(consumer=self._spools.get(name))
            streams.append(run_job(stream, (fetch, VerifyStage()), ctx=ctx))
        return combine(job, streams)


def user_stages(user: User, *, options: RunOptions, want_mp4: bool) -> tuple[Stage, ...]:
    """A user's stage order: their streams (each fetched and verified), then laid on one clock, then
    (when MP4 is wanted and published) merged into one MP4, then published."""
    merging = want_mp4 and options.publish
    spools = {name: Spool(f"{name}.spool") for name in user.streams} if merging else {}
    stages: tuple[Stage, ...] = (StreamsStage(user, spools=spools), AlignStage())
    if merging:
        stages += (MergeStage(spools),)
    return (*stages, PublishStage()) if options.publish else stages


def user_job(user: User, *, settings: UserSettings) -> Job:
    """A fresh job for one user: named ``…__uid_e_av`` (or the one stream they have)."""
    return Job(
        recording=user_recording(user),
        policy=settings.policy,
        want_mp4=settings.want_mp4,
        expect=settings.expect,
        inputs_digest=user_digest(user, absent=settings.absent),
        absent=settings.absent,
        backup_wait=settings.backup_wait,
    )


def process_user(user: User, *, settings: UserSettings, ctx: StageContext) -> Result:
    """Verify the user's streams and (when MP4 is wanted) publish their merged MP4 and report."""
    stages = user_stages(user, options=settings.options, want_mp4=settings.want_mp4)
    return execute(user_job(user, settings=settings), ctx=ctx, options=settings.options, stages=stages)


def recording_digest(users: Sequence[User], *, absent: Absent) -> str:
    """Changes when any user's inputs (or the choice for absent time) change."""
    return hashlib.sha256("\n".join(user_digest(u, absent=absent) for u in users).encode()).hexdigest()


def user_result(user: User, result: Result) -> UserResult:
    """A legacy individual-mode user's line in the recording's report."""
    return UserResult(
        uid=user.uid,
        streams=tuple(sorted(user.streams)),
        playlists=tuple(r.playlist_key for r in user.streams.values()),
        job=result.job,
        report=result.report,
        report_key=result.report_key,
    )


def summary_recording(first: Recording) -> Recording:
    """The whole individual-mode recording (all its users), as its report names it."""
    return Recording(
        sid=first.sid, cname=first.cname, mode="individual", directory=first.directory, playlist_key=None
    )


def mixed_audio_of(stream: Recording, *, storage: Storage) -> list[dict[str, Any]]:
    """The recorder's own mixed audio files (postponed audio mixing) beside the recording: recognised
    and listed in the recording's report, never touched."""
    found = []
    for obj in storage.list(stream.directory):
        name = obj.key[len(stream.directory) :]
        mixed = parse_mixed_audio(name)
        if mixed is not None and (mixed.sid, mixed.cname) == (stream.sid, stream.cname):
            found.append(
                {"key": obj.key, "kind": f"mixed-audio/{mixed.ext}", "index": mixed.index, "bytes": obj.size}
            )
    return sorted(found, key=lambda o: o["index"])


def process_individual(
    recordings: Sequence[Recording], *, settings: UserSettings, ctx: StageContext
) -> Result:
    """Process every user of one individual-mode recording; write the recording's report last."""
    users = users_of(recordings)
    if not users:
        raise RecordingNotFound("no audio or video stream of any user was found")
    lines = [user_result(user, process_user(user, settings=settings, ctx=ctx)) for user in users]
    first = users[0].first
    report = summary_report(
        summary_recording(first),
        lines,
        policy=settings.policy,
        digest=recording_digest(users, absent=settings.absent),
        tool=ctx.tool,
        recorder_outputs=mixed_audio_of(first, storage=ctx.storage),
    )
    return publish_summary(first, report, lines, settings=settings, ctx=ctx)


def publish_summary(
    first: Recording,
    report: dict[str, Any],
    users: Sequence[UserResult],
    *,
    settings: UserSettings,
    ctx: StageContext,
) -> Result:
    """Write a recording's summary report (unless every user was already done and it says so)."""
    skipped = all(u.job.skipped for u in users)
    parts = tuple(u.report for u in users)
    recording = summary_recording(first)
    job = Job(recording=recording, policy=settings.policy, status=report["status"], skipped=skipped)
    key = None
    if settings.options.publish and report["status"] != "pending":
        key = ctx.destination.directory + report_name(first.sid, first.cname)
        existing = read_existing_report(ctx.destination.storage, key)
        if skipped and existing is not None and existing.get("inputs_digest") == report["inputs_digest"]:
            return Result(job=job, report=existing, report_key=key, parts=parts)
        ctx.destination.writable().put_bytes(dump_report(report), key, metadata=label_for(key))
    return Result(job=job, report=report, report_key=key, parts=parts)
