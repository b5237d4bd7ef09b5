"""AWS Signature Version 4 in query-string form (a presigned URL's ``X-Amz-*`` parameters), for GETs.

botocore presigns a URL in ~0.4 ms of CPU (its whole request pipeline, endpoint rules included); the
signature itself is two SHA-256 hashes and five HMACs, a few microseconds. ``s3_direct`` signs here only
after checking, on the first URL of a run, that this code gives the very signature botocore gave; the
algorithm is AWS's "Authenticating Requests: Using Query Parameters".
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
"""What S3 expects as the payload hash of a presigned URL."""


class Credentials(NamedTuple):
    """An access key, its secret and, for temporary credentials, the session token."""

    access_key: str
    secret_key: str
    token: str | None = None


def uri_encode(text: str) -> str:
    """Percent-encode every byte but the unreserved characters (``A-Z a-z 0-9 - _ . ~``)."""
    return quote(text, safe="-_.~")


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """The key derived for one day (``YYYYMMDD``), region and service."""
    key = ("AWS4" + secret_key).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.digest(key, part.encode(), "sha256")
    return key


def presigned_query(
    *,
    method: str,
    host: str,
    path: str,
    credentials: Credentials,
    region: str,
    amz_date: str,
    expires: int,
    headers: Mapping[str, str] | None = None,
    service: str = "s3",
    key: bytes | None = None,
) -> str:
    """The query string of a presigned URL (its parameters, ``X-Amz-Signature`` last).

    :param host: the Host header as the request sends it (a port only when it is not the default one).
    :param path: the URL's path, already percent-encoded as it is sent (S3 does not encode it again).
    :param amz_date: when it is signed, ``YYYYMMDDTHHMMSSZ`` (UTC).
    :param headers: other headers the request sends and signs (lower-case names), besides Host.
    :param key: ``signing_key`` for this date, region and service, when the caller keeps it.
    """
    date = amz_date[:8]
    scope = f"{date}/{region}/{service}/aws4_request"
    signed = {"host": host, **{name.lower(): value.strip() for name, value in (headers or {}).items()}}
    names = sorted(signed)
    params = {
        "X-Amz-Algorithm": ALGORITHM,
        "X-Amz-Credential": f"{credentials.access_key}/{scope}",
        "X-Amz-Date": amz_date,
        "X-Amz-Expires": str(expires),
        "X-Amz-SignedHeaders": ";".join(names),
    }
    if credentials.token:
        params["X-Amz-Security-Token"] = credentials.token
    query = "&".join(f"{uri_encode(n)}={uri_encode(v)}" for n, v in sorted(params.items()))
    canonical = "\n".join(
        (
            method,
            path,
            query,
            "".join(f"{name}:{signed[name]}\n" for name in names),
            ";".join(names),
            UNSIGNED_PAYLOAD,
        )
    )
    to_sign = f"{ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = key or signing_key(credentials.secret_key, date, region, service)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{query}&X-Amz-Signature={signature}"
