"""Locations: a path, ``file://`` or ``s3://`` URL, or an Agora storageConfig → storage + key prefix.

Endpoints for S3, in order: the explicit ``--endpoint-url``; for a storageConfig, what its vendor
implies (``extensionParams.endpoint`` for vendor 11); then ``AWS_ENDPOINT_URL_S3``, then
``AWS_ENDPOINT_URL``; else AWS itself. Credentials come from boto3's standard chain, except that a
storageConfig's own access/secret keys are used when both are set and the environment names no
credentials of its own (``AWS_ACCESS_KEY_ID`` or ``AWS_PROFILE``): the environment is the operator's
deliberate choice, while the start request's keys are Agora's upload keys, which may well be scoped
to writing only.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from pipeline.exceptions import ConfigError
from pipeline.storage.base import Storage
from pipeline.storage.local import LocalStorage

log = logging.getLogger(__name__)

SUPPORTED_FORMS = "a local directory or file, file:///abs/path, or s3://bucket/prefix"

# Agora storageConfig.vendor numbers (Cloud Recording REST reference, "Third-party cloud storage").
AGORA_VENDORS: Mapping[int, str] = {
    0: "Qiniu Cloud",
    1: "Amazon S3",
    2: "Alibaba Cloud OSS",
    3: "Tencent Cloud COS",
    4: "Kingsoft Cloud",
    5: "Microsoft Azure",
    6: "Google Cloud",
    7: "Huawei Cloud",
    8: "Baidu AI Cloud",
    11: "self-hosted S3-compatible storage",
}
VENDOR_AWS = 1
VENDOR_AZURE = 5
VENDOR_S3_COMPATIBLE = 11

# storageConfig.region for vendor 1 (Amazon S3) → AWS region name. Follows Agora's Cloud Recording REST
# reference ("Third-party cloud storage regions"); 0–17 as in the API reference, 18–25 from the region page.
AWS_REGIONS: Mapping[int, str] = {
    0: "us-east-1",
    1: "us-east-2",
    2: "us-west-1",
    3: "us-west-2",
    4: "eu-west-1",
    5: "eu-west-2",
    6: "eu-west-3",
    7: "eu-central-1",
    8: "ap-southeast-1",
    9: "ap-southeast-2",
    10: "ap-northeast-1",
    11: "ap-northeast-2",
    12: "sa-east-1",
    13: "ca-central-1",
    14: "ap-south-1",
    15: "cn-north-1",
    16: "cn-northwest-1",
    17: "us-gov-west-1",
    18: "af-south-1",
    19: "ap-east-1",
    20: "ap-northeast-3",
    21: "eu-north-1",
    22: "me-south-1",
    24: "ap-southeast-3",
    25: "eu-south-1",
}

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP_ADDRESS = re.compile(r"\d+\.\d+\.\d+\.\d+")


@dataclass(frozen=True, kw_only=True, slots=True)
class Location:
    """A storage and a key prefix inside it."""

    storage: Storage
    prefix: str
    """``""``, a directory-like ``"dir/sub/"``, or an exact object key when a file was named."""
    display: str
    """What to show the user: ``s3://bucket/dir/sub/`` or ``/abs/path/dir/``."""


class StorageSpecLike(Protocol):
    """The parts of an Agora ``storageConfig`` (``pipeline.profile.StorageSpec``) used here."""

    @property
    def vendor(self) -> int: ...
    @property
    def region(self) -> int: ...
    @property
    def bucket(self) -> str: ...
    @property
    def access_key(self) -> str: ...
    @property
    def secret_key(self) -> str: ...
    @property
    def file_name_prefix(self) -> tuple[str, ...]: ...
    @property
    def endpoint(self) -> str | None: ...
    @property
    def prefix(self) -> str: ...


def open_location(text: str, *, endpoint_url: str | None = None, environ: Mapping[str, str]) -> Location:
    """The location a user named; local paths must exist."""
    scheme = _scheme(text)
    if scheme == "s3":
        return _s3_location(text, endpoint_url=endpoint_url, environ=environ)
    path = _local_path(text, scheme=scheme)
    if path.is_dir():
        return Location(storage=LocalStorage(path), prefix="", display=_dir_display(path))
    if path.is_file():
        return Location(storage=LocalStorage(path.parent), prefix=path.name, display=str(path))
    if path.exists():
        raise ConfigError(f"{text}: not a file or directory")
    raise ConfigError(f"{text}: does not exist")


def open_destination(text: str, *, endpoint_url: str | None = None, environ: Mapping[str, str]) -> Location:
    """The location outputs go to; a local directory is created if needed."""
    scheme = _scheme(text)
    if scheme == "s3":
        return _s3_location(text, endpoint_url=endpoint_url, environ=environ)
    path = _local_path(text, scheme=scheme)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as err:
        raise ConfigError(f"{text}: the destination must be a directory") from err
    except OSError as err:
        raise ConfigError(f"{text}: cannot create the destination: {err.strerror or err}") from err
    return Location(storage=LocalStorage(path), prefix="", display=_dir_display(path))


def location_from_storage_spec(
    spec: StorageSpecLike, *, endpoint_url: str | None = None, environ: Mapping[str, str]
) -> Location:
    """The S3 location an Agora ``storageConfig`` describes."""
    check_bucket(spec.bucket, where="storageConfig.bucket")
    region = AWS_REGIONS.get(spec.region) if spec.vendor == VENDOR_AWS else None
    endpoint = _normalise_endpoint(endpoint_url) or _vendor_endpoint(spec, environ=environ)
    keys = spec_credentials(spec, environ=environ)
    from pipeline.storage.s3 import S3Storage, make_s3_client  # boto3 only when S3 is used

    log.debug("storageConfig vendor %d → endpoint %s, region %s", spec.vendor, endpoint or "AWS", region)
    client = make_s3_client(
        endpoint_url=endpoint,
        region=region,
        access_key=keys[0] if keys else None,
        secret_key=keys[1] if keys else None,
    )
    prefix = spec.prefix
    return Location(
        storage=S3Storage(client, spec.bucket), prefix=prefix, display=f"s3://{spec.bucket}/{prefix}"
    )


