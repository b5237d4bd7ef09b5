"""The recording profile: what recpipe learns from an Agora start request.

``--profile`` takes the body of the start request, ``{"cname", "uid", "clientRequest": {...}}``, or just
its ``clientRequest`` object (a document holding none of ``cname``, ``uid`` and ``clientRequest`` is read
as the latter). Every field Agora documents for the start request is in the schema below; an unknown
field, a known one of the wrong type, or a missing required one is a ConfigError that names the field by
its dotted path in the document (``clientRequest.recordingConfig.streamTypes``, array items as ``[2]``).

Secrets (``token``, ``accessKey``, ``secretKey``, ``secret``, ``salt``) never reach a message, a repr or
the log: messages show only the JSON type of a secret field's value, ``StorageSpec`` keeps its keys out
of its repr, and ``token``/``secret``/``salt`` are validated and then dropped.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, TypeVar

from pipeline.exceptions import ConfigError, NamingError
from pipeline.naming import check_cname

log = logging.getLogger(__name__)

T = TypeVar("T")

AV_FILE_TYPES = ("hls", "mp4")
"""The ``avFileType`` values Agora knows, in canonical order; ``hls`` is always required."""
STREAM_TYPES = (0, 1, 2)
"""``streamTypes``: 0 audio only, 1 video only, 2 audio and video (Agora's default)."""
MAX_UID = 2**32 - 1

Check = Callable[[object, str], object]
"""Validates the JSON value found at a dotted path and returns it normalised, or raises ConfigError."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Transcoding:
    """The mixed picture of a composite recording (``transcodingConfig``)."""

    width: int | None = None
    height: int | None = None
    fps: int | None = None
    bitrate: int | None = None
    """Kbps."""


@dataclass(frozen=True, kw_only=True, slots=True)
class StorageSpec:
    """Where Agora uploads the files (``storageConfig``). The keys are left out of the repr."""

    vendor: int
    """0 Qiniu, 1 Amazon S3, 2 Alibaba OSS, 3 Tencent COS, ..., 11 self-hosted S3-compatible."""
    region: int
    """Vendor-specific region number."""
    bucket: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    file_name_prefix: tuple[str, ...] = ()
    """Directories the files land in, outermost first."""
    endpoint: str | None = None
    """``extensionParams.endpoint`` (self-hosted stores)."""
    sse: str | None = None
    """``extensionParams.sse``: server-side encryption."""
    tag: str | None = None
    """``extensionParams.tag``: object tag."""

    def __post_init__(self) -> None:
        for i, entry in enumerate(self.file_name_prefix):
            _prefix_entry(entry, f"fileNamePrefix[{i}]")

    @property
    def prefix(self) -> str:
        """The key prefix the files are under: ``"dir1/dir2/"``, or ``""``."""
        return "".join(f"{entry}/" for entry in self.file_name_prefix)


@dataclass(frozen=True, kw_only=True, slots=True)
class Profile:
    """What a recording should look like and where it is, from its start request."""

    cname: str | None = None
    uid: str | None = None
    """The recorder's own uid in the channel (not a publisher's)."""
    stream_types: int = 2
    """0 audio only, 1 video only, 2 audio and video."""
    transcoding: Transcoding | None = None
    av_file_types: tuple[str, ...] = ("hls",)
    storage: StorageSpec | None = None
    max_idle_time: int | None = None
    """``maxIdleTime`` in seconds: the recorder stops after this long without publishers."""
    web: Transcoding | None = None
    """Web-page recording (``extensionServiceConfig`` runs ``web_recorder_service``): the page's video
    size and frame rate from its ``serviceParam`` (``videoWidth``, ``videoHeight``, ``videoFps``)."""

    @property
    def mode(self) -> str | None:
        """``web`` for a web-page recording; None when the names decide (composite or individual)."""
        return "web" if self.web is not None else None

    def __post_init__(self) -> None:
        if isinstance(self.stream_types, bool) or self.stream_types not in STREAM_TYPES:
            raise ConfigError(f"streamTypes must be 0, 1 or 2, got {self.stream_types!r}")
        _check_av_file_types(self.av_file_types, where="avFileType")

    @property
    def wants_mp4(self) -> bool:
        """Whether the start request asked for MP4 files."""
        return "mp4" in self.av_file_types


# --- messages ------------------------------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    """The dotted path of ``key`` inside the object at ``path``."""
    return f"{path}.{key}" if path else key


def _show(value: object, *, secret: bool = False) -> str:
    """Describe a JSON value for a message: its type only for secrets and containers, else short JSON."""
    if secret or isinstance(value, dict | list):
        return _JSON_TYPES.get(type(value), "a value")
    text = json.dumps(value)
    return text if len(text) <= 40 else f"{text[:36]}...{text[-1]}"


_JSON_TYPES: Mapping[type, str] = {
    bool: "a boolean",
    int: "a number",
    float: "a number",
    str: "a string",
    dict: "an object",
    list: "an array",
    type(None): "null",
}


def _fail(path: str, expected: str, value: object, *, secret: bool = False) -> NoReturn:
    """Raise the ConfigError for a value of the wrong type or shape."""
    raise ConfigError(f"{path}: expected {expected}, got {_show(value, secret=secret)}")


# --- validators (building blocks of the schema) ---------------------------------------------------------


def _integer(*, choices: tuple[int, ...] = (), minimum: int = 0) -> Check:
    """An integer (never a boolean or a float): one of ``choices``, or at least ``minimum``."""
    if choices:
        expected = f"integer {', '.join(map(str, choices[:-1]))} or {choices[-1]}"
    else:
        expected = f"an integer >= {minimum}"

    def check(value: object, path: str) -> object:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            _fail(path, expected, value)
        if choices and value not in choices:
            _fail(path, expected, value)
        return value

    return check


def _ratio(value: object, path: str) -> object:
    """A number from 0 to 1 (layout coordinates, alpha)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        _fail(path, "a number from 0 to 1", value)
    return float(value)


