"""Individual recording v2 (``raw``): one audio+video playlist per user, each processed like a composite
recording, and a summary report for the recording.

The recorder writes ``<sid>_<cname>__uid_s_<uid>__uid_e_<codec>.m3u8`` per user, listing slices
``…__uid_e_<utc>_<codec>.ts``. Each user is a recording of its own for the runner (lease, idempotency,
stages, report ``…__uid_e_<codec>.report.json``, MP4s ``…__uid_e_<index>_<codec>.mp4``); the
recording's report ``<sid>_<cname>.report.json`` sums the users up as in legacy individual mode.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import replace

from pipeline.model.job import Expectations, Recording
from pipeline.model.report import UserResult, summary_report
from pipeline.run.individual import UserSettings, publish_summary, summary_recording
from pipeline.run.runner import Result, execute, make_job
from stages.base import StageContext

log = logging.getLogger(__name__)


def is_raw(recording: Recording) -> bool:
    """Whether the recording is one user's playlist of an individual v2 recording."""
    return recording.uid is not None and recording.codec is not None


def raw_users(recordings: Sequence[Recording]) -> tuple[Recording, ...]:
    """The v2 users' recordings among ``recordings``, by uid then codec."""
    return tuple(sorted((r for r in recordings if is_raw(r)), key=lambda r: (r.uid or "", r.codec or "")))


def process_raw_users(
    users: Sequence[Recording], *, settings: UserSettings, expect: Expectations, ctx: StageContext
) -> Result:
    """Process each user's playlist through the runner; write the recording's summary report last."""
    results = [
        execute(
            replace(
                make_job(user, policy=settings.policy, want_mp4=settings.want_mp4, expect=expect),
                backup_wait=settings.backup_wait,
            ),
            ctx=ctx,
            options=settings.options,
        )
        for user in users
    ]
    lines = [
        UserResult(
            uid=u.uid or "",
            streams=(u.codec or "",),
            playlists=(u.playlist_key,),
            job=r.job,
            report=r.report,
            report_key=r.report_key,
        )
        for u, r in zip(users, results, strict=True)
    ]
    digest = hashlib.sha256("\n".join(r.job.inputs_digest for r in results).encode()).hexdigest()
    report = summary_report(
        summary_recording(users[0]), lines, policy=settings.policy, digest=digest, tool=ctx.tool
    )
    return publish_summary(users[0], report, lines, settings=settings, ctx=ctx)
