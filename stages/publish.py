"""Publish: commit the outputs to the destination, then the report — atomically, idempotently.

Outputs are committed first and the report last, so a report always describes outputs that exist.
A run whose inputs, policy and wanted outputs match an existing successful report does nothing.

On an object store, an MP4 is uploaded while ffmpeg is still writing it (``GrowingUpload``): the
media bytes go up part by part as ffmpeg finishes them, the first part (with ``moov`` at the front)
last, and the multipart upload is completed here — after verification — or aborted.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.model.exceptions import ObjectNotFound
from pipeline.model.job import Job, Recording
from pipeline.model.report import dump_report, load_report
from pipeline.storage.base import Storage
from stages.base import Destination, StageContext
from stages.outputs import OWNER_LABEL, owner_label

log = logging.getLogger(__name__)

MAX_REPORT_BYTES = 64 * 1024 * 1024
HASH_CHUNK = 1024 * 1024


def report_key(recording: Recording, *, directory: str) -> str:
    """Key of the recording's report in the destination directory."""
    return directory + recording.stem + ".report.json"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def is_up_to_date(report: Mapping[str, Any], *, job: Job) -> bool:
    """Whether ``report`` already covers this job: same inputs and policy, published, same outputs
    wanted, and the MP4s at the recorder's names are the ones it describes (recpipe's, or the
    recorder's it judged)."""
    has_mp4 = any(o.get("kind") == "mp4" for o in report.get("outputs", []))
    offers_mp4 = has_mp4 or report.get("mp4_source") == "recorder"
    return (
        report.get("inputs_digest") == job.inputs_digest
        and report.get("policy") == job.policy
        and report.get("status") in {"ok", "degraded"}
        and offers_mp4 == job.want_mp4
        and mp4s_described(report, job=job)
    )


def mp4s_described(report: Mapping[str, Any], *, job: Job) -> bool:
    """Whether every MP4 at the recorder's names beside the recording is one the report describes: one
    of its outputs, or one of the recorder's it judged (same size and tag). A recorder's MP4 that
    arrived or changed since makes the report out of date."""
    known = {o.get("key"): o.get("bytes") for o in report.get("outputs", []) if isinstance(o, dict)}
    judged = {
        (m.get("key"), m.get("bytes")) for m in report.get("recorder_outputs", []) if isinstance(m, dict)
    }
    return all(known.get(obj.key) == obj.size or (obj.key, obj.size) in judged for obj in job.recording.mp4s)


def outputs_intact(report: Mapping[str, Any], *, storage: Storage) -> bool:
    """Whether every output the report lists is still there with its size."""
    try:
        return all(storage.stat(o["key"]).size == o["bytes"] for o in report.get("outputs", []))
    except (ObjectNotFound, KeyError, TypeError):
        return False


def read_existing_report(storage: Storage, key: str) -> dict[str, Any] | None:
    """The report at ``key``, or None if there is none (or it is not a recpipe report)."""
    try:
        return load_report(storage.read_bytes(key, max_bytes=MAX_REPORT_BYTES))
    except ObjectNotFound:
        return None


def write_report(report: Mapping[str, Any], *, recording: Recording, destination: Destination) -> str:
    """Write the report beside the recording's outputs (after them); returns its key."""
    key = report_key(recording, directory=destination.directory)
    destination.writable().put_bytes(dump_report(report), key, metadata={OWNER_LABEL: recording.stem})
    return key


class PublishStage:
    """Upload every output recpipe produced to the destination under its final key."""

    name = "publish"

    def run(self, job: Job, ctx: StageContext) -> Job:
        """Replace each local output with its published record (key, size, sha256)."""
        published = []
        for out in job.outputs:
            if out.upload is not None:
                ctx.destination.writable()  # completing the upload commits the output
                info = out.upload.complete()
                ctx.logger.info("published %s (%d bytes)", info.key, info.size)
                published.append(replace(out, key=info.key, bytes=info.size, upload=None))
                continue
            if out.local is None:
                published.append(out)
                continue
            key = ctx.destination.directory + out.key
            sha256 = out.sha256 or sha256_file(out.local)
            info = ctx.destination.writable().put(out.local, key, metadata=owner_label(job))
            ctx.logger.info("published %s (%d bytes)", key, info.size)
            published.append(replace(out, key=key, bytes=info.size, sha256=sha256, local=None))
        return replace(job, outputs=tuple(published))
