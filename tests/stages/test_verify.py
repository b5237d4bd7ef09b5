"""Verify's checks, one pure function each, driven by tables of segments and reader facts."""

from dataclasses import replace
from datetime import timedelta

import pytest

from pipeline.model.job import Expectations, Job, Recording, Segment
from pipeline.storage.base import ObjectInfo
from stages.screen import unusable
from stages.timeline import build_timeline
from stages.verify import (
    check,
    find_continuity_errors,
    find_corrupt,
    find_duplicates,
    find_duration_mismatches,
    find_empty,
    find_missing,
    find_name_mismatches,
    find_no_keyframe,
    find_orphans,
    find_resolution_mismatch,
    find_streams_mismatch,
    find_target_exceeded,
)
from tests.builders import CNAME, SID, START, media, slice_uri

REC = Recording(sid=SID, cname=CNAME, directory="rec/", playlist_key=f"rec/{SID}_{CNAME}.m3u8")


def seg(i, *, present=True, size=1880, duration=15.0, uri=None, utc=START, safe=True, at=None, m=None):
    uri = uri or slice_uri(i)
    return Segment(
        index=i,
        num=i,
        uri=uri,
        duration=duration,
        key=f"rec/{uri}" if safe else None,
        utc=utc,
        size=size if present else None,
        at_s=i * 15.0 if at is None else at,
        media=m,
    )


def codes(findings):
    return [(f.code, f.severity, f.segment, f.at_s, f.seconds) for f in findings]


def test_missing_names_slice_and_position():
    segs = (seg(0), seg(1, present=False), seg(2))
    [finding] = find_missing(segs)
    assert (finding.code, finding.severity, finding.segment) == ("MISSING_SEGMENT", "error", slice_uri(1))
    assert (finding.at_s, finding.seconds, finding.entry) == (15.0, 15.0, 1)


def test_unsafe_entries_are_not_missing():
    assert find_missing((seg(0, present=False, safe=False),)) == ()


def test_empty():
    assert codes(find_empty((seg(0), seg(1, size=0)))) == [
        ("EMPTY_SEGMENT", "error", slice_uri(1), 15.0, 15.0)
    ]


@pytest.mark.parametrize(
    ("facts", "words"),
    [
        pytest.param(media(trailing=94), ["partial 94-byte packet", "15.000 s of media", "the rest is used"],
                     id="truncated"),
        pytest.param(media(readable=False), ["no program map table", "left out of the MP4"], id="no-pmt"),
    ],
)  # fmt: skip
def test_corrupt_says_what_and_whether_it_is_used(facts, words):
    [finding] = find_corrupt((seg(0), seg(1, m=facts)))
    assert (finding.code, finding.severity, finding.at_s) == ("CORRUPT_SEGMENT", "error", 15.0)
    for word in words:
        assert word in finding.detail


def test_sound_slices_are_not_corrupt():
    assert find_corrupt((seg(0, m=media()), seg(1))) == ()


def test_duplicates_flag_later_entries_as_warnings():
    segs = (seg(0), seg(1, uri=slice_uri(0)), seg(2))
    [finding] = find_duplicates(segs)
    assert (finding.code, finding.severity, finding.entry) == ("DUPLICATE_SEGMENT", "warning", 1)
    assert "repeats entry 0" in finding.detail


def test_name_mismatch_is_a_warning():
    segs = (seg(0), seg(1, uri="clip-1.ts", utc=None))
    [finding] = find_name_mismatches(segs, recording=REC)
    assert (finding.code, finding.severity, finding.segment) == ("NAME_MISMATCH", "warning", "clip-1.ts")


def orphan_recording(*extra: int) -> Recording:
    objects = tuple(ObjectInfo(f"rec/{slice_uri(n)}", 10, "e") for n in (0, 1, 2, *extra))
    return Recording(sid=SID, cname=CNAME, directory="rec/", playlist_key="rec/p.m3u8", slices=objects)


def test_orphans_are_unlisted_slices_placed_by_their_names():
    timeline = build_timeline([seg(0, m=media(0))])
    [finding] = find_orphans((seg(0), seg(1), seg(2)), recording=orphan_recording(9), timeline=timeline)
    assert (finding.code, finding.severity, finding.segment) == ("ORPHAN_SEGMENT", "warning", slice_uri(9))
    assert finding.at_s == pytest.approx(135.0)


def test_an_orphan_inside_a_gap_says_so():
    listed = [seg(0, m=media(0)), seg(1, m=media(30), uri=slice_uri(2), utc=START + timedelta(seconds=30))]
    timeline = build_timeline(listed)
    rec = Recording(sid=SID, cname=CNAME, directory="rec/", playlist_key="rec/p.m3u8",
                    slices=tuple(ObjectInfo(f"rec/{slice_uri(n)}", 10, "e") for n in (0, 1, 2)))  # fmt: skip
    [finding] = find_orphans(listed, recording=rec, timeline=timeline)
    assert finding.segment == slice_uri(1)
    assert "falls in the 15.000 s gap at 15.000 s" in finding.detail


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


