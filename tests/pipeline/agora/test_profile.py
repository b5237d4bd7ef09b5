from __future__ import annotations

import copy
import dataclasses
import json
import logging
from pathlib import Path

import pytest

from pipeline.agora.profile import (
    Profile,
    StorageSpec,
    Transcoding,
    load_profile,
    parse_av_file_types,
    parse_profile,
)
from pipeline.model.exceptions import ConfigError

# Agora's documentation example of a start request body.
AGORA_EXAMPLE = """
{"cname": "httpClient463224", "uid": "527841", "clientRequest": {"token": "tok", "recordingConfig":
{"maxIdleTime": 30, "streamTypes": 2, "audioProfile": 1, "channelType": 0, "videoStreamType": 0,
"transcodingConfig": {"height": 640, "width": 360, "bitrate": 500, "fps": 15, "mixedVideoLayout": 1,
"backgroundColor": "#FF0000"}, "subscribeVideoUids": ["123", "456"], "subscribeAudioUids": ["123", "456"],
"subscribeUidGroup": 0}, "recordingFileConfig": {"avFileType": ["hls"]}, "storageConfig": {"accessKey":
"xxxxxxf", "region": 3, "bucket": "xxxxx", "secretKey": "xxxxx", "vendor": 2, "fileNamePrefix":
["directory1", "directory2"]}}}
"""

SECRETS = {
    "token": "TOKEN-007c8a1f",
    "accessKey": "AKIA-5ECRET-ACCESS",
    "secretKey": "sk-5ECRET-KEY-0041",
    "secret": "DECRYPT-5ECRET-99",
    "salt": "U0FMVC1TRUNSRVQ=",
}

DELETE = object()


def example() -> dict[str, object]:
    """A fresh copy of Agora's example body."""
    data: dict[str, object] = json.loads(AGORA_EXAMPLE)
    return data


def with_secrets() -> dict[str, object]:
    """The example with recognisable secret values, decryption settings and extension params."""
    data = example()
    request = data["clientRequest"]
    assert isinstance(request, dict)
    request["token"] = SECRETS["token"]
    request["storageConfig"].update(accessKey=SECRETS["accessKey"], secretKey=SECRETS["secretKey"])
    request["recordingConfig"].update(decryptionMode=1, secret=SECRETS["secret"], salt=SECRETS["salt"])
    return data


def changed(path: str, value: object, *, base: dict[str, object] | None = None) -> dict[str, object]:
    """A copy of ``base`` (default: the example) with the dotted ``path`` set to ``value`` or deleted."""
    data = copy.deepcopy(base if base is not None else example())
    *parents, last = path.split(".")
    node: object = data
    for key in parents:
        assert isinstance(node, dict)
        node = node.setdefault(key, {})
    assert isinstance(node, dict)
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return data


# --- what loads -------------------------------------------------------------------------------------------


def test_agora_example_loads() -> None:
    profile = parse_profile(example())
    assert profile == Profile(
        cname="httpClient463224",
        uid="527841",
        stream_types=2,
        transcoding=Transcoding(width=360, height=640, fps=15, bitrate=500),
        av_file_types=("hls",),
        storage=StorageSpec(
            vendor=2,
            region=3,
            bucket="xxxxx",
            access_key="xxxxxxf",
            secret_key="xxxxx",
            file_name_prefix=("directory1", "directory2"),
            endpoint=None,
        ),
        max_idle_time=30,
    )
    assert profile.storage is not None
    assert profile.storage.prefix == "directory1/directory2/"
    assert profile.wants_mp4 is False