def _string(*, secret: bool = False, pattern: str = ".+", expected: str = "a non-empty string") -> Check:
    """A string matching ``pattern`` (by default: any non-empty string)."""
    regex = re.compile(pattern, re.DOTALL)

    def check(value: object, path: str) -> object:
        if not isinstance(value, str) or regex.fullmatch(value) is None:
            _fail(path, expected, value, secret=secret)
        return value

    return check


def _array(item: Check, *, of: str) -> Check:
    """An array whose items each pass ``item``; returned as a tuple."""

    def check(value: object, path: str) -> object:
        if not isinstance(value, list):
            _fail(path, f"an array of {of}", value)
        return tuple(item(v, f"{path}[{i}]") for i, v in enumerate(value))

    return check


def _object(spec: Mapping[str, Check], *, required: tuple[str, ...] = ()) -> Check:
    """An object holding only the fields of ``spec`` and all of ``required``.

    :param spec: field names (several, space-separated, when they share a validator) -> validator.
    """
    fields = {name: check for names, check in spec.items() for name in names.split()}

    def check(value: object, path: str) -> object:
        if not isinstance(value, dict):
            _fail(path or "the document", "an object", value)
        for key in value:
            if key not in fields:
                raise ConfigError(
                    f"{_join(path, key)}: unknown field (known here: {', '.join(sorted(fields))})"
                )
        for key in required:
            if key not in value:
                raise ConfigError(f"{_join(path, key)}: required field is missing")
        return {key: fields[key](item, _join(path, key)) for key, item in value.items()}

    return check


def _free_object(value: object, path: str) -> object:
    """Any object: parameters Agora defines per extension service (``serviceParam``)."""
    if not isinstance(value, dict):
        _fail(path, "an object", value)
    return value


def _recorder_uid(value: object, path: str) -> object:
    """The recorder's uid: 1..2**32-1, as a number or a decimal string; normalised to a string."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or re.fullmatch(r"[1-9][0-9]{0,9}", text) is None or int(text) > MAX_UID:
        _fail(path, f"a uid from 1 to {MAX_UID} (number or string)", value)
    return text


def _cname(value: object, path: str) -> object:
    """A channel name Agora accepts and recpipe can read back from file names."""
    if not isinstance(value, str):
        _fail(path, "a string", value)
    try:
        return check_cname(value)
    except NamingError as err:
        raise ConfigError(f"{path}: {err}") from err


def _av_file_types(value: object, path: str) -> object:
    """``avFileType``: ``["hls"]`` or ``["hls", "mp4"]``; returned in canonical order."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        _fail(path, 'an array of strings ("hls", "mp4")', value)
    return _check_av_file_types(value, where=path)


def _prefix_entry(entry: object, path: str) -> str:
    """Return a ``fileNamePrefix`` entry if it is one plain directory name."""
    if not isinstance(entry, str):
        _fail(path, "a string", entry)
    if "/" in entry or "\\" in entry or not entry.isprintable() or entry in ("", ".", ".."):
        raise ConfigError(
            f"{path}: must be one directory name (no '/', '\\', control character, '.' or '..')"
        )
    return entry


# --- the schema ---------------------------------------------------------------------------------------------

