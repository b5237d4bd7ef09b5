"""recpipe's MPEG-TS reader on real slices (sample_data/, made by ffmpeg) and on damaged copies of them."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.model.media import PTS_WRAP, SliceMedia, unwrap
from stages.media.retime import retime, write_pts
from stages.media.ts import (
    TsReader,
    _decode_timestamps,
    _marked,
    adts_header,
    read_pts,
    read_slice,
    read_slice_file,
)
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


class WalkingReader(TsReader):
    """The reader with its bulk steps turned off: continuity counters walked packet by packet and
    every packet visited in order: what the bulk steps must reproduce exactly."""

    def _continuity_in_bulk(self, heads):  # type: ignore[no-untyped-def]
        return False

    def _settled(self) -> bool:
        return False


def read_walking(chunks) -> SliceMedia:  # type: ignore[no-untyped-def]
    reader = WalkingReader()
    for chunk in chunks:
        reader.feed(chunk)
    return reader.close()


def test_bulk_and_walking_readers_agree_on_real_slices():
    for path in SLICES:
        data = path.read_bytes()
        assert read_slice([data]) == read_walking([data])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edits=st.lists(
        st.tuples(
            st.integers(0, 10**6),
            st.integers(0, 255),
            st.sampled_from(["set", "cut", "insert", "drop", "repeat", "flag"]),
        ),
        min_size=1,
        max_size=12,
    ),
    chunk=st.sampled_from([188, 1000, 65536, 10**7]),
)
def test_bulk_and_walking_readers_agree_on_damaged_slices(first, edits, chunk):
    """Lost, repeated and rewritten packets, flipped header bits (PUSI, TEI, counters, adaptation
    fields), bytes cut and inserted: the bulk reader finds exactly what the walking one does."""
    data = bytearray(first[: 188 * 600])
    for pos, value, kind in edits:
        packets = len(data) // 188
        at = pos % (len(data) or 1)
        packet = (pos % (packets or 1)) * 188
        if kind == "set" and data:
            data[at] = value
        elif kind == "cut":
            del data[at : at + value]
        elif kind == "insert":
            data[at:at] = bytes([value]) * (value % 7 + 1)
        elif kind == "drop" and packets:
            del data[packet : packet + 188]
        elif kind == "repeat" and packets:
            data[packet:packet] = data[packet : packet + 188]
        elif kind == "flag" and packets:
            data[packet + 1 + value % 3] ^= 1 << (value % 8)
    pieces = [bytes(data[i : i + chunk]) for i in range(0, len(data), chunk)]
    assert read_slice(pieces) == read_walking(pieces)


def test_a_declared_discontinuity_is_not_a_continuity_error(first):
    """A counter jump on a packet whose adaptation field sets discontinuity_indicator is legal."""
    packets = [bytearray(p) for p in ts_packets(first)]
    i = next(
        i
        for i, p in enumerate(packets)
        if packet_pid(p) == VIDEO and i > 50 and p[3] & 0x20 and p[4] > 0 and not starts_unit(p)
    )
    for packet in packets[i:]:  # every counter from there on moves 5 ahead
        if packet_pid(packet) == VIDEO:
            packet[3] = (packet[3] & 0xF0) | ((packet[3] + 5) & 0x0F)
    jumped = b"".join(packets)
    assert read_slice([jumped]).cc_errors == ((VIDEO, 1),)
    packets[i][5] |= 0x80  # discontinuity_indicator
    declared = b"".join(packets)
    assert read_slice([declared]).cc_errors == ()
    assert read_walking([declared]).cc_errors == ()


def test_many_pids_are_read_packet_by_packet(first):
    """More PIDs than a recording has (null and stray ones) do not change what is found."""
    stray = bytearray(188)
    stray[0] = 0x47
    extra = []
    for n in range(40):
        pid = 0x800 + n
        packet = bytearray(stray)
        packet[1], packet[2], packet[3] = pid >> 8, pid & 0xFF, 0x10
        extra.append(bytes(packet))
    packets = ts_packets(first)
    mixed = b"".join(packets[:100] + extra + packets[100:])
    m = read_slice([mixed])
    assert m == read_walking([mixed])
    assert m.packets == len(packets) + len(extra)
    assert m.cc_errors == ()


@given(st.lists(st.integers(0, PTS_WRAP - 1), min_size=1, max_size=50))
def test_timestamps_are_decoded_in_bulk_as_one_by_one(values):
    fields = []
    for value in values:
        field = bytearray(5)
        write_pts(field, 0, value)
        fields.append(bytes(field))
    assert _decode_timestamps(fields) == [read_pts(f, 0) for f in fields] == values


@given(st.lists(st.booleans(), max_size=300), st.integers(min_value=0, max_value=310))
def test_marked_packets_are_found_from_any_start(marks, after):
    flags = bytes(0xFF if mark else 0 for mark in marks)
    assert _marked(flags, after) == [i for i, mark in enumerate(marks) if mark and i >= after]


def pes_packets(data: bytes, pid: int) -> list[int]:
    """Indexes of the packets that begin a PES of ``pid``."""
    return [
        i
        for i, packet in enumerate(ts_packets(data))
        if packet_pid(packet) == pid and starts_unit(packet) and packet[3] & 0x10
    ]


def squeezed(packet: bytes, *, room: int) -> bytes:
    """``packet`` with an adaptation field of stuffing that leaves the first ``room`` bytes of its payload."""
    payload = packet[5 + packet[4] :] if packet[3] & 0x20 else packet[4:]
    af = 188 - 4 - room  # the adaptation field, its length byte included
    header = bytes([packet[0], packet[1], packet[2], packet[3] | 0x30])
    return header + bytes([af - 1]) + (b"\x00" + b"\xff" * (af - 2) if af > 1 else b"") + payload[:room]


@pytest.mark.parametrize(
    ("room", "change", "counted"),
    [
        pytest.param(14, None, True, id="a PTS-only header filling its packet"),
        pytest.param(18, None, True, id="no room for a DTS field"),
        pytest.param(40, "overrun", False, id="a header longer than its packet"),
        pytest.param(40, "no start code", False, id="no start code"),
        pytest.param(40, "no PTS", False, id="no PTS"),
    ],
)
def test_pes_headers_the_bulk_step_leaves_to_the_walk(first, room, change, counted):
    """The PES headers of a run are read together only when each is whole and well formed; one that is
    not (squeezed by an adaptation field, too long, no start code, no PTS) sends the run to the
    packet-by-packet walk, which counts the good ones and not the bad one."""
    packets = ts_packets(first)
    index = pes_packets(first, VIDEO)[100]  # past the first picture: where the bulk steps run
    packet = bytearray(squeezed(packets[index], room=room))
    pes = 188 - room
    if change == "overrun":
        packet[pes + 8] = room  # header_len: 9 + room bytes, more than the packet holds
    elif change == "no start code":
        packet[pes + 2] = 0x02
    elif change == "no PTS":
        packet[pes + 7] &= 0x3F
    data = b"".join([*packets[:index], bytes(packet), *packets[index + 1 :]])
    before = {s.pid: s.pes_count for s in read_slice([first]).streams}
    after = read_slice([data])
    assert after == read_walking([data])
    video = next(s for s in after.streams if s.pid == VIDEO)
    assert video.pes_count == before[VIDEO] - (0 if counted else 1)
