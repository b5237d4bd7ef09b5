"""S3 → S3 with the MP4 uploaded while ffmpeg writes it: the object appears only complete, moov first,
exactly the bytes the report describes; a run that fails leaves no object and no open upload."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from stages.media.mp4 import parse_boxes, parse_mp4_bytes
from tests.bench.recording import build

pytestmark = [pytest.mark.integration, pytest.mark.ffmpeg, pytest.mark.slow]

MiB = 1024 * 1024
SMALL_PARTS = {"RECPIPE_UPLOAD_PART_BYTES": str(5 * MiB)}


@pytest.fixture(scope="module")
def recording(tmp_path_factory, ffmpeg_exe):
    """32 slices of 9.6 s (about 24 MB): big enough for several 5 MiB parts."""
    return build(tmp_path_factory.mktemp("bench"), slices=32, ffmpeg=ffmpeg_exe)


def upload_recording(recording, s3_bucket) -> dict[str, str]:
    for path in sorted(recording.directory.iterdir()):
        s3_bucket.put_file(path, f"rec/{path.name}")
    return etags(s3_bucket, "rec/")


def etags(s3_bucket, prefix: str) -> dict[str, str]:
    listing = s3_bucket.client.list_objects_v2(Bucket=s3_bucket.name, Prefix=prefix)
    return {o["Key"]: o["ETag"] for o in listing.get("Contents", [])}


def process(recording, s3_bucket, *extra: str) -> tuple[int, dict, str]:
    result = CliRunner().invoke(
        main,
        ["-vv", "process", f"s3://{s3_bucket.name}/rec/", "--dest", f"s3://{s3_bucket.name}/out/",
         "--profile", str(recording.profile), "--endpoint-url", s3_bucket.endpoint, "--json", *extra],
        env=SMALL_PARTS,
        catch_exceptions=False,
    )  # fmt: skip
    return result.exit_code, json.loads(result.stdout), result.stderr


def test_mp4_streams_up_while_it_is_written(recording, s3_bucket):
    sources = upload_recording(recording, s3_bucket)
    code, report, log = process(recording, s3_bucket)
    assert (code, report["status"]) == (0, "ok")
    [output] = report["outputs"]
    [streamed] = re.findall(r"(\d+) of (\d+) parts were sent while ffmpeg wrote", log)
    sent_early, total = (int(n) for n in streamed)  # how many went early depends on timing; see test_publish
    assert 0 <= sent_early < total
    assert total >= 4
    body = s3_bucket.client.get_object(Bucket=s3_bucket.name, Key=output["key"])["Body"].read()
    head = s3_bucket.client.head_object(Bucket=s3_bucket.name, Key=output["key"])
    assert head["ETag"].strip('"').endswith(f"-{total}")  # one multipart upload of that many parts
    assert (len(body), hashlib.sha256(body).hexdigest()) == (output["bytes"], output["sha256"])
    assert [b.type for b in parse_boxes(body)][:2] == ["ftyp", "moov"]
    info = parse_mp4_bytes(body)
    assert info.track_kinds == ("video", "audio")
    assert info.duration_s == pytest.approx(32 * 9.6, abs=0.07)
    assert s3_bucket.client.list_multipart_uploads(Bucket=s3_bucket.name).get("Uploads", []) == []
    assert etags(s3_bucket, "rec/") == sources  # the recording is untouched


def test_a_failed_run_leaves_no_object_and_no_open_upload(recording, s3_bucket):
    upload_recording(recording, s3_bucket)
    victim = sorted(p.name for p in recording.directory.glob("*.ts"))[20]
    s3_bucket.client.delete_object(Bucket=s3_bucket.name, Key=f"rec/{victim}")  # found missing late
    code, report, log = process(recording, s3_bucket)
    assert f"remuxing stopped: stopped: {victim} is MISSING_SEGMENT" in log  # no MP4 finished in vain
    assert (code, report["status"], report["outputs"]) == (1, "failed", [])
    assert [f["code"] for f in report["findings"] if f["severity"] == "error"] == ["MISSING_SEGMENT"]
    assert [key for key in etags(s3_bucket, "out/") if not key.endswith(".report.json")] == []
    assert s3_bucket.client.list_multipart_uploads(Bucket=s3_bucket.name).get("Uploads", []) == []


def test_lenient_run_publishes_the_same_way(recording, s3_bucket):
    upload_recording(recording, s3_bucket)
    victim = sorted(p.name for p in recording.directory.glob("*.ts"))[20]
    s3_bucket.client.delete_object(Bucket=s3_bucket.name, Key=f"rec/{victim}")
    code, report, _ = process(recording, s3_bucket, "--policy", "lenient")
    assert (code, report["status"]) == (3, "degraded")
    [output] = report["outputs"]
    body = s3_bucket.client.get_object(Bucket=s3_bucket.name, Key=output["key"])["Body"].read()
    assert parse_mp4_bytes(body).duration_s == pytest.approx(31 * 9.6, abs=0.07)  # the hole is closed


def test_split_mp4s_each_stream_up_as_their_own_upload(recording, s3_bucket):
    upload_recording(recording, s3_bucket)
    result = CliRunner().invoke(
        main,
        ["process", f"s3://{s3_bucket.name}/rec/", "--dest", f"s3://{s3_bucket.name}/out/",
         "--profile", str(recording.profile), "--endpoint-url", s3_bucket.endpoint, "--json"],
        env={**SMALL_PARTS, "RECPIPE_MAX_MP4_SECONDS": "100"},
        catch_exceptions=False,
    )  # fmt: skip
    report = json.loads(result.stdout)
    assert (result.exit_code, report["status"]) == (0, "ok")
    outputs = report["outputs"]
    assert [o["key"].rsplit("_", 1)[1] for o in outputs] == ["0.mp4", "1.mp4", "2.mp4", "3.mp4"]
    slices = sorted(p.name for p in recording.directory.glob("*.ts"))
    for i, output in enumerate(outputs):
        assert output["key"] == f"out/{recording.playlist.name.removesuffix('.m3u8')}_{i}.mp4"  # Agora's name
        assert slices[10 * i]  # each holds 10 slices
        body = s3_bucket.client.get_object(Bucket=s3_bucket.name, Key=output["key"])["Body"].read()
        assert hashlib.sha256(body).hexdigest() == output["sha256"]
        assert [b.type for b in parse_boxes(body)][:2] == ["ftyp", "moov"]
        expected = 96.0 if i < 3 else 19.2  # 10, 10, 10 and 2 slices of 9.6 s
        assert parse_mp4_bytes(body).duration_s == pytest.approx(expected, abs=0.07)
        assert output["start_s"] == pytest.approx(96.0 * i, abs=0.07)
    assert s3_bucket.client.list_multipart_uploads(Bucket=s3_bucket.name).get("Uploads", []) == []
