"""The published MP4, built from ffmpeg's fragmented output: packet for packet what ffmpeg's own
regular MP4 of the same input holds, with moov first. Real ffmpeg, real recordings."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.model.exceptions import MediaError, NoSpace
from stages.ffmpeg import remux_argv
from stages.media import faststart
from stages.media.faststart import (
    Layout,
    block_groups,
    layout_of,
    moov_first,
    plan,
    read_pieces,
    reserve,
    sha256_of,
)
from stages.media.fragments import read_fragmented
from stages.media.mp4 import parse_boxes, read_mp4
from tests.media_builders import BITEXACT, av_source_args

pytestmark = pytest.mark.ffmpeg

SLICES = sorted((Path(__file__).resolve().parents[3] / "sample_data" / "recordings").glob("*.ts"))


def make_ts(ffmpeg: str, out: Path, *, seconds: float = 3, video: bool = True, audio: bool = True,
            bframes: int = 0, offset_s: float = 0, size: str = "160x120",
            lossless: bool = False) -> bytes:  # fmt: skip
    argv = [ffmpeg, "-nostdin", "-loglevel", "error", "-y",
            *av_source_args(seconds=seconds, video=video, audio=audio, size=size), *BITEXACT]  # fmt: skip
    if video:
        argv[argv.index("-bf") + 1] = str(bframes)
        argv += ["-qp", "0", "-vf", "noise=alls=60:allf=t"] if lossless else []  # frames of ~120 KB
    argv += ["-output_ts_offset", str(offset_s), "-f", "mpegts", str(out)]
    subprocess.run(argv, check=True, capture_output=True)
    return out.read_bytes()


def fragmented(ffmpeg: str, ts: bytes, out: Path) -> Path:
    """What recpipe's ffmpeg writes for ``ts``."""
    argv = remux_argv(ffmpeg, output=out)
    subprocess.run(argv, input=ts, check=True)
    return out


def regular(ffmpeg: str, ts: bytes, out: Path) -> Path:
    """ffmpeg's own regular MP4 of ``ts``: the reference."""
    subprocess.run(
        [ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-f", "mpegts", "-i", "pipe:0", "-map", "0:v?",
         "-map", "0:a?", "-c", "copy", "-bsf:a", "aac_adtstoasc", "-fflags", "+bitexact", "-f", "mp4",
         str(out)],
        input=ts, check=True,
    )  # fmt: skip
    return out


def packets(ffmpeg: str, mp4: Path) -> str:
    """Every packet as ffmpeg's demuxer reads it: stream, dts, pts, duration, size and md5."""
    argv = [
        ffmpeg,
        "-nostdin",
        "-loglevel",
        "error",
        "-i",
        str(mp4),
        "-map",
        "0",
        "-c",
        "copy",
        "-f",
        "framemd5",
        "-",
    ]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def decodes_cleanly(ffmpeg: str, mp4: Path) -> bool:
    run = subprocess.run(
        [ffmpeg, "-nostdin", "-v", "error", "-i", str(mp4), "-f", "null", "-"], capture_output=True
    )
    return run.returncode == 0 and not run.stderr


def publish(src: Path, dest: Path) -> tuple[Layout, str]:
    layout = plan(src)
    return layout, moov_first(src, dest, layout=layout)


CASES = {
    "audio and video": {},
    "B-frames": {"bframes": 2},
    "audio only": {"video": False},
    "video only": {"audio": False},
    "late start": {"offset_s": 7.5},
}


