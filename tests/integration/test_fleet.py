"""The fleet end to end on a moto server: bucket notifications → SQS → two `recpipe worker` processes.

20 recordings (channel names with spaces and '+'), 4 of them still recording when the workers start;
duplicate events and a full re-enqueue injected; every recording ends with exactly one MP4 and one
report, nothing else is left behind, and both queues end empty.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote_plus

import boto3
import pytest

from pipeline.samples.composite import write_sample
from tests.bench.measure import children_of

pytestmark = [
    pytest.mark.integration,
    pytest.mark.ffmpeg,
    pytest.mark.slow,
    pytest.mark.usefixtures("aws_environment"),
]

PREFIX = "rec/"
CNAMES = ["room", "my room", "a+b", "tea & talk", "x+ y", *[f"room-{i}" for i in range(15)]]
IN_PROGRESS = {"my room", "room-3", "room-7", "a+b"}


def sid_for(cname: str) -> str:
    return hashlib.md5(cname.encode()).hexdigest()


@pytest.fixture(scope="module")
def template(tmp_path_factory, ffmpeg_exe) -> Path:
    """One real 4 s recording (two slices) that every test recording copies under its own names."""
    root = tmp_path_factory.mktemp("template")
    write_sample(root, ffmpeg=ffmpeg_exe, seconds=4, slice_seconds=2, cname="tpl", sid="0" * 32)
    return root


def recording_files(template: Path, cname: str) -> tuple[dict[str, bytes], str, str]:
    """(slice name → bytes, final playlist, in-progress playlist) for ``cname``."""
    old, new = f"{'0' * 32}_tpl", f"{sid_for(cname)}_{cname}"
    slices = {p.name.replace(old, new): p.read_bytes() for p in sorted(template.glob("*.ts"))}
    playlist = next(template.glob("*.m3u8")).read_text().replace(old, new)
    return slices, playlist, playlist.replace("#EXT-X-ENDLIST\n", "")


@pytest.fixture
def fleet(s3_bucket):
    """A queue with a dead-letter queue, and the bucket's notifications for .m3u8 keys going to it."""
    sqs = boto3.client("sqs", endpoint_url=s3_bucket.endpoint, region_name="us-east-1")
    name = s3_bucket.name[-20:]
    dlq = sqs.create_queue(QueueName=f"dlq-{name}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "10"})
    queue = sqs.create_queue(QueueName=f"jobs-{name}", Attributes={"RedrivePolicy": redrive})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3_bucket.client.put_bucket_notification_configuration(
        Bucket=s3_bucket.name,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": ".m3u8"}]}},
                }
            ]
        },
    )
    yield sqs, queue, dlq
    for url in (queue, dlq):
        sqs.delete_queue(QueueUrl=url)


def start_worker(endpoint: str, queue: str, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "pipeline", "-v", "worker", "--queue", queue, "--endpoint-url", endpoint,
            "--av-file-type", "hls,mp4", "--concurrency", "2", "--wait", "1", "--pending-delay", "1",
            "--visibility", "30", "--idle-exit", "6"]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log.open("wb"), env=dict(os.environ))


def objects(s3_bucket) -> dict[str, tuple[str, object]]:
    pages = s3_bucket.client.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket.name)
    return {o["Key"]: (o["ETag"], o["LastModified"]) for page in pages for o in page.get("Contents", [])}


def wait_until(condition, *, seconds: float, what: str, logs: list[Path], poll: float = 0.5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs)
            pytest.fail(f"timed out waiting for {what}\n{tails}")
        time.sleep(poll)


