"""The stage runner: one envelope for every run, whatever the mode.

``run_job`` runs stages in order, times them, turns a stage's ``PipelineError`` into the job's
error, recomputes the status after every stage and stops as soon as nothing can be published.
``execute`` wraps it with what every run needs: the lease, the idempotency check, a private work
directory that is always removed, and the report (``pipeline.model.report``) written last. A
recording's stage order is ``stages_for``; an individual-mode user's is
``pipeline.run.individual.user_stages``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import copy_context
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, TypeAlias, runtime_checkable

from pipeline.model.config import PipelineConfig
from pipeline.model.exceptions import LeaseLost, ObjectNotFound, PipelineError, PreconditionFailed
from pipeline.model.job import Expectations, Finding, Job, Policy, Recording, StageError
from pipeline.model.logs import bound
from pipeline.model.policy import decide_status, is_terminal
from pipeline.model.report import build_report
from pipeline.run.lease import Holder, acquire, new_owner
from pipeline.run.liveness import gone, pid_namespace, this_host
from stages.base import Stage, StageContext
from stages.discover import inputs_digest
from stages.fetch import FetchStage
from stages.outputs import is_own
from stages.publish import (
    PublishStage,
    is_up_to_date,
    outputs_intact,
    read_existing_report,
    report_key,
    write_report,
)
from stages.recorder import RecorderStage
from stages.remux import RemuxStage
from stages.verify import VerifyStage

log = logging.getLogger(__name__)

Previous: TypeAlias = Callable[[], Mapping[str, Any] | None]
"""The report the destination held when the run took the recording's lease (None: none), once read."""


@runtime_checkable
class Closing(Protocol):
    """A stage holding something that outlives its ``run`` (ffmpeg, an upload) until the job ends."""

    def close(self) -> None:
        """Release it: anything not published by now is thrown away."""
        ...


@runtime_checkable
class TimesItself(Protocol):
    """A stage that runs stages of its own (a user's streams) and adds up their timings itself."""

    times_itself: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class RunOptions:
    """What kind of run this is."""

    publish: bool = True
    """False for ``verify`` and ``--dry-run``: fetch and verify only, write nothing."""
    force: bool = False
    """Process again even when an up-to-date report exists."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Result:
    """A finished run: the job, its report document, and where the report was written (if it was)."""

    job: Job
    report: dict[str, Any]
    report_key: str | None
    parts: tuple[Mapping[str, Any], ...] = ()
    """An individual-mode recording's users' own reports (its ``report`` sums them up)."""


def make_job(recording: Recording, *, policy: Policy, want_mp4: bool, expect: Expectations) -> Job:
    """A fresh job for a discovered recording."""
    return Job(
        recording=recording,
        policy=policy,
        want_mp4=want_mp4,
        expect=expect,
        inputs_digest=inputs_digest(recording),
    )


def output_directory(recording: Recording, *, source_base: str, dest_base: str | None) -> str:
    """Where a recording's outputs go: beside it, or under ``dest_base`` mirroring its relative directory."""
    if dest_base is None:
        return recording.directory
    relative = recording.directory.removeprefix(source_base)
    return dest_base + relative


def stages_for(options: RunOptions, *, want_mp4: bool) -> tuple[Stage, ...]:
    """The stage order for a run. When MP4 is wanted, remux's feeder consumes the slices while they
    are fetched (one ffmpeg per MP4, fed in playlist order); the remux stage then checks the MP4s
    against the verified recording, and nothing is published unless verification allows it."""
    if not options.publish:
        return (RecorderStage(), FetchStage(), VerifyStage())
    if not want_mp4:
        return (RecorderStage(), FetchStage(), VerifyStage(), PublishStage())
    remux = RemuxStage()
    return (RecorderStage(), FetchStage(consumer=remux.feeder), VerifyStage(), remux, PublishStage())


def _stage_error(stage: Stage, err: PipelineError) -> tuple[StageError, tuple[Finding, ...]]:
    """The stage's error for the report, and the finding it becomes (the error class says which)."""
    findings: tuple[Finding, ...] = ()
    if err.finding is not None:
        findings = (Finding(code=err.finding, severity="error", detail=str(err)),)
    return StageError.of(err, stage=stage.name), findings


