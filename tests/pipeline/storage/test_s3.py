"""S3Storage specifics: every botocore error mapping, streaming retries, multipart uploads, the client."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3.session
import botocore.utils
import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.response import StreamingBody
from botocore.stub import Stubber
from s3transfer.manager import TransferConfig
from urllib3.exceptions import ProtocolError

from pipeline.model.exceptions import ConfigError, ObjectNotFound, StorageError
from pipeline.storage import S3Storage
from pipeline.storage.s3 import (
    MULTIPART_THRESHOLD,
    ShortReadError,
    make_s3_client,
    parse_timestamp,
    translate_error,
)

if TYPE_CHECKING:
    from tests.conftest import S3Bucket

pytestmark = pytest.mark.usefixtures("aws_environment")

MiB = 1024 * 1024


def client_error(code: str, status: int, *, operation: str = "GetObject") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} happened"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        operation,
    )


@pytest.mark.parametrize(
    ("err", "not_found"),
    [
        pytest.param(client_error("NoSuchKey", 404), True, id="NoSuchKey"),
        pytest.param(client_error("404", 404, operation="HeadObject"), True, id="404-head"),
        pytest.param(client_error("NotFound", 404), True, id="NotFound"),
        pytest.param(client_error("NoSuchBucket", 404), True, id="NoSuchBucket"),
        pytest.param(client_error("AccessDenied", 403), False, id="AccessDenied"),
        pytest.param(client_error("403", 403, operation="HeadObject"), False, id="403-head"),
        pytest.param(client_error("InternalError", 500), False, id="InternalError"),
        pytest.param(ClientError({}, "GetObject"), False, id="empty-response"),
        pytest.param(NoCredentialsError(), False, id="NoCredentials"),
        pytest.param(
            EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), False, id="EndpointConnection"
        ),
        pytest.param(ReadTimeoutError(endpoint_url="http://x"), False, id="ReadTimeout"),
    ],
)
def test_every_botocore_error_is_translated(err: Exception, not_found: bool) -> None:
    translated = translate_error(err, bucket="bkt", key="a/b.ts", action="get")
    assert isinstance(translated, StorageError)
    assert isinstance(translated, ObjectNotFound) is not_found
    assert translated.key == "a/b.ts"
    assert "s3://bkt" in str(translated)


def test_missing_credentials_message_says_what_to_set() -> None:
    message = str(translate_error(NoCredentialsError(), bucket="b", key=None, action="list"))
    assert "AWS_ACCESS_KEY_ID" in message
    assert "AWS_PROFILE" in message


# --- against the moto server ---------------------------------------------------------------------------


@pytest.mark.integration
def test_missing_bucket_is_object_not_found_everywhere(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    storage = S3Storage(s3_bucket.client, f"{s3_bucket.name}-absent")
    operations = [
        lambda: storage.stat("a.ts"),  # HeadObject: bare 404
        lambda: storage.read_bytes("a.ts", max_bytes=10),  # GetObject: NoSuchBucket
        lambda: storage.get("a.ts", tmp_path / "a.ts"),
        lambda: list(storage.list("")),  # ListObjectsV2: NoSuchBucket
        lambda: storage.put_bytes(b"x", "a.ts"),
    ]
    for operation in operations:
        with pytest.raises(ObjectNotFound):
            operation()
    assert not storage.exists("a.ts")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.integration
def test_missing_key_is_object_not_found(s3_bucket: S3Bucket) -> None:
    storage = S3Storage(s3_bucket.client, s3_bucket.name)
    with pytest.raises(ObjectNotFound, match="NoSuchKey"):
        storage.read_bytes("nope.ts", max_bytes=10)
    with pytest.raises(ObjectNotFound, match="404"):
        storage.stat("nope.ts")


@pytest.mark.integration
def test_etags_are_unquoted_and_consistent(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    storage = S3Storage(s3_bucket.client, s3_bucket.name)
    put = storage.put_bytes(b"payload", "k.ts")
    raw = s3_bucket.client.head_object(Bucket=s3_bucket.name, Key="k.ts")["ETag"]
    assert raw.startswith('"')
    assert put.etag == raw.strip('"')
    assert [i.etag for i in storage.list("")] == [put.etag]
    assert storage.get("k.ts", tmp_path / "k.ts").etag == put.etag


@pytest.mark.integration
def test_folder_markers_are_not_listed(s3_bucket: S3Bucket) -> None:
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="rec/", Body=b"")
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="rec/a.ts", Body=b"a")
    storage = S3Storage(s3_bucket.client, s3_bucket.name)
    assert [i.key for i in storage.list("")] == ["rec/a.ts"]


@pytest.mark.integration
def test_list_pages_through_many_objects(s3_bucket: S3Bucket) -> None:
    storage = S3Storage(s3_bucket.client, s3_bucket.name, page_size=2)
    keys = [f"rec/seg{i:02d}.ts" for i in range(7)]
    for key in reversed(keys):
        storage.put_bytes(b"", key)
    storage.put_bytes(b"", "other/x.ts")
    assert [i.key for i in storage.list("rec/")] == keys


@pytest.mark.parametrize(
    "value",
    [
        "2026-03-02T14:00:09.600Z",
        "2026-03-02T14:00:09Z",
        "2026-03-02T14:00:09.6Z",
        "2026-03-02T14:00:09.123456Z",
        "1999-12-31T23:59:59.999Z",
        "2024-02-29T00:00:00.000Z",
    ],
)
def test_s3_timestamps_are_read_as_botocore_reads_them(value: str) -> None:
    parsed = parse_timestamp(value)
    assert parsed == botocore.utils.parse_timestamp(value)
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        "Mon, 02 Mar 2026 14:00:09 GMT",  # an HTTP date, as in Last-Modified headers
        "2026-03-02T14:00:09.1234567Z",  # more digits than a datetime keeps
        "2026-03-02T14:00:09+01:00",
        "2026-03-02 14:00:09Z",
        "1772460009",
        1772460009,
        1772460009.5,
    ],
)
def test_other_timestamps_are_left_to_botocore(value: str | float) -> None:
    assert parse_timestamp(value) == botocore.utils.parse_timestamp(value)


@pytest.mark.parametrize("value", ["", "yesterday", "2026-13-02T14:00:09Z", "2026-02-30T14:00:09.000Z"])
def test_bad_timestamps_fail_as_botocore_fails(value: str) -> None:
    with pytest.raises(ValueError, match="Invalid timestamp") as theirs:
        botocore.utils.parse_timestamp(value)
    with pytest.raises(ValueError, match="Invalid timestamp") as ours:
        parse_timestamp(value)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.integration
def test_listed_and_headed_timestamps_are_the_stores_own(s3_bucket: S3Bucket) -> None:
    client = make_s3_client(endpoint_url=s3_bucket.endpoint)
    plain = boto3.session.Session().client("s3", endpoint_url=s3_bucket.endpoint)
    for key in ("rec/a.ts", "rec/b.ts"):
        client.put_object(Bucket=s3_bucket.name, Key=key, Body=b"x")
    listed = client.list_objects_v2(Bucket=s3_bucket.name, Prefix="rec/")["Contents"]
    reference = plain.list_objects_v2(Bucket=s3_bucket.name, Prefix="rec/")["Contents"]
    assert [o["LastModified"] for o in listed] == [o["LastModified"] for o in reference]
    assert all(o["LastModified"].tzinfo is UTC for o in listed)  # read by recpipe's parser, not dateutil
    head = client.head_object(Bucket=s3_bucket.name, Key="rec/a.ts")["LastModified"]
    assert head == plain.head_object(Bucket=s3_bucket.name, Key="rec/a.ts")["LastModified"]
    assert abs(head - listed[0]["LastModified"]).total_seconds() < 1
    assert head <= datetime.now(UTC)


@pytest.mark.integration
def test_large_put_goes_multipart_and_completes(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    storage = S3Storage(s3_bucket.client, s3_bucket.name, transfer_config=config)
    src = tmp_path / "big.mp4"
    payload = bytes(range(256)) * (6 * MiB // 256)
    src.write_bytes(payload)
    info = storage.put(src, "out/big.mp4")
    assert info.size == len(payload)
    assert info.etag.endswith("-2")  # two parts
    assert storage.read_bytes("out/big.mp4", max_bytes=len(payload)) == payload
    uploads = s3_bucket.client.list_multipart_uploads(Bucket=s3_bucket.name)
    assert uploads.get("Uploads", []) == []


@pytest.mark.integration
def test_a_default_put_goes_multipart_from_16_mib(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    storage = S3Storage(s3_bucket.client, s3_bucket.name)
    small, large = tmp_path / "small.mp4", tmp_path / "large.mp4"
    small.write_bytes(b"s" * (MULTIPART_THRESHOLD - 1))
    large.write_bytes(b"l" * MULTIPART_THRESHOLD)
    assert "-" not in storage.put(small, "out/small.mp4").etag  # one PutObject
    assert storage.put(large, "out/large.mp4").etag.endswith("-2")  # 8 MiB parts (s3transfer's)
    assert storage.read_bytes("out/large.mp4", max_bytes=MULTIPART_THRESHOLD) == large.read_bytes()


def test_a_client_is_made_without_boto3_or_s3transfer() -> None:
    """Every S3 run makes a client: boto3's session would import boto3 and s3transfer for helpers
    nothing calls (30–35 ms at every start); ``put`` imports s3transfer when it is used."""
    code = (
        "import sys\n"
        "from pipeline.storage.s3 import S3Storage, make_s3_client\n"
        "client = make_s3_client(endpoint_url='http://127.0.0.1:9', region='us-east-1', access_key='k',"
        " secret_key='s')\n"
        "S3Storage(client, 'bucket')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 's3transfer', 'botocore'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['botocore']"


class Messages(logging.Handler):
    """Every message a logger emits, whatever other tests did to the logging tree (``propagate``)."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        self._logger = logging.getLogger(name)

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self) -> list[str]:
        self._level = self._logger.level
        self._logger.setLevel(logging.DEBUG)
        self._logger.addHandler(self)
        return self.messages

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)


