"""Backup uploads still arriving: a recording the recorder reported ``backuped`` waits (pending) for
the listed slices that are not there yet, until they arrive or the wait runs out; snapshot playlists
of every playlist kind belong to their playlist, ordered by their index."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.samples.individual import write_individual_sample
from pipeline.samples.recovery import write_backuped_sample
from tests.integration.conftest import with_profile

pytestmark = [pytest.mark.integration, pytest.mark.ffmpeg]


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict | list]:
    result = CliRunner().invoke(main, [*args, "--json"], catch_exceptions=False, env=env)
    assert result.stdout, result.output
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture(scope="module")
def made(tmp_path_factory, ffmpeg_exe):
    root = tmp_path_factory.mktemp("backuped")
    sample = write_backuped_sample(
        root / "recordings", ffmpeg=ffmpeg_exe, late=2, missing=1, held=root.parent / f"{root.name}-late"
    )
    return with_profile(root, sample)


def test_a_backuped_recording_waits_for_its_slices_then_is_processed(root, made):
    sample = made[1]
    late = sample.slices[-1]
    assert not (root / "recordings" / late.name).exists()
    profile = ("--profile", str(root / "start.json"))

    code, report = run("process", str(root), *profile, "--backuped")
    assert (code, report["status"]) == (75, "pending")
    [waiting] = [f for f in report["findings"] if f["code"] == "BACKUP_PENDING"]
    assert late.name in waiting["detail"]
    assert not list((root / "recordings").glob("*.mp4"))
    assert not list((root / "recordings").glob("*.report.json"))

    code, report = run("process", str(root), *profile)  # not known to be backuped: the slice is missing
    assert (code, report["status"]) == (1, "failed")
    assert "MISSING_SEGMENT" in {f["code"] for f in report["findings"]}

    held = made[0].parent / f"{made[0].name}-late"
    shutil.copy(held / late.name, root / "recordings" / late.name)  # it arrives from the backup
    code, report = run("process", str(root), *profile, "--backuped")
    assert (code, report["status"]) == (0, "ok")
    assert report["segments"]["listed"] == len(sample.slices)
    assert "PLAYLIST_SNAPSHOTS" in {f["code"] for f in report["findings"]}


def test_the_wait_runs_out(root):
    long_ago = str(time.time() - 7200)
    code, report = run(
        "verify", str(root), "--profile", str(root / "start.json"), "--backuped-at", long_ago,
        env={"RECPIPE_BACKUP_WAIT_SECONDS": "3600"},
    )  # fmt: skip
    assert (code, report["status"]) == (1, "failed")
    code, report = run(
        "verify", str(root), "--profile", str(root / "start.json"), "--backuped-at", long_ago,
        env={"RECPIPE_BACKUP_WAIT_SECONDS": "86400"},
    )  # fmt: skip
    assert (code, report["status"]) == (75, "pending")


def test_snapshots_of_an_individual_stream_belong_to_it_and_are_ordered_by_index(tmp_path, ffmpeg_exe):
    sample = write_individual_sample(tmp_path / "rec", ffmpeg=ffmpeg_exe, slice_seconds=5)
    video = next(p for p in sample.playlists if "__uid_s_1001__uid_e_video" in p.name)
    text = video.read_text()
    stem = video.name.removesuffix(".m3u8")
    older = video.with_name(f"{stem}_900_1.m3u8")  # a larger tick but a smaller index: older
    newer = video.with_name(f"{stem}_22194679897_3.m3u8")  # Agora's own example's shape
    older.write_text(text)
    newer.write_text(text)
    code, listed = run("ls", str(tmp_path / "rec"))
    assert code == 0
    streams = [(r["uid"], r["media"]) for r in listed]
    assert sorted(streams) == [("1001", "audio"), ("1001", "video"), ("2002", "audio"), ("2002", "video")]
    [entry] = [r for r in listed if (r["uid"], r["media"]) == ("1001", "video")]
    assert entry["playlists"] == [video.name]  # picked: the main playlist lists every slice
    code, report = run("verify", str(tmp_path / "rec" / newer.name))
    assert code == 0, report
    assert report["recording"]["uid"] == "1001"  # the snapshot's stream's user


def test_on_s3_a_backuped_recording_waits_then_is_processed(made, s3_bucket):
    root, sample = made
    s3_bucket.upload_directory((root / "recordings"), prefix="rec/")
    args = ("process", f"s3://{s3_bucket.name}/rec/", "--av-file-type", "hls,mp4",
            "--endpoint-url", s3_bucket.endpoint, "--backuped")  # fmt: skip
    code, report = run(*args)
    assert (code, report["status"]) == (75, "pending")
    late = sample.slices[-1]
    held = root.parent / f"{root.name}-late"
    s3_bucket.put_file(held / late.name, f"rec/{late.name}")
    code, report = run(*args)
    assert (code, report["status"]) == (0, "ok")
    assert report["segments"]["present"] == len(sample.slices)
