"""``recpipe serve`` over real HTTP on 127.0.0.1: signatures checked (good, bad, missing, replayed),
jobs queued to SQS on moto or run on the spot."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest

from pipeline.fleet.serve import signature_ok

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("aws_environment")]

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
SECRET = b"s3cret-from-agora"
SID = "665ba1974b715d7e0faf7b5a3c199acf"


def test_signatures_match_agoras_published_examples():
    """Agora's documentation signs this body with the secret "secret" (both algorithms)."""
    body = (
        b'{"eventMs":1560408533119,"eventType":10,"noticeId":"4eb720f0-8da7-11e9-a43e-53f411c2761f",'
        b'"notifyMs":1560408533119,"payload":{"a":"1","b":2},"productId":1}'
    )
    v2 = "6d3320c60b11101395b7fc8f9068748808a0aa1bfa064438e39d1bc2c7d74d99"
    v1 = "033c62f40f687675f17f0f41f91a40c71c0f134c"
    assert signature_ok(body, {"agora-signature-v2": v2}, secret=b"secret")
    assert signature_ok(body, {"agora-signature": v1}, secret=b"secret")
    assert signature_ok(body, {"agora-signature-v2": v2.upper()}, secret=b"secret")
    assert not signature_ok(body + b" ", {"agora-signature-v2": v2}, secret=b"secret")
    assert not signature_ok(body, {"agora-signature-v2": v2}, secret=b"Secret")
    assert not signature_ok(body, {}, secret=b"secret")


def notification(notice: str, *, sid: str = SID, event: int = 31) -> bytes:
    payload = {"cname": "demo-room", "uid": "1", "sid": sid, "sequence": 0, "sendts": 1, "serviceType": 2,
               "details": {"msgName": "uploaded", "status": 0}}  # fmt: skip
    doc = {"noticeId": notice, "productId": 3, "eventType": event, "notifyMs": 1, "payload": payload}
    return json.dumps(doc).encode()


def post(
    url: str, body: bytes, *, v2: bool = True, secret: bytes = SECRET, sign: bool = True
) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if sign:
        name, algo = ("Agora-Signature-V2", hashlib.sha256) if v2 else ("Agora-Signature", hashlib.sha1)
        headers[name] = hmac.new(secret, body, algo).hexdigest()
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def announce_oversized(url: str) -> int:
    """The status for a request announcing a 2 MiB body. Only the headers are sent: the server answers
    before reading a body that large, and a client still writing it could see the connection close."""
    host, _, port = url.removeprefix("http://").partition(":")
    head = (
        f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {2 * 1024 * 1024}\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(head.encode())
        status_line = conn.makefile("rb").readline().decode()
    return int(status_line.split()[1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(*args: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    argv = [sys.executable, "-m", "pipeline", "-v", "serve", "--listen", f"127.0.0.1:{port}", *args]
    env = {**os.environ, "RECPIPE_NCS_SECRET": SECRET.decode()}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1).close()
            return proc, url
        except OSError:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)


def test_notifications_become_queued_jobs_only_when_signed(s3_bucket, tmp_path):
    sqs = boto3.client("sqs", endpoint_url=s3_bucket.endpoint, region_name="us-east-1")
    queue = sqs.create_queue(QueueName=f"serve-{s3_bucket.name[-12:]}")["QueueUrl"]
    args = ["--recordings", f"s3://{s3_bucket.name}/rec/", "--queue", queue,
            "--endpoint-url", s3_bucket.endpoint, "--av-file-type", "hls,mp4"]  # fmt: skip
    proc, url = start_serve(*args, log=tmp_path / "serve.log")
    try:
        assert post(url, notification("n-1")) == (200, {"status": "accepted", "jobs": 1})
        assert post(url, notification("n-1")) == (200, {"status": "duplicate", "noticeId": "n-1"})  # replayed
        assert post(url, notification("n-2"))[1]["status"] == "ignored"  # same sid and event: redundant copy
        assert post(url, notification("n-3", sid="b" * 32), v2=False) == (
            200,
            {"status": "accepted", "jobs": 1},
        )
        assert post(url, notification("n-4", sid="c" * 32), secret=b"wrong")[0] == 401
        assert post(url, notification("n-5", sid="d" * 32), sign=False)[0] == 401
        assert post(url, notification("n-6", sid="e" * 32, event=33))[1]["status"] == "ignored"
        assert post(url, b"not json")[0] == 400
        assert announce_oversized(url) == 413
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    jobs = sorted((json.loads(m["Body"])["sid"], json.loads(m["Body"])["location"]) for m in got)
    assert jobs == [(SID, f"s3://{s3_bucket.name}/rec/"), ("b" * 32, f"s3://{s3_bucket.name}/rec/")]
    assert all(json.loads(m["Body"])["av_file_type"] == "hls,mp4" for m in got)
    assert SECRET.decode() not in (tmp_path / "serve.log").read_text()


@pytest.mark.ffmpeg
def test_without_a_queue_the_job_runs_here(tmp_path):
    shutil.copytree(SAMPLE, tmp_path / "store")
    profile = str(tmp_path / "store" / "start_request.json")
    proc, url = start_serve(
        "--recordings", str(tmp_path / "store"), "--profile", profile, log=tmp_path / "serve.log"
    )
    try:
        assert post(url, notification("local-1"))[0] == 200
        report = tmp_path / "store" / "recordings" / f"{SID}_demo-room.report.json"
        deadline = time.monotonic() + 60
        while not report.exists():
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert json.loads(report.read_text())["status"] == "ok"
    assert list((tmp_path / "store" / "recordings").glob("*_0.mp4"))


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def test_health_says_whether_jobs_can_be_handed_on_and_metrics_count_requests(s3_bucket, tmp_path):
    sqs = boto3.client("sqs", endpoint_url=s3_bucket.endpoint, region_name="us-east-1")
    queue = sqs.create_queue(QueueName=f"ready-{s3_bucket.name[-12:]}")["QueueUrl"]
    port, metrics_port = free_port(), free_port()
    argv = [sys.executable, "-m", "pipeline", "--log-format", "json", "serve",
            "--listen", f"127.0.0.1:{port}", "--recordings", f"s3://{s3_bucket.name}/rec/", "--queue", queue,
            "--endpoint-url", s3_bucket.endpoint, "--metrics-port", str(metrics_port)]  # fmt: skip
    log = tmp_path / "serve.log"
    env = {**os.environ, "RECPIPE_NCS_SECRET": SECRET.decode()}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if get(url + "/livez")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert get(url + "/healthz") == (200, {"status": "ok", "ready": True})
        sqs.delete_queue(QueueUrl=queue)  # the queue goes away: nothing can be handed on
        status, body = get(url + "/healthz")
        assert (status, body["ready"]) == (503, False)
        assert "queue" in body["reason"]
        assert post(url, notification("m-1"))[0] == 503
        assert post(url, notification("m-2", sid="f" * 32), secret=b"wrong")[0] == 401
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            exposed = response.read().decode()
        assert 'recpipe_notifications_total{result="http-401"} 1.0' in exposed
        assert 'recpipe_notifications_total{result="http-503"} 1.0' in exposed
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    [listening] = [line for line in lines if line["message"].startswith("listening on")]
    assert listening["level"] == "info"  # the normal start-up line, without -v, at the level it is
    assert all(line["level"] in ("info", "warning", "error") for line in lines)
    assert SECRET.decode() not in log.read_text()
