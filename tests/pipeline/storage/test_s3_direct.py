"""Direct whole-object reads (presigned URLs on the client's connection pool), against the moto server
and, for failures, the fault proxy in front of it: what they answer themselves, where boto3 takes over."""

from __future__ import annotations

import base64
import hashlib
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import FlexibleChecksumError

from pipeline.model.exceptions import ObjectNotFound, ObjectTooLarge
from pipeline.storage import S3Storage
from pipeline.storage.s3 import make_s3_client
from pipeline.storage.s3_direct import DirectReads, check_checksum
from tests.faults import FaultPlan, FaultProxy

if TYPE_CHECKING:
    from tests.conftest import S3Bucket

pytestmark = pytest.mark.usefixtures("aws_environment")

DATA = bytes(range(256)) * 4096  # 1 MiB


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def storage_through(endpoint: str, bucket: str, *, checksums: bool = False) -> S3Storage:
    """A storage like recpipe's; ``checksums`` as towards AWS (response checksums validated)."""
    client = make_s3_client(endpoint_url=endpoint, region="us-east-1")
    if checksums:
        client.meta.config.response_checksum_validation = "when_supported"
    return S3Storage(client, bucket)


def gets(plan: FaultPlan) -> list[str]:
    return [path for method, path in plan.requests if method == "GET"]


def test_reads_go_direct_and_are_the_object(s3_bucket: S3Bucket) -> None:
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="rec/a b+c.ts", Body=DATA)
    plan = FaultPlan(rate=0.0)
    with FaultProxy(s3_bucket.endpoint, plan) as proxy:
        storage = storage_through(proxy.url, s3_bucket.name)
        assert storage.read_bytes("rec/a b+c.ts", max_bytes=len(DATA)) == DATA
    [path] = gets(plan)
    assert "X-Amz-Signature=" in path
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in path
    assert storage.retries == 0


def test_the_client_has_a_pool_to_lend() -> None:
    """If a botocore upgrade moves the client's connection pool, reads would quietly all go through boto3."""
    client = make_s3_client(endpoint_url="http://127.0.0.1:9", region="us-east-1")
    assert DirectReads(client, "bucket", on_retry=lambda n: None).usable


@pytest.mark.parametrize(("bucket_exists", "what"), [(True, "key"), (False, "bucket")])
def test_not_found_is_answered_directly(s3_bucket: S3Bucket, bucket_exists: bool, what: str) -> None:
    plan = FaultPlan(rate=0.0)
    bucket = s3_bucket.name if bucket_exists else s3_bucket.name + "-none"
    with FaultProxy(s3_bucket.endpoint, plan) as proxy:
        storage = storage_through(proxy.url, bucket)
        with pytest.raises(ObjectNotFound, match=f"no such {what}") as err:
            storage.read_bytes("rec/none.ts", max_bytes=10)
    assert err.value.key == "rec/none.ts"
    assert len(gets(plan)) == 1  # not asked again through boto3
    assert storage.retries == 0


def test_too_large_is_refused_from_the_length(s3_bucket: S3Bucket) -> None:
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="big.ts", Body=DATA)
    storage = storage_through(s3_bucket.endpoint, s3_bucket.name)
    with pytest.raises(ObjectTooLarge, match=f"{len(DATA)} bytes"):
        storage.read_bytes("big.ts", max_bytes=len(DATA) - 1)


@pytest.mark.parametrize("fault", ["500", "503", "reset", "stall"])
def test_faults_are_survived_and_counted(s3_bucket: S3Bucket, fault: str) -> None:
    """Every first GET faulted: 5xx gives way to boto3 (which retries with backoff), a dropped body is
    fetched again; the bytes are the object's and the retries are counted."""
    keys = [f"rec/{n}.ts" for n in range(6)]
    for key in keys:
        s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=key, Body=key.encode() * 50_000)
    plan = FaultPlan(rate=1.0, max_in_a_row=1, kinds=(fault,), stall_s=0.05)
    with FaultProxy(s3_bucket.endpoint, plan) as proxy:
        storage = storage_through(proxy.url, s3_bucket.name)
        for key in keys:
            assert storage.read_bytes(key, max_bytes=10**7) == key.encode() * 50_000
    assert plan.faults[fault] == len(keys)
    assert storage.retries == (0 if fault == "stall" else len(keys))


