"""``AzureStorage``: one container of Azure Blob Storage (Agora's vendor 5), through ``azure-storage-blob``.

This module is the only code that imports the Azure blob SDK (``pipeline.fleet.azure_queue`` imports
the queue SDK), and ``translate_error`` is the one place its errors become recpipe errors. azure-core
retries throttling, 5xx and connection errors itself; the
retries it makes are counted for the report (``CountingRetryPolicy``).

How the guarantees the S3 backend gives are kept on a block blob:

- **Only complete outputs are visible.** A file or a part-by-part upload (``AzureUpload``) stages
  blocks (Put Block), which are invisible, and commits the block list (Put Block List) last — after
  verification, when the run publishes. An aborted upload never commits: its blocks stay invisible,
  are dropped by Azure when the name is next committed, or after a week, and ``discard_incomplete``
  deletes a name that holds only staged blocks.
- **Leases by conditional writes**: ``If-None-Match: *`` to create, ``If-Match`` on the ETag to renew,
  take over or delete.
- **Labels**: Azure metadata names must be C# identifiers, so recpipe's ``recpipe-output`` label is
  written as ``recpipe_output`` and read back under its own name.
- **No secret in a message**: errors name the account and container (``az://account/container``)
  and the key, never a key, SAS or connection string.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import secrets
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.storage.blob import BlobBlock, BlobClient, BlobServiceClient, ContainerClient, ExponentialRetry

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
from pipeline.storage.parts import PartUpload

log = logging.getLogger(__name__)

DEFAULT_SUFFIX = "core.windows.net"
"""The endpoint suffix of Azure's public cloud: ``https://<account>.blob.core.windows.net``."""
ACCOUNT = re.compile(r"[a-z0-9]{3,24}")
CONTAINER = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
MAX_RETRIES = 5
_CHUNK = 1024 * 1024
_LABEL_PREFIX = "recpipe-"
_NOT_FOUND = frozenset({"BlobNotFound", "ContainerNotFound", "ResourceNotFound"})
_PRECONDITION = frozenset({"ConditionNotMet", "BlobAlreadyExists", "TargetConditionNotMet"})

# The SDK logs every request at INFO (headers and redacted query strings); recpipe's -v is about the
# recording, not HTTP. Its warnings still show.
logging.getLogger("azure").setLevel(logging.WARNING)


class CountingRetryPolicy(ExponentialRetry):
    """The storage SDK's exponential retry (1 s, then 3 s, 5 s, 9 s, 17 s, with jitter), counting the
    requests it sends again (for the report)."""

    def __init__(
        self, *, retry_total: int = MAX_RETRIES, initial_backoff: int = 1, increment_base: int = 2
    ) -> None:
        super().__init__(
            initial_backoff=initial_backoff,
            increment_base=increment_base,
            retry_total=retry_total,
            retry_connect=retry_total,
            retry_read=retry_total,
            retry_status=retry_total,
            random_jitter_range=min(1, initial_backoff),
        )
        self.count = 0
        self._lock = threading.Lock()

    def increment(
        self,
        settings: dict[str, Any],
        request: PipelineRequest[Any],
        response: PipelineResponse[Any, Any] | None = None,
        error: AzureError | None = None,
    ) -> bool:
        """One more try, if the policy allows it (then it is counted)."""
        again = bool(super().increment(settings, request, response=response, error=error))
        if again:
            with self._lock:
                self.count += 1
        return again


def label_out(metadata: Metadata | None) -> dict[str, str]:
    """recpipe's labels as Azure metadata names (C# identifiers: ``recpipe-output`` → ``recpipe_output``)."""
    return {k.replace("-", "_") if k.startswith(_LABEL_PREFIX) else k: v for k, v in (metadata or {}).items()}


