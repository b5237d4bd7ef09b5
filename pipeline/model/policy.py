"""Status from findings: the table in SPEC.md, as one pure function."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from pipeline.model.exceptions import PipelineError
from pipeline.model.job import Finding, Policy, StageError, Status

log = logging.getLogger(__name__)

REJECTING_CODES = frozenset({"PLAYLIST_INVALID", "UNSAFE_URI"})
"""Unsafe or unparseable input: nothing is fetched or published."""

PENDING_CODES = frozenset({"NO_ENDLIST", "LEASE_HELD", "BACKUP_PENDING"})
"""The recorder has not finished, another recpipe is processing the recording, or listed slices are
still on their way from Agora's backup cloud: come back later."""

FAILING_CODES = frozenset({"NO_MEDIA"})
"""Nothing usable at all: failed under any policy (there is no best effort to publish)."""

PUBLISHABLE: frozenset[Status] = frozenset({"ok", "degraded"})


def decide_status(findings: Iterable[Finding], *, policy: Policy, error: StageError | None = None) -> Status:
    """The recording's status: rejected > pending > failed stage > error findings > ok."""
    findings = tuple(findings)
    codes = {f.code for f in findings}
    if codes & REJECTING_CODES:
        return "rejected"
    if codes & PENDING_CODES:
        return "pending"
    if error is not None or codes & FAILING_CODES:
        return "failed"
    if any(f.severity == "error" for f in findings):
        return "degraded" if policy == "lenient" else "failed"
    return "ok"


STATUS_ORDER: tuple[Status, ...] = ("rejected", "failed", "pending", "degraded", "ok")
"""Which status wins when several are summed up (a recording's users, a batch's recordings): unsafe
input, then failure, then what is not finished yet, then problems published around, then ok."""


def worst_status(statuses: Iterable[Status | None]) -> Status:
    """The one status that stands for several (``STATUS_ORDER``); a missing one (a job that produced no
    report) counts as failed, and none at all is ok."""
    present = {"failed" if s is None else s for s in statuses}
    return next((s for s in STATUS_ORDER if s in present), "ok")


def is_terminal(status: Status) -> bool:
    """Whether later stages must not run (nothing will be published)."""
    return status not in PUBLISHABLE


STATUS_EXIT: dict[Status, int] = {"ok": 0, "degraded": 3, "failed": 1, "pending": 75, "rejected": 4}
"""The exit code of a finished run, by status (SPEC.md)."""
USAGE_EXIT = 2


def exit_code_for(err: PipelineError) -> int:
    """The exit code the error's class states (2 for usage-like errors, else 1)."""
    return err.exit_code