@pytest.mark.parametrize("case", CASES)
def test_same_packets_as_ffmpegs_regular_mp4(case, ffmpeg_exe, tmp_path):
    ts = make_ts(ffmpeg_exe, tmp_path / "in.ts", **CASES[case])  # type: ignore[arg-type]
    theirs = regular(ffmpeg_exe, ts, tmp_path / "theirs.mp4")
    layout, sha256 = publish(fragmented(ffmpeg_exe, ts, tmp_path / "frag.mp4"), tmp_path / "ours.mp4")
    ours = tmp_path / "ours.mp4"
    assert packets(ffmpeg_exe, ours) == packets(ffmpeg_exe, theirs)
    assert (ours.stat().st_size, sha256) == (layout.size, hashlib.sha256(ours.read_bytes()).hexdigest())
    mine, reference = read_mp4(ours), read_mp4(theirs)
    assert mine.faststart
    assert [(t.kind, t.duration_s, t.sample_count, t.sample_durations) for t in mine.tracks] == [
        (t.kind, t.duration_s, t.sample_count, t.sample_durations) for t in reference.tracks
    ]
    assert mine.duration_s == reference.duration_s
    assert [b.type for b in parse_boxes(ours.read_bytes())] == ["ftyp", "moov", "mdat"]
    assert decodes_cleanly(ffmpeg_exe, ours)


def test_sample_recording_keeps_the_video_start_offset(ffmpeg_exe, tmp_path):
    """The sample recording's video starts 21 ms after its audio: an empty edit, as ffmpeg writes it."""
    ts = b"".join(p.read_bytes() for p in SLICES)
    theirs = regular(ffmpeg_exe, ts, tmp_path / "theirs.mp4")
    layout, _ = publish(fragmented(ffmpeg_exe, ts, tmp_path / "frag.mp4"), tmp_path / "ours.mp4")
    assert packets(ffmpeg_exe, tmp_path / "ours.mp4") == packets(ffmpeg_exe, theirs)
    moov = lambda path: next(b for b in parse_boxes(path.read_bytes()) if b.type == "moov")  # noqa: E731
    elst = lambda data: data[data.index(b"elst") - 4 :][: int.from_bytes(data[data.index(b"elst") - 4 :][:4])]  # noqa: E731
    ours_moov = (tmp_path / "ours.mp4").read_bytes()[moov(tmp_path / "ours.mp4").offset :]
    theirs_moov = theirs.read_bytes()[moov(theirs).offset :]
    assert elst(ours_moov) == elst(theirs_moov)
    assert layout.info().duration_s == read_mp4(theirs).duration_s


def test_a_timestamp_jump_becomes_a_longer_last_sample_as_in_ffmpegs_regular_mp4(ffmpeg_exe, tmp_path):
    """Input with a 0.6 s hole (recpipe closes longer ones before ffmpeg sees them)."""
    ts = make_ts(ffmpeg_exe, tmp_path / "a.ts", seconds=2) + make_ts(
        ffmpeg_exe, tmp_path / "b.ts", seconds=2, offset_s=2.6
    )
    theirs = regular(ffmpeg_exe, ts, tmp_path / "theirs.mp4")
    publish(fragmented(ffmpeg_exe, ts, tmp_path / "frag.mp4"), tmp_path / "ours.mp4")
    assert packets(ffmpeg_exe, tmp_path / "ours.mp4") == packets(ffmpeg_exe, theirs)


def test_64_bit_chunk_offsets_play_the_same(ffmpeg_exe, tmp_path):
    """Past 4 GiB the chunk offsets need co64; forced here on a small file."""
    source = fragmented(ffmpeg_exe, make_ts(ffmpeg_exe, tmp_path / "in.ts"), tmp_path / "frag.mp4")
    wide = layout_of(read_fragmented(source), wide=True)
    moov_first(source, tmp_path / "wide.mp4", layout=wide)
    publish(source, tmp_path / "narrow.mp4")
    assert b"co64" in wide.head
    assert b"stco" not in wide.head
    assert packets(ffmpeg_exe, tmp_path / "wide.mp4") == packets(ffmpeg_exe, tmp_path / "narrow.mp4")


