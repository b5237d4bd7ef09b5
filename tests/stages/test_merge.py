"""The merge stages without a recording: spooling slices, the MPEG-TS each stream is written as, the
checks on the merged MP4, the alignment the report keeps, and silence made by real ffmpeg."""

from __future__ import annotations

import os

import pytest

from pipeline.model.config import PipelineConfig
from pipeline.model.exceptions import MediaError
from pipeline.model.job import Job, Recording, Segment
from pipeline.model.media import TICKS_PER_S
from pipeline.storage import LocalStorage
from stages.align import BASE_TICKS, Piece, Span, plan_merge
from stages.base import Destination, Fetched, StageContext
from stages.ffmpeg import find_ffmpeg
from stages.media.mp4 import Mp4Info, Mp4Track
from stages.media.ts import read_slice
from stages.merge import (
    AlignStage,
    MergeStage,
    Spool,
    alignment,
    audio_facts,
    check_merged,
    make_silence,
    streams_of,
    write_stream,
)
from tests.builders import media
from tests.stages.test_align import stream

PACKET = 188


def ctx_for(tmp_path) -> StageContext:
    store = LocalStorage(tmp_path / "store")
    return StageContext(
        storage=store,
        destination=Destination(storage=store, directory=""),
        workdir=tmp_path,
        config=PipelineConfig(),
    )


def seg(index: int) -> Segment:
    return Segment(index=index, num=index, uri=f"s{index}.ts", duration=5.0)


