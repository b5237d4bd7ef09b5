"""Individual mode end to end: generated two-user recordings, merged per user, in sync, on local and S3."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.samples.individual import Presence, SampleUser, write_individual_sample
from stages.media.mp4 import read_mp4

pytestmark = [pytest.mark.integration, pytest.mark.ffmpeg]

FRAME_S = 1 / 15
DELAY_MS = 240
USERS = (
    SampleUser(uid="1001", presences=(Presence(start=0, seconds=20),)),
    SampleUser(
        uid="2002",
        presences=(Presence(start=0, seconds=8), Presence(start=14, seconds=6)),
        video_delay_ms=DELAY_MS,
    ),
)
AWAY_S = 14 - (8 + DELAY_MS / 1000)
"""User 2002 is gone from the end of their delayed video (8.24 s) until their audio returns (14 s)."""


def invoke(*args: str):
    result = CliRunner().invoke(main, list(args), catch_exceptions=True)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory, ffmpeg_exe: str) -> Path:
    root = tmp_path_factory.mktemp("individual")
    write_individual_sample(root / "rec", ffmpeg=ffmpeg_exe, users=USERS, slice_seconds=4)
    return root / "rec"


@pytest.fixture
def copy(recording: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "rec"
    shutil.copytree(recording, dest)
    return dest


def frame_times(ffmpeg_exe: str, mp4: Path, stream: str) -> list[float]:
    """Presentation times (s) of the MP4's ``stream`` packets (``v:0``, ``a:0``) as ffmpeg reads them."""
    done = subprocess.run(
        [
            ffmpeg_exe,
            "-v",
            "error",
            "-i",
            str(mp4),
            "-map",
            f"0:{stream}",
            "-c",
            "copy",
            "-f",
            "framecrc",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    times = []
    for line in done.stdout.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        times.append(int(fields[2]))
    tb = next(line for line in done.stdout.splitlines() if line.startswith("#tb"))
    num, den = (int(x) for x in tb.split(":")[1].strip().split("/"))
    return sorted(t * num / den for t in times)


def outputs_by_uid(report: dict) -> dict[str, dict]:
    return {o["key"].split("__uid_s_")[1].split("__")[0]: o for o in report["outputs"]}


@pytest.mark.parametrize("absent", ["keep", "cut"])
def test_each_user_gets_one_mp4_in_sync(copy, tmp_path, ffmpeg_exe, absent):
    out = tmp_path / "out"
    result = invoke(
        "process", str(copy), "--av-file-type", "hls,mp4", "--dest", str(out), "--absent", absent, "--json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["recording"]["mode"] == "individual"
    assert [u["uid"] for u in report["users"]] == ["1001", "2002"]
    assert all(u["status"] == "ok" for u in report["users"])
    mp4s = outputs_by_uid(report)
    assert set(mp4s) == {"1001", "2002"}
    for uid, output in mp4s.items():
        assert output["key"].endswith(f"__uid_s_{uid}__uid_e_av_0.mp4")
        info = read_mp4(out / output["key"])
        starts = {t.kind: t.start_s for t in info.tracks}
        assert set(starts) == {"video", "audio"}
        planned_video = DELAY_MS / 1000 if uid == "2002" else 0.0
        assert abs(starts["audio"]) <= FRAME_S
        assert abs(starts["video"] - planned_video) <= FRAME_S, (uid, starts)

    # 1001: both streams from 0 to 20 s.
    info = read_mp4(out / mp4s["1001"]["key"])
    assert abs(info.duration_s - 20) <= 0.1

    # 2002 comes back at 14 s (audio) and 14.24 s (video): where that lands in the MP4 depends on --absent.
    mp4 = out / mp4s["2002"]["key"]
    shift = AWAY_S if absent == "cut" else 0.0
    video = frame_times(ffmpeg_exe, mp4, "v:0")
    audio = frame_times(ffmpeg_exe, mp4, "a:0")
    back_video = next(t for t in video if t > 8.2)  # the first frame after the last one before leaving
    assert abs(back_video - (14.24 - shift)) <= FRAME_S, video
    assert abs(video[0] - DELAY_MS / 1000) <= FRAME_S
    info = read_mp4(mp4)
    assert abs(info.duration_s - (20.24 - shift)) <= 0.1
    audio_track = next(t for t in info.tracks if t.kind == "audio")
    # Silence fills the absence (keep) — never one AAC frame stretched over it.
    assert audio_track.longest_sample_s < 0.1
    steps = [b - a for a, b in itertools.pairwise(audio)]
    assert max(steps) < 0.1

    user = json.loads((out / report["users"][1]["report"].split("/")[-1]).read_text())
    assert user["recording"]["uid"] == "2002"
    assert user["status"] == "ok"
    assert [s["seconds"] for s in user["absent"]["spans"]] == [pytest.approx(AWAY_S, abs=0.05)]
    assert user["absent"]["choice"] == absent
    assert {f["code"] for f in user["findings"]} >= {"USER_ABSENT"}
    assert (out / f"{report['recording']['sid']}_{report['recording']['cname']}.report.json").exists()


def test_rerun_writes_nothing_and_sources_are_untouched(copy):
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    first = invoke("process", str(copy), "--av-file-type", "hls,mp4", "--json")
    assert first.exit_code == 0, first.output
    written = {p.name: p.stat().st_mtime_ns for p in copy.iterdir() if p.name not in before}
    assert len([n for n in written if n.endswith(".mp4")]) == 2
    assert len([n for n in written if n.endswith(".report.json")]) == 3
    second = invoke("process", str(copy), "--av-file-type", "hls,mp4", "--json")
    assert second.exit_code == 0
    assert {p.name: p.stat().st_mtime_ns for p in copy.iterdir() if p.name not in before} == written
    assert {n: (copy / n).read_bytes() for n in before} == before
    assert not [p for p in copy.iterdir() if p.name.endswith(".lease.json")]


def test_a_stream_playlist_processes_its_user(copy):
    [playlist] = copy.glob("*__uid_s_2002__uid_e_audio.m3u8")
    result = invoke("process", str(playlist), "--av-file-type", "hls,mp4", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["recording"]["uid"] == "2002"
    assert sorted(report["streams"]) == ["audio", "video"]
    assert [p.name for p in copy.glob("*.mp4")] == [report["outputs"][0]["key"]]


def test_verify_reports_users_and_writes_nothing(copy):
    before = sorted(p.name for p in copy.iterdir())
    result = invoke("verify", str(copy), "--json")
    assert result.exit_code == 0, result.output
    assert [u["status"] for u in json.loads(result.stdout)["users"]] == ["ok", "ok"]
    assert sorted(p.name for p in copy.iterdir()) == before


def test_a_missing_slice_fails_only_its_user(copy):
    victim = sorted(copy.glob("*__uid_s_1001__uid_e_video_*.ts"))[1]
    victim.unlink()
    result = invoke("process", str(copy), "--av-file-type", "hls,mp4", "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert [(u["uid"], u["status"]) for u in report["users"]] == [("1001", "failed"), ("2002", "ok")]
    assert [f["code"] for f in report["findings"]] == ["USER_NOT_OK"]
    assert list(outputs_by_uid(report)) == ["2002"]


def test_s3(recording, s3_bucket, tmp_path):
    s3_bucket.upload_directory(recording, prefix="calls/")
    location = f"s3://{s3_bucket.name}/calls/"
    args = ("process", location, "--av-file-type", "hls,mp4", "--endpoint-url", s3_bucket.endpoint, "--json")
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    for output in json.loads(result.stdout)["outputs"]:
        local = tmp_path / "user.mp4"
        s3_bucket.get_file(output["key"], local)
        assert {t.kind for t in read_mp4(local).tracks} == {"video", "audio"}
    keys = [o["Key"] for o in s3_bucket.client.list_objects_v2(Bucket=s3_bucket.name)["Contents"]]
    assert len([k for k in keys if k.endswith(".mp4")]) == 2
    assert not [k for k in keys if k.endswith(".lease.json")]


def test_mixed_audio_of_postponed_mixing_is_listed_and_left_alone(copy):
    [audio] = copy.glob("*__uid_s_1001__uid_e_audio.m3u8")
    sid, _, rest = audio.name.partition("_")
    cname = rest.partition("__uid_s_")[0]
    mixed = copy / f"{sid}_{cname}_0.m4a"
    mixed.write_bytes(b"recorder's own mixed audio")
    result = invoke("process", str(copy), "--av-file-type", "hls,mp4", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)["recorder_outputs"]
    assert listed == [
        {"key": mixed.name, "kind": "mixed-audio/m4a", "index": 0, "bytes": mixed.stat().st_size}
    ]
    assert mixed.read_bytes() == b"recorder's own mixed audio"


def test_web_page_recording_is_processed_like_a_composite_one(tmp_path, ffmpeg_exe):
    from pipeline.samples.composite import write_sample
    from tests.pipeline.agora.test_profile import WEB_PAGE

    write_sample(tmp_path / "rec", ffmpeg=ffmpeg_exe, seconds=6, slice_seconds=2, cname="web-room")
    profile = json.loads(json.dumps(WEB_PAGE))
    params = profile["clientRequest"]["extensionServiceConfig"]["extensionServices"][0]["serviceParam"]
    params.update(videoWidth=320, videoHeight=240, videoFps=15)
    (tmp_path / "web.json").write_text(json.dumps(profile))
    result = invoke("process", str(tmp_path / "rec"), "--profile", str(tmp_path / "web.json"), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["recording"]["mode"] == "web"
    assert [o["tracks"] for o in report["outputs"]] == [["video", "audio"]]
    params.update(videoWidth=1280, videoHeight=720)
    (tmp_path / "web.json").write_text(json.dumps(profile))
    again = invoke("verify", str(tmp_path / "rec"), "--profile", str(tmp_path / "web.json"), "--json")
    assert "RESOLUTION_MISMATCH" in {f["code"] for f in json.loads(again.stdout)["findings"]}


def test_web_page_recording_is_found_by_the_cname_its_files_carry(tmp_path, ffmpeg_exe):
    from pipeline.samples.composite import write_sample
    from tests.pipeline.agora.test_profile import WEB_PAGE

    # The web page recorder writes "class_1.a+b" as "class-1-a-b" in its file names.
    write_sample(tmp_path / "rec", ffmpeg=ffmpeg_exe, seconds=4, slice_seconds=2, cname="class-1-a-b")
    other = write_sample(tmp_path / "other", ffmpeg=ffmpeg_exe, seconds=4, slice_seconds=2, cname="other")
    for path in (other.playlist, *other.slices):
        shutil.copy(path, tmp_path / "rec")
    profile = json.loads(json.dumps(WEB_PAGE))
    profile["cname"] = "class_1.a+b"
    (tmp_path / "web.json").write_text(json.dumps(profile))
    result = invoke("verify", str(tmp_path / "rec"), "--profile", str(tmp_path / "web.json"), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["recording"]["cname"], report["recording"]["mode"]) == ("class-1-a-b", "web")


def test_ls_shows_each_stream_processed_with_its_user(copy):
    assert invoke("process", str(copy), "--av-file-type", "hls,mp4").exit_code == 0
    listed = json.loads(invoke("ls", str(copy), "--json").stdout)
    assert {(r["uid"], r["media"], r["state"]) for r in listed} == {
        (uid, media, "processed") for uid in ("1001", "2002") for media in ("audio", "video")
    }
    [victim] = copy.glob("*__uid_s_2002__uid_e_audio.m3u8")
    victim.write_text(victim.read_text() + "\n")  # a new upload of the playlist: inputs changed
    states = {
        (r["uid"], r["media"]): r["state"] for r in json.loads(invoke("ls", str(copy), "--json").stdout)
    }
    assert states[("2002", "audio")] == "complete"
    assert states[("2002", "video")] == "processed"


def test_settings_choose_absent_time_and_the_output_name(copy, monkeypatch):
    monkeypatch.setenv("RECPIPE_ABSENT", "cut")
    monkeypatch.setenv("RECPIPE_INDIVIDUAL_MP4_TEMPLATE", "{cname}-{uid}-{media}-{index}.mp4")
    result = invoke("process", str(copy), "--av-file-type", "hls,mp4", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    names = sorted(o["key"] for o in report["outputs"])
    assert names == ["demo-room-1001-av-0.mp4", "demo-room-2002-av-0.mp4"]
    [user] = [u for u in report["users"] if u["uid"] == "2002"]
    detail = json.loads((copy / user["report"]).read_text())
    assert detail["absent"]["choice"] == "cut"
    assert set(detail["timings_s"]) >= {"fetch", "verify", "remux", "publish"}
    assert abs(read_mp4(copy / "demo-room-2002-av-0.mp4").duration_s - (20.24 - AWAY_S)) <= 0.1
    monkeypatch.setenv("RECPIPE_ABSENT", "sideways")
    refused = invoke("process", str(copy), "--av-file-type", "hls,mp4")
    assert refused.exit_code == 2
    assert "absent must be one of keep, cut" in refused.output
