"""Reading fragmented MP4s into sample tables, on hand-built boxes (every tfhd/trun variant)."""

from __future__ import annotations

import struct
import sys
from array import array

import pytest

from pipeline.model.exceptions import MediaError
from stages.media import fragments
from stages.media.fragments import SampleTable, all_equal, narrowed, parse_fragmented, runs_append
from stages.media.moov import box, full

NON_SYNC = 0x01010000
SYNC = 0x02000000


def trex(track_id: int, *, duration: int = 0, size: int = 0, flags: int = 0) -> bytes:
    return box("trex", full(0) + struct.pack(">5I", track_id, 1, duration, size, flags))


def moov(*track_ids: int, **defaults: int) -> bytes:
    return box("moov", box("mvex", b"".join(trex(t, **defaults) for t in track_ids)))


def tfhd(track_id: int, *, flags: int = 0x20000, base: int | None = None, duration: int | None = None,
         size: int | None = None, sample_flags: int | None = None) -> bytes:  # fmt: skip
    fields = b""
    if base is not None:
        flags |= 0x1
        fields += struct.pack(">Q", base)
    for flag, value in ((0x8, duration), (0x10, size), (0x20, sample_flags)):
        if value is not None:
            flags |= flag
            fields += struct.pack(">I", value)
    return box("tfhd", full(0, flags) + struct.pack(">I", track_id) + fields)


def tfdt(time: int) -> bytes:
    return box("tfdt", full(1) + struct.pack(">Q", time))


def trun(samples: list[tuple[int, ...]], *, fields: int, data_offset: int | None = None,
         first_flags: int | None = None, version: int = 0) -> bytes:  # fmt: skip
    """``samples``: per-sample values in the order duration, size, flags, cto, as ``fields`` says."""
    flags = fields
    head = b""
    if data_offset is not None:
        flags |= 0x1
        head += struct.pack(">i", data_offset)
    if first_flags is not None:
        flags |= 0x4
        head += struct.pack(">I", first_flags)
    body = b"".join(struct.pack(f">{len(s)}{'i' if version else 'I'}", *s) for s in samples)
    return box("trun", full(version, flags) + struct.pack(">I", len(samples)) + head + body)


def fragment(*trafs: bytes) -> bytes:
    return box("moof", box("mfhd", full(0) + struct.pack(">I", 1)) + b"".join(box("traf", t) for t in trafs))


def fragment_before_its_data(make_traf) -> bytes:
    """A moof whose (single) trun's data starts right after the mdat header that follows it."""
    size = len(fragment(make_traf(0)))
    return fragment(make_traf(size + 8))


def read(data: bytes) -> dict[int, SampleTable]:
    return parse_fragmented(lambda offset, count: data[offset : offset + count], size=len(data)).tables


def test_per_sample_fields_and_first_sample_flags():
    head = box("ftyp", b"iso5") + moov(1)
    frag = fragment_before_its_data(
        lambda at: (
            tfhd(1, sample_flags=NON_SYNC)
            + tfdt(0)
            + trun([(3000, 10), (3000, 20), (3001, 30)], fields=0x300, data_offset=at, first_flags=SYNC)
        )
    )
    table = read(head + frag + box("mdat", bytes(60)))[1]
    assert (list(table.sizes), table.durations, list(table.sync), list(table.chunks), table.per_chunk) == (
        [10, 20, 30],
        [[2, 3000], [1, 3001]],
        [1],
        [len(head) + len(frag) + 8],
        [[1, 3, 1]],
    )
    assert (table.start, table.end, table.duration) == (0, 9001, 9001)


def test_sync_samples_are_listed_from_the_first_that_is_not_one():
    """All sync so far: nothing kept; the first non-sync sample lists every sample before it."""
    head = moov(1, duration=1000, size=5, flags=SYNC)
    frag1 = fragment_before_its_data(lambda at: tfhd(1) + tfdt(0) + trun([()] * 3, fields=0, data_offset=at))
    table = read(head + frag1 + box("mdat", bytes(15)))[1]
    assert (table.all_sync, list(table.sync)) == (True, [])
    frag2 = fragment_before_its_data(
        lambda at: (
            tfhd(1, sample_flags=NON_SYNC)
            + tfdt(3000)
            + trun([()] * 3, fields=0, data_offset=at, first_flags=SYNC)
        )
    )
    frag3 = fragment_before_its_data(
        lambda at: tfhd(1) + tfdt(6000) + trun([()] * 2, fields=0, data_offset=at)
    )
    mdat = box("mdat", bytes(15))
    table = read(head + frag1 + mdat + frag2 + mdat + frag3 + box("mdat", bytes(10)))[1]
    assert (table.all_sync, list(table.sync)) == (False, [1, 2, 3, 4, 7, 8])


def test_defaults_from_trex_and_tfhd():
    head = moov(1, duration=1024, size=7, flags=SYNC)
    frag1 = fragment_before_its_data(lambda at: tfhd(1) + tfdt(0) + trun([()] * 4, fields=0, data_offset=at))
    frag2 = fragment_before_its_data(
        lambda at: tfhd(1, duration=1000, size=5) + tfdt(4096) + trun([()] * 2, fields=0, data_offset=at)
    )
    table = read(head + frag1 + box("mdat", bytes(28)) + frag2 + box("mdat", bytes(10)))[1]
    assert (list(table.sizes), table.durations, table.all_sync, list(table.sync), table.per_chunk) == (
        [7, 7, 7, 7, 5, 5],
        [[4, 1024], [2, 1000]],
        True,  # every sample a sync sample: none listed
        [],
        [[1, 4, 1], [2, 2, 1]],
    )