def test_client_request_only_loads() -> None:
    profile = parse_profile(example()["clientRequest"])
    assert profile.cname is None
    assert profile.uid is None
    assert profile == dataclasses.replace(parse_profile(example()), cname=None, uid=None)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param({}, Profile(), id="empty-client-request"),
        pytest.param({"cname": "room 1"}, Profile(cname="room 1"), id="body-without-client-request"),
        pytest.param({"uid": 527841}, Profile(uid="527841"), id="uid-as-number"),
        pytest.param({"uid": "4294967295"}, Profile(uid="4294967295"), id="max-uid"),
        pytest.param(
            {"recordingFileConfig": {"avFileType": ["mp4", "hls"]}},
            Profile(av_file_types=("hls", "mp4")),
            id="mp4-any-order",
        ),
        pytest.param({"recordingConfig": {"streamTypes": 0}}, Profile(stream_types=0), id="audio-only"),
        pytest.param({"recordingConfig": {"streamTypes": 1}}, Profile(stream_types=1), id="video-only"),
        pytest.param(
            {"recordingConfig": {"transcodingConfig": {}}},
            Profile(transcoding=Transcoding()),
            id="empty-transcoding",
        ),
    ],
)
def test_parse_profile_values(data: dict[str, object], expected: Profile) -> None:
    assert parse_profile(data) == expected


def test_wants_mp4() -> None:
    profile = parse_profile(changed("clientRequest.recordingFileConfig.avFileType", ["hls", "mp4"]))
    assert profile.av_file_types == ("hls", "mp4")
    assert profile.wants_mp4 is True


def test_every_documented_field_loads() -> None:
    request = {
        "token": "t",
        "recordingConfig": {
            "channelType": 1,
            "decryptionMode": 5,
            "secret": "s",
            "salt": "c2FsdA==",
            "maxIdleTime": 120,
            "streamTypes": 2,
            "streamMode": "original",
            "audioProfile": 2,
            "videoStreamType": 1,
            "transcodingConfig": {
                "width": 1280,
                "height": 720,
                "fps": 30,
                "bitrate": 2260,
                "maxResolutionUid": "1",
                "mixedVideoLayout": 3,
                "backgroundColor": "#00ff00",
                "backgroundImage": "https://example.com/bg.png",
                "defaultUserBackgroundImage": "https://example.com/user.png",
                "layoutConfig": [
                    {
                        "uid": "1",
                        "x_axis": 0,
                        "y_axis": 0,
                        "width": 0.5,
                        "height": 1,
                        "alpha": 1.0,
                        "render_mode": 0,
                    }
                ],
                "backgroundConfig": [
                    {"uid": "2", "image_url": "https://example.com/2.png", "render_mode": 1}
                ],
            },
            "subscribeAudioUids": ["#allstream#"],
            "unSubscribeAudioUids": ["3"],
            "subscribeVideoUids": ["1", "2"],
            "unSubscribeVideoUids": ["4"],
            "unsubscribeAudioUids": ["5"],
            "unsubscribeVideoUids": ["6"],
            "subscribeUidGroup": 1,
            "privateParams": {"correctEXTINF": True},
        },
        "recordingFileConfig": {"avFileType": ["hls", "mp4"]},
        "storageConfig": {
            "vendor": 11,
            "region": 0,
            "bucket": "recordings",
            "accessKey": "a",
            "secretKey": "b",
            "stsToken": "session",
            "stsExpiration": 1767225600,
            "fileNamePrefix": ["agora", "2024-01"],
            "extensionParams": {"sse": "aws:kms", "tag": "team=rtc", "endpoint": "https://s3.example.com"},
        },
        "snapshotConfig": {"captureInterval": 10, "fileType": ["jpg"]},
        "extensionServiceConfig": {
            "errorHandlePolicy": "error_abort",
            "apiVersion": "v1",
            "extensionServices": [
                {
                    "serviceName": "web_recorder_service",
                    "errorHandlePolicy": "error_abort",
                    "serviceParam": {
                        "url": "https://example.com/board",
                        "audioProfile": 2,
                        "videoWidth": 1280,
                        "videoHeight": 720,
                        "maxRecordingHour": 72,
                        "videoBitrate": 2000,
                        "videoFps": 30,
                        "mobile": False,
                        "maxVideoDuration": 60,
                        "onhold": False,
                        "readyTimeout": 10,
                    },
                }
            ],
        },
        "appsCollection": {"combinationPolicy": "postpone_transcoding"},
        "transcodeOptions": {
            "transConfig": {"transMode": "audioMix"},
            "container": {"format": "mp3"},
            "audio": {"sampleRate": "48000", "bitrate": "48000", "channels": "2"},
        },
    }
    profile = parse_profile({"cname": "c", "uid": 1, "clientRequest": request})
    assert profile.wants_mp4
    assert profile.mode == "web"
    assert profile.web_mp4_minutes == 60
    assert profile.stream_mode == "original"
    assert profile.max_idle_time == 120
    assert profile.transcoding == Transcoding(width=1280, height=720, fps=30, bitrate=2260)
    assert profile.storage == StorageSpec(
        vendor=11,
        region=0,
        bucket="recordings",
        access_key="a",
        secret_key="b",
        sts_token="session",
        file_name_prefix=("agora", "2024-01"),
        endpoint="https://s3.example.com",
        sse="aws:kms",
        tag="team=rtc",
    )
    assert profile.storage.prefix == "agora/2024-01/"


