import pytest

from pipeline.exceptions import AmbiguousRecording, RecordingNotFound
from pipeline.storage.base import ObjectInfo
from stages.discover import group_recordings, inputs_digest, select_recording, split_key
from tests.builders import SID, slice_uri


def obj(key, size=10, etag="e"):
    return ObjectInfo(key, size, etag)


def test_split_key():
    assert split_key("a/b/c.ts") == ("a/b/", "c.ts")
    assert split_key("c.ts") == ("", "c.ts")


def test_groups_playlist_with_its_slices_per_directory():
    objects = [
        obj(f"r/{SID}_demo room.m3u8"),
        obj(f"r/{slice_uri(0)}"),
        obj(f"r/{slice_uri(1)}"),
        obj(f"other/{slice_uri(2)}"),  # same names, another directory: another recording
        obj("r/notes.txt"),
        obj(f"r/{SID}_demo room.report.json"),
    ]
    first, second = sorted(group_recordings(objects), key=lambda r: r.directory)
    assert (first.directory, first.playlist_key) == ("other/", None)
    assert [o.key for o in first.slices] == [f"other/{slice_uri(2)}"]
    assert (second.sid, second.cname, second.mode, second.playlist_key) == (
        SID,
        "demo room",
        "composite",
        f"r/{SID}_demo room.m3u8",
    )
    assert [o.key for o in second.slices] == [f"r/{slice_uri(0)}", f"r/{slice_uri(1)}"]


def test_individual_recordings_are_per_uid_and_media():
    objects = [
        obj("sid1_room__uid_s_123__uid_e_audio.m3u8"),
        obj("sid1_room__uid_s_123__uid_e_video.m3u8"),
        obj("sid1_room__uid_s_123__uid_e_video_20190920125142485.ts"),
    ]
    recs = group_recordings(objects)
    assert [(r.mode, r.uid, r.media, len(r.slices)) for r in recs] == [
        ("individual", "123", "audio", 0),
        ("individual", "123", "video", 1),
    ]


def test_snapshot_playlists_are_not_recordings():
    objects = [
        obj("sid1_room.m3u8"),
        obj("sid1_room_1718000000000_0.m3u8"),
        obj("sid1_room_1718000000000_1.m3u8"),
    ]
    assert [r.playlist_key for r in group_recordings(objects)] == ["sid1_room.m3u8"]


def test_select_by_sid_and_errors():
    recs = group_recordings([obj("sidA_room.m3u8"), obj("sidB_room.m3u8")])
    assert select_recording(recs, sid="sidB").sid == "sidB"
    with pytest.raises(AmbiguousRecording) as info:
        select_recording(recs, where="here")
    assert info.value.candidates == ("sidA_room.m3u8", "sidB_room.m3u8")
    with pytest.raises(RecordingNotFound, match="sid=sidC"):
        select_recording(recs, sid="sidC", where="here")


def test_inputs_digest_changes_with_any_input():
    base = group_recordings([obj("s_room.m3u8"), obj("s_room_20260115093000000.ts")])[0]
    changed = group_recordings([obj("s_room.m3u8"), obj("s_room_20260115093000000.ts", etag="f")])[0]
    assert inputs_digest(base) == inputs_digest(base)
    assert inputs_digest(base) != inputs_digest(changed)
