"""Agora storageConfig vendors → S3 endpoint, signing region and addressing style; nothing is sent."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from pipeline.agora.profile import parse_profile
from pipeline.agora.vendors import AGORA_VENDORS, VENDORS, AddressingStyle, VendorEndpoint, vendor_endpoint
from pipeline.model.exceptions import ConfigError
from pipeline.storage import S3Storage
from pipeline.storage.locations import location_from_storage_spec

# boto3 also reads os.environ and ~/.aws: keep the developer's settings out of these tests.
pytestmark = pytest.mark.usefixtures("aws_environment")


def row(vendor: int, region: int, url: str | None, name: str, style: AddressingStyle, *, case: str) -> Any:
    """One table row: vendor and region number → the expected endpoint, signing region and style."""
    expected = VendorEndpoint(endpoint_url=url, region=name, addressing_style=style)
    return pytest.param(vendor, region, expected, id=case)


# --- one table per vendor --------------------------------------------------------------------------------

QINIU = [
    row(0, 0, "https://s3.cn-east-1.qiniucs.com", "cn-east-1", "virtual", case="east-china"),
    row(0, 1, "https://s3.cn-north-1.qiniucs.com", "cn-north-1", "virtual", case="north-china"),
    row(0, 2, "https://s3.cn-south-1.qiniucs.com", "cn-south-1", "virtual", case="south-china"),
    row(0, 3, "https://s3.us-north-1.qiniucs.com", "us-north-1", "virtual", case="north-america"),
    row(0, 4, "https://s3.ap-southeast-1.qiniucs.com", "ap-southeast-1", "virtual", case="southeast-asia"),
]
AMAZON = [
    row(1, 0, None, "us-east-1", "virtual", case="us-east-1"),
    row(1, 7, None, "eu-central-1", "virtual", case="eu-central-1"),
    row(1, 15, None, "cn-north-1", "virtual", case="cn-north-1"),
    row(1, 25, None, "eu-south-1", "virtual", case="eu-south-1"),
    row(1, 28, None, "il-central-1", "virtual", case="il-central-1"),
]
ALIBABA = [
    row(2, 0, "https://s3.oss-cn-hangzhou.aliyuncs.com", "cn-hangzhou", "virtual", case="hangzhou"),
    row(2, 3, "https://s3.oss-cn-beijing.aliyuncs.com", "cn-beijing", "virtual", case="beijing"),
    row(2, 7, "https://s3.oss-cn-hongkong.aliyuncs.com", "cn-hongkong", "virtual", case="hongkong"),
    row(2, 10, "https://s3.oss-ap-southeast-1.aliyuncs.com", "ap-southeast-1", "virtual", case="singapore"),
    row(2, 16, "https://s3.oss-eu-central-1.aliyuncs.com", "eu-central-1", "virtual", case="frankfurt"),
    row(2, 25, "https://s3.oss-cn-wulanchabu.aliyuncs.com", "cn-wulanchabu", "virtual", case="wulanchabu"),
]
TENCENT = [
    row(3, 0, "https://cos.ap-beijing-1.myqcloud.com", "ap-beijing-1", "virtual", case="beijing-1"),
    row(3, 1, "https://cos.ap-beijing.myqcloud.com", "ap-beijing", "virtual", case="beijing"),
    row(3, 3, "https://cos.ap-guangzhou.myqcloud.com", "ap-guangzhou", "virtual", case="guangzhou"),
    row(3, 6, "https://cos.ap-shenzhen-fsi.myqcloud.com", "ap-shenzhen-fsi", "virtual", case="shenzhen-fsi"),
    row(
        3,
        15,
        "https://cos.na-siliconvalley.myqcloud.com",
        "na-siliconvalley",
        "virtual",
        case="siliconvalley",
    ),
    row(3, 19, "https://cos.eu-moscow.myqcloud.com", "eu-moscow", "virtual", case="moscow"),
]
KINGSOFT = [
    row(4, 0, "https://kss.ksyuncs.com", "cn-hangzhou", "virtual", case="hangzhou"),
    row(4, 3, "https://ks3-cn-beijing.ksyuncs.com", "cn-beijing", "virtual", case="beijing"),
    row(4, 5, "https://ks3-cn-hk-1.ksyuncs.com", "cn-hk-1", "virtual", case="hongkong"),
    row(4, 6, "https://ks3-jr-beijing.ksyuncs.com", "jr-beijing", "virtual", case="finance-beijing"),
    row(4, 8, "https://ks3-rus.ksyuncs.com", "rus", "virtual", case="russia"),
    row(4, 9, "https://ks3-sgp.ksyuncs.com", "sgp", "virtual", case="singapore"),
]
GOOGLE = [
    row(6, 0, "https://storage.googleapis.com", "auto", "path", case="region-0"),
    row(6, 17, "https://storage.googleapis.com", "auto", "path", case="region-ignored"),
]
HUAWEI = [
    row(7, 0, "https://obs.cn-north-1.myhuaweicloud.com", "cn-north-1", "virtual", case="beijing-1"),
    row(7, 1, "https://obs.cn-north-4.myhuaweicloud.com", "cn-north-4", "virtual", case="beijing-4"),
    row(7, 3, "https://obs.cn-east-3.myhuaweicloud.com", "cn-east-3", "virtual", case="shanghai-1"),
    row(7, 6, "https://obs.ap-southeast-1.myhuaweicloud.com", "ap-southeast-1", "virtual", case="hongkong"),
    row(7, 13, "https://obs.sa-brazil-1.myhuaweicloud.com", "sa-brazil-1", "virtual", case="sao-paulo"),
    row(7, 14, "https://obs.la-south-2.myhuaweicloud.com", "la-south-2", "virtual", case="santiago"),
]
BAIDU = [
    row(8, 0, "https://s3.bj.bcebos.com", "bj", "virtual", case="beijing"),
    row(8, 1, "https://s3.bd.bcebos.com", "bd", "virtual", case="baoding"),
    row(8, 2, "https://s3.su.bcebos.com", "su", "virtual", case="suzhou"),
    row(8, 3, "https://s3.gz.bcebos.com", "gz", "virtual", case="guangzhou"),
    row(8, 4, "http://s3.hkg.bcebos.com", "hkg", "virtual", case="hongkong-http-only"),
    row(8, 6, "http://s3.fwh.bcebos.com", "fwh", "virtual", case="wuhan-http-only"),
]


@pytest.mark.parametrize(("vendor", "region", "expected"), QINIU)
def test_qiniu(vendor: int, region: int, expected: VendorEndpoint) -> None:
    assert vendor_endpoint(vendor, region) == expected


@pytest.mark.parametrize(("vendor", "region", "expected"), AMAZON)
def test_amazon(vendor: int, region: int, expected: VendorEndpoint) -> None:
    assert vendor_endpoint(vendor, region) == expected


@pytest.mark.parametrize(("vendor", "region", "expected"), ALIBABA)
def test_alibaba(vendor: int, region: int, expected: VendorEndpoint) -> None:
    assert vendor_endpoint(vendor, region) == expected


@pytest.mark.parametrize(("vendor", "region", "expected"), TENCENT)
def test_tencent(vendor: int, region: int, expected: VendorEndpoint) -> None:
    assert vendor_endpoint(vendor, region) == expected


@pytest.mark.parametrize(("vendor", "region", "expected"), KINGSOFT)
def test_kingsoft(vendor: int, region: int, expected: VendorEndpoint) -> None:
    assert vendor_endpoint(vendor, region) == expected


@pytest.mark.parametrize(("vendor", "region", "expected"), GOOGLE)
def test_google(vendor: int, region: int, expected: VendorEndpoint) -> None:
    assert vendor_endpoint(vendor, region) == expected


@pytest.mark.parametrize(("vendor", "region", "expected"), HUAWEI)
def test_huawei(vendor: int, region: int, expected: VendorEndpoint) -> None:
    assert vendor_endpoint(vendor, region) == expected


@pytest.mark.parametrize(("vendor", "region", "expected"), BAIDU)
def test_baidu(vendor: int, region: int, expected: VendorEndpoint) -> None:
    assert vendor_endpoint(vendor, region) == expected


@pytest.mark.parametrize(
    ("endpoint", "region"),
    [
        pytest.param("https://minio.example.com:9000", 0, id="region-0"),
        pytest.param("http://10.0.0.5:9000", 7, id="region-ignored"),
    ],
)
def test_self_hosted_is_path_style_with_its_own_endpoint(endpoint: str, region: int) -> None:
    found = vendor_endpoint(11, region, endpoint=endpoint)
    assert found == VendorEndpoint(endpoint_url=endpoint, region=None, addressing_style="path")


def test_every_region_of_every_vendor_has_an_endpoint() -> None:
    for vendor, table in VENDORS.items():
        assert vendor in AGORA_VENDORS
        for region in table.regions or {0: ""}:
            found = vendor_endpoint(vendor, region)
            assert found.region
            if found.endpoint_url is not None:
                parts = urlsplit(found.endpoint_url)
                assert parts.scheme in ("http", "https"), (vendor, region)
                assert parts.hostname, (vendor, region)
                assert "{" not in found.endpoint_url


# --- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vendor", "region", "name"),
    [
        pytest.param(0, 5, "Qiniu Cloud", id="qiniu"),
        pytest.param(1, 26, "Amazon S3", id="amazon"),
        pytest.param(2, 28, "Alibaba Cloud OSS", id="alibaba"),
        pytest.param(3, 20, "Tencent Cloud COS", id="tencent"),
        pytest.param(4, 10, "Kingsoft Cloud KS3", id="kingsoft"),
        pytest.param(7, 16, "Huawei Cloud OBS", id="huawei"),
        pytest.param(8, 8, "Baidu AI Cloud BOS", id="baidu"),
        pytest.param(3, -1, "Tencent Cloud COS", id="negative"),
    ],
)
def test_unknown_region_numbers_name_vendor_and_region(vendor: int, region: int, name: str) -> None:
    with pytest.raises(ConfigError) as err:
        vendor_endpoint(vendor, region)
    message = str(err.value)
    assert message.startswith("storageConfig.region: ")
    assert f"{region} is not a known region number of vendor {vendor} ({name})" in message


@pytest.mark.parametrize("region", [0, 3])
def test_azure_is_not_supported_yet(region: int) -> None:
    with pytest.raises(ConfigError, match=r"vendor 5 is Microsoft Azure Blob Storage.*not supported yet"):
        vendor_endpoint(5, region)


@pytest.mark.parametrize("vendor", [9, 10, 12, 42])
def test_unknown_vendors(vendor: int) -> None:
    with pytest.raises(ConfigError, match=rf"storageConfig.vendor: unknown vendor number {vendor}"):
        vendor_endpoint(vendor, 0)


def test_self_hosted_without_endpoint() -> None:
    with pytest.raises(ConfigError, match=r"vendor 11 .* needs extensionParams\.endpoint"):
        vendor_endpoint(11, 0)


# --- what reaches boto3 ----------------------------------------------------------------------------------


class Sent(Exception):
    """Raised in place of sending: the request was built and signed."""


def sent_request(storage: S3Storage, key: str) -> tuple[str, str]:
    """The URL and Authorization header botocore would send for HeadObject; nothing is sent."""
    seen: dict[str, Any] = {}

    def capture(request: Any, **_: Any) -> None:
        seen.update(url=request.url, auth=request.headers["Authorization"].decode())
        raise Sent

    storage.client.meta.events.register("before-send.s3", capture)
    with pytest.raises(Sent):
        storage.client.head_object(Bucket=storage.bucket, Key=key)
    return seen["url"], seen["auth"]


def profile_storage(storage_config: dict[str, Any]) -> Any:
    """The StorageSpec of a start request with this storageConfig."""
    request = {"recordingFileConfig": {"avFileType": ["hls"]}, "storageConfig": storage_config}
    profile = parse_profile({"cname": "c", "uid": "1", "clientRequest": request})
    assert profile.storage is not None
    return profile.storage


def storage_config(vendor: int, region: int) -> dict[str, Any]:
    return {
        "vendor": vendor,
        "region": region,
        "bucket": "agora-rec",
        "accessKey": "AKEXAMPLE",
        "secretKey": "SKEXAMPLE",
        "fileNamePrefix": ["dir1"],
    }


@pytest.mark.parametrize(
    ("vendor", "region", "endpoint", "style", "url", "scope"),
    [
        pytest.param(
            2,
            3,
            "https://s3.oss-cn-beijing.aliyuncs.com",
            "virtual",
            "https://agora-rec.s3.oss-cn-beijing.aliyuncs.com/dir1/a.m3u8",
            "/cn-beijing/s3/aws4_request",
            id="alibaba",
        ),
        pytest.param(
            3,
            3,
            "https://cos.ap-guangzhou.myqcloud.com",
            "virtual",
            "https://agora-rec.cos.ap-guangzhou.myqcloud.com/dir1/a.m3u8",
            "/ap-guangzhou/s3/aws4_request",
            id="tencent",
        ),
        pytest.param(
            6,
            0,
            "https://storage.googleapis.com",
            "path",
            "https://storage.googleapis.com/agora-rec/dir1/a.m3u8",
            "/auto/s3/aws4_request",
            id="google",
        ),
        pytest.param(
            8,
            6,
            "http://s3.fwh.bcebos.com",
            "virtual",
            "http://agora-rec.s3.fwh.bcebos.com/dir1/a.m3u8",
            "/fwh/s3/aws4_request",
            id="baidu",
        ),
    ],
)
def test_a_profile_reaches_the_client(
    vendor: int, region: int, endpoint: str, style: str, url: str, scope: str
) -> None:
    spec = profile_storage(storage_config(vendor, region))
    location = location_from_storage_spec(spec, environ={})
    storage = location.storage
    assert isinstance(storage, S3Storage)
    assert storage.client.meta.endpoint_url == endpoint
    assert storage.client.meta.config.s3 == {"addressing_style": style}
    sent_url, auth = sent_request(storage, location.prefix + "a.m3u8")
    assert sent_url == url
    assert scope in auth


def test_agora_documentation_example_is_alibaba_beijing() -> None:
    """The start request in Agora's REST reference: vendor 2, region 3."""
    spec = profile_storage(
        {"accessKey": "xxxxxxf", "region": 3, "bucket": "xxxxx", "secretKey": "xxxxx", "vendor": 2}
    )
    storage = location_from_storage_spec(spec, environ={}).storage
    assert isinstance(storage, S3Storage)
    assert storage.client.meta.endpoint_url == "https://s3.oss-cn-beijing.aliyuncs.com"
    assert storage.client.meta.region_name == "cn-beijing"
    assert storage.client.meta.config.s3 == {"addressing_style": "virtual"}


