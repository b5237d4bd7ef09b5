"""Object stores recpipe reads recordings from and writes outputs to: a local directory, an S3 bucket,
or an Azure Blob Storage container (``pipeline.storage.azure``).

``S3Storage`` is imported on first use: botocore takes a tenth of a second to import, and a run on local
files never needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.storage.base import ObjectInfo, Storage, Upload
from pipeline.storage.local import LocalStorage

if TYPE_CHECKING:
    from pipeline.storage.s3 import S3Storage

__all__ = ["LocalStorage", "ObjectInfo", "S3Storage", "Storage", "Upload"]


def __getattr__(name: str) -> Any:
    if name == "S3Storage":
        from pipeline.storage.s3 import S3Storage

        return S3Storage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
