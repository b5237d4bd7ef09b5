from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.model.job import Expectations, Job, RecorderMp4, Recording, Segment
from pipeline.storage import LocalStorage, ObjectInfo
from stages.coverage import covers, expected_tracks, judge, place, recorder_findings
from stages.outputs import OWNER_LABEL, alongside_name, is_own, name_taken
from stages.recorder import BLOCK_BYTES, BlockReader
from tests.builders import media as make_media

AV = ("video", "audio")


def mp4(index: int, seconds: float | None = 10.0, *, tracks=AV, backup=None, error=None) -> RecorderMp4:
    prefix = "" if backup is None else f"bak{backup}_"
    return RecorderMp4(
        key=f"rec/{prefix}sid_room_{index}.mp4",
        index=index,
        backup=backup,
        bytes=1000,
        etag="e",
        duration_s=seconds,
        tracks=tracks,
        error=error,
    )


@pytest.mark.parametrize(
    ("mp4s", "expected_s", "problems"),
    [
        pytest.param([mp4(0, 20.0)], 20.0, [], id="one-file"),
        pytest.param([mp4(0, 10.0), mp4(1, 10.4)], 20.0, [], id="two-files-within-tolerance"),
        pytest.param([mp4(1, 20.0)], 20.0, ["MP4 index 0 is missing"], id="index-0-missing"),
        pytest.param(
            [mp4(0, 10.0), mp4(2, 10.0)], 20.0, ["MP4 index 1 is missing"], id="index-in-the-middle-missing"
        ),
        pytest.param([mp4(0, 12.0)], 20.0, ["short of the slices' 20.000 s"], id="too-short"),
        pytest.param([mp4(0, 25.0)], 20.0, ["longer than the slices' 20.000 s"], id="too-long"),
        pytest.param([mp4(0, 20.0, tracks=("video",))], 20.0, ["has no audio track"], id="no-audio"),
        pytest.param(
            [mp4(0, None, tracks=(), error="not an MP4: no moov box")],
            20.0,
            ["cannot be read: not an MP4: no moov box"],
            id="unreadable",
        ),
        pytest.param(
            [mp4(0, 10.0), mp4(0, 10.0, backup=0)], 20.0, [], id="original-and-failover-set-each-from-0"
        ),
        pytest.param(
            [mp4(0, 10.0), mp4(1, 10.0, backup=0)],
            20.0,
            ["MP4 index 0 of failover set bak0 is missing"],
            id="failover-set-without-0",
        ),
    ],
)
def test_judge(mp4s: list[RecorderMp4], expected_s: float, problems: list[str]) -> None:
    verdict = judge(mp4s, tracks=AV, expected_s=expected_s)
    assert verdict.covers is (not problems)
    assert len(verdict.problems) == len(problems)
    for found, wanted in zip(verdict.problems, problems, strict=True):
        assert wanted in found


def test_judge_of_nothing_covers_nothing() -> None:
    assert judge([], tracks=AV, expected_s=0.0).covers is False


def test_alongside_name() -> None:
    assert alongside_name("sid_room_0.mp4") == "sid_room_0.recpipe.mp4"


def seg(index: int, at: float, length: float = 5.0, **kw: object) -> Segment:
    return Segment(
        index=index,
        num=index,
        uri=f"s{index}.ts",
        duration=length,
        key=f"rec/s{index}.ts",
        size=100,
        at_s=at,
        **kw,  # type: ignore[arg-type]
    )


def test_place_lays_the_mp4s_over_the_slices() -> None:
    segments = [seg(i, 5.0 * i) for i in range(6)]
    placed = place([mp4(1, 10.0), mp4(0, 20.0)], segments)
    assert [(m.index, m.start_s, m.slices) for m in placed] == [
        (0, 0.0, ("s0.ts", "s3.ts")),
        (1, 20.0, ("s4.ts", "s5.ts")),
    ]


