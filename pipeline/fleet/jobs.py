"""Running one recording's job for the worker, ``batch`` and Lambda, and deciding what its message
becomes. The decision (``decide``) is a pure function of the outcome; running is at the edges.

The worker and ``batch`` run each job as its own ``recpipe process --json`` process
(``run_subprocess``): a crash, a leak or a stuck ffmpeg ends with it, several jobs use several
cores, and SIGTERM reaches a job as a clean stop (its upload aborted, its lease released). Lambda
runs one job at a time in its own process (``run_in_process``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.fleet.triggers import JobOptions
from pipeline.model.exceptions import PipelineError
from pipeline.model.job import Status
from pipeline.model.policy import STATUS_EXIT, USAGE_EXIT, exit_code_for

log = logging.getLogger(__name__)

RETRY_BASE_S = 15.0
RETRY_MAX_S = 900.0
STOP_WAIT_S = 10.0
"""How long a job has to stop cleanly after SIGTERM before it is killed."""
STDERR_TAIL = 2000
HEAD_START_VAR = "RECPIPE_FETCH_HEAD_START"


@dataclass(frozen=True, kw_only=True, slots=True)
class JobSpec:
    """One ``recpipe process`` to run."""

    location: str
    sid: str | None = None
    endpoint_url: str | None = None
    options: JobOptions = field(default_factory=JobOptions)
    head_start: bool = True
    """Whether the job may read slices before its playlist names them (``fetch_head_start``): not the
    jobs of the fleet's workers, which come back to a recording until it is finished, and would read
    its first slices each time for nothing."""

    def environ(self, base: Mapping[str, str]) -> dict[str, str]:
        """The job's environment: ``base``, without a head start where the job may have none and
        ``base`` does not ask for one itself."""
        env = dict(base)
        if not self.head_start:
            env.setdefault(HEAD_START_VAR, "0")
        return env

    def argv(self, *, profile: Path | None) -> list[str]:
        """``recpipe process`` arguments (after the program), as the CLI takes them."""
        out = ["process", self.location, "--json", "--quiet"]
        pairs = {
            "--sid": self.sid,
            "--endpoint-url": self.endpoint_url,
            "--dest": self.options.dest,
            "--policy": self.options.policy,
            "--av-file-type": self.options.av_file_type,
            "--profile": str(profile) if profile else None,
            "--backuped-at": None if self.options.backuped_at is None else repr(self.options.backuped_at),
        }
        for flag, value in pairs.items():
            if value is not None:
                out += [flag, value]
        return out + (["--force"] if self.options.force else [])


@dataclass(frozen=True, kw_only=True, slots=True)
class Outcome:
    """How a job ended: its exit code, and its report or error when it printed one."""

    exit_code: int
    report: Mapping[str, Any] | None = None
    error_type: str | None = None
    error: str = ""
    retryable: bool | None = None
    """Whether the error (reported, or printed without a report) is worth another try; None when the
    job printed nothing recpipe could read (it crashed)."""

    @property
    def worth_retrying(self) -> bool:
        """What the error's class said (a report without an error: nothing to retry); a job that
        crashed without a word is tried again."""
        if self.report is not None:
            error = self.report.get("error")
            return isinstance(error, dict) and bool(error.get("retryable", False))
        return self.retryable is not False

    @property
    def status(self) -> Status | None:
        """The report's status, if there is a report."""
        return self.report.get("status") if self.report else None

    @property
    def codes(self) -> frozenset[str]:
        """The report's finding codes."""
        return frozenset(f.get("code", "") for f in (self.report or {}).get("findings", []))

    def describe(self) -> str:
        """One line for logs."""
        if self.status is not None:
            error = (self.report or {}).get("error")
            return f"{self.status}" + (f" ({error['type']}: {error['message']})" if error else "")
        return f"exit {self.exit_code}" + (f" ({self.error_type}: {self.error})" if self.error_type else "")


def outcome_from_output(exit_code: int, stdout: str, stderr: str = "") -> Outcome:
    """Read ``recpipe process --json``'s output: a report, an ``{"error": ...}`` document, or nothing."""
    try:
        doc = json.loads(stdout) if stdout.strip() else None
    except ValueError:
        doc = None
    if isinstance(doc, dict) and "status" in doc:
        return Outcome(exit_code=exit_code, report=doc)
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        return Outcome(
            exit_code=exit_code,
            error_type=str(doc["error"].get("type")),
            error=str(doc["error"].get("message")),
            retryable=bool(doc["error"].get("retryable", False)),
        )
    return Outcome(exit_code=exit_code, error=stderr[-STDERR_TAIL:].strip())


@contextlib.contextmanager
def profile_file(profile: Mapping[str, Any] | None) -> Iterator[Path | None]:
    """The job's profile as a temporary file for ``--profile`` (removed afterwards)."""
    if profile is None:
        yield None
        return
    fd, name = tempfile.mkstemp(prefix="recpipe-profile-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(profile, f)
        yield Path(name)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)


