from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.model.config import (
    DEFAULT_INDIVIDUAL_MP4_TEMPLATE,
    DEFAULT_MP4_TEMPLATE,
    DEFAULT_RAW_MP4_TEMPLATE,
    PipelineConfig,
)
from pipeline.model.exceptions import MediaError, StorageError
from pipeline.model.job import Job, Recording, Segment
from pipeline.storage.local import LocalStorage
from stages.base import Destination, StageContext
from stages.coverage import expected_tracks
from stages.media.mp4 import Mp4Info, Mp4Track
from stages.outputs import mp4_file_name
from stages.remux import Feeder, check_output
from tests.builders import leftovers_refused, media

WHEN = datetime(2026, 1, 15, 9, 30, 0, 120000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("recording", "template", "name"),
    [
        pytest.param(
            Recording(sid="sid1", cname="demo room", directory="", playlist_key=None),
            DEFAULT_MP4_TEMPLATE,
            "sid1_demo room_0.mp4",
            id="composite",
        ),
        pytest.param(
            Recording(sid="sid1", cname="demo room", directory="", playlist_key=None),
            "{sid}_{cname}_{utc}_{index}.mp4",
            "sid1_demo room_20260115093000120_0.mp4",
            id="composite-with-time",
        ),
        pytest.param(
            Recording(sid="sid1", cname="c", uid="123", codec="h264", directory="", playlist_key=None),
            DEFAULT_RAW_MP4_TEMPLATE,
            "sid1_c__uid_s_123__uid_e_0_h264.mp4",
            id="raw",
        ),
        pytest.param(
            Recording(sid="sid1", cname="c", uid="123", media="video", directory="", playlist_key=None),
            DEFAULT_INDIVIDUAL_MP4_TEMPLATE,
            "sid1_c__uid_s_123__uid_e_video_0.mp4",
            id="individual",
        ),
    ],
)
def test_mp4_file_name(recording, template, name):
    assert mp4_file_name(recording, template=template, index=0, utc=WHEN) == name


def info(duration, kinds):
    tracks = tuple(
        Mp4Track(
            track_id=i + 1,
            kind=k,
            codec="avc1" if k == "video" else "mp4a",
            duration_s=duration,
            timescale=1000,
            width=None,
            height=None,
            sample_count=10,
        )
        for i, k in enumerate(kinds)
    )
    return Mp4Info(duration_s=duration, tracks=tracks, faststart=True)


def test_check_output_accepts_faithful_copy():
    assert (
        check_output(info(45.02, ["video", "audio"]), expected_tracks=("video", "audio"), expected_s=45.0)
        == ()
    )


def test_check_output_reports_duration_mismatch():
    [finding] = check_output(info(40.0, ["video", "audio"]), expected_tracks=("video",), expected_s=45.0)
    assert finding.code == "DURATION_MISMATCH"
    assert finding.seconds == pytest.approx(-5.0)


@pytest.mark.parametrize(
    ("mp4", "expected"),
    [
        pytest.param(info(0.0, []), (), id="empty"),
        pytest.param(info(10.0, ["video"]), ("video", "audio"), id="no-audio"),
    ],
)
def test_check_output_rejects(mp4, expected):
    with pytest.raises(MediaError):
        check_output(mp4, expected_tracks=expected, expected_s=10.0)


@pytest.mark.parametrize(
    ("stream_types", "tracks"),
    [(0, ("audio",)), (1, ("video",)), (2, ("video", "audio")), (None, ("video", "audio"))],
)
def test_expected_tracks_without_read_slices_follow_the_profile(stream_types, tracks):
    seg = Segment(index=0, num=0, uri="s0.ts", duration=15.0, size=188)
    assert expected_tracks([seg], stream_types=stream_types) == tracks


def test_expected_tracks_are_what_the_slices_carry():
    seg = Segment(index=0, num=0, uri="s0.ts", duration=15.0, size=188, media=media(kinds=("audio",)))
    assert expected_tracks([seg], stream_types=2) == ("audio",)


class Uploads(LocalStorage):
    """A local store that says which uploads were begun."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.begun: list[str] = []

    def begin_upload(self, key, *, metadata=None):
        self.begun.append(key)
        return super().begin_upload(key, metadata=metadata)


def test_the_feeder_stops_the_run_at_once_when_the_destination_may_not_be_written(tmp_path: Path) -> None:
    """Its first MP4 would start with the first slice: it waits for the destination beside the first
    slices' download, and its error (the leftovers of a killed run could not be cleared) ends the fetch."""

    store = Uploads(tmp_path / "dest")
    ctx = StageContext(
        storage=store,
        destination=Destination(storage=store, directory="a/", cleared=leftovers_refused),
        workdir=tmp_path,
        config=PipelineConfig(),
    )
    recording = Recording(sid="sid1", cname="room", directory="a/", playlist_key="a/sid1_room.m3u8")
    first = Segment(index=0, num=0, uri="sid1_room_20260115093000120.ts", duration=9.6)
    job = Job(recording=recording, segments=(first,))
    with pytest.raises(StorageError, match="AccessDenied"):
        Feeder().start(job, ctx)
    assert store.begun == []
