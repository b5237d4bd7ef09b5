"""``S3Storage``: a bucket on any S3-compatible store, through an injected S3 client (botocore's, as
boto3 makes them; ``make_s3_client`` makes one without boto3's session, see there).

This module and ``s3_direct`` (whole-object reads on the client's connections) are the only code that
imports boto3 or botocore, and ``translate_error`` is the one place botocore errors become recpipe
errors. botocore retries throttling, 5xx and connection errors itself (``Config(retries=...)``); we
add only a small bounded retry for errors while streaming a body, keeping the last one (like
s3transfer's ``GetObjectTask``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import botocore.session
import botocore.utils
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    FlexibleChecksumError,
    IncompleteReadError,
    NoCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from urllib3.exceptions import HTTPError as Urllib3Error

from pipeline.agora.vendors import AddressingStyle
from pipeline.model.exceptions import (
    BrokenConnection,
    ConfigError,
    ObjectNotFound,
    ObjectTooLarge,
    PreconditionFailed,
    StorageError,
)
from pipeline.storage.base import Metadata, ObjectInfo, exists_by_stat, posix_seconds, same_size
from pipeline.storage.local import temp_name
from pipeline.storage.parts import UPLOAD_WORKERS, PartUpload
from pipeline.storage.s3_direct import BrokenBodyError, DirectReads, ShortReadError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import GetObjectOutputTypeDef
    from s3transfer.manager import TransferConfig

log = logging.getLogger(__name__)

T = TypeVar("T")

NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchBucket"})
"""ClientError codes that mean "the key or its bucket does not exist"."""
PRECONDITION_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
"""A conditional request lost: the object exists, changed, or another writer was first."""

DEFAULT_READ_ATTEMPTS = 3
"""How often a body that fails while streaming is fetched, in all."""

MULTIPART_THRESHOLD = 16 * 1024 * 1024
"""``put`` uploads files of this size or more multipart; the object appears once the upload is completed."""
PUT_CONCURRENCY = 8
"""Parts ``put`` sends at once."""

_CHUNK = 1024 * 1024

_S3_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z", re.ASCII)
"""How S3 writes a timestamp in an XML body (every listed key's ``LastModified``): ISO 8601, UTC."""


def parse_timestamp(value: Any) -> datetime:
    """botocore's timestamp parser, with S3's XML form read by ``datetime.fromisoformat``.

    botocore reads every timestamp with dateutil's general parser, 0.08 ms each: listing an hour of
    slices (376 keys) took 0.042 cpu-s, 0.012 with this (a day's, 5,760 keys, ~0.45 s less), on the
    path to a run's first fetch. The same instant, timezone-aware, in UTC; any other form (an HTTP
    date in a header, epoch seconds) and anything that is not a date go to botocore's own parser."""
    if isinstance(value, str) and _S3_TIMESTAMP.fullmatch(value):
        with contextlib.suppress(ValueError):  # no such date (30 February): botocore says so its way
            return datetime.fromisoformat(value)
    return botocore.utils.parse_timestamp(value)


STREAM_ERRORS: tuple[type[Exception], ...] = (
    ConnectionError,
    Urllib3Error,
    BrokenConnection,
    TimeoutError,
    ReadTimeoutError,
    IncompleteReadError,
    ResponseStreamingError,
    FlexibleChecksumError,
    ShortReadError,
    BrokenBodyError,
)
"""Errors while reading a body that are worth fetching it again for."""


class RetryCounter:
    """Requests botocore sent again (throttling, 5xx, dropped connections), counted from the
    ``RetryAttempts`` of every response; a call that failed without any response counts its attempts."""

    def __init__(self, max_retries: int) -> None:
        self._lock = threading.Lock()
        self._max = max_retries
        self.count = 0

    def after_call(self, *, parsed: Mapping[str, Any] | None = None, **_: Any) -> None:
        """botocore's ``after-call`` event."""
        retries = int(((parsed or {}).get("ResponseMetadata") or {}).get("RetryAttempts", 0))
        if retries:
            self.add(retries)

    def after_call_error(self, **_: Any) -> None:
        """botocore's ``after-call-error`` event: every attempt failed without a response."""
        self.add(self._max)

    def add(self, n: int) -> None:
        """Count ``n`` more retries."""
        with self._lock:
            self.count += n


_COUNTERS: weakref.WeakKeyDictionary[Any, RetryCounter] = weakref.WeakKeyDictionary()


def retry_counter(client: S3Client) -> RetryCounter:
    """The retry counter of a client made by ``make_s3_client`` (a fresh one for any other client)."""
    counter = _COUNTERS.get(client)
    if counter is None:
        counter = _COUNTERS[client] = RetryCounter(0)
    return counter


def make_s3_client(
    *,
    endpoint_url: str | None,
    region: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    session_token: str | None = None,
    max_retries: int = 5,
    addressing_style: AddressingStyle | None = None,
) -> S3Client:
    """A thread-safe S3 client; credentials from boto3's standard chain unless both keys are given.

    Made by botocore's session itself, as boto3's session does, without boto3's: it would import boto3
    and s3transfer and add upload and download helpers nothing here calls, 30–35 ms more at the start of
    every run (0.13 instead of 0.16 s for the imports and the client, here).

    :param endpoint_url: an S3-compatible endpoint; None means AWS itself.
    :param region: the region requests are signed for; None: boto3's default.
    :param max_retries: botocore's ``retries.max_attempts``: retries after the first request (standard mode).
    :param addressing_style: ``virtual`` (``bucket.host/key``) or ``path`` (``host/bucket/key``). By
        default an ``endpoint_url`` is addressed path-style, as self-hosted stores expect, and AWS
        virtual-host style.
    """
    style = addressing_style or ("path" if endpoint_url else None)
    # Other stores than AWS reject botocore's default upload checksums (aws-chunked bodies with CRC
    # trailers): OSS, GCS and older self-hosted stores answer InvalidArgument or SignatureDoesNotMatch.
    checksums: Literal["when_supported", "when_required"] = (
        "when_required" if endpoint_url else "when_supported"
    )
    config = Config(
        # Signature V4 for presigned URLs too (``s3_direct``): botocore presigns S3 with V2 unless told.
        signature_version="s3v4",
        retries={"mode": "standard", "max_attempts": max_retries},
        max_pool_connections=32,
        s3={"addressing_style": style} if style else None,
        request_checksum_calculation=checksums,
        response_checksum_validation=checksums,
    )
    try:
        core = botocore.session.get_session()
        core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
        client: S3Client = core.create_client(  # type: ignore[assignment]  # S3's, typed by the stubs
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key or None,
            aws_secret_access_key=secret_key or None,
            aws_session_token=session_token or None,
            config=config,
        )
    except (BotoCoreError, ValueError) as err:
        raise ConfigError(f"cannot set up the S3 client: {err}") from err
    counter = _COUNTERS[client] = RetryCounter(max_retries)
    client.meta.events.register("after-call.s3", counter.after_call)
    client.meta.events.register("after-call-error.s3", counter.after_call_error)
    return client


def put_config() -> TransferConfig:
    """How ``put`` uploads a file unless told otherwise."""
    from s3transfer.manager import TransferConfig

    return TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, max_request_concurrency=PUT_CONCURRENCY)