_TEXT = _string()
_SECRET = _string(secret=True)
_KEY = _string(secret=True, pattern=".*", expected="a string")
"""Storage keys may be blank: a profile stripped of its secrets uses boto3's standard credential chain."""
_POSITIVE = _integer(minimum=1)
_NON_NEGATIVE = _integer(minimum=0)
_UID_LIST = _array(_TEXT, of="uid strings")

_LAYOUT_REGION = _object(
    {"uid": _TEXT, "x_axis y_axis width height alpha": _ratio, "render_mode": _integer(choices=(0, 1))}
)
_USER_BACKGROUND = _object({"uid image_url": _TEXT, "render_mode": _integer(choices=(0, 1))})
_TRANSCODING = _object(
    {
        "width height fps bitrate": _POSITIVE,
        "maxResolutionUid backgroundImage defaultUserBackgroundImage": _TEXT,
        "mixedVideoLayout": _integer(choices=(0, 1, 2, 3)),
        "backgroundColor": _string(pattern=r"#[0-9A-Fa-f]{6}", expected='a colour "#RRGGBB"'),
        "layoutConfig": _array(_LAYOUT_REGION, of="layout regions"),
        "backgroundConfig": _array(_USER_BACKGROUND, of="user backgrounds"),
    }
)
_RECORDING = _object(
    {
        "channelType videoStreamType": _integer(choices=(0, 1)),
        "audioProfile": _integer(choices=(0, 1, 2)),
        "streamTypes": _integer(choices=STREAM_TYPES),
        "streamMode": _string(
            pattern="default|standard|original", expected='"default", "standard" or "original"'
        ),
        "decryptionMode subscribeUidGroup": _NON_NEGATIVE,
        "maxIdleTime": _POSITIVE,
        "secret salt": _SECRET,
        "transcodingConfig": _TRANSCODING,
        "subscribeAudioUids unSubscribeAudioUids subscribeVideoUids unSubscribeVideoUids": _UID_LIST,
    }
)
_STORAGE = _object(
    {
        "vendor region": _NON_NEGATIVE,
        "bucket": _TEXT,
        "accessKey secretKey": _KEY,
        "fileNamePrefix": _array(_prefix_entry, of="directory names"),
        "extensionParams": _object({"sse tag endpoint": _TEXT}),
    },
    required=("vendor", "region", "bucket", "accessKey", "secretKey"),
)
_EXTENSION_SERVICES = _object(
    {
        "errorHandlePolicy apiVersion": _TEXT,
        "extensionServices": _array(
            _object({"serviceName errorHandlePolicy": _TEXT, "serviceParam": _free_object}), of="services"
        ),
    }
)
_TRANSCODE_OPTIONS = _object(
    {
        "transConfig": _object({"transMode": _TEXT}),
        "container": _object({"format": _TEXT}),
        "audio": _object({"sampleRate bitrate channels": _TEXT}),
    }
)
_CLIENT_REQUEST = _object(
    {
        "token": _SECRET,
        "recordingConfig": _RECORDING,
        "recordingFileConfig": _object({"avFileType": _av_file_types}),
        "storageConfig": _STORAGE,
        "snapshotConfig": _object({"captureInterval": _POSITIVE, "fileType": _array(_TEXT, of="strings")}),
        "extensionServiceConfig": _EXTENSION_SERVICES,
        "appsCollection": _object({"combinationPolicy": _TEXT}),
        "transcodeOptions": _TRANSCODE_OPTIONS,
    }
)
"""The ``clientRequest`` of a start request."""
_START_REQUEST = _object({"cname": _cname, "uid": _recorder_uid, "clientRequest": _CLIENT_REQUEST})
"""The body of a start request."""


# --- building the profile -------------------------------------------------------------------------------


def parse_profile(data: object, *, source: str = "profile") -> Profile:
    """Read a start-request body, or its ``clientRequest``, already decoded from JSON.

    :param source: where ``data`` came from; it starts every error message.
    """
    try:
        body = _validate(data)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    request = _section(body, "clientRequest")
    recording = _section(request, "recordingConfig")
    file_config = _section(request, "recordingFileConfig")
    return Profile(
        cname=_get(body, "cname", str),
        uid=_get(body, "uid", str),
        stream_types=_value(recording, "streamTypes", 2),
        transcoding=_transcoding(recording),
        av_file_types=_value(file_config, "avFileType", ("hls",)),
        storage=_storage(_section(request, "storageConfig")),
        max_idle_time=_get(recording, "maxIdleTime", int),
        web=_web_page(_section(request, "extensionServiceConfig")),
    )


