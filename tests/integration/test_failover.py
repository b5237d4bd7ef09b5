"""Failover: the original recorder's set and the ``bak0_`` set of the recorder that resumed it are one
recording — listed once, joined on the slice names' clock into one MP4, the lost stretch reported."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.samples.recovery import write_failover_sample
from stages.media.mp4 import read_mp4
from stages.media.ts import read_slice
from tests.integration.conftest import with_profile

pytestmark = [pytest.mark.integration, pytest.mark.ffmpeg]

GAP_S = 3.0


def run(*args: str) -> tuple[int, dict | list]:
    result = CliRunner().invoke(main, [*args, "--json"], catch_exceptions=False)
    assert result.stdout, result.output
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture(scope="module")
def made(tmp_path_factory, ffmpeg_exe):
    root = tmp_path_factory.mktemp("failover")
    sample = write_failover_sample(root / "recordings", ffmpeg=ffmpeg_exe, gap_s=GAP_S)
    return with_profile(root, sample)


def media_s(paths) -> float:
    return sum(read_slice((p.read_bytes(),)).duration_s or 0.0 for p in paths)


def test_the_two_sets_are_one_recording_joined_into_one_mp4(root, made):
    sample = made[1]
    code, listed = run("ls", str(root))
    assert code == 0
    assert [(r["sid"], r["cname"], r["state"], r["slices"]) for r in listed] == [
        (sample.sid, sample.cname, "complete", 4)  # the original lacks ENDLIST; bak0's has it
    ]
    code, report = run("process", str(root), "--profile", str(root / "start.json"))
    assert (code, report["status"]) == (0, "ok")
    assert report["recording"]["playlists"] == [f"recordings/{p.name}" for p in sample.playlists]
    [output] = report["outputs"]
    slices = [root / "recordings" / p.name for p in sample.slices]
    assert read_mp4(root / output["key"]).duration_s == pytest.approx(media_s(slices), abs=0.1)
    [gap] = [f for f in report["findings"] if f["code"] == "FAILOVER_GAP"]
    first_half = media_s(slices[:2])
    assert gap["severity"] == "warning"
    assert gap["at_s"] == pytest.approx(first_half, abs=0.1)
    assert gap["seconds"] == pytest.approx(4.0 + GAP_S - first_half, abs=0.1)
    assert gap["segment"] == sample.slices[2].name
    assert [f["code"] for f in report["findings"] if f["severity"] == "error"] == []
    assert "FAILOVER" in {f["code"] for f in report["findings"]}


def test_the_resumed_playlist_names_the_whole_recording(root, made):
    resumed = made[1].playlists[1]
    assert resumed.name.startswith("bak0_")
    code, report = run("verify", str(root / "recordings" / resumed.name))
    assert (code, report["status"]) == (0, "ok")
    assert report["segments"]["listed"] == 4
    assert report["recording"]["sid"] == made[1].sid


def test_without_its_resumed_set_the_recording_is_still_recording(root, made):
    (root / "recordings" / made[1].playlists[1].name).unlink()
    code, report = run("verify", str(root), "--profile", str(root / "start.json"))
    assert (code, report["status"]) == (75, "pending")


def test_on_s3_the_failover_recording_is_joined(made, s3_bucket):
    root, sample = made
    s3_bucket.upload_directory((root / "recordings"), prefix="rec/")
    code, report = run(
        "process", f"s3://{s3_bucket.name}/rec/{sample.playlists[1].name}", "--av-file-type", "hls,mp4",
        "--endpoint-url", s3_bucket.endpoint,
    )  # fmt: skip
    assert (code, report["status"]) == (0, "ok")
    [output] = report["outputs"]
    assert output["key"] == f"rec/{sample.sid}_{sample.cname}_0.mp4"
    assert {f["code"] for f in report["findings"]} >= {"FAILOVER", "FAILOVER_GAP"}
