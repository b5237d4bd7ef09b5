"""The splice plan: shifts, cuts and MP4 parts, one usable slice at a time (pure, with built media facts)."""

import dataclasses
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.model.job import Segment
from pipeline.model.media import PTS_WRAP, TICKS_PER_S
from stages.splice import Splicer, wrap_shift
from tests.builders import media

S = TICKS_PER_S
BIG = 10**12


def seg(i, at, *, media_at=None, seconds=15.0, size=1000):
    """Slice ``i`` placed at ``at`` on the recording's clock, its media clock at 10 s + ``media_at``."""
    return Segment(
        index=i, num=i, uri=f"s{i}.ts", duration=seconds, key=f"s{i}.ts", size=size, at_s=at,
        media=media(at if media_at is None else media_at, seconds),
    )  # fmt: skip


def plan(segs, *, max_seconds=BIG, max_bytes=BIG):
    splicer = Splicer(max_seconds=max_seconds, max_bytes=max_bytes)
    return [splicer.add(s) for s in segs], splicer.parts()


def test_continuous_clock_is_left_alone():
    steps, parts = plan([seg(i, 15.0 * i) for i in range(4)])
    assert [(s.shift, s.cut_previous, s.part, s.new_part, s.closed_gap_s) for s in steps] == [
        (0, {}, 0, True, 0.0),
        (0, {}, 0, False, 0.0),
        (0, {}, 0, False, 0.0),
        (0, {}, 0, False, 0.0),
    ]
    [part] = parts
    assert (part.entries, part.start_s, part.duration_s, part.input_bytes) == ((0, 1, 2, 3), 0.0, 60.0, 4000)


def test_a_gap_is_closed_for_everything_after_it():
    steps, [part] = plan([seg(0, 0.0), seg(1, 30.0), seg(2, 45.0)])  # 15 s missing at 15 s
    assert [(s.shift, s.closed_gap_s) for s in steps] == [(0, 0.0), (-15 * S, 15.0), (-15 * S, 0.0)]
    assert part.duration_s == 45.0


def test_jitter_within_the_tolerance_is_not_closed():
    steps, [part] = plan([seg(0, 0.0), seg(1, 15.2)])
    assert [(s.shift, s.closed_gap_s) for s in steps] == [(0, 0.0), (0, 0.0)]
    assert part.duration_s == pytest.approx(30.2)


def test_restarted_timestamps_are_moved_onto_the_output_clock():
    """After an interruption the media clock starts again at 0; the names place the slice at 15 s."""
    steps, [part] = plan([seg(0, 0.0), seg(1, 15.0, media_at=-10.0)])
    assert steps[1].shift == 25 * S  # its media starts at tick 0; it must continue at 10 s + 15 s
    assert part.duration_s == 30.0


@pytest.mark.parametrize(
    ("named_at", "closed"),
    [
        pytest.param(14.98, 0.0, id="name-20ms-early"),
        pytest.param(15.2, 0.2, id="name-200ms-late"),
        pytest.param(20.0, 5.0, id="after-a-pause"),
    ],
)
def test_a_new_clock_follows_the_previous_slice(named_at, closed):
    """Restarted timestamps: the name only says roughly where; the slice follows on seamlessly."""
    steps, [part] = plan([seg(0, 0.0), seg(1, named_at, media_at=-10.0)])
    assert (steps[1].shift, steps[1].cut_previous) == (25 * S, {})
    assert steps[1].closed_gap_s == pytest.approx(closed)
    assert part.duration_s == 30.0


def test_a_new_clock_that_overlaps_by_more_than_the_tolerance_is_cut():
    steps, [part] = plan([seg(0, 0.0), seg(1, 10.0, media_at=-10.0)])
    assert steps[1].shift == 20 * S
    assert set(steps[1].cut_previous) == {256, 257}
    assert part.duration_s == 25.0


def test_overlap_cuts_the_earlier_slice_one_frame_before_the_next_begins():
    steps, [part] = plan([seg(0, 0.0), seg(1, 10.0)])  # 5 s recorded twice
    frame = 6000
    assert steps[1].shift == 0
    assert steps[1].cut_previous == {256: (10 + 10) * S - frame + 1, 257: (10 + 10) * S - frame + 1}
    assert part.duration_s == 25.0


def test_a_stream_ending_exactly_where_the_next_begins_is_not_cut():
    assert plan([seg(0, 0.0), seg(1, 15.0)])[0][1].cut_previous == {}


