"""recpipe: verified, published MP4s from Agora Cloud Recording HLS output.

The package is layered, each layer importing only those below it (checked by ``import-linter``, see
``pyproject.toml``): ``pipeline.model`` (records, names, settings, errors) → ``pipeline.agora`` (the start
request, storage vendors) → ``pipeline.storage`` → ``stages`` → ``pipeline.run`` (the runner and the
library entry points: ``from pipeline.run import Request, run``) → ``pipeline.fleet`` → ``pipeline.cli``;
``pipeline.samples`` stands beside them. Here: the model's names, for anyone embedding recpipe.
"""

from __future__ import annotations

from pipeline.model.config import PipelineConfig, load_config
from pipeline.model.exceptions import (
    AmbiguousRecording,
    ConfigError,
    ContinuityError,
    DiscoveryError,
    MediaError,
    MessageError,
    NamingError,
    NoSpace,
    ObjectNotFound,
    ObjectTooLarge,
    PipelineError,
    PlaylistError,
    PreconditionFailed,
    PublishError,
    QueueError,
    RecordingNotFound,
    RemuxError,
    StorageError,
    ToolError,
)
from pipeline.model.job import Expectations, Finding, Job, Output, Recording, Segment

__all__ = [
    "AmbiguousRecording",
    "ConfigError",
    "ContinuityError",
    "DiscoveryError",
    "Expectations",
    "Finding",
    "Job",
    "MediaError",
    "MessageError",
    "NamingError",
    "NoSpace",
    "ObjectNotFound",
    "ObjectTooLarge",
    "Output",
    "PipelineConfig",
    "PipelineError",
    "PlaylistError",
    "PreconditionFailed",
    "PublishError",
    "QueueError",
    "Recording",
    "RecordingNotFound",
    "RemuxError",
    "Segment",
    "StorageError",
    "ToolError",
    "load_config",
]
