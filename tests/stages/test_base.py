"""What the runner hands every stage: where outputs go, and how they are made durable there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.model.exceptions import StorageError
from pipeline.storage.local import LocalStorage
from pipeline.storage.s3 import S3Storage
from stages.base import Destination
from tests.builders import leftovers_refused
from tests.conftest import S3Bucket


def test_a_local_directory_on_the_work_directorys_file_system_links_finished_files(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "out").mkdir()
    destination = Destination(storage=LocalStorage(tmp_path / "out"), directory="rec/")
    assert destination.is_local
    assert destination.links_from(tmp_path / "work")


def test_a_local_directory_on_another_file_system_copies_them(tmp_path: Path) -> None:
    """A RAM disk (/dev/shm) is another file system than the test's directory, where there is one."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev or not os.access(shm, os.W_OK):
        pytest.skip("no second file system here (/dev/shm) to publish across")
    destination = Destination(storage=LocalStorage(tmp_path), directory="rec/")
    assert destination.is_local
    assert not destination.links_from(shm)


def test_a_work_directory_that_is_gone_is_not_linked_from(tmp_path: Path) -> None:
    destination = Destination(storage=LocalStorage(tmp_path), directory="rec/")
    assert not destination.links_from(tmp_path / "gone")


def test_an_object_store_uploads_them(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    destination = Destination(storage=S3Storage(s3_bucket.client, s3_bucket.name), directory="rec/")
    assert not destination.is_local
    assert not destination.links_from(tmp_path)


def test_outputs_are_written_once_the_destination_is_cleared(tmp_path: Path) -> None:
    seen: list[str] = []
    store = LocalStorage(tmp_path)
    destination = Destination(storage=store, directory="rec/", cleared=lambda: seen.append("x"))
    assert destination.writable() is destination.storage
    assert seen == ["x"]


def test_a_destination_that_may_not_be_written_says_why(tmp_path: Path) -> None:
    destination = Destination(storage=LocalStorage(tmp_path), directory="rec/", cleared=leftovers_refused)
    with pytest.raises(StorageError, match="AccessDenied"):
        destination.writable()
    assert destination == Destination(storage=destination.storage, directory="rec/")  # not part of equality
