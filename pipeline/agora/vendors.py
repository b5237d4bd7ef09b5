"""Agora ``storageConfig`` vendors → the S3-compatible endpoint, signing region and addressing style.

Pure data and one lookup, ``vendor_endpoint(vendor, region)``. Region numbers follow Agora's Cloud
Recording docs, "Third-party cloud storage regions" (https://docs.agora.io/en/cloud-recording/reference/region-vendor)
and the ``start`` REST reference (AgoraIO/Docs-Source, ``cloud-recording/reference/rest-api/start.md``); each
vendor's endpoint pattern follows that vendor's "use an AWS S3 SDK" page, cited at its table. A value that
could not be confirmed in a vendor's own documentation is marked "unconfirmed": it is the best-known value,
and ``--endpoint-url`` overrides it.

Addressing style: "virtual" (``bucket.host/key``) where the vendor requires or recommends it, "path"
(``host/bucket/key``) for Google Cloud Storage (bucket names may contain dots, which break the TLS wildcard
of virtual hosts) and for self-hosted stores (MinIO and most gateways expect path style).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pipeline.model.exceptions import ConfigError

AddressingStyle = Literal["virtual", "path"]

# Agora storageConfig.vendor numbers.
AGORA_VENDORS: Mapping[int, str] = {
    0: "Qiniu Cloud",
    1: "Amazon S3",
    2: "Alibaba Cloud OSS",
    3: "Tencent Cloud COS",
    4: "Kingsoft Cloud KS3",
    5: "Microsoft Azure",
    6: "Google Cloud Storage",
    7: "Huawei Cloud OBS",
    8: "Baidu AI Cloud BOS",
    11: "self-hosted S3-compatible storage",
}
VENDOR_AWS = 1
VENDOR_AZURE = 5
VENDOR_S3_COMPATIBLE = 11

# vendor 1, Amazon S3 → AWS region. 17, 23 and 28 are only in the REST reference, 18 and 19 only on the
# region page.
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
    23: "us-gov-east-1",
    24: "ap-southeast-3",
    25: "eu-south-1",
    28: "il-central-1",
}

# vendor 0, Qiniu Kodo → S3 region ID (https://developer.qiniu.com/kodo/4088/s3-access-domainname). Agora's
# current region page no longer lists Qiniu; 0-3 are from the older REST reference, 4 (Southeast Asia) only
# from an Agora sample: unconfirmed.
QINIU_REGIONS: Mapping[int, str] = {
    0: "cn-east-1",  # East China (z0)
    1: "cn-north-1",  # North China (z1)
    2: "cn-south-1",  # South China (z2)
    3: "us-north-1",  # North America (na0)
    4: "ap-southeast-1",  # Southeast Asia (as0)
}

# vendor 2, Alibaba Cloud OSS → region ID, as in the endpoints of
# https://www.alibabacloud.com/help/en/oss/developer-reference/use-amazon-s3-sdks-to-access-oss
ALIBABA_REGIONS: Mapping[int, str] = {
    0: "cn-hangzhou",
    1: "cn-shanghai",
    2: "cn-qingdao",
    3: "cn-beijing",
    4: "cn-zhangjiakou",
    5: "cn-huhehaote",
    6: "cn-shenzhen",
    7: "cn-hongkong",
    8: "us-west-1",
    9: "us-east-1",
    10: "ap-southeast-1",
    11: "ap-southeast-2",
    12: "ap-southeast-3",
    13: "ap-southeast-5",
    14: "ap-northeast-1",
    15: "ap-south-1",
    16: "eu-central-1",
    17: "eu-west-1",
    18: "me-east-1",  # Agora "EU_East_1"; OSS has no eu-east-1, Dubai is the likely match: unconfirmed
    19: "ap-southeast-6",
    20: "cn-heyuan",
    21: "cn-guangzhou",
    22: "cn-chengdu",
    23: "cn-nanjing",
    24: "cn-fuzhou",
    25: "cn-wulanchabu",
    26: "ap-northeast-2",  # Agora "CN_Northeast_2"; OSS has no such region, Seoul is likely: unconfirmed
    27: "ap-southeast-7",  # Agora "CN_Southeast_7"; OSS has no such region, Bangkok is likely: unconfirmed
}

# vendor 3, Tencent Cloud COS → region (https://www.tencentcloud.com/document/product/436/6224).
TENCENT_REGIONS: Mapping[int, str] = {
    0: "ap-beijing-1",
    1: "ap-beijing",
    2: "ap-shanghai",
    3: "ap-guangzhou",
    4: "ap-chengdu",
    5: "ap-chongqing",
    6: "ap-shenzhen-fsi",
    7: "ap-shanghai-fsi",
    8: "ap-beijing-fsi",
    9: "ap-hongkong",
    10: "ap-singapore",
    11: "ap-mumbai",
    12: "ap-seoul",
    13: "ap-bangkok",
    14: "ap-tokyo",
    15: "na-siliconvalley",
    16: "na-ashburn",
    17: "na-toronto",
    18: "eu-frankfurt",
    19: "eu-moscow",
}

# vendor 4, Kingsoft Cloud KS3 → the part of the endpoint host after "ks3-" (hosts as in KS3's SDKs). Agora's
# current region page no longer lists Kingsoft; numbers from the older REST reference. The signing region
# KS3 expects is unconfirmed; the host part is used.
KINGSOFT_REGIONS: Mapping[int, str] = {
    0: "cn-hangzhou",  # legacy host kss.ksyuncs.com (see _KINGSOFT_HOSTS): unconfirmed
    1: "cn-shanghai",
    2: "cn-qingdao",  # host from the pattern only: unconfirmed
    3: "cn-beijing",
    4: "cn-guangzhou",
    5: "cn-hk-1",
    6: "jr-beijing",  # finance cloud
    7: "jr-shanghai",
    8: "rus",  # Agora "NA_Russia_1"
    9: "sgp",  # Agora "NA_Singapore_1"
}
_KINGSOFT_HOSTS: Mapping[str, str] = {"cn-hangzhou": "https://kss.ksyuncs.com"}

# vendor 7, Huawei Cloud OBS → region (https://developer.huaweicloud.com/intl/en-us/endpoint?OBS).
# 10, 11, 12 and 15 are older Latin-America regions that Huawei no longer lists: unconfirmed.
HUAWEI_REGIONS: Mapping[int, str] = {
    0: "cn-north-1",
    1: "cn-north-4",
    2: "cn-east-2",
    3: "cn-east-3",
    4: "cn-south-1",
    5: "cn-southwest-2",
    6: "ap-southeast-1",
    7: "ap-southeast-2",
    8: "ap-southeast-3",
    9: "af-south-1",
    10: "sa-argentina-1",
    11: "sa-peru-1",
    12: "na-mexico-1",
    13: "sa-brazil-1",
    14: "la-south-2",
    15: "sa-chile-1",
}

# vendor 8, Baidu AI Cloud BOS → region (https://cloud.baidu.com/doc/BOS/s/xjwvyq9l4 and
# https://cloud.baidu.com/doc/BOS/s/Hjwvyq84s). 0 is only in the REST reference; Baidu's S3 page does not list
# Singapore (5) or Shanghai (7): their hosts follow the pattern, unconfirmed.
BAIDU_REGIONS: Mapping[int, str] = {
    0: "bj",  # Beijing
    1: "bd",  # Baoding
    2: "su",  # Suzhou
    3: "gz",  # Guangzhou
    4: "hkg",  # Hong Kong
    5: "sin",  # Singapore
    6: "fwh",  # Wuhan (finance)
    7: "fsh",  # Shanghai (finance)
}
# Baidu's S3 page offers Wuhan and Hong Kong over plain HTTP only.
_BAIDU_HOSTS: Mapping[str, str] = {"fwh": "http://s3.fwh.bcebos.com", "hkg": "http://s3.hkg.bcebos.com"}


@dataclass(frozen=True, kw_only=True, slots=True)
class VendorEndpoint:
    """How to reach one vendor region through boto3."""

    endpoint_url: str | None
    """The S3 endpoint; None: AWS itself, chosen by boto3 from ``region``."""
    region: str | None
    """The region requests are signed for; None: boto3's default."""
    addressing_style: AddressingStyle
    """``virtual`` (``bucket.host/key``) or ``path`` (``host/bucket/key``)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class VendorTable:
    """One vendor's region numbers and how its endpoint is built from a region."""

    regions: Mapping[int, str] | None
    """Agora region number → the vendor's region name; None: the vendor has one endpoint for all."""
    endpoint: str | None
    """URL with ``{region}``; None: AWS itself."""
    addressing_style: AddressingStyle
    signing_region: str | None = None
    """The signing region when ``regions`` is None."""
    hosts: Mapping[str, str] = field(default_factory=dict)
    """Endpoint URLs, by region name, that do not follow ``endpoint``."""


