"""The Storage protocol: the few operations recpipe needs from an object store.

Keys are always '/'-separated strings relative to the store's root (a directory or a bucket),
never starting with '/'. Implementations map every "not there" shape to ``ObjectNotFound`` and
every other failure to ``StorageError``; nothing else escapes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from pipeline.model.exceptions import ObjectNotFound, StorageError
from pipeline.model.objects import Metadata, ObjectInfo, Upload


class Storage(Protocol):
    """An object store rooted at a directory or a bucket."""

    @property
    def url(self) -> str:
        """Human-readable root of the store (``/abs/dir`` or ``s3://bucket``), for messages and reports."""
        ...

    @property
    def retries(self) -> int:
        """Requests this store needed to send again so far (for the report)."""
        ...

    def prepare_reads(self, count: int, *, prefix: str) -> None:
        """A hint that about ``count`` reads under ``prefix`` will run at once soon: a store reached over
        the network opens connections for them in the background. Nothing waits for it, and nothing
        fails here: what goes wrong shows in the reads."""
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order, recursively."""
        ...

    def stat(self, key: str) -> ObjectInfo:
        """The object's info; ``ObjectNotFound`` if absent."""
        ...

    def exists(self, key: str) -> bool:
        """Whether the key exists."""
        ...

    def read_bytes(self, key: str, *, max_bytes: int) -> bytes:
        """The whole object; ``StorageError`` if it is larger than ``max_bytes``."""
        ...

    def read_range(self, key: str, *, offset: int, count: int) -> bytes:
        """Bytes ``[offset, offset + count)`` of the object (fewer at its end); ``offset`` must be inside
        the object (a store answers an offset past its end with an error)."""
        ...

    def read_metadata(self, key: str) -> Metadata:
        """The labels written with the object (empty when it has none, or the store keeps none)."""
        ...

    def get(self, key: str, dest: Path) -> ObjectInfo:
        """Download the object to ``dest`` (written to a temporary name, then renamed)."""
        ...

    def put(self, src: Path, key: str, *, metadata: Metadata | None = None) -> ObjectInfo:
        """Upload ``src`` to ``key`` with ``metadata``; the object becomes visible only when complete."""
        ...

    def put_bytes(self, data: bytes, key: str, *, metadata: Metadata | None = None) -> ObjectInfo:
        """Store ``data`` at ``key`` with ``metadata``; the object becomes visible only when complete."""
        ...

    def put_if(self, data: bytes, key: str, *, etag: str | None) -> ObjectInfo:
        """Store ``data`` at ``key`` only if the object is absent (``etag`` None: S3's
        ``If-None-Match: *``) or still has ``etag`` (``If-Match``); else ``PreconditionFailed``.
        For recpipe's own small objects (leases), never for outputs or sources."""
        ...

    def delete_if(self, key: str, *, etag: str) -> None:
        """Delete recpipe's own object at ``key`` only if it still has ``etag``; else
        ``PreconditionFailed`` (``ObjectNotFound`` if it is gone). Never used on a recording's files."""
        ...

    def discard_incomplete(self, prefix: str) -> int:
        """Throw away unfinished writes to keys starting with ``prefix`` (S3 multipart uploads, local
        temporary files) left by a recpipe that was killed; returns how many. Only for a holder of
        the lease of those keys: it aborts whatever is in progress there."""
        ...

    def begin_upload(self, key: str, *, metadata: Metadata | None = None) -> Upload | None:
        """Start a part-by-part upload to ``key`` (carrying ``metadata``), or None when the store gains
        nothing from one (a local directory publishes a finished file faster by linking it)."""
        ...


def exists_by_stat(stat: Callable[[str], ObjectInfo], key: str) -> bool:
    """Whether ``stat(key)`` finds an object (every backend's ``exists``)."""
    try:
        stat(key)
    except ObjectNotFound:
        return False
    return True


def posix_seconds(when: datetime | None) -> float | None:
    """A store's last-modified time in POSIX seconds (one without a zone is UTC); None stays None."""
    if when is None:
        return None
    return (when if when.tzinfo is not None else when.replace(tzinfo=UTC)).timestamp()


def same_size(info: ObjectInfo, *, sent: int) -> ObjectInfo:
    """``info`` of an object just written, if it holds the ``sent`` bytes; else ``StorageError``."""
    if info.size != sent:
        raise StorageError(f"uploaded {sent} bytes but the store holds {info.size}", key=info.key)
    return info


__all__ = ["Metadata", "ObjectInfo", "Storage", "Upload", "exists_by_stat", "posix_seconds", "same_size"]
