"""The one interface every stage implements, and what the runner hands it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pipeline.model.config import PipelineConfig
from pipeline.model.job import Job
from pipeline.model.progress import NullProgress, Progress
from pipeline.storage.base import Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class Destination:
    """Where outputs go: a storage and the key prefix that mirrors the recording's directory."""

    storage: Storage
    directory: str
    """Key prefix for this recording's outputs ("" or ending with "/")."""


@dataclass(frozen=True, kw_only=True, slots=True)
class StageContext:
    """Everything a stage may use; nothing else is reached for."""

    storage: Storage
    """Where the recording is read from."""
    destination: Destination
    workdir: Path
    """A private temporary directory for this job, removed by the runner afterwards."""
    config: PipelineConfig
    ffmpeg: str = "ffmpeg"
    tool: Mapping[str, str] = field(default_factory=dict)
    """Versions for the report: {"recpipe": ..., "ffmpeg": ...}."""
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("recpipe"))
    progress: Progress = field(default_factory=NullProgress)


class Stage(Protocol):
    """One step of the pipeline: takes a job, returns a new one."""

    name: str

    def run(self, job: Job, ctx: StageContext) -> Job:
        """Do the stage's work and return the updated job (never mutate ``job``)."""
        ...
