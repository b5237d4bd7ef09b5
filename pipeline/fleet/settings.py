"""A fleet's settings, built one way whichever way recpipe runs: ``recpipe worker``, ``recpipe serve``
and ``recpipe batch``/``enqueue`` from their flags, the Lambda handler from ``RECPIPE_*`` variables —
all through ``job_defaults`` (what a job does where its trigger says nothing) and ``worker_settings``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from pipeline.fleet.triggers import JobOptions
from pipeline.fleet.worker import WorkerSettings
from pipeline.model.job import POLICIES, Policy
from pipeline.run.app import read_profile_document, without_secrets


def job_defaults(
    *,
    profile: Path | None = None,
    dest: str | None = None,
    policy: Policy | None = None,
    av_file_type: str | None = None,
    force: bool = False,
    embed_profile: bool = False,
) -> JobOptions:
    """dest, policy, avFileType, force and the profile every job gets (a message may bring its own).

    :param embed_profile: the options travel in a queue message: the profile goes without its storage
        credentials (the worker that runs the job has its own).
    """
    document = read_profile_document(profile)
    return JobOptions(
        dest=dest,
        policy=policy,
        av_file_type=av_file_type,
        force=force,
        profile=without_secrets(document) if embed_profile and document else document,
    )


def worker_settings(
    *,
    defaults: JobOptions,
    endpoint_url: str | None = None,
    buckets: Iterable[str] = (),
    recordings: str | None = None,
    **tuning: float | int | None,
) -> WorkerSettings:
    """The worker's settings; ``tuning`` is any of ``WorkerSettings``' timing and concurrency fields
    (their defaults otherwise)."""
    return WorkerSettings(
        defaults=defaults,
        endpoint_url=endpoint_url,
        buckets=frozenset(b for b in buckets if b),
        recordings=recordings,
        **tuning,  # type: ignore[arg-type]
    )


def settings_from_environ(environ: Mapping[str, str]) -> WorkerSettings:
    """The Lambda handler's settings: ``RECPIPE_BUCKETS`` (comma-separated), ``RECPIPE_RECORDINGS``,
    ``RECPIPE_DEST``, ``RECPIPE_POLICY``, ``RECPIPE_AV_FILE_TYPE``, ``RECPIPE_PROFILE`` (a file) and
    ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``."""
    profile = environ.get("RECPIPE_PROFILE")
    policy = environ.get("RECPIPE_POLICY")
    defaults = job_defaults(
        profile=Path(profile) if profile else None,
        dest=environ.get("RECPIPE_DEST") or None,
        policy=policy if policy in POLICIES else None,
        av_file_type=environ.get("RECPIPE_AV_FILE_TYPE") or None,
    )
    return worker_settings(
        defaults=defaults,
        endpoint_url=environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL") or None,
        buckets=environ.get("RECPIPE_BUCKETS", "").split(","),
        recordings=environ.get("RECPIPE_RECORDINGS") or None,
    )
