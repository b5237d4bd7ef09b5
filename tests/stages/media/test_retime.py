"""Rewriting a slice's clock: shifted PTS/DTS/PCR, cut streams, on real slices from sample_data/."""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.model.media import PTS_WRAP, SliceMedia
from stages.media.retime import read_pcr_base, retime, sync_runs, write_pcr_base, write_pts
from stages.media.ts import PACKET, read_pts, read_slice
from tests.media_builders import packet_pid, starts_unit, ts_packets

SLICES = sorted((Path(__file__).resolve().parents[3] / "sample_data" / "recordings").glob("*.ts"))


@pytest.fixture(scope="module")
def first() -> bytes:
    return SLICES[0].read_bytes()


def timestamps(media: SliceMedia) -> list[tuple[str, int | None, int | None, int | None]]:
    return [(s.kind, s.min_pts, s.max_pts, s.first_dts) for s in media.media_streams]


def pcrs(data: bytes) -> list[int]:
    out = []
    for packet in ts_packets(data):
        if packet[3] & 0x20 and packet[4] >= 7 and packet[5] & 0x10:
            out.append(read_pcr_base(packet, 6))
    return out


def test_nothing_to_do_passes_whole_packets_unchanged(first):
    assert retime(first) == first
    assert retime(first + b"\x47\x00\x01") == first  # a partial last packet is never passed on


@pytest.mark.parametrize("shift", [90_000 * 7, -90_000 - 1, 1])
def test_shift_moves_every_timestamp_and_nothing_else(first, shift):
    before = read_slice([first])
    after_bytes = retime(first, shift=shift)
    after = read_slice([after_bytes])
    moved = [(k, lo + shift, hi + shift, d and d + shift) for k, lo, hi, d in timestamps(before)]
    assert timestamps(after) == moved
    assert pcrs(after_bytes) == [(p + shift) % PTS_WRAP for p in pcrs(first)]
    assert len(pcrs(first)) > 10
    assert (after.packets, after.cc_errors, after.problems()) == (before.packets, (), ())
    pairs = zip(ts_packets(first), ts_packets(after_bytes), strict=True)
    changed = [old for old, new in pairs if old != new]
    assert changed
    assert all(starts_unit(old) or old[3] & 0x20 for old in changed)  # only PES starts and PCR carriers


def test_shift_wraps_at_33_bits(first):
    before = read_slice([first])
    assert before.start_ticks is not None
    to_wrap = PTS_WRAP - before.start_ticks - 90_000  # one second before the wrap
    after = read_slice([retime(first, shift=to_wrap)])
    assert after.video is not None
    assert after.video.max_pts > PTS_WRAP  # the reader unwraps it: the clock runs on
    assert after.duration_s == pytest.approx(before.duration_s)
    back = retime(retime(first, shift=to_wrap), shift=-to_wrap)
    assert back == first


def test_cut_drops_a_stream_from_its_first_pes_at_or_after_the_cut(first):
    before = read_slice([first])
    video, audio = before.video, next(s for s in before.media_streams if s.kind == "audio")
    assert video is not None
    assert video.min_pts is not None
    cut = video.min_pts + 5 * 90_000
    after = read_slice([retime(first, cuts={video.pid: cut})])
    cut_video = after.video
    assert cut_video is not None
    assert cut_video.max_pts == cut - video.frame_ticks  # the frame before the cut is the last one
    assert cut_video.min_pts == video.min_pts
    kept_audio = next(s for s in after.media_streams if s.kind == "audio")
    assert (kept_audio.min_pts, kept_audio.max_pts, kept_audio.pes_count) == (
        audio.min_pts,
        audio.max_pts,
        audio.pes_count,
    )
    assert after.problems() == ()


def test_cut_and_shift_together(first):
    before = read_slice([first])
    assert before.video is not None
    assert before.video.min_pts is not None
    cut = before.video.min_pts + 90_000
    after = read_slice([retime(first, shift=900, cuts={before.video.pid: cut})])
    assert after.video is not None
    assert after.video.max_pts == cut - before.video.frame_ticks + 900


def test_bytes_out_of_sync_are_dropped_when_rewriting(first):
    damaged = first[: 10 * PACKET] + b"garbage!" * 5 + first[10 * PACKET :]
    assert [count for _, count in sync_runs(damaged)] == [10, len(first) // PACKET - 10]
    assert retime(damaged, shift=90_000) == retime(first, shift=90_000)


def test_other_pids_are_never_touched_by_a_cut(first):
    video = read_slice([first]).video
    assert video is not None
    assert video.min_pts is not None
    out = retime(first, cuts={video.pid: video.min_pts})  # the whole video stream goes
    assert video.pid not in {packet_pid(p) for p in ts_packets(out)}
    assert [p for p in ts_packets(first) if packet_pid(p) != video.pid] == ts_packets(out)


@given(value=st.integers(min_value=-(2**40), max_value=2**40), prefix=st.sampled_from([0x20, 0x30, 0x10]))
def test_write_pts_round_trips_and_keeps_prefix_and_markers(value, prefix):
    buf = bytearray([prefix | 0x01, 0, 0x01, 0, 0x01])
    write_pts(buf, 0, value)
    assert read_pts(buf, 0) == value % PTS_WRAP
    assert buf[0] & 0xF0 == prefix
    assert [buf[0] & 1, buf[2] & 1, buf[4] & 1] == [1, 1, 1]


@given(value=st.integers(min_value=0, max_value=2**34), extension=st.integers(min_value=0, max_value=511))
def test_pcr_base_round_trips_and_keeps_the_extension(value, extension):
    buf = bytearray(6)
    buf[4] = 0x7E | (extension >> 8)
    buf[5] = extension & 0xFF
    write_pcr_base(buf, 0, value)
    assert read_pcr_base(buf, 0) == value % PTS_WRAP
    assert ((buf[4] & 0x01) << 8 | buf[5], buf[4] & 0x7E) == (extension, 0x7E)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edits=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), max_size=40),
    shift=st.integers(min_value=-(2**34), max_value=2**34),
    cut=st.one_of(st.none(), st.integers(min_value=0, max_value=2**34)),
)
def test_damaged_slices_never_break_retime(first, edits, shift, cut):
    """Hostile bytes: whatever the damage, whole packets come out and nothing raises."""
    data = bytearray(first[: 40 * PACKET])
    for at, value in edits:
        data[at % len(data)] = value
    out = retime(bytes(data), shift=shift, cuts=None if cut is None else {256: cut, 257: cut})
    assert len(out) % PACKET == 0
    assert len(out) <= len(data)
    read_slice([out])  # and the reader takes whatever comes out


@given(data=st.binary(max_size=4 * PACKET), shift=st.integers(min_value=-(2**33), max_value=2**33))
def test_random_bytes_never_break_retime(data, shift):
    out = retime(data, shift=shift, cuts={0x100: 0})
    assert len(out) % PACKET == 0