def translate_error(err: Exception, *, bucket: str, key: str | None, action: str) -> StorageError:
    """The recpipe error for a botocore error: ``ObjectNotFound`` for the "not there" codes."""
    where = f"s3://{bucket}"
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = str(error.get("Code", "")) or str(status)
        message = str(error.get("Message", "")).strip()
        if code in NOT_FOUND_CODES:
            what = "bucket" if code == "NoSuchBucket" else "key"
            return ObjectNotFound(f"{where}: no such {what} ({code})", key=key)
        if code in PRECONDITION_CODES:
            return PreconditionFailed(f"{where}: {action}: the object is not as expected ({code})", key=key)
        detail = f"{code}: {message}" if message else code
        return StorageError(f"{where}: {action} failed: {detail}", key=key)
    if isinstance(err, NoCredentialsError):
        return StorageError(
            f"{where}: no S3 credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or AWS_PROFILE (boto3's standard chain)",
            key=key,
        )
    if isinstance(err, EndpointConnectionError):
        return StorageError(f"{where}: cannot connect to the S3 endpoint: {err}", key=key)
    return StorageError(f"{where}: {action} failed: {err}", key=key)


class S3Storage:
    """An object store in one S3 bucket."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        *,
        read_attempts: int = DEFAULT_READ_ATTEMPTS,
        transfer_config: TransferConfig | None = None,
        page_size: int = 1000,
        direct_reads: bool = True,
    ) -> None:
        """:param direct_reads: ``read_bytes`` through presigned URLs on the client's connection pool
        (``pipeline.storage.s3_direct``), boto3's GetObject only where that is not a clean answer.
        """
        if read_attempts < 1 or page_size < 1:
            raise ValueError("read_attempts and page_size must be at least 1")
        self._client = client
        self._bucket = bucket
        self._read_attempts = read_attempts
        self._transfer_config = transfer_config
        self._page_size = page_size
        counter = retry_counter(client)
        self._direct = DirectReads(client, bucket, on_retry=counter.add) if direct_reads else None

    def __repr__(self) -> str:
        return f"S3Storage({self.url!r})"

    @property
    def bucket(self) -> str:
        """The bucket name."""
        return self._bucket

    @property
    def client(self) -> S3Client:
        """The injected boto3 client."""
        return self._client

    @property
    def url(self) -> str:
        """``s3://bucket``."""
        return f"s3://{self._bucket}"

    @property
    def retries(self) -> int:
        """Requests sent again so far through this storage's client (botocore's and body re-reads)."""
        return retry_counter(self._client).count

    def prepare_reads(self, count: int, *, prefix: str) -> None:
        """Open about ``count`` connections for the reads under ``prefix`` about to come, on a thread of
        its own (``s3_direct.DirectReads.warm``): while the recording is listed, not after."""
        if self._direct is not None:  # any key stands for them: only its URL's origin is used
            warm = threading.Thread(target=self._direct.warm, args=(count,), kwargs={"key": prefix or "_"},
                                    name="recpipe-warm", daemon=True)  # fmt: skip
            warm.start()

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order; "folder" markers are skipped."""
        paginator = self._client.get_paginator("list_objects_v2")
        with self.translated("list", key=prefix):
            pages = paginator.paginate(
                Bucket=self._bucket, Prefix=prefix, PaginationConfig={"PageSize": self._page_size}
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    if not key.endswith("/"):
                        yield ObjectInfo(
                            key=key,
                            size=obj["Size"],
                            etag=_etag(obj["ETag"]),
                            modified=posix_seconds(obj.get("LastModified")),
                        )

    def stat(self, key: str) -> ObjectInfo:
        """The object's size and ETag; ``ObjectNotFound`` if absent."""
        with self.translated("head", key=key):
            head = self._client.head_object(Bucket=self._bucket, Key=key)
        return ObjectInfo(
            key=key,
            size=head["ContentLength"],
            etag=_etag(head["ETag"]),
            modified=posix_seconds(head.get("LastModified")),
        )

    def exists(self, key: str) -> bool:
        """Whether the key exists."""
        return exists_by_stat(self.stat, key)

    def read_bytes(self, key: str, *, max_bytes: int) -> bytes:
        """The whole object; ``StorageError`` if its length is over ``max_bytes`` (checked before reading)."""
        return self._retrying(key, lambda: self._read(key, max_bytes=max_bytes))

    def get(self, key: str, dest: Path) -> ObjectInfo:
        """Stream the object to a temporary file beside ``dest``, check its length, rename it into place."""
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StorageError(f"cannot create {dest.parent}: {err.strerror or err}", key=key) from err
        return self._retrying(key, lambda: self._download(key, dest))

    def read_range(self, key: str, *, offset: int, count: int) -> bytes:
        """One ranged GetObject (``Range: bytes=offset-end``)."""
        if count <= 0:
            return b""
        return self._retrying(key, lambda: self._read_range(key, offset=offset, count=count))

    def read_metadata(self, key: str) -> Metadata:
        """The object's user metadata (``x-amz-meta-*``), from a HeadObject."""
        with self.translated("head", key=key):
            head = self._client.head_object(Bucket=self._bucket, Key=key)
        return dict(head.get("Metadata", {}))

    def put(self, src: Path, key: str, *, metadata: Metadata | None = None) -> ObjectInfo:
        """Upload ``src``; large files go multipart, and the object appears only once completed."""
        from s3transfer.manager import TransferManager  # imported by the runs that put files

        try:
            size = src.stat().st_size
        except OSError as err:
            raise StorageError(f"cannot read {src}: {err.strerror or err}", key=key) from err
        try:
            with (
                self.translated("upload", key=key),
                TransferManager(self._client, self._transfer_config or put_config()) as m,
            ):
                extra = {"Metadata": dict(metadata)} if metadata else None
                m.upload(str(src), self._bucket, key, extra_args=extra).result()
        except OSError as err:
            raise StorageError(f"cannot upload {src}: {err.strerror or err}", key=key) from err
        return same_size(self.stat(key), sent=size)

    def put_bytes(self, data: bytes, key: str, *, metadata: Metadata | None = None) -> ObjectInfo:
        """Store ``data`` in one PutObject request."""
        with self.translated("put", key=key):
            response = self._client.put_object(
                Bucket=self._bucket, Key=key, Body=data, Metadata=dict(metadata or {})
            )
        return ObjectInfo(key=key, size=len(data), etag=_etag(response["ETag"]))

    def put_if(self, data: bytes, key: str, *, etag: str | None) -> ObjectInfo:
        """PutObject with ``If-None-Match: *`` (``etag`` None) or ``If-Match: etag``."""
        with self.translated("conditional put", key=key):
            if etag is None:
                response = self._client.put_object(Bucket=self._bucket, Key=key, Body=data, IfNoneMatch="*")
            else:
                response = self._client.put_object(
                    Bucket=self._bucket, Key=key, Body=data, IfMatch=f'"{etag}"'
                )
        return ObjectInfo(key=key, size=len(data), etag=_etag(response["ETag"]))

    def delete_if(self, key: str, *, etag: str) -> None:
        """DeleteObject with ``If-Match: etag``."""
        with self.translated("conditional delete", key=key):
            self._client.delete_object(Bucket=self._bucket, Key=key, IfMatch=f'"{etag}"')

    def discard_incomplete(self, prefix: str) -> int:
        """Abort every multipart upload to a key starting with ``prefix``."""
        paginator = self._client.get_paginator("list_multipart_uploads")
        aborted = 0
        with self.translated("list multipart uploads", key=prefix):
            for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    key, upload_id = upload["Key"], upload["UploadId"]
                    try:
                        self._client.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)
                    except ClientError as err:  # finished or aborted meanwhile
                        if err.response.get("Error", {}).get("Code") != "NoSuchUpload":
                            raise
                    log.info("%s/%s: aborted an unfinished upload left by an earlier run", self.url, key)
                    aborted += 1
        return aborted

    def begin_upload(self, key: str, *, metadata: Metadata | None = None) -> S3Upload:
        """Create a multipart upload for ``key``: parts go up in the background, the object appears on
        ``complete`` (CompleteMultipartUpload) and never if the upload is aborted."""
        with self.translated("create multipart upload", key=key):
            created = self._client.create_multipart_upload(
                Bucket=self._bucket, Key=key, Metadata=dict(metadata or {})
            )
        upload_id = created["UploadId"]
        return S3Upload(self, key=key, upload_id=upload_id)

    def _read_range(self, key: str, *, offset: int, count: int) -> bytes:
        """One attempt at a ranged read."""
        with self.translated("read", key=key):
            response = self._client.get_object(
                Bucket=self._bucket, Key=key, Range=f"bytes={offset}-{offset + count - 1}"
            )
        with contextlib.closing(response["Body"]) as body:
            data = body.read()
        if len(data) != response["ContentLength"]:
            raise ShortReadError(received=len(data), expected=response["ContentLength"])
        return data

    def _read(self, key: str, *, max_bytes: int) -> bytes:
        """One attempt at reading a whole, size-capped object: direct, else through boto3."""
        if self._direct is not None:
            data = self._direct.read(key, max_bytes=max_bytes)
            if data is not None:
                return data
        response = self._get_object(key)
        body, length = response["Body"], response["ContentLength"]
        with contextlib.closing(body):
            if length > max_bytes:
                raise ObjectTooLarge(f"object is {length} bytes, over the {max_bytes}-byte limit", key=key)
            data = body.read()
        if len(data) != length:
            raise ShortReadError(received=len(data), expected=length)
        return data

    def _download(self, key: str, dest: Path) -> ObjectInfo:
        """One attempt at streaming the object to ``dest``."""
        response = self._get_object(key)
        body, length = response["Body"], response["ContentLength"]
        tmp = dest.parent / temp_name(dest.name)
        try:
            with contextlib.closing(body), open(tmp, "xb") as out:
                for chunk in body.iter_chunks(_CHUNK):
                    out.write(chunk)
                received = out.tell()
            if received != length:
                raise ShortReadError(received=received, expected=length)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return ObjectInfo(key=key, size=length, etag=_etag(response["ETag"]))

    def _get_object(self, key: str) -> GetObjectOutputTypeDef:
        """The GetObject response; its body is not read yet."""
        with self.translated("get", key=key):
            return self._client.get_object(Bucket=self._bucket, Key=key)

    def _retrying(self, key: str, attempt: Callable[[], T]) -> T:
        """Run ``attempt`` again on stream errors, up to the configured attempts; keep the last error."""
        last: Exception | None = None
        for number in range(1, self._read_attempts + 1):
            try:
                return attempt()
            except STREAM_ERRORS as err:
                last = err
                if number < self._read_attempts:
                    retry_counter(self._client).add(1)
                attempts = self._read_attempts
                log.warning("%s/%s: read failed (attempt %d of %d): %s", self.url, key, number, attempts, err)
            except BotoCoreError as err:
                raise translate_error(err, bucket=self._bucket, key=key, action="read") from err
            except OSError as err:
                raise StorageError(f"cannot write the local copy: {err.strerror or err}", key=key) from err
        raise StorageError(
            f"{self.url}: reading failed after {self._read_attempts} attempts: {last}", key=key
        ) from last

    @contextlib.contextmanager
    def translated(self, action: str, *, key: str | None) -> Iterator[None]:
        """Turn botocore errors raised inside the block into recpipe errors."""
        try:
            yield
        except (ClientError, BotoCoreError) as err:
            raise translate_error(err, bucket=self._bucket, key=key, action=action) from err
        except Urllib3Error as err:  # a connection dropped while botocore read an error response
            raise BrokenConnection(f"{self.url}: {action} failed: connection broken: {err}", key=key) from err


