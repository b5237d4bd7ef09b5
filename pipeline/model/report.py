"""The report (SPEC.md, schema ``recpipe.report/1``): built from a finished job, and read back."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.model.job import Finding, Job, Policy, Recording, Segment
from pipeline.model.policy import worst_status

log = logging.getLogger(__name__)

SCHEMA = "recpipe.report/1"


def recording_json(rec: Recording, *, playlists: Sequence[str] | None = None) -> dict[str, Any]:
    """Who the recording is, as the report (and ``ls --json``) show it.

    :param playlists: the keys of the playlists whose entries were processed (``Job.playlists``);
        when not known (nothing was read), every playlist the recording has: its own, then its
        backup snapshot playlists.
    """
    if playlists is None:
        playlists = list(rec.playlist_keys)
    return {
        "sid": rec.sid,
        "cname": rec.cname,
        "mode": rec.mode,
        "uid": rec.uid,
        "media": rec.media,
        "codec": rec.codec,
        "playlist": rec.playlist_key,
        "playlists": list(playlists),
    }


def build_report(job: Job, *, tool: Mapping[str, str]) -> dict[str, Any]:
    """The report document for ``job`` (a recording, or one user of an individual-mode recording)."""
    rec = job.recording
    present = job.present_segments
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "recording": recording_json(rec, playlists=job.playlists),
        "status": job.status,
        "policy": job.policy,
        "segments": {
            "listed": len(job.segments),
            "present": len(present),
            "bytes": sum(s.size or 0 for s in present),
        },
        "duration": {
            "playlist_s": round(job.playlist_duration, 3),
            "media_s": round(media_seconds(job), 3),
            "wallclock_s": round(wallclock(job), 3),
        },
        "findings": [f.to_json() for f in job.findings],
        "outputs": [o.to_json() for o in job.outputs],
        "mp4_source": job.mp4_source,
        "recorder_outputs": [m.to_json() for m in job.recorder_mp4s],
        "not_processed": not_processed_json(rec),
        "inputs_digest": job.inputs_digest,
        "error": None
        if job.error is None
        else {
            "stage": job.error.stage,
            "type": job.error.type,
            "message": job.error.message,
            "retryable": job.error.retryable,
        },
        "tool": dict(tool),
        "timings_s": {k: round(v, 3) for k, v in job.timings.items()},
        "retries": job.retries,
        **(user_sections(job) if job.streams else {}),
        "timeline": timeline_json(job),
    }
    if job.streams:  # individual mode: the user's playlists, and durations over both streams
        report["recording"]["playlists"] = [s.recording.playlist_key for s in job.streams]
        report["duration"] = user_duration(job)
    return report


def timeline_json(job: Job) -> dict[str, Any]:
    """Every playlist entry, as columns (compact for a 10,000-slice recording): what ``recpipe show``
    draws. ``at_s`` is the entry's place on the recording's timeline (None when it could not be
    placed); ``media_s`` its media's duration and ``first_frame`` whether its video starts with a
    keyframe (``"key"``, ``"delta"``, or None without video), as recpipe's reader saw them."""
    segs = job.segments

    def first_frame(seg: Segment) -> str | None:
        video = seg.media.video if seg.media is not None else None
        if video is None or video.keyframe_at_start is None:
            return None
        return "key" if video.keyframe_at_start else "delta"

    def size(seg: Segment) -> str | None:
        resolution = seg.media.resolution if seg.media is not None else None
        return None if resolution is None else f"{resolution[0]}x{resolution[1]}"

    return {
        "uri": [s.uri for s in segs],
        "at_s": [None if s.at_s is None else round(s.at_s, 3) for s in segs],
        "extinf_s": [round(s.duration, 3) for s in segs],
        "media_s": [
            None if s.media is None or s.media.duration_s is None else round(s.media.duration_s, 3)
            for s in segs
        ],
        "bytes": [s.size for s in segs],
        "first_frame": [first_frame(s) for s in segs],
        "size": [size(s) for s in segs],
        "discontinuity": [s.discontinuity for s in segs],
        "defect": [s.defect for s in segs],
    }


def user_duration(job: Job) -> dict[str, float]:
    """A user's durations: the longer playlist, the time the placed slices cover on the user's clock
    (the longer stream's when nothing was placed), the longer wall-clock span."""
    media = job.alignment.media_s if job.alignment is not None else None
    if media is None:
        media = max(media_seconds(s) for s in job.streams)
    return {
        "playlist_s": round(job.playlist_duration, 3),
        "media_s": round(media, 3),
        "wallclock_s": round(max(wallclock(s) for s in job.streams), 3),
    }


def user_sections(job: Job) -> dict[str, Any]:
    """The sections only a user's report has: each stream's summary, and the time the user was away."""
    align = job.alignment
    return {
        "streams": {
            s.recording.media: {
                "playlist": s.recording.playlist_key,
                "inputs_digest": s.inputs_digest,
                "status": s.status,
                "listed": len(s.segments),
                "present": len(s.present_segments),
                "starts_s": None
                if align is None
                else round(align.starts.get(s.recording.media or "", 0.0), 3),
            }
            for s in job.streams
        },
        "absent": {
            "choice": job.absent,
            "spans": []
            if align is None
            else [{"at_s": round(at, 3), "seconds": round(seconds, 3)} for at, seconds in align.absences],
        },
    }


@dataclass(frozen=True, kw_only=True, slots=True)
class UserResult:
    """One user of an individual-mode recording, processed: the line the recording's report gives them."""

    uid: str
    streams: tuple[str, ...]
    """``audio``/``video`` (legacy mode), or the codec of the user's one playlist (v2)."""
    playlists: tuple[str | None, ...]
    job: Job
    report: Mapping[str, Any]
    """The user's own report (the one just written, or the up-to-date one found)."""
    report_key: str | None


