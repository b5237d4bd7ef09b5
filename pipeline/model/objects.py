"""The objects a store holds, as records: what a listing returns, their labels, and an upload in parts.
Plain types (the ``Storage`` protocol that produces them is in ``pipeline.storage.base``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

Metadata = Mapping[str, str]
"""Small ``name: value`` labels stored with an object (S3 user metadata, local extended attributes);
names are lower-case ASCII. recpipe marks its outputs with them."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One stored object: its key, size in bytes and an opaque version tag (S3 ETag, local mtime);
    two are the same object when these three are."""

    key: str
    size: int
    etag: str
    modified: float | None = field(default=None, compare=False)
    """When it was last written, in POSIX seconds by the store's clock, where a listing or a stat
    says (None where the store did not say: what recpipe has just written itself)."""


class Upload(Protocol):
    """An object being uploaded in numbered parts (any order); it appears only when completed."""

    @property
    def key(self) -> str:
        """Where the object will appear."""
        ...

    def put_part(self, number: int, data: bytes) -> None:
        """Send part ``number`` (1-based, in any order). Returns at once; errors show in ``complete``."""
        ...

    def in_flight(self) -> int:
        """Parts handed over but not yet sent."""
        ...

    def complete(self) -> ObjectInfo:
        """Wait for every part and make the object visible."""
        ...

    def abort(self) -> None:
        """Throw the parts away (nothing appears); harmless after ``complete`` or a second time."""
        ...
