import os
import threading
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import replace

import pytest

from pipeline.model.config import PipelineConfig
from pipeline.model.exceptions import PlaylistError, StorageError
from pipeline.model.job import Job, Recording
from pipeline.storage import LocalStorage
from pipeline.storage.base import ObjectInfo
from stages.base import Destination, Fetched, StageContext
from stages.discover import find_recordings
from stages.fetch import (
    FetchStage,
    build_segments,
    fetch_segment,
    head_start_keys,
    map_in_order,
    playlist_findings,
    read_media,
    read_playlists,
)
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


def test_map_in_order_takes_a_result_already_on_its_way():
    inline = InlineExecutor()
    early: Future = Future()
    early.set_result("early")
    started = lambda n: early if n == 1 else None  # noqa: E731
    assert list(map_in_order(str, range(3), executor=inline, window=2, started=started)) == [
        "0",
        "early",
        "2",
    ]
    assert inline.submitted == 2  # no worker for the one under way


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

    def read_bytes(self, key, *, max_bytes):
        size = self.sizes[min(self.calls, len(self.sizes) - 1)]
        self.calls += 1
        return b"\x47" + bytes(size - 1)


def test_fetch_segment_retries_size_mismatch():
    [segment] = build_segments(parse_playlist(make_playlist(count=1)), recording=REC)
    listed = {segment.key: ObjectInfo(segment.key, 376, "e")}
    store = ShrinkingStorage([188, 376])
    fetched = fetch_segment(segment, storage=store, listed=listed, attempts=3, max_bytes=1000)
    assert (fetched.segment.size, store.calls, len(fetched.data)) == (376, 2, 376)


def test_read_media_reads_the_bytes_and_skips_empty_slices():
    [segment] = build_segments(parse_playlist(make_playlist(count=1)), recording=REC)
    data = (b"\x47" + bytes(187)) * 2
    media = read_media(Fetched(segment=segment, data=data)).segment.media
    assert media is not None
    assert (media.size, media.packets) == (376, 2)
    assert read_media(Fetched(segment=segment, data=b"")).segment.media is None


def test_fetch_segment_gives_up_after_attempts():
    [segment] = build_segments(parse_playlist(make_playlist(count=1)), recording=REC)
    listed = {segment.key: ObjectInfo(segment.key, 376, "e")}
    with pytest.raises(StorageError, match="after 2 attempts"):
        fetch_segment(segment, storage=ShrinkingStorage([188]), listed=listed, attempts=2, max_bytes=1000)


def test_fetch_segment_of_a_missing_object_has_no_data(tmp_path):
    [segment] = build_segments(parse_playlist(make_playlist(count=1)), recording=REC)
    fetched = fetch_segment(segment, storage=LocalStorage(tmp_path), listed={}, attempts=1, max_bytes=1000)
    assert (fetched.data, fetched.segment.size, fetched.segment.present) == (None, None, False)


def test_map_in_order_keeps_the_byte_budget():
    """No more than ``budget`` bytes are submitted and not yet consumed, but an item over it still goes."""
    events = []

    def fetch(n):
        events.append(f"get {n}")
        return n

    sizes = [40, 40, 40, 150, 10, 10]
    for n in map_in_order(fetch, range(len(sizes)), executor=InlineExecutor(), window=10,
                          weight=lambda i: sizes[i], budget=100):  # fmt: skip
        events.append(f"use {n}")
    assert events == [
        "get 0", "get 1",  # 40 + 40; a third 40 would pass 100
        "get 2", "use 0",  # 0 is being used: 1 and 2 wait
        "use 1",  # 150 does not fit beside 2
        "get 3", "use 2",  # nothing else waits, so 150 goes alone
        "get 4", "get 5", "use 3", "use 4", "use 5",
    ]  # fmt: skip


# --- backup uploads: the recording's playlists -------------------------------------------------------