def test_a_permanent_fault_ends_in_boto3s_error(s3_bucket: S3Bucket) -> None:
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="a.ts", Body=b"x")
    with FaultProxy(s3_bucket.endpoint, FaultPlan(permanent=True)) as proxy:
        client = make_s3_client(endpoint_url=proxy.url, region="us-east-1", max_retries=1)
        storage = S3Storage(client, s3_bucket.name)
        with pytest.raises(Exception, match="SlowDown") as err:
            storage.read_bytes("a.ts", max_bytes=10)
    assert "Signature" not in str(err.value)
    assert storage.retries == 2  # the direct attempt, then boto3's one retry


def test_a_corrupted_body_is_caught_by_its_checksum_and_fetched_again(s3_bucket: S3Bucket) -> None:
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="a.ts", Body=DATA, ChecksumAlgorithm="CRC32")
    plan = FaultPlan(rate=1.0, max_in_a_row=1, kinds=("corrupt",))
    with FaultProxy(s3_bucket.endpoint, plan) as proxy:
        storage = storage_through(proxy.url, s3_bucket.name, checksums=True)
        assert storage.read_bytes("a.ts", max_bytes=len(DATA)) == DATA
    assert plan.faults["corrupt"] == 1
    assert storage.retries == 1


def test_without_checksum_validation_nothing_is_asked_for(s3_bucket: S3Bucket) -> None:
    """Towards other stores than AWS (``when_required``) no checksum mode is requested, as with boto3."""
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="a.ts", Body=DATA, ChecksumAlgorithm="CRC32")
    plan = FaultPlan(rate=0.0)
    with FaultProxy(s3_bucket.endpoint, plan) as proxy:
        storage_through(proxy.url, s3_bucket.name).read_bytes("a.ts", max_bytes=len(DATA))
        storage_through(proxy.url, s3_bucket.name, checksums=True).read_bytes("a.ts", max_bytes=len(DATA))
    plain, checked = gets(plan)
    assert "checksum" not in plain.lower()
    assert "x-amz-checksum-mode" in checked.lower()  # signed as a header


@pytest.mark.parametrize(
    ("headers", "checked"),
    [
        ({"x-amz-checksum-crc32": b64(zlib.crc32(DATA).to_bytes(4, "big"))}, "crc32"),
        ({"x-amz-checksum-sha256": b64(hashlib.sha256(DATA).digest())}, "sha256"),
        ({"x-amz-checksum-sha1": b64(hashlib.sha1(DATA).digest())}, "sha1"),
        ({"x-amz-checksum-crc32": "AAAAAA==-3"}, None),  # composite, of the parts: skipped
        ({}, None),
    ],
)
def test_check_checksum(headers: dict[str, str], checked: str | None) -> None:
    assert check_checksum(DATA, headers) == checked


def test_check_checksum_rejects_a_mismatch_and_prefers_crcs() -> None:
    good_sha = b64(hashlib.sha256(DATA).digest())
    with pytest.raises(FlexibleChecksumError, match="crc32"):
        check_checksum(DATA, {"x-amz-checksum-crc32": "AAAAAA==", "x-amz-checksum-sha256": good_sha})


class ChunkedToPresigned(BaseHTTPRequestHandler):
    """Answers a presigned GET with a chunked body (no Content-Length), a signed one with a plain body."""

    protocol_version = "HTTP/1.1"
    body = b"0123456789"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        presigned = "X-Amz-Signature=" in self.path
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        self.send_response(200)
        if presigned:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(self.body), self.body))
        else:
            self.send_header("Content-Length", str(len(self.body)))
            self.send_header("ETag", '"abc"')
            self.end_headers()
            self.wfile.write(self.body)


def test_a_body_without_a_length_is_left_to_boto3() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), ChunkedToPresigned)
    server.paths = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        storage = storage_through(f"http://127.0.0.1:{server.server_address[1]}", "bucket")
        assert storage.read_bytes("a.ts", max_bytes=100) == ChunkedToPresigned.body
    finally:
        server.shutdown()
        server.server_close()
    presigned, signed = server.paths  # type: ignore[attr-defined]
    assert "X-Amz-Signature=" in presigned
    assert "X-Amz-Signature=" not in signed
    assert storage.retries == 0  # not a failure: only an answer boto3 reads better