# The start request in Agora's composite recording guide, verbatim but for the quotes its ``uid`` key lacks
# there (a JavaScript-style key, not JSON) and its placeholder values.
AGORA_GUIDE_EXAMPLE = """
{
    "uid": "",
    "cname": "httpClient463224",
    "clientRequest": {
        "token": "<token if any>",
        "recordingConfig": {
            "maxIdleTime": 30,
            "streamTypes": 2,
            "audioProfile": 1,
            "channelType": 0,
            "videoStreamType": 1,
            "transcodingConfig": {
                "height": 640,
                "width": 360,
                "bitrate": 500,
                "fps": 15,
                "mixedVideoLayout": 1,
                "backgroundColor": "#FF0000"
                        },
            "subscribeVideoUids": ["123","456"],
            "subscribeAudioUids": ["123","456"],
            "subscribeUidGroup": 0
       },
        "storageConfig": {
            "accessKey": "xxxxxxf",
            "region": 3,
            "bucket": "xxxxx",
            "secretKey": "xxxxx",
            "vendor": 2,
            "fileNamePrefix": ["directory1","directory2"]
       }
   }
}
"""


def test_the_composite_guide_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "start.json"
    path.write_text(AGORA_GUIDE_EXAMPLE, encoding="utf-8")
    profile = load_profile(path)
    assert profile.uid is None  # the recorder's own uid: "" in the guide, and not used
    assert profile.cname == "httpClient463224"
    assert profile.transcoding == Transcoding(width=360, height=640, fps=15, bitrate=500)
    assert profile.storage is not None
    assert (profile.storage.vendor, profile.storage.region) == (2, 3)
    assert profile.storage.prefix == "directory1/directory2/"


def test_mp3_files_of_individual_v2() -> None:
    profile = parse_profile(changed("clientRequest.recordingFileConfig.avFileType", ["mp3"]))
    assert profile.av_file_types == ("mp3",)
    assert profile.wants_mp4 is False


def web_profile(cname: str, **param: object) -> dict[str, object]:
    """The web page example with another cname and extra ``serviceParam`` fields."""
    doc = json.loads(json.dumps(WEB_PAGE))
    doc["cname"] = cname
    doc["clientRequest"]["extensionServiceConfig"]["extensionServices"][0]["serviceParam"].update(param)
    return doc


@pytest.mark.parametrize(
    ("cname", "file_cname"),
    [
        pytest.param("web-room", "web-room", id="plain"),
        pytest.param("class_1.a+b", "class-1-a-b", id="underscore-dot-plus"),
        pytest.param("a!@#$%^&*()+_.=[]{}~|,;:?<>z", "a" + "-" * 26 + "z", id="every-replaced-character"),
        pytest.param("Room 7 - Maths", "Room 7 - Maths", id="space-and-hyphen-kept"),
    ],
)
def test_web_page_cname_in_file_names(cname: str, file_cname: str) -> None:
    profile = parse_profile(web_profile(cname))
    assert profile.cname == cname
    assert profile.file_cname == file_cname