def test_frames_over_64_kb_play_the_same(ffmpeg_exe, tmp_path):
    """Sample sizes are kept in two bytes while they fit (``SampleTable.sizes``): lossless frames of
    noise do not, so the video's column is four bytes wide and the MP4 still holds what ffmpeg's own
    does; the audio's stays narrow (widening mid-track: ``test_fragments``)."""
    ts = make_ts(ffmpeg_exe, tmp_path / "in.ts", seconds=2, size="320x240", lossless=True)
    frag = fragmented(ffmpeg_exe, ts, tmp_path / "frag.mp4")
    columns = {table.track_id: table.sizes for table in read_fragmented(frag).tables.values()}
    assert sorted(column.typecode for column in columns.values()) == ["H", "I"]
    assert max(max(column) for column in columns.values()) > 0xFFFF
    theirs = regular(ffmpeg_exe, ts, tmp_path / "theirs.mp4")
    publish(frag, tmp_path / "ours.mp4")
    assert packets(ffmpeg_exe, tmp_path / "ours.mp4") == packets(ffmpeg_exe, theirs)


def test_sha256_of_matches_what_is_written(ffmpeg_exe, tmp_path):
    source = fragmented(ffmpeg_exe, make_ts(ffmpeg_exe, tmp_path / "in.ts"), tmp_path / "frag.mp4")
    layout = plan(source)
    assert sha256_of(layout, source) == moov_first(source, tmp_path / "copy.mp4")


def test_a_synced_output_is_written_out_as_it_grows_then_fsynced(ffmpeg_exe, tmp_path, monkeypatch):
    """With ``sync`` the bytes are the same; the kernel is asked to write them out every
    ``WRITEBACK_BYTES`` (contiguous ranges from the end of the head, on a thread of their own), and the
    file is fsynced after every such request, before ``moov_first`` returns."""
    source = fragmented(ffmpeg_exe, make_ts(ffmpeg_exe, tmp_path / "in.ts", seconds=21), tmp_path / "f.mp4")
    layout = plan(source)
    every = layout.size // 8
    monkeypatch.setattr(faststart, "WRITEBACK_BYTES", every)
    advised: list[tuple[int, int, int]] = []
    synced: list[int] = []
    real_advise, real_fsync = faststart.os.posix_fadvise, faststart.os.fsync

    def advise(fd: int, offset: int, length: int, advice: int) -> None:
        advised.append((offset, length, advice))
        real_advise(fd, offset, length, advice)

    def fsync(fd: int) -> None:
        synced.append(len(advised))
        real_fsync(fd)

    monkeypatch.setattr(faststart.os, "posix_fadvise", advise)
    monkeypatch.setattr(faststart.os, "fsync", fsync)
    sha256 = moov_first(source, tmp_path / "synced.mp4", layout=layout, sync=True)
    assert synced, "the output was not fsynced"
    monkeypatch.setattr(faststart.os, "fsync", real_fsync)
    assert sha256 == moov_first(source, tmp_path / "plain.mp4", layout=layout)
    assert (tmp_path / "synced.mp4").read_bytes() == (tmp_path / "plain.mp4").read_bytes()
    assert len(advised) >= 4
    assert synced == [len(advised)], "fsynced before every writeback was asked for"
    assert {advice for _, _, advice in advised} == {faststart.os.POSIX_FADV_DONTNEED}
    assert advised[0][0] == len(layout.head)
    for (offset, length, _), (following, _, _) in itertools.pairwise(advised):
        assert offset + length == following
        assert length >= every
    assert advised[-1][0] + advised[-1][1] <= layout.size


def test_an_unsynced_output_is_left_to_the_kernel(ffmpeg_exe, tmp_path, monkeypatch):
    source = fragmented(ffmpeg_exe, make_ts(ffmpeg_exe, tmp_path / "in.ts"), tmp_path / "f.mp4")
    monkeypatch.setattr(faststart, "WRITEBACK_BYTES", 1024)
    calls: list[str] = []
    monkeypatch.setattr(faststart.os, "posix_fadvise", lambda *args: calls.append("fadvise"))
    monkeypatch.setattr(faststart.os, "fsync", lambda fd: calls.append("fsync"))
    moov_first(source, tmp_path / "out.mp4")
    assert calls == []


needs_fallocate = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="fallocate is Linux's; elsewhere the copy allocates"
)


