"""Signature V4 query signing against AWS's published example."""

from __future__ import annotations

import functools
from urllib.parse import parse_qsl

from pipeline.storage import sigv4

EXAMPLE = sigv4.Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")


example = functools.partial(
    sigv4.presigned_query,
    method="GET",
    host="examplebucket.s3.amazonaws.com",
    path="/test.txt",
    credentials=EXAMPLE,
    region="us-east-1",
    amz_date="20130524T000000Z",
    expires=86400,
)
"""S3's documentation, "Authenticating Requests: Using Query Parameters", example GET of test.txt."""


def test_awss_example_presigned_get() -> None:
    assert example() == (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )


def test_a_kept_signing_key_signs_the_same() -> None:
    key = sigv4.signing_key(EXAMPLE.secret_key, "20130524", "us-east-1", "s3")
    assert example(key=key) == example()
    assert example(key=sigv4.signing_key(EXAMPLE.secret_key, "20130525", "us-east-1", "s3")) != example()


def test_a_token_and_headers_are_signed() -> None:
    with_token = sigv4.Credentials(EXAMPLE.access_key, EXAMPLE.secret_key, "token/with+odd=chars")
    query = sigv4.presigned_query(
        method="GET",
        host="127.0.0.1:9000",
        path="/bucket/a%20b.ts",
        credentials=with_token,
        region="eu-west-1",
        amz_date="20261126T101500Z",
        expires=900,
        headers={"X-Amz-Checksum-Mode": " ENABLED "},
    )
    params = dict(parse_qsl(query))
    assert params["X-Amz-Security-Token"] == "token/with+odd=chars"
    assert params["X-Amz-SignedHeaders"] == "host;x-amz-checksum-mode"
    assert "token%2Fwith%2Bodd%3Dchars" in query
    assert list(params)[-1] == "X-Amz-Signature"
