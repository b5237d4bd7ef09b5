"""recpipe's error tree. Every error recpipe raises on purpose is one of these.

    PipelineError
    ├── ConfigError             bad flags, profile, location or settings        (exit 2)
    ├── DiscoveryError          no recording, or more than one, at a location
    │   ├── RecordingNotFound                                                   (exit 1)
    │   └── AmbiguousRecording  several recordings match; narrow with --sid     (exit 2)
    ├── StorageError            the store failed after retries                  (exit 1)
    │   ├── ObjectNotFound      the key (or bucket) does not exist
    │   ├── ObjectTooLarge      the object is over the size recpipe reads
    │   ├── PreconditionFailed  a conditional write or delete lost (the object changed)
    │   └── BrokenConnection    the connection dropped outside botocore's own retries
    ├── QueueError              the message queue failed after retries          (exit 1)
    ├── MessageError            a queue message or event cannot be understood   (dead-letter)
    ├── NamingError             a file name does not follow Agora's convention
    ├── PlaylistError           the playlist cannot be read as HLS              (status rejected)
    ├── MediaError              a TS or MP4 file cannot be read
    ├── ContinuityError         the recording has error findings               (status failed)
    ├── ToolError               ffmpeg cannot be found, started or run
    │   └── RemuxError          ffmpeg ran and exited with an error (stderr's tail)  (status failed)
    ├── NoSpace                 the work directory lacks the room to write the MP4  (status failed)
    ├── PublishError            an output could not be committed                (status failed)
    └── LeaseLost               another recpipe took the recording over meanwhile  (status pending)

Each class says what it means as class attributes, which every caller reads (nothing compares class
names): ``exit_code`` (the CLI's), ``retryable`` (whether another try later may succeed: the worker
returns the message, else it is done with it) and ``finding`` (the finding code it becomes in a
report, where it has one).

Third-party errors are translated in exactly one place each: botocore in
``pipeline/storage/s3.py`` (S3) and ``pipeline/fleet/sqs.py`` (SQS), ffmpeg in ``stages/ffmpeg.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar


class PipelineError(Exception):
    """Root of every error recpipe raises on purpose."""

    exit_code: ClassVar[int] = 1
    """The CLI's exit code when this error ends a command."""
    retryable: ClassVar[bool] = False
    """Whether another try later may succeed (the store, the queue, ffmpeg or the machine had a bad
    moment): a worker returns the message; otherwise it is done with it."""
    finding: ClassVar[str | None] = None
    """The finding code this error becomes in a report, when it has one."""


class ConfigError(PipelineError):
    """Bad command-line flags, profile, location or settings."""

    exit_code = 2


class DiscoveryError(PipelineError):
    """The location does not hold exactly the recording that was asked for."""


class RecordingNotFound(DiscoveryError):
    """No recording matches at the location."""


class AmbiguousRecording(DiscoveryError):
    """Several recordings match; the caller must choose one."""

    exit_code = 2

    def __init__(self, message: str, *, candidates: Sequence[str]) -> None:
        super().__init__(message)
        self.candidates = tuple(candidates)

    SHOWN = 10

    def __str__(self) -> str:
        lines = [f"  {c}" for c in self.candidates[: self.SHOWN]]
        if len(self.candidates) > self.SHOWN:
            lines.append(f"  ... and {len(self.candidates) - self.SHOWN} more (recpipe ls shows them all)")
        return "\n".join([self.args[0], *lines])


class StorageError(PipelineError):
    """The object store failed, after any retries."""

    retryable = True

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key

    def __str__(self) -> str:
        return f"{self.args[0]} (key: {self.key})" if self.key is not None else str(self.args[0])


class ObjectNotFound(StorageError):
    """The key, or the bucket holding it, does not exist."""


class ObjectTooLarge(StorageError):
    """The object is larger than the limit recpipe reads it up to (nothing of it was kept)."""

    retryable = False


class PreconditionFailed(StorageError):
    """A conditional write or delete found the object not as expected (it exists, or it changed)."""


class BrokenConnection(StorageError):
    """The connection dropped while botocore read a response outside its own retries (an error
    response's body): a ``StorageError`` for callers, worth another try for reads."""


class QueueError(PipelineError):
    """The message queue failed, after any retries."""

    retryable = True


class MessageError(PipelineError):
    """A queue message or storage event is not one recpipe understands (it goes to the dead-letter queue)."""


class NamingError(PipelineError):
    """A file name does not follow Agora's naming convention."""


class PlaylistError(PipelineError):
    """The playlist cannot be read as an HLS media playlist."""

    finding = "PLAYLIST_INVALID"


class MediaError(PipelineError):
    """A media file (MPEG-TS slice or MP4 output) cannot be read."""


class ContinuityError(PipelineError):
    """The recording has error findings and the policy does not allow them."""

    def __init__(self, message: str, *, codes: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.codes = tuple(codes)

    def __str__(self) -> str:
        return f"{self.args[0]} ({', '.join(self.codes)})" if self.codes else str(self.args[0])


class ToolError(PipelineError):
    """An external tool recpipe needs (ffmpeg) is missing, cannot be started, or fails."""

    retryable = True


class RemuxError(ToolError):
    """ffmpeg ran and exited with an error: the command line, its exit code and the tail of its stderr."""

    retryable = True

    def __init__(
        self, message: str, *, argv: Sequence[str], returncode: int | None, stderr_tail: str
    ) -> None:
        super().__init__(message)
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr_tail = stderr_tail

    def __str__(self) -> str:
        tail = f"\n{self.stderr_tail}" if self.stderr_tail else ""
        return f"{self.args[0]} (ffmpeg exit code {self.returncode}){tail}"


class NoSpace(PipelineError):
    """The work directory does not have the free space the MP4 needs."""

    retryable = True


class PublishError(PipelineError):
    """An output could not be committed to the destination."""

    retryable = True


class LeaseLost(PipelineError):
    """Another recpipe took over the recording's lease while this run worked (this one stalled past
    the lease's end): the run stops before committing anything more and writes no report; the new
    holder finishes the recording."""

    retryable = True
