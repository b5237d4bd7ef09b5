import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.model.job import Alignment, Finding, Job, Output, Recording, Segment
from pipeline.model.report import (
    SCHEMA,
    UserResult,
    build_report,
    covered,
    dump_report,
    load_report,
    summary_lines,
    summary_report,
)
from pipeline.storage.base import ObjectInfo

T0 = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)


def job():
    segs = tuple(
        Segment(
            index=i,
            num=i,
            uri=f"s{i}.ts",
            duration=15.0,
            key=f"s{i}.ts",
            utc=T0 + timedelta(seconds=15 * i),
            size=1000 if i != 1 else None,
        )
        for i in range(3)
    )
    return Job(
        recording=Recording(sid="sid1", cname="room", directory="", playlist_key="sid1_room.m3u8"),
        policy="lenient",
        status="degraded",
        segments=segs,
        playlist_duration=45.0,
        findings=(
            Finding(
                code="MISSING_SEGMENT",
                severity="error",
                segment="s1.ts",
                at_s=15.0,
                seconds=15.0,
                detail="gone",
                entry=1,
            ),
        ),
        outputs=(
            Output(
                key="sid1_room_x_0.mp4",
                kind="mp4",
                bytes=5,
                sha256="ab",
                duration_s=45.0,
                tracks=("video", "audio"),
            ),
        ),
        inputs_digest="d",
        timings={"fetch": 0.12345},
    )


def test_report_follows_the_schema():
    report = build_report(job(), tool={"recpipe": "0.1.0", "ffmpeg": "n9"})
    assert report["schema"] == SCHEMA
    assert report["recording"] == {
        "sid": "sid1",
        "cname": "room",
        "mode": "composite",
        "uid": None,
        "media": None,
        "codec": None,
        "playlist": "sid1_room.m3u8",
        "playlists": ["sid1_room.m3u8"],
    }
    assert report["segments"] == {"listed": 3, "present": 2, "bytes": 2000}
    assert report["duration"] == {"playlist_s": 45.0, "media_s": 30.0, "wallclock_s": 45.0}
    assert report["findings"] == [
        {
            "code": "MISSING_SEGMENT",
            "severity": "error",
            "segment": "s1.ts",
            "at_s": 15.0,
            "seconds": 15.0,
            "detail": "gone",
        }
    ]
    assert report["outputs"][0]["tracks"] == ["video", "audio"]
    assert report["timings_s"] == {"fetch": 0.123}
    assert report["status"] == "degraded"
    assert report["policy"] == "lenient"
    assert report["error"] is None


def test_recording_names_the_playlists_processed_else_every_playlist_it_has():
    snapshots = (
        ObjectInfo("sid1_room_1768469400_0.m3u8", 5, "e"),
        ObjectInfo("sid1_room_1768469500_1.m3u8", 5, "e"),
    )
    rec = Recording(sid="sid1", cname="room", directory="", playlist_key=None, snapshots=snapshots)
    undecided = build_report(replace(job(), recording=rec), tool={})
    assert undecided["recording"]["playlist"] is None
    assert undecided["recording"]["playlists"] == [s.key for s in snapshots]
    decided = build_report(replace(job(), recording=rec, playlists=(snapshots[1].key,)), tool={})
    assert decided["recording"]["playlists"] == [snapshots[1].key]


def test_dump_and_load_round_trip():
    report = build_report(job(), tool={})
    assert load_report(dump_report(report)) == json.loads(json.dumps(report))
    assert load_report(b"not json") is None
    assert load_report(b'{"schema": "other"}') is None


def test_summary_mentions_status_findings_and_outputs():
    text = "\n".join(summary_lines(build_report(job(), tool={})))
    assert "DEGRADED" in text
    assert "MISSING_SEGMENT at 15.0 s" in text
    assert "sid1_room_x_0.mp4" in text


@pytest.mark.parametrize(
    ("spans", "total"),
    [
        pytest.param([], 0.0, id="none"),
        pytest.param([(0, 15), (15, 30)], 30.0, id="contiguous"),
        pytest.param([(0, 15), (30, 45)], 30.0, id="gap"),
        pytest.param([(0, 20), (15, 30)], 30.0, id="overlap-counted-once"),
        pytest.param([(15, 30), (0, 10)], 25.0, id="any-order"),
        pytest.param([(0, 30), (5, 10)], 30.0, id="inside"),
    ],
)
def test_covered(spans, total):
    assert covered(spans) == total


