"""Whole-object reads through presigned URLs, sent on a bare HTTP connection or the S3 client's own pool.

A fetch is hundreds of small GetObject requests (an hour of recording: 375 slices of ~0.7 MB). Through
boto3 each one costs ~1 ms of CPU beyond its bytes (a dozen events, a request built and signed, every
response header parsed into a typed dict, the Last-Modified date through dateutil). Here the same
GetObject is signed as a presigned URL (Signature V4, query-string form: botocore's own signer and
endpoint resolution for the first, and the same signature computed directly for the rest, ``presign``) and
sent

- on keep-alive ``http.client`` connections of our own (``pipeline.storage.keepalive``), with the TLS
  certificates, timeouts and socket options the client's session would use, when nothing else stands
  in the way (``bare_origin``: no proxy, no client certificate, certificates verified): urllib3's and
  botocore's layers cost as much CPU again as ``http.client`` itself;
- else on the client's own connection pool (its session), proxies and all.

Only the answer we expect is handled here:

- 200 with a Content-Length: the body, its length checked against it and, where the client validates
  response checksums (AWS: ``response_checksum_validation=when_supported``), its full-object checksum;
- 404: ``ObjectNotFound``.

Anything else — a redirect to another region, 403, throttling, a 5xx, a connection that cannot be
made — is answered with ``None``: the caller then asks boto3's own GetObject, which parses the error,
retries with backoff and translates it (``pipeline.storage.s3``). A transient failure here is counted as
one retry (a request sent again on a new connection because the idle one it went on had been closed by
the server is not a failure, and not counted: ``keepalive``); a refusal or a redirect makes the next URL
botocore's again (``presign``). Body errors (a connection dropped mid-body, a short body, a checksum
mismatch) raise the stream errors the caller already fetches again for.

The signed URL is a credential: it is never logged, and errors raised from here never carry it.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import logging
import os
import re
import ssl
import threading
import zlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import urlsplit

from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError, FlexibleChecksumError
from botocore.httpsession import get_cert_path
from urllib3.exceptions import HTTPError as Urllib3Error

from pipeline.model.exceptions import ObjectNotFound, ObjectTooLarge
from pipeline.storage.keepalive import ConnectionPool, Origin
from pipeline.storage.presign import Presigner

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

URL_LIFETIME_S = 900
"""How long a presigned URL is valid; each is used at once, for one request."""
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""Answers boto3's standard retry mode sends again: the direct attempt counts as a retry."""
_IDENTITY = {"User-Agent": "recpipe (direct GetObject)"}
"""Who asks, in the store's access logs (not signed)."""
_ERROR_BODY_BYTES = 16 * 1024
_ERROR_CODE = re.compile(rb"<Code>([A-Za-z0-9.]{1,64})</Code>")


class ShortReadError(Exception):
    """A body ended before the length the server announced."""

    def __init__(self, *, received: int, expected: int) -> None:
        super().__init__(f"received {received} of {expected} bytes")


class BrokenBodyError(Exception):
    """The connection failed while a body was read on a bare connection (a reset, a timeout, TLS)."""


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


def bare_origin(client: S3Client, session: Any, url: str) -> Origin | None:
    """Where ``url`` (presigned) can be sent on a bare connection, made as the client's ``session`` would
    make it: its certificate bundle, timeouts and socket options. None where the session must send it
    itself: a proxy for the URL, a client certificate, certificate checks turned off, another scheme, or a
    session that does not show these settings (another botocore)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    proxies = getattr(session, "_proxy_config", None)
    if proxies is None or proxies.proxy_url_for(url) or getattr(session, "_cert_file", True) is not None:
        return None
    options = getattr(session, "_socket_options", None)
    verify = getattr(session, "_verify", None)
    if not isinstance(options, list) or not isinstance(verify, (bool, str)):
        return None
    context = None
    if parts.scheme == "https":
        if verify is False:
            return None
        bundle = verify if isinstance(verify, str) else get_cert_path(True)  # certifi's, as botocore's
        if bundle is None:
            return None
        try:
            context = _tls_context(bundle)
        except (OSError, ValueError):  # a missing or unreadable bundle: botocore reports it, in its words
            return None
    config = client.meta.config
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return Origin(
        parts.scheme,
        parts.hostname,
        port,
        ssl_context=context,
        connect_timeout=getattr(config, "connect_timeout", 60),
        read_timeout=getattr(config, "read_timeout", 60),
        socket_options=tuple(options),
    )


def _tls_context(bundle: str) -> ssl.SSLContext:
    """Certificates checked against ``bundle`` only (a file, or a directory of hashed ones), hostnames
    checked, TLS 1.2 at least: what botocore asks of urllib3."""
    if os.path.isdir(bundle):
        context = ssl.create_default_context(capath=bundle)
    else:
        context = ssl.create_default_context(cafile=bundle)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class _Answer(Protocol):
    """A response whose body has not been read, from either transport."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def read(self, amount: int | None = None) -> bytes:
        """The body (or its first ``amount`` bytes); stream errors when the connection fails."""
        ...

    def close(self) -> None:
        """Done with it: the connection goes back to its pool if the body was read whole."""
        ...


class _SessionAnswer:
    """An answer from the client's session (urllib3 underneath: its errors are stream errors already)."""

    def __init__(self, response: Any) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return int(self._response.status_code)

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers  # type: ignore[no-any-return]

    def read(self, amount: int | None = None) -> bytes:
        return self._response.raw.read(amount)  # type: ignore[no-any-return]

    def close(self) -> None:
        self._response.raw.close()  # after a complete body the connection is back in the pool already