@pytest.mark.parametrize(
    ("extinf", "media_s", "flagged"),
    [
        pytest.param(15.0, 15.0, False, id="equal"),
        pytest.param(15.0, 15.9, False, id="within-a-second"),
        pytest.param(15.0, 7.5, True, id="short-media"),
        pytest.param(10.0, 15.0, True, id="long-media"),
    ],
)
def test_duration_mismatch(extinf, media_s, flagged):
    found = find_duration_mismatches((seg(0, duration=extinf, m=media(0, media_s)),))
    assert codes(found) == (
        [("DURATION_MISMATCH", "warning", slice_uri(0), 0.0, pytest.approx(abs(media_s - extinf)))]
        if flagged
        else []
    )


def test_duration_mismatch_skips_corrupt_slices_which_say_it_themselves():
    assert find_duration_mismatches((seg(0, m=media(0, 5.0, trailing=10)),)) == ()


def test_no_keyframe_at_start_is_a_warning_for_video_only():
    segs = (
        seg(0, m=media(keyframe=True)),
        seg(1, m=media(keyframe=False)),
        seg(2, m=media(kinds=("audio",))),
    )
    assert codes(find_no_keyframe(segs)) == [("NO_KEYFRAME_AT_START", "warning", slice_uri(1), 15.0, 15.0)]


def test_continuity_counter_errors_are_counted_per_slice():
    [finding] = find_continuity_errors((seg(0, m=media()), seg(1, m=media(cc_errors=((256, 2), (257, 1))))))
    assert (finding.code, finding.severity, finding.at_s) == ("CONTINUITY_COUNTER", "warning", 15.0)
    assert "3 continuity-counter jumps" in finding.detail
    assert "PID 256: 2" in finding.detail


AV = ("video", "audio")


@pytest.mark.parametrize(
    ("stream_types", "kinds", "expected"),
    [
        pytest.param(2, [AV, AV, AV], [], id="as-asked"),
        pytest.param(0, [("audio",)] * 3, [], id="audio-only-as-asked"),
        pytest.param(2, [("audio",)] * 3, [("error", 0.0, 45.0, "3 slices from")], id="no-video"),
        pytest.param(2, [AV, ("video",), ("video",)], [("error", 15.0, 30.0, "lack audio")],
                     id="audio-stops"),
        pytest.param(0, [AV, AV, AV], [("warning", 0.0, 45.0, "carry video")], id="extra-video"),
        pytest.param(None, [AV, ("audio",), AV], [("error", 15.0, 15.0, "rest of the recording")],
                     id="no-profile-compares-with-the-rest"),
        pytest.param(None, [("audio",)] * 3, [], id="no-profile-audio-only"),
    ],
)  # fmt: skip
def test_streams_mismatch(stream_types, kinds, expected):
    segs = tuple(seg(i, m=media(i * 15.0, kinds=k)) for i, k in enumerate(kinds))
    found = find_streams_mismatch(segs, expect=Expectations(stream_types=stream_types))
    assert [(f.severity, f.at_s, pytest.approx(f.seconds)) for f in found] == [e[:3] for e in expected]
    for f, e in zip(found, expected, strict=True):
        assert f.code == "STREAMS_MISMATCH"
        assert e[3] in f.detail


def test_resolution_mismatch_groups_runs():
    sizes = [(320, 240), (640, 360), (640, 360), (320, 240), (160, 120)]
    segs = tuple(seg(i, m=media(i * 15.0, size=s)) for i, s in enumerate(sizes))
    found = find_resolution_mismatch(segs, expect=Expectations(width=320, height=240))
    assert [(f.code, f.severity, f.at_s, f.seconds) for f in found] == [
        ("RESOLUTION_MISMATCH", "warning", 15.0, 30.0),
        ("RESOLUTION_MISMATCH", "warning", 60.0, 15.0),
    ]
    assert "2 slices from" in found[0].detail
    assert "640x360, not the 320x240" in found[0].detail
    assert find_resolution_mismatch(segs, expect=Expectations()) == ()


def test_unusable():
    repeats = frozenset({3})
    assert unusable(seg(0, m=media()), repeats=repeats) is None
    assert unusable(seg(0, present=False), repeats=repeats) == "MISSING_SEGMENT"
    assert unusable(seg(0, size=0), repeats=repeats) == "EMPTY_SEGMENT"
    assert unusable(seg(3, m=media()), repeats=repeats) == "DUPLICATE_SEGMENT"
    assert unusable(seg(0, m=media(readable=False)), repeats=repeats) == "CORRUPT_SEGMENT"
    assert unusable(seg(0, m=media(trailing=5)), repeats=repeats) is None


def test_check_places_marks_and_orders_findings():
    later = START + timedelta(seconds=45)
    segs = (
        seg(0, m=media(0), at=None),
        seg(1, present=False, utc=START + timedelta(seconds=15)),
        seg(2, m=media(45.0), utc=later),  # a slice missing from both playlist and storage before it
    )
    segs = tuple(replace(s, at_s=None) for s in segs)
    placed, findings = check(segs, job=Job(recording=REC, expect=Expectations(stream_types=2)))
    assert [s.at_s for s in placed] == [0.0, 15.0, pytest.approx(45.0)]
    assert [s.defect for s in placed] == [None, "MISSING_SEGMENT", None]
    assert [(f.code, f.entry, f.at_s, f.seconds) for f in findings] == [
        ("MISSING_SEGMENT", 1, 15.0, 15.0),
        ("TIMELINE_GAP", 2, 30.0, pytest.approx(15.0)),
    ]
