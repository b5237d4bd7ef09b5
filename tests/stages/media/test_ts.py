"""recpipe's MPEG-TS reader on real slices (sample_data/, made by ffmpeg) and on damaged copies of them."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.model.media import PTS_WRAP, SliceMedia, unwrap
from stages.media.retime import retime
from stages.media.ts import TsReader, adts_header, read_slice, read_slice_file
from tests.media_builders import packet_pid, starts_unit, ts_packets

SLICES = sorted((Path(__file__).resolve().parents[3] / "sample_data" / "recordings").glob("*.ts"))
VIDEO, AUDIO = 256, 257


@pytest.fixture(scope="module")
def first() -> bytes:
    return SLICES[0].read_bytes()


def test_sample_slices_are_there():
    assert len(SLICES) == 3


def test_reads_a_real_slice(first):
    m = read_slice([first])
    assert m.problems() == ()
    assert m.readable
    assert (m.size, m.packets, m.trailing_bytes, m.skipped_bytes) == (len(first), len(first) // 188, 0, 0)
    assert m.kinds == {"video", "audio"}
    assert m.cc_errors == ()
    video, audio = (next(s for s in m.streams if s.kind == k) for k in ("video", "audio"))
    assert (video.pid, video.codec, video.stream_type) == (VIDEO, "h264", 0x1B)
    assert (video.width, video.height, video.keyframe_at_start) == (320, 240, True)
    assert video.frame_ticks == 6000  # 15 fps
    assert video.pes_count == 225  # 15 s at 15 fps
    assert (audio.codec, audio.sample_rate, audio.channels) == ("aac", 48000, 1)
    assert m.duration_s == pytest.approx(15.0, abs=0.1)


def test_slices_of_one_recording_follow_each_other():
    media = [read_slice_file(p) for p in SLICES]
    for a, b in itertools.pairwise(media):
        assert a.end_ticks is not None
        assert b.start_ticks is not None
        assert abs(b.start_ticks - a.end_ticks) < 0.05 * 90_000


@pytest.mark.parametrize("size", [1, 7, 187, 188, 189, 4096, 10**7])
def test_chunk_boundaries_do_not_matter(first, size):
    whole = read_slice([first])
    assert read_slice(first[i : i + size] for i in range(0, len(first), size)) == whole


def test_lost_packet_is_a_continuity_error(first):
    packets = ts_packets(first)
    victim = next(
        i for i, p in enumerate(packets) if packet_pid(p) == VIDEO and not starts_unit(p) and i > 50
    )
    m = read_slice([b"".join(packets[:victim] + packets[victim + 1 :])])
    assert m.cc_errors == ((VIDEO, 1),)
    assert m.problems() == ()


def test_repeated_packet_is_allowed_once(first):
    packets = ts_packets(first)
    i = next(i for i, p in enumerate(packets) if packet_pid(p) == AUDIO and i > 50)
    m = read_slice([b"".join([*packets[: i + 1], packets[i], *packets[i + 1 :]])])
    assert m.cc_errors == ()


def test_slice_not_starting_with_a_keyframe(first):
    """Drop the first video PES (the IDR): the slice now starts with a P frame."""
    packets = ts_packets(first)
    starts = [i for i, p in enumerate(packets) if packet_pid(p) == VIDEO and starts_unit(p)]
    kept = [p for i, p in enumerate(packets) if not (starts[0] <= i < starts[1] and packet_pid(p) == VIDEO)]
    m = read_slice([b"".join(kept)])
    assert m.video is not None
    assert m.video.keyframe_at_start is False
    assert m.resolution is None  # the SPS went with the IDR; ffmpeg repeats it only at keyframes


def test_garbage_before_the_first_packet(first):
    m = read_slice([b"\x00garbage" * 100 + first])
    assert (m.skipped_bytes, m.resyncs) == (800, 0)
    assert m.kinds == {"video", "audio"}
    assert "800 bytes out of packet sync" in m.problems()[0]


def test_lost_sync_in_the_middle(first):
    cut = 188 * 300
    m = read_slice([first[:cut] + b"\x47junk" * 10 + first[cut:]])
    assert (m.skipped_bytes, m.resyncs) == (50, 1)
    assert m.packets == len(first) // 188
    assert m.duration_s == pytest.approx(read_slice([first]).duration_s)


def test_truncated_slice(first):
    m = read_slice([first[: len(first) // 2 - 94]])
    assert m.trailing_bytes == 188 - 94
    assert "partial 94-byte packet (truncated)" in m.problems()[0]
    assert m.readable
    assert m.duration_s == pytest.approx(7.5, abs=0.5)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        pytest.param(b"", "no MPEG-TS packets", id="empty"),
        pytest.param(b"<html><body>Access Denied</body></html>" * 50, "no MPEG-TS packets", id="html"),
        pytest.param(bytes(188 * 20), "no MPEG-TS packets", id="zeros"),
        pytest.param(b"\x47" + bytes(187) * 1, "no program association table", id="one-null-ish-packet"),
    ],
)
def test_not_media(data, problem):
    m = read_slice([data])
    assert not m.readable
    assert problem in " ".join(m.problems())


def test_timestamps_across_the_33_bit_wrap(first):
    """A muxer that started near the wrap: PTS go 2**33-ε … 0, 1, … inside the slice."""
    whole = read_slice([first])
    assert whole.start_ticks is not None
    shifted = read_slice([retime(first, shift=PTS_WRAP - whole.start_ticks - 5 * 90_000)])
    assert shifted.duration_s == pytest.approx(whole.duration_s)
    assert shifted.video is not None
    assert shifted.video.max_pts > PTS_WRAP  # unwrapped: counts on past the wrap


@pytest.mark.parametrize(
    ("raw", "previous", "expected"),
    [
        pytest.param(100, None, 100, id="first"),
        pytest.param(200, 100, 200, id="forward"),
        pytest.param(50, 100, 50, id="backward"),
        pytest.param(5, PTS_WRAP - 10, PTS_WRAP + 5, id="wraps-forward"),
        pytest.param(PTS_WRAP - 10, PTS_WRAP + 5, PTS_WRAP - 10, id="back-across"),
        pytest.param(PTS_WRAP - 10, 5, -10, id="before-zero"),
    ],
)
def test_unwrap(raw, previous, expected):
    assert unwrap(raw, previous) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(bytes([0xFF, 0xF1, 0x4C, 0x40]), (48000, 1), id="48k-mono"),
        pytest.param(bytes([0xFF, 0xF1, 0x50, 0x80]), (44100, 2), id="44k1-stereo"),
        pytest.param(bytes([0xFF, 0xF1, 0x7C, 0x40]), None, id="bad-rate"),
        pytest.param(bytes([0x47, 0xF1, 0x4C, 0x40]), None, id="no-sync"),
        pytest.param(b"\xff", None, id="short"),
    ],
)
def test_adts_header(header, expected):
    assert adts_header(header) == expected


# --- hostile input: never anything but a SliceMedia -------------------------------------------------------


def assert_sane(m: SliceMedia, size: int) -> None:
    assert m.size == size
    assert m.packets * 188 + m.skipped_bytes + m.trailing_bytes <= size + 188
    m.problems()
    _ = (m.duration_s, m.kinds, m.resolution, m.readable)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=4000), st.integers(1, 500))
def test_random_bytes(data, chunk):
    reader = TsReader()
    for i in range(0, len(data), chunk):
        reader.feed(data[i : i + chunk])
    assert_sane(reader.close(), len(data))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edits=st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(0, 255), st.sampled_from(["set", "cut", "insert"])),
        min_size=1,
        max_size=25,
    ),
)
def test_mutated_slices(first, edits):
    data = bytearray(first[: 188 * 400])
    for pos, value, kind in edits:
        at = pos % (len(data) or 1)
        if kind == "set" and data:
            data[at] = value
        elif kind == "cut":
            del data[at : at + value]
        else:
            data[at:at] = bytes([value]) * (value % 7 + 1)
    assert_sane(read_slice([bytes(data)]), len(data))
