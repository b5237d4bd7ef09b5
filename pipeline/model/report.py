"""The report (SPEC.md, schema ``recpipe.report/1``): built from a finished job, and read back."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.model.job import Job, Recording

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
    """The report document for ``job``."""
    rec = job.recording
    present = job.present_segments
    return {
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
    }


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
