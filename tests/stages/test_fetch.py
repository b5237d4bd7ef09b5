import threading
from concurrent.futures import Executor, Future, ThreadPoolExecutor

import pytest

from pipeline.exceptions import StorageError
from pipeline.job import Recording
from pipeline.storage.base import ObjectInfo
from stages.fetch import build_segments, fetch_segment, map_in_order, playlist_findings
from stages.playlist import parse_playlist
from tests.builders import CNAME, SID, START, make_playlist, slice_uri

REC = Recording(sid=SID, cname=CNAME, directory="rec/", playlist_key=f"rec/{SID}_{CNAME}.m3u8")


class InlineExecutor(Executor):
    """Runs each task at submit time (s3transfer's NonThreadedExecutor)."""

    def __init__(self):
        self.submitted = 0

    def submit(self, fn, /, *args, **kwargs):
        self.submitted += 1
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as err:
            future.set_exception(err)
        return future


def test_build_segments_resolves_safe_keys_and_times():
    playlist = parse_playlist(make_playlist(count=2, uris={1: "../escape.ts"}))
    first, second = build_segments(playlist, recording=REC)
    assert first.key == f"rec/{slice_uri(0)}"
    assert first.utc == START
    assert second.key is None
    assert second.utc is None


def test_foreign_names_have_no_time():
    playlist = parse_playlist(make_playlist(count=1, uris={0: "othersid_othercname_20260115093000000.ts"}))
    [segment] = build_segments(playlist, recording=REC)
    assert segment.key == "rec/othersid_othercname_20260115093000000.ts"
    assert segment.utc is None


def test_playlist_findings():
    playlist = parse_playlist(make_playlist(count=2, uris={1: "../x.ts"}, endlist=False))
    findings = playlist_findings(playlist, build_segments(playlist, recording=REC))
    assert [(f.code, f.segment) for f in findings] == [("UNSAFE_URI", "../x.ts"), ("NO_ENDLIST", None)]


def test_map_in_order_keeps_order_and_bounds_work_in_flight():
    inline = InlineExecutor()
    results = map_in_order(lambda n: n * n, range(10), executor=inline, window=3)
    assert next(results) == 0
    assert inline.submitted == 4  # the window, plus one refill
    assert list(results) == [n * n for n in range(1, 10)]


def test_map_in_order_with_threads_returns_input_order():
    release = threading.Event()

    def slow_first(n):
        if n == 0:
            release.wait(5)
        return n

    with ThreadPoolExecutor(4) as pool:
        results = map_in_order(slow_first, range(8), executor=pool, window=4)
        release.set()
        assert list(results) == list(range(8))


def test_map_in_order_propagates_errors():
    def boom(n):
        if n == 2:
            raise StorageError("read failed", key=str(n))
        return n

    with pytest.raises(StorageError, match="read failed"):
        list(map_in_order(boom, range(5), executor=InlineExecutor(), window=2))


class ShrinkingStorage:
    """A store whose object is shorter than its listing (a slice being rewritten)."""

    def __init__(self, sizes):
        self.sizes = list(sizes)
        self.calls = 0

    def get(self, key, dest):
        size = self.sizes[min(self.calls, len(self.sizes) - 1)]
        self.calls += 1
        dest.write_bytes(b"\x47" * size)
        return ObjectInfo(key, size, "e")


def test_fetch_segment_retries_size_mismatch(tmp_path):
    [segment] = build_segments(parse_playlist(make_playlist(count=1)), recording=REC)
    listed = {segment.key: ObjectInfo(segment.key, 376, "e")}
    store = ShrinkingStorage([188, 376])
    fetched = fetch_segment(segment, storage=store, dest=tmp_path / "0.ts", listed=listed, attempts=3)
    assert (fetched.size, store.calls, fetched.local) == (376, 2, tmp_path / "0.ts")


def test_fetch_segment_gives_up_after_attempts(tmp_path):
    [segment] = build_segments(parse_playlist(make_playlist(count=1)), recording=REC)
    listed = {segment.key: ObjectInfo(segment.key, 376, "e")}
    with pytest.raises(StorageError, match="after 2 attempts"):
        fetch_segment(
            segment, storage=ShrinkingStorage([188]), dest=tmp_path / "0.ts", listed=listed, attempts=2
        )