def test_web_page_cname_may_be_1024_bytes_but_not_more() -> None:
    assert parse_profile(web_profile("w" * 1024)).file_cname == "w" * 1024
    with pytest.raises(ConfigError, match="cname: expected a channel name of 1 to 1024"):
        parse_profile(web_profile("w" * 1025))
    with pytest.raises(ConfigError, match=r"cname: .*longer than 64 bytes"):
        parse_profile(changed("cname", "c" * 65))  # composite: Agora's 64-byte channel names


def test_composite_cname_is_written_as_it_is() -> None:
    profile = parse_profile(changed("cname", "class_1.a+b"))
    assert profile.file_cname == "class_1.a+b"


@pytest.mark.parametrize(
    ("minutes", "used", "seconds"),
    [
        pytest.param(None, None, 7200.0, id="default-120"),
        pytest.param(30, 30, 1800.0, id="least"),
        pytest.param(240, 240, 14400.0, id="most"),
        pytest.param(20, None, 7200.0, id="below-range"),
        pytest.param("90", None, 7200.0, id="not-a-number"),
    ],
)
def test_web_mp4_split_follows_max_video_duration(minutes: object, used: int | None, seconds: float) -> None:
    extra = {} if minutes is None else {"maxVideoDuration": minutes}
    profile = parse_profile(web_profile("web-room", **extra))
    assert profile.web_mp4_minutes == used
    assert profile.max_mp4_seconds == seconds
    assert parse_profile(example()).max_mp4_seconds is None  # composite: the setting decides


# --- what does not ------------------------------------------------------------------------------------------