def label_in(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Azure metadata with recpipe's labels under their own names again."""
    prefix = _LABEL_PREFIX.replace("-", "_")
    return {k.replace("_", "-") if k.startswith(prefix) else k: v for k, v in (metadata or {}).items()}


def _etag(value: str | None) -> str:
    """The ETag without its quotes."""
    return (value or "").strip('"')


def _quoted(etag: str) -> str:
    return f'"{etag}"'


def translate_error(err: Exception, *, where: str, key: str | None, action: str) -> StorageError:
    """The recpipe error for an Azure SDK error: ``ObjectNotFound`` for the "not there" shapes,
    ``PreconditionFailed`` for a conditional request that lost."""
    raw = getattr(err, "error_code", None)
    code = str(getattr(raw, "value", raw) or "")  # the SDK gives a StorageErrorCode enum or a string
    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(err, ResourceNotFoundError) or code in _NOT_FOUND:
        what = "container" if code == "ContainerNotFound" else "blob"
        return ObjectNotFound(f"{where}: no such {what} ({code or status})", key=key)
    if isinstance(err, ResourceModifiedError | ResourceExistsError) or code in _PRECONDITION or status == 412:
        return PreconditionFailed(
            f"{where}: {action}: the blob is not as expected ({code or status})", key=key
        )
    if isinstance(err, ClientAuthenticationError):
        return StorageError(
            f"{where}: {action} refused: the credentials are missing, wrong or not allowed to "
            f"({code or status}); set AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_KEY or "
            "AZURE_STORAGE_SAS_TOKEN, give the storageConfig's keys, or sign in for azure-identity",
            key=key,
        )
    if isinstance(err, ServiceResponseError):
        return BrokenConnection(f"{where}: {action} failed: connection broken", key=key)
    if isinstance(err, ServiceRequestError):
        return StorageError(f"{where}: cannot connect to the blob endpoint ({type(err).__name__})", key=key)
    if isinstance(err, HttpResponseError):
        detail = f"{code or status}: {err.reason or ''}".rstrip(": ")
        return StorageError(f"{where}: {action} failed: {detail}", key=key)
    return StorageError(f"{where}: {action} failed: {type(err).__name__}", key=key)


def block_id(token: str, number: int) -> str:
    """A block's id: the upload's token and the part number, Base64 — 64 characters, the length the
    SDK's own block uploads use (Azure refuses blocks of another length beside staged ones)."""
    return base64.b64encode(f"{token}-{number:015d}".encode()).decode()


class AzureStorage:
    """An object store in one container of an Azure storage account."""

    def __init__(self, service: BlobServiceClient, container: str, *, retry: CountingRetryPolicy) -> None:
        self._service = service
        self._container: ContainerClient = service.get_container_client(container)
        self._name = container
        self._retry = retry

    def __repr__(self) -> str:
        return f"AzureStorage({self.url!r})"

    @property
    def account(self) -> str:
        """The storage account's name."""
        return str(self._service.account_name)

    @property
    def container(self) -> str:
        """The container's name."""
        return self._name

    @property
    def service_url(self) -> str:
        """Where the account's blobs are served (``https://<account>.blob.core.windows.net/``)."""
        return str(self._service.url)

    def prepare_reads(self, count: int, *, prefix: str) -> None:
        """Nothing is opened ahead: the Azure SDK's pipeline opens its connections as requests need them."""

    @property
    def url(self) -> str:
        """``az://account/container``."""
        return f"az://{self.account}/{self._name}"

    @property
    def retries(self) -> int:
        """Requests azure-core sent again so far through this storage's client."""
        return self._retry.count

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every committed blob whose name starts with ``prefix``, in name order; folder markers skipped."""
        with self.translated("list", key=prefix):
            for blob in self._container.list_blobs(name_starts_with=prefix or None):
                if not blob.name.endswith("/"):
                    yield ObjectInfo(
                        key=blob.name,
                        size=int(blob.size),
                        etag=_etag(blob.etag),
                        modified=posix_seconds(blob.last_modified),
                    )

    def stat(self, key: str) -> ObjectInfo:
        """The blob's size and ETag; ``ObjectNotFound`` if absent."""
        with self.translated("get properties", key=key):
            props = self._blob(key).get_blob_properties()
        return ObjectInfo(
            key=key, size=int(props.size), etag=_etag(props.etag), modified=posix_seconds(props.last_modified)
        )

    def exists(self, key: str) -> bool:
        """Whether a committed blob is at ``key``."""
        return exists_by_stat(self.stat, key)

    def read_bytes(self, key: str, *, max_bytes: int) -> bytes:
        """The whole blob; ``ObjectTooLarge`` if it is over ``max_bytes`` (checked before reading it)."""
        with self.translated("read", key=key):
            downloader = self._blob(key).download_blob(offset=0, length=max_bytes + 1)
            if (downloader.properties.size or 0) > max_bytes:
                raise ObjectTooLarge(
                    f"object is {downloader.size} bytes, over the {max_bytes}-byte limit", key=key
                )
            return downloader.readall()

    def read_range(self, key: str, *, offset: int, count: int) -> bytes:
        """Bytes ``[offset, offset + count)`` (fewer at the blob's end), one ranged Get Blob."""
        if count <= 0:
            return b""
        with self.translated("read", key=key):
            return self._blob(key).download_blob(offset=offset, length=count).readall()

    def read_metadata(self, key: str) -> Metadata:
        """The blob's metadata, recpipe's labels under their own names."""
        with self.translated("get properties", key=key):
            return label_in(self._blob(key).get_blob_properties().metadata)

    def get(self, key: str, dest: Path) -> ObjectInfo:
        """Stream the blob to a temporary file beside ``dest``, check its length, rename it into place."""
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StorageError(f"cannot create {dest.parent}: {err.strerror or err}", key=key) from err
        tmp = dest.parent / temp_name(dest.name)
        try:
            with self.translated("read", key=key), open(tmp, "xb") as out:
                downloader = self._blob(key).download_blob()
                for chunk in downloader.chunks():
                    out.write(chunk)
                received = out.tell()
            if received != downloader.size:
                raise BrokenConnection(f"{self.url}: read {received} of {downloader.size} bytes", key=key)
            os.replace(tmp, dest)
        except OSError as err:
            raise StorageError(f"cannot write the local copy: {err.strerror or err}", key=key) from err
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        return ObjectInfo(key=key, size=received, etag=_etag(downloader.properties.etag))

    def put(self, src: Path, key: str, *, metadata: Metadata | None = None) -> ObjectInfo:
        """Upload ``src`` as staged blocks committed last (the SDK's block upload); nothing is visible
        before the commit."""
        try:
            size = src.stat().st_size
            with self.translated("upload", key=key), src.open("rb") as data:
                self._blob(key).upload_blob(
                    data, length=size, overwrite=True, metadata=label_out(metadata), max_concurrency=4
                )
        except OSError as err:
            raise StorageError(f"cannot upload {src}: {err.strerror or err}", key=key) from err
        return same_size(self.stat(key), sent=size)

    def put_bytes(self, data: bytes, key: str, *, metadata: Metadata | None = None) -> ObjectInfo:
        """Store ``data`` in one Put Blob request."""
        with self.translated("put", key=key):
            result = self._blob(key).upload_blob(data, overwrite=True, metadata=label_out(metadata))
        return ObjectInfo(key=key, size=len(data), etag=_etag(result.get("etag")))

    def put_if(self, data: bytes, key: str, *, etag: str | None) -> ObjectInfo:
        """Put Blob with ``If-None-Match: *`` (``etag`` None) or ``If-Match: etag``."""
        blob = self._blob(key)
        with self.translated("conditional put", key=key):
            if etag is None:
                result = blob.upload_blob(data, overwrite=False)
            else:
                result = blob.upload_blob(
                    data, overwrite=True, etag=_quoted(etag), match_condition=MatchConditions.IfNotModified
                )
        return ObjectInfo(key=key, size=len(data), etag=_etag(result.get("etag")))

    def delete_if(self, key: str, *, etag: str) -> None:
        """Delete Blob with ``If-Match: etag``."""
        try:
            with self.translated("conditional delete", key=key):
                self._blob(key).delete_blob(etag=_quoted(etag), match_condition=MatchConditions.IfNotModified)
        except PreconditionFailed:
            if not self.exists(key):  # the service may answer If-Match on a missing blob with 412
                raise ObjectNotFound(f"{self.url}: no such blob", key=key) from None
            raise

    def discard_incomplete(self, prefix: str) -> int:
        """Delete every name under ``prefix`` that holds only staged blocks (an upload never committed);
        a committed blob's staged blocks are left to Azure, which drops them at its next commit."""
        start = prefix or None
        with self.translated("list", key=prefix):
            listed = list(self._container.list_blobs(name_starts_with=start, include=["uncommittedblobs"]))
            committed = {b.name for b in self._container.list_blobs(name_starts_with=start)}
        staged = [b.name for b in listed if b.name not in committed]
        for name in staged:
            if self.exists(name):  # committed meanwhile: someone's finished output, not ours to drop
                continue
            with contextlib.suppress(ObjectNotFound), self.translated("delete staged blocks", key=name):
                self._blob(name).delete_blob()
            log.info(
                "%s/%s: threw away the blocks of an upload an earlier run never committed", self.url, name
            )
        return len(staged)

    def begin_upload(self, key: str, *, metadata: Metadata | None = None) -> AzureUpload:
        """A part-by-part upload: each part is a staged block, and the blob appears only when the block
        list is committed (``complete``)."""
        return AzureUpload(self, key=key, metadata=metadata)

    def blob_client(self, key: str) -> BlobClient:
        """The SDK's client for one blob (for ``AzureUpload``)."""
        return self._blob(key)

    def _blob(self, key: str) -> BlobClient:
        return self._container.get_blob_client(key)

    @contextlib.contextmanager
    def translated(self, action: str, *, key: str | None) -> Iterator[None]:
        """Turn Azure SDK errors raised inside the block into recpipe errors."""
        try:
            yield
        except AzureError as err:
            raise translate_error(err, where=self.url, key=key, action=action) from err


class AzureUpload(PartUpload):
    """One blob uploaded block by block: each part is a staged block (Put Block), committed in part
    order by ``complete`` (Put Block List); an aborted upload never commits (its blocks stay invisible)."""

    def __init__(self, storage: AzureStorage, *, key: str, metadata: Metadata | None) -> None:
        super().__init__(key=key)
        self._storage = storage
        self._metadata = label_out(metadata)
        self._token = secrets.token_hex(16)

    def _send(self, number: int, data: bytes) -> str:
        block = block_id(self._token, number)
        with self._storage.translated("stage block", key=self._key):
            self._storage.blob_client(self._key).stage_block(block, data, length=len(data))
        return block

    def _commit(self, parts: dict[int, str]) -> None:
        blocks = [BlobBlock(block_id=block) for block in parts.values()]
        with self._storage.translated("commit block list", key=self._key):
            self._storage.blob_client(self._key).commit_block_list(blocks, metadata=self._metadata)

    def _drop(self) -> None:
        """Nothing to send: staged blocks are invisible, and dropped at the next commit or by Azure."""

    def _stat(self) -> ObjectInfo:
        return self._storage.stat(self._key)


def make_blob_service(
    account: str,
    *,
    endpoint_url: str | None,
    environ: Mapping[str, str],
    account_key: str | None = None,
    retry: CountingRetryPolicy | None = None,
) -> tuple[BlobServiceClient, CountingRetryPolicy]:
    """A client for ``account``'s blobs and its retry counter. Credentials, in order: the environment's
    ``AZURE_STORAGE_CONNECTION_STRING`` (its account must be ``account``), ``AZURE_STORAGE_KEY``,
    ``AZURE_STORAGE_SAS_TOKEN``; ``account_key`` (a storageConfig's ``secretKey``); azure-identity's
    default chain when it is installed; else none (a public container)."""
    retry = retry or CountingRetryPolicy(retry_total=MAX_RETRIES)
    options: dict[str, Any] = {"retry_policy": retry}
    connection = environ.get("AZURE_STORAGE_CONNECTION_STRING", "").strip()
    try:
        if connection:
            service = BlobServiceClient.from_connection_string(connection, **options)
            if service.account_name != account:
                other = service.account_name
                raise ConfigError(
                    f"AZURE_STORAGE_CONNECTION_STRING is for the account {other!r}, not {account!r}"
                )
            if endpoint_url is None:
                return service, retry
            credential: Any = service.credential or connection_sas(connection)
        else:
            credential = azure_credential(account, environ=environ, account_key=account_key)
        url = (
            endpoint_url or f"https://{account}.blob.{environ.get('AZURE_STORAGE_SUFFIX') or DEFAULT_SUFFIX}"
        )
        return BlobServiceClient(url, credential=credential, **options), retry
    except (ValueError, AzureError) as err:  # a malformed connection string, URL or key
        raise ConfigError(
            f"cannot set up the Azure client for the account {account!r}: {type(err).__name__}"
        ) from err


def connection_sas(connection: str) -> str | None:
    """The ``SharedAccessSignature`` a connection string carries (the SDK keeps it in the URL, not in
    ``credential``), so that a client for another endpoint keeps it too."""
    fields = dict(part.split("=", 1) for part in connection.split(";") if "=" in part)
    return fields.get("SharedAccessSignature") or None


def azure_credential(account: str, *, environ: Mapping[str, str], account_key: str | None = None) -> Any:
    """The credential for ``account`` when there is no connection string: ``AZURE_STORAGE_KEY`` or
    ``account_key`` (a storageConfig's ``secretKey``), ``AZURE_STORAGE_SAS_TOKEN``, azure-identity's
    default chain when it is installed, else None (anonymous)."""
    key = environ.get("AZURE_STORAGE_KEY", "").strip() or (account_key or "").strip()
    if key:
        return {"account_name": account, "account_key": key}
    sas = environ.get("AZURE_STORAGE_SAS_TOKEN", "").strip()
    if sas:
        return sas.lstrip("?")
    try:
        from azure.identity import DefaultAzureCredential  # optional: recpipe[azure-identity]
    except ImportError:
        log.info("no Azure credentials given and azure-identity is not installed: anonymous access")
        return None
    return DefaultAzureCredential()


def check_account(name: str, *, where: str) -> None:
    """``ConfigError`` unless ``name`` is a storage account name (3-24 lowercase letters and digits)."""
    if ACCOUNT.fullmatch(name) is None:
        raise ConfigError(
            f"{where}: {name!r} is not a storage account name (3-24 lowercase letters and digits)"
        )


def check_container(name: str, *, where: str) -> None:
    """``ConfigError`` unless ``name`` is a container name (3-63 lowercase letters, digits, hyphens)."""
    if CONTAINER.fullmatch(name) is None:
        raise ConfigError(
            f"{where}: {name!r} is not a container name (3-63 lowercase letters, digits and single hyphens)"
        )
