"""Presigned URLs signed here are botocore's, byte for byte in what is signed: botocore is the oracle,
at an instant fixed for both."""

from __future__ import annotations

import datetime
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import botocore.auth
import pytest
from botocore import UNSIGNED
from botocore.config import Config

from pipeline.storage.presign import Presigner

pytestmark = pytest.mark.usefixtures("aws_environment")

INSTANT = datetime.datetime(2026, 11, 26, 10, 15, 30)
KEYS = [
    "rec/sid_cname_20261126101530123.ts",
    "rec/a b+c.ts",
    "rec/ünïcode/ß.ts",
    "rec/odd~!*'();:@&=$,?#[]%.ts",
    "rec//double/./dots/../x.ts",
    "top.ts",
]


PATH_STYLE = {"signature_version": "s3v4", "s3": {"addressing_style": "path"}}


@pytest.fixture
def frozen_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *args, **kwargs: INSTANT)


def clock() -> time.struct_time:
    return INSTANT.timetuple()


def client(*, endpoint: str | None, region: str, token: str | None = None, **config: Any) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret/with+odd=chars",
        aws_session_token=token,
        config=Config(**config),
    )


def botocores(s3: Any, bucket: str, key: str, checksums: bool) -> str:
    params = {"Bucket": bucket, "Key": key} | ({"ChecksumMode": "ENABLED"} if checksums else {})
    return str(s3.generate_presigned_url("get_object", Params=params, ExpiresIn=900))


def same(ours: str, theirs: str) -> None:
    a, b = urlsplit(ours), urlsplit(theirs)
    assert (a.scheme, a.netloc, a.path) == (b.scheme, b.netloc, b.path)
    assert dict(parse_qsl(a.query, strict_parsing=True)) == dict(parse_qsl(b.query, strict_parsing=True))


@pytest.mark.usefixtures("frozen_botocore")
@pytest.mark.parametrize(
    ("endpoint", "region", "token", "config"),
    [
        (None, "us-east-1", None, {"signature_version": "s3v4"}),  # AWS, virtual-host style
        (None, "eu-central-1", "FwoGZXIvYXdzE+token/=", {"signature_version": "s3v4"}),
        (
            "http://127.0.0.1:9000",
            "us-east-1",
            None,
            {"signature_version": "s3v4", "s3": {"addressing_style": "path"}},
        ),
        ("https://oss-cn-hangzhou.aliyuncs.com", "cn-hangzhou", None, {"signature_version": "s3v4"}),
        ("https://storage.example:8443", "auto", "t", PATH_STYLE),
        ("https://Storage.Example:443", "us-east-1", None, PATH_STYLE),  # default port, capitals
        ("http://storage.example:80", "us-east-1", None, PATH_STYLE),
        ("http://[::1]:9000", "us-east-1", None, PATH_STYLE),
    ],
)
@pytest.mark.parametrize("checksums", [False, True])
def test_urls_are_botocores(
    endpoint: str | None, region: str, token: str | None, config: dict[str, Any], checksums: bool
) -> None:
    s3 = client(endpoint=endpoint, region=region, token=token, **config)
    headers = {"x-amz-checksum-mode": "ENABLED"} if checksums else {}
    presigner = Presigner(s3, "recordings-bucket", lifetime=900, clock=clock)
    for key in KEYS:
        same(presigner.url(key, headers), botocores(s3, "recordings-bucket", key, checksums))
    assert presigner.signs_itself


@pytest.mark.usefixtures("frozen_botocore")
def test_the_client_of_the_moment_signs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refreshed credentials (a new key and token) are used from the next URL on."""
    s3 = client(endpoint=None, region="us-east-1", token="old", signature_version="s3v4")
    presigner = Presigner(s3, "b", lifetime=900, clock=clock)
    presigner.url("first.ts", {})
    refreshed = botocore.credentials.Credentials("AKIDNEW", "new-secret", "new-token")
    monkeypatch.setattr(s3._request_signer, "_credentials", refreshed)
    url = presigner.url("next.ts", {})
    assert presigner.signs_itself
    same(url, botocores(s3, "b", "next.ts", False))
    assert "AKIDNEW" in url


@pytest.mark.usefixtures("frozen_botocore")
def test_a_shape_learnt_again_signs_for_its_own_region() -> None:
    """After ``forget`` (a bucket found in another region), the next shape's region gets its own signing
    key, not the one kept for the first region on the same day."""
    presigner = Presigner(
        client(endpoint=None, region="us-east-1", signature_version="s3v4"), "b", lifetime=900, clock=clock
    )
    presigner.url("first.ts", {})
    presigner.url("second.ts", {})  # signed here: a signing key kept for us-east-1
    elsewhere = client(endpoint=None, region="eu-west-1", signature_version="s3v4")
    presigner._client = elsewhere  # what botocore's redirect cache does to the next URL's region
    presigner.forget()
    presigner.url("third.ts", {})
    url = presigner.url("fourth.ts", {})
    assert presigner.signs_itself
    same(url, botocores(elsewhere, "b", "fourth.ts", False))


@pytest.mark.parametrize(
    "config",
    [
        {"signature_version": "s3"},  # Signature V2: AWSAccessKeyId, Signature, Expires
        {"signature_version": UNSIGNED},
    ],
)
def test_other_signatures_stay_botocores(config: dict[str, Any]) -> None:
    s3 = client(endpoint="http://127.0.0.1:9000", region="us-east-1", **config)
    presigner = Presigner(s3, "b", lifetime=900)
    urls = [presigner.url(key, {}) for key in KEYS]
    assert not presigner.signs_itself
    assert all("X-Amz-Signature" not in url for url in urls)


def test_a_signature_that_differs_leaves_every_url_to_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    s3 = client(endpoint=None, region="us-east-1", signature_version="s3v4")
    monkeypatch.setattr("pipeline.storage.sigv4.UNSIGNED_PAYLOAD", "not what S3 signs")
    presigner = Presigner(s3, "b", lifetime=900)
    presigner.url("a.ts", {})
    assert not presigner.signs_itself