def test_place_skips_unusable_slices_and_survives_a_short_set() -> None:
    segments = [seg(0, 0.0), seg(1, 5.0, defect="CORRUPT_SEGMENT"), seg(2, 10.0)]
    [only] = place([mp4(0, 10.0), mp4(1, 0.0)], segments)[:1]
    assert only.slices == ("s0.ts", "s2.ts")
    empty = place([mp4(0, 10.0)], [])
    assert empty[0].start_s is None
    assert empty[0].slices == ()


def job_with(mp4s: tuple[RecorderMp4, ...], *, playlist_s: float, want_mp4: bool = True) -> Job:
    rec = Recording(sid="sid", cname="room", directory="rec/", playlist_key="rec/sid_room.m3u8")
    return Job(
        recording=rec,
        recorder_mp4s=mp4s,
        playlist_duration=playlist_s,
        want_mp4=want_mp4,
        expect=Expectations(stream_types=2),
    )


def test_covers_is_judged_against_the_playlist_before_fetching() -> None:
    assert covers(job_with((mp4(0, 30.0),), playlist_s=30.0)) is True
    assert covers(job_with((mp4(0, 15.0),), playlist_s=30.0)) is False
    assert covers(job_with((), playlist_s=30.0)) is False


def test_recorder_findings_after_verification() -> None:
    segments = tuple(seg(i, 5.0 * i, media=make_media(5.0 * i, 5.0)) for i in range(4))
    job = replace(job_with((mp4(0, 20.0),), playlist_s=20.0), segments=segments)
    placed, findings = recorder_findings(job, expected_s=20.0)
    assert [f.severity for f in findings] == ["info"]
    assert "cover the recording" in findings[0].detail
    assert placed[0].slices == ("s0.ts", "s3.ts")
    _, short = recorder_findings(job, expected_s=40.0)
    assert [f.severity for f in short] == ["warning"]
    assert "recpipe writes its own MP4s beside them" in short[0].detail


def test_expected_tracks_come_from_the_slices_once_read() -> None:
    audio_only = make_media(0.0, 5.0, kinds=("audio",))
    assert expected_tracks([seg(0, 0.0, media=audio_only)], stream_types=2) == ("audio",)
    assert expected_tracks([seg(0, 0.0)], stream_types=1) == ("video",)
    assert expected_tracks((), stream_types=None) == AV


def test_block_reader_reads_ranges_across_blocks_once(tmp_path: Path) -> None:
    payload = bytes(range(256)) * (3 * BLOCK_BYTES // 256 + 7)
    (tmp_path / "a.mp4").write_bytes(payload)
    calls: list[tuple[int, int]] = []

    class Counting(LocalStorage):
        def read_range(self, key: str, *, offset: int, count: int) -> bytes:
            calls.append((offset, count))
            return super().read_range(key, offset=offset, count=count)

    reader = BlockReader(Counting(tmp_path), "a.mp4", size=len(payload))
    assert reader(BLOCK_BYTES - 3, 10) == payload[BLOCK_BYTES - 3 : BLOCK_BYTES + 7]
    assert reader(BLOCK_BYTES + 1, 5) == payload[BLOCK_BYTES + 1 : BLOCK_BYTES + 6]
    assert reader(len(payload) - 2, 100) == payload[-2:]
    assert len(calls) == 3  # blocks 0, 1 and the last, each read once


def test_own_and_taken_names(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put_bytes(b"ours", "rec/sid_room_0.mp4", metadata={OWNER_LABEL: "sid_room"})
    storage.put_bytes(b"theirs", "rec/sid_room_1.mp4")
    assert is_own(storage, "rec/sid_room_0.mp4")
    assert not is_own(storage, "rec/sid_room_1.mp4")
    assert not name_taken(storage, "rec/sid_room_0.mp4")
    assert name_taken(storage, "rec/sid_room_1.mp4")
    assert not name_taken(storage, "rec/sid_room_2.mp4")
    assert ObjectInfo(key="k", size=1, etag="e").size == 1
