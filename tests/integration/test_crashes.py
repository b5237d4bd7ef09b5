"""kill -9 of recpipe (and of its ffmpeg) at random points while it processes a recording on S3: no
partial output ever shows at a final key, the sources never change, and a rerun completes with the
same bytes and leaves nothing behind (no lease, no unfinished upload, no work directory)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.samples.composite import write_sample
from tests.bench.measure import children_of

pytestmark = [
    pytest.mark.integration,
    pytest.mark.ffmpeg,
    pytest.mark.slow,
    pytest.mark.usefixtures("aws_environment"),
]


@pytest.fixture(scope="module")
def recording(tmp_path_factory, ffmpeg_exe) -> Path:
    root = tmp_path_factory.mktemp("crash")
    made = write_sample(root / "rec", ffmpeg=ffmpeg_exe, seconds=60, slice_seconds=2, cname="crash")
    (root / "start.json").write_text(json.dumps(made.profile))
    return root


def start(bucket: str, endpoint: str, recording: Path, workdir: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "pipeline", "process", f"s3://{bucket}/rec/", "--endpoint-url", endpoint,
            "--profile", str(recording / "start.json"), "--av-file-type", "hls,mp4",
            "--force", "--quiet"]  # fmt: skip
    env = {**os.environ, "RECPIPE_WORKDIR": str(workdir), "RECPIPE_FETCH_WORKERS": "2"}
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def remuxing(pid: int) -> bool:
    """Whether ``pid`` is the ffmpeg remuxing the slices (not a ``-version`` probe)."""
    try:
        return b"pipe:0" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def state(client, bucket: str) -> dict[str, str]:
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {
        o["Key"]: hashlib.sha256(client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()).hexdigest()
        for o in listed
    }


def test_kill_9_at_random_points_then_rerun(s3_bucket, recording, tmp_path, ffmpeg_exe):
    client, bucket = s3_bucket.client, s3_bucket.name
    for path in sorted((recording / "rec").iterdir()):
        client.put_object(Bucket=bucket, Key="rec/" + path.name, Body=path.read_bytes())
    sources = state(client, bucket)
    reference = subprocess.run(
        [sys.executable, "-m", "pipeline", "process", str(recording / "rec"), "--dest", str(tmp_path / "ref"),
         "--profile", str(recording / "start.json"), "--av-file-type", "hls,mp4", "--quiet"], check=True,
    )  # fmt: skip
    assert reference.returncode == 0
    [mp4] = (tmp_path / "ref").rglob("*.mp4")
    good_mp4 = hashlib.sha256(mp4.read_bytes()).hexdigest()
    workdir = tmp_path / "work"
    workdir.mkdir()
    # One whole run first, for how long a run takes on this machine: the kills land within it, however
    # fast the machine (a fixed window let most runs finish first on a fast one). Its outputs go.
    began = time.monotonic()
    assert start(bucket, s3_bucket.endpoint, recording, workdir).wait(timeout=120) == 0
    took = time.monotonic() - began
    for key in set(state(client, bucket)) - set(sources):
        client.delete_object(Bucket=bucket, Key=key)
    rng = random.Random(20261125)
    kills = {"recpipe": 0, "ffmpeg": 0, "finished first": 0}
    for round_ in range(10):
        proc = start(bucket, s3_bucket.endpoint, recording, workdir)
        if round_ % 4 == 3:  # kill its ffmpeg instead, as soon as there is one
            deadline = time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < deadline:
                ffmpeg = [c for c in children_of().get(proc.pid, []) if remuxing(c)]
                if ffmpeg:
                    time.sleep(rng.uniform(0.0, 0.05))
                    with contextlib.suppress(ProcessLookupError):  # it may have finished meanwhile
                        os.kill(ffmpeg[0], signal.SIGKILL)
                        kills["ffmpeg"] += 1
                    break
                time.sleep(0.005)
            proc.wait(timeout=60)
        else:
            time.sleep(rng.uniform(0.05, 0.95) * took)
            if proc.poll() is None:
                proc.kill()
                kills["recpipe"] += 1
            else:
                kills["finished first"] += 1
            proc.wait(timeout=60)
        assert b"Traceback" not in (proc.stderr.read() if proc.stderr else b"")
        now = state(client, bucket)
        assert {k: v for k, v in now.items() if k in sources} == sources
        for key, digest in now.items():  # whatever shows at a final key is complete
            if key.endswith(".mp4"):
                assert digest == good_mp4, f"round {round_}: partial MP4 at {key}"
            if key.endswith(".report.json"):
                json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert kills["recpipe"] >= 4
    assert kills["ffmpeg"] >= 2

    final = start(bucket, s3_bucket.endpoint, recording, workdir)
    assert final.wait(timeout=120) == 0
    after = state(client, bucket)
    extra = {k: v for k, v in after.items() if k not in sources}
    assert sorted(k.rsplit(".", 1)[-1] for k in extra) == ["json", "mp4"]  # no lease, nothing else
    assert [v for k, v in extra.items() if k.endswith(".mp4")] == [good_mp4]
    report = json.loads(
        client.get_object(Bucket=bucket, Key=next(k for k in extra if k.endswith(".json")))["Body"].read()
    )
    assert report["status"] == "ok"
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")
    time.sleep(0.5)  # an orphaned ffmpeg of the last killed run may still be closing its file
    assert [p.name for p in workdir.iterdir() if p.name.startswith("recpipe-")] == []


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_run_that_finds_the_work_done_clears_a_dead_runs_lease_and_uploads(where, s3_bucket, tmp_path):
    """kill -9 between the report's commit and the lease's release leaves the lease (and possibly an
    upload): the next run finds the report up to date and still clears what the dead run left."""
    from pipeline.run.lease import lease_document
    from pipeline.run.liveness import this_host
    from pipeline.storage.locations import open_location

    sample = Path(__file__).resolve().parents[2] / "sample_data"
    stem = "665ba1974b715d7e0faf7b5a3c199acf_demo-room"
    if where == "local":
        location = str(tmp_path / "bucket")
        import shutil

        shutil.copytree(sample, tmp_path / "bucket")
        env = os.environ
    else:
        s3_bucket.upload_directory(sample / "recordings", prefix="recordings/")
        location = f"s3://{s3_bucket.name}/"
        env = {**os.environ, "AWS_ENDPOINT_URL": s3_bucket.endpoint}
    argv = [sys.executable, "-m", "pipeline", "process", location, "--profile",
            str(sample / "start_request.json"), "--quiet"]  # fmt: skip
    assert subprocess.run(argv, env=env, check=False, timeout=120).returncode == 0

    dead = subprocess.run(["true"], check=True)
    del dead
    gone_pid = max(os.getpid() + 50_000, 4_000_000)  # no such process
    storage = open_location(location, environ=env).storage
    key = f"recordings/{stem}.lease.json"
    owner = f"{this_host()}:{gone_pid}:deadbeef"
    storage.put_bytes(lease_document(owner=owner, expires=time.time() + 600), key)
    upload = storage.begin_upload(f"recordings/{stem}_0.mp4")
    if upload is not None:
        upload.put_part(1, b"x" * 10)  # an upload the dead run never completed

    result = subprocess.run(
        [*argv[:-1], "--json"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert not storage.exists(key)
    assert storage.discard_incomplete(f"recordings/{stem}") == 0  # nothing was left to abort
