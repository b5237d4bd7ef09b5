"""Individual recording v2 (``raw``): one audio+video playlist per user, in Agora's names, processed like
a composite recording per user, with a summary report for the recording."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.samples.raw import write_raw_sample
from stages.media.mp4 import read_mp4
from tests.integration.conftest import with_profile

pytestmark = [pytest.mark.integration, pytest.mark.ffmpeg]


def run(*args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(main, [*args, "--json"], catch_exceptions=False)
    assert result.stdout, result.output
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture(scope="module")
def made(tmp_path_factory, ffmpeg_exe):
    root = tmp_path_factory.mktemp("raw")
    sample = write_raw_sample(root / "recordings", ffmpeg=ffmpeg_exe)
    return with_profile(root, sample)


def test_every_user_gets_an_mp4_named_as_agora_does(root, made):
    sample = made[1]
    code, report = run("process", str(root), "--profile", str(root / "start.json"))
    assert (code, report["status"]) == (0, "ok")
    stem = f"{sample.sid}_{sample.cname}"
    assert [u["uid"] for u in report["users"]] == ["1001", "2002"]
    assert [u["streams"] for u in report["users"]] == [["h264"], ["h264"]]
    keys = [o["key"] for o in report["outputs"]]
    assert keys == [f"recordings/{stem}__uid_s_{uid}__uid_e_0_h264.mp4" for uid in ("1001", "2002")]
    for key, seconds in zip(keys, (6.0, 4.0), strict=True):
        info = read_mp4(root / key)
        assert info.track_kinds == ("video", "audio")
        assert info.duration_s == pytest.approx(seconds, abs=0.1)
    user = json.loads((root / "recordings" / f"{stem}__uid_s_2002__uid_e_h264.report.json").read_text())
    assert (user["recording"]["uid"], user["recording"]["codec"], user["status"]) == ("2002", "h264", "ok")
    assert (root / "recordings" / f"{stem}.report.json").exists()


def test_one_users_playlist_processes_that_user(root, made):
    [playlist] = [p for p in made[1].playlists if "__uid_s_2002__" in p.name]
    code, report = run("process", str(root / "recordings" / playlist.name), "--av-file-type", "hls,mp4")
    assert code == 0
    assert report["recording"]["uid"] == "2002"
    [output] = report["outputs"]
    assert output["key"].endswith("__uid_s_2002__uid_e_0_h264.mp4")


def test_files_recpipe_does_not_process_are_listed_not_ignored(root, made):
    sample = made[1]
    stem = f"{sample.sid}_{sample.cname}__uid_s_1001__uid_e_"
    extra = {
        f"{stem}vp8.mpd": "DASH manifest",
        f"{stem}1_3_vp8.webm": "WebM segment",
        f"{stem}av.m3u8": "list of the user's audio and video playlists",
    }
    for name in extra:
        (root / "recordings" / name).write_bytes(b"x")
    code, report = run("process", str(root), "--profile", str(root / "start.json"))
    assert code == 0
    listed = {n["key"].rpartition("/")[2]: n["why"] for n in report["not_processed"]}
    assert set(listed) == set(extra)
    for name, why in extra.items():
        assert why in listed[name]


def test_on_s3(made, s3_bucket):
    root, sample = made
    s3_bucket.upload_directory((root / "recordings"), prefix="rec/")
    code, report = run(
        "process", f"s3://{s3_bucket.name}/rec/", "--av-file-type", "hls,mp4",
        "--endpoint-url", s3_bucket.endpoint,
    )  # fmt: skip
    assert (code, report["status"]) == (0, "ok")
    stem = f"{sample.sid}_{sample.cname}"
    keys = {o["key"] for o in report["outputs"]}
    assert keys == {f"rec/{stem}__uid_s_{uid}__uid_e_0_h264.mp4" for uid in ("1001", "2002")}
    listing = s3_bucket.client.list_objects_v2(Bucket=s3_bucket.name, Prefix="rec/")
    assert keys <= {o["Key"] for o in listing["Contents"]}
