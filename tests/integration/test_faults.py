"""Storage faults for real: a proxy on 127.0.0.1 in front of the moto server fails a share of the
requests (500, 503 SlowDown, connections dropped mid-body, stalls). recpipe must produce the same
bytes as without faults, count its retries in the report, and fail clearly on a permanent fault."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.samples.composite import write_sample
from tests.faults import FaultPlan, FaultProxy

pytestmark = [pytest.mark.integration, pytest.mark.ffmpeg, pytest.mark.usefixtures("aws_environment")]


@pytest.fixture(scope="module")
def recording(tmp_path_factory, ffmpeg_exe) -> Path:
    """30 slices of 2 s: about 40 requests per run, so a 20 % fault rate hits several of them."""
    root = tmp_path_factory.mktemp("faults")
    made = write_sample(root / "rec", ffmpeg=ffmpeg_exe, seconds=60, slice_seconds=2, cname="faults")
    (root / "start.json").write_text(json.dumps(made.profile))
    return root


def upload_sample(client, bucket: str, prefix: str, recording: Path) -> None:
    for path in sorted((recording / "rec").iterdir()):
        client.put_object(Bucket=bucket, Key=prefix + path.name, Body=path.read_bytes())


def process(bucket: str, prefix: str, endpoint: str, recording: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pipeline", "process", f"s3://{bucket}/{prefix}", "--endpoint-url",
            endpoint,
            "--profile", str(recording / "start.json"), "--av-file-type", "hls,mp4", "--json"]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


def outputs(client, bucket: str, prefix: str) -> dict[str, str]:
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {
        o["Key"].removeprefix(prefix): hashlib.sha256(
            client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        ).hexdigest()
        for o in listed
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_twenty_percent_of_requests_faulted_same_bytes_and_retries_reported(s3_bucket, seed, recording):
    client, bucket = s3_bucket.client, s3_bucket.name
    upload_sample(client, bucket, "clean/", recording)
    upload_sample(client, bucket, "faulty/", recording)
    clean = process(bucket, "clean/", s3_bucket.endpoint, recording)
    assert clean.returncode == 0, clean.stderr
    plan = FaultPlan(rate=0.2, seed=seed)
    with FaultProxy(s3_bucket.endpoint, plan) as proxy:
        faulty = process(bucket, "faulty/", proxy.url, recording)
    assert faulty.returncode == 0, faulty.stderr
    report = json.loads(faulty.stdout)
    assert sum(plan.faults.values()) >= 4, plan.faults
    assert report["retries"] >= 1
    assert report["retries"] <= 3 * len(plan.requests)  # bounded
    assert json.loads(clean.stdout)["retries"] == 0
    ours, theirs = outputs(client, bucket, "faulty/"), outputs(client, bucket, "clean/")
    mp4 = [k for k in theirs if k.endswith(".mp4")]
    assert mp4
    assert {k: ours[k] for k in mp4} == {k: theirs[k] for k in mp4}
    assert set(ours) == set(theirs)
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_a_permanent_fault_fails_clearly_and_writes_nothing(s3_bucket, recording):
    client, bucket = s3_bucket.client, s3_bucket.name
    upload_sample(client, bucket, "rec/", recording)
    before = outputs(client, bucket, "rec/")
    with FaultProxy(s3_bucket.endpoint, FaultPlan(permanent=True)) as proxy:
        result = process(bucket, "rec/", proxy.url, recording)
    assert result.returncode == 1
    error = json.loads(result.stdout)["error"]
    assert "SlowDown" in error["message"]
    assert "Traceback" not in result.stderr
    assert outputs(client, bucket, "rec/") == before
