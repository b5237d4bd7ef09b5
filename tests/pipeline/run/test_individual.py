"""Individual mode's plan, without storage or ffmpeg: who the users are, what each stream is expected to
hold, how a user's streams become one job, and which stages a user goes through."""

from __future__ import annotations

from pipeline.model.job import Expectations, Finding, Job, Recording, StageError
from pipeline.model.objects import ObjectInfo
from pipeline.run.individual import (
    StreamsStage,
    User,
    UserSettings,
    combine,
    is_individual_set,
    stream_expectations,
    tagged,
    user_digest,
    user_job,
    user_recording,
    user_stages,
    users_of,
)
from pipeline.run.runner import RunOptions
from stages.merge import AlignStage, MergeStage
from stages.publish import PublishStage
from tests.builders import SID

DIR = "rec/"


def stream(uid: str, media: str, *slices: str, etag: str = "e") -> Recording:
    """One stream of an individual-mode recording, with its slices' objects."""
    stem = f"{SID}_room__uid_s_{uid}__uid_e_{media}"
    return Recording(
        sid=SID,
        cname="room",
        mode="individual",
        uid=uid,
        media=media,  # type: ignore[arg-type]
        directory=DIR,
        playlist_key=f"{DIR}{stem}.m3u8",
        slices=tuple(ObjectInfo(f"{DIR}{stem}_{s}.ts", 100, etag) for s in slices),
    )


SETTINGS = UserSettings(
    policy="lenient",
    want_mp4=True,
    expect=Expectations(stream_types=2, width=640, height=360, fps=15),
    absent="cut",
    options=RunOptions(),
    backup_wait=True,
)


def test_users_are_grouped_by_uid_video_first_and_sorted():
    recs = [
        stream("7", "audio", "20260115093000000"),
        stream("3", "audio", "20260115093000000"),
        stream("7", "video", "20260115093000000"),
        stream("3", "av"),  # the standard-mode list of both playlists: not a stream
    ]
    users = users_of(recs)
    assert [u.uid for u in users] == ["3", "7"]
    assert list(users[0].streams) == ["audio"]
    assert list(users[1].streams) == ["video", "audio"]
    assert users[0].media == "audio"
    assert users[1].media == "av"


def test_an_individual_set_is_one_recording_of_users():
    assert is_individual_set([stream("1", "audio"), stream("2", "video")])
    assert not is_individual_set([])
    composite = Recording(sid=SID, cname="room", directory=DIR, playlist_key=f"{DIR}{SID}_room.m3u8")
    assert not is_individual_set([stream("1", "audio"), composite])
    other_dir = Recording(
        sid=SID, cname="room", mode="individual", uid="2", media="video", directory="x/", playlist_key=None
    )
    assert not is_individual_set([stream("1", "audio"), other_dir])


def test_a_user_is_one_recording_named_av_with_all_their_slices():
    user = users_of([stream("7", "video", "b", "a"), stream("7", "audio", "c")])[0]
    rec = user_recording(user)
    assert (rec.uid, rec.media, rec.playlist_key, rec.directory) == ("7", "av", None, DIR)
    assert rec.stem == f"{SID}_room__uid_s_7__uid_e_av"
    assert [o.key.removeprefix(f"{DIR}{SID}_room__uid_s_7__uid_e_") for o in rec.slices] == [
        "audio_c.ts",
        "video_a.ts",
        "video_b.ts",
    ]


def test_the_user_digest_follows_every_input_and_the_choice_for_absent_time():
    user = users_of([stream("7", "video", "a"), stream("7", "audio", "a")])[0]
    changed = users_of([stream("7", "video", "a"), stream("7", "audio", "a", etag="new")])[0]
    assert user_digest(user, absent="keep") == user_digest(user, absent="keep")
    assert user_digest(user, absent="keep") != user_digest(user, absent="cut")
    assert user_digest(user, absent="keep") != user_digest(changed, absent="keep")


def test_each_stream_is_expected_to_hold_only_its_own_kind():
    expect = SETTINGS.expect
    assert stream_expectations(expect, "audio") == Expectations(stream_types=0)
    assert stream_expectations(expect, "video") == Expectations(stream_types=1, width=640, height=360, fps=15)


def test_playlist_level_findings_say_which_stream():
    about_slice = Finding(code="TIMELINE_GAP", severity="warning", detail="gap", segment="x.ts")
    about_playlist = Finding(code="NO_ENDLIST", severity="info", detail="no end")
    out = tagged([about_slice, about_playlist], "audio")
    assert out[0] == about_slice
    assert out[1].detail == "audio playlist: no end"


def test_a_users_job_sums_up_their_streams():
    user = users_of([stream("7", "video"), stream("7", "audio")])[0]
    job = user_job(user, settings=SETTINGS)
    assert (job.policy, job.want_mp4, job.absent, job.backup_wait) == ("lenient", True, "cut", True)
    assert job.inputs_digest == user_digest(user, absent="cut")
    video = Job(
        recording=user.streams["video"],
        playlist_duration=30.0,
        endlist=True,
        findings=(Finding(code="NO_KEYFRAME", severity="warning", detail="k", segment="v.ts"),),
        timings={"fetch": 1.0, "verify": 0.5},
    )
    error = StageError(stage="fetch", type="StorageError", message="down", retryable=True)
    audio = Job(
        recording=user.streams["audio"],
        playlist_duration=31.0,
        endlist=False,
        findings=(Finding(code="NO_ENDLIST", severity="info", detail="no end"),),
        error=error,
        timings={"fetch": 2.0},
    )
    combined = combine(job, [video, audio])
    assert combined.streams == (video, audio)
    assert combined.playlist_duration == 31.0
    assert combined.endlist is False
    assert combined.error == error
    assert combined.timings == {"fetch": 3.0, "verify": 0.5}
    assert [f.detail for f in combined.findings] == ["k", "audio playlist: no end"]


def test_a_users_stages_depend_on_publishing_and_mp4():
    user = users_of([stream("7", "video"), stream("7", "audio")])[0]

    def names(options: RunOptions, want_mp4: bool) -> list[type]:
        return [type(s) for s in user_stages(user, options=options, want_mp4=want_mp4)]

    assert names(RunOptions(), True) == [StreamsStage, AlignStage, MergeStage, PublishStage]
    assert names(RunOptions(), False) == [StreamsStage, AlignStage, PublishStage]
    assert names(RunOptions(publish=False), True) == [StreamsStage, AlignStage]
    merge = user_stages(user, options=RunOptions(), want_mp4=True)[2]
    assert isinstance(merge, MergeStage)


def test_the_streams_stage_times_itself():
    user = User(uid="7", streams={"audio": stream("7", "audio")})
    stage = StreamsStage(user, spools={})
    assert stage.times_itself is True
    assert stage.name == "streams"
