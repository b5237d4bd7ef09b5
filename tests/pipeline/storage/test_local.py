"""LocalStorage specifics: hostile keys, symlinks, temporary files, the etag."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.model.exceptions import ObjectNotFound, StorageError
from pipeline.storage import LocalStorage
from pipeline.storage.local import is_temp_name, temp_name

HOSTILE_KEYS = [
    pytest.param("", id="empty"),
    pytest.param("/etc/passwd", id="absolute"),
    pytest.param("../outside.ts", id="dotdot-first"),
    pytest.param("rec/../../outside.ts", id="dotdot-middle"),
    pytest.param("rec/..", id="dotdot-last"),
    pytest.param("rec/./a.ts", id="dot-segment"),
    pytest.param(".", id="dot"),
    pytest.param("rec\\..\\a.ts", id="backslash"),
    pytest.param("rec/a\0.ts", id="nul"),
    pytest.param("rec//a.ts", id="empty-segment"),
    pytest.param("rec/", id="trailing-slash"),
    pytest.param(temp_name("a.ts"), id="temp-name"),
]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def store(root: Path) -> LocalStorage:
    return LocalStorage(root)


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_hostile_keys_are_refused_before_touching_the_filesystem(
    store: LocalStorage, root: Path, tmp_path: Path, key: str
) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"x")
    operations = [
        lambda: store.stat(key),
        lambda: store.exists(key),
        lambda: store.read_bytes(key, max_bytes=10),
        lambda: store.get(key, tmp_path / "dest"),
        lambda: store.put(src, key),
        lambda: store.put_bytes(b"x", key),
    ]
    for operation in operations:
        with pytest.raises(StorageError) as err:
            operation()
        assert not isinstance(err.value, ObjectNotFound)
    assert tree(root) == []
    assert not (tmp_path / "dest").exists()
    assert not (tmp_path / "outside.ts").exists()


@pytest.mark.parametrize("prefix", ["/etc/", "../", "a/../../", "a\\b", "a//b/"])
def test_hostile_list_prefixes_are_refused(store: LocalStorage, prefix: str) -> None:
    with pytest.raises(StorageError):
        list(store.list(prefix))


def test_symlinked_directory_leading_outside_is_refused(
    store: LocalStorage, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.ts").write_bytes(b"secret")
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(StorageError, match="outside"):
        store.read_bytes("link/secret.ts", max_bytes=100)
    with pytest.raises(StorageError, match="outside"):
        store.put_bytes(b"x", "link/new.ts")
    with pytest.raises(StorageError, match="outside"):
        list(store.list("link/"))
    assert [i.key for i in store.list("")] == []
    assert [p.name for p in outside.iterdir()] == ["secret.ts"]


def test_symlinked_file_leading_outside_is_refused_and_not_listed(
    store: LocalStorage, root: Path, tmp_path: Path
) -> None:
    (tmp_path / "secret.ts").write_bytes(b"secret")
    (root / "seg.ts").symlink_to(tmp_path / "secret.ts")
    with pytest.raises(StorageError, match="outside"):
        store.stat("seg.ts")
    with pytest.raises(StorageError, match="outside"):
        store.get("seg.ts", tmp_path / "copy.ts")
    assert list(store.list("")) == []


def test_symlink_inside_the_root_is_followed(store: LocalStorage, root: Path) -> None:
    (root / "real.ts").write_bytes(b"data")
    (root / "alias.ts").symlink_to(root / "real.ts")
    assert store.read_bytes("alias.ts", max_bytes=10) == b"data"
    assert [i.key for i in store.list("")] == ["alias.ts", "real.ts"]


def test_temp_files_are_not_listed(store: LocalStorage, root: Path) -> None:
    (root / "rec").mkdir()
    (root / "rec" / "a.ts").write_bytes(b"a")
    (root / "rec" / temp_name("b.ts")).write_bytes(b"partial")
    (root / "rec" / ".hidden.ts").write_bytes(b"h")
    assert [i.key for i in store.list("rec/")] == ["rec/.hidden.ts", "rec/a.ts"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param(temp_name("seg.ts"), True, id="ours"),
        pytest.param(".seg.ts.0123456789ab.part", True, id="shape"),
        pytest.param("seg.ts.part", False, id="plain-part"),
        pytest.param(".seg.ts.xyz.part", False, id="not-hex"),
        pytest.param(".hidden.ts", False, id="hidden"),
    ],
)
def test_is_temp_name(name: str, expected: bool) -> None:
    assert is_temp_name(name) is expected


def test_put_leaves_no_temp_files_and_creates_directories(store: LocalStorage, root: Path) -> None:
    store.put_bytes(b"x", "a/b/c/d.mp4")
    assert tree(root) == ["a", "a/b", "a/b/c", "a/b/c/d.mp4"]


def test_etag_is_size_and_mtime(store: LocalStorage, root: Path) -> None:
    info = store.put_bytes(b"12345", "a.ts")
    st = (root / "a.ts").stat()
    assert info.etag == f"5-{st.st_mtime_ns}"
    os.utime(root / "a.ts", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert store.stat("a.ts").etag == f"5-{st.st_mtime_ns + 1_000_000_000}"


def test_directories_and_special_files_are_not_objects(store: LocalStorage, root: Path) -> None:
    (root / "dir").mkdir()
    os.mkfifo(root / "fifo")
    for key in ("dir", "fifo"):
        with pytest.raises(ObjectNotFound):
            store.stat(key)
        with pytest.raises(ObjectNotFound):
            store.read_bytes(key, max_bytes=10)
        with pytest.raises(ObjectNotFound):
            store.get(key, root.parent / "copy")
    assert list(store.list("")) == []
    assert not (root.parent / "copy").exists()


def test_key_below_a_file_is_not_found(store: LocalStorage) -> None:
    store.put_bytes(b"x", "a.ts")
    with pytest.raises(ObjectNotFound):
        store.stat("a.ts/b.ts")


def test_writing_below_a_file_is_a_storage_error(store: LocalStorage) -> None:
    store.put_bytes(b"x", "a.ts")
    with pytest.raises(StorageError) as err:
        store.put_bytes(b"y", "a.ts/b.ts")
    assert not isinstance(err.value, ObjectNotFound)


def test_list_of_a_missing_root_is_empty(tmp_path: Path) -> None:
    assert list(LocalStorage(tmp_path / "absent").list("")) == []


def test_url_is_the_resolved_root(root: Path) -> None:
    assert LocalStorage(root).url == str(root.resolve())


def make_deep(top: Path, depth: int) -> None:
    """``top/a/a/.../a/b.ts``, ``depth`` directories deep (made relative to each parent: the whole
    path is longer than the system allows one path to be)."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("a", dir_fd=fd)
            inner = os.open("a", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        os.close(os.open("b.ts", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    finally:
        os.close(fd)


def remove_deep(top: Path) -> None:
    """Remove what ``make_deep`` made, without recursion (``shutil.rmtree`` recurses, and fails on it)."""
    fds = [os.open(top, os.O_RDONLY)]
    try:
        while "a" in os.listdir(fds[-1]):
            fds.append(os.open("a", os.O_RDONLY, dir_fd=fds[-1]))
        for name in os.listdir(fds[-1]):
            os.unlink(name, dir_fd=fds[-1])
        while len(fds) > 1:
            os.close(fds.pop())
            os.rmdir("a", dir_fd=fds[-1])
    finally:
        for fd in fds:
            os.close(fd)
    top.rmdir()


@contextlib.contextmanager
def deep_tree(top: Path, depth: int) -> Iterator[None]:
    """``make_deep`` for the block, removed afterwards."""
    make_deep(top, depth)
    try:
        yield
    finally:
        remove_deep(top)


def test_a_very_deep_tree_is_listed_without_recursion(store: LocalStorage, root: Path) -> None:
    """1,100 nested directories: listing is iterative, skips what is deeper than it follows, and
    still finds the files nearer the top."""
    (root / "recordings").mkdir()
    (root / "recordings" / "a.ts").write_bytes(b"x")
    with deep_tree(root / "recordings" / "z", 1100):
        assert [o.key for o in store.list("")] == ["recordings/a.ts"]
    assert not (root / "recordings" / "z").exists()
