"""Direct whole-object reads (presigned URLs on the client's connection pool), against the moto server
and, for failures, the fault proxy in front of it: what they answer themselves, where boto3 takes over."""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import FlexibleChecksumError

from pipeline.model.exceptions import ObjectNotFound, ObjectTooLarge, StorageError
from pipeline.storage import S3Storage
from pipeline.storage.keepalive import ConnectionPool, Origin
from pipeline.storage.s3 import make_s3_client
from pipeline.storage.s3_direct import DirectReads, check_checksum
from tests.faults import FaultPlan, FaultProxy
from tests.tls import TlsFront

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


def presigned(client: Any, bucket: str, key: str) -> str:
    return str(client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}))


def read_thrice(endpoint: str, bucket: str) -> tuple[ConnectionPool, list[int]]:
    """Read ``a.ts`` (``DATA``) three times directly: the pool the reads went on, the retries counted."""
    client = make_s3_client(endpoint_url=endpoint, region="us-east-1")
    retries: list[int] = []
    reads = DirectReads(client, bucket, on_retry=retries.append)
    for _ in range(3):
        assert reads.read("a.ts", max_bytes=len(DATA)) == DATA
    pool = reads.pool(presigned(client, bucket, "a.ts"))
    assert pool is not None, "the reads went on the session's connections"
    return pool, retries


def test_reads_go_on_bare_connections(s3_bucket: S3Bucket) -> None:
    """recpipe's clients read on connections of their own, with the client's timeouts (if a botocore
    upgrade hid the session's settings, reads would quietly go through urllib3 again)."""
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="a.ts", Body=DATA)
    with FaultProxy(s3_bucket.endpoint, FaultPlan(rate=0.0)) as proxy:  # keeps connections open, as S3 does
        pool, retries = read_thrice(proxy.url, s3_bucket.name)
    assert pool.opened == 1
    port = int(proxy.url.rpartition(":")[2])
    nodelay = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # botocore's default socket option
    assert pool.origin == Origin("http", "127.0.0.1", port, None, 60, 60, (nodelay,))
    assert retries == []


def client_with(endpoint: str, *, verify: bool | str | None = None, **config: Any) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        verify=verify,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, **config),
    )


def origin_of(client: Any) -> Origin | None:
    pool = DirectReads(client, "bucket", on_retry=lambda n: None).pool(presigned(client, "bucket", "k"))
    return None if pool is None else pool.origin


@pytest.mark.parametrize(
    ("endpoint", "verify", "config", "bare"),
    [
        ("http://127.0.0.1:9", None, {}, True),
        ("http://127.0.0.1:9", None, {"proxies": {"http": "http://127.0.0.1:3128"}}, False),
        ("http://127.0.0.1:9", None, {"proxies": {"https": "http://127.0.0.1:3128"}}, True),  # not for http
        ("https://127.0.0.1:9", None, {"proxies": {"https": "http://127.0.0.1:3128"}}, False),
        ("https://127.0.0.1:9", None, {"client_cert": "/nonexistent/cert.pem"}, False),
        ("https://127.0.0.1:9", False, {}, False),  # certificates not checked: left to the session
        ("https://127.0.0.1:9", None, {}, True),
    ],
)
def test_bare_only_where_nothing_stands_between(
    endpoint: str, verify: bool | None, config: dict[str, Any], bare: bool
) -> None:
    assert (origin_of(client_with(endpoint, verify=verify, **config)) is not None) is bare


def test_proxies_from_the_environment_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    assert origin_of(client_with("http://127.0.0.1:9")) is None
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert origin_of(client_with("http://127.0.0.1:9")) is not None


def test_the_clients_timeouts_keepalive_and_certificates_are_carried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin = origin_of(
        client_with("http://127.0.0.1:9", connect_timeout=3, read_timeout=7, tcp_keepalive=True)
    )
    assert origin is not None
    assert (origin.connect_timeout, origin.read_timeout) == (3, 7)
    assert (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1) in origin.socket_options
    with TlsFront("http://127.0.0.1:9", tmp_path) as front:
        monkeypatch.setenv("AWS_CA_BUNDLE", str(front.authority))
        origin = origin_of(client_with("https://127.0.0.1:9"))
    assert origin is not None
    assert origin.ssl_context is not None
    assert origin.ssl_context.check_hostname
    [authority] = origin.ssl_context.get_ca_certs()
    assert dict(name[0] for name in authority["subject"])["commonName"] == "recpipe test authority"


