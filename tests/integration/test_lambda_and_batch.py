"""The Lambda handler with real S3 notifications from moto's queue, ``recpipe batch``, and a job
stopped by SIGTERM in the middle of its work."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.fleet.lambda_handler import handler
from pipeline.samples.composite import write_sample

pytestmark = [pytest.mark.integration, pytest.mark.ffmpeg, pytest.mark.usefixtures("aws_environment")]

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


def upload_dir(client, bucket: str, root: Path, prefix: str = "") -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            client.put_object(
                Bucket=bucket, Key=prefix + path.relative_to(root).as_posix(), Body=path.read_bytes()
            )


def sqs_records(sqs, queue: str) -> list[dict]:
    """The queue's messages in the shape Lambda's SQS event source hands them to the function."""
    got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                              MessageSystemAttributeNames=["All"])  # fmt: skip
    return [
        {"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
         "attributes": m["Attributes"], "eventSource": "aws:sqs"}
        for m in got.get("Messages", [])
    ]  # fmt: skip


def test_lambda_processes_a_batch_and_reports_what_must_come_back(
    s3_bucket, monkeypatch, tmp_path, ffmpeg_exe
):
    client, bucket = s3_bucket.client, s3_bucket.name
    sqs = boto3.client("sqs", endpoint_url=s3_bucket.endpoint, region_name="us-east-1")
    queue = sqs.create_queue(QueueName=f"lambda-{bucket[-12:]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    client.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    upload_dir(client, bucket, SAMPLE / "recordings", "done/")
    live = write_sample(tmp_path / "live", ffmpeg=ffmpeg_exe, seconds=4, slice_seconds=2, cname="live room")
    live.playlist.write_text(live.playlist.read_text().replace("#EXT-X-ENDLIST\n", ""))
    upload_dir(client, bucket, tmp_path / "live", "live/")
    sqs.send_message(QueueUrl=queue, MessageBody="garbage")
    records = sqs_records(sqs, queue) + sqs_records(sqs, queue)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_bucket.endpoint)
    monkeypatch.setenv("RECPIPE_AV_FILE_TYPE", "hls,mp4")
    monkeypatch.setenv("RECPIPE_PROFILE", str(SAMPLE / "start_request.json"))

    result = handler({"Records": records}, SimpleNamespace(aws_request_id="r1"))

    by_body = {r["messageId"]: r["body"] for r in records}
    failed = [by_body[f["itemIdentifier"]] for f in result["batchItemFailures"]]
    assert len(records) == 9  # "done": 3 slices + playlist; "live": 2 + playlist; S3's test event; garbage
    assert len(failed) == 2
    assert "garbage" in failed  # back to the queue; its redrive policy dead-letters it
    assert any("live+room.m3u8" in b for b in failed)  # still recording
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert any(k.startswith("done/") and k.endswith("_0.mp4") for k in keys)
    assert any(k.startswith("done/") and k.endswith(".report.json") for k in keys)
    assert not any(k.startswith("live/") and k.endswith((".mp4", ".json")) for k in keys)


def test_lambda_with_a_direct_s3_event(s3_bucket, monkeypatch):
    client, bucket = s3_bucket.client, s3_bucket.name
    upload_dir(client, bucket, SAMPLE / "recordings", "rec/")
    [key] = [
        o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"] if o["Key"].endswith(".m3u8")
    ]
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_bucket.endpoint)
    monkeypatch.delenv("RECPIPE_AV_FILE_TYPE", raising=False)
    event = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                          "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}]}  # fmt: skip
    assert handler(event, None) == {"verdict": "delete", "reason": "done (ok)"}
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert key.removesuffix(".m3u8") + ".report.json" in keys  # HLS only by default: verified, reported


def test_batch_processes_everything_then_skips_it(tmp_path, ffmpeg_exe):
    root = tmp_path / "store"
    shutil.copytree(SAMPLE / "recordings", root / "a")
    write_sample(root / "b", ffmpeg=ffmpeg_exe, seconds=4, slice_seconds=2, cname="second")
    write_sample(
        root / "c", ffmpeg=ffmpeg_exe, seconds=6, slice_seconds=2, cname="broken", defect="missing-slice"
    )
    args = ["batch", str(root), "--workers", "3", "--av-file-type", "hls,mp4"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 1, first.output  # one recording misses a slice: failed
    lines = [line for line in first.output.splitlines() if line.startswith("[")]
    assert len(lines) == 3
    assert sorted(line.split()[1] for line in lines) == ["failed", "ok", "ok"]
    assert "3 recording(s): 1 failed, 2 ok" in first.output
    again = CliRunner().invoke(main, [*args, "--json"])
    results = json.loads(again.stdout)
    assert sorted(r["status"] for r in results) == ["failed", "ok", "ok"]
    assert len(list(root.rglob("*.mp4"))) == 2


def test_sigterm_stops_a_job_cleanly(s3_bucket, tmp_path, ffmpeg_exe):
    """SIGTERM while the job holds its lease: the multipart upload is aborted, the lease released,
    nothing published, the sources untouched."""
    client, bucket = s3_bucket.client, s3_bucket.name
    write_sample(tmp_path / "r", ffmpeg=ffmpeg_exe, seconds=60, slice_seconds=4, cname="long")
    upload_dir(client, bucket, tmp_path / "r", "rec/")
    before = {o["Key"]: o["ETag"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    argv = [sys.executable, "-m", "pipeline", "process", f"s3://{bucket}/rec/",
            "--endpoint-url", s3_bucket.endpoint, "--av-file-type", "hls,mp4", "--quiet"]  # fmt: skip
    env = {**os.environ, "RECPIPE_FETCH_WORKERS": "1", "RECPIPE_FETCH_WINDOW": "1"}
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not any(
            o["Key"].endswith(".lease.json")
            for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])
        ):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    after = {o["Key"]: o["ETag"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert after == before
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_lambda_lets_a_waiting_message_wait_in_its_queue(s3_bucket, monkeypatch, tmp_path, ffmpeg_exe):
    """A recording still recording: the message is sent again with a delay and the time the job first
    arrived, and succeeds — waiting never uses up the queue's maxReceiveCount."""
    client, bucket = s3_bucket.client, s3_bucket.name
    sqs = boto3.client("sqs", endpoint_url=s3_bucket.endpoint, region_name="us-east-1")
    queue = sqs.create_queue(QueueName=f"lambda-wait-{bucket[-12:]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    live = write_sample(tmp_path / "live", ffmpeg=ffmpeg_exe, seconds=4, slice_seconds=2, cname="live")
    live.playlist.write_text(live.playlist.read_text().replace("#EXT-X-ENDLIST\n", ""))
    upload_dir(client, bucket, tmp_path / "live", "live/")
    key = f"live/{live.playlist.name}"
    s3_record = {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                 "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}  # fmt: skip
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"Records": [s3_record]}))
    [record] = sqs_records(sqs, queue)
    record["eventSourceARN"] = arn
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_bucket.endpoint)

    result = handler({"Records": [record]}, SimpleNamespace(aws_request_id="r2"))

    assert result == {"batchItemFailures": []}
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"  # sent again, --pending-delay 60 s
    assert attributes["ApproximateNumberOfMessages"] == "0"
    sqs.delete_queue(QueueUrl=queue)
