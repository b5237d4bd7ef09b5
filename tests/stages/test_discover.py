import pytest

from pipeline.model.exceptions import AmbiguousRecording, RecordingNotFound
from pipeline.storage.base import ObjectInfo
from stages.discover import find_recordings, group_recordings, inputs_digest, select_recording, split_key
from tests.builders import SID, slice_uri


def obj(key, size=10, etag="e"):
    return ObjectInfo(key, size, etag)


class FixedListing:
    """Lists fixed objects (``find_recordings`` only lists)."""

    def __init__(self, objects):
        self.objects = objects

    def list(self, prefix):
        return iter([o for o in self.objects if o.key.startswith(prefix)])


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


def test_snapshot_playlists_belong_to_their_recording_oldest_first():
    objects = [
        obj("sid1_room.m3u8"),
        obj("sid1_room_1718000000000_1.m3u8"),
        obj("sid1_room_1718000000000_0.m3u8"),
        obj("sid1_room_999_0.m3u8"),  # the main playlist is here: short digits are a snapshot too
        obj("sid1_room_20190920125142485.ts"),
    ]
    [rec] = group_recordings(objects)
    assert rec.playlist_key == "sid1_room.m3u8"
    assert [s.key for s in rec.snapshots] == [
        "sid1_room_999_0.m3u8",
        "sid1_room_1718000000000_0.m3u8",
        "sid1_room_1718000000000_1.m3u8",
    ]
    assert {o.key for o in rec.inputs} == {o.key for o in objects}


def test_snapshots_and_slices_without_the_main_playlist_are_one_recording():
    objects = [
        obj(f"r/{SID}_demo room_1718000000000_0.m3u8"),
        obj(f"r/{SID}_demo room_1718000000000_1.m3u8"),
        obj(f"r/{slice_uri(0)}"),
        obj(f"r/{slice_uri(1)}"),
    ]
    [rec] = group_recordings(objects)
    assert (rec.sid, rec.cname, rec.mode, rec.playlist_key) == (SID, "demo room", "composite", None)
    assert len(rec.snapshots) == 2
    assert len(rec.slices) == 2


def test_snapshots_alone_are_one_recording_when_their_names_say_so():
    objects = [obj("sid1_room_1718000000000_0.m3u8"), obj("sid1_room_1718000000500_1.m3u8")]
    [rec] = group_recordings(objects)
    assert (rec.cname, rec.playlist_key, len(rec.snapshots)) == ("room", None, 2)


def test_a_channel_named_like_a_snapshot_is_its_own_recording_when_it_has_slices():
    """A tick is any run of digits: alone, ``room_2024_1.m3u8`` is a snapshot of ``room``; a playlist
    with slices of its own is that channel's."""
    short = group_recordings([obj("sid1_room_2024_1.m3u8")])
    assert [(r.cname, r.playlist_key, [s.key for s in r.snapshots]) for r in short] == [
        ("room", None, ["sid1_room_2024_1.m3u8"])
    ]
    own = group_recordings(
        [obj("sid1_room_1718000000000_0.m3u8"), obj("sid1_room_1718000000000_0_20190920125142485.ts")]
    )
    assert [(r.cname, r.playlist_key) for r in own] == [
        ("room_1718000000000_0", "sid1_room_1718000000000_0.m3u8")
    ]


def test_individual_recordings_have_no_snapshots():
    objects = [obj("sid1_room__uid_s_1__uid_e_audio.m3u8"), obj("sid1_room_1718000000000_0.m3u8")]
    recs = group_recordings(objects)
    assert [(r.mode, len(r.snapshots)) for r in recs] == [("composite", 1), ("individual", 0)]


def test_inputs_digest_changes_when_a_snapshot_appears():
    base = [obj("s_room.m3u8"), obj("s_room_20260115093000000.ts")]
    [before] = group_recordings(base)
    [after] = group_recordings([*base, obj("s_room_1768469400_0.m3u8")])
    assert inputs_digest(before) != inputs_digest(after)


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("r/sid1_room_1718000000000_1.m3u8", id="snapshot"),
        pytest.param("r/sid1_room.m3u8", id="main-not-uploaded-yet"),
    ],
)
def test_a_snapshot_key_or_the_missing_main_key_finds_the_recording(key):
    store = FixedListing([obj("r/sid1_room_1718000000000_1.m3u8"), obj("r/sid1_room_20190920125142485.ts")])
    [rec] = find_recordings(store, key)
    assert rec.cname == "room"
    assert select_recording([rec], playlist_key=key) is rec
    assert find_recordings(store, "r/sid1_other.m3u8") == ()


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


@pytest.mark.parametrize(
    "hidden",
    [
        pytest.param("rec/.sid1_room_20190920125142485.ts", id="dot-file"),
        pytest.param("rec/._sid1_room.m3u8", id="apple-double"),
        pytest.param("rec/._sid1_room_20190920125142485.ts", id="apple-double-slice"),
        pytest.param("rec/.sid1_room.m3u8.0123456789ab.part", id="temporary"),
    ],
)
def test_hidden_files_are_never_a_recordings(hidden):
    found = group_recordings(
        [obj("rec/sid1_room.m3u8"), obj("rec/sid1_room_20190920125142485.ts"), obj(hidden)]
    )
    assert [(r.sid, r.cname, len(r.slices)) for r in found] == [("sid1", "room", 1)]
