"""Presigned GetObject URLs for one bucket, botocore's first and then, once they are proven the same, ours.

botocore builds each presigned URL through its request pipeline (events, endpoint rules, the signer):
~0.4 ms of CPU, 0.15 cpu-s for an hour's 375 slices. The URL of every key of a bucket has the same shape
— scheme, host, the path up to the key, region, lifetime, signed headers — so the first URL is botocore's,
and ``sigv4`` is asked to sign the same request at the same instant with the same credentials: only if it
gives botocore's signature are the following URLs signed here (with the client's credentials of the
moment, so refreshed ones are used), else every URL stays botocore's. A URL refused or redirected
(``forget``, by ``s3_direct``) makes the next one botocore's again and its shape is learnt anew: a
bucket in another region than the client was told is found out by boto3's GetObject, and botocore's
next URL goes to that region. A URL this gets wrong anyway is refused by the store (403) and the read
left to boto3; it cannot read another object.

The URLs and the credentials are secrets: nothing here logs them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qsl, quote, urlsplit

from pipeline.storage import sigv4

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

_PARAMS = frozenset(
    {
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Security-Token",
        "X-Amz-Signature",
    }
)
"""A Signature V4 presigned URL's parameters: a URL with any other is left to botocore."""


def key_path(key: str) -> str:
    """An object key as botocore writes it in a URL's path."""
    return quote(key, safe="/~")


_DEFAULT_PORTS = {"http": 80, "https": 443}


def host_header(url: str) -> str:
    """The Host header a request of ``url`` sends and Signature V4 signs: the host in lower case
    (an IPv6 address in brackets), and the port unless it is the scheme's default."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    return host if port is None or port == _DEFAULT_PORTS.get(parts.scheme) else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class Shape:
    """What every presigned GET of a bucket shares; the key and the time complete it."""

    scheme: str
    host: str
    """As the URL has it."""
    signed_host: str
    """As the request's Host header has it: lower case, no default port."""
    prefix: str
    """The path before the key (``/bucket/`` path-style, ``/`` virtual-host style)."""
    region: str
    service: str
    expires: int


class Signed(NamedTuple):
    """What a presigned URL says it was signed with, and its signature."""

    access_key: str
    token: str | None
    amz_date: str
    signature: str


def shape_of(url: str, *, key: str, headers: Mapping[str, str]) -> tuple[Shape, Signed]:
    """The shape of botocore's presigned GET of ``key``, and what it was signed with.

    :raises ValueError: not a Signature V4 presigned URL of that key that this module can sign alike.
    """
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    if not params.keys() <= _PARAMS or params.get("X-Amz-Algorithm") != sigv4.ALGORITHM:
        raise ValueError("not a Signature V4 presigned URL with the usual parameters")
    access_key, date, region, service, terminator = params["X-Amz-Credential"].split("/")
    amz_date = params["X-Amz-Date"]
    if terminator != "aws4_request" or amz_date[:8] != date:
        raise ValueError("an unexpected credential scope")
    if params["X-Amz-SignedHeaders"] != ";".join(sorted({"host", *(n.lower() for n in headers)})):
        raise ValueError("other headers signed than the request sends")
    path = key_path(key)
    if not parts.path.endswith(path) or not parts.netloc or parts.query.count("&") + 1 != len(params):
        raise ValueError("the key is not where it was expected in the URL")
    shape = Shape(
        scheme=parts.scheme,
        host=parts.netloc,
        signed_host=host_header(url),
        prefix=parts.path[: -len(path)],
        region=region,
        service=service,
        expires=int(params["X-Amz-Expires"]),
    )
    return shape, Signed(access_key, params.get("X-Amz-Security-Token"), amz_date, params["X-Amz-Signature"])