VENDORS: Mapping[int, VendorTable] = {
    # https://developer.qiniu.com/kodo/4088/s3-access-domainname: both styles work.
    0: VendorTable(
        regions=QINIU_REGIONS, endpoint="https://s3.{region}.qiniucs.com", addressing_style="virtual"
    ),
    1: VendorTable(regions=AWS_REGIONS, endpoint=None, addressing_style="virtual"),
    # https://www.alibabacloud.com/help/en/oss/developer-reference/use-amazon-s3-sdks-to-access-oss:
    # virtual-hosted style only; signed for the region ID.
    2: VendorTable(
        regions=ALIBABA_REGIONS,
        endpoint="https://s3.oss-{region}.aliyuncs.com",
        addressing_style="virtual",
    ),
    # https://www.tencentcloud.com/document/product/436/32537
    3: VendorTable(
        regions=TENCENT_REGIONS, endpoint="https://cos.{region}.myqcloud.com", addressing_style="virtual"
    ),
    # KS3's S3 API wants virtual-hosted style.
    4: VendorTable(
        regions=KINGSOFT_REGIONS,
        endpoint="https://ks3-{region}.ksyuncs.com",
        addressing_style="virtual",
        hosts=_KINGSOFT_HOSTS,
    ),
    # https://cloud.google.com/storage/docs/interoperability: the XML API with HMAC keys. Agora ignores
    # the region; "auto" as the signing region is common practice, unconfirmed in Google's docs.
    6: VendorTable(
        regions=None,
        endpoint="https://storage.googleapis.com",
        addressing_style="path",
        signing_region="auto",
    ),
    # https://support.huaweicloud.com/intl/en-us/productdesc-obs/obs_03_0152.html
    7: VendorTable(
        regions=HUAWEI_REGIONS,
        endpoint="https://obs.{region}.myhuaweicloud.com",
        addressing_style="virtual",
    ),
    # Baidu's S3 page: both styles work, virtual-hosted is recommended; signed for the short region name.
    8: VendorTable(
        regions=BAIDU_REGIONS,
        endpoint="https://s3.{region}.bcebos.com",
        addressing_style="virtual",
        hosts=_BAIDU_HOSTS,
    ),
}


