"""Individual mode: every user's audio and video streams verified on their own and merged into one MP4.

A user is the pair of playlists ``<sid>_<cname>__uid_s_<uid>__uid_e_audio|video.m3u8`` (either may be
absent: a user who only spoke, or only showed video). Per user, both streams are fetched and verified
exactly like a composite recording (their own findings, their own timeline), then merged in sync
(``stages.align`` plans, ``stages.merge`` writes) into ``<sid>_<cname>__uid_s_<uid>__uid_e_av_0.mp4``
(``audio``/``video`` in place of ``av`` when the user has only that stream), and a report per user
``<sid>_<cname>__uid_s_<uid>__uid_e_av.report.json`` is written. Processing a whole recording adds
``<sid>_<cname>.report.json``, which sums up the users. Each user holds their own lease, so users
are independent: two workers may process two users of one recording at once.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pipeline.model.exceptions import PipelineError, RecordingNotFound
from pipeline.model.job import Absent, Expectations, Finding, Job, Policy, Recording, StageError
from pipeline.model.naming import Media, parse_mixed_audio, report_name
from pipeline.model.policy import decide_status, is_terminal, worst_status
from pipeline.model.report import (
    SCHEMA,
    build_report,
    covered,
    dump_report,
    media_seconds,
    recording_json,
    wallclock,
)
from pipeline.run.runner import (
    Result,
    RunOptions,
    job_workdir,
    leased,
    make_job,
    run_job,
    storage_retries,
)
from pipeline.storage.base import Storage
from stages.align import MergePlan, StreamName, plan_merge
from stages.base import StageContext
from stages.discover import inputs_digest
from stages.fetch import FetchStage
from stages.merge import Spool, merge_user
from stages.publish import PublishStage, read_existing_report
from stages.recorder import label_for
from stages.remux import check_space, mp4_file_name, space_needed
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


def tagged(findings: Sequence[Finding], stream: StreamName) -> tuple[Finding, ...]:
    """A stream's findings as the user's report shows them: playlist-level ones say which stream."""
    return tuple(f if f.segment else replace(f, detail=f"{stream} playlist: {f.detail}") for f in findings)


def verify_streams(
    user: User, *, settings: UserSettings, ctx: StageContext
) -> tuple[dict[StreamName, Job], dict[StreamName, Spool]]:
    """Fetch and verify each of the user's streams; keep their slices in spool files when merging."""
    jobs: dict[StreamName, Job] = {}
    spools: dict[StreamName, Spool] = {}
    merging = settings.want_mp4 and settings.options.publish
    if merging:
        need = sum(space_needed(sum(o.size for o in rec.slices)) for rec in user.streams.values())
        check_space(ctx.workdir, need=need, reserve=ctx.config.workdir_reserve_bytes)
    for name, rec in user.streams.items():
        job = make_job(
            rec, policy=settings.policy, want_mp4=False, expect=stream_expectations(settings, name)
        )
        job = replace(job, backup_wait=settings.backup_wait)
        spool = Spool(ctx.workdir / f"{name}.spool") if merging else None
        jobs[name] = run_job(job, (FetchStage(consumer=spool), VerifyStage()), ctx=ctx)
        if spool is not None:
            spools[name] = spool
    return jobs, spools


def stream_expectations(settings: UserSettings, stream: StreamName) -> Expectations:
    """What one stream should hold: only its own kind (the profile's size and rate for video)."""
    expect = settings.expect
    if stream == "audio":
        return Expectations(stream_types=0)
    return replace(expect, stream_types=1)


def combine(rec: Recording, jobs: Mapping[StreamName, Job], *, settings: UserSettings, digest: str) -> Job:
    """The user's job: both streams' segments and findings, the first stage error, the status."""
    findings = tuple(f for name, job in jobs.items() for f in tagged(job.findings, name))
    error = next((j.error for j in jobs.values() if j.error is not None), None)
    timings: dict[str, float] = {}
    for job in jobs.values():
        for stage, seconds in job.timings.items():
            timings[stage] = timings.get(stage, 0.0) + seconds
    return Job(
        recording=rec,
        policy=settings.policy,
        want_mp4=settings.want_mp4,
        expect=settings.expect,
        inputs_digest=digest,
        playlist_duration=max(j.playlist_duration for j in jobs.values()),
        endlist=all(j.endlist for j in jobs.values()),
        segments=tuple(s for j in jobs.values() for s in j.segments),
        findings=findings,
        error=error,
        status=decide_status(findings, policy=settings.policy, error=error),
        timings=timings,
    )