class Presigner:
    """``url(key, headers)``: a presigned GetObject URL of ``bucket``'s ``key``, valid ``lifetime`` seconds.

    ``headers`` are the ones the request will send and must be signed (``x-amz-checksum-mode``); the
    same for every key. Thread-safe.
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        *,
        lifetime: int,
        clock: Callable[[], time.struct_time] = time.gmtime,
    ) -> None:
        """:param clock: the UTC time a URL is signed at (the tests fix it)."""
        self._client = client
        self._clock = clock
        self._bucket = bucket
        self._lifetime = lifetime
        self._lock = threading.Lock()
        self._shape: Shape | None = None
        self._decided = False
        self._key: tuple[tuple[str, str, str, str], bytes] = (("", "", "", ""), b"")
        """((secret key, date, region, service), signing key) of the last URL signed here."""

    @property
    def signs_itself(self) -> bool:
        """Whether URLs after the first are signed here."""
        return self._shape is not None

    def url(self, key: str, headers: Mapping[str, str]) -> str:
        """The URL; botocore's until the first one has shown how to sign like it."""
        shape = self._shape
        if shape is not None:
            credentials = self._credentials()
            if credentials is not None:
                return self._sign(
                    shape, key, headers, credentials, time.strftime("%Y%m%dT%H%M%SZ", self._clock())
                )
        url = self._botocore_url(key, headers)
        if not self._decided:
            with self._lock:
                if not self._decided:
                    self._shape = self._learn(url, key=key, headers=headers)
                    self._decided = True
        return url

    def forget(self) -> None:
        """A URL was refused or sent elsewhere (a bucket in another region than the client's, found out
        by boto3 since): the next URL is botocore's, and its shape is learnt again."""
        with self._lock:
            self._shape = None
            self._decided = False

    def _botocore_url(self, key: str, headers: Mapping[str, str]) -> str:
        params: dict[str, str] = {"Bucket": self._bucket, "Key": key}
        if headers.get("x-amz-checksum-mode"):
            params["ChecksumMode"] = headers["x-amz-checksum-mode"]
        return self._client.generate_presigned_url("get_object", Params=params, ExpiresIn=self._lifetime)

    def _credentials(self) -> sigv4.Credentials | None:
        """The client's credentials of the moment (refreshed ones included); None: it signs nothing."""
        source: Any = getattr(getattr(self._client, "_request_signer", None), "_credentials", None)
        frozen = source.get_frozen_credentials() if source is not None else None
        if frozen is None or not frozen.access_key or not frozen.secret_key:
            return None
        return sigv4.Credentials(frozen.access_key, frozen.secret_key, frozen.token or None)

    def _learn(self, url: str, *, key: str, headers: Mapping[str, str]) -> Shape | None:
        """``url``'s shape if signing its request here gives its signature; None otherwise."""
        credentials = self._credentials()
        try:
            shape, signed = shape_of(url, key=key, headers=headers)
        except (ValueError, KeyError) as err:
            log.debug("s3://%s: presigned URLs stay botocore's: %s", self._bucket, err)
            return None
        if credentials is None or (credentials.access_key, credentials.token) != signed[:2]:
            log.debug("s3://%s: presigned URLs stay botocore's: credentials not readable", self._bucket)
            return None
        ours = self._sign(shape, key, headers, credentials, signed.amz_date)
        if not ours.endswith(f"&X-Amz-Signature={signed.signature}"):
            log.debug("s3://%s: presigned URLs stay botocore's: signatures differ", self._bucket)
            return None
        return shape

    def _sign(
        self,
        shape: Shape,
        key: str,
        headers: Mapping[str, str],
        credentials: sigv4.Credentials,
        amz_date: str,
    ) -> str:
        path = shape.prefix + key_path(key)
        scope = (credentials.secret_key, amz_date[:8], shape.region, shape.service)
        cached, signing_key = self._key
        if cached != scope:
            signing_key = sigv4.signing_key(*scope)
            self._key = (scope, signing_key)
        query = sigv4.presigned_query(
            method="GET",
            host=shape.signed_host,
            path=path,
            credentials=credentials,
            region=shape.region,
            amz_date=amz_date,
            expires=shape.expires,
            headers=headers,
            service=shape.service,
            key=signing_key,
        )
        return f"{shape.scheme}://{shape.host}{path}?{query}"
