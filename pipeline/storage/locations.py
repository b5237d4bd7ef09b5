"""Locations: a path, a ``file://``, ``s3://`` or Azure URL, or an Agora storageConfig → storage + prefix.

Azure Blob Storage (Agora's vendor 5) is named ``az://<account>/<container>/<prefix>`` or by its blob
URL, ``https://<account>.blob.core.windows.net/<container>/<prefix>``; ``--endpoint-url`` (e.g.
Azurite's ``http://127.0.0.1:10000/devstoreaccount1``) or a connection string's ``BlobEndpoint``
says where the account is served from. A vendor-5 storageConfig names the container in ``bucket``
and, as Agora's documentation most likely means, the account in ``accessKey`` and its key in
``secretKey`` (``AZURE_STORAGE_ACCOUNT`` names the account when ``accessKey`` is not it).

Endpoints for S3, in order: the explicit ``--endpoint-url``; for a storageConfig, what its vendor and
region imply (``pipeline.agora.vendors``; ``extensionParams.endpoint`` for vendor 11); then
``AWS_ENDPOINT_URL_S3``, then ``AWS_ENDPOINT_URL``; else AWS itself. An endpoint from the flag or the
environment is addressed path-style, as self-hosted stores and test servers expect, but a
storageConfig's requests are still signed for its vendor's region.

Credentials come from boto3's standard chain, except that a storageConfig's own access/secret keys are
used when both are set and the environment names no credentials of its own (``AWS_ACCESS_KEY_ID`` or
``AWS_PROFILE``): the environment is the operator's deliberate choice, while the start request's keys
are Agora's upload keys, which may well be scoped to writing only.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from pipeline.agora.vendors import AGORA_VENDORS as AGORA_VENDORS  # "as": re-exported, they used to live here
from pipeline.agora.vendors import AWS_REGIONS as AWS_REGIONS
from pipeline.agora.vendors import VENDOR_AWS, VENDOR_S3_COMPATIBLE, VendorEndpoint, vendor_endpoint
from pipeline.agora.vendors import VENDOR_AZURE as VENDOR_AZURE
from pipeline.model.exceptions import ConfigError
from pipeline.storage.base import Storage
from pipeline.storage.local import LocalStorage

log = logging.getLogger(__name__)

SUPPORTED_FORMS = (
    "a local directory or file, file:///abs/path, s3://bucket/prefix, az://account/container/prefix "
    "or https://account.blob.core.windows.net/container/prefix"
)

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP_ADDRESS = re.compile(r"\d+\.\d+\.\d+\.\d+")
_BLOB_HOST = re.compile(r"([a-z0-9]{3,24})\.blob\.([a-z0-9.-]+)")


@dataclass(frozen=True, kw_only=True, slots=True)
class Location:
    """A storage and a key prefix inside it."""

    storage: Storage
    prefix: str
    """``""``, a directory-like ``"dir/sub/"``, or an exact object key when a file was named."""
    display: str
    """What to show the user: ``s3://bucket/dir/sub/`` or ``/abs/path/dir/``."""
    store: tuple[str | None, ...] | None = None
    """What makes two locations one store (S3: endpoint and bucket, credentials from the standard chain),
    so that a destination in the source's store uses the source's storage and its client; None: never
    shared (local directories, Azure, a ``storageConfig``'s own keys)."""


class StorageSpecLike(Protocol):
    """The parts of an Agora ``storageConfig`` (``pipeline.agora.profile.StorageSpec``) used here."""

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
    def sts_token(self) -> str: ...
    @property
    def file_name_prefix(self) -> tuple[str, ...]: ...
    @property
    def endpoint(self) -> str | None: ...
    @property
    def prefix(self) -> str: ...


def open_location(text: str, *, endpoint_url: str | None = None, environ: Mapping[str, str]) -> Location:
    """The location a user named; local paths must exist."""
    scheme = _scheme(text)
    remote = _remote(text, scheme=scheme, endpoint_url=endpoint_url, environ=environ)
    if remote is not None:
        return remote
    path = _local_path(text, scheme=scheme)
    if path.is_dir():
        return Location(storage=LocalStorage(path), prefix="", display=_dir_display(path))
    if path.is_file():
        return Location(storage=LocalStorage(path.parent), prefix=path.name, display=str(path))
    if path.exists():
        raise ConfigError(f"{text}: not a file or directory")
    raise ConfigError(f"{text}: does not exist")


