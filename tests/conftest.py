"""Shared fixtures: ffmpeg, real S3 (moto) and Azure (Azurite) servers on loopback, a fresh bucket or
container per test, every storage."""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

from pipeline.storage import LocalStorage, S3Storage, Storage
from pipeline.storage.s3 import make_s3_client
from stages.ffmpeg import find_ffmpeg
from tests.azurite import AzureContainer, Azurite, run_azurite
from tests.moto_server import running_moto

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Property tests check behaviour, not speed: on a loaded two-core CI machine one stalled draw (2.4 s once,
# against milliseconds) failed a test on hypothesis's timing checks. Timings belong to ``make bench``.
settings.register_profile("recpipe", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("recpipe")

# Variables that would point boto3 somewhere other than the test server, or at real credentials.
_AMBIENT_AWS = (
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
)


@dataclass(frozen=True)
class S3Bucket:
    """A bucket on the test server and a client for it."""

    name: str
    endpoint: str
    client: S3Client

    def upload_directory(self, directory: Path, *, prefix: str) -> None:
        """Upload every file of ``directory`` (not its subdirectories) under ``prefix``."""
        for path in sorted(p for p in directory.iterdir() if p.is_file()):
            self.put_file(path, f"{prefix}{path.name}")

    def put_file(self, path: Path, key: str) -> None:
        """Store the file at ``path`` as ``key`` (one PutObject: the test files are small)."""
        self.client.put_object(Bucket=self.name, Key=key, Body=path.read_bytes())

    def get_file(self, key: str, path: Path) -> Path:
        """Write object ``key`` to ``path``."""
        path.write_bytes(self.client.get_object(Bucket=self.name, Key=key)["Body"].read())
        return path


@pytest.fixture(autouse=True)
def _nothing_stays_frozen() -> Iterator[None]:
    """A command run in this process (click's test runner) freezes the heap as a one-run process does
    (``pipeline.run.collector``); the suite's own garbage must stay collectable."""
    yield
    if gc.get_freeze_count():
        gc.unfreeze()


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """recpipe's cache (ffmpeg's versions) in a directory of the session's, not the user's home: runs
    started by the tests (in process or as ``recpipe``) share it."""
    cache = tmp_path_factory.mktemp("xdg-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(cache))
        yield cache


@pytest.fixture(scope="session")
def ffmpeg_exe() -> str:
    """The ffmpeg binary recpipe would use (``$RECPIPE_FFMPEG``, PATH, else imageio-ffmpeg's)."""
    return find_ffmpeg(os.environ)


@pytest.fixture(scope="session")
def aws_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fake credentials and no ambient AWS settings (profile, endpoints, config files) for the session."""
    no_config = tmp_path_factory.mktemp("aws") / "none"
    with pytest.MonkeyPatch.context() as mp:
        for name in _AMBIENT_AWS:
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_CONFIG_FILE", str(no_config))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(no_config))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield


@pytest.fixture(scope="session")
def s3_server(aws_environment: None) -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 for the whole session (with ``aws_environment``); yields its URL."""
    with running_moto() as url:
        yield url


@pytest.fixture(scope="session")
def s3_client(s3_server: str) -> S3Client:
    """One boto3 client for the test server, shared like the pipeline shares its client."""
    return make_s3_client(endpoint_url=s3_server, region="us-east-1")


@pytest.fixture
def s3_bucket(s3_server: str, s3_client: S3Client) -> Iterator[S3Bucket]:
    """A new, uniquely named bucket on the test server; emptied and deleted afterwards."""
    client = s3_client
    name = f"recpipe-test-{uuid.uuid4().hex}"
    client.create_bucket(Bucket=name)
    try:
        yield S3Bucket(name=name, endpoint=s3_server, client=client)
    finally:
        _delete_bucket(client, name)


def _delete_bucket(client: S3Client, name: str) -> None:
    """Abort unfinished uploads, delete every object, then the bucket."""
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=name):
        for upload in page.get("Uploads", []):
            client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
    client.delete_bucket(Bucket=name)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """Azurite (blob and queue) on 127.0.0.1 for the whole session; ``make test`` installs it with npm.
    A test that needs it fails, loudly, when it cannot run — it is never skipped."""
    with run_azurite(tmp_path_factory.mktemp("azurite")) as server:
        yield server


@pytest.fixture
def azure_container(azurite: Azurite) -> Iterator[AzureContainer]:
    """A new, uniquely named container on Azurite; deleted afterwards."""
    with azurite.container() as container:
        yield container


@pytest.fixture(
    params=[
        pytest.param("local", id="local"),
        pytest.param("s3", id="s3", marks=pytest.mark.integration),
        pytest.param("azure", id="azure", marks=pytest.mark.integration),
    ]
)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """Each Storage implementation in turn: a directory under tmp_path, a fresh S3 bucket, a fresh
    Azure container."""
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    if request.param == "azure":
        container: AzureContainer = request.getfixturevalue("azure_container")
        return container.storage
    bucket: S3Bucket = request.getfixturevalue("s3_bucket")
    return S3Storage(bucket.client, bucket.name)
