"""Whole-object reads through presigned URLs, sent on the S3 client's own connection pool.

A fetch is hundreds of small GetObject requests (an hour of recording: 375 slices of ~0.7 MB). Through
boto3 each one costs ~1 ms of CPU beyond its bytes (a dozen events, a request built and signed, every
response header parsed into a typed dict, the Last-Modified date through dateutil): ~0.3 of the ~1.0
CPU-seconds an hour's GETs take. Here the same GetObject is signed as a presigned URL (Signature V4,
query-string form, by botocore's own signer and endpoint resolution) and sent on the same connection
pool, with the same TLS verification, proxies and timeouts; only the answer we expect is handled here:

- 200 with a Content-Length: the body, its length checked against it and, where the client validates
  response checksums (AWS: ``response_checksum_validation=when_supported``), its full-object checksum;
- 404: ``ObjectNotFound``.

Anything else — a redirect to another region, 403, throttling, a 5xx, a connection that cannot be
made — is answered with ``None``: the caller then asks boto3's own GetObject, which parses the error,
retries with backoff and translates it (``pipeline.storage.s3``). A transient failure here is counted as
one retry. Body errors (a connection dropped mid-body, a short body, a checksum mismatch) raise the
stream errors the caller already fetches again for.

The signed URL is a credential: it is never logged, and errors raised from here never carry it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import zlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError, FlexibleChecksumError
from urllib3.exceptions import HTTPError as Urllib3Error

from pipeline.model.exceptions import ObjectNotFound, ObjectTooLarge

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

URL_LIFETIME_S = 900
"""How long a presigned URL is valid; each is used at once, for one request."""
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""Answers boto3's standard retry mode sends again: the direct attempt counts as a retry."""
_ERROR_BODY_BYTES = 16 * 1024
_ERROR_CODE = re.compile(rb"<Code>([A-Za-z0-9.]{1,64})</Code>")


class ShortReadError(Exception):
    """A body ended before the length the server announced."""

    def __init__(self, *, received: int, expected: int) -> None:
        super().__init__(f"received {received} of {expected} bytes")


def _crc32(data: bytes) -> bytes:
    return zlib.crc32(data).to_bytes(4, "big")


def _crt(name: str) -> Callable[[bytes], bytes] | None:
    """awscrt's implementation of a CRC (installed with ``boto3[crt]``), as big-endian bytes."""
    try:
        from awscrt import checksums  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError:
        return None
    function = getattr(checksums, name, None)
    if function is None:
        return None
    width = 8 if name == "crc64nvme" else 4
    return lambda data: int(function(data)).to_bytes(width, "big")


CHECKSUMS: dict[str, Callable[[bytes], bytes] | None] = {
    "crc64nvme": _crt("crc64nvme"),
    "crc32c": _crt("crc32c"),
    "crc32": _crc32,
    "sha1": lambda data: hashlib.sha1(data, usedforsecurity=False).digest(),
    "sha256": lambda data: hashlib.sha256(data).digest(),
}
"""S3's full-object checksums in botocore's order of preference; None where this machine cannot compute it
(botocore cannot either without awscrt, and skips it the same way)."""


def check_checksum(data: bytes, headers: Mapping[str, str]) -> str | None:
    """Verify ``data`` against the first full-object ``x-amz-checksum-*`` header that can be computed;
    the algorithm checked (None: nothing to check). Composite checksums of multipart objects
    (``<value>-<parts>``) are not of the whole body and are skipped, as botocore does.

    :raises FlexibleChecksumError: the body is not what the store holds.
    """
    for name, compute in CHECKSUMS.items():
        expected = headers.get(f"x-amz-checksum-{name}")
        if compute is None or not expected or "-" in expected:
            continue
        if base64.b64encode(compute(data)).decode() != expected:
            raise FlexibleChecksumError(error_msg=f"the body's {name} does not match the store's {expected}")
        return name
    return None


class DirectReads:
    """``read(key, max_bytes)`` for one bucket through one client; ``usable`` False when this botocore's
    client has no connection pool to borrow (then every read is left to boto3)."""

    def __init__(self, client: S3Client, bucket: str, *, on_retry: Callable[[int], None]) -> None:
        self._client = client
        self._bucket = bucket
        self._on_retry = on_retry
        session = getattr(getattr(client, "_endpoint", None), "http_session", None)
        self._session: Any = session if callable(getattr(session, "send", None)) else None
        validation = getattr(client.meta.config, "response_checksum_validation", None)
        self._checksums = validation == "when_supported"

    @property
    def usable(self) -> bool:
        """Whether reads go direct."""
        return self._session is not None

    def read(self, key: str, *, max_bytes: int) -> bytes | None:
        """The whole object, or None where boto3 must answer (see the module's docstring).

        :raises ObjectNotFound: 404.
        :raises ObjectTooLarge: Content-Length over ``max_bytes`` (the body is not read).
        """
        if not self.usable:
            return None
        params: dict[str, str] = {"Bucket": self._bucket, "Key": key}
        headers = {}
        if self._checksums:
            params["ChecksumMode"] = "ENABLED"
            headers["x-amz-checksum-mode"] = "ENABLED"  # signed as a header by Signature V4
        url = self._client.generate_presigned_url("get_object", Params=params, ExpiresIn=URL_LIFETIME_S)
        request = AWSRequest(method="GET", url=url, headers=headers).prepare()
        request.stream_output = True
        try:
            response = self._session.send(request)
        except BotoCoreError as err:  # boto3 tries again; its message would carry the signed URL
            log.debug("s3://%s/%s: direct GET: %s; through boto3", self._bucket, key, type(err).__name__)
            self._on_retry(1)
            return None
        raw = response.raw
        try:
            status = response.status_code
            if status == 200 and str(response.headers.get("content-length", "")).isdigit():
                return self._body(raw, response.headers, key=key, max_bytes=max_bytes)
            if status == 404:
                raise self._not_found(raw, key=key)
            if status in TRANSIENT_STATUSES:
                self._on_retry(1)
            log.debug("s3://%s/%s: direct GET answered %d; through boto3", self._bucket, key, status)
            return None
        finally:
            raw.close()  # after a complete body the connection is back in the pool already

    def _body(self, raw: Any, headers: Mapping[str, str], *, key: str, max_bytes: int) -> bytes:
        length = int(headers["content-length"])
        if length > max_bytes:
            raise ObjectTooLarge(f"object is {length} bytes, over the {max_bytes}-byte limit", key=key)
        data: bytes = raw.read()
        if len(data) != length:
            raise ShortReadError(received=len(data), expected=length)
        if self._checksums:
            check_checksum(data, headers)
        return data

    def _not_found(self, raw: Any, *, key: str) -> ObjectNotFound:
        try:
            body = raw.read(_ERROR_BODY_BYTES)
        except Urllib3Error:
            body = b""
        found = _ERROR_CODE.search(body)
        code = found.group(1).decode() if found else "404"
        what = "bucket" if code == "NoSuchBucket" else "key"
        return ObjectNotFound(f"s3://{self._bucket}: no such {what} ({code})", key=key)
