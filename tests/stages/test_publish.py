"""Publishing while ffmpeg writes its fragments: GrowingUpload against a real multipart upload on moto."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from pipeline.model.config import PipelineConfig
from pipeline.model.exceptions import LeaseLost, MediaError, StorageError
from pipeline.model.job import Job, Output, Recording
from pipeline.storage import S3Storage
from pipeline.storage.local import LocalStorage
from stages.base import Destination, StageContext
from stages.media.faststart import Layout
from stages.publish import PublishStage
from stages.upload import GrowingUpload, media_pieces
from tests.builders import leftovers_refused

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


def write_box(f, kind: bytes, payload: bytes, *, flush_half: bool = False) -> tuple[int, int]:
    """Append a box; returns its payload's ``[start, end)``. ``flush_half``: half-written for a moment."""
    start = f.tell() + 8
    f.write((8 + len(payload)).to_bytes(4, "big") + kind)
    if flush_half:
        f.write(payload[: len(payload) // 2])
        f.flush()
        time.sleep(0.1)
        f.write(payload[len(payload) // 2 :])
    else:
        f.write(payload)
    f.flush()
    return start, start + len(payload)


def test_media_goes_up_while_ffmpeg_writes_fragments_and_part_one_last(s3_bucket, tmp_path: Path):
    store = S3Storage(s3_bucket.client, s3_bucket.name)
    growing_file = tmp_path / "out.mp4.part"
    payloads = [bytes([i]) * MiB for i in range(23)]  # 23 fragments of 1 MiB of "media"
    growing = GrowingUpload(store.begin_upload("out/a.mp4"), growing_file, part_bytes=5 * MiB)
    growing.start()
    ranges = []
    with growing_file.open("wb") as f:
        write_box(f, b"ftyp", b"iso5")
        write_box(f, b"moov", bytes(500))
        for i, payload in enumerate(payloads, start=1):
            write_box(f, b"moof", bytes(100))
            ranges.append(write_box(f, b"mdat", payload, flush_half=i == 18))
            if i == 17:  # media [5, 10) and [10, 15) MiB are complete; part 1 waits for the head
                wait_for(lambda: parts_on_server(s3_bucket, "out/a.mp4") == [(2, 5 * MiB), (3, 5 * MiB)])
        write_box(f, b"mfra", bytes(50))
    head = b"HEAD" * 1000  # stands for ftyp + the built moov + the mdat header
    sha256 = growing.finish(Layout(head=head, ranges=tuple(ranges)))
    info = growing.upload.complete()
    body = store.read_bytes("out/a.mp4", max_bytes=30 * MiB)
    expected = head + b"".join(payloads)
    assert (info.size, body == expected, sha256) == (
        len(expected),
        True,
        hashlib.sha256(expected).hexdigest(),
    )


def test_part_one_holds_the_head_and_the_smallest_part_of_media(s3_bucket, tmp_path: Path):
    """Part 1 is sent after ffmpeg ends, so it is kept small: the head and 5 MiB, not a whole part."""
    store = S3Storage(s3_bucket.client, s3_bucket.name)
    path = tmp_path / "out.mp4.part"
    payloads = [bytes([i]) * MiB for i in range(23)]
    growing = GrowingUpload(store.begin_upload("out/c.mp4"), path, part_bytes=8 * MiB)
    growing.start()
    with path.open("wb") as f:
        ranges = [write_box(f, b"mdat", payload) for payload in payloads]
    wait_for(lambda: parts_on_server(s3_bucket, "out/c.mp4") == [(2, 8 * MiB), (3, 8 * MiB)])
    head = b"HEAD" * 300
    sha256 = growing.finish(Layout(head=head, ranges=tuple(ranges)))
    wait_for(lambda: len(parts_on_server(s3_bucket, "out/c.mp4")) == 4)
    assert parts_on_server(s3_bucket, "out/c.mp4") == [(1, len(head) + 5 * MiB), (2, 8 * MiB), (3, 8 * MiB),
                                                      (4, 2 * MiB)]  # fmt: skip
    growing.upload.complete()
    expected = head + b"".join(payloads)
    assert store.read_bytes("out/c.mp4", max_bytes=30 * MiB) == expected
    assert sha256 == hashlib.sha256(expected).hexdigest()


@pytest.mark.parametrize(("media", "parts"), [(3 * MiB, [3 * MiB]), (9 * MiB, [5 * MiB, 4 * MiB])])
def test_short_media_is_part_one_alone_or_with_one_more(s3_bucket, tmp_path: Path, media: int, parts):
    store = S3Storage(s3_bucket.client, s3_bucket.name)
    path = tmp_path / "out.mp4.part"
    growing = GrowingUpload(store.begin_upload("out/d.mp4"), path, part_bytes=8 * MiB)
    growing.start()
    payload = bytes(range(256)) * (media // 256)
    with path.open("wb") as f:
        sent = write_box(f, b"mdat", payload)
    growing.finish(Layout(head=b"H", ranges=(sent,)))
    wait_for(lambda: len(parts_on_server(s3_bucket, "out/d.mp4")) == len(parts))
    assert [size for _, size in parts_on_server(s3_bucket, "out/d.mp4")] == [1 + parts[0], *parts[1:]]
    growing.upload.complete()
    assert store.read_bytes("out/d.mp4", max_bytes=30 * MiB) == b"H" + payload


def test_media_that_changed_after_it_was_sent_is_refused(s3_bucket, tmp_path: Path):
    store = S3Storage(s3_bucket.client, s3_bucket.name)
    path = tmp_path / "out.mp4.part"
    growing = GrowingUpload(store.begin_upload("out/b.mp4"), path, part_bytes=5 * MiB)
    growing.start()
    with path.open("wb") as f:
        sent = write_box(f, b"mdat", bytes(12 * MiB))
    wait_for(lambda: len(parts_on_server(s3_bucket, "out/b.mp4")) == 1)
    with pytest.raises(MediaError, match="changed after parts of it were uploaded"):
        growing.finish(Layout(head=b"", ranges=((sent[0] + 1, sent[1]),)))
    growing.upload.abort()


@pytest.mark.parametrize(
    ("start", "end", "pieces"),
    [
        (0, 10, [(100, 10)]),
        (5, 15, [(105, 5), (200, 5)]),
        (10, 20, [(200, 10)]),
        (0, 35, [(100, 10), (200, 20), (300, 5)]),
        (12, 12, []),
    ],
)
def test_media_pieces(start, end, pieces):
    assert list(media_pieces([(100, 110), (200, 220), (300, 310)], start, end)) == pieces


def test_nothing_is_published_before_the_destination_may_be_written(tmp_path: Path):
    store = LocalStorage(tmp_path / "dest")
    (tmp_path / "work").mkdir()
    mp4 = tmp_path / "work" / "part-0.mp4"
    mp4.write_bytes(b"mp4")
    ctx = StageContext(
        storage=store,
        destination=Destination(storage=store, directory="a/", cleared=leftovers_refused),
        workdir=tmp_path / "work",
        config=PipelineConfig(),
    )
    recording = Recording(sid="sid1", cname="room", directory="a/", playlist_key="a/sid1_room.m3u8")
    output = Output(key="sid1_room_0.mp4", kind="mp4", bytes=3, sha256="", local=mp4)
    with pytest.raises(StorageError, match="AccessDenied"):
        PublishStage().run(Job(recording=recording, outputs=(output,)), ctx)
    assert not (tmp_path / "dest").exists() or list((tmp_path / "dest").rglob("*")) == []


def test_an_upload_is_completed_only_while_the_destination_may_be_written(s3_bucket, tmp_path: Path):
    """Completing a streamed upload commits the output: a run whose lease another recpipe took over
    (its destination's gate says so) leaves the upload uncompleted, for the remux stage to abort."""
    store = S3Storage(s3_bucket.client, s3_bucket.name)
    upload = store.begin_upload("a/sid1_room_0.mp4")
    assert upload is not None
    upload.put_part(1, b"mp4")
    wait_for(lambda: upload.in_flight() == 0)

    def lease_lost() -> None:
        raise LeaseLost("another recpipe took over the lease a/sid1_room.lease.json")

    ctx = StageContext(
        storage=store,
        destination=Destination(storage=store, directory="a/", cleared=lease_lost),
        workdir=tmp_path,
        config=PipelineConfig(),
    )
    recording = Recording(sid="sid1", cname="room", directory="a/", playlist_key="a/sid1_room.m3u8")
    output = Output(key="sid1_room_0.mp4", kind="mp4", bytes=3, sha256="x", upload=upload)
    with pytest.raises(LeaseLost):
        PublishStage().run(Job(recording=recording, outputs=(output,)), ctx)
    assert not store.exists("a/sid1_room_0.mp4")
    assert parts_on_server(s3_bucket, "a/sid1_room_0.mp4") == [(1, 3)]
    upload.abort()
