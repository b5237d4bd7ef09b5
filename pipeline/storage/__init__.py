"""Object stores recpipe reads recordings from and writes outputs to: a local directory or an S3 bucket."""

from pipeline.storage.base import ObjectInfo, Storage
from pipeline.storage.local import LocalStorage
from pipeline.storage.s3 import S3Storage

__all__ = ["LocalStorage", "ObjectInfo", "S3Storage", "Storage"]