def packets(tag: int, count: int = 2) -> bytes:
    """``count`` fake TS packets whose bytes say which slice they are."""
    return bytes([0x47, tag]) * (PACKET // 2) * count


def test_a_spool_keeps_each_fetched_slice_and_reads_it_back(tmp_path):
    spool = Spool("audio.spool")
    spool.start(
        Job(recording=Recording(sid="s", cname="c", directory="", playlist_key=None)), ctx_for(tmp_path)
    )
    spool.add(Fetched(segment=seg(0), data=packets(1)))
    spool.add(Fetched(segment=seg(1), data=None))  # missing: nothing kept
    spool.add(Fetched(segment=seg(2), data=packets(3, 3)))
    spool.finish(ok=True)
    assert spool.path == tmp_path / "audio.spool"
    with spool.reading() as read:
        assert read(2) == packets(3, 3)
        assert read(0) == packets(1)
        with pytest.raises(KeyError):
            read(1)


def test_a_spool_never_filled_says_so():
    with pytest.raises(MediaError, match="never filled"), Spool("video.spool").reading():
        pass


def test_the_audio_facts_come_from_the_first_slice_that_has_them():
    segs = [seg(0), Segment(index=1, num=1, uri="a.ts", duration=5.0, media=media(kinds=("audio",)))]
    facts = audio_facts(segs)
    assert facts is not None
    assert (facts.sample_rate, facts.channels, facts.pid) == (48000, 1, 257)
    assert (
        audio_facts([Segment(index=0, num=0, uri="v.ts", duration=5.0, media=media(kinds=("video",)))])
        is None
    )


def test_a_stream_is_written_in_time_order_with_silence_before_a_slice_at_the_same_time(tmp_path):
    spool = Spool("audio.spool")
    spool.start(
        Job(recording=Recording(sid="s", cname="c", directory="", playlist_key=None)), ctx_for(tmp_path)
    )
    for i in range(3):
        spool.add(Fetched(segment=seg(i), data=packets(i + 1)))
    spool.finish(ok=True)
    plan = plan_merge({"audio": stream("audio", [0.0, 5.0, 10.0])}, absent="keep")
    pieces = {"audio": (
        Piece(stream="audio", index=2, shift=0, start_s=10.0, end_s=15.0),
        Piece(stream="audio", index=0, shift=0, start_s=0.0, end_s=5.0),
    )}  # fmt: skip
    plan = type(plan)(**{**{f: getattr(plan, f) for f in plan.__dataclass_fields__}, "pieces": pieces})
    out = tmp_path / "audio.ts"
    write_stream("audio", plan, spool=spool, fills=[(10.0, packets(9)), (5.0, packets(8))], path=out)
    assert out.read_bytes() == packets(1) + packets(8) + packets(9) + packets(3)


def track(kind: str, start_s: float, frame_s: float) -> Mp4Track:
    scale = 90000
    return Mp4Track(
        track_id=1 if kind == "video" else 2, kind=kind, codec="h264" if kind == "video" else "aac",
        duration_s=20.0, timescale=scale, width=None, height=None, sample_count=10,
        sample_durations=((10, round(frame_s * scale)),), start_s=start_s,
    )  # fmt: skip


def user_plan():
    """Video from 0 s, audio named 2 s later: the audio starts at 2 s in the MP4."""
    return plan_merge(
        {"video": stream("video", [0.0, 5.0]), "audio": stream("audio", [0.0, 5.0], name_offset=2.0)},
        absent="keep",
    )


def test_the_merged_mp4_must_start_each_track_where_the_plan_puts_it():
    plan = user_plan()
    assert plan.output_start("audio") == pytest.approx(2.0)
    good = Mp4Info(
        duration_s=plan.duration_s,
        tracks=(track("video", 0.0, 1 / 15), track("audio", 2.01, 0.021)),
        faststart=True,
    )
    assert check_merged(good, plan_=plan) == ()
    late = Mp4Info(
        duration_s=plan.duration_s,
        tracks=(track("video", 0.0, 1 / 15), track("audio", 2.5, 0.021)),
        faststart=True,
    )
    with pytest.raises(MediaError, match=r"audio track starts at 2\.500 s"):
        check_merged(late, plan_=plan)
    no_audio = Mp4Info(duration_s=plan.duration_s, tracks=(track("video", 0.0, 1 / 15),), faststart=True)
    with pytest.raises(MediaError, match="lacks the user's audio track"):
        check_merged(no_audio, plan_=plan)


def test_a_merged_mp4_of_the_wrong_length_is_a_warning():
    plan = user_plan()
    short = Mp4Info(
        duration_s=plan.duration_s - 2,
        tracks=(track("video", 0.0, 1 / 15), track("audio", 2.0, 0.021)),
        faststart=True,
    )
    [finding] = check_merged(short, plan_=plan)
    assert (finding.code, finding.severity) == ("DURATION_MISMATCH", "warning")
    assert finding.seconds == pytest.approx(-2.0)


def test_the_alignment_keeps_starts_absences_and_covered_time():
    plan = plan_merge(
        {"video": stream("video", [0.0, 20.0]), "audio": stream("audio", [0.0, 20.0])}, absent="keep"
    )
    kept = alignment(plan)
    assert kept.starts == {"video": 0.0, "audio": 0.0}
    assert kept.absences == ((5.0, 15.0),)
    assert kept.media_s == pytest.approx(10.0)


def user_job(**changes) -> Job:
    rec = Recording(
        sid="s", cname="c", mode="individual", uid="7", media="av", directory="", playlist_key=None
    )
    video = Job(
        recording=Recording(
            sid="s", cname="c", mode="individual", uid="7", media="video", directory="", playlist_key="v.m3u8"
        ),
        segments=stream("video", [0.0, 5.0]),
    )
    audio = Job(
        recording=Recording(
            sid="s", cname="c", mode="individual", uid="7", media="audio", directory="", playlist_key="a.m3u8"
        ),
        segments=stream("audio", [0.0, 5.0], name_offset=1.0),
    )
    return Job(recording=rec, streams=(video, audio), absent="keep", **changes)


def test_the_align_stage_sets_the_alignment(tmp_path):
    job = AlignStage().run(user_job(), ctx_for(tmp_path))
    assert job.alignment is not None
    assert job.alignment.starts == {"video": 0.0, "audio": pytest.approx(1.0)}
    assert set(streams_of(job)) == {"video", "audio"}
    plain = Job(recording=job.recording)
    assert AlignStage().run(plain, ctx_for(tmp_path)) is plain


def test_the_merge_stage_writes_nothing_when_no_mp4_is_wanted(tmp_path):
    job = user_job(want_mp4=False)
    assert MergeStage({}).run(job, ctx_for(tmp_path)) is job
    assert MergeStage.name == "remux"  # the SPEC's remux step, for a user's two streams


@pytest.mark.ffmpeg
def test_silence_fills_a_hole_from_where_it_starts(tmp_path):
    facts = audio_facts([Segment(index=0, num=0, uri="a.ts", duration=5.0, media=media(kinds=("audio",)))])
    assert facts is not None
    data = make_silence(
        find_ffmpeg(os.environ), Span(start_s=3.0, seconds=2.0), facts=facts, workdir=tmp_path
    )
    assert data is not None
    read = read_slice([data])
    assert read.start_ticks == round(3.0 * TICKS_PER_S) + BASE_TICKS
    [audio] = read.media_streams
    assert (audio.kind, audio.pid, audio.sample_rate) == ("audio", 257, 48000)
    assert read.duration_s is not None
    assert read.duration_s <= 2.0
    assert list(tmp_path.iterdir()) == []  # the work file is removed


def test_a_hole_shorter_than_two_frames_gets_no_silence(tmp_path):
    facts = audio_facts([Segment(index=0, num=0, uri="a.ts", duration=5.0, media=media(kinds=("audio",)))])
    assert facts is not None
    assert (
        make_silence("/nonexistent/ffmpeg", Span(start_s=1.0, seconds=0.03), facts=facts, workdir=tmp_path)
        is None
    )