class _BareAnswer:
    """An answer on a bare connection; ``http.client``'s and the socket's errors become stream errors."""

    def __init__(self, response: http.client.HTTPResponse, finish: Callable[[], None]) -> None:
        self._response = response
        self._finish = finish

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        return cast("Mapping[str, str]", self._response.headers)  # an email Message: get() ignores case

    def read(self, amount: int | None = None) -> bytes:
        try:
            return self._response.read(amount)
        except http.client.IncompleteRead as err:
            expected = len(err.partial) + (err.expected or 0)
            raise ShortReadError(received=len(err.partial), expected=expected) from err
        except (OSError, http.client.HTTPException) as err:
            raise BrokenBodyError(f"connection broken while reading: {type(err).__name__}: {err}") from err

    def close(self) -> None:
        self._finish()


class DirectReads:
    """``read(key, max_bytes)`` for one bucket through one client; ``usable`` False when this botocore's
    client has no session to borrow (then every read is left to boto3)."""

    def __init__(self, client: S3Client, bucket: str, *, on_retry: Callable[[int], None]) -> None:
        self._client = client
        self._bucket = bucket
        self._on_retry = on_retry
        session = getattr(getattr(client, "_endpoint", None), "http_session", None)
        self._session: Any = session if callable(getattr(session, "send", None)) else None
        validation = getattr(client.meta.config, "response_checksum_validation", None)
        self._checksums = validation == "when_supported"
        # the checksum mode is signed as a header by Signature V4
        self._headers = {"x-amz-checksum-mode": "ENABLED"} if self._checksums else {}
        self._presigner = Presigner(client, bucket, lifetime=URL_LIFETIME_S)
        self._pools: dict[str, ConnectionPool | None] = {}
        self._pools_lock = threading.Lock()

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
        url = self._presigner.url(key, self._headers)
        answer = self._send(url, self._headers, key=key)
        if answer is None:
            return None
        try:
            status = answer.status
            if status == 200 and str(answer.headers.get("content-length", "")).isdigit():
                return self._body(answer, key=key, max_bytes=max_bytes)
            if status == 404:
                raise self._not_found(answer, key=key)
            if status in TRANSIENT_STATUSES:
                self._on_retry(1)
            else:  # a redirect to the bucket's region, 400, 403: the next URL is botocore's again
                self._presigner.forget()
            log.debug("s3://%s/%s: direct GET answered %d; through boto3", self._bucket, key, status)
            return None
        finally:
            answer.close()

    def warm(self, count: int, *, key: str) -> None:
        """Open about ``count`` bare connections ahead of the reads (``ConnectionPool.warm``), where reads
        go on them; ``key`` stands for the keys to come (they all go to one origin). Its URL is
        botocore's own, signed only to learn where reads are sent, and never sent."""
        if not self.usable:
            return
        try:
            url = self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=URL_LIFETIME_S
            )
            pool = self.pool(url)
        except BotoCoreError as err:  # no credentials, say: the first read reports it
            log.debug("s3://%s: no connections opened ahead: %s", self._bucket, type(err).__name__)
            return
        if pool is not None:
            pool.warm(count)

    def pool(self, url: str) -> ConnectionPool | None:
        """The bare connections for ``url``'s origin (decided once per origin), None: the session's."""
        origin_key = urlsplit(url).netloc
        if origin_key in self._pools:
            return self._pools[origin_key]
        with self._pools_lock:
            if origin_key not in self._pools:
                origin = bare_origin(self._client, self._session, url)
                limit = int(getattr(self._client.meta.config, "max_pool_connections", 10) or 10)
                self._pools[origin_key] = ConnectionPool(origin, max_idle=limit) if origin else None
            return self._pools[origin_key]

    def _send(self, url: str, headers: Mapping[str, str], *, key: str) -> _Answer | None:
        """The answer's status and headers, or None (counted as a retry) when no answer came."""
        try:
            pool = self.pool(url)
            if pool is None:
                request = AWSRequest(method="GET", url=url, headers=dict(headers)).prepare()
                request.stream_output = True
                return _SessionAnswer(self._session.send(request))
            parts = urlsplit(url)
            exchange = pool.request("GET", f"{parts.path}?{parts.query}", {**headers, **_IDENTITY})
            return _BareAnswer(exchange.response, exchange.finish)
        except (BotoCoreError, OSError, http.client.HTTPException) as err:
            # boto3 tries again; the error's message could carry the signed URL
            log.debug("s3://%s/%s: direct GET: %s; through boto3", self._bucket, key, type(err).__name__)
            self._on_retry(1)
            return None

    def _body(self, answer: _Answer, *, key: str, max_bytes: int) -> bytes:
        length = int(answer.headers["content-length"])
        if length > max_bytes:
            raise ObjectTooLarge(f"object is {length} bytes, over the {max_bytes}-byte limit", key=key)
        data = answer.read()
        if len(data) != length:
            raise ShortReadError(received=len(data), expected=length)
        if self._checksums:
            check_checksum(data, answer.headers)
        return data

    def _not_found(self, answer: _Answer, *, key: str) -> ObjectNotFound:
        try:
            body = answer.read(_ERROR_BODY_BYTES)
        except (Urllib3Error, BrokenBodyError, ShortReadError):
            body = b""
        found = _ERROR_CODE.search(body)
        code = found.group(1).decode() if found else "404"
        what = "bucket" if code == "NoSuchBucket" else "key"
        return ObjectNotFound(f"s3://{self._bucket}: no such {what} ({code})", key=key)
