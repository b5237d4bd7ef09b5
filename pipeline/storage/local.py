"""``LocalStorage``: a directory used as an object store (the default, and the tests' fast fake).

Keys are '/'-separated paths relative to the root. Keys that could leave the root (absolute, ``..``,
backslashes, NUL, empty segments) are refused before the filesystem is touched, and every path is
checked again after symlinks are resolved. Files are written to ``.<name>.<random>.part`` in the
target directory and renamed into place, so readers never see a partial object; ``list`` skips
those temporary names.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import secrets
import shutil
import stat as stat_mode
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from pipeline.model.exceptions import ObjectNotFound, ObjectTooLarge, PreconditionFailed, StorageError
from pipeline.storage.base import Metadata, ObjectInfo, exists_by_stat

log = logging.getLogger(__name__)

_TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{12}\.part")
_FORBIDDEN_CHARS = ("\\", "\0")
_NOT_FOUND = (errno.ENOENT, errno.ENOTDIR, errno.EISDIR)
_CHUNK = 1024 * 1024


def temp_name(name: str) -> str:
    """A fresh temporary file name for an object called ``name``, recognisable by ``is_temp_name``."""
    return f".{name}.{secrets.token_hex(6)}.part"


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is a temporary name this module writes."""
    return _TEMP_NAME.fullmatch(name) is not None


def check_key(key: str) -> None:
    """Raise ``StorageError`` if ``key`` is not a plain relative '/'-separated key."""
    if not key:
        raise StorageError("empty key", key=key)
    problem = _key_problem(key)
    if problem is not None:
        raise StorageError(f"refusing unsafe key: {problem}", key=key)


def _key_problem(key: str) -> str | None:
    """Why ``key`` is unsafe, or None."""
    if key.startswith("/"):
        return "it is absolute"
    if any(c in key for c in _FORBIDDEN_CHARS):
        return "it contains a backslash or NUL"
    segments = key.split("/")
    if any(s == "" for s in segments):
        return "it has an empty segment"
    if any(s in (".", "..") for s in segments):
        return "it has a '.' or '..' segment"
    if is_temp_name(segments[-1]):
        return "the name is reserved for temporary files"
    return None


def _write_temp(directory: Path, name: str, source: BinaryIO | bytes, *, sync: bool) -> tuple[Path, int]:
    """Write ``source`` to a new temporary file in ``directory``; return its path and size."""
    tmp = directory / temp_name(name)
    try:
        with open(tmp, "xb") as out:
            if isinstance(source, bytes):
                out.write(source)
            else:
                shutil.copyfileobj(source, out, _CHUNK)
            out.flush()
            if sync:
                os.fsync(out.fileno())
            size = out.tell()
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return tmp, size