R = "clientRequest.recordingConfig"
S = "clientRequest.storageConfig"
T = "clientRequest.recordingConfig.transcodingConfig"


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        pytest.param(f"{R}.streamTypes", "two", f"{R}.streamTypes", id="streamTypes-string"),
        pytest.param(f"{R}.streamTypes", 3, f"{R}.streamTypes", id="streamTypes-3"),
        pytest.param(f"{R}.streamTypes", True, f"{R}.streamTypes", id="streamTypes-bool"),
        pytest.param(f"{R}.streamTypes", 2.0, f"{R}.streamTypes", id="streamTypes-float"),
        pytest.param(f"{R}.streamTypes", None, f"{R}.streamTypes", id="streamTypes-null"),
        pytest.param(f"{R}.maxIdleTime", 0, f"{R}.maxIdleTime", id="maxIdleTime-0"),
        pytest.param(f"{R}.maxIdleTime", "30", f"{R}.maxIdleTime", id="maxIdleTime-string"),
        pytest.param(f"{R}.streamMode", 1, f"{R}.streamMode", id="streamMode-number"),
        pytest.param(f"{R}.transcodingConfig", [], T, id="transcoding-array"),
        pytest.param(f"{T}.width", "360", f"{T}.width", id="width-string"),
        pytest.param(f"{T}.height", 0, f"{T}.height", id="height-0"),
        pytest.param(f"{T}.fps", 15.5, f"{T}.fps", id="fps-float"),
        pytest.param(f"{T}.bitrate", True, f"{T}.bitrate", id="bitrate-bool"),
        pytest.param(
            "clientRequest.recordingFileConfig.avFileType", "hls", "avFileType", id="avFileType-string"
        ),
        pytest.param(
            "clientRequest.recordingFileConfig.avFileType", ["mp4"], "avFileType", id="avFileType-no-hls"
        ),
        pytest.param("clientRequest.recordingFileConfig.avFileType", [], "avFileType", id="avFileType-empty"),
        pytest.param(
            "clientRequest.recordingFileConfig.avFileType",
            ["hls", "hls"],
            "avFileType",
            id="avFileType-twice",
        ),
        pytest.param(
            "clientRequest.recordingFileConfig.avFileType",
            ["hls", "MP4"],
            "avFileType",
            id="avFileType-upper",
        ),
        pytest.param(f"{S}.vendor", "2", f"{S}.vendor", id="vendor-string"),
        pytest.param(f"{S}.region", -1, f"{S}.region", id="region-negative"),
        pytest.param(f"{S}.bucket", "", f"{S}.bucket", id="bucket-empty"),
        pytest.param(f"{S}.bucket", DELETE, f"{S}.bucket", id="bucket-missing"),
        pytest.param(f"{S}.vendor", DELETE, f"{S}.vendor", id="vendor-missing"),
        pytest.param(f"{S}.fileNamePrefix", "dir", f"{S}.fileNamePrefix", id="prefix-string"),
        pytest.param(f"{S}.fileNamePrefix", ["a/b"], f"{S}.fileNamePrefix[0]", id="prefix-slash"),
        pytest.param(f"{S}.fileNamePrefix", ["a", ""], f"{S}.fileNamePrefix[1]", id="prefix-empty"),
        pytest.param(f"{S}.fileNamePrefix", ["."], f"{S}.fileNamePrefix[0]", id="prefix-dot"),
        pytest.param(f"{S}.fileNamePrefix", ["a", ".."], f"{S}.fileNamePrefix[1]", id="prefix-dotdot"),
        pytest.param(f"{S}.fileNamePrefix", ["a\\b"], f"{S}.fileNamePrefix[0]", id="prefix-backslash"),
        pytest.param(f"{S}.fileNamePrefix", ["a\nb"], f"{S}.fileNamePrefix[0]", id="prefix-newline"),
        pytest.param(f"{S}.fileNamePrefix", [1], f"{S}.fileNamePrefix[0]", id="prefix-number"),
        pytest.param(
            f"{S}.extensionParams", {"endpoint": 1}, f"{S}.extensionParams.endpoint", id="endpoint-number"
        ),
        pytest.param(
            "clientRequest.extensionServiceConfig",
            {"extensionServices": [{"serviceParam": []}]},
            "clientRequest.extensionServiceConfig.extensionServices[0].serviceParam",
            id="serviceParam-array",
        ),
        pytest.param("clientRequest", [], "clientRequest", id="request-array"),
        pytest.param("cname", "", "cname", id="cname-empty"),
        pytest.param("cname", "a/b", "cname", id="cname-slash"),
        pytest.param("cname", "c" * 65, "cname", id="cname-too-long"),
        pytest.param("cname", 123, "cname", id="cname-number"),
    ],
)
def test_parse_profile_rejects(path: str, value: object, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_profile(changed(path, value), source="start.json")
    message = str(info.value)
    assert message.startswith("start.json: ")
    assert f"{field}:" in message


UNUSED_OR_UNKNOWN = [
    pytest.param(f"{R}.channelType", 2, f"{R}.channelType", id="channelType-2"),
    pytest.param(f"{R}.audioProfile", 3, f"{R}.audioProfile", id="audioProfile-3"),
    pytest.param(f"{R}.videoStreamType", False, f"{R}.videoStreamType", id="videoStreamType-bool"),
    pytest.param(f"{R}.decryptionMode", -1, f"{R}.decryptionMode", id="decryptionMode-negative"),
    pytest.param(f"{R}.subscribeVideoUids", "123", f"{R}.subscribeVideoUids", id="uids-not-array"),
    pytest.param(f"{R}.subscribeAudioUids", ["123", 456], f"{R}.subscribeAudioUids[1]", id="uid-number"),
    pytest.param(f"{R}.subscribeUidGroup", "0", f"{R}.subscribeUidGroup", id="uidGroup-string"),
    pytest.param(f"{R}.recordMode", 1, f"{R}.recordMode", id="unknown-recording-field"),
    pytest.param(f"{T}.mixedVideoLayout", 4, f"{T}.mixedVideoLayout", id="layout-4"),
    pytest.param(f"{T}.backgroundColor", "red", f"{T}.backgroundColor", id="color-name"),
    pytest.param(f"{T}.backgroundColor", "#FF00001", f"{T}.backgroundColor", id="color-7-digits"),
    pytest.param(f"{T}.layoutConfig", [{"uid": "1", "x_axis": 1.5}], f"{T}.layoutConfig[0].x_axis", id="x>1"),
    pytest.param(
        f"{T}.layoutConfig", [{"uid": "1", "alpha": "1"}], f"{T}.layoutConfig[0].alpha", id="alpha-str"
    ),
    pytest.param(f"{T}.layoutConfig", [{"x": 0}], f"{T}.layoutConfig[0].x", id="layout-unknown-field"),
    pytest.param(f"{T}.backgroundConfig", [{"uid": 1}], f"{T}.backgroundConfig[0].uid", id="bg-uid-number"),
    pytest.param(f"{T}.border", 1, f"{T}.border", id="unknown-transcoding-field"),
    pytest.param(f"{S}.extensionParams", {"acl": "x"}, f"{S}.extensionParams.acl", id="extension-unknown"),
    pytest.param(f"{S}.bucketName", "b", f"{S}.bucketName", id="unknown-storage-field"),
    pytest.param("clientRequest.snapshotConfig", {"captureInterval": "5"}, "captureInterval", id="snapshot"),
    pytest.param("clientRequest.appsCollection", {"policy": "x"}, "appsCollection.policy", id="apps-unknown"),
    pytest.param(
        "clientRequest.transcodeOptions",
        {"audio": {"sampleRate": 48000}},
        "clientRequest.transcodeOptions.audio.sampleRate",
        id="transcodeOptions-number",
    ),
    pytest.param("clientRequest.mode", "mix", "clientRequest.mode", id="unknown-request-field"),
    pytest.param("uid", 0, "uid", id="uid-0"),
    pytest.param("uid", "abc", "uid", id="uid-account"),
    pytest.param("uid", 2**32, "uid", id="uid-too-big"),
    pytest.param("uid", "0527841", "uid", id="uid-leading-zero"),
    pytest.param("uid", True, "uid", id="uid-bool"),
    pytest.param("appId", "x", "appId", id="unknown-body-field"),
    pytest.param(f"{R}.privateParams", {"correctEXTINF": True}, f"{R}.privateParams", id="privateParams"),
    pytest.param(
        f"{R}.privateParams", '{"correctEXTINF":true}', f"{R}.privateParams", id="privateParams-text"
    ),
    pytest.param(f"{R}.unsubscribeAudioUids", ["1"], f"{R}.unsubscribeAudioUids", id="rest-spelling"),
    pytest.param(f"{S}.stsToken", "session", f"{S}.stsToken", id="stsToken"),
    pytest.param(f"{S}.stsExpiration", 1700000000, f"{S}.stsExpiration", id="stsExpiration"),
    pytest.param("uid", "", "uid", id="uid-empty"),
]
"""Fields recpipe does not use, with values Agora may or may not accept: read as they come, never refused."""


@pytest.mark.parametrize(("path", "value", "field"), UNUSED_OR_UNKNOWN)
def test_fields_recpipe_does_not_use_are_accepted(path: str, value: object, field: str) -> None:
    profile = parse_profile(changed(path, value), source="start.json")
    assert profile.storage is not None
    assert profile.cname == "httpClient463224"
    assert profile.stream_types == 2


def test_unknown_fields_are_logged_at_info(caplog: pytest.LogCaptureFixture) -> None:
    data = changed(f"{R}.recordMode", 1)
    data = changed("clientRequest.mode", "mix", base=data)
    data = changed(f"{R}.channelType", 1, base=data)  # documented: accepted silently
    with caplog.at_level(logging.INFO, logger="pipeline.agora.profile"):
        parse_profile(data)
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any(f"{R}.recordMode: field not known" in m for m in logged)
    assert any("clientRequest.mode: field not known" in m for m in logged)
    assert not any("channelType" in m for m in logged)


def test_error_message_format() -> None:
    with pytest.raises(ConfigError) as info:
        parse_profile(changed(f"{R}.streamTypes", "two"))
    assert (
        str(info.value)
        == 'profile: clientRequest.recordingConfig.streamTypes: expected integer 0, 1 or 2, got "two"'
    )


def test_client_request_only_paths_are_relative_to_it() -> None:
    with pytest.raises(ConfigError, match=r"^profile: recordingConfig\.streamTypes: "):
        parse_profile({"recordingConfig": {"streamTypes": "two"}})


@pytest.mark.parametrize(
    "data",
    [
        pytest.param([], id="array"),
        pytest.param("{}", id="string"),
        pytest.param(None, id="null"),
        pytest.param(3, id="number"),
    ],
)
def test_parse_profile_rejects_non_objects(data: object) -> None:
    with pytest.raises(ConfigError, match="expected an object"):
        parse_profile(data)


@pytest.mark.parametrize(
    ("profile", "kwargs"),
    [
        pytest.param(Profile, {"stream_types": 3}, id="stream-types"),
        pytest.param(Profile, {"stream_types": True}, id="stream-types-bool"),
        pytest.param(Profile, {"av_file_types": ("mp4",)}, id="av-file-types"),
        pytest.param(
            StorageSpec,
            {
                "vendor": 1,
                "region": 0,
                "bucket": "b",
                "access_key": "a",
                "secret_key": "s",
                "file_name_prefix": ("..",),
            },
            id="storage-prefix",
        ),
    ],
)
def test_records_validate(profile: type, kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        profile(**kwargs)


# --- secrets ---------------------------------------------------------------------------------------------


def test_secrets_not_in_repr() -> None:
    profile = parse_profile(with_secrets())
    for secret in SECRETS.values():
        assert secret not in repr(profile)
        assert secret not in str(profile)
    assert profile.storage is not None
    assert profile.storage.secret_key == SECRETS["secretKey"]
    assert profile.storage.access_key == SECRETS["accessKey"]


BROKEN_WITH_SECRETS = [
    pytest.param(f"{S}.accessKey", {"k": SECRETS["accessKey"]}, f"{S}.accessKey", id="accessKey-in-object"),
    pytest.param(f"{S}.secretKey", 41414141, f"{S}.secretKey", id="secretKey-number"),
    pytest.param(f"{S}.stsToken", 99, f"{S}.stsToken", id="stsToken-number"),
    pytest.param(f"{S}.region", "x", f"{S}.region", id="other-field-beside-secrets"),
    pytest.param(f"{R}.streamTypes", "two", f"{R}.streamTypes", id="error-elsewhere"),
]


@pytest.mark.parametrize(("path", "value", "field"), BROKEN_WITH_SECRETS)
def test_secrets_not_in_error_messages(path: str, value: object, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_profile(changed(path, value, base=with_secrets()))
    message = str(info.value)
    assert f"{field}:" in message
    for secret in [*SECRETS.values(), "41414141", "99"]:
        assert secret not in message


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param("clientRequest.token", [SECRETS["token"]], id="token-in-array"),
        pytest.param(f"{R}.secret", {"s": SECRETS["secret"]}, id="secret-object"),
        pytest.param(f"{S}.accesKey", SECRETS["accessKey"], id="misspelt-secret-field"),
        pytest.param(f"{S}.{SECRETS['salt']}", 1, id="secret-as-a-field-name"),
    ],
)
def test_secrets_in_fields_recpipe_does_not_use_are_never_logged(
    path: str, value: object, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="pipeline"):
        profile = parse_profile(changed(path, value, base=with_secrets()))
    for secret in [*SECRETS.values()]:
        assert secret not in caplog.text
        assert secret not in repr(profile)


def test_secrets_not_in_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(with_secrets()))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(changed(f"{S}.region", "x", base=with_secrets())))
    with caplog.at_level(logging.DEBUG, logger="pipeline"):
        load_profile(good)
        with pytest.raises(ConfigError):
            load_profile(bad)
    assert caplog.records, "load_profile should log what it loaded"
    for secret in SECRETS.values():
        assert secret not in caplog.text


