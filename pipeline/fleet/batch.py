"""Many recordings at once, from a terminal: ``recpipe batch`` runs every recording under a location
here (each in a ``recpipe process`` of its own, several at once), ``recpipe enqueue`` sends one job
message per recording to the workers' queue (re-processing at scale)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from pipeline.fleet.jobs import JobSpec, run_subprocess
from pipeline.fleet.queues import open_queue
from pipeline.fleet.triggers import JobOptions, job_message
from pipeline.model.job import Recording, Status
from pipeline.model.policy import STATUS_EXIT, worst_status
from pipeline.run.app import recordings_at


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchLine:
    """One recording of a batch, finished."""

    recording: str
    """The location naming only this recording."""
    label: str
    status: Status | None
    """None when the job ended without a report (its error says why)."""
    exit_code: int
    detail: str
    report: Mapping[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        """``recpipe batch --json``'s entry."""
        return {
            "recording": self.recording,
            "status": self.status,
            "exit_code": self.exit_code,
            "detail": self.detail,
            "report": self.report,
        }


OnDone = Callable[[int, int, BatchLine], None]
"""Called as each recording finishes: (how many are done, how many there are, the line)."""


def run_batch(
    location: str,
    *,
    jobs: int,
    options: JobOptions,
    endpoint_url: str | None,
    environ: Mapping[str, str],
    on_done: OnDone | None = None,
) -> list[BatchLine]:
    """Process every recording under ``location``, ``jobs`` at once, in the order they finish."""
    found = recordings_at(location, endpoint_url=endpoint_url, environ=environ)
    lines: list[BatchLine] = []
    with ThreadPoolExecutor(jobs, thread_name_prefix="recpipe-batch") as pool:
        futures = {
            pool.submit(
                run_subprocess,
                JobSpec(location=where, sid=rec.sid, endpoint_url=endpoint_url, options=options),
            ): (where, rec)
            for where, rec in found
        }
        for done, future in enumerate(as_completed(futures), start=1):
            where, rec = futures[future]
            outcome = future.result()
            line = BatchLine(
                recording=where,
                label=rec.label,
                status=outcome.status,
                exit_code=outcome.exit_code,
                detail=outcome.describe(),
                report=outcome.report,
            )
            lines.append(line)
            if on_done is not None:
                on_done(done, len(found), line)
    return lines


def batch_summary(lines: Sequence[BatchLine]) -> str:
    """``3 recording(s): 2 ok, 1 degraded`` (``error`` for a job that ended without a report)."""
    counts = Counter(line.status or "error" for line in lines)
    return f"{len(lines)} recording(s): " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def batch_exit_code(statuses: Sequence[Status | None]) -> int:
    """``recpipe batch``'s exit code: its worst recording's status (``worst_status``)'s exit code."""
    return STATUS_EXIT[worst_status(statuses)]


def enqueue_recordings(
    location: str,
    *,
    queue_url: str,
    options: JobOptions,
    endpoint_url: str | None,
    environ: Mapping[str, str],
) -> tuple[int, list[tuple[str, Recording]]]:
    """Send one job message per recording under ``location``; how many were sent, and the recordings."""
    found = recordings_at(location, endpoint_url=endpoint_url, environ=environ)
    bodies = [job_message(where, sid=rec.sid, options=options) for where, rec in found]
    if not bodies:
        return 0, found
    return open_queue(queue_url, endpoint_url=endpoint_url, environ=environ).send(bodies), found