def s3_event(bucket: str, key: str) -> str:
    record = {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
              "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key)}}}  # fmt: skip
    return json.dumps({"Records": [record]})


def test_two_workers_process_every_recording_once(s3_bucket, fleet, template, tmp_path):
    sqs, queue, dlq = fleet
    client, bucket = s3_bucket.client, s3_bucket.name
    final: dict[str, str] = {}
    for cname in CNAMES:
        slices, playlist, unfinished = recording_files(template, cname)
        for name, data in slices.items():
            client.put_object(Bucket=bucket, Key=PREFIX + name, Body=data)
        key = f"{PREFIX}{sid_for(cname)}_{cname}.m3u8"
        client.put_object(
            Bucket=bucket, Key=key, Body=(unfinished if cname in IN_PROGRESS else playlist).encode()
        )
        final[cname] = playlist
    playlist_key = {c: f"{PREFIX}{sid_for(c)}_{c}.m3u8" for c in CNAMES}
    for cname in CNAMES[5:10]:  # duplicate events before any work
        sqs.send_message(QueueUrl=queue, MessageBody=s3_event(bucket, playlist_key[cname]))
    sqs.send_message(QueueUrl=queue, MessageBody="this is not an event")  # goes to the dead-letter queue

    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    workers = [start_worker(s3_bucket.endpoint, queue, log) for log in logs]
    try:
        done = set(CNAMES) - IN_PROGRESS
        report = {c: f"{PREFIX}{sid_for(c)}_{c}.report.json" for c in CNAMES}
        wait_until(
            lambda: all(report[c] in objects(s3_bucket) for c in done),
            seconds=180,
            what="16 reports",
            logs=logs,
        )
        first = objects(s3_bucket)
        assert not any(report[c] in first for c in IN_PROGRESS)  # still recording: pending, no report

        for cname in IN_PROGRESS:  # the recorder stops: the final playlist arrives
            client.put_object(Bucket=bucket, Key=playlist_key[cname], Body=final[cname].encode())
        for cname in CNAMES[:8]:  # more duplicates, and a full re-enqueue by an engineer
            sqs.send_message(QueueUrl=queue, MessageBody=s3_event(bucket, playlist_key[cname]))
        enqueue = subprocess.run(
            [sys.executable, "-m", "pipeline", "enqueue", f"s3://{bucket}/{PREFIX}", "--queue", queue,
             "--endpoint-url", s3_bucket.endpoint, "--av-file-type", "hls,mp4"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert enqueue.returncode == 0, enqueue.stderr
        assert "20 job message(s) sent" in enqueue.stdout

        for w in workers:
            w.wait(timeout=240)
        assert [w.returncode for w in workers] == [0, 0], [p.read_text()[-3000:] for p in logs]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()

    after = objects(s3_bucket)
    for cname in CNAMES:
        sid = sid_for(cname)
        outputs = sorted(
            k for k in after if k.startswith(f"{PREFIX}{sid}_{cname}") and not k.endswith((".ts", ".m3u8"))
        )
        assert len(outputs) == 2, (cname, outputs)
        [mp4] = [k for k in outputs if k.endswith(".mp4")]
        assert mp4.endswith("_0.mp4")
        doc = json.loads(client.get_object(Bucket=bucket, Key=report[cname])["Body"].read())
        assert doc["status"] == "ok", (cname, doc["findings"])
        assert doc["outputs"][0]["key"] == mp4
    for cname in done:  # duplicates and the re-enqueue rewrote nothing
        assert after[report[cname]] == first[report[cname]]
    sources = {k for k in after if k.endswith((".ts", ".m3u8"))}
    assert len(after) == len(sources) + 2 * len(CNAMES)  # no leases, no temporary objects
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")
    for url in (queue, dlq):
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        counts = (attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"])
        if url == queue:
            assert counts == ("0", "0")
        else:
            assert counts == ("1", "0")  # the one message that was not an event
    text = "".join(p.read_text() for p in logs)
    assert "moved to dlq-" in text
    assert "Traceback" not in text


def test_sigterm_returns_the_running_jobs_message_and_leaves_nothing_behind(
    s3_bucket, fleet, ffmpeg_exe, tmp_path
):
    sqs, queue, _ = fleet
    client, bucket = s3_bucket.client, s3_bucket.name
    root = tmp_path / "long"
    write_sample(root, ffmpeg=ffmpeg_exe, seconds=240, slice_seconds=4, cname="long")
    for path in sorted(root.iterdir(), key=lambda p: p.suffix == ".m3u8"):  # the playlist last
        client.put_object(Bucket=bucket, Key=PREFIX + path.name, Body=path.read_bytes())
    sources = objects(s3_bucket)
    log = tmp_path / "worker.log"
    argv = [sys.executable, "-m", "pipeline", "-v", "worker", "--queue", queue, "--endpoint-url",
            s3_bucket.endpoint, "--av-file-type", "hls,mp4", "--wait", "1", "--grace", "0"]  # fmt: skip
    env = {**os.environ, "RECPIPE_FETCH_WORKERS": "1", "RECPIPE_FETCH_WINDOW": "1"}
    worker = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log.open("wb"), env=env)
    try:
        wait_until(lambda: children_of().get(worker.pid), seconds=60, what="the job", logs=[log], poll=0.01)
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, log.read_text()[-3000:]
    assert objects(s3_bucket) == sources  # no outputs, no report, no lease
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")
    got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)  # back at once
    bodies = [m["Body"] for m in got.get("Messages", []) if "long.m3u8" in m["Body"]]
    assert len(bodies) == 1


def test_a_backuped_recording_waits_on_the_queue_until_its_late_slice_arrives(
    s3_bucket, fleet, ffmpeg_exe, tmp_path
):
    """The recorder's ``backuped`` notification becomes a job that waits (pending, message returned)
    while a listed slice is still on its way; the slice's arrival (its storage event) and the returning
    message both lead to the one report, and nothing reaches the dead-letter queue."""
    from pipeline.samples.recovery import write_backuped_sample

    sqs, queue, dlq = fleet
    client, bucket = s3_bucket.client, s3_bucket.name
    held = tmp_path / "late"
    sample = write_backuped_sample(tmp_path / "rec", ffmpeg=ffmpeg_exe, held=held)
    s3_bucket.upload_directory(tmp_path / "rec", prefix=PREFIX)
    notice = {"noticeId": "n-32", "productId": 3, "eventType": 32, "notifyMs": int(time.time() * 1000),
              "payload": {"cname": sample.cname, "uid": "1", "sid": sample.sid, "sequence": 0,
                          "serviceType": 0, "details": {"msgName": "uploaded", "status": 0}}}  # fmt: skip
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(notice))
    log = tmp_path / "worker.log"
    argv = [sys.executable, "-m", "pipeline", "-v", "worker", "--queue", queue, "--endpoint-url",
            s3_bucket.endpoint, "--recordings", f"s3://{bucket}/{PREFIX}", "--av-file-type", "hls,mp4",
            "--wait", "1", "--pending-delay", "1", "--visibility", "30", "--idle-exit", "8"]  # fmt: skip
    worker = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log.open("wb"), env=dict(os.environ))
    report_key = f"{PREFIX}{sample.sid}_{sample.cname}.report.json"
    try:
        wait_until(lambda: "slices still coming" in log.read_text(), seconds=60, what="the wait", logs=[log])
        # (the playlists' own storage events, which know nothing of the backup, may have failed it meanwhile)
        [late] = sorted(held.iterdir())
        client.put_object(Bucket=bucket, Key=PREFIX + late.name, Body=late.read_bytes())
        sqs.send_message(QueueUrl=queue, MessageBody=s3_event(bucket, PREFIX + late.name))

        def done() -> bool:
            if report_key not in objects(s3_bucket):
                return False
            return (
                json.loads(client.get_object(Bucket=bucket, Key=report_key)["Body"].read())["status"] == "ok"
            )

        wait_until(done, seconds=90, what="the report", logs=[log])
        worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    report = json.loads(client.get_object(Bucket=bucket, Key=report_key)["Body"].read())
    assert report["status"] == "ok"
    assert [o["key"] for o in report["outputs"]] == [f"{PREFIX}{sample.sid}_{sample.cname}_0.mp4"]
    dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    assert not dead.get("Messages"), log.read_text()[-3000:]