def _etag(value: str) -> str:
    """The ETag without its quotes."""
    return value.strip('"')


class S3Upload(PartUpload):
    """One multipart upload: parts are UploadPart requests, CompleteMultipartUpload commits them."""

    def __init__(
        self, storage: S3Storage, *, key: str, upload_id: str, workers: int = UPLOAD_WORKERS
    ) -> None:
        super().__init__(key=key, workers=workers)
        self._storage = storage
        self._upload_id = upload_id

    def _send(self, number: int, data: bytes) -> str:
        with self._storage.translated("upload part", key=self._key):
            response = self._storage.client.upload_part(
                Bucket=self._storage.bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=data,
            )
        return response["ETag"]

    def _commit(self, parts: dict[int, str]) -> None:
        with self._storage.translated("complete multipart upload", key=self._key):
            self._storage.client.complete_multipart_upload(
                Bucket=self._storage.bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts.items()]},
            )

    def _drop(self) -> None:
        with (
            contextlib.suppress(StorageError),
            self._storage.translated("abort multipart upload", key=self._key),
        ):
            self._storage.client.abort_multipart_upload(
                Bucket=self._storage.bucket, Key=self._key, UploadId=self._upload_id
            )

    def _stat(self) -> ObjectInfo:
        return self._storage.stat(self._key)