def test_base_data_offset_and_data_following_the_previous_traf():
    """Without default-base-is-moof, a second traf's data follows the first one's."""
    head = moov(1, 2, flags=SYNC)
    traf2 = tfhd(2, flags=0) + trun([(1, 6)], fields=0x300)
    mdat_at = len(head) + len(fragment(tfhd(1, flags=0, base=0) + trun([(1, 4)], fields=0x300), traf2))
    traf1 = tfhd(1, flags=0, base=mdat_at + 8) + trun([(1, 4)], fields=0x300)
    data = head + fragment(traf1, traf2) + box("mdat", bytes(10))
    tables = read(data)
    assert (list(tables[1].chunks), list(tables[2].chunks)) == ([mdat_at + 8], [mdat_at + 12])


def test_signed_composition_offsets():
    head = moov(1, flags=SYNC)
    frag = fragment_before_its_data(
        lambda at: (
            tfhd(1) + trun([(10, 1, -5), (10, 1, 5)], fields=0x100 | 0x200 | 0x800, data_offset=at, version=1)
        )
    )
    data = head + frag + box("mdat", bytes(2))
    assert read(data)[1].offsets == [[1, -5], [1, 5]]


def two_fragments(second_starts_at: int) -> bytes:
    """Two fragments of two 100-tick samples each; the second's tfdt is ``second_starts_at``."""
    head = moov(1, duration=100, size=1, flags=SYNC)
    frags = [
        fragment_before_its_data(lambda at: tfhd(1) + tfdt(t) + trun([()] * 2, fields=0, data_offset=at))  # noqa: B023
        + box("mdat", bytes(2))
        for t in (0, second_starts_at)
    ]
    return head + b"".join(frags)


def test_a_later_fragment_start_lengthens_the_last_sample():
    table = read(two_fragments(250))[1]
    assert (table.durations, table.end) == ([[1, 100], [1, 150], [2, 100]], 450)


def test_a_fragment_going_back_in_time_is_refused():
    with pytest.raises(MediaError, match="back in time"):
        read(two_fragments(100))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (moov(1) + fragment(tfhd(9) + trun([(1, 1)], fields=0x300)), "track 9"),
        (fragment(tfhd(1)) + moov(1), "before the moov"),
        (moov(1) + moov(1), "more than one moov"),
        (box("free", b""), "no moov"),
        (
            moov(1) + fragment(tfhd(1) + trun([(1, 1)], fields=0x300, data_offset=500)) + box("mdat", b"x"),
            "outside",
        ),
        (moov(1) + fragment(box("tfdt", full(0) + bytes(4))), "no tfhd"),
    ],
)
def test_inconsistent_files_are_refused(data, message):
    with pytest.raises(MediaError, match=message):
        read(data)


def test_a_trun_claiming_more_samples_than_it_holds_is_refused():
    bad = box("trun", full(0, 0x300) + struct.pack(">I", 1000) + struct.pack(">II", 1, 1))
    with pytest.raises(MediaError, match="claims 1000 samples"):
        read(moov(1) + fragment(tfhd(1) + bad))


def test_a_trun_with_a_huge_sample_count_is_refused_before_anything_is_allocated():
    bad = box("trun", full(0, 0) + struct.pack(">I", 2**31))
    with pytest.raises(MediaError, match="over the limit"):
        read(moov(1) + fragment(tfhd(1) + bad))


def test_sample_sizes_take_two_bytes_until_one_does_not_fit():
    table = SampleTable(1)
    table.add_sizes(array("I", [10, 0xFFFF]))
    table.add_sizes(array("I", [20]))
    assert (table.sizes.typecode, table.sizes.itemsize, list(table.sizes)) == ("H", 2, [10, 0xFFFF, 20])
    table.add_sizes(array("I", [30, 0x10000, 40]))
    assert (table.sizes.itemsize, list(table.sizes)) == (4, [10, 0xFFFF, 20, 30, 0x10000, 40])
    table.add_sizes(array("Q", [50]))
    table.add_sizes(array("I"))
    assert (table.sizes.itemsize, list(table.sizes)) == (4, [10, 0xFFFF, 20, 30, 0x10000, 40, 50])
    assert table.sample_count == 7


@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_narrowed_sizes_on_either_byte_order(byteorder, monkeypatch):
    """The bytes path (little-endian machines) and the plain one give the same answers."""
    if byteorder != sys.byteorder:
        if byteorder == "little":
            pytest.skip("the bytes path needs a little-endian machine")
        monkeypatch.setattr(fragments.sys, "byteorder", byteorder)
    for values in ([], [0], [1, 255, 256, 0xFFFF], [0xFFFF, 0x10000], [0x1000000], [7, 0xFFFFFFFF]):
        for typecode in ("I", "Q"):  # a trun's four bytes, and any other width
            narrow = narrowed(array(typecode, values))
            if max(values, default=0) > 0xFFFF:
                assert narrow is None, values
            else:
                assert narrow is not None
                assert (narrow.typecode, list(narrow)) == ("H", values)


def test_runs_append():
    runs: list[list[int]] = []
    for value in (5, 5, 6, 5):
        runs_append(runs, value)
    runs_append(runs, 5, 3)
    assert runs == [[2, 5], [1, 6], [4, 5]]


@pytest.mark.parametrize(
    ("values", "expected"),
    [([7], True), ([7, 7, 7], True), ([7, 7, 8], False), ([0, 1 << 31], False), ([1 << 31, 1 << 31], True)],
)
def test_all_equal(values, expected):
    assert all_equal(array("I", values)) is expected
    assert all_equal(array("I", values)[1:]) is (len(set(values[1:])) <= 1)