def vendor_endpoint(vendor: int, region: int, *, endpoint: str | None = None) -> VendorEndpoint:
    """The endpoint, signing region and addressing style for a storageConfig's vendor and region number.

    :param endpoint: ``extensionParams.endpoint`` as a URL, which vendor 11 needs and the others ignore.
    """
    if vendor == VENDOR_S3_COMPATIBLE:
        return _self_hosted(endpoint)
    table = VENDORS.get(vendor)
    if table is None:
        raise ConfigError(_unsupported(vendor))
    if table.regions is None:
        name = table.signing_region
    else:
        name = table.regions.get(region)
        if name is None:
            raise ConfigError(
                f"storageConfig.region: {region} is not a known region number of vendor {vendor} "
                f"({AGORA_VENDORS[vendor]})"
            )
    return VendorEndpoint(
        endpoint_url=_endpoint_url(table, name), region=name, addressing_style=table.addressing_style
    )


def _endpoint_url(table: VendorTable, region: str | None) -> str | None:
    """The table's endpoint for ``region``."""
    if table.endpoint is None:
        return None
    if region is not None and region in table.hosts:
        return table.hosts[region]
    return table.endpoint.format(region=region)


def _self_hosted(endpoint: str | None) -> VendorEndpoint:
    """Vendor 11: the endpoint named in the storageConfig, path-style, boto3's default signing region."""
    if not endpoint:
        raise ConfigError(
            "storageConfig: vendor 11 (self-hosted S3-compatible) needs extensionParams.endpoint, "
            "or give the endpoint with --endpoint-url"
        )
    return VendorEndpoint(endpoint_url=endpoint, region=None, addressing_style="path")


def _unsupported(vendor: int) -> str:
    """Why recpipe cannot reach a vendor's storage."""
    if vendor == VENDOR_AZURE:
        return (
            "storageConfig: vendor 5 is Microsoft Azure Blob Storage, which is not S3-compatible and "
            "is not supported yet; copy the recording to S3 or a local directory, or give an "
            "S3-compatible gateway with --endpoint-url"
        )
    return f"storageConfig.vendor: unknown vendor number {vendor}"
