"""The pure parts of building a regular moov: header durations, edit lists, sample-table boxes."""

from __future__ import annotations

import struct
from array import array

import pytest

from pipeline.model.exceptions import MediaError
from stages.media.fragments import SampleTable
from stages.media.moov import (
    Node,
    complete_edits,
    elst_payload,
    full,
    parse_tree,
    read_elst,
    rescale,
    sample_boxes,
    serialize,
    stsz_payload,
    timing,
    tkhd_with_duration,
    with_duration,
)

RATE = struct.pack(">HH", 1, 0)


def mdhd(version: int, *, scale: int = 48000, duration: int = 0) -> bytes:
    if version:
        return full(1) + struct.pack(">QQIQ", 1, 2, scale, duration) + b"\x55\xc4\x00\x00"
    return full(0) + struct.pack(">IIII", 1, 2, scale, duration) + b"\x55\xc4\x00\x00"


@pytest.mark.parametrize(
    ("version", "duration", "written"),
    [(0, 1000, 0), (0, 2**32, 1), (1, 1000, 0), (1, 2**40, 1)],
)
def test_with_duration_widens_only_when_needed(version, duration, written):
    out = with_duration(mdhd(version), duration)
    assert out[0] == written
    assert timing(out, before=2)[1:3] == (48000, duration)
    assert out.endswith(b"\x55\xc4\x00\x00")


def test_tkhd_duration_keeps_the_track_id_and_the_rest():
    tkhd = full(0, 3) + struct.pack(">IIIII", 1, 2, 7, 0, 0) + bytes(range(60))
    out = tkhd_with_duration(tkhd, 2**33)
    assert (out[0], out[1:4], struct.unpack_from(">QQIIQ", out, 4), out[36:]) == (
        1,
        b"\x00\x00\x03",
        (1, 2, 7, 0, 2**33),
        bytes(range(60)),
    )


def table(durations: list[list[int]], *, start: int = 0) -> SampleTable:
    t = SampleTable(1, durations=durations, start=start)
    t.sizes.extend([1] * sum(n for n, _ in durations))
    return t


@pytest.mark.parametrize(
    ("edits", "start", "expected"),
    [
        # ffmpeg's video: an empty edit for the start offset, then "media time 0 to the end"
        ([(1920, -1, RATE), (0, 0, RATE)], 0, [(1920, -1, RATE), (90000, 0, RATE)]),
        # B-frames: play from the first composition offset on
        ([(0, 3000, RATE)], 0, [(87000, 3000, RATE)]),
        # already complete edits stay as they are
        ([(500, 0, RATE)], 0, [(500, 0, RATE)]),
        # a first decode time other than 0 is added to the empty edit, or becomes one
        ([(1920, -1, RATE), (0, 0, RATE)], 900, [(2820, -1, RATE), (90000, 0, RATE)]),
        ([(0, 0, RATE)], 900, [(900, -1, RATE), (90000, 0, RATE)]),
    ],
)
def test_complete_edits(edits, start, expected):
    assert (
        complete_edits(edits, table=table([[15, 6000]], start=start), scale=90000, movie_scale=90000)
        == expected
    )


def test_edits_in_another_timescale_round_up():
    done = complete_edits([(0, 0, RATE)], table=table([[3, 1024]]), scale=48000, movie_scale=1000)
    assert done == [(rescale(3072, from_scale=48000, to_scale=1000), 0, RATE)] == [(64, 0, RATE)]


@pytest.mark.parametrize(
    "edits", [[(10, -1, RATE), (20, 0, RATE)], [(2**33, 0, RATE)], [(5, -(2**40), RATE)]]
)
def test_elst_round_trip(edits):
    assert read_elst(elst_payload(edits)) == edits


def test_elst_claiming_too_many_entries():
    with pytest.raises(MediaError, match="claims"):
        read_elst(full(0) + struct.pack(">I", 5) + bytes(12))


def test_stsz_uses_one_size_when_all_are_equal():
    assert stsz_payload(array("I", [9, 9, 9])) == full(0) + struct.pack(">II", 9, 3)
    assert stsz_payload(array("I", [9, 8])) == full(0) + struct.pack(">IIII", 0, 2, 9, 8)


def test_sample_boxes_for_audio_and_for_video():
    audio = table([[4, 1024]])  # every sample a sync sample: no stss
    audio.chunks.append(100)
    audio.per_chunk.append([1, 4, 1])
    kinds = [n.type for n in sample_boxes(audio, codec="mp4a", where=lambda at: at + 5, wide=False)]
    assert kinds == ["stts", "stsc", "stsz", "stco", "sgpd", "sbgp"]
    video = table([[3, 3000]])
    video.all_sync = False
    video.sync.append(1)
    video.offsets = [[1, 0], [1, 6000], [1, -3000]]
    video.chunks.append(100)
    video.per_chunk.append([1, 3, 1])
    built = {
        n.type: n.payload for n in sample_boxes(video, codec="avc1", where=lambda at: at + 5, wide=False)
    }
    assert list(built) == ["stts", "stss", "ctts", "stsc", "stsz", "stco"]
    assert built["ctts"][0] == 1  # a negative offset needs version 1
    assert built["stco"] == full(0) + struct.pack(">II", 1, 105)


def test_a_32_bit_table_refuses_offsets_past_4_gib():
    t = table([[1, 1]])
    t.chunks.append(0)
    t.per_chunk.append([1, 1, 1])
    with pytest.raises(MediaError, match="4 GiB"):
        sample_boxes(t, codec="avc1", where=lambda at: 2**32, wide=False)


def test_tree_round_trip_and_bad_sizes():
    data = serialize([Node("moov", children=(Node("mvhd", b"abc"), Node("udta", b"xyz")))])
    assert serialize(parse_tree(data)) == data
    with pytest.raises(MediaError, match="does not fit"):
        parse_tree(data[:-1])
