"""Storage credentials in a profile's storageConfig never show in logs, reports or error messages —
whether the run succeeds, the bucket is missing, or the endpoint cannot be reached."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.ffmpeg, pytest.mark.usefixtures("aws_environment")]

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
ACCESS, SECRET = "AKIACANARY7Q3XZ", "canary/SECRET+key=9f8e7d6c5b4a"


def profile_with_keys(path: Path, *, bucket: str, endpoint: str) -> Path:
    doc = json.loads((SAMPLE / "start_request.json").read_text())
    doc["clientRequest"]["storageConfig"].update(
        vendor=11, bucket=bucket, accessKey=ACCESS, secretKey=SECRET, fileNamePrefix=["recordings"],
        extensionParams={"endpoint": endpoint},
    )  # fmt: skip
    path.write_text(json.dumps(doc))
    return path


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("where", ["works", "no such bucket", "endpoint down"])
def test_keys_never_leak(where, s3_bucket, tmp_path):
    client, bucket = s3_bucket.client, s3_bucket.name
    for path in sorted((SAMPLE / "recordings").iterdir()):
        client.put_object(Bucket=bucket, Key="recordings/" + path.name, Body=path.read_bytes())
    endpoint = closed_port() if where == "endpoint down" else s3_bucket.endpoint
    name = "no-such-bucket-recpipe" if where == "no such bucket" else bucket
    profile = profile_with_keys(tmp_path / "start.json", bucket=name, endpoint=endpoint)
    # No credentials in the environment, so recpipe uses the profile's keys (moto takes any)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE")
    }
    runs = [
        subprocess.run(
            [sys.executable, "-m", "pipeline", "-vv", *args, "--profile", str(profile)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=env,
        )
        for args in (["process", "--json"], ["process"], ["verify", "--json"])
    ]
    if where == "works":
        assert [r.returncode for r in runs] == [0, 0, 0], runs[0].stderr
    else:
        assert all(r.returncode == 1 for r in runs), [r.stderr[-500:] for r in runs]
    written = [
        client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().decode("utf-8", "replace")
        for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])
        if o["Key"].endswith(".json")
    ]
    everything = "".join(r.stdout + r.stderr for r in runs) + "".join(written)
    for secret in (ACCESS, SECRET, SECRET.split("/")[1]):
        assert secret not in everything
    assert "using the storageConfig's access key" in runs[0].stderr  # the keys were really used