def backed_up(tmp_path, playlists: dict[str, str], *, slices=range(4)):
    """A local recording with the given playlists (name → text) and slices; discovered as recpipe does."""
    store = LocalStorage(tmp_path)
    for name, text in playlists.items():
        (tmp_path / "rec").mkdir(exist_ok=True)
        (tmp_path / "rec" / name).write_text(text)
    for n in slices:
        (tmp_path / "rec" / slice_uri(n)).write_bytes(b"\x47" + bytes(187))
    [rec] = find_recordings(store, "rec/")
    return store, rec


def local_ctx(store, tmp_path) -> StageContext:
    """A run's context on a local store, outputs beside the recording."""
    destination = Destination(storage=store, directory="rec/")
    return StageContext(storage=store, destination=destination, workdir=tmp_path, config=PipelineConfig())


SNAPSHOT = f"{SID}_{CNAME}_1768469400_0.m3u8"


def test_fetch_uses_the_snapshot_that_finished_the_recording(tmp_path):
    store, rec = backed_up(
        tmp_path,
        {f"{SID}_{CNAME}.m3u8": make_playlist(count=2, endlist=False), SNAPSHOT: make_playlist(count=4)},
    )
    job = FetchStage().run(Job(recording=rec), local_ctx(store, tmp_path))
    assert (job.endlist, job.playlists, len(job.segments)) == (True, (f"rec/{SNAPSHOT}",), 4)
    assert [s.present for s in job.segments] == [True] * 4
    [finding] = job.findings
    assert (finding.code, finding.severity) == ("PLAYLIST_SNAPSHOTS", "info")
    assert "2 of 4 entries are listed only by snapshot playlists" in finding.detail


def test_a_recording_without_snapshots_reads_its_playlist_alone(tmp_path):
    store, rec = backed_up(tmp_path, {f"{SID}_{CNAME}.m3u8": make_playlist(count=4)})
    choice = read_playlists(store, rec, max_bytes=10_000, max_entries=10)
    assert (choice.how, choice.used, choice.snapshots) == ("picked", (f"rec/{SID}_{CNAME}.m3u8",), ())


def test_an_unreadable_snapshot_playlist_is_named(tmp_path):
    store, rec = backed_up(tmp_path, {f"{SID}_{CNAME}.m3u8": make_playlist(count=4), SNAPSHOT: "garbage"})
    with pytest.raises(PlaylistError, match=f"{SNAPSHOT}: playlist does not start with #EXTM3U"):
        read_playlists(store, rec, max_bytes=10_000, max_entries=10)


def test_snapshot_playlists_are_bounded(tmp_path):
    many = tuple(ObjectInfo(f"rec/{SID}_{CNAME}_1768469400_{i}.m3u8", 10, "e") for i in range(101))
    rec = replace(REC, snapshots=many)
    with pytest.raises(PlaylistError, match="101 snapshot playlists, over the limit of 100"):
        read_playlists(LocalStorage(tmp_path), rec, max_bytes=10_000, max_entries=10)


def test_all_playlists_together_are_bounded(tmp_path):
    snapshots = {f"{SID}_{CNAME}_1768469400_{i}.m3u8": make_playlist(count=3) for i in range(4)}
    store, rec = backed_up(tmp_path, {f"{SID}_{CNAME}.m3u8": make_playlist(count=3), **snapshots})
    with pytest.raises(PlaylistError, match="over 12 entries together"):
        read_playlists(store, rec, max_bytes=10_000, max_entries=3)


def test_a_slice_listed_many_times_is_read_once(tmp_path):
    """Read amplification: however often the playlist lists an object, it is read once per run."""
    reads: list[str] = []

    class Counting(LocalStorage):
        def read_bytes(self, key: str, *, max_bytes: int) -> bytes:
            reads.append(key)
            return super().read_bytes(key, max_bytes=max_bytes)

    uri = slice_uri(0)
    text = make_playlist(count=2).replace(slice_uri(1), uri)
    text = text.replace(
        "#EXT-X-ENDLIST\n", "".join(f"#EXTINF:15.000000,\n{uri}\n" for _ in range(400)) + "#EXT-X-ENDLIST\n"
    )
    _, rec = backed_up(tmp_path, {f"{SID}_{CNAME}.m3u8": text}, slices=[0])
    store = Counting(tmp_path)
    job = FetchStage(executor_factory=lambda n: InlineExecutor()).run(
        Job(recording=rec), local_ctx(store, tmp_path)
    )
    assert len(job.segments) == 402
    assert reads.count(f"rec/{uri}") == 1
    assert all(s.present and s.size == 188 for s in job.segments)


