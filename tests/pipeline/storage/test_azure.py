"""The Azure backend against a real HTTP server on 127.0.0.1 that fails on purpose: azure-core's
retries are counted for the report, and errors say what failed without any credential."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from pipeline.model.exceptions import ObjectNotFound, StorageError
from pipeline.storage.azure import AzureStorage, CountingRetryPolicy, make_blob_service

KEY = "a2V5LWZvci10ZXN0cw=="  # base64 of "key-for-tests"


class Flaky(BaseHTTPRequestHandler):
    """Answers 503 to the first ``failures`` requests, then 404 (a blob that is not there)."""

    failures: ClassVar[int] = 0
    seen: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        type(self).seen.append(self.path)
        if type(self).failures > 0:
            type(self).failures -= 1
            self.send_response(503)
        else:
            self.send_response(404)
            self.send_header("x-ms-error-code", "BlobNotFound")
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def flaky() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/acct1"
    finally:
        server.shutdown()
        server.server_close()


def storage_at(endpoint: str) -> AzureStorage:
    quick = CountingRetryPolicy(initial_backoff=0, increment_base=0)  # the same retries, without the waits
    service, retry = make_blob_service(
        "acct1", endpoint_url=endpoint, environ={"AZURE_STORAGE_KEY": KEY}, retry=quick
    )
    return AzureStorage(service, "rec", retry=retry)


def test_retries_are_counted_for_the_report(flaky):
    Flaky.failures, Flaky.seen = 2, []
    storage = storage_at(flaky)
    with pytest.raises(ObjectNotFound) as info:
        storage.stat("a/b.m3u8")
    assert storage.retries == 2
    assert len(Flaky.seen) == 3
    assert KEY not in str(info.value)


def test_a_store_that_keeps_failing_is_a_storage_error_without_the_key(flaky):
    Flaky.failures, Flaky.seen = 100, []
    storage = storage_at(flaky)
    with pytest.raises(StorageError) as info:
        storage.stat("a/b.m3u8")
    assert not isinstance(info.value, ObjectNotFound)
    assert storage.retries == 5
    assert "az://acct1/rec" in str(info.value)
    assert KEY not in str(info.value)


def test_block_ids_have_the_length_the_sdks_own_uploads_use():
    import secrets

    from pipeline.storage.azure import block_id

    assert {len(block_id(secrets.token_hex(16), n)) for n in (1, 99, 10_000)} == {64}


def test_a_sas_in_a_connection_string_follows_the_client_to_another_endpoint():
    from pipeline.storage.azure import connection_sas

    sas = "sv=2024-11-04&ss=b&sig=abc%3D"
    connection = f"BlobEndpoint=https://acct1.blob.core.windows.net;SharedAccessSignature={sas}"
    assert connection_sas(connection) == sas
    assert connection_sas("AccountName=a;AccountKey=k") is None
    service, _ = make_blob_service(
        "acct1",
        endpoint_url="http://127.0.0.1:1/acct1",
        environ={"AZURE_STORAGE_CONNECTION_STRING": connection},
    )
    assert "sig=abc" in service.get_blob_client("c", "b").url  # the SAS is on every request