WEB_RECORDER_SERVICE = "web_recorder_service"


def _web_page(config: Mapping[str, object]) -> Transcoding | None:
    """The web-page recorder's video parameters, when the start request runs that service."""
    services = config.get("extensionServices")
    for service in services if isinstance(services, list | tuple) else ():
        if isinstance(service, dict) and service.get("serviceName") == WEB_RECORDER_SERVICE:
            param = _section(service, "serviceParam")
            size = {
                key: _positive_int(param.get(f"video{key.title()}")) for key in ("width", "height", "fps")
            }
            return Transcoding(**size, bitrate=_positive_int(param.get("videoBitrate")))
    return None


def _positive_int(value: object) -> int | None:
    """``value`` when it is a positive integer (``serviceParam`` is free-form), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _validate(data: object) -> Mapping[str, object]:
    """Check ``data`` against the schema; return it as a start-request body."""
    body_form = isinstance(data, dict) and data.keys() & {"cname", "uid", "clientRequest"}
    body = _START_REQUEST(data, "") if body_form else {"clientRequest": _CLIENT_REQUEST(data, "")}
    assert isinstance(body, dict)
    return body


def _section(parent: Mapping[str, object], key: str) -> Mapping[str, object]:
    """The validated object at ``key``, or an empty one when absent."""
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def _get(parent: Mapping[str, object], key: str, kind: type[T]) -> T | None:
    """The validated value at ``key`` if it is a ``kind``, else None."""
    value = parent.get(key)
    return value if isinstance(value, kind) else None


def _value(parent: Mapping[str, object], key: str, default: T) -> T:
    """The validated value at ``key`` if it has the type of ``default``, else ``default``."""
    value = parent.get(key)
    return value if isinstance(value, type(default)) else default


def _transcoding(recording: Mapping[str, object]) -> Transcoding | None:
    """The ``transcodingConfig`` values recpipe uses, or None when there is none."""
    if "transcodingConfig" not in recording:
        return None
    config = _section(recording, "transcodingConfig")
    return Transcoding(**{key: _get(config, key, int) for key in ("width", "height", "fps", "bitrate")})


def _storage(config: Mapping[str, object]) -> StorageSpec | None:
    """The ``storageConfig``, or None when there is none."""
    if not config:
        return None
    extension = _section(config, "extensionParams")
    return StorageSpec(
        vendor=_value(config, "vendor", 0),
        region=_value(config, "region", 0),
        bucket=_value(config, "bucket", ""),
        access_key=_value(config, "accessKey", ""),
        secret_key=_value(config, "secretKey", ""),
        file_name_prefix=_value(config, "fileNamePrefix", ()),
        endpoint=_get(extension, "endpoint", str),
        sse=_get(extension, "sse", str),
        tag=_get(extension, "tag", str),
    )


def load_profile(path: Path) -> Profile:
    """Read a profile from a JSON file; ConfigError when it cannot be read, decoded or validated."""
    try:
        data = json.loads(path.read_bytes(), parse_constant=_reject_constant)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the profile: {err.strerror or err}") from err
    except (ValueError, RecursionError) as err:
        raise ConfigError(f"{path}: not valid JSON: {err}") from err
    profile = parse_profile(data, source=str(path))
    log.debug("profile %s: %r", path, profile)  # the repr leaves the keys out
    return profile


def _reject_constant(name: str) -> NoReturn:
    """Refuse ``NaN`` and ``Infinity``, which Python's JSON reader accepts but JSON does not."""
    raise ValueError(f"{name} is not JSON")


def parse_av_file_types(text: str) -> tuple[str, ...]:
    """Read ``--av-file-type``: ``"hls"`` or ``"hls,mp4"`` (any order, spaces ignored) -> canonical tuple."""
    return _check_av_file_types([item.strip() for item in text.split(",")], where=f"av file types {text!r}")


def _check_av_file_types(items: Sequence[str], *, where: str) -> tuple[str, ...]:
    """Return ``items`` in canonical order if they are only hls/mp4, without repeats, and include hls."""
    unknown = [item for item in items if item not in AV_FILE_TYPES]
    if unknown:
        problem = f"unknown type {json.dumps(unknown[0])} (known: {', '.join(AV_FILE_TYPES)})"
    elif len(set(items)) != len(items):
        problem = "a type is listed twice"
    elif "hls" not in items:
        problem = 'Agora always records "hls"; expected ["hls"] or ["hls", "mp4"]'
    else:
        return tuple(t for t in AV_FILE_TYPES if t in items)
    raise ConfigError(f"{where}: {problem}")