def test_unreachable_endpoint_is_a_storage_error(tmp_path: Path) -> None:
    client = make_s3_client(
        endpoint_url="http://127.0.0.1:9", region="us-east-1", access_key="k", secret_key="s", max_retries=0
    )
    storage = S3Storage(client, "bucket")
    operations = [
        lambda: storage.stat("a.ts"),
        lambda: storage.read_bytes("a.ts", max_bytes=10),
        lambda: storage.get("a.ts", tmp_path / "a.ts"),
        lambda: list(storage.list("")),
        lambda: storage.put_bytes(b"x", "a.ts"),
    ]
    with Messages("pipeline.storage") as messages:
        for operation in operations:
            with pytest.raises(StorageError, match="cannot connect") as err:
                operation()
            assert not isinstance(err.value, ObjectNotFound)
            assert isinstance(err.value.__cause__, EndpointConnectionError)
            assert "Signature" not in str(err.value)  # a direct read's presigned URL is a credential
    assert list(tmp_path.iterdir()) == []
    assert any("direct GET" in m for m in messages)  # the direct read gave way to boto3
    assert not [m for m in messages if "Signature" in m or "X-Amz" in m]


def test_no_credentials_is_a_storage_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    storage = S3Storage(make_s3_client(endpoint_url="http://127.0.0.1:9", region="us-east-1"), "bucket")
    for operation in (lambda: storage.stat("a.ts"), lambda: storage.read_bytes("a.ts", max_bytes=10)):
        with pytest.raises(StorageError, match="no S3 credentials"):
            operation()


