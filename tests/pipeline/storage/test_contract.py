"""One contract, run against every Storage implementation (local directory, S3 on moto, Azure on Azurite)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline.model.exceptions import ObjectNotFound, PreconditionFailed, StorageError
from pipeline.storage import LocalStorage, ObjectInfo, Storage

ODD_KEYS = [
    pytest.param("dir/with space.ts", id="space"),
    pytest.param("dir/a+b.ts", id="plus"),
    pytest.param("dir/100%.ts", id="percent"),
    pytest.param("dir/a&b=c.ts", id="ampersand"),
    pytest.param("dir/ünïcødé/日本語.ts", id="unicode"),
    pytest.param("dir/~tilde;semi,comma'quote.ts", id="punctuation"),
]


def keys(storage: Storage, prefix: str) -> list[str]:
    return [info.key for info in storage.list(prefix)]


def test_put_bytes_then_stat_read_and_exists(storage: Storage) -> None:
    info = storage.put_bytes(b"hello", "rec/a.m3u8")
    assert info.key == "rec/a.m3u8"
    assert info.size == 5
    assert info.etag
    assert storage.stat("rec/a.m3u8") == info
    assert storage.exists("rec/a.m3u8")
    assert storage.read_bytes("rec/a.m3u8", max_bytes=5) == b"hello"


def test_put_file_then_get(storage: Storage, tmp_path: Path) -> None:
    src = tmp_path / "src.ts"
    payload = bytes(range(256)) * 1000
    src.write_bytes(payload)
    put = storage.put(src, "rec/seg.ts")
    dest = tmp_path / "out" / "seg.ts"
    got = storage.get("rec/seg.ts", dest)
    assert dest.read_bytes() == payload
    assert got == put == storage.stat("rec/seg.ts")
    assert got.size == len(payload)


def test_empty_object(storage: Storage, tmp_path: Path) -> None:
    storage.put_bytes(b"", "rec/empty.ts")
    assert storage.stat("rec/empty.ts").size == 0
    assert storage.read_bytes("rec/empty.ts", max_bytes=0) == b""
    storage.get("rec/empty.ts", tmp_path / "empty.ts")
    assert (tmp_path / "empty.ts").read_bytes() == b""


def test_list_is_recursive_sorted_and_uses_plain_string_prefixes(storage: Storage) -> None:
    for key in ["b/x.ts", "a/z.ts", "a-c.ts", "a/b/c.ts", "a.ts", "ab/d.ts", "top.ts"]:
        storage.put_bytes(key.encode(), key)
    assert keys(storage, "") == ["a-c.ts", "a.ts", "a/b/c.ts", "a/z.ts", "ab/d.ts", "b/x.ts", "top.ts"]
    assert keys(storage, "a") == ["a-c.ts", "a.ts", "a/b/c.ts", "a/z.ts", "ab/d.ts"]
    assert keys(storage, "a/") == ["a/b/c.ts", "a/z.ts"]
    assert keys(storage, "a/b") == ["a/b/c.ts"]
    assert keys(storage, "a/z") == ["a/z.ts"]
    assert keys(storage, "a/z.ts") == ["a/z.ts"]
    assert keys(storage, "nothing/") == []
    assert keys(storage, "a/q") == []


def test_list_reports_sizes_and_the_same_etag_as_stat(storage: Storage) -> None:
    storage.put_bytes(b"12345", "d/one.ts")
    storage.put_bytes(b"1", "d/two.ts")
    listed = list(storage.list("d/"))
    assert [(i.key, i.size) for i in listed] == [("d/one.ts", 5), ("d/two.ts", 1)]
    assert listed == [storage.stat("d/one.ts"), storage.stat("d/two.ts")]
    assert all(isinstance(i, ObjectInfo) for i in listed)


def test_list_and_stat_say_when_an_object_was_last_written(storage: Storage) -> None:
    """The store's clock (moto's and Azurite's are this machine's; S3 counts whole seconds)."""
    before = time.time()
    storage.put_bytes(b"1", "d/one.ts")
    after = time.time()
    [listed] = storage.list("d/")
    for info in (listed, storage.stat("d/one.ts")):
        assert info.modified is not None
        assert before - 1 <= info.modified <= after + 1


def test_list_of_an_empty_store(storage: Storage) -> None:
    assert keys(storage, "") == []


@pytest.mark.parametrize("key", ODD_KEYS)
def test_odd_characters_round_trip(storage: Storage, tmp_path: Path, key: str) -> None:
    storage.put_bytes(b"data", key)
    assert keys(storage, "dir/") == [key]
    assert storage.stat(key).size == 4
    assert storage.read_bytes(key, max_bytes=10) == b"data"
    storage.get(key, tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == b"data"


@pytest.mark.parametrize("key", ["missing.ts", "no/such/dir/file.ts"])
def test_missing_keys_raise_object_not_found(storage: Storage, tmp_path: Path, key: str) -> None:
    storage.put_bytes(b"x", "present.ts")
    with pytest.raises(ObjectNotFound):
        storage.stat(key)
    with pytest.raises(ObjectNotFound):
        storage.read_bytes(key, max_bytes=100)
    work = tmp_path / "work"
    with pytest.raises(ObjectNotFound):
        storage.get(key, work / "dest.ts")
    assert not storage.exists(key)
    assert list(work.glob("*")) == []


def test_a_directory_like_prefix_is_not_an_object(storage: Storage) -> None:
    storage.put_bytes(b"x", "dir/file.ts")
    assert not storage.exists("dir")
    with pytest.raises(ObjectNotFound):
        storage.stat("dir")


def test_read_bytes_refuses_objects_over_the_cap(storage: Storage) -> None:
    storage.put_bytes(b"0123456789", "big.m3u8")
    assert storage.read_bytes("big.m3u8", max_bytes=10) == b"0123456789"
    with pytest.raises(StorageError, match="limit") as err:
        storage.read_bytes("big.m3u8", max_bytes=9)
    assert not isinstance(err.value, ObjectNotFound)
    assert err.value.key == "big.m3u8"


def test_get_leaves_only_the_complete_destination(storage: Storage, tmp_path: Path) -> None:
    storage.put_bytes(b"new contents", "rec/seg.ts")
    dest_dir = tmp_path / "work"
    dest_dir.mkdir()
    dest = dest_dir / "seg.ts"
    dest.write_bytes(b"old")
    storage.get("rec/seg.ts", dest)
    assert dest.read_bytes() == b"new contents"
    assert [p.name for p in dest_dir.iterdir()] == ["seg.ts"]


def test_failed_get_keeps_the_old_destination_and_no_temp_files(storage: Storage, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    dest = work / "seg.ts"
    dest.write_bytes(b"old")
    with pytest.raises(ObjectNotFound):
        storage.get("missing.ts", dest)
    assert dest.read_bytes() == b"old"
    assert [p.name for p in work.iterdir()] == ["seg.ts"]


def test_put_overwrites_and_changes_the_etag(storage: Storage, tmp_path: Path) -> None:
    first = storage.put_bytes(b"first version", "out/a.mp4")
    src = tmp_path / "a.mp4"
    src.write_bytes(b"second, longer version")
    second = storage.put(src, "out/a.mp4")
    assert storage.read_bytes("out/a.mp4", max_bytes=100) == b"second, longer version"
    assert second.size == len(b"second, longer version")
    assert second.etag != first.etag
    assert keys(storage, "out/") == ["out/a.mp4"]


def test_put_of_a_missing_source_file_is_a_storage_error(storage: Storage, tmp_path: Path) -> None:
    with pytest.raises(StorageError) as err:
        storage.put(tmp_path / "nope.mp4", "out/a.mp4")
    assert not isinstance(err.value, ObjectNotFound)
    assert not storage.exists("out/a.mp4")


def test_url_names_the_root(storage: Storage) -> None:
    assert storage.url.startswith(("/", "s3://", "az://"))


def test_put_if_absent_then_if_match(storage: Storage) -> None:
    first = storage.put_if(b"one", "rec/x.lease.json", etag=None)
    with pytest.raises(PreconditionFailed):
        storage.put_if(b"two", "rec/x.lease.json", etag=None)
    second = storage.put_if(b"two", "rec/x.lease.json", etag=first.etag)
    assert second.etag != first.etag
    with pytest.raises(PreconditionFailed):
        storage.put_if(b"three", "rec/x.lease.json", etag=first.etag)  # stale tag loses
    assert storage.read_bytes("rec/x.lease.json", max_bytes=10) == b"two"


def test_delete_if_only_with_the_current_tag(storage: Storage) -> None:
    info = storage.put_if(b"mine", "rec/y.lease.json", etag=None)
    newer = storage.put_if(b"theirs", "rec/y.lease.json", etag=info.etag)
    with pytest.raises(PreconditionFailed):
        storage.delete_if("rec/y.lease.json", etag=info.etag)
    storage.delete_if("rec/y.lease.json", etag=newer.etag)
    assert not storage.exists("rec/y.lease.json")
    with pytest.raises(ObjectNotFound):
        storage.delete_if("rec/y.lease.json", etag=newer.etag)


def test_discard_incomplete_removes_unfinished_writes_under_the_prefix_only(storage: Storage) -> None:
    storage.put_bytes(b"done", "out/sid_room.report.json")
    mine = storage.begin_upload("out/sid_room_20260101000000000_0.mp4")
    other = storage.begin_upload("out/sid_other_20260101000000000_0.mp4")
    if isinstance(storage, LocalStorage):  # a local write killed half-way leaves a temporary file
        (storage.root / "out" / ".sid_room_20260101000000000_0.mp4.0123456789ab.part").write_bytes(b"x")
        (storage.root / "out" / ".sid_other.report.json.0123456789ab.part").write_bytes(b"y")
    else:  # a store that uploads in parts: a part sent, the upload never completed
        assert mine is not None
        assert other is not None
        for upload in (mine, other):
            upload.put_part(1, b"part")
            while upload.in_flight():
                time.sleep(0.01)
    assert storage.discard_incomplete("out/sid_room") == 1
    assert keys(storage, "out/") == ["out/sid_room.report.json"]
    assert storage.discard_incomplete("out/sid_room") == 0
    assert storage.discard_incomplete("out/sid_other") == 1


def test_read_range(storage: Storage) -> None:
    storage.put_bytes(bytes(range(100)), "rec/a.mp4")
    assert storage.read_range("rec/a.mp4", offset=0, count=4) == bytes([0, 1, 2, 3])
    assert storage.read_range("rec/a.mp4", offset=90, count=20) == bytes(range(90, 100))  # short at the end
    with pytest.raises(ObjectNotFound):
        storage.read_range("rec/missing.mp4", offset=0, count=4)


def test_metadata_is_written_with_every_kind_of_write(storage: Storage, tmp_path: Path) -> None:
    label = {"recpipe-output": "sid_room"}
    storage.put_bytes(b"small", "rec/a.json", metadata=label)
    src = tmp_path / "big.mp4"
    src.write_bytes(b"x" * 1000)
    storage.put(src, "rec/b.mp4", metadata=label)
    upload = storage.begin_upload("rec/c.mp4", metadata=label)
    if upload is not None:  # a store that uploads in parts
        upload.put_part(1, b"parts")
        upload.complete()
    else:
        storage.put(src, "rec/c.mp4", metadata=label)
    for key in ("rec/a.json", "rec/b.mp4", "rec/c.mp4"):
        assert storage.read_metadata(key) == label, key
    storage.put_bytes(b"plain", "rec/d.ts")
    assert storage.read_metadata("rec/d.ts") == {}
    with pytest.raises(ObjectNotFound):
        storage.read_metadata("rec/missing.ts")