# --- the slice consumer ------------------------------------------------------------------------------


class Recorder:
    """A slice consumer that notes what it was given; ``start`` runs ``on_start`` first."""

    def __init__(self, on_start=lambda: None):
        self.on_start = on_start
        self.added: list[int] = []
        self.finished: bool | None = None

    def start(self, job, ctx):
        self.on_start()

    def add(self, fetched: Fetched) -> None:
        self.added.append(fetched.segment.index)

    def finish(self, *, ok: bool) -> None:
        self.finished = ok


def consumer_run(tmp_path, consumer, *, count=6, storage_class=LocalStorage):
    _, rec = backed_up(tmp_path, {f"{SID}_{CNAME}.m3u8": make_playlist(count=count)}, slices=range(count))
    return FetchStage(consumer=consumer).run(Job(recording=rec), local_ctx(storage_class(tmp_path), tmp_path))


def test_the_consumer_gets_ready_while_the_first_slices_download(tmp_path):
    """The remux feeder's start asks the destination a question (a round trip): the slices do not wait."""
    first_read = threading.Event()

    class Watched(LocalStorage):
        def read_bytes(self, key: str, *, max_bytes: int) -> bytes:
            if key.endswith(".ts"):
                first_read.set()
            return super().read_bytes(key, max_bytes=max_bytes)

    consumer = Recorder(on_start=lambda: first_read.wait(timeout=5) or pytest.fail("no slice was read"))
    job = consumer_run(tmp_path, consumer, storage_class=Watched)
    assert (consumer.added, consumer.finished) == (list(range(6)), True)
    assert all(s.present for s in job.segments)


def test_a_consumer_that_cannot_get_ready_fails_the_fetch_before_its_first_slice(tmp_path):
    def refuse():
        raise StorageError("the destination cannot be asked", key="rec/x.mp4")

    consumer = Recorder(on_start=refuse)
    with pytest.raises(StorageError, match="cannot be asked"):
        consumer_run(tmp_path, consumer)
    assert (consumer.added, consumer.finished) == ([], False)


# --- the head start: slices read while the playlist is read ------------------------------------------


def test_head_start_keys():
    slices = tuple(ObjectInfo(f"rec/{slice_uri(n)}", 100, "e") for n in range(10))
    playlist = ObjectInfo(REC.playlist_key, 10, "e", modified=1000.0)
    rec = replace(REC, slices=slices, playlist=playlist)

    def keys(rec, **kw):
        return head_start_keys(rec, **{"count": 3, "quiet_s": 60.0, "budget": 10_000, "now": 1060.0, **kw})

    assert keys(rec) == tuple(s.key for s in slices[:3])
    assert keys(rec, now=1059.9) == ()  # the playlist is younger: the recording may be going on
    assert keys(rec, count=0) == ()
    assert keys(rec, budget=250) == tuple(s.key for s in slices[:2])
    assert keys(rec, budget=50) == (slices[0].key,)  # the first goes alone
    assert keys(replace(rec, playlist=replace(playlist, modified=None))) == ()  # the store did not say
    assert keys(replace(rec, playlist=None)) == ()
    assert keys(replace(rec, snapshots=(playlist,))) == ()
    assert keys(replace(rec, failovers=(REC,))) == ()


