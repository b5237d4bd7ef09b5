"""Planning one user's merged MP4: alignment by slice names, absences kept or cut, silence, overlaps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.model.exceptions import MediaError
from pipeline.model.job import Segment
from pipeline.model.media import PTS_WRAP, TICKS_PER_S
from stages.align import BASE_TICKS, Span, absences, clock_mapping, plan_merge
from tests.builders import media

T0 = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)


def stream(
    kind: str, starts: list[float], *, length: float = 5.0, name_offset: float = 0.0, pts_base: float = 0.0
) -> tuple[Segment, ...]:
    """Slices of one stream at ``starts`` (its own timeline), named ``name_offset`` s after T0."""
    segs = []
    for i, at in enumerate(starts):
        m = media(pts_base + at, length, kinds=(kind,))
        segs.append(
            Segment(
                index=i,
                num=i,
                uri=f"s{i}.ts",
                duration=length,
                key=f"s{i}.ts",
                utc=T0 + timedelta(seconds=name_offset + at),
                size=m.size,
                media=m,
                at_s=at,
            )
        )
    return tuple(segs)


def test_streams_are_aligned_by_their_names_not_their_timestamps():
    video = stream("video", [0, 5], name_offset=0.24, pts_base=900)
    audio = stream("audio", [0, 5], pts_base=37)
    plan = plan_merge({"video": video, "audio": audio}, absent="keep")
    assert plan.origin == T0
    assert plan.starts == {"video": pytest.approx(0.24), "audio": 0.0}
    assert plan.output_start("video") == pytest.approx(0.24)
    first_video = video[0].media
    assert first_video is not None
    assert first_video.start_ticks is not None
    landed = (first_video.start_ticks + plan.pieces["video"][0].shift) % PTS_WRAP
    assert landed == round(0.24 * TICKS_PER_S) + BASE_TICKS
    assert plan.absences == ()
    assert plan.silences == ()
    assert plan.duration_s == pytest.approx(10.24)


def test_absence_is_kept_or_cut_on_both_streams():
    video = stream("video", [0, 18])
    audio = stream("audio", [0, 18])
    kept = plan_merge({"video": video, "audio": audio}, absent="keep")
    assert kept.absences == (Span(start_s=5.0, seconds=13.0),)
    assert [p.start_s for p in kept.pieces["video"]] == [0.0, 18.0]
    assert kept.silences == (Span(start_s=5.0, seconds=13.0),)
    cut = plan_merge({"video": video, "audio": audio}, absent="cut")
    assert [p.start_s for p in cut.pieces["video"]] == [0.0, 5.0]
    assert [p.start_s for p in cut.pieces["audio"]] == [0.0, 5.0]
    assert cut.silences == ()
    assert cut.duration_s == pytest.approx(10.0)


def test_time_only_one_stream_lacks_is_never_cut():
    video = stream("video", [0, 5, 10])
    audio = stream("audio", [0, 10])  # microphone off from 5 s to 10 s
    plan = plan_merge({"video": video, "audio": audio}, absent="cut")
    assert plan.absences == ()
    assert plan.silences == (Span(start_s=5.0, seconds=5.0),)
    assert plan.duration_s == pytest.approx(15.0)


def test_a_user_with_only_audio():
    plan = plan_merge({"audio": stream("audio", [0, 5])}, absent="keep")
    assert list(plan.pieces) == ["audio"]


def test_overlapping_slice_is_left_out():
    video = stream("video", [0, 2])
    plan = plan_merge({"video": video}, absent="keep")
    assert [p.index for p in plan.pieces["video"]] == [0]
    assert [p.index for p in plan.dropped] == [1]


def test_unusable_slices_are_not_placed():
    video = stream("video", [0, 5])
    broken = (video[0], Segment(**{**{f: getattr(video[1], f) for f in video[1].__slots__}, "defect": "X"}))
    plan = plan_merge({"video": broken}, absent="keep")
    assert [p.index for p in plan.pieces["video"]] == [0]


def test_errors():
    with pytest.raises(MediaError, match="neither"):
        plan_merge({"video": ()}, absent="keep")
    nameless = tuple(
        Segment(**{**{f: getattr(s, f) for f in s.__slots__}, "utc": None}) for s in stream("video", [0])
    )
    with pytest.raises(MediaError, match="no time in their names"):
        plan_merge({"video": nameless}, absent="keep")


def test_absences_and_mapping():
    spans = [Span(start_s=0, seconds=5), Span(start_s=5.1, seconds=2), Span(start_s=10, seconds=1)]
    gone = absences(spans)
    assert gone == (Span(start_s=7.1, seconds=pytest.approx(2.9)),)
    cut = clock_mapping(gone, absent="cut")
    assert cut(3.0) == 3.0
    assert cut(10.0) == pytest.approx(7.1)
    assert clock_mapping(gone, absent="keep")(10.0) == 10.0