def run_subprocess(spec: JobSpec, *, cancel: threading.Event | None = None) -> Outcome:
    """Run the job as ``python -m pipeline process ... --json``; stop it cleanly if ``cancel`` is set."""
    with profile_file(spec.options.profile) as profile:
        argv = [sys.executable, "-m", "pipeline", *spec.argv(profile=profile)]
        log.debug("job: %s", " ".join(argv[2:]))
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=spec.environ(os.environ)
            )
            try:
                while True:
                    try:
                        proc.wait(timeout=0.05)
                        break
                    except subprocess.TimeoutExpired:
                        if cancel is not None and cancel.is_set():
                            stop(proc)
                            break
            except BaseException:
                stop(proc)
                raise
            out.seek(0)
            err.seek(0)
            return outcome_from_output(
                proc.returncode, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")
            )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the job aborts its upload and releases its lease), then SIGKILL if it lingers."""
    proc.terminate()
    try:
        proc.wait(timeout=STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_in_process(spec: JobSpec, *, environ: Mapping[str, str]) -> Outcome:
    """Run the job in this process (Lambda): the same path as ``recpipe process``."""
    from pipeline.model.config import load_config
    from pipeline.run.app import Request, run

    environ = spec.environ(environ)
    with profile_file(spec.options.profile) as profile:
        request = Request(
            location=spec.location,
            endpoint_url=spec.endpoint_url,
            sid=spec.sid,
            dest=spec.options.dest,
            policy=spec.options.policy,
            av_file_type=spec.options.av_file_type,
            force=spec.options.force,
            profile=profile,
            backuped_at=spec.options.backuped_at,
        )
        try:
            result = run(request, config=load_config(environ=environ), environ=environ)
        except PipelineError as err:
            return Outcome(
                exit_code=exit_code_for(err),
                error_type=type(err).__name__,
                error=str(err),
                retryable=err.retryable,
            )
    status = result.job.status or "failed"
    return Outcome(exit_code=STATUS_EXIT[status], report=result.report)


# --- what the message becomes ------------------------------------------------------------------

Verdict = Literal["delete", "later", "retry", "dead-letter"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Action:
    """What to do with the message: delete it, return it after ``seconds`` (``later`` for a recording
    not ready yet, ``retry`` after an error), or move it to the dead-letter queue."""

    verdict: Verdict
    seconds: float = 0.0
    reason: str = ""


def retry_delay(receive_count: int, *, base_s: float = RETRY_BASE_S) -> float:
    """Back off: ``base_s`` (15 s), doubled on every receive, at most 15 minutes."""
    return float(min(base_s * 2 ** max(receive_count - 1, 0), RETRY_MAX_S))


def decide(
    outcome: Outcome,
    *,
    receive_count: int,
    age_s: float,
    pending_delay_s: float,
    max_pending_age_s: float,
    superseded: bool,
    retry_base_s: float = RETRY_BASE_S,
) -> Action:
    """What a job's outcome means for the message that asked for it (the worker's whole policy)."""
    status = outcome.status
    if status in ("ok", "degraded"):
        return Action(verdict="delete", reason=f"done ({status})")
    if status == "rejected":
        return Action(verdict="delete", reason="rejected: unsafe or unreadable input (see the report)")
    retry = Action(
        verdict="retry", seconds=retry_delay(receive_count, base_s=retry_base_s), reason=outcome.describe()
    )
    if status == "failed":  # the same decision as for the same error without a report, below
        return retry if outcome.worth_retrying else Action(verdict="delete", reason="failed (see the report)")
    if status == "pending":
        if "LEASE_HELD" in outcome.codes:
            return Action(verdict="later", seconds=pending_delay_s, reason="another recpipe is processing it")
        backup = "BACKUP_PENDING" in outcome.codes
        if superseded and not backup:
            return Action(verdict="delete", reason="the playlist changed since: a newer event follows")
        waiting_for = "slices from Agora's backup" if backup else "#EXT-X-ENDLIST"
        if age_s > max_pending_age_s:
            return Action(
                verdict="dead-letter",
                reason=f"still no {waiting_for} {age_s:.0f} s after the event; recpipe stopped waiting",
            )
        reason = (
            "slices still coming from Agora's backup" if backup else "still recording (no #EXT-X-ENDLIST)"
        )
        return Action(verdict="later", seconds=pending_delay_s, reason=reason)
    if outcome.worth_retrying:
        return retry
    if outcome.exit_code == USAGE_EXIT:  # the message asks for something that cannot be done as sent
        return Action(verdict="dead-letter", reason=f"cannot be processed as sent: {outcome.error}")
    return Action(verdict="delete", reason=f"nothing to do again ({outcome.error_type}: {outcome.error})")
