"""Publishing while ffmpeg writes: GrowingUpload against a real multipart upload on the moto server."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from pipeline.exceptions import MediaError
from pipeline.storage import S3Storage
from stages.media.faststart import Layout
from stages.publish import GrowingUpload

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("aws_environment")]

MiB = 1024 * 1024


def parts_on_server(s3_bucket, key: str) -> list[tuple[int, int]]:
    [upload] = [u for u in s3_bucket.client.list_multipart_uploads(Bucket=s3_bucket.name).get("Uploads", [])
                if u["Key"] == key]  # fmt: skip
    listing = s3_bucket.client.list_parts(Bucket=s3_bucket.name, Key=key, UploadId=upload["UploadId"])
    return [(p["PartNumber"], p["Size"]) for p in listing.get("Parts", [])]


def wait_for(condition, *, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_settled_parts_go_up_while_the_file_grows_and_part_one_last(s3_bucket, tmp_path: Path):
    store = S3Storage(s3_bucket.client, s3_bucket.name)
    growing_file = tmp_path / "out.mp4.part"
    chunks = [bytes([i]) * MiB for i in range(23)]  # 23 MiB of "media", written 1 MiB at a time
    growing = GrowingUpload(
        store.begin_upload("out/a.mp4"), growing_file, part_bytes=5 * MiB, settle_bytes=2 * MiB
    )
    growing.start()
    with growing_file.open("wb") as f:
        for i, chunk in enumerate(chunks, start=1):
            f.write(chunk)
            f.flush()
            if i == 17:  # 17 MiB written: [5, 10) and [10, 15) are 2 MiB behind the end; part 1 waits
                wait_for(lambda: parts_on_server(s3_bucket, "out/a.mp4") == [(2, 5 * MiB), (3, 5 * MiB)])
    head = b"HEAD" * 1000  # stands for ftyp + the moved moov
    layout = Layout(head=head, ranges=((100, 23 * MiB),))  # the file's first 100 bytes are replaced by head
    sha256 = growing.finish(layout)
    info = growing.upload.complete()
    body = store.read_bytes("out/a.mp4", max_bytes=30 * MiB)
    expected = head + b"".join(chunks)[100:]
    assert (info.size, body == expected, sha256) == (
        len(expected),
        True,
        hashlib.sha256(expected).hexdigest(),
    )


def test_a_part_sent_past_the_media_is_refused(s3_bucket, tmp_path: Path):
    """If moov were bigger than settle_bytes, a streamed part could hold some of it: finish refuses."""
    store = S3Storage(s3_bucket.client, s3_bucket.name)
    path = tmp_path / "out.mp4.part"
    growing = GrowingUpload(store.begin_upload("out/b.mp4"), path, part_bytes=5 * MiB, settle_bytes=0)
    growing.start()
    path.write_bytes(bytes(12 * MiB))
    wait_for(lambda: len(parts_on_server(s3_bucket, "out/b.mp4")) == 1)
    with pytest.raises(MediaError, match="layout does not allow"):
        growing.finish(Layout(head=b"", ranges=((0, 8 * MiB),)))  # the media ends inside part 2
    growing.upload.abort()
