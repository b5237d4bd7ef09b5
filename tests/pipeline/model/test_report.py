import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.model.job import Finding, Job, Output, Recording, Segment
from pipeline.model.report import SCHEMA, build_report, covered, dump_report, load_report, summary_lines
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