# --- load_profile ------------------------------------------------------------------------------------------


def test_load_profile(tmp_path: Path) -> None:
    path = tmp_path / "start.json"
    path.write_text(AGORA_EXAMPLE, encoding="utf-8")
    assert load_profile(path) == parse_profile(example())


@pytest.mark.parametrize(
    ("content", "match"),
    [
        pytest.param(b"{", "not valid JSON", id="truncated"),
        pytest.param(b"", "not valid JSON", id="empty"),
        pytest.param(b'{"cname": NaN}', "not valid JSON", id="nan"),
        pytest.param(b'{"recordingConfig": {"maxIdleTime": Infinity}}', "not valid JSON", id="infinity"),
        pytest.param(b"\xff\xfe\x00garbage", "not valid JSON", id="bad-encoding"),
        pytest.param(b"[" * 100_000, "not valid JSON", id="deeply-nested"),
        pytest.param(b'{"uid": ' + b"9" * 5000 + b"}", "not valid JSON", id="huge-number"),
        pytest.param(
            b'{"cname": "c", "clientRequest": 1}', "clientRequest: expected an object", id="wrong-type"
        ),
    ],
)
def test_load_profile_rejects(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "start.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=match) as info:
        load_profile(path)
    assert str(path) in str(info.value)


def test_load_profile_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_profile(tmp_path / "missing.json")


def test_load_profile_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_profile(tmp_path)


# --- parse_av_file_types ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("hls", ("hls",), id="hls"),
        pytest.param("hls,mp4", ("hls", "mp4"), id="hls-mp4"),
        pytest.param("mp3", ("mp3",), id="mp3"),
        pytest.param("mp4,hls", ("hls", "mp4"), id="canonical-order"),
        pytest.param(" hls , mp4 ", ("hls", "mp4"), id="spaces"),
    ],
)
def test_parse_av_file_types(text: str, expected: tuple[str, ...]) -> None:
    assert parse_av_file_types(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("mp4", id="no-hls"),
        pytest.param("hls,", id="trailing-comma"),
        pytest.param("hls,,mp4", id="empty-item"),
        pytest.param("hls,hls", id="repeat"),
        pytest.param("hls,flv", id="unknown"),
        pytest.param("mp4", id="mp4-without-hls"),
        pytest.param("HLS", id="uppercase"),
        pytest.param("hls;mp4", id="wrong-separator"),
    ],
)
def test_parse_av_file_types_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_av_file_types(text)