@needs_fallocate
def test_the_output_is_given_its_disk_space_before_the_copy(ffmpeg_exe, tmp_path, monkeypatch):
    """``moov_first`` asks for the whole output's blocks at once, before writing any of it; the bytes are
    those written without asking."""
    assert faststart._FALLOCATE is not None, "libc's fallocate64 was not found on Linux"
    source = fragmented(ffmpeg_exe, make_ts(ffmpeg_exe, tmp_path / "in.ts"), tmp_path / "f.mp4")
    layout = plan(source)
    seen: list[tuple[int, int]] = []
    real_reserve = faststart.reserve

    def watched(fd: int, size: int) -> None:
        real_reserve(fd, size)
        stat = os.fstat(fd)
        seen.append((stat.st_size, stat.st_blocks * 512))

    monkeypatch.setattr(faststart, "reserve", watched)
    sha256 = moov_first(source, tmp_path / "reserved.mp4", layout=layout, sync=True)
    assert len(seen) == 1
    size, allocated = seen[0]
    assert size == layout.size, "the file did not get its full size at once"
    assert allocated >= layout.size, "the file system did not allocate the blocks ahead"
    monkeypatch.setattr(faststart, "_FALLOCATE", None)  # a libc without it: the copy allocates
    monkeypatch.setattr(faststart, "reserve", real_reserve)
    assert moov_first(source, tmp_path / "plain.mp4", layout=layout) == sha256
    assert (tmp_path / "reserved.mp4").read_bytes() == (tmp_path / "plain.mp4").read_bytes()


@needs_fallocate
def test_a_file_the_file_system_cannot_hold_is_refused_before_it_is_written(tmp_path):
    """More than any file system here can hold (ext4's and tmpfs' largest file are far smaller): the
    error names the size and is ``NoSpace`` (retryable: another worker may have the room), and nothing
    was allocated."""
    with (tmp_path / "huge.mp4").open("xb") as out:
        with pytest.raises(NoSpace, match=str(1 << 62)):
            reserve(out.fileno(), 1 << 62)
        assert os.fstat(out.fileno()).st_size == 0
        reserve(out.fileno(), 4096)
        assert os.fstat(out.fileno()).st_size == 4096


def test_not_an_mp4(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes((16).to_bytes(4, "big") + b"free" + bytes(8))
    with pytest.raises(MediaError, match="no moov"):
        plan(junk)


def test_a_truncated_fragment_is_refused(ffmpeg_exe, tmp_path):
    source = fragmented(ffmpeg_exe, make_ts(ffmpeg_exe, tmp_path / "in.ts"), tmp_path / "frag.mp4")
    data = source.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: data.rindex(b"mdat") + 100])
    with pytest.raises(MediaError, match=r"cut\.mp4"):
        plan(cut)


def media_with_gaps(
    tmp_path_factory: pytest.TempPathFactory, gaps_and_sizes: list[tuple[int, int]]
) -> tuple[Path, list[tuple[int, int]], bytes]:
    """A file of known bytes and ranges of it, each after a gap: its path, the ranges, its bytes."""
    data = bytes(range(256)) * 40
    ranges, at = [], 0
    for gap, size in gaps_and_sizes:
        at += gap
        ranges.append((at, at + size))
        at += size
    path = tmp_path_factory.mktemp("media") / "media"
    path.write_bytes(data[:at])
    return path, ranges, data


@given(
    gaps_and_sizes=st.lists(st.tuples(st.integers(0, 40), st.integers(1, 300)), min_size=1, max_size=30),
    block=st.integers(1, 700),
)
def test_block_groups_join_the_ranges_in_order(tmp_path_factory, gaps_and_sizes, block):
    """Whatever the block size, the groups' bytes are the ranges' bytes in order, each at most a block."""
    path, ranges, data = media_with_gaps(tmp_path_factory, gaps_and_sizes)
    with pytest.MonkeyPatch.context() as patch, path.open("rb") as f:
        patch.setattr(faststart, "BLOCK", block)
        blocks = [read_pieces(f.fileno(), group, name="media") for group in block_groups(ranges)]
    assert b"".join(blocks) == b"".join(data[a:b] for a, b in ranges)
    assert all(len(b) <= block for b in blocks)