def run_job(job: Job, stages: Sequence[Stage], *, ctx: StageContext) -> Job:
    """Run ``stages`` in order; stop when the status says nothing will be published."""
    for stage in stages:
        with bound(stage=stage.name):
            job = _run_stage(job, stage, ctx=ctx)
        if is_terminal(job.status or "failed"):
            break
    return job


def _run_stage(job: Job, stage: Stage, *, ctx: StageContext) -> Job:
    """One stage: timed, its error turned into the job's, the status decided again."""
    started = time.monotonic()
    ctx.logger.debug("stage %s: start", stage.name)
    try:
        job = stage.run(job, ctx)
    except LeaseLost:
        raise  # not the job's failure: the run ends here, pending (``leased``)
    except PipelineError as err:
        error, findings = _stage_error(stage, err)
        ctx.logger.debug("stage %s failed: %s", stage.name, err)
        job = replace(job, error=error, findings=job.findings + findings)
    elapsed = time.monotonic() - started
    status = decide_status(job.findings, policy=job.policy, error=job.error)
    if not isinstance(stage, TimesItself):
        spent = job.timings.get(stage.name, 0.0) + elapsed
        job = replace(job, timings={**job.timings, stage.name: spent})
    ctx.logger.debug("stage %s: %s after %.3f s", stage.name, status, elapsed)
    return replace(job, status=status)