def merge_and_publish(
    job: Job,
    user: User,
    *,
    streams: Mapping[StreamName, Job],
    spools: Mapping[StreamName, Spool],
    plan: MergePlan,
    ctx: StageContext,
) -> Job:
    """Write the user's MP4 and publish it; a failure becomes the job's error."""
    name = mp4_file_name(job.recording, template=ctx.config.individual_mp4_template, index=0, utc=plan.origin)
    try:
        started = time.monotonic()
        merged = merge_user(
            plan, spools=spools, segments={n: j.segments for n, j in streams.items()}, name=name, ctx=ctx
        )
        job = replace(job, outputs=(merged.output,), findings=job.findings + merged.findings)
        job = add_time(job, "remux", since=started)
        started = time.monotonic()
        job = add_time(PublishStage().run(job, ctx), "publish", since=started)
    except PipelineError as err:
        ctx.logger.debug("merging user %s failed: %s", user.uid, err)
        job = replace(job, outputs=())
        return failed(job, err)
    return replace(job, status=decide_status(job.findings, policy=job.policy, error=job.error))


def add_time(job: Job, stage: str, *, since: float) -> Job:
    """``job`` with the seconds since ``since`` (``time.monotonic()``) added to ``stage``'s timing."""
    seconds = time.monotonic() - since
    return replace(job, timings={**job.timings, stage: job.timings.get(stage, 0.0) + seconds})


def failed(job: Job, err: PipelineError) -> Job:
    """``job`` stopped by ``err`` in the merge step."""
    error = StageError.of(err, stage="merge")
    return replace(job, error=error, status=decide_status(job.findings, policy=job.policy, error=error))


def user_report(
    job: Job,
    *,
    streams: Mapping[StreamName, Job],
    plan: MergePlan | None,
    absent: Absent,
    tool: Mapping[str, str],
) -> dict[str, Any]:
    """The standard report for the user's job, with each stream's summary and the absences."""
    report = build_report(job, tool=tool)
    report["recording"]["playlists"] = [j.recording.playlist_key for j in streams.values()]
    spans = []
    if plan is not None:
        spans = [(p.start_s, p.end_s) for ps in plan.pieces.values() for p in ps]
    report["duration"] = {
        "playlist_s": round(job.playlist_duration, 3),
        "media_s": round(covered(spans) if spans else max(media_seconds(j) for j in streams.values()), 3),
        "wallclock_s": round(max(wallclock(j) for j in streams.values()), 3),
    }
    report["streams"] = {
        name: {
            "playlist": j.recording.playlist_key,
            "inputs_digest": j.inputs_digest,
            "status": j.status,
            "listed": len(j.segments),
            "present": len(j.present_segments),
            "starts_s": None if plan is None else round(plan.starts.get(name, 0.0), 3),
        }
        for name, j in streams.items()
    }
    report["absent"] = {
        "choice": absent,
        "spans": []
        if plan is None
        else [{"at_s": round(a.start_s, 3), "seconds": round(a.seconds, 3)} for a in plan.absences],
    }
    return report


def process_user(user: User, *, settings: UserSettings, ctx: StageContext) -> Result:
    """Verify the user's streams and (when MP4 is wanted) publish their merged MP4 and report."""
    digest = user_digest(user, absent=settings.absent)
    rec = user_recording(user)
    probe = Job(recording=rec, policy=settings.policy, want_mp4=settings.want_mp4, inputs_digest=digest)
    return leased(
        probe,
        ctx=ctx,
        options=settings.options,
        work=lambda: _process_user(user, rec, settings=settings, ctx=ctx, digest=digest),
    )


def _process_user(
    user: User, rec: Recording, *, settings: UserSettings, ctx: StageContext, digest: str
) -> Result:
    retries_before = storage_retries(ctx)
    plan: MergePlan | None = None
    with job_workdir(ctx.config) as workdir:
        wctx = replace(ctx, workdir=workdir)
        streams, spools = verify_streams(user, settings=settings, ctx=wctx)
        job = combine(rec, streams, settings=settings, digest=digest)
        if not is_terminal(job.status or "failed"):
            try:
                plan = plan_merge({n: j.segments for n, j in streams.items()}, absent=settings.absent)
            except PipelineError as err:
                job = failed(job, err)
        if plan is not None and spools and not is_terminal(job.status or "failed"):
            job = merge_and_publish(job, user, streams=streams, spools=spools, plan=plan, ctx=wctx)
    job = replace(job, retries=storage_retries(ctx) - retries_before)
    report = user_report(job, streams=streams, plan=plan, absent=settings.absent, tool=ctx.tool)
    key = None
    if settings.options.publish and job.status != "pending":
        key = ctx.destination.directory + report_name(
            job.recording.sid, job.recording.cname, uid=user.uid, media=job.recording.media
        )
        ctx.destination.storage.put_bytes(dump_report(report), key, metadata=label_for(key))
    return Result(job=job, report=report, report_key=key)