def test_splits_before_a_slice_would_pass_the_duration_limit():
    steps, parts = plan([seg(i, 15.0 * i) for i in range(7)], max_seconds=40.0)
    assert [(s.part, s.new_part) for s in steps] == [
        (0, True), (0, False), (1, True), (1, False), (2, True), (2, False), (3, True),
    ]  # fmt: skip
    assert [(p.index, p.entries, p.start_s, p.duration_s) for p in parts] == [
        (0, (0, 1), 0.0, 30.0),
        (1, (2, 3), 30.0, 30.0),
        (2, (4, 5), 60.0, 30.0),
        (3, (6,), 90.0, 15.0),
    ]


def test_splits_before_a_slice_would_pass_the_size_limit():
    sizes = [600, 300, 200, 900, 100]
    _, parts = plan([seg(i, 15.0 * i, size=n) for i, n in enumerate(sizes)], max_bytes=1000)
    assert [(p.entries, p.input_bytes) for p in parts] == [((0, 1), 900), ((2,), 200), ((3, 4), 1000)]


def test_a_slice_over_the_limits_gets_an_mp4_of_its_own():
    _, parts = plan([seg(0, 0.0), seg(1, 15.0, seconds=100.0), seg(2, 115.0)], max_seconds=60.0)
    assert [p.entries for p in parts] == [(0,), (1,), (2,)]


def test_closed_gaps_do_not_count_towards_the_duration_limit():
    _, parts = plan([seg(0, 0.0), seg(1, 3600.0), seg(2, 3615.0)], max_seconds=50.0)
    assert [(p.entries, p.start_s, p.duration_s) for p in parts] == [((0, 1, 2), 0.0, 45.0)]


def test_unplaced_or_unread_slices_are_refused():
    with pytest.raises(ValueError, match="placed and read"):
        Splicer(max_seconds=1, max_bytes=1).add(dataclasses.replace(seg(0, 0.0), at_s=None))


@pytest.mark.parametrize(
    ("ticks", "expected"),
    [
        (0, 0),
        (5, 5),
        (-5, -5),
        (PTS_WRAP, 0),
        (PTS_WRAP - 5, -5),
        (-PTS_WRAP + 5, 5),
        (PTS_WRAP // 2, PTS_WRAP // 2),
    ],
)
def test_wrap_shift(ticks, expected):
    assert wrap_shift(ticks) == expected


def test_cuts_follow_the_clock_across_the_wrap():
    """The earlier slice ends just past 2**33 (unwrapped); the next one's raw timestamps start near 0."""
    splicer = Splicer(max_seconds=BIG, max_bytes=BIG)
    near_wrap = (PTS_WRAP - 10 * S) / S - 10  # media() adds 10 s
    a = seg(0, 0.0, media_at=near_wrap)
    b = seg(1, 10.0, media_at=-10.0)  # raw tick 0 = 2**33: 10 s into a, so a 5 s overlap
    splicer.add(a)
    step = splicer.add(b)
    assert step.shift == 0
    assert step.cut_previous == {256: PTS_WRAP - 6000 + 1, 257: PTS_WRAP - 6000 + 1}


def test_cuts_between_ignores_kinds_one_slice_lacks():
    a = seg(0, 0.0)
    b = dataclasses.replace(seg(1, 10.0), media=media(10.0, 15.0, kinds=("audio",)))
    splicer = Splicer(max_seconds=BIG, max_bytes=BIG)
    splicer.add(a)
    assert set(splicer.add(b).cut_previous) == {257}


@given(
    steps=st.lists(
        st.tuples(
            st.floats(min_value=0.5, max_value=20.0),  # slice length
            st.floats(min_value=-3.0, max_value=30.0),  # gap (negative: overlap) before it
            st.booleans(),  # its media clock restarts
        ),
        min_size=1,
        max_size=30,
    ),
    max_seconds=st.floats(min_value=10.0, max_value=100.0),
)
def test_output_clock_never_runs_backwards_and_parts_respect_the_limit(steps, max_seconds):
    segs, at, media_at = [], 0.0, 0.0
    for i, (seconds, gap, restart) in enumerate(steps):
        if i:
            at += gap
            media_at = -9.0 if restart else media_at + gap
        segs.append(seg(i, at, media_at=media_at, seconds=seconds))
        at += seconds
        media_at += seconds
    splicer = Splicer(max_seconds=max_seconds, max_bytes=BIG)
    out_starts = []
    for s in segs:
        step = splicer.add(s)
        assert s.media is not None
        assert s.media.start_ticks is not None
        out_starts.append((s.media.start_ticks + step.shift) % PTS_WRAP)
    swallowed = any(-gap >= before for (before, _, _), (_, gap, _) in itertools.pairwise(steps))
    assert out_starts == sorted(out_starts) or swallowed  # only a slice inside its predecessor may not
    for part in splicer.parts():
        assert part.duration_s <= max_seconds + 1e-6 or len(part.entries) == 1