def user_of_two_streams(alignment: Alignment | None) -> Job:
    """A user whose video and audio streams were each verified (the video 2 s later than the audio)."""

    def one(media: str, first: int) -> Job:
        rec = Recording(
            sid="sid1", cname="room", mode="individual", uid="7", media=media, directory="",  # type: ignore[arg-type]
            playlist_key=f"sid1_room__uid_s_7__uid_e_{media}.m3u8",
        )  # fmt: skip
        segs = tuple(
            Segment(index=i, num=i, uri=f"{media}{i}.ts", duration=5.0, key=f"{media}{i}.ts", size=10,
                    utc=T0 + timedelta(seconds=first + 5 * i), at_s=5.0 * i)
            for i in range(2)
        )  # fmt: skip
        return Job(
            recording=rec, segments=segs, status="ok", inputs_digest=f"d-{media}", playlist_duration=10.0
        )

    streams = (one("video", 2), one("audio", 0))
    rec = Recording(
        sid="sid1", cname="room", mode="individual", uid="7", media="av", directory="", playlist_key=None
    )
    return Job(
        recording=rec,
        streams=streams,
        absent="cut",
        alignment=alignment,
        segments=tuple(s for j in streams for s in j.segments),
        playlist_duration=10.0,
        status="ok",
    )


def test_a_users_report_has_each_streams_summary_and_the_time_they_were_away():
    report = build_report(
        user_of_two_streams(
            Alignment(starts={"video": 2.0, "audio": 0.0}, absences=((4.0, 1.5),), media_s=11.0)
        ),
        tool={},
    )
    assert report["recording"]["playlists"] == [
        "sid1_room__uid_s_7__uid_e_video.m3u8",
        "sid1_room__uid_s_7__uid_e_audio.m3u8",
    ]
    assert report["streams"]["video"] == {
        "playlist": "sid1_room__uid_s_7__uid_e_video.m3u8",
        "inputs_digest": "d-video",
        "status": "ok",
        "listed": 2,
        "present": 2,
        "starts_s": 2.0,
    }
    assert report["absent"] == {"choice": "cut", "spans": [{"at_s": 4.0, "seconds": 1.5}]}
    assert report["duration"] == {"playlist_s": 10.0, "media_s": 11.0, "wallclock_s": 10.0}
    assert list(report)[-3:] == ["streams", "absent", "timeline"]


def test_a_user_not_aligned_has_no_starts_and_the_longer_streams_media():
    report = build_report(user_of_two_streams(None), tool={})
    assert report["streams"]["audio"]["starts_s"] is None
    assert report["absent"]["spans"] == []
    assert report["duration"]["media_s"] == 10.0
    assert "streams" not in build_report(job(), tool={})


def test_the_recordings_report_sums_up_its_users():
    ok = build_report(user_of_two_streams(None), tool={})
    failed_job = replace(
        user_of_two_streams(None),
        status="failed",
        findings=(Finding(code="MISSING_SEGMENT", severity="error", detail="audio1.ts is missing"),),
    )
    users = [
        UserResult(
            uid="7",
            streams=("audio", "video"),
            playlists=("a", "v"),
            job=user_of_two_streams(None),
            report=ok,
            report_key="k7",
        ),
        UserResult(
            uid="8", streams=("audio",), playlists=("a8",), job=failed_job, report=ok, report_key=None
        ),
    ]
    rec = Recording(sid="sid1", cname="room", mode="individual", directory="", playlist_key=None)
    summary = summary_report(rec, users, policy="strict", digest="dd", tool={"recpipe": "1"})
    assert summary["status"] == "failed"
    assert summary["recording"]["playlists"] == ["a", "v", "a8"]
    assert summary["segments"] == {"listed": 8, "present": 8, "bytes": 80}
    assert summary["users"] == [
        {"uid": "7", "status": "ok", "report": "k7", "streams": ["audio", "video"]},
        {"uid": "8", "status": "failed", "report": None, "streams": ["audio"]},
    ]
    [line] = summary["findings"]
    assert (line["code"], line["severity"]) == ("USER_NOT_OK", "error")
    assert line["detail"] == "user 8 is failed: audio1.ts is missing"
    assert "recorder_outputs" not in summary
    with_mixed = summary_report(rec, users, policy="strict", digest="dd", tool={}, recorder_outputs=[])
    assert with_mixed["recorder_outputs"] == []
