from pathlib import Path

import pytest

from pipeline.job import Recording, Segment
from pipeline.storage.base import ObjectInfo
from stages.verify import (
    find_corrupt,
    find_duplicates,
    find_empty,
    find_missing,
    find_name_mismatches,
    find_orphans,
    find_target_exceeded,
    mark_defects,
    offsets,
    ts_problem,
)
from tests.builders import CNAME, SID, START, slice_uri

REC = Recording(sid=SID, cname=CNAME, directory="rec/", playlist_key=f"rec/{SID}_{CNAME}.m3u8")


def seg(i, *, present=True, size=1880, duration=15.0, uri=None, utc=START, safe=True):
    uri = uri or slice_uri(i)
    return Segment(
        index=i,
        num=i,
        uri=uri,
        duration=duration,
        key=f"rec/{uri}" if safe else None,
        utc=utc,
        size=size if present else None,
        local=Path(f"/w/{i:05d}.ts") if present else None,
    )


def codes(findings):
    return [(f.code, f.segment, f.at_s) for f in findings]


def test_offsets_accumulate_extinf():
    segs = (seg(0, duration=15.0), seg(1, duration=14.5), seg(2, duration=15.0))
    assert [at for _, at in offsets(segs)] == [0.0, 15.0, 29.5]


def test_missing_names_slice_and_position():
    segs = (seg(0), seg(1, present=False), seg(2))
    [finding] = find_missing(segs)
    assert (finding.code, finding.severity, finding.segment) == ("MISSING_SEGMENT", "error", slice_uri(1))
    assert (finding.at_s, finding.seconds, finding.entry) == (15.0, 15.0, 1)


def test_unsafe_entries_are_not_missing():
    assert find_missing((seg(0, present=False, safe=False),)) == ()


def test_empty():
    assert codes(find_empty((seg(0), seg(1, size=0)))) == [("EMPTY_SEGMENT", slice_uri(1), 15.0)]


@pytest.mark.parametrize(
    ("head", "size", "problem"),
    [
        pytest.param(b"\x47" + bytes(187), 188 * 10, None, id="ts"),
        pytest.param(b"<html>", 188, "sync byte", id="not-ts"),
        pytest.param(b"\x47" + bytes(187), 188 * 10 + 5, "188-byte packets", id="truncated"),
    ],
)
def test_ts_problem(head, size, problem):
    result = ts_problem(head, size=size)
    assert (result is None) if problem is None else (problem in result)


def test_corrupt_uses_heads():
    segs = (seg(0), seg(1))
    found = find_corrupt(segs, {0: b"\x47" + bytes(187), 1: b"<html>"})
    assert codes(found) == [("CORRUPT_SEGMENT", slice_uri(1), 15.0)]


def test_duplicates_flag_later_entries():
    segs = (seg(0), seg(1, uri=slice_uri(0)), seg(2))
    [finding] = find_duplicates(segs)
    assert (finding.code, finding.entry, finding.at_s) == ("DUPLICATE_SEGMENT", 1, 15.0)
    assert "repeats entry 0" in finding.detail


def test_name_mismatch_is_a_warning():
    segs = (seg(0), seg(1, uri="clip-1.ts", utc=None))
    [finding] = find_name_mismatches(segs, recording=REC)
    assert (finding.code, finding.severity, finding.segment) == ("NAME_MISMATCH", "warning", "clip-1.ts")


def test_orphans_are_unlisted_slices_of_the_recording():
    rec = Recording(
        sid=SID,
        cname=CNAME,
        directory="rec/",
        playlist_key="rec/p.m3u8",
        slices=(ObjectInfo(f"rec/{slice_uri(0)}", 10, "e"), ObjectInfo(f"rec/{slice_uri(9)}", 10, "e")),
    )
    [finding] = find_orphans((seg(0),), recording=rec)
    assert (finding.code, finding.severity, finding.segment) == ("ORPHAN_SEGMENT", "warning", slice_uri(9))


@pytest.mark.parametrize(
    ("duration", "target", "flagged"),
    [
        pytest.param(15.4, 15, False, id="rounds-down"),
        pytest.param(15.5, 15, True, id="rounds-up"),
        pytest.param(16.0, 15, True, id="over"),
        pytest.param(20.0, None, False, id="no-target"),
    ],
)
def test_target_exceeded(duration, target, flagged):
    found = find_target_exceeded((seg(0, duration=duration),), target=target)
    assert [f.code for f in found] == (["TARGET_DURATION_EXCEEDED"] if flagged else [])
    assert all(f.severity == "warning" for f in found)


def test_mark_defects_keeps_first_code_per_entry():
    segs = (seg(0), seg(1, size=0), seg(2, uri=slice_uri(0)))
    findings = find_empty(segs) + find_duplicates(segs) + find_name_mismatches(segs, recording=REC)
    marked = mark_defects(segs, findings)
    assert [s.defect for s in marked] == [None, "EMPTY_SEGMENT", "DUPLICATE_SEGMENT"]