class PlaylistLast(LocalStorage):
    """Notes every read; reading a playlist waits (at most 5 s) for ``wait_for`` slice reads to begin,
    and notes how many had."""

    def __init__(self, root, *, wait_for: int = 0, broken: str | None = None):
        super().__init__(root)
        self.reads: list[str] = []
        self.before_playlist: int | None = None
        self.wait_for = wait_for
        self.broken = broken
        self.changed = threading.Condition()

    def slice_reads(self) -> int:
        return sum(key.endswith(".ts") for key in self.reads)

    def read_bytes(self, key: str, *, max_bytes: int) -> bytes:
        with self.changed:
            self.reads.append(key)
            self.changed.notify_all()
            if key.endswith(".m3u8"):
                self.changed.wait_for(lambda: self.slice_reads() >= self.wait_for, timeout=5)
                self.before_playlist = self.slice_reads()
        if key == self.broken:
            raise StorageError("read failed", key=key)
        return super().read_bytes(key, max_bytes=max_bytes)


def aged_run(
    tmp_path, text: str, *, age_s: float, storage: PlaylistLast, head_start: int = 3, count: int = 6
):
    """A fetch of a local recording whose playlist was last written ``age_s`` ago."""
    _, rec = backed_up(tmp_path, {f"{SID}_{CNAME}.m3u8": text}, slices=range(count))
    when = time.time() - age_s
    os.utime(tmp_path / "rec" / f"{SID}_{CNAME}.m3u8", (when, when))
    [rec] = find_recordings(storage, "rec/")
    config = PipelineConfig(fetch_head_start=head_start)
    ctx = replace(local_ctx(storage, tmp_path), config=config)
    return FetchStage().run(Job(recording=rec), ctx)


def test_the_first_slices_are_read_while_the_playlist_is_read(tmp_path):
    storage = PlaylistLast(tmp_path, wait_for=3)
    job = aged_run(tmp_path, make_playlist(count=6), age_s=3600, storage=storage)
    assert storage.before_playlist == 3
    assert sorted(storage.reads) == sorted(
        [f"rec/{SID}_{CNAME}.m3u8"] + [f"rec/{slice_uri(n)}" for n in range(6)]
    )
    assert [(s.present, s.size, s.media is not None) for s in job.segments] == [(True, 188, True)] * 6


def test_no_head_start_for_a_playlist_just_written_or_when_off(tmp_path):
    fresh = PlaylistLast(tmp_path)
    aged_run(tmp_path, make_playlist(count=6), age_s=5, storage=fresh)
    assert fresh.before_playlist == 0
    off = PlaylistLast(tmp_path)
    aged_run(tmp_path, make_playlist(count=6), age_s=3600, storage=off, head_start=0)
    assert off.before_playlist == 0


def test_an_unfinished_playlist_reads_no_more_than_the_head_start(tmp_path):
    storage = PlaylistLast(tmp_path, wait_for=3)
    job = aged_run(tmp_path, make_playlist(count=6, endlist=False), age_s=3600, storage=storage)
    assert storage.slice_reads() == 3
    assert not any(s.present for s in job.segments)
    assert "NO_ENDLIST" in {f.code for f in job.findings}


def test_a_read_ahead_fails_the_fetch_as_any_read_would(tmp_path):
    storage = PlaylistLast(tmp_path, wait_for=3, broken=f"rec/{slice_uri(1)}")
    with pytest.raises(StorageError, match="read failed"):
        aged_run(tmp_path, make_playlist(count=6), age_s=3600, storage=storage)


def test_a_read_ahead_the_playlist_does_not_name_is_dropped(tmp_path):
    """Its error too: the playlist decides what is read."""
    storage = PlaylistLast(tmp_path, wait_for=3, broken=f"rec/{slice_uri(0)}")
    text = make_playlist(count=3, uris={n: slice_uri(n + 1) for n in range(3)})
    job = aged_run(tmp_path, text, age_s=3600, storage=storage, count=4)
    assert [s.key for s in job.segments] == [f"rec/{slice_uri(n)}" for n in (1, 2, 3)]
    assert all(s.present for s in job.segments)