@given(
    gaps_and_sizes=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 300)), min_size=0, max_size=30),
    block=st.integers(1, 700),
)
def test_the_hash_of_a_layout_is_that_of_its_bytes_mapped_or_read(tmp_path_factory, gaps_and_sizes, block):
    """sha256_of hashes the head and the ranges from a mapping of the file, in blocks; the digest is
    that of the bytes the layout describes, whatever the block size, pieces joined or not, and the same
    when the file is read instead of mapped."""
    path, ranges, data = media_with_gaps(tmp_path_factory, gaps_and_sizes)
    layout = Layout(head=b"head", ranges=tuple(ranges))
    expected = hashlib.sha256(b"head" + b"".join(data[a:b] for a, b in ranges)).hexdigest()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(faststart, "BLOCK", block)
        patch.setattr(faststart, "SPAN", block)
        assert sha256_of(layout, path) == expected
        assert sha256_of(layout, path, join=False) == expected
        patch.setattr(faststart.mmap, "mmap", refuse_to_map)
        assert sha256_of(layout, path) == expected
        assert sha256_of(layout, path, join=False) == expected


def refuse_to_map(*args: object, **kwargs: object) -> None:
    raise OSError("no mapping here")


def test_a_file_shorter_than_its_layout_is_refused_mapped_or_read(tmp_path, monkeypatch):
    path = tmp_path / "media"
    path.write_bytes(b"0123456789")
    layout = Layout(head=b"h", ranges=((2, 4), (6, 14)))
    with pytest.raises(MediaError, match="media ended"):
        sha256_of(layout, path)
    monkeypatch.setattr(faststart.mmap, "mmap", refuse_to_map)
    with pytest.raises(MediaError, match="media ended"):
        sha256_of(layout, path)


@pytest.mark.parametrize("join", ["join", "pieces"])
def test_hashing_holds_a_block_of_the_file_not_all_of_it(tmp_path, join):
    """Mapped pages count in a process's resident memory: a mapping of the whole MP4 made an hour's run
    peak at 300 MB instead of 110. Each stretch (``BLOCK`` joined, ``SPAN`` not) is unmapped once
    hashed (checked in a fresh process, whose peak is its own)."""
    path = tmp_path / "media"
    with path.open("wb") as f:
        for _ in range(96):
            f.write(os.urandom(1024 * 1024))
    script = (
        "import resource, sys; from pathlib import Path\n"
        "from stages.media.faststart import Layout, sha256_of\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "size = Path(sys.argv[1]).stat().st_size\n"
        "ranges = tuple((a, min(a + 300_000, size)) for a in range(0, size, 300_016))\n"
        "sha256_of(Layout(head=b'', ranges=ranges), Path(sys.argv[1]), join=sys.argv[2] == 'join')\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path), join], capture_output=True, text=True, check=True
    )
    grown_mb = int(done.stdout) / 1024
    stretch_mb = (faststart.BLOCK if join == "join" else faststart.SPAN) / 1024 / 1024
    assert grown_mb < stretch_mb + 6, f"hashing 96 MB grew the process by {grown_mb:.0f} MB"


def test_read_pieces_with_a_prefix_and_a_short_file(tmp_path):
    path = tmp_path / "media"
    path.write_bytes(b"0123456789")
    with path.open("rb") as f:
        assert read_pieces(f.fileno(), [(1, 2), (5, 3)], name="media", prefix=b"head:") == b"head:12567"
        assert read_pieces(f.fileno(), [(2, 3)], name="media") == b"234"
        assert read_pieces(f.fileno(), [], name="media", prefix=b"h") == b"h"
        with pytest.raises(MediaError, match="ended"):
            read_pieces(f.fileno(), [(8, 5)], name="media")