def test_waiting_does_not_use_up_the_queues_receive_count(s3_bucket, ffmpeg_exe, tmp_path):
    """An unfinished recording, ``maxReceiveCount`` 3, ``--pending-delay 1``: the job waits many more
    times than three without reaching the dead-letter queue; ``--max-pending-age`` is what ends it."""
    sqs = boto3.client("sqs", endpoint_url=s3_bucket.endpoint, region_name="us-east-1")
    name = s3_bucket.name[-20:]
    dlq = sqs.create_queue(QueueName=f"dlq-wait-{name}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})
    queue = sqs.create_queue(QueueName=f"jobs-wait-{name}", Attributes={"RedrivePolicy": redrive})["QueueUrl"]
    root = tmp_path / "live"
    write_sample(root, ffmpeg=ffmpeg_exe, seconds=4, slice_seconds=2, cname="live", defect="no-endlist")
    s3_bucket.upload_directory(root, prefix=PREFIX)
    [playlist] = root.glob("*.m3u8")
    sqs.send_message(QueueUrl=queue, MessageBody=s3_event(s3_bucket.name, PREFIX + playlist.name))
    log = tmp_path / "worker.log"
    argv = [sys.executable, "-m", "pipeline", "-v", "worker", "--queue", queue, "--endpoint-url",
            s3_bucket.endpoint, "--wait", "1", "--pending-delay", "1", "--visibility", "30",
            "--max-pending-age", "25", "--idle-exit", "4"]  # fmt: skip
    worker = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log.open("wb"), env=dict(os.environ))
    try:
        wait_until(
            lambda: log.read_text().count("still recording") >= 5, seconds=60, what="waits", logs=[log]
        )
        dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        assert not dead.get("Messages"), "waiting used up the receive count"
        worker.wait(timeout=60)  # the wait ends at --max-pending-age, then the worker goes idle and exits
    finally:
        if worker.poll() is None:
            worker.kill()
    text = log.read_text()
    assert "recpipe stopped waiting" in text
    dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    assert len(dead.get("Messages", [])) == 1
    for url in (queue, dlq):
        sqs.delete_queue(QueueUrl=url)
