"""An object uploaded part by part from a small thread pool, whatever the store: ``S3Upload`` (a
multipart upload) and ``AzureUpload`` (staged blocks and a block list) say only how one part is sent,
how the parts become the object, and how an unfinished upload is dropped."""

from __future__ import annotations

from abc import ABC, abstractmethod
from concurrent.futures import Future, ThreadPoolExecutor

from pipeline.model.exceptions import StorageError
from pipeline.model.objects import ObjectInfo
from pipeline.storage.base import same_size

UPLOAD_WORKERS = 4
"""Parts sent at once (each holds its part's bytes in memory until sent). With three, on a 40 ms link
at 25 MB/s a connection, the upload fell behind ffmpeg and left six parts for the end; with four, two."""


class PartUpload(ABC):
    """One object going up in numbered parts, in any order; it appears only when ``complete`` commits."""

    def __init__(self, *, key: str, workers: int = UPLOAD_WORKERS) -> None:
        self._key = key
        self._pool = ThreadPoolExecutor(workers, "recpipe-upload")
        self._parts: dict[int, Future[str]] = {}
        self._sizes: dict[int, int] = {}
        self._state = "open"
        """open → completed, or aborted."""

    @property
    def key(self) -> str:
        """Where the object will appear."""
        return self._key

    def put_part(self, number: int, data: bytes) -> None:
        """Send part ``number`` in the background (replacing any earlier part with that number)."""
        if self._state != "open":
            raise StorageError(f"the upload is already {self._state}", key=self._key)
        self._parts[number] = self._pool.submit(self._send, number, data)
        self._sizes[number] = len(data)

    def in_flight(self) -> int:
        """Parts not yet sent."""
        return sum(1 for f in self._parts.values() if not f.done())

    def complete(self) -> ObjectInfo:
        """Wait for the parts, commit them as the object, and check its size."""
        if self._state != "open":
            raise StorageError(f"the upload is already {self._state}", key=self._key)
        tags = {number: future.result() for number, future in sorted(self._parts.items())}
        self._pool.shutdown(wait=True)
        self._commit(tags)
        self._state = "completed"
        return same_size(self._stat(), sent=sum(self._sizes.values()))

    def abort(self) -> None:
        """Drop the upload; nothing appears at the key. Harmless after ``complete`` or a second time."""
        if self._state != "open":
            return
        self._state = "aborted"
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._drop()

    @abstractmethod
    def _send(self, number: int, data: bytes) -> str:
        """Send one part; what the store calls it when the parts are committed (an ETag, a block id)."""

    @abstractmethod
    def _commit(self, parts: dict[int, str]) -> None:
        """Make the parts, in number order, the object."""

    @abstractmethod
    def _drop(self) -> None:
        """Throw away what was sent (or leave it invisible)."""

    @abstractmethod
    def _stat(self) -> ObjectInfo:
        """The committed object's info."""
