"""The MP4 reader on real ffmpeg output, hand-built boxes, and fuzzed bytes."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.model.exceptions import MediaError
from stages.media.mp4 import Box, Mp4Info, parse_box_header, parse_boxes, parse_mp4_bytes, read_mp4
from tests.media_builders import make_av_mp4

# --- hand-built boxes -------------------------------------------------------------------------------


def box(kind: str, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind.encode()) + body


def full(version: int) -> bytes:
    return struct.pack(">B3x", version)


def mvhd(*, timescale: int, duration: int, version: int = 0) -> bytes:
    times = (
        struct.pack(">QQIQ", 0, 0, timescale, duration)
        if version
        else struct.pack(">IIII", 0, 0, timescale, duration)
    )
    return box("mvhd", full(version), times, bytes(80))


def tkhd(*, track_id: int, width: float = 0, height: float = 0, version: int = 0) -> bytes:
    ids = (
        struct.pack(">QQIIQ", 0, 0, track_id, 0, 0)
        if version
        else struct.pack(">IIIII", 0, 0, track_id, 0, 0)
    )
    size = struct.pack(">II", int(width * 65536), int(height * 65536))
    return box("tkhd", full(version), ids, bytes(52), size)


def mdhd(*, timescale: int, duration: int, version: int = 0) -> bytes:
    times = (
        struct.pack(">QQIQ", 0, 0, timescale, duration)
        if version
        else struct.pack(">IIII", 0, 0, timescale, duration)
    )
    return box("mdhd", full(version), times, bytes(4))


def trak(*, track_id: int, handler: str, codec: str, samples: int, version: int = 0, **size: float) -> bytes:
    stbl = box(
        "stbl",
        box("stsd", full(0), struct.pack(">I", 1), box(codec, bytes(8))),
        box("stts", full(0), bytes(4)),
        box("stsz", full(0), struct.pack(">II", 0, samples), bytes(4 * samples)),
    )
    mdia = box(
        "mdia",
        mdhd(timescale=1000, duration=3000, version=version),
        box("hdlr", full(0), bytes(4), handler.encode(), bytes(12), b"handler\0"),
        box("minf", stbl),
    )
    return box("trak", tkhd(track_id=track_id, version=version, **size), mdia)


def movie(*, version: int = 0) -> bytes:
    return box(
        "moov",
        mvhd(timescale=600, duration=1800, version=version),
        trak(track_id=1, handler="vide", codec="avc1", samples=90, version=version, width=1280, height=720),
        trak(track_id=2, handler="soun", codec="mp4a", samples=141, version=version),
        trak(track_id=3, handler="text", codec="tx3g", samples=2, version=version),
    )


FTYP = box("ftyp", b"isom", struct.pack(">I", 512), b"isomiso2avc1mp41")

# --- real files from ffmpeg --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def real_mp4(tmp_path_factory, ffmpeg_exe) -> bytes:
    path = tmp_path_factory.mktemp("mp4") / "small.mp4"
    return make_av_mp4(path, seconds=1, ffmpeg=ffmpeg_exe).read_bytes()


@pytest.mark.ffmpeg
@pytest.mark.parametrize("faststart", [True, False])
def test_audio_and_video(tmp_path, ffmpeg_exe, faststart):
    info = read_mp4(make_av_mp4(tmp_path / "av.mp4", seconds=2, faststart=faststart, ffmpeg=ffmpeg_exe))
    assert info.track_kinds == ("video", "audio")
    assert [t.codec for t in info.tracks] == ["avc1", "mp4a"]
    assert info.duration_s == pytest.approx(2.0, abs=0.05)
    assert info.faststart is faststart
    video, audio = info.tracks
    assert (video.width, video.height) == (160, 120)
    assert (audio.width, audio.height) == (None, None)
    assert video.sample_count == 30  # 2 s at 15 fps
    assert audio.sample_count == pytest.approx(2 * 48000 / 1024, abs=3)
    assert video.duration_s == pytest.approx(2.0, abs=0.05)
    assert audio.timescale == 48000


@pytest.mark.ffmpeg
@pytest.mark.parametrize(
    ("video", "audio", "kinds", "codecs"),
    [
        pytest.param(True, False, ("video",), ["avc1"], id="video-only"),
        pytest.param(False, True, ("audio",), ["mp4a"], id="audio-only"),
    ],
)
def test_single_track(tmp_path, ffmpeg_exe, video, audio, kinds, codecs):
    path = make_av_mp4(tmp_path / "one.mp4", seconds=2, video=video, audio=audio, ffmpeg=ffmpeg_exe)
    info = read_mp4(path)
    assert info.track_kinds == kinds
    assert [t.codec for t in info.tracks] == codecs
    assert info.duration_s == pytest.approx(2.0, abs=0.05)
    assert info.faststart


@pytest.mark.ffmpeg
def test_top_level_boxes_of_a_real_file(real_mp4):
    kinds = [b.type for b in parse_boxes(real_mp4)]
    assert kinds[0] == "ftyp"
    assert kinds.index("moov") < kinds.index("mdat")
    assert sum(b.size for b in parse_boxes(real_mp4)) == len(real_mp4)


# --- hand-built files --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 1])
def test_hand_built_versions(version):
    info = parse_mp4_bytes(FTYP + movie(version=version) + box("mdat", bytes(100)))
    assert info.duration_s == 3.0
    assert info.track_kinds == ("video", "audio", "text")
    assert [t.codec for t in info.tracks] == ["avc1", "mp4a", "tx3g"]
    assert [t.sample_count for t in info.tracks] == [90, 141, 2]
    assert [(t.width, t.height) for t in info.tracks] == [(1280, 720), (None, None), (None, None)]
    assert [t.track_id for t in info.tracks] == [1, 2, 3]
    assert all(t.duration_s == 3.0 and t.timescale == 1000 for t in info.tracks)
    assert info.faststart


def test_mdat_first_is_not_faststart():
    assert not parse_mp4_bytes(FTYP + box("mdat", bytes(10)) + movie()).faststart


def test_no_mdat_counts_as_faststart():
    assert parse_mp4_bytes(FTYP + movie()).faststart


def test_mdat_to_end_of_file():
    data = FTYP + movie() + struct.pack(">I4s", 0, b"mdat") + bytes(1000)
    assert parse_boxes(data)[-1] == Box(type="mdat", offset=len(FTYP + movie()), header=8, size=1008)
    assert parse_mp4_bytes(data).duration_s == 3.0


def test_large_sparse_mdat_is_not_read(tmp_path):
    head = FTYP + movie()
    big = 5 * 2**30  # past 4 GiB: needs the 64-bit size
    path = tmp_path / "big.mp4"
    with path.open("wb") as f:
        f.write(head + struct.pack(">I4sQ", 1, b"mdat", big))
        f.truncate(len(head) + big)
    info = read_mp4(path)
    assert info.track_kinds == ("video", "audio", "text")
    assert info.faststart


def test_fragmented_style_zero_movie_duration_uses_longest_track():
    moov = box(
        "moov", mvhd(timescale=600, duration=0), trak(track_id=1, handler="vide", codec="avc1", samples=1)
    )
    assert parse_mp4_bytes(FTYP + moov).duration_s == 3.0


@pytest.mark.parametrize(
    ("head", "offset", "limit", "expected"),
    [
        pytest.param(struct.pack(">I4s", 16, b"free"), 0, 100, Box("free", 0, 8, 16), id="plain"),
        pytest.param(
            struct.pack(">I4sQ", 1, b"mdat", 2**40), 8, 2**41, Box("mdat", 8, 16, 2**40), id="largesize"
        ),
        pytest.param(struct.pack(">I4s", 0, b"mdat"), 10, 50, Box("mdat", 10, 8, 40), id="to-end"),
    ],
)
def test_parse_box_header(head, offset, limit, expected):
    assert parse_box_header(head, offset=offset, limit=limit) == expected


@pytest.mark.parametrize(
    ("head", "limit", "match"),
    [
        pytest.param(b"\0\0\0\x10fr", 100, "truncated box header", id="short-header"),
        pytest.param(struct.pack(">I4s", 1, b"mdat"), 100, "64-bit", id="short-largesize"),
        pytest.param(struct.pack(">I4s", 4, b"free"), 100, "impossible size", id="smaller-than-header"),
        pytest.param(struct.pack(">I4sQ", 1, b"mdat", 12), 100, "impossible size", id="largesize-too-small"),
        pytest.param(struct.pack(">I4s", 200, b"free"), 100, "runs past", id="past-limit"),
        pytest.param(struct.pack(">I4sQ", 1, b"mdat", 2**63), 100, "runs past", id="absurd"),
    ],
)
def test_parse_box_header_errors(head, limit, match):
    with pytest.raises(MediaError, match=match):
        parse_box_header(head, offset=0, limit=limit)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        pytest.param(b"", "no moov", id="empty"),
        pytest.param(FTYP + box("mdat", bytes(10)), "no moov", id="no-moov"),
        pytest.param(FTYP + movie() + movie(), "more than one moov", id="two-moovs"),
        pytest.param(FTYP + box("moov", box("trak")), "moov has no mvhd", id="no-mvhd"),
        pytest.param(
            FTYP + box("moov", mvhd(timescale=0, duration=5)), "timescale is zero", id="zero-timescale"
        ),
        pytest.param(FTYP + box("moov", box("mvhd", full(2), bytes(96))), "version 2", id="bad-version"),
        pytest.param(FTYP + box("moov", box("mvhd", full(0), bytes(4))), "too short", id="short-mvhd"),
        pytest.param(
            FTYP + box("moov", mvhd(timescale=1, duration=1), box("trak", tkhd(track_id=1))),
            "trak has no mdia",
            id="no-mdia",
        ),
        pytest.param(FTYP + movie()[:-1], "runs past", id="truncated"),
    ],
)
def test_malformed(data, match):
    with pytest.raises(MediaError, match=match):
        parse_mp4_bytes(data)


def test_stsd_without_entries():
    good = trak(track_id=1, handler="vide", codec="avc1", samples=1)
    entry = box("stsd", full(0), struct.pack(">I", 1), box("avc1", bytes(8)))
    bad = good.replace(entry, box("stsd", full(0), struct.pack(">I", 0)))
    bad = fix_sizes(bad, shrink=len(entry) - 16)
    with pytest.raises(MediaError, match="no sample entries"):
        parse_mp4_bytes(FTYP + box("moov", mvhd(timescale=1, duration=1), bad))


def fix_sizes(trak_bytes: bytes, *, shrink: int) -> bytes:
    """Shrink the sizes of trak, mdia, minf and stbl after a child got ``shrink`` bytes shorter."""
    out = bytearray(trak_bytes)
    for kind in (b"trak", b"mdia", b"minf", b"stbl"):
        at = out.index(kind) - 4
        (size,) = struct.unpack_from(">I", out, at)
        struct.pack_into(">I", out, at, size - shrink)
    return bytes(out)


def test_missing_file_is_a_media_error(tmp_path):
    with pytest.raises(MediaError, match="cannot read"):
        read_mp4(tmp_path / "nope.mp4")


def test_error_names_the_file(tmp_path):
    path = tmp_path / "bad.mp4"
    path.write_bytes(b"garbage!" * 4)
    with pytest.raises(MediaError, match=r"^bad\.mp4: "):
        read_mp4(path)


# --- fuzzing: only MediaError, or a result ------------------------------------------------------------


def parses_or_media_error(data: bytes) -> Mp4Info | None:
    try:
        return parse_mp4_bytes(data)
    except MediaError:
        return None


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.ffmpeg
@FUZZ
@given(cut=st.floats(0, 1, exclude_max=True))
def test_fuzz_truncated(real_mp4, cut):
    parses_or_media_error(real_mp4[: int(len(real_mp4) * cut)])


@pytest.mark.ffmpeg
@FUZZ
@given(data=st.data())
def test_fuzz_mutated_moov(real_mp4, data):
    moov = next(b for b in parse_boxes(real_mp4) if b.type == "moov")
    mutated = bytearray(real_mp4)
    positions = st.integers(moov.offset, moov.end - 1)
    for at, value in data.draw(st.lists(st.tuples(positions, st.integers(0, 255)), min_size=1, max_size=8)):
        mutated[at] = value
    parses_or_media_error(bytes(mutated))


@pytest.mark.ffmpeg
@FUZZ
@given(data=st.data())
def test_fuzz_mutated_anywhere(real_mp4, data):
    mutated = bytearray(real_mp4)
    positions = st.integers(0, len(real_mp4) - 1)
    for at, value in data.draw(st.lists(st.tuples(positions, st.integers(0, 255)), min_size=1, max_size=8)):
        mutated[at] = value
    parses_or_media_error(bytes(mutated))


@FUZZ
@given(data=st.binary(max_size=4096))
def test_fuzz_random_bytes(data):
    parses_or_media_error(data)


@FUZZ
@given(data=st.binary(max_size=512))
def test_fuzz_random_bytes_inside_a_moov(data):
    parses_or_media_error(FTYP + box("moov", mvhd(timescale=600, duration=600), data))


@pytest.mark.ffmpeg
@settings(max_examples=20, deadline=None)
@given(cut=st.floats(0, 1, exclude_max=True))
def test_fuzz_truncated_file(tmp_path_factory, real_mp4, cut):
    path = tmp_path_factory.mktemp("cut") / "cut.mp4"
    path.write_bytes(real_mp4[: int(len(real_mp4) * cut)])
    with contextlib.suppress(MediaError):
        read_mp4(path)