def test_an_explicit_endpoint_is_path_style_but_signed_for_the_vendor_region() -> None:
    spec = profile_storage(storage_config(7, 1))
    location = location_from_storage_spec(spec, endpoint_url="http://127.0.0.1:9", environ={})
    storage = location.storage
    assert isinstance(storage, S3Storage)
    assert storage.client.meta.config.s3 == {"addressing_style": "path"}
    url, auth = sent_request(storage, "dir1/a.m3u8")
    assert url == "http://127.0.0.1:9/agora-rec/dir1/a.m3u8"
    assert "/cn-north-4/s3/aws4_request" in auth


def test_amazon_stays_virtual_host_style_on_aws() -> None:
    spec = profile_storage(storage_config(1, 7))
    storage = location_from_storage_spec(spec, environ={}).storage
    assert isinstance(storage, S3Storage)
    assert storage.client.meta.region_name == "eu-central-1"
    url, _ = sent_request(storage, "dir1/a.m3u8")
    assert urlsplit(url).hostname == "agora-rec.s3.eu-central-1.amazonaws.com"


def test_stores_other_than_aws_get_no_default_upload_checksums() -> None:
    from pipeline.storage.s3 import make_s3_client

    other = make_s3_client(endpoint_url="https://s3.oss-cn-hangzhou.aliyuncs.com", region="cn-hangzhou")
    assert other.meta.config.request_checksum_calculation == "when_required"
    assert other.meta.config.response_checksum_validation == "when_required"
    aws = make_s3_client(endpoint_url=None, region="us-east-1")
    assert aws.meta.config.request_checksum_calculation == "when_supported"