@contextmanager
def job_workdir(config: PipelineConfig) -> Iterator[Path]:
    """A private temporary directory for one job, removed afterwards whatever happens — and, first,
    those of earlier recpipe processes here that were killed before they could remove theirs. The
    name ``recpipe-<pid namespace>-<pid>-<random>`` says whose a directory is."""
    parent = Path(config.workdir or tempfile.gettempdir())
    remove_orphaned_workdirs(parent)
    path = Path(tempfile.mkdtemp(prefix=f"recpipe-{pid_namespace()}-{os.getpid()}-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def remove_orphaned_workdirs(parent: Path) -> None:
    """Remove work directories under ``parent`` whose recpipe process is gone (killed with SIGKILL,
    or its machine restarted)."""
    mine = f"recpipe-{pid_namespace()}-"
    try:
        entries = [
            e for e in os.scandir(parent) if e.name.startswith(mine) and e.is_dir(follow_symlinks=False)
        ]
    except OSError:
        return
    for entry in entries:
        pid = entry.name[len(mine) :].partition("-")[0]
        if pid.isdigit() and gone(this_host(), int(pid)):
            log.info("removing %s, left by a recpipe that was killed", entry.path)
            shutil.rmtree(entry.path, ignore_errors=True)


def already_done(job: Job, *, ctx: StageContext) -> Result | None:
    """The result of an earlier run, when the report at the destination says the job is done."""
    return done_by(read_existing_report(ctx.destination.storage, _report_key(job, ctx=ctx)), job=job, ctx=ctx)


def done_by(existing: Mapping[str, Any] | None, *, job: Job, ctx: StageContext) -> Result | None:
    """The result of the run that wrote ``existing`` (the report at the destination), when it did
    this job with the same inputs and its outputs are all there; else None."""
    key = _report_key(job, ctx=ctx)
    if existing is None or not is_up_to_date(existing, job=job):
        return None
    if not outputs_intact(existing, storage=ctx.destination.storage):
        return None
    ctx.logger.info(
        "%s is already processed with the same inputs (%s); nothing to do", job.recording.label, key
    )
    return Result(
        job=replace(job, skipped=True, status=existing["status"]), report=dict(existing), report_key=key
    )


def _report_key(job: Job, *, ctx: StageContext) -> str:
    return report_key(job.recording, directory=ctx.destination.directory)


def busy(job: Job, holder: Holder, *, ctx: StageContext) -> Result:
    """Another recpipe holds the recording's lease: pending, come back later (no report)."""
    left = max(holder.expires - time.time(), 0)
    detail = f"another recpipe ({holder.owner}) is processing this recording; its lease ends in {left:.0f} s"
    return lease_held(job, detail, ctx=ctx)


def taken_over(job: Job, err: LeaseLost, *, ctx: StageContext) -> Result:
    """Another recpipe took the recording's lease over while this run worked: pending, as for a run
    that found it held (no report; what this run had not committed was thrown away)."""
    return lease_held(
        job, f"{err}; what it had not committed was thrown away", ctx=ctx, level=logging.WARNING
    )


def lease_held(job: Job, detail: str, *, ctx: StageContext, level: int = logging.INFO) -> Result:
    """The pending result of a run whose recording another recpipe is processing (``LEASE_HELD``)."""
    ctx.logger.log(level, "%s: %s", job.recording.label, detail)
    finding = Finding(code="LEASE_HELD", severity="info", detail=detail)
    job = replace(job, findings=(*job.findings, finding), status="pending")
    return Result(job=job, report=build_report(job, tool=ctx.tool), report_key=None)


def execute(
    job: Job, *, ctx: StageContext, options: RunOptions, stages: Sequence[Stage] | None = None
) -> Result:
    """Run every stage for ``job`` (unless already done) and write its report when publishing.

    :param stages: the stages of this run, fresh (they may hold state until the job ends); by default
        a recording's (``stages_for``). Individual mode passes a user's (``pipeline.run.individual``).
    """
    chosen = tuple(stages) if stages is not None else stages_for(options, want_mp4=job.want_mp4)

    def work(ctx: StageContext, previous: Previous) -> Result:
        return _execute(job, chosen, ctx=ctx, options=options, previous=previous)

    with bound(recording=job.recording.label, sid=job.recording.sid):
        return leased(job, ctx=ctx, options=options, work=work)


def leased(
    job: Job, *, ctx: StageContext, options: RunOptions, work: Callable[[StageContext, Previous], Result]
) -> Result:
    """``work(ctx, previous)`` for ``job``'s recording, unless its report is already up to date.

    A publishing run holds the recording's lease (``pipeline.run.lease``) from the check for an existing
    report to the report's commit, so two recpipes never process one recording at once. Under it, the
    unfinished uploads a killed run left under the recording's output names are thrown away while the
    work starts (its reads do not wait for that, its first write does: ``Destination.cleared``), and
    the report there is read once: for the check, and for the work to compare its own with. Every
    commit makes sure the lease is still this run's (``Lease.confirm``): a run that stalled and lost it
    to another recpipe ends ``pending`` there, as one that found it held."""
    if not options.publish:
        return work(ctx, lambda: None)
    if not options.force and (done := already_done(job, ctx=ctx)) is not None:
        clear_leftovers(job.recording, ctx=ctx)
        return done
    key = lease_key(job.recording, ctx=ctx)
    lease = acquire(ctx.destination.storage, key, owner=new_owner(), seconds=ctx.config.lease_seconds)
    if isinstance(lease, Holder):
        return busy(job, lease, ctx=ctx)
    lease.keep()
    try:
        with under_lease(job, ctx=ctx) as (cleared, previous):
            if not options.force and (done := done_by(previous(), job=job, ctx=ctx)) is not None:
                return done  # finished by the previous holder while this run waited

            def writable() -> None:
                cleared()
                lease.confirm()

            return work(replace(ctx, destination=replace(ctx.destination, cleared=writable)), previous)
    except LeaseLost as err:
        return taken_over(job, err, ctx=ctx)
    finally:
        lease.release()


@contextmanager
def under_lease(job: Job, *, ctx: StageContext) -> Iterator[tuple[Callable[[], object], Previous]]:
    """Throw away the unfinished uploads under the recording's output names and read its report, each
    on a thread of its own; yields what waits for each (raising its error). Ends when both have: the
    lease must outlast them. An error of the first is raised here if the body never waited for it, and
    logged if the body raised one of its own."""
    storage = ctx.destination.storage
    with ThreadPoolExecutor(2, thread_name_prefix="recpipe-clear") as pool:
        # each in a copy of this thread's context, so that what it logs names the recording
        cleared = pool.submit(
            copy_context().run, storage.discard_incomplete, ctx.destination.directory + job.recording.stem
        )
        previous = pool.submit(copy_context().run, read_existing_report, storage, _report_key(job, ctx=ctx))
        pool.shutdown(wait=False)  # its threads end with their tasks; leaving the block waits for them
        try:
            yield cleared.result, previous.result
        except BaseException:
            if (err := cleared.exception()) is not None:
                log.warning("could not clear what a killed run left under %s either: %s", storage.url, err)
            raise
        cleared.result()


def lease_key(recording: Recording, *, ctx: StageContext) -> str:
    """Where the recording's lease is, beside its outputs."""
    return ctx.destination.directory + recording.stem + ".lease.json"


def clear_leftovers(recording: Recording, *, ctx: StageContext) -> None:
    """For a recording whose work is done: clear what a run killed after committing its report left —
    its lease and unfinished uploads, once that run is gone (a live holder's are left alone), and the
    work directories of killed recpipes on this machine."""
    remove_orphaned_workdirs(Path(ctx.config.workdir or tempfile.gettempdir()))
    storage, key = ctx.destination.storage, lease_key(recording, ctx=ctx)
    if not storage.exists(key):
        return
    lease = acquire(storage, key, owner=new_owner(), seconds=ctx.config.lease_seconds)
    if isinstance(lease, Holder):
        return
    try:
        storage.discard_incomplete(ctx.destination.directory + recording.stem)
    finally:
        lease.release()
    ctx.logger.info("%s: cleared the lease and uploads a killed recpipe left behind", recording.label)


def storage_retries(ctx: StageContext) -> int:
    """Retries so far by the source and destination stores (one count if they are the same)."""
    stores = {id(s): s for s in (ctx.storage, ctx.destination.storage)}
    return sum(s.retries for s in stores.values())


def _execute(
    job: Job, stages: Sequence[Stage], *, ctx: StageContext, options: RunOptions, previous: Previous
) -> Result:
    retries_before = storage_retries(ctx)
    with job_workdir(ctx.config) as workdir:
        try:
            job = run_job(job, stages, ctx=replace(ctx, workdir=workdir))
        finally:
            for stage in stages:  # whatever a stage left unpublished is thrown away here
                if isinstance(stage, Closing):
                    stage.close()
    job = replace(job, retries=storage_retries(ctx) - retries_before)
    report = build_report(job, tool=ctx.tool)
    key = None
    if options.publish and job.status != "pending":
        remove_stale_outputs(report, previous=previous(), ctx=ctx)
        key = write_report(report, recording=job.recording, destination=ctx.destination)
    return Result(job=job, report=report, report_key=key)


def remove_stale_outputs(
    report: Mapping[str, Any], *, previous: Mapping[str, Any] | None, ctx: StageContext
) -> None:
    """Delete recpipe's own outputs that the previous report lists and the new one does not (written
    with other options), so that no output is left that no report describes. Only objects carrying
    recpipe's label are deleted, each only while it is the one the previous report saw (same tag)."""
    if previous is None:
        return
    kept = {o["key"] for o in report["outputs"]}
    storage = ctx.destination.writable()
    for key in stale_keys(previous, kept=kept, directory=ctx.destination.directory):
        try:
            info = storage.stat(key)
            if not is_own(storage, key):
                log.warning("%s is listed by recpipe's earlier report but is not recpipe's: left alone", key)
                continue
            storage.delete_if(key, etag=info.etag)
        except (ObjectNotFound, PreconditionFailed):
            continue
        ctx.logger.info(
            "removed %s: recpipe wrote it with other options, and the new report does not list it", key
        )


def stale_keys(previous: Mapping[str, Any], *, kept: AbstractSet[str], directory: str) -> tuple[str, ...]:
    """The output keys of an earlier report that the new one does not keep, inside ``directory``."""
    outputs = previous.get("outputs")
    keys = [o.get("key") for o in outputs if isinstance(o, dict)] if isinstance(outputs, list) else []
    return tuple(
        k
        for k in keys
        if isinstance(k, str) and k not in kept and k.startswith(directory) and "/" not in k[len(directory) :]
    )