def open_destination(
    text: str, *, endpoint_url: str | None = None, environ: Mapping[str, str], source: Location | None = None
) -> Location:
    """The location outputs go to; a local directory is created if needed. In the ``source``'s store,
    the source's storage is used (one S3 client, its connections and its retry count, for both)."""
    scheme = _scheme(text)
    remote = _remote(text, scheme=scheme, endpoint_url=endpoint_url, environ=environ, source=source)
    if remote is not None:
        return remote
    path = _local_path(text, scheme=scheme)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as err:
        raise ConfigError(f"{text}: the destination must be a directory") from err
    except OSError as err:
        raise ConfigError(f"{text}: cannot create the destination: {err.strerror or err}") from err
    return Location(storage=LocalStorage(path), prefix="", display=_dir_display(path))


def _remote(
    text: str,
    *,
    scheme: str | None,
    endpoint_url: str | None,
    environ: Mapping[str, str],
    source: Location | None = None,
) -> Location | None:
    """An S3 or Azure location (nothing is created there), or None for a local one."""
    if scheme == "s3":
        return _s3_location(text, endpoint_url=endpoint_url, environ=environ, source=source)
    if scheme == "az":
        return _azure_location(text, endpoint_url=endpoint_url, environ=environ)
    return None


def location_from_storage_spec(
    spec: StorageSpecLike, *, endpoint_url: str | None = None, environ: Mapping[str, str]
) -> Location:
    """The location an Agora ``storageConfig`` describes: an S3 bucket, or for vendor 5 an Azure container."""
    if spec.vendor == VENDOR_AZURE:
        return _azure_spec_location(spec, endpoint_url=endpoint_url, environ=environ)
    check_bucket(spec.bucket, where="storageConfig.bucket")
    target = spec_endpoint(spec, endpoint_url=endpoint_url, environ=environ)
    keys = spec_credentials(spec, environ=environ)
    from pipeline.storage.s3 import S3Storage, make_s3_client  # boto3 only when S3 is used

    log.debug(
        "storageConfig vendor %d → endpoint %s, region %s, %s-style",
        spec.vendor,
        target.endpoint_url or "AWS",
        target.region,
        target.addressing_style,
    )
    client = make_s3_client(
        endpoint_url=target.endpoint_url,
        region=target.region,
        access_key=keys[0] if keys else None,
        secret_key=keys[1] if keys else None,
        session_token=(keys[2] or None) if keys else None,
        addressing_style=target.addressing_style,
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


def spec_endpoint(
    spec: StorageSpecLike, *, endpoint_url: str | None, environ: Mapping[str, str]
) -> VendorEndpoint:
    """Where a storageConfig's bucket is: ``endpoint_url`` if given, else what its vendor and region imply
    (for Amazon S3 the environment's endpoint variables may name another endpoint)."""
    flag = _normalise_endpoint(endpoint_url)
    if flag is not None:
        return VendorEndpoint(endpoint_url=flag, region=_signing_region(spec), addressing_style="path")
    own = spec.endpoint if spec.vendor == VENDOR_S3_COMPATIBLE else None  # the others ignore it
    own_url = _normalise_endpoint(own, where="storageConfig.extensionParams.endpoint")
    found = vendor_endpoint(spec.vendor, spec.region, endpoint=own_url)
    if spec.vendor == VENDOR_AWS:
        environ_url = environ_endpoint(environ)
        if environ_url is not None:
            return replace(found, endpoint_url=environ_url, addressing_style="path")
    return found


def _signing_region(spec: StorageSpecLike) -> str | None:
    """The region a storageConfig's vendor signs for, or None when the vendor or region is not known."""
    try:
        return vendor_endpoint(spec.vendor, spec.region).region
    except ConfigError:
        return None


def spec_credentials(spec: StorageSpecLike, *, environ: Mapping[str, str]) -> tuple[str, str, str] | None:
    """The storageConfig's keys and session token (``stsToken``, often blank), when both keys are set and
    the environment names no credentials."""
    if not (spec.access_key and spec.secret_key):
        return None
    if environ.get("AWS_ACCESS_KEY_ID") or environ.get("AWS_PROFILE"):
        log.info("using the environment's AWS credentials, not the storageConfig's keys")
        return None
    log.info("using the storageConfig's access key for s3://%s", spec.bucket)
    return spec.access_key, spec.secret_key, spec.sts_token


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
    if scheme in ("http", "https") and _BLOB_HOST.fullmatch(urlsplit(text).hostname or ""):
        return "az"
    if scheme not in ("s3", "file", "az"):
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


def _s3_location(
    text: str, *, endpoint_url: str | None, environ: Mapping[str, str], source: Location | None = None
) -> Location:
    """``s3://bucket/prefix`` → an S3Storage (the ``source``'s, in the same store) and a prefix ending
    in '/' unless it names a playlist."""
    bucket, _, prefix = text[len("s3://") :].partition("/")
    if not bucket:
        raise ConfigError(f"{text}: no bucket; give s3://bucket/prefix")
    check_bucket(bucket, where=text)
    if prefix and not prefix.endswith(("/", ".m3u8")):
        prefix += "/"
    endpoint = _normalise_endpoint(endpoint_url) or environ_endpoint(environ)
    store = ("s3", endpoint.rstrip("/") if endpoint else None, bucket)
    display = f"s3://{bucket}/{prefix}"
    if source is not None and source.store == store:
        return Location(storage=source.storage, prefix=prefix, display=display, store=store)
    from pipeline.storage.s3 import S3Storage, make_s3_client  # boto3 only when S3 is used

    storage = S3Storage(make_s3_client(endpoint_url=endpoint), bucket)
    return Location(storage=storage, prefix=prefix, display=display, store=store)


def _dir_display(path: Path) -> str:
    """A directory's path with a trailing separator."""
    text = str(path)
    return text if text.endswith(os.sep) else text + os.sep


def _azure_location(text: str, *, endpoint_url: str | None, environ: Mapping[str, str]) -> Location:
    """``az://account/container/prefix`` or ``https://account.blob.<suffix>/container/prefix``."""
    parts = urlsplit(text)
    if parts.username or parts.password or parts.query or parts.fragment:
        shown = f"{parts.scheme}://{parts.hostname or ''}{parts.path}"  # never the query: it may be a SAS
        raise ConfigError(f"{shown}: an Azure location names no credentials, query or fragment (give a SAS "
                          "in AZURE_STORAGE_SAS_TOKEN)")  # fmt: skip
    if parts.scheme.lower() == "az":
        account, path = parts.netloc, parts.path
    else:
        host = _BLOB_HOST.fullmatch(parts.hostname or "")
        assert host is not None  # _scheme said so
        account, path = host.group(1), parts.path
        if endpoint_url is None and host.group(2) != "core.windows.net":
            endpoint_url = f"{parts.scheme}://{parts.netloc}"
    container, _, prefix = unquote(path).lstrip("/").partition("/")
    return _azure(account, container, prefix, endpoint_url=endpoint_url, environ=environ, where=text)


def _azure_spec_location(
    spec: StorageSpecLike, *, endpoint_url: str | None, environ: Mapping[str, str]
) -> Location:
    """A vendor-5 storageConfig: the container is ``bucket``, the account ``accessKey`` (or
    ``AZURE_STORAGE_ACCOUNT``)."""
    account = environ.get("AZURE_STORAGE_ACCOUNT", "").strip() or spec.access_key
    if not account:
        raise ConfigError("storageConfig: vendor 5 (Azure) needs the storage account in accessKey, "
                          "or set AZURE_STORAGE_ACCOUNT")  # fmt: skip
    return _azure(
        account,
        spec.bucket,
        spec.prefix,
        endpoint_url=endpoint_url,
        environ=environ,
        where="storageConfig",
        account_key=spec.secret_key or None,
    )


def _azure(
    account: str,
    container: str,
    prefix: str,
    *,
    endpoint_url: str | None,
    environ: Mapping[str, str],
    where: str,
    account_key: str | None = None,
) -> Location:
    from pipeline.storage.azure import (  # the Azure SDK only when Azure is used
        AzureStorage,
        check_account,
        check_container,
        make_blob_service,
    )

    check_account(account, where=where)
    check_container(container, where=where)
    if prefix and not prefix.endswith(("/", ".m3u8")):
        prefix += "/"
    endpoint = _normalise_endpoint(endpoint_url)
    service, retry = make_blob_service(
        account, endpoint_url=endpoint, environ=environ, account_key=account_key
    )
    storage = AzureStorage(service, container, retry=retry)
    return Location(storage=storage, prefix=prefix, display=f"az://{account}/{container}/{prefix}")