def test_https_reads_trust_what_the_client_trusts(
    s3_bucket: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through TLS (in front of the fault proxy, which keeps connections open as S3 does): one handshake
    carries every read."""
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="a.ts", Body=DATA)
    with (
        FaultProxy(s3_bucket.endpoint, FaultPlan(rate=0.0)) as proxy,
        TlsFront(proxy.url, tmp_path) as front,
    ):
        monkeypatch.setenv("AWS_CA_BUNDLE", str(front.authority))
        pool, retries = read_thrice(front.url, s3_bucket.name)
        assert pool.origin.scheme == "https"
        assert pool.opened == front.connections == 1
        assert retries == []


def test_connections_for_the_reads_are_opened_ahead(
    s3_bucket: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``prepare_reads`` makes the handshakes (TCP and TLS) while nothing waits for them: the reads that
    follow, as many at once as were asked for, make none."""
    for n in range(4):
        s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=f"rec/{n}.ts", Body=DATA)
    with (
        FaultProxy(s3_bucket.endpoint, FaultPlan(rate=0.0)) as proxy,
        TlsFront(proxy.url, tmp_path) as front,
    ):
        monkeypatch.setenv("AWS_CA_BUNDLE", str(front.authority))
        storage = storage_through(front.url, s3_bucket.name)
        storage.prepare_reads(4, prefix="rec/")
        deadline = time.monotonic() + 10
        while front.connections < 4 or any(t.name.startswith("recpipe-") for t in threading.enumerate()):
            assert time.monotonic() < deadline, f"{front.connections} connections opened ahead"
            time.sleep(0.01)
        barrier = threading.Barrier(4)
        read: dict[int, bytes] = {}

        def work(n: int) -> None:
            barrier.wait()
            read[n] = storage.read_bytes(f"rec/{n}.ts", max_bytes=len(DATA))

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert read == {n: DATA for n in range(4)}
        assert front.connections == 4
        assert storage.retries == 0


def test_opening_ahead_without_credentials_leaves_the_error_to_the_reads(
    s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    storage = storage_through(s3_bucket.endpoint, s3_bucket.name)
    storage.prepare_reads(2, prefix="")
    deadline = time.monotonic() + 10
    while any(t.name == "recpipe-warm" for t in threading.enumerate()):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(StorageError, match="credentials"):
        storage.read_bytes("rec/0.ts", max_bytes=len(DATA))


def test_a_bundle_that_cannot_be_read_is_botocores_to_report(
    s3_bucket: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not taken for a local file error: the session sends the request, and botocore names the problem."""
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with TlsFront(s3_bucket.endpoint, tmp_path) as front:
        client = make_s3_client(endpoint_url=front.url, region="us-east-1", max_retries=0)
        reads = DirectReads(client, s3_bucket.name, on_retry=lambda n: None)
        assert reads.pool(presigned(client, s3_bucket.name, "a.ts")) is None
        with pytest.raises(StorageError) as err:
            S3Storage(client, s3_bucket.name).read_bytes("a.ts", max_bytes=10)
    assert "local copy" not in str(err.value)
    assert "SSL validation failed" in str(err.value)


def test_https_reads_refuse_a_certificate_the_client_does_not_trust(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    """Without AWS_CA_BUNDLE the client trusts certifi's authorities, not the test's: neither the bare
    connection nor boto3 reads a byte."""
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="a.ts", Body=DATA)
    with TlsFront(s3_bucket.endpoint, tmp_path) as front:
        client = make_s3_client(endpoint_url=front.url, region="us-east-1", max_retries=0)
        with pytest.raises(StorageError, match="certificate verify failed"):
            S3Storage(client, s3_bucket.name).read_bytes("a.ts", max_bytes=len(DATA))
    assert front.connections == 0


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


class RefusesPresigned(BaseHTTPRequestHandler):
    """Answers a presigned GET 403 (as S3 does a URL signed for the wrong region), a signed one 200."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        status, body = (403, b"<Error><Code>AccessDenied</Code></Error>")
        if "X-Amz-Signature=" not in self.path:
            status, body = 200, ChunkedToPresigned.body
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"abc"')
        self.end_headers()
        self.wfile.write(body)


def test_a_refused_url_makes_the_next_one_botocores() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), RefusesPresigned)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = make_s3_client(
            endpoint_url=f"http://127.0.0.1:{server.server_address[1]}", region="us-east-1"
        )
        botocore_urls: list[str] = []
        generate = client.generate_presigned_url

        def counted(*args: Any, **kwargs: Any) -> str:
            botocore_urls.append(generate(*args, **kwargs))
            return botocore_urls[-1]

        client.generate_presigned_url = counted  # type: ignore[method-assign]
        storage = S3Storage(client, "bucket")
        for n in range(3):
            assert storage.read_bytes(f"{n}.ts", max_bytes=100) == ChunkedToPresigned.body
    finally:
        server.shutdown()
        server.server_close()
    assert len(botocore_urls) == 3  # learnt, refused, forgotten: each read's URL botocore's
    assert storage.retries == 0  # a refusal is not a transient failure
