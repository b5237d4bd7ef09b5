"""The one interface every stage implements, what the runner hands it, and what stages pass on to one
another: the fetched slice (``Fetched``) and the consumer that takes slices while they stream
(``SliceConsumer``: the remux feeder, the merge spool), and the work directory's room (``check_space``)."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pipeline.model.config import PipelineConfig
from pipeline.model.exceptions import NoSpace
from pipeline.model.job import Job, Segment
from pipeline.model.progress import NullProgress, Progress
from pipeline.storage.base import Storage
from pipeline.storage.local import LocalStorage

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class Destination:
    """Where outputs go: a storage and the key prefix that mirrors the recording's directory."""

    storage: Storage
    directory: str
    """Key prefix for this recording's outputs ("" or ending with "/")."""
    cleared: Callable[[], object] = field(default=lambda: None, compare=False, repr=False)
    """Returns once outputs may be written under ``directory``, raising if they may not: a publishing
    run throws away the unfinished uploads a killed run left there while its first slices download
    (``pipeline.run.runner.leased``), and writes nothing before that is done — nor once the
    recording's lease is no longer its own (``LeaseLost``)."""

    def writable(self) -> Storage:
        """The storage, once outputs may be written to it (``cleared``): every write of an output or a
        report, and every upload's completion, goes through here; reads and the lease's own writes use
        ``storage``."""
        self.cleared()
        return self.storage

    @property
    def is_local(self) -> bool:
        """Whether outputs go to a local directory: published whole, nothing uploaded part by part."""
        return isinstance(self.storage, LocalStorage)

    def links_from(self, workdir: Path) -> bool:
        """Whether a file finished in ``workdir`` is published by linking it into place (a local
        directory on the same file system): then it is made durable where it is written
        (``moov_first(sync=True)``), since it is not copied (and read) again."""
        if not isinstance(self.storage, LocalStorage):
            return False
        try:
            return workdir.stat().st_dev == self.storage.root.stat().st_dev
        except OSError:
            return False


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


SPACE_MARGIN = 64 * 1024 * 1024
"""Room for ffmpeg's fragment indexes and the file system's own needs."""


def space_needed(slice_bytes: int) -> int:
    """Work-directory bytes the MP4s need: ffmpeg's file plus the moov-first copy (about twice the
    slices, which an MP4 never exceeds); parts are finished one after another, so at most all of it."""
    return 2 * slice_bytes + SPACE_MARGIN if slice_bytes else SPACE_MARGIN


def check_space(directory: Path, *, need: int, reserve: int) -> None:
    """``NoSpace`` unless ``directory`` has ``need`` bytes free beyond ``reserve``."""
    free = shutil.disk_usage(directory).free
    if free - reserve < need:
        mb = 1024 * 1024
        raise NoSpace(
            f"the work directory {directory.parent} has {free // mb} MiB free"
            + (f" ({reserve // mb} MiB reserved)" if reserve else "")
            + f"; the MP4 needs about {need // mb} MiB (set RECPIPE_WORKDIR to a larger disk)"
        )


@dataclass(frozen=True, slots=True)
class Fetched:
    """One playlist entry after fetching: the segment (``size`` and ``media`` set when it was there)
    and its bytes (None when it is missing or was never fetched)."""

    segment: Segment
    data: bytes | None


class SliceConsumer(Protocol):
    """Takes the fetched slices in playlist order while they stream (the remux feeder)."""

    def start(self, job: Job, ctx: StageContext) -> None:
        """Called once the playlist is read, before the first slice is given (on a fetch thread, while
        the first slices download)."""
        ...

    def add(self, fetched: Fetched) -> None:
        """The next playlist entry, fetched or not."""
        ...

    def finish(self, *, ok: bool) -> None:
        """No more slices; ``ok`` is False when fetching failed (throw away what was started)."""
        ...
