"""Locations: user-given strings and Agora storageConfigs → storage, prefix and display."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.model.exceptions import ConfigError
from pipeline.storage import LocalStorage, S3Storage
from pipeline.storage.azure import AzureStorage
from pipeline.storage.locations import (
    AWS_REGIONS,
    Location,
    location_from_storage_spec,
    open_destination,
    open_location,
    spec_credentials,
)

# boto3 also reads os.environ and ~/.aws: keep the developer's settings out of these tests.
pytestmark = pytest.mark.usefixtures("aws_environment")

SECRET = "wJalrXUtnFEMI-SECRET-do-not-log"


@dataclass(frozen=True)
class Spec:
    """A stand-in for ``pipeline.agora.profile.StorageSpec``."""

    vendor: int = 1
    region: int = 0
    bucket: str = "agora-bucket"
    access_key: str = ""
    secret_key: str = ""
    sts_token: str = ""
    file_name_prefix: tuple[str, ...] = ("dir1", "dir2")
    endpoint: str | None = None

    @property
    def prefix(self) -> str:
        return "".join(f"{p}/" for p in self.file_name_prefix)


def s3_of(location: Location) -> S3Storage:
    assert isinstance(location.storage, S3Storage)
    return location.storage


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "rec" / "sub").mkdir(parents=True)
    (tmp_path / "rec" / "a_b.m3u8").write_text("#EXTM3U\n")
    (tmp_path / "with space").mkdir()
    return tmp_path


# --- local paths -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "root", "prefix", "display"),
    [
        pytest.param("{t}/rec", "rec", "", "{t}/rec/", id="dir"),
        pytest.param("{t}/rec/", "rec", "", "{t}/rec/", id="dir-slash"),
        pytest.param("{t}/rec/sub/..", "rec", "", "{t}/rec/", id="dir-dotdot"),
        pytest.param("{t}/rec/a_b.m3u8", "rec", "a_b.m3u8", "{t}/rec/a_b.m3u8", id="file"),
        pytest.param("file://{t}/rec", "rec", "", "{t}/rec/", id="file-url"),
        pytest.param("file://localhost{t}/rec", "rec", "", "{t}/rec/", id="file-url-localhost"),
        pytest.param("file://{t}/with%20space", "with space", "", "{t}/with space/", id="file-url-escaped"),
        pytest.param("file://{t}/rec/a_b.m3u8", "rec", "a_b.m3u8", "{t}/rec/a_b.m3u8", id="file-url-file"),
    ],
)
def test_local_locations(tree: Path, text: str, root: str, prefix: str, display: str) -> None:
    location = open_location(text.format(t=tree), environ={})
    assert isinstance(location.storage, LocalStorage)
    assert location.storage.root == (tree / root).resolve()
    assert location.prefix == prefix
    assert location.display == display.format(t=tree)


def test_relative_paths_become_absolute(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree)
    location = open_location("rec", environ={})
    assert location.display == f"{tree}/rec/"
    assert isinstance(location.storage, LocalStorage)
    assert location.storage.root == (tree / "rec").resolve()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("{t}/absent", "does not exist", id="missing-path"),
        pytest.param("file://{t}/absent", "does not exist", id="missing-file-url"),
        pytest.param("file://otherhost/x", "local absolute path", id="file-url-remote-host"),
        pytest.param("", "empty location", id="empty"),
        pytest.param("http://example.com/rec/", "unsupported location scheme http://", id="http"),
        pytest.param("https://example.com/rec/", "unsupported location scheme https://", id="https"),
        pytest.param("gs://bucket/rec/", "unsupported location scheme gs://", id="gs"),
        pytest.param("s3://", "no bucket", id="s3-no-bucket"),
        pytest.param("s3:///rec/", "no bucket", id="s3-empty-bucket"),
        pytest.param("s3://Bad_Bucket/rec/", "not a valid bucket name", id="s3-bad-bucket"),
        pytest.param("s3://ab/", "not a valid bucket name", id="s3-short-bucket"),
        pytest.param("s3://192.168.1.1/", "not a valid bucket name", id="s3-ip-bucket"),
    ],
)
def test_bad_locations_are_config_errors(tree: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_location(text.format(t=tree), environ={})


def test_unsupported_scheme_names_the_supported_forms() -> None:
    with pytest.raises(ConfigError) as err:
        open_location("gs://bucket/x", environ={})
    assert "s3://bucket/prefix" in str(err.value)
    assert "file:///abs/path" in str(err.value)


def test_destination_is_created(tmp_path: Path) -> None:
    location = open_destination(str(tmp_path / "out" / "deeper"), environ={})
    assert (tmp_path / "out" / "deeper").is_dir()
    assert isinstance(location.storage, LocalStorage)
    assert location.prefix == ""
    assert location.display == f"{tmp_path}/out/deeper/"


def test_existing_destination_directory_is_used(tree: Path) -> None:
    location = open_destination(f"file://{tree}/rec", environ={})
    assert isinstance(location.storage, LocalStorage)
    assert location.storage.root == (tree / "rec").resolve()


def test_destination_that_is_a_file_is_a_config_error(tree: Path) -> None:
    with pytest.raises(ConfigError, match="must be a directory"):
        open_destination(str(tree / "rec" / "a_b.m3u8"), environ={})


# --- s3:// -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bucket", "prefix"),
    [
        pytest.param("s3://my-bucket", "my-bucket", "", id="bucket"),
        pytest.param("s3://my-bucket/", "my-bucket", "", id="bucket-slash"),
        pytest.param("s3://my-bucket/dir", "my-bucket", "dir/", id="dir"),
        pytest.param("s3://my-bucket/dir/sub/", "my-bucket", "dir/sub/", id="dir-slash"),
        pytest.param("s3://my.bucket/dir/sid_cname.m3u8", "my.bucket", "dir/sid_cname.m3u8", id="playlist"),
        pytest.param("S3://my-bucket/dir", "my-bucket", "dir/", id="upper-scheme"),
        pytest.param("s3://my-bucket/with space/ünï", "my-bucket", "with space/ünï/", id="odd-chars"),
    ],
)
def test_s3_locations(text: str, bucket: str, prefix: str) -> None:
    location = open_location(text, endpoint_url="http://127.0.0.1:9000", environ={})
    storage = s3_of(location)
    assert storage.bucket == bucket
    assert location.prefix == prefix
    assert location.display == f"s3://{bucket}/{prefix}"


@pytest.mark.parametrize(
    ("flag", "environ", "endpoint"),
    [
        pytest.param(
            "http://flag:1", {"AWS_ENDPOINT_URL_S3": "http://s3env:2"}, "http://flag:1", id="flag-wins"
        ),
        pytest.param(
            None,
            {"AWS_ENDPOINT_URL_S3": "http://s3env:2", "AWS_ENDPOINT_URL": "http://env:3"},
            "http://s3env:2",
            id="s3-variable-beats-generic",
        ),
        pytest.param(None, {"AWS_ENDPOINT_URL": "http://env:3"}, "http://env:3", id="generic-variable"),
        pytest.param(
            None, {"AWS_ENDPOINT_URL_S3": "", "AWS_ENDPOINT_URL": "http://env:3"}, "http://env:3", id="empty"
        ),
    ],
)
def test_s3_endpoint_precedence(flag: str | None, environ: dict[str, str], endpoint: str) -> None:
    location = open_location("s3://bucket/rec/", endpoint_url=flag, environ=environ)
    assert s3_of(location).client.meta.endpoint_url == endpoint


def test_s3_without_endpoint_is_aws() -> None:
    location = open_location("s3://bucket/rec/", environ={})
    assert "amazonaws.com" in s3_of(location).client.meta.endpoint_url


@pytest.mark.parametrize("endpoint", ["ftp://host/", "http://", "http://user:pw@host:9000"])
def test_bad_endpoints_are_config_errors(endpoint: str) -> None:
    with pytest.raises(ConfigError, match="endpoint"):
        open_location("s3://bucket/rec/", endpoint_url=endpoint, environ={})
    with pytest.raises(ConfigError, match="AWS_ENDPOINT_URL"):
        open_location("s3://bucket/rec/", environ={"AWS_ENDPOINT_URL": endpoint})


def test_destination_on_s3_is_not_created_eagerly() -> None:
    location = open_destination("s3://bucket/out", endpoint_url="http://127.0.0.1:9", environ={})
    assert location.prefix == "out/"
    assert location.display == "s3://bucket/out/"


@pytest.mark.parametrize(
    ("dest", "endpoint", "shared"),
    [
        pytest.param("s3://bucket/out/", "http://127.0.0.1:9", True, id="same-bucket"),
        pytest.param("s3://bucket/", "http://127.0.0.1:9/", True, id="same-endpoint-written-differently"),
        pytest.param("s3://other-bucket/out/", "http://127.0.0.1:9", False, id="other-bucket"),
        pytest.param("s3://bucket/out/", "http://127.0.0.2:9", False, id="other-endpoint"),
    ],
)
def test_a_destination_in_the_sources_store_uses_its_storage(dest: str, endpoint: str, shared: bool) -> None:
    """One S3 client for both (its connections, its retry count), made once."""
    source = open_location("s3://bucket/rec/", endpoint_url="http://127.0.0.1:9", environ={})
    location = open_destination(dest, endpoint_url=endpoint, environ={}, source=source)
    assert (location.storage is source.storage) is shared
    assert location.display == dest


def test_a_storage_config_source_shares_with_no_destination() -> None:
    """Its keys are its own: a destination named by URL uses the standard credential chain."""
    spec = Spec(vendor=11, bucket="bucket", endpoint="http://127.0.0.1:9", access_key="AK", secret_key=SECRET)
    source = location_from_storage_spec(spec, environ={})
    location = open_destination(
        "s3://bucket/out/", endpoint_url="http://127.0.0.1:9", environ={}, source=source
    )
    assert location.storage is not source.storage


# --- Agora storageConfig ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "flag", "environ", "endpoint", "region"),
    [
        pytest.param(Spec(vendor=1, region=0), None, {}, None, "us-east-1", id="aws-region-0"),
        pytest.param(Spec(vendor=1, region=7), None, {}, None, "eu-central-1", id="aws-region-7"),
        pytest.param(Spec(vendor=1, region=16), None, {}, None, "cn-northwest-1", id="aws-region-16"),
        pytest.param(
            Spec(vendor=1, region=0),
            None,
            {"AWS_ENDPOINT_URL_S3": "http://s3env:2", "AWS_ENDPOINT_URL": "http://env:3"},
            "http://s3env:2",
            "us-east-1",
            id="aws-environ-endpoint",
        ),
        pytest.param(
            Spec(vendor=11, endpoint="minio.example.com:9000"),
            None,
            {},
            "https://minio.example.com:9000",
            None,
            id="s3-compatible-bare-host",
        ),
        pytest.param(
            Spec(vendor=11, endpoint="http://minio:9000"),
            None,
            {"AWS_ENDPOINT_URL": "http://env:3"},
            "http://minio:9000",
            None,
            id="s3-compatible-beats-environ",
        ),
        pytest.param(
            Spec(vendor=11, endpoint="http://minio:9000"),
            "http://flag:1",
            {},
            "http://flag:1",
            None,
            id="flag-beats-spec-endpoint",
        ),
        pytest.param(
            Spec(vendor=1, region=3), "http://flag:1", {}, "http://flag:1", "us-west-2", id="flag-aws"
        ),
        pytest.param(
            Spec(vendor=2), "http://flag:1", {}, "http://flag:1", "cn-hangzhou", id="flag-keeps-vendor-region"
        ),
        pytest.param(
            Spec(vendor=3),
            None,
            {"AWS_ENDPOINT_URL": "http://env:3"},
            "https://cos.ap-beijing-1.myqcloud.com",
            "ap-beijing-1",
            id="vendor-beats-environ",
        ),
        pytest.param(
            Spec(vendor=7, region=1, endpoint="ftp://ignored"),
            None,
            {},
            "https://obs.cn-north-4.myhuaweicloud.com",
            "cn-north-4",
            id="other-vendors-ignore-extension-endpoint",
        ),
        pytest.param(
            Spec(vendor=2, region=99), "http://flag:1", {}, "http://flag:1", None, id="flag-any-region"
        ),
    ],
)
def test_storage_spec_mapping(
    spec: Spec, flag: str | None, environ: dict[str, str], endpoint: str | None, region: str | None
) -> None:
    location = location_from_storage_spec(spec, endpoint_url=flag, environ=environ)
    client = s3_of(location).client
    if endpoint is None:
        assert "amazonaws.com" in client.meta.endpoint_url
    else:
        assert client.meta.endpoint_url == endpoint
    if region is not None:
        assert client.meta.region_name == region
    assert location.prefix == "dir1/dir2/"
    assert location.display == "s3://agora-bucket/dir1/dir2/"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(Spec(vendor=5), "needs the storage account in accessKey", id="azure-without-account"),
        pytest.param(
            Spec(vendor=5, access_key="Bad-Account"), "not a storage account name", id="azure-account"
        ),
        pytest.param(
            Spec(vendor=5, access_key="acct1", bucket="a_b"), "not a container name", id="container"
        ),
        pytest.param(
            Spec(vendor=2, region=28), r"28 is not a known region number of vendor 2 \(Alibaba", id="alibaba"
        ),
        pytest.param(Spec(vendor=11), "needs extensionParams.endpoint", id="s3-compatible-no-endpoint"),
        pytest.param(Spec(vendor=11, endpoint="ftp://x"), "extensionParams.endpoint", id="bad-endpoint"),
        pytest.param(Spec(vendor=42), "unknown vendor number 42", id="unknown-vendor"),
        pytest.param(Spec(vendor=1, region=26), r"26 .* vendor 1 \(Amazon S3\)", id="unknown-region"),
        pytest.param(Spec(bucket=""), "bucket name is missing", id="no-bucket"),
        pytest.param(Spec(bucket="Bad_Name"), "not a valid bucket name", id="bad-bucket"),
    ],
)
def test_storage_spec_errors(spec: Spec, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        location_from_storage_spec(spec, environ={})


def test_region_table_follows_agora() -> None:
    assert [AWS_REGIONS[i] for i in (0, 4, 10, 14, 17)] == [
        "us-east-1",
        "eu-west-1",
        "ap-northeast-1",
        "ap-south-1",
        "us-gov-west-1",
    ]


@pytest.mark.parametrize(
    ("access", "secret", "environ", "used"),
    [
        pytest.param("AK", SECRET, {}, True, id="spec-keys"),
        pytest.param("AK", SECRET, {"AWS_ACCESS_KEY_ID": "env"}, False, id="environment-wins"),
        pytest.param("AK", SECRET, {"AWS_PROFILE": "ops"}, False, id="profile-wins"),
        pytest.param("AK", "", {}, False, id="half-keys"),
        pytest.param("", "", {}, False, id="no-keys"),
    ],
)
def test_spec_credentials(access: str, secret: str, environ: dict[str, str], used: bool) -> None:
    expected = (access, secret, "") if used else None
    assert spec_credentials(Spec(access_key=access, secret_key=secret), environ=environ) == expected


def test_spec_keys_reach_the_client_but_never_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    spec = Spec(vendor=11, endpoint="http://minio:9000", access_key="AKIDEXAMPLE", secret_key=SECRET)
    with caplog.at_level(logging.DEBUG):
        location = location_from_storage_spec(spec, environ={})
    credentials = s3_of(location).client._request_signer._credentials  # no public accessor
    assert (credentials.access_key, credentials.secret_key) == ("AKIDEXAMPLE", SECRET)
    assert SECRET not in caplog.text
    assert SECRET not in repr(location)


def test_sts_token_reaches_the_client_as_the_session_token(caplog: pytest.LogCaptureFixture) -> None:
    token = "FwoGZXIvYXdzEXAMPLE-session-token"
    spec = Spec(
        vendor=11, endpoint="http://minio:9000", access_key="ASIA", secret_key=SECRET, sts_token=token
    )
    with caplog.at_level(logging.DEBUG):
        location = location_from_storage_spec(spec, environ={})
    credentials = s3_of(location).client._request_signer._credentials
    assert credentials.token == token
    assert token not in caplog.text


KEYED = {"AZURE_STORAGE_KEY": "c2VjcmV0"}


@pytest.mark.parametrize(
    ("text", "account", "container", "prefix", "endpoint"),
    [
        ("az://acct1/rec/agora/2026", "acct1", "rec", "agora/2026/", "https://acct1.blob.core.windows.net/"),
        ("az://acct1/rec", "acct1", "rec", "", "https://acct1.blob.core.windows.net/"),
        (
            "az://acct1/rec/a/sid_c.m3u8",
            "acct1",
            "rec",
            "a/sid_c.m3u8",
            "https://acct1.blob.core.windows.net/",
        ),
        (
            "https://acct1.blob.core.windows.net/rec/agora/",
            "acct1",
            "rec",
            "agora/",
            "https://acct1.blob.core.windows.net/",
        ),
        (
            "https://acct1.blob.core.chinacloudapi.cn/rec/x",
            "acct1",
            "rec",
            "x/",
            "https://acct1.blob.core.chinacloudapi.cn/",
        ),
    ],
)
def test_azure_locations(text: str, account: str, container: str, prefix: str, endpoint: str) -> None:
    location = open_location(text, environ=KEYED)
    storage = location.storage
    assert isinstance(storage, AzureStorage)
    assert (storage.account, storage.container, location.prefix) == (account, container, prefix)
    assert location.display == f"az://{account}/{container}/{prefix}"
    assert storage.url == f"az://{account}/{container}"
    assert storage.service_url == endpoint


def test_an_azure_endpoint_flag_names_where_the_account_is_served() -> None:
    location = open_destination(
        "az://devstoreaccount1/out/", endpoint_url="http://127.0.0.1:10000/devstoreaccount1", environ=KEYED
    )
    assert isinstance(location.storage, AzureStorage)
    assert location.storage.service_url == "http://127.0.0.1:10000/devstoreaccount1/"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("az://Acct/rec/", "not a storage account name"),
        ("az://acct1/", "not a container name"),
        ("az://acct1/Rec_1/", "not a container name"),
        ("az://acct1/rec/?sv=2024&sig=abc", "no credentials, query or fragment"),
        ("https://user:pw@acct1.blob.core.windows.net/rec/", "no credentials, query or fragment"),
        ("https://example.com/rec/", "unsupported location scheme https://"),
    ],
)
def test_bad_azure_locations(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        open_location(text, environ=KEYED)
    assert "sig=" not in str(info.value)  # a SAS in a URL is not echoed back
    assert "pw" not in str(info.value)


def test_a_vendor_5_storage_config_is_an_azure_container() -> None:
    spec = Spec(vendor=5, bucket="rec", access_key="acct1", secret_key="a2V5")
    location = location_from_storage_spec(spec, environ={})
    assert isinstance(location.storage, AzureStorage)
    assert (location.storage.account, location.storage.container) == ("acct1", "rec")
    assert location.prefix == "dir1/dir2/"
    assert location.display == "az://acct1/rec/dir1/dir2/"
    other = location_from_storage_spec(spec, environ={"AZURE_STORAGE_ACCOUNT": "acct2"})
    assert isinstance(other.storage, AzureStorage)
    assert other.storage.account == "acct2"


def test_a_connection_string_for_another_account_is_refused() -> None:
    connection = "AccountName=other1;AccountKey=a2V5;EndpointSuffix=core.windows.net"
    environ = {"AZURE_STORAGE_CONNECTION_STRING": connection}
    with pytest.raises(ConfigError, match="for the account 'other1', not 'acct1'") as info:
        open_location("az://acct1/rec/", environ=environ)
    assert "a2V5" not in str(info.value)
