"""Azurite, Microsoft's Azure Storage emulator, as the tests' real Azure server on 127.0.0.1.

``make test`` installs it with npm into ``.azurite/`` (node is on the machine; npm needs no root). The
fixtures start one Azurite (blob and queue services) per session on free ports, in memory, and hand
out containers; a test that needs it fails with the reason when it cannot run — never skipped.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from pipeline.storage.azure import AzureStorage, make_blob_service

ROOT = Path(__file__).resolve().parents[1]
LOCAL_INSTALL = ROOT / ".azurite" / "node_modules" / ".bin" / "azurite"
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
"""Azurite's well-known development account and key (published by Microsoft; not a secret)."""
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class AzureContainer:
    """A container on Azurite, and recpipe's storage for it."""

    name: str
    storage: AzureStorage
    service: BlobServiceClient

    @property
    def location(self) -> str:
        """Its ``az://`` location."""
        return f"az://{ACCOUNT}/{self.name}/"

    def upload_directory(self, directory: Path, *, prefix: str) -> None:
        """Upload every file of ``directory`` (not its subdirectories) under ``prefix``."""
        client = self.service.get_container_client(self.name)
        for path in sorted(p for p in directory.iterdir() if p.is_file()):
            with path.open("rb") as data:
                client.upload_blob(f"{prefix}{path.name}", data, overwrite=True)


@dataclass(frozen=True)
class Azurite:
    """A running Azurite: its endpoints and the connection string recpipe is given."""

    blob_endpoint: str
    queue_endpoint: str

    @property
    def connection_string(self) -> str:
        """What ``AZURE_STORAGE_CONNECTION_STRING`` holds for it."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint={self.blob_endpoint};QueueEndpoint={self.queue_endpoint};"
        )

    @property
    def environ(self) -> dict[str, str]:
        """The variables a recpipe process needs to reach it."""
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string}

    @contextlib.contextmanager
    def queue(self) -> Iterator[str]:
        """A fresh Storage Queue, deleted afterwards (with its poison queue); yields its ``azq://`` URL."""
        name = f"recpipe-{uuid.uuid4().hex[:20]}"
        service = QueueServiceClient.from_connection_string(self.connection_string)
        service.create_queue(name)
        try:
            yield f"azq://{ACCOUNT}/{name}"
        finally:
            for each in (name, f"{name}-poison"):
                with contextlib.suppress(Exception):
                    service.delete_queue(each)

    @contextlib.contextmanager
    def container(self) -> Iterator[AzureContainer]:
        """A fresh container, deleted afterwards."""
        name = f"recpipe-{uuid.uuid4().hex[:20]}"
        service, retry = make_blob_service(ACCOUNT, endpoint_url=None, environ=self.environ)
        service.create_container(name)
        try:
            yield AzureContainer(name=name, storage=AzureStorage(service, name, retry=retry), service=service)
        finally:
            with contextlib.suppress(Exception):
                service.delete_container(name)


def azurite_executable() -> str:
    """The Azurite that ``make test`` installed, else one on PATH; the test fails when there is none."""
    if LOCAL_INSTALL.exists():
        return str(LOCAL_INSTALL)
    found = shutil.which("azurite")
    if found is None:
        pytest.fail(
            f"Azurite is not installed: run `make test` (it installs it with npm into "
            f"{LOCAL_INSTALL.parent}), or `npm install -g azurite`",
            pytrace=False,
        )
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(port: int, *, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"Azurite exited ({proc.returncode}): {log.read_text(errors='replace')[-2000:]}",
                pytrace=False,
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    pytest.fail(f"Azurite did not listen on 127.0.0.1:{port} within {START_TIMEOUT_S:.0f} s", pytrace=False)


@contextlib.contextmanager
def run_azurite(workdir: Path) -> Iterator[Azurite]:
    """Start Azurite's blob and queue services on free ports of 127.0.0.1; stop it afterwards."""
    blob, queue, table = free_port(), free_port(), free_port()
    log = workdir / "azurite.log"
    argv = [
        azurite_executable(), "--silent", "--inMemoryPersistence", "--skipApiVersionCheck",
        "--disableProductStyleUrl", "--blobHost", "127.0.0.1", "--blobPort", str(blob),
        "--queueHost", "127.0.0.1", "--queuePort", str(queue),
        "--tableHost", "127.0.0.1", "--tablePort", str(table),
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir
        )
    try:
        wait_for(blob, proc=proc, log=log)
        wait_for(queue, proc=proc, log=log)
        yield Azurite(
            blob_endpoint=f"http://127.0.0.1:{blob}/{ACCOUNT}",
            queue_endpoint=f"http://127.0.0.1:{queue}/{ACCOUNT}",
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


__all__ = ["ACCOUNT", "KEY", "AzureContainer", "Azurite", "run_azurite"]