def test_blank_storage_keys_mean_the_default_credential_chain() -> None:
    data = changed("clientRequest.storageConfig.accessKey", "")
    data = changed("clientRequest.storageConfig.secretKey", "", base=data)
    storage = parse_profile(data).storage
    assert storage is not None
    assert storage.access_key == ""
    assert storage.secret_key == ""


WEB_PAGE = {
    "cname": "web-room",
    "uid": "527841",
    "clientRequest": {
        "extensionServiceConfig": {
            "errorHandlePolicy": "error_abort",
            "extensionServices": [
                {
                    "serviceName": "web_recorder_service",
                    "errorHandlePolicy": "error_abort",
                    "serviceParam": {
                        "url": "https://example.com/board",
                        "audioProfile": 0,
                        "videoWidth": 1280,
                        "videoHeight": 720,
                        "videoFps": 24,
                        "videoBitrate": 1000,
                        "maxRecordingHour": 3,
                    },
                }
            ],
        },
        "recordingFileConfig": {"avFileType": ["hls", "mp4"]},
    },
}


def test_web_page_recording_is_recognised_with_its_page_size() -> None:
    profile = parse_profile(WEB_PAGE)
    assert profile.mode == "web"
    assert profile.web == Transcoding(width=1280, height=720, fps=24, bitrate=1000)
    assert parse_profile({"clientRequest": {}}).mode is None


def test_web_page_parameters_of_the_wrong_type_are_ignored() -> None:
    doc = json.loads(json.dumps(WEB_PAGE))
    doc["clientRequest"]["extensionServiceConfig"]["extensionServices"][0]["serviceParam"]["videoWidth"] = (
        "wide"
    )
    assert parse_profile(doc).web == Transcoding(width=None, height=720, fps=24, bitrate=1000)


def test_web_recording_config_splits_mp4s_where_the_recorder_does() -> None:
    from pipeline.model.config import PipelineConfig
    from pipeline.run.app import recording_config

    config = PipelineConfig(max_mp4_seconds=10800.0)
    web = parse_profile(web_profile("web-room", maxVideoDuration=45))
    assert recording_config(config, profile=web).max_mp4_seconds == 2700.0
    assert recording_config(config, profile=parse_profile(example())).max_mp4_seconds == 10800.0
    assert recording_config(config, profile=None) is config
