"""The timeline: three clocks reconciled, gaps and overlaps placed and measured (pure, table-driven)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from pipeline.model.job import Segment
from stages.timeline import (
    CLOCK_AGREEMENT_S,
    GAP_TOLERANCE_S,
    build_timeline,
    place,
    repeated_entries,
)
from tests.builders import START, media


def seg(i, *, at=None, media_at=None, seconds=15.0, extinf=None, disc=False, named=True, m=True, **kw):
    """Entry ``i``: named as starting at ``at`` (default i*15), with media starting at ``media_at``."""
    at = i * 15.0 if at is None else at
    media_at = at if media_at is None else media_at
    uri = f"s_{i}.ts"
    return Segment(
        index=i,
        num=i,
        uri=uri,
        duration=seconds if extinf is None else extinf,
        discontinuity=disc,
        key=f"rec/{uri}",
        utc=START + timedelta(seconds=at) if named else None,
        size=18800,
        media=media(media_at, seconds, **kw) if m else None,
    )


def found(timeline):
    return [
        (f.code, f.severity, f.entry, round(f.at_s, 3), f.seconds and round(f.seconds, 3))
        for f in timeline.findings
    ]


def test_contiguous_recording_has_no_findings_and_extinf_positions():
    tl = build_timeline([seg(0), seg(1), seg(2)])
    assert tl.findings == ()
    assert tl.starts == {0: 0.0, 1: 15.0, 2: 30.0}
    assert tl.origin == START
    assert tl.end_s == pytest.approx(45.0)


def test_gap_seen_by_names_and_media():
    tl = build_timeline([seg(0), seg(1), seg(2, at=45.0), seg(3, at=60.0)])
    assert found(tl) == [("TIMELINE_GAP", "error", 2, 30.0, 15.0)]
    assert tl.starts[2] == pytest.approx(45.0)


def test_gap_seen_by_names_alone_when_media_is_unreadable():
    tl = build_timeline([seg(0, m=False), seg(1, m=False), seg(2, at=40.0, m=False)])
    assert found(tl) == [("TIMELINE_GAP", "error", 2, 30.0, 10.0)]


def test_gap_seen_by_media_alone_when_names_do_not_parse():
    tl = build_timeline([seg(0, named=False), seg(1, media_at=20.0, named=False)])
    assert found(tl) == [("TIMELINE_GAP", "error", 1, 15.0, 5.0)]


def test_short_media_leaves_a_gap_even_when_extinf_claims_full_length():
    tl = build_timeline([seg(0, seconds=7.5, extinf=15.0), seg(1)])
    assert found(tl) == [("TIMELINE_GAP", "error", 1, 7.5, 7.5)]


def test_overlap():
    tl = build_timeline([seg(0, seconds=20.0), seg(1), seg(2)])
    assert found(tl) == [("TIMELINE_OVERLAP", "error", 1, 15.0, 5.0)]


def test_jitter_within_tolerance_is_contiguous():
    tiny = GAP_TOLERANCE_S * 0.8
    tl = build_timeline([seg(0), seg(1, at=15.0 + tiny), seg(2, at=30.0 + tiny), seg(3, at=45.0)])
    assert tl.findings == ()


def test_missing_slice_in_between_is_not_a_gap():
    """A listed slice that is not there is MISSING_SEGMENT's business, not the timeline's."""
    tl = build_timeline([seg(0), seg(1, m=False), seg(2)])
    assert tl.findings == ()
    assert tl.starts[1] == pytest.approx(15.0)


def test_repeated_entry_sits_where_it_is_listed_and_is_skipped():
    segs = [seg(0), seg(1), replace(seg(1), index=2), replace(seg(2), index=3)]
    assert repeated_entries(segs) == {2}
    tl = build_timeline(segs)
    assert tl.findings == ()
    assert tl.starts[2] == tl.starts[1] == pytest.approx(15.0)


def test_a_wrong_name_is_named_and_ignored():
    tl = build_timeline([seg(0), seg(1, at=25.0, media_at=15.0), seg(2)])
    assert found(tl) == [("NAME_MISMATCH", "warning", 1, 15.0, None)]
    assert tl.starts[2] == pytest.approx(30.0)


def test_unsignalled_timestamp_jump_is_a_discontinuity_warning():
    tl = build_timeline([seg(0), seg(1, media_at=500.0), seg(2, media_at=515.0)])
    [finding] = tl.findings
    assert (finding.code, finding.severity, finding.entry) == ("DISCONTINUITY", "warning", 1)
    assert "jump" in finding.detail
    assert tl.starts == {0: 0.0, 1: 15.0, 2: 30.0}


def test_tagged_resolution_change_is_explained():
    tl = build_timeline([seg(0), seg(1, disc=True, size=(640, 360)), seg(2, size=(640, 360))])
    [finding] = tl.findings
    assert (finding.code, finding.severity, finding.at_s) == ("DISCONTINUITY", "info", 15.0)
    assert "resolution change 320x240 → 640x360" in finding.detail


def test_untagged_resolution_change_is_a_warning():
    tl = build_timeline([seg(0), seg(1, size=(640, 360))])
    [finding] = tl.findings
    assert (finding.code, finding.severity) == ("DISCONTINUITY", "warning")
    assert "no #EXT-X-DISCONTINUITY" in finding.detail


def test_tagged_interruption_is_a_gap_and_an_explained_discontinuity():
    """After the tag the media clock restarts, so the names measure the interruption."""
    tl = build_timeline([seg(0), seg(1, at=27.0, media_at=0.0, disc=True)])
    assert found(tl) == [
        ("TIMELINE_GAP", "error", 1, 15.0, 12.0),
        ("DISCONTINUITY", "info", 1, 27.0, None),
    ]
    assert "interruption: 12.000 s without media" in tl.findings[1].detail
    assert "media timestamps restart" in tl.findings[1].detail


def test_streams_change_at_a_tag():
    tl = build_timeline([seg(0), seg(1, disc=True, kinds=("audio",))])
    assert "streams change audio+video → audio" in tl.findings[0].detail


def test_nothing_to_go_on_means_contiguous():
    tl = build_timeline([seg(0, named=False, m=False), seg(1, named=False, m=False)])
    assert tl.findings == ()
    assert tl.starts == {0: 0.0, 1: 15.0}
    assert tl.origin is None


HALF = CLOCK_AGREEMENT_S / 2


@pytest.mark.parametrize(
    ("contiguous", "by_media", "by_name", "start", "clock", "name_wrong", "jump"),
    [
        pytest.param(15.0, 15.0, 15.0, 15.0, "media", False, None, id="all-agree"),
        pytest.param(15.0, 30.0, 30.0, 30.0, "media", False, None, id="gap-both"),
        pytest.param(15.0, 15.0, 40.0, 15.0, "media", True, None, id="name-wrong"),
        pytest.param(15.0, 900.0, 15.0, 15.0, "names", False, 885.0, id="media-jumps"),
        pytest.param(15.0, None, 20.0, 20.0, "names", False, None, id="names-only"),
        pytest.param(15.0, 21.0, None, 21.0, "media", False, None, id="media-only"),
        pytest.param(15.0, None, None, 15.0, "playlist", False, None, id="neither"),
        pytest.param(15.0, 15.0 + HALF, 15.0, 15.0 + HALF, "media", False, None, id="within-agreement"),
    ],
)  # fmt: skip
def test_place(contiguous, by_media, by_name, start, clock, name_wrong, jump):
    placed = place(contiguous=contiguous, by_media=by_media, by_name=by_name)
    assert (placed.start, placed.clock, placed.name_wrong) == (start, clock, name_wrong)
    assert placed.media_jump == (None if jump is None else pytest.approx(jump))