def _commit(tmp: Path, dest: Path) -> None:
    """Move a finished temporary file into place, removing it if that fails."""
    try:
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class LocalStorage:
    """An object store rooted at a local directory."""

    def __init__(self, root: Path) -> None:
        self._root = Path(os.path.abspath(root)).resolve()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self._root)!r})"

    @property
    def root(self) -> Path:
        """The resolved root directory."""
        return self._root

    def prepare_reads(self, count: int, *, prefix: str) -> None:
        """Nothing to prepare: files are opened as they are read."""

    @property
    def url(self) -> str:
        """The root directory, for messages and reports."""
        return str(self._root)

    @property
    def retries(self) -> int:
        """A local directory is never retried."""
        return 0

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every regular file whose key starts with ``prefix``, in key order, recursively."""
        base, _, tail = prefix.rpartition("/")
        if any(c in prefix for c in _FORBIDDEN_CHARS) or prefix.startswith("/"):
            raise StorageError("refusing unsafe prefix", key=prefix)
        if base:
            check_key(base)
        directory = self._path(base) if base else self._root
        yield from self._walk(directory, key_prefix=f"{base}/" if base else "", tail=tail)

    def stat(self, key: str) -> ObjectInfo:
        """The file's key, size and ``{size}-{mtime_ns}`` tag; ``ObjectNotFound`` if absent."""
        path = self._path(key)
        try:
            st = path.stat()
        except OSError as err:
            raise self._error(err, key=key, action="stat") from err
        if not stat_mode.S_ISREG(st.st_mode):
            raise ObjectNotFound("not a regular file", key=key)
        return _info(key, st)

    def exists(self, key: str) -> bool:
        """Whether ``key`` is a regular file."""
        return exists_by_stat(self.stat, key)

    def read_bytes(self, key: str, *, max_bytes: int) -> bytes:
        """The whole file; ``StorageError`` if it is larger than ``max_bytes``."""
        path = self._path(key)
        try:
            with _open_regular(path, key=key) as src:
                size = os.fstat(src.fileno()).st_size
                data = _read_capped(src, expected=size, cap=max_bytes + 1) if size <= max_bytes else b""
        except OSError as err:
            raise self._error(err, key=key, action="read") from err
        if size > max_bytes or len(data) > max_bytes:
            raise ObjectTooLarge(f"object is larger than the {max_bytes}-byte limit", key=key)
        return data

    def read_range(self, key: str, *, offset: int, count: int) -> bytes:
        """Bytes ``[offset, offset + count)`` of the file (fewer at its end)."""
        path = self._path(key)
        try:
            with _open_regular(path, key=key) as src:
                return os.pread(src.fileno(), max(count, 0), offset)
        except OSError as err:
            raise self._error(err, key=key, action="read") from err

    def read_metadata(self, key: str) -> Metadata:
        """The file's ``user.<name>`` extended attributes (empty where the file system keeps none)."""
        path = self._path(key)
        self.stat(key)  # ObjectNotFound for a missing or irregular file
        try:
            names = [n for n in os.listxattr(path) if n.startswith(XATTR_PREFIX)]
            return {
                n.removeprefix(XATTR_PREFIX): os.getxattr(path, n).decode("utf-8", "replace") for n in names
            }
        except OSError as err:
            if err.errno in _NO_XATTRS:
                return {}
            raise self._error(err, key=key, action="read the labels of") from err

    def get(self, key: str, dest: Path) -> ObjectInfo:
        """Copy the file to ``dest`` through a temporary file in the same directory."""
        path = self._path(key)
        try:
            src = _open_regular(path, key=key)
        except OSError as err:
            raise self._error(err, key=key, action="read") from err
        with src:
            info = _info(key, os.fstat(src.fileno()))
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp, size = _write_temp(dest.parent, dest.name, src, sync=False)
            except OSError as err:
                raise StorageError(f"cannot copy to {dest}: {err.strerror or err}", key=key) from err
        if size != info.size:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"read {size} bytes, expected {info.size}; the file changed", key=key)
        try:
            _commit(tmp, dest)
        except OSError as err:
            raise StorageError(f"cannot copy to {dest}: {err.strerror or err}", key=key) from err
        return info

    def put(self, src: Path, key: str, *, metadata: Metadata | None = None) -> ObjectInfo:
        """Store the file ``src`` at ``key``; it appears only complete (temp file, fsync, rename).

        On the same filesystem the temporary file is a hard link to ``src`` (after ``src`` is synced),
        so a large output is published without copying its bytes; ``src`` itself is left as it was.
        """
        path = self._path(key)
        self._make_parent(path, key=key)
        tmp = _linked_temp(src, path)
        if tmp is not None:
            return self._commit_as(tmp, path, key=key, metadata=metadata)
        try:
            source = open(src, "rb")  # noqa: SIM115 - closed below; errors here are about src
        except OSError as err:
            raise StorageError(f"cannot read {src}: {err.strerror or err}", key=key) from err
        with source:
            return self._store(path, key, source, metadata=metadata)

    def begin_upload(self, key: str, *, metadata: Metadata | None = None) -> None:
        """Local files are published whole (``put`` links them into place)."""
        check_key(key)

    def put_bytes(self, data: bytes, key: str, *, metadata: Metadata | None = None) -> ObjectInfo:
        """Store ``data`` at ``key``; it appears only complete (temp file, fsync, rename)."""
        path = self._path(key)
        self._make_parent(path, key=key)
        return self._store(path, key, data, metadata=metadata)

    def discard_incomplete(self, prefix: str) -> int:
        """Remove temporary files (``.<name>.<random>.part``) of objects whose key starts with ``prefix``."""
        directory, _, stem = prefix.rpartition("/")
        path = self._path(directory) if directory else self._root
        removed = 0
        try:
            entries = list(os.scandir(path))
        except FileNotFoundError:
            return 0
        except OSError as err:
            raise self._error(err, key=prefix, action="list") from err
        for entry in entries:
            if (
                is_temp_name(entry.name)
                and entry.name[1:].startswith(stem)
                and entry.is_file(follow_symlinks=False)
            ):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                log.info("%s: removed %s, left by an earlier run", self.url, entry.name)
                removed += 1
        return removed

    def put_if(self, data: bytes, key: str, *, etag: str | None) -> ObjectInfo:
        """Store ``data`` only if ``key`` is absent (``etag`` None) or still has ``etag``: the check and
        the rename happen under an exclusive lock on the directory, so writers take turns."""
        path = self._path(key)
        self._make_parent(path, key=key)
        with self._locked(path.parent, key=key):
            self._expect(path, key=key, etag=etag)
            return self._store(path, key, data)

    def delete_if(self, key: str, *, etag: str) -> None:
        """Delete recpipe's own object at ``key`` only if it still has ``etag``."""
        path = self._path(key)
        with self._locked(path.parent, key=key):
            self._expect(path, key=key, etag=etag)
            try:
                path.unlink()
            except OSError as err:
                raise self._write_error(err, key=key) from err

    def _expect(self, path: Path, *, key: str, etag: str | None) -> None:
        try:
            current: str | None = _info(key, path.stat()).etag
        except FileNotFoundError:
            current = None
        if etag is not None and current is None:
            raise ObjectNotFound(f"{self.url}: no such key", key=key)
        if current != etag:
            raise PreconditionFailed(f"{self.url}: the object is not as expected", key=key)

    @contextlib.contextmanager
    def _locked(self, directory: Path, *, key: str) -> Iterator[None]:
        """An exclusive ``flock`` on ``directory`` for the duration of the block."""
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as err:
            raise self._error(err, key=key, action="lock") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _store(
        self, path: Path, key: str, source: BinaryIO | bytes, *, metadata: Metadata | None = None
    ) -> ObjectInfo:
        """Write ``source`` next to ``path`` (whose directory exists) under a temporary name, then
        rename it into place."""
        try:
            tmp, _ = _write_temp(path.parent, path.name, source, sync=True)
        except OSError as err:
            raise self._write_error(err, key=key) from err
        return self._commit_as(tmp, path, key=key, metadata=metadata)

    def _make_parent(self, path: Path, *, key: str) -> None:
        """Create the object's directory, refusing one that resolves outside the root."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._check_inside(path.parent.resolve(), key=key)
        except OSError as err:
            raise self._write_error(err, key=key) from err

    def _commit_as(self, tmp: Path, path: Path, *, key: str, metadata: Metadata | None = None) -> ObjectInfo:
        """Label the finished temporary file with ``metadata`` (where the file system can), then rename
        it into place."""
        try:
            _label(tmp, metadata or {})
            _commit(tmp, path)
            return _info(key, path.stat())
        except OSError as err:
            raise self._write_error(err, key=key) from err

    def _write_error(self, err: OSError, *, key: str) -> StorageError:
        return StorageError(f"cannot write under {self.url}: {err.strerror or err}", key=key)

    def _path(self, key: str) -> Path:
        """The filesystem path for ``key``, refusing keys and symlinks that lead outside the root."""
        check_key(key)
        path = self._root.joinpath(*key.split("/"))
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError) as err:
            raise StorageError(f"cannot resolve the path under {self.url}", key=key) from err
        self._check_inside(resolved, key=key)
        return path

    def _check_inside(self, resolved: Path, *, key: str) -> None:
        """Raise ``StorageError`` unless ``resolved`` is the root or inside it."""
        if resolved != self._root and not resolved.is_relative_to(self._root):
            raise StorageError(f"refusing a key that resolves outside {self.url}", key=key)

    def _walk(self, directory: Path, *, key_prefix: str, tail: str = "") -> Iterator[ObjectInfo]:
        """Regular files under ``directory`` in key order; ``tail`` filters its direct entries.

        Iterative (a stack of directories, not recursion), and bounded: directories deeper than
        ``MAX_LIST_DEPTH`` below ``directory`` are skipped with a warning, and more than
        ``MAX_LIST_ENTRIES`` entries or ``MAX_LIST_SECONDS`` of listing is a StorageError."""
        deadline = time.monotonic() + MAX_LIST_SECONDS
        seen = 0
        stack: Stack = [iter(self._entries(directory, key_prefix=key_prefix, tail=tail))]
        prefixes = [key_prefix]
        while stack:
            entry = next(stack[-1], None)
            if entry is None:
                stack.pop()
                prefixes.pop()
                continue
            seen += 1
            if seen > MAX_LIST_ENTRIES or time.monotonic() > deadline:
                raise StorageError(
                    f"listing {self.url}/{key_prefix} passed {MAX_LIST_ENTRIES:,} entries or "
                    f"{MAX_LIST_SECONDS:.0f} s; give a location closer to the recordings",
                    key=key_prefix,
                )
            sort_name, found = entry
            key = prefixes[-1] + sort_name
            if not sort_name.endswith("/"):
                info = self._entry_info(found, key=key)
                if info is not None:
                    yield info
            elif len(stack) > MAX_LIST_DEPTH:
                log.warning("%s: not listing %s, over %d directories deep", self.url, key, MAX_LIST_DEPTH)
            else:
                stack.append(iter(self._entries(Path(found.path), key_prefix=key)))
                prefixes.append(key)

    def _entries(self, directory: Path, *, key_prefix: str, tail: str = "") -> Entries:
        """A directory's entries in key order (directories named with a trailing ``/``), temporary
        files and those not starting with ``tail`` left out."""
        try:
            with os.scandir(directory) as it:
                entries = [(e.name + "/" if _is_real_dir(e) else e.name, e) for e in it]
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as err:
            raise StorageError(f"cannot list {directory}: {err.strerror or err}", key=key_prefix) from err
        kept = [pair for pair in entries if pair[0].startswith(tail) and not is_temp_name(pair[1].name)]
        return sorted(kept, key=lambda pair: pair[0])

    def _entry_info(self, entry: os.DirEntry[str], *, key: str) -> ObjectInfo | None:
        """Info for a listed file; None for non-files, vanished files and symlinks leading outside."""
        try:
            if entry.is_symlink():
                self._check_inside(Path(entry.path).resolve(), key=key)
            st = entry.stat()
        except (OSError, StorageError, RuntimeError) as err:
            log.debug("not listing %s: %s", key, err)
            return None
        return _info(key, st) if stat_mode.S_ISREG(st.st_mode) else None

    @staticmethod
    def _error(err: OSError, *, key: str, action: str) -> StorageError:
        """``ObjectNotFound`` for the "not there" errnos, else ``StorageError``."""
        if err.errno in _NOT_FOUND:
            return ObjectNotFound("no such file", key=key)
        return StorageError(f"cannot {action}: {err.strerror or err}", key=key)


Entries = list[tuple[str, os.DirEntry[str]]]
"""A directory's entries by key name (directories end in ``/``)."""
Stack = list[Iterator[tuple[str, os.DirEntry[str]]]]