def test_invalid_endpoint_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="S3 client"):
        make_s3_client(endpoint_url="not a url")


def test_client_config_follows_the_style_guide() -> None:
    client = make_s3_client(
        endpoint_url="http://127.0.0.1:9", region="us-east-1", access_key="k", secret_key="s"
    )
    config = client.meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": 6}  # 5 retries after the first
    assert config.max_pool_connections == 32
    assert config.s3 == {"addressing_style": "path"}
    assert config.signature_version == "s3v4"  # presigned URLs too


# --- failures a server cannot produce: botocore's Stubber -----------------------------------------------
# These test boto3's GetObject path (``get``, and ``read_bytes`` where a direct read gives way to it): the
# Stubber answers boto3's calls, not requests sent on the connection pool, so direct reads are off here.


class BrokenStream(io.RawIOBase):
    """A raw HTTP body that yields ``data`` and then fails the way urllib3 does on a reset socket."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._data.read(size)
        if not chunk:
            raise ProtocolError("Connection broken", ConnectionResetError(104, "Connection reset by peer"))
        return chunk


def get_response(body: Any, *, length: int) -> dict[str, Any]:
    return {"Body": body, "ContentLength": length, "ETag": '"abc"'}


def broken(data: bytes, *, length: int) -> dict[str, Any]:
    return get_response(StreamingBody(BrokenStream(data), length), length=length)


def short(data: bytes, *, length: int) -> dict[str, Any]:
    return get_response(StreamingBody(io.BytesIO(data), length), length=length)


def good(data: bytes) -> dict[str, Any]:
    return get_response(StreamingBody(io.BytesIO(data), len(data)), length=len(data))


def lying(data: bytes, *, length: int) -> dict[str, Any]:
    """A body whose own length matches, but ContentLength announced more."""
    return get_response(StreamingBody(io.BytesIO(data), len(data)), length=length)


@pytest.fixture(scope="module")
def offline_client() -> Any:
    return make_s3_client(endpoint_url=None, region="us-east-1", access_key="k", secret_key="s")


@pytest.fixture
def stubbed(offline_client: Any) -> Any:
    client = offline_client
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


PARAMS = {"Bucket": "bkt", "Key": "seg.ts"}


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(lambda: broken(b"0123", length=10), id="reset-mid-stream"),
        pytest.param(lambda: short(b"0123", length=10), id="short-body"),
        pytest.param(lambda: lying(b"0123", length=10), id="content-length-mismatch"),
    ],
)
def test_get_retries_stream_errors_then_succeeds(
    stubbed: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, failure: Any
) -> None:
    client, stubber = stubbed
    stubber.add_response("get_object", failure(), PARAMS)
    stubber.add_response("get_object", failure(), PARAMS)
    stubber.add_response("get_object", good(b"0123456789"), PARAMS)
    dest = tmp_path / "seg.ts"
    with caplog.at_level(logging.WARNING, logger="pipeline.storage.s3"):
        info = S3Storage(client, "bkt").get("seg.ts", dest)
    assert dest.read_bytes() == b"0123456789"
    assert info.size == 10
    assert info.etag == "abc"
    assert [p.name for p in tmp_path.iterdir()] == ["seg.ts"]
    assert len(caplog.records) == 2


@pytest.mark.parametrize(
    ("failure", "last_error"),
    [
        pytest.param(lambda: broken(b"0123", length=10), ResponseStreamingError, id="reset-mid-stream"),
        pytest.param(lambda: short(b"0123", length=10), IncompleteReadError, id="short-body"),
        pytest.param(lambda: lying(b"0123", length=10), ShortReadError, id="content-length-mismatch"),
    ],
)
def test_get_gives_up_after_three_attempts_with_the_last_error(
    stubbed: Any, tmp_path: Path, failure: Any, last_error: type[Exception]
) -> None:
    client, stubber = stubbed
    responses = [failure() for _ in range(3)]
    for response in responses:
        stubber.add_response("get_object", response, PARAMS)
    dest = tmp_path / "seg.ts"
    dest.write_bytes(b"old")
    with pytest.raises(StorageError, match="after 3 attempts") as err:
        S3Storage(client, "bkt").get("seg.ts", dest)
    assert isinstance(err.value.__cause__, last_error)
    assert err.value.key == "seg.ts"
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["seg.ts"]


def test_read_bytes_retries_a_broken_stream(stubbed: Any) -> None:
    client, stubber = stubbed
    stubber.add_response("get_object", broken(b"01", length=4), PARAMS)
    stubber.add_response("get_object", good(b"0123"), PARAMS)
    assert S3Storage(client, "bkt", direct_reads=False).read_bytes("seg.ts", max_bytes=4) == b"0123"


def test_read_bytes_checks_the_length_before_reading(stubbed: Any) -> None:
    client, stubber = stubbed
    body = StreamingBody(BrokenStream(b""), 10**9)  # reading it would fail
    stubber.add_response("get_object", get_response(body, length=10**9), PARAMS)
    with pytest.raises(StorageError, match="limit"):
        S3Storage(client, "bkt", direct_reads=False).read_bytes("seg.ts", max_bytes=1000)


def test_read_attempts_are_configurable(stubbed: Any) -> None:
    client, stubber = stubbed
    stubber.add_response("get_object", broken(b"", length=4), PARAMS)
    with pytest.raises(StorageError, match="after 1 attempts"):
        S3Storage(client, "bkt", read_attempts=1, direct_reads=False).read_bytes("seg.ts", max_bytes=10)


def test_client_errors_are_not_retried_by_us(stubbed: Any, tmp_path: Path) -> None:
    client, stubber = stubbed
    stubber.add_client_error("get_object", "AccessDenied", "denied", 403, expected_params=PARAMS)
    with pytest.raises(StorageError, match="AccessDenied") as err:
        S3Storage(client, "bkt").get("seg.ts", tmp_path / "seg.ts")
    assert not isinstance(err.value, ObjectNotFound)


def _uploads(s3_bucket: S3Bucket) -> list[Any]:
    return s3_bucket.client.list_multipart_uploads(Bucket=s3_bucket.name).get("Uploads", [])


def test_upload_parts_in_any_order_then_complete(s3_bucket: S3Bucket) -> None:
    store = S3Storage(s3_bucket.client, s3_bucket.name)
    upload = store.begin_upload("out/a.mp4")
    first, second, last = b"a" * (5 * MiB), b"b" * (5 * MiB), b"tail"
    upload.put_part(3, last)
    upload.put_part(2, second)
    assert not store.exists("out/a.mp4")
    upload.put_part(1, first)
    info = upload.complete()
    assert (info.key, info.size, info.etag.endswith("-3")) == ("out/a.mp4", 10 * MiB + 4, True)
    assert store.read_bytes("out/a.mp4", max_bytes=11 * MiB) == first + second + last
    assert _uploads(s3_bucket) == []
    upload.abort()  # after completing: nothing to do, the object stays
    assert store.exists("out/a.mp4")
    with pytest.raises(StorageError, match="completed"):
        upload.put_part(4, b"late")


def test_aborted_upload_leaves_nothing(s3_bucket: S3Bucket) -> None:
    store = S3Storage(s3_bucket.client, s3_bucket.name)
    upload = store.begin_upload("out/b.mp4")
    upload.put_part(1, b"z" * MiB)
    assert len(_uploads(s3_bucket)) == 1
    upload.abort()
    upload.abort()
    assert _uploads(s3_bucket) == []
    assert not store.exists("out/b.mp4")
    with pytest.raises(StorageError, match="aborted"):
        upload.complete()


def test_a_failed_part_fails_complete_and_abort_still_cleans_up(s3_bucket: S3Bucket) -> None:
    store = S3Storage(s3_bucket.client, s3_bucket.name)
    upload = store.begin_upload("out/c.mp4")
    upload.put_part(1, b"small first part")
    upload.put_part(2, b"last")
    with pytest.raises(StorageError, match="EntityTooSmall"):  # S3: all parts but the last >= 5 MiB
        upload.complete()
    upload.abort()
    assert _uploads(s3_bucket) == []
    assert not store.exists("out/c.mp4")
