"""recpipe: verified, published MP4s from Agora Cloud Recording HLS output.

The library surface used by the CLI, the triggers and anyone embedding recpipe::

    from pipeline import Request, run
    result = run(Request(location="s3://bucket/recordings", sid="..."))
    print(result.job.status, result.report_key)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pipeline.config import PipelineConfig, load_config
from pipeline.exceptions import (
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
from pipeline.job import Expectations, Finding, Job, Output, Recording, Segment

if TYPE_CHECKING:
    from pipeline.app import Request, list_recordings, run
    from pipeline.runner import Result, run_job

# These import the stages, and the stages import pipeline's model: load them on first use so that
# ``import stages.fetch`` and ``import pipeline`` work in either order.
_LAZY = {
    "Request": "pipeline.app",
    "Result": "pipeline.runner",
    "list_recordings": "pipeline.app",
    "run": "pipeline.app",
    "run_job": "pipeline.runner",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")


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
    "Request",
    "Result",
    "Segment",
    "StorageError",
    "ToolError",
    "list_recordings",
    "load_config",
    "run",
    "run_job",
]