def check_bucket(name: str, *, where: str) -> None:
    """Raise ``ConfigError`` unless ``name`` follows S3's bucket naming rules."""
    if not name:
        raise ConfigError(f"{where}: the bucket name is missing")
    if _BUCKET.fullmatch(name) is None or ".." in name or _IP_ADDRESS.fullmatch(name):
        raise ConfigError(
            f"{where}: {name!r} is not a valid bucket name "
            "(3-63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit)"
        )


def environ_endpoint(environ: Mapping[str, str]) -> str | None:
    """``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``, else None."""
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        value = environ.get(name, "").strip()
        if value:
            return _normalise_endpoint(value, where=name)
    return None


def _vendor_endpoint(spec: StorageSpecLike, *, environ: Mapping[str, str]) -> str | None:
    """The endpoint a storageConfig's vendor implies (None: AWS by region); ConfigError when there is none."""
    vendor = spec.vendor
    if vendor == VENDOR_AWS:
        if spec.region not in AWS_REGIONS:
            raise ConfigError(f"storageConfig.region: {spec.region} is not an Amazon S3 region number")
        return environ_endpoint(environ)
    if vendor == VENDOR_S3_COMPATIBLE:
        if not spec.endpoint:
            raise ConfigError(
                "storageConfig: vendor 11 (self-hosted S3-compatible) needs extensionParams.endpoint, "
                "or give the endpoint with --endpoint-url"
            )
        return _normalise_endpoint(spec.endpoint, where="storageConfig.extensionParams.endpoint")
    if vendor == VENDOR_AZURE:
        raise ConfigError(
            "storageConfig: vendor 5 is Microsoft Azure Blob Storage, which is not S3-compatible and "
            "cannot be read by recpipe; copy the recording to S3 or a local directory, or give an "
            "S3-compatible gateway with --endpoint-url"
        )
    if vendor in AGORA_VENDORS:
        found = environ_endpoint(environ)
        if found is None:
            raise ConfigError(
                f"storageConfig: vendor {vendor} ({AGORA_VENDORS[vendor]}) is recognised, but recpipe "
                "does not know its S3-compatible endpoint; give it with --endpoint-url"
            )
        return found
    raise ConfigError(f"storageConfig.vendor: unknown vendor number {vendor}")


def spec_credentials(spec: StorageSpecLike, *, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """The storageConfig's keys, when both are set and the environment names no credentials."""
    if not (spec.access_key and spec.secret_key):
        return None
    if environ.get("AWS_ACCESS_KEY_ID") or environ.get("AWS_PROFILE"):
        log.info("using the environment's AWS credentials, not the storageConfig's keys")
        return None
    log.info("using the storageConfig's access key for s3://%s", spec.bucket)
    return spec.access_key, spec.secret_key


def _normalise_endpoint(value: str | None, *, where: str = "--endpoint-url") -> str | None:
    """An http(s) endpoint URL; a bare host (as Agora's ``extensionParams.endpoint``) gets ``https://``."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if "://" not in value:
        value = f"https://{value}"
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: {value!r} is not an http:// or https:// endpoint URL")
    if parts.username or parts.password:
        raise ConfigError(f"{where}: the endpoint URL must not contain credentials")
    return value


def _scheme(text: str) -> str | None:
    """The lower-cased URL scheme of ``text``, or None for a plain path; ConfigError for unsupported ones."""
    if not text:
        raise ConfigError(f"empty location; give {SUPPORTED_FORMS}")
    match = _SCHEME.match(text)
    if match is None:
        return None
    scheme = match.group(1).lower()
    if scheme not in ("s3", "file"):
        raise ConfigError(f"{text}: unsupported location scheme {scheme}://; give {SUPPORTED_FORMS}")
    return scheme


def _local_path(text: str, *, scheme: str | None) -> Path:
    """The absolute path for a plain path or a ``file://`` URL."""
    if "\0" in text:
        raise ConfigError("the location contains a NUL character")
    if scheme == "file":
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"{text}: file:// URLs must name a local absolute path (file:///abs/path)")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ConfigError(f"{text}: file:// URLs must name an absolute path (file:///abs/path)")
        return Path(os.path.abspath(path))
    return Path(os.path.abspath(Path(text).expanduser()))


def _s3_location(text: str, *, endpoint_url: str | None, environ: Mapping[str, str]) -> Location:
    """``s3://bucket/prefix`` → an S3Storage and a prefix ending in '/' unless it names a playlist."""
    bucket, _, prefix = text[len("s3://") :].partition("/")
    if not bucket:
        raise ConfigError(f"{text}: no bucket; give s3://bucket/prefix")
    check_bucket(bucket, where=text)
    if prefix and not prefix.endswith(("/", ".m3u8")):
        prefix += "/"
    endpoint = _normalise_endpoint(endpoint_url) or environ_endpoint(environ)
    from pipeline.storage.s3 import S3Storage, make_s3_client  # boto3 only when S3 is used

    storage = S3Storage(make_s3_client(endpoint_url=endpoint), bucket)
    return Location(storage=storage, prefix=prefix, display=f"s3://{bucket}/{prefix}")


def _dir_display(path: Path) -> str:
    """A directory's path with a trailing separator."""
    text = str(path)
    return text if text.endswith(os.sep) else text + os.sep
