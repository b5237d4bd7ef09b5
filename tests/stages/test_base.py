"""What the runner hands every stage: where outputs go, and how they are made durable there."""

from __future__ import annotations

from pathlib import Path

from pipeline.storage.local import LocalStorage
from pipeline.storage.s3 import S3Storage
from stages.base import Destination
from tests.conftest import S3Bucket


def test_a_local_directory_links_finished_files_into_place(tmp_path: Path) -> None:
    assert Destination(storage=LocalStorage(tmp_path), directory="rec/").links_files


def test_an_object_store_uploads_them(s3_bucket: S3Bucket) -> None:
    storage = S3Storage(s3_bucket.client, s3_bucket.name)
    assert not Destination(storage=storage, directory="rec/").links_files