def summary_report(
    recording: Recording,
    users: Sequence[UserResult],
    *,
    policy: Policy,
    digest: str,
    tool: Mapping[str, str],
    recorder_outputs: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """An individual-mode recording's report: its users' statuses, reports and outputs, summed up (and
    the recorder's own files beside it, where the mode has any: ``recorder_outputs``)."""
    reports = [u.report for u in users]
    timings: dict[str, float] = {}
    for rep in reports:
        for stage, seconds in rep.get("timings_s", {}).items():
            timings[stage] = round(timings.get(stage, 0.0) + seconds, 3)
    return {
        "schema": SCHEMA,
        "recording": {**recording_json(recording), "playlists": [p for u in users for p in u.playlists]},
        "status": worst_status(u.job.status for u in users),
        "policy": policy,
        "segments": {
            key: sum(rep["segments"][key] for rep in reports) for key in ("listed", "present", "bytes")
        },
        "duration": {
            key: max(rep["duration"][key] for rep in reports)
            for key in ("playlist_s", "media_s", "wallclock_s")
        },
        "findings": [user_finding(u) for u in users if u.job.status != "ok"],
        "outputs": [o for rep in reports for o in rep["outputs"]],
        "users": [
            {"uid": u.uid, "status": u.job.status, "report": u.report_key, "streams": list(u.streams)}
            for u in users
        ],
        "not_processed": [n for rep in reports for n in rep.get("not_processed", [])],
        "inputs_digest": digest,
        "error": None,
        "tool": dict(tool),
        "timings_s": timings,
        "retries": sum(u.job.retries for u in users),
        **({} if recorder_outputs is None else {"recorder_outputs": list(recorder_outputs)}),
    }


def user_finding(user: UserResult) -> dict[str, Any]:
    """One line in the recording's report for a user who is not ok."""
    job = user.job
    errors = [f for f in job.findings if f.severity == "error"]
    what = job.error.message if job.error else (errors[0].detail if errors else str(job.status))
    finding = Finding(
        code="USER_NOT_OK",
        severity="info" if job.status == "pending" else "warning" if job.status == "degraded" else "error",
        detail=f"user {user.uid} is {job.status}: {what}",
    )
    return finding.to_json()


def not_processed_json(rec: Recording) -> list[dict[str, Any]]:
    """The user's files recpipe recognised and left alone, each with why."""
    return [{"key": o.key, "bytes": o.size, "why": not_processed_reason(o.key)} for o in rec.unprocessed]


def not_processed_reason(key: str) -> str:
    """Why recpipe leaves one of a user's files alone."""
    if key.endswith(".mpd"):
        return "a DASH manifest (VP8/VP9 with Opus): recpipe reads the HLS playlists"
    if key.endswith(".webm"):
        return "a WebM segment (VP8/VP9): recpipe remuxes MPEG-TS slices"
    return "the standard-mode list of the user's audio and video playlists, not a media playlist"


def media_seconds(job: Job) -> float:
    """Seconds of the recording's timeline covered by usable slices (overlaps counted once).

    A slice covers its media's duration (EXTINF when it was not read) from its timeline position.
    """
    usable = job.usable_segments
    spans = [(s.at_s, s.at_s + s.length_s) for s in usable if s.at_s is not None]
    if len(spans) < len(usable):  # not placed (verify did not run): a plain sum
        return math.fsum(s.length_s for s in usable)
    return covered(spans)


def covered(spans: list[tuple[float, float]]) -> float:
    """Total length of the union of ``(start, end)`` intervals."""
    total, reach = 0.0, -math.inf
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def wallclock(job: Job) -> float:
    """Seconds between the first and last slice start times in their names, plus the last EXTINF."""
    timed = [(s.utc, s.duration) for s in job.segments if s.utc is not None]
    if not timed:
        return 0.0
    (first, _), (last, last_duration) = timed[0], timed[-1]
    return (last - first).total_seconds() + last_duration


def dump_report(report: Mapping[str, Any]) -> bytes:
    """The report as UTF-8 JSON, stable key order, trailing newline."""
    return (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode()


def load_report(data: bytes) -> dict[str, Any] | None:
    """A previously written report, or None if it is not one of ours (then it is simply replaced)."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        return None
    return doc


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """A short human summary of a report, for the terminal."""
    rec = report["recording"]
    seg = report["segments"]
    lines = [
        f"{report['status'].upper():9} {rec['sid']}_{rec['cname']}  ({report['policy']} policy)",
        f"  slices   {seg['present']}/{seg['listed']} present, {seg['bytes']:,} bytes;"
        f" playlist {report['duration']['playlist_s']:.1f} s",
    ]
    counts: dict[str, int] = {}
    for f in report["findings"]:
        counts[f["severity"]] = counts.get(f["severity"], 0) + 1
    for f in report["findings"][:20]:
        where = f" at {f['at_s']:.1f} s" if f.get("at_s") is not None else ""
        lines.append(f"  {f['severity']:7}  {f['code']}{where}: {f['detail']}")
    if len(report["findings"]) > 20:
        lines.append(f"  ... {len(report['findings']) - 20} more findings (see the report / --json)")
    if report.get("error"):
        lines.append(f"  error    {report['error']['stage']}: {report['error']['message']}")
    for out in report["outputs"]:
        tracks = "+".join(out["tracks"])
        lines.append(f"  output   {out['key']}  ({out['kind']}, {out['bytes']:,} bytes, {tracks})")
    return lines