def recording_digest(users: Sequence[User], *, absent: Absent) -> str:
    """Changes when any user's inputs (or the choice for absent time) change."""
    return hashlib.sha256("\n".join(user_digest(u, absent=absent) for u in users).encode()).hexdigest()


@dataclass(frozen=True, kw_only=True, slots=True)
class UserLine:
    """One user in a recording's summary report."""

    uid: str
    streams: tuple[str, ...]
    """``audio``/``video`` (legacy mode), or the codec of the user's one playlist (v2)."""
    playlists: tuple[str | None, ...]


def user_line(user: User) -> UserLine:
    """A legacy individual-mode user's line."""
    return UserLine(
        uid=user.uid,
        streams=tuple(sorted(user.streams)),
        playlists=tuple(r.playlist_key for r in user.streams.values()),
    )


def recording_report(
    users: Sequence[User], results: Sequence[Result], *, settings: UserSettings, tool: Mapping[str, str]
) -> dict[str, Any]:
    """The recording's report: the users' statuses, reports and outputs, summed up."""
    return summary_report(
        users[0].first,
        [user_line(u) for u in users],
        results,
        policy=settings.policy,
        digest=recording_digest(users, absent=settings.absent),
        tool=tool,
    )


def summary_report(
    first: Recording,
    users: Sequence[UserLine],
    results: Sequence[Result],
    *,
    policy: Policy,
    digest: str,
    tool: Mapping[str, str],
) -> dict[str, Any]:
    """A recording's report made of its users' results (legacy or v2 individual mode)."""
    reports = [r.report for r in results]
    recording = Recording(
        sid=first.sid, cname=first.cname, mode="individual", directory=first.directory, playlist_key=None
    )
    timings: dict[str, float] = {}
    for rep in reports:
        for stage, seconds in rep.get("timings_s", {}).items():
            timings[stage] = round(timings.get(stage, 0.0) + seconds, 3)
    return {
        "schema": SCHEMA,
        "recording": {**recording_json(recording), "playlists": [p for u in users for p in u.playlists]},
        "status": worst_status(r.job.status for r in results),
        "policy": policy,
        "segments": {
            key: sum(rep["segments"][key] for rep in reports) for key in ("listed", "present", "bytes")
        },
        "duration": {
            key: max(rep["duration"][key] for rep in reports)
            for key in ("playlist_s", "media_s", "wallclock_s")
        },
        "findings": [user_finding(u, r) for u, r in zip(users, results, strict=True) if r.job.status != "ok"],
        "outputs": [o for rep in reports for o in rep["outputs"]],
        "users": [
            {"uid": u.uid, "status": r.job.status, "report": r.report_key, "streams": list(u.streams)}
            for u, r in zip(users, results, strict=True)
        ],
        "not_processed": [n for rep in reports for n in rep.get("not_processed", [])],
        "inputs_digest": digest,
        "error": None,
        "tool": dict(tool),
        "timings_s": timings,
        "retries": sum(r.job.retries for r in results),
    }


def user_finding(user: UserLine, result: Result) -> dict[str, Any]:
    """One line in the recording's report for a user who is not ok."""
    status = result.job.status
    errors = [f for f in result.job.findings if f.severity == "error"]
    what = result.job.error.message if result.job.error else (errors[0].detail if errors else str(status))
    finding = Finding(
        code="USER_NOT_OK",
        severity="info" if status == "pending" else "warning" if status == "degraded" else "error",
        detail=f"user {user.uid} is {status}: {what}",
    )
    return finding.to_json()


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
    results = [process_user(user, settings=settings, ctx=ctx) for user in users]
    report = recording_report(users, results, settings=settings, tool=ctx.tool)
    first = users[0].first
    report["recorder_outputs"] = mixed_audio_of(first, storage=ctx.storage)
    return publish_summary(first, report, results, settings=settings, ctx=ctx)


def publish_summary(
    first: Recording,
    report: dict[str, Any],
    results: Sequence[Result],
    *,
    settings: UserSettings,
    ctx: StageContext,
) -> Result:
    """Write a recording's summary report (unless every user was already done and it says so)."""
    recording = Recording(
        sid=first.sid, cname=first.cname, mode="individual", directory=first.directory, playlist_key=None
    )
    skipped = all(r.job.skipped for r in results)
    job = Job(recording=recording, policy=settings.policy, status=report["status"], skipped=skipped)
    key = None
    if settings.options.publish and report["status"] != "pending":
        key = ctx.destination.directory + report_name(first.sid, first.cname)
        existing = read_existing_report(ctx.destination.storage, key)
        if skipped and existing is not None and existing.get("inputs_digest") == report["inputs_digest"]:
            return Result(job=job, report=existing, report_key=key)
        ctx.destination.storage.put_bytes(dump_report(report), key, metadata=label_for(key))
    return Result(job=job, report=report, report_key=key)