MAX_LIST_DEPTH = 64
"""Directories below a listed prefix followed at most (``fileNamePrefix`` allows 64 levels)."""
MAX_LIST_ENTRIES = 5_000_000
"""Files and directories one listing visits at most."""
MAX_LIST_SECONDS = 600.0
"""How long one listing may take."""
XATTR_PREFIX = "user."
"""Metadata is kept as extended attributes in the ``user`` namespace."""
_NO_XATTRS = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA})


def _label(path: Path, metadata: Metadata) -> None:
    """Set ``metadata`` as extended attributes of ``path``; a file system without them keeps none."""
    for name, value in metadata.items():
        try:
            os.setxattr(path, XATTR_PREFIX + name, value.encode())
        except OSError as err:
            if err.errno not in _NO_XATTRS:
                raise
            log.debug("%s: this file system keeps no extended attributes; %s not recorded", path, name)
            return


def _is_real_dir(entry: os.DirEntry[str]) -> bool:
    """A directory that is not a symlink (symlinked directories are not followed)."""
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _open_regular(path: Path, *, key: str) -> BinaryIO:
    """Open a regular file for reading; ``ObjectNotFound`` for directories, FIFOs and devices.

    O_NONBLOCK keeps a FIFO from blocking the open; it has no effect on regular files.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat_mode.S_ISREG(os.fstat(fd).st_mode):
            raise ObjectNotFound("not a regular file", key=key)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _linked_temp(src: Path, path: Path) -> Path | None:
    """A temporary hard link to ``src`` (synced first) beside ``path``, or None when ``src`` is not a
    regular file on the same filesystem (then it is copied)."""
    try:
        st = src.stat()
        if not stat_mode.S_ISREG(st.st_mode) or st.st_dev != path.parent.stat().st_dev:
            return None
        with src.open("rb") as fh:
            os.fsync(fh.fileno())
        tmp = path.parent / temp_name(path.name)
        os.link(src, tmp)
    except OSError as err:
        log.debug("cannot link %s into place (%s); copying", src, err)
        return None
    return tmp


def _read_capped(src: BinaryIO, *, expected: int, cap: int) -> bytes:
    """Read to the end, but at most ``cap`` bytes. Asking for ``expected + 1`` first (rather than
    ``cap``) keeps Python from reserving ``cap`` bytes for every read; a file that grew meanwhile is
    read on, up to the cap."""
    data = src.read(min(expected + 1, cap))
    if len(data) > expected and len(data) < cap:
        data += src.read(cap - len(data))
    return data


def _info(key: str, st: os.stat_result) -> ObjectInfo:
    """ObjectInfo from a stat result."""
    return ObjectInfo(key=key, size=st.st_size, etag=f"{st.st_size}-{st.st_mtime_ns}", modified=st.st_mtime)
