"""The recording profile: what recpipe learns from an Agora start request.

``--profile`` takes the body of the start request, ``{"cname", "uid", "clientRequest": {...}}``, or just
its ``clientRequest`` object (a document holding none of ``cname``, ``uid`` and ``clientRequest`` is read
as the latter).

Users paste their real start request, and Agora adds fields over time, so recpipe type-checks only the
fields it uses (``cname``, ``streamTypes``, ``streamMode``, ``maxIdleTime``, ``transcodingConfig``'s size,
frame rate and bitrate, ``avFileType``, ``storageConfig`` and the web recorder's ``serviceParam``) and
accepts every other field unread: fields Agora documents silently, any other one with an INFO log line
(``-v``) naming it. A used field of the wrong type, or a missing required one, is a ConfigError that
names the field by its dotted path in the document (``clientRequest.recordingConfig.streamTypes``, array
items as ``[2]``).

Secrets (``token``, ``accessKey``, ``secretKey``, ``stsToken``, ``secret``, ``salt``) never reach a
message, a repr or the log: messages show only the JSON type of a secret field's value, ``StorageSpec``
keeps its keys out of its repr, and the fields recpipe does not use are never read.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, TypeVar

from pipeline.model.exceptions import ConfigError, NamingError
from pipeline.model.naming import check_cname

log = logging.getLogger(__name__)

T = TypeVar("T")

AV_FILE_TYPES = ("hls", "mp4", "mp3")
"""The ``avFileType`` values Agora knows, in canonical order: ``["hls"]`` (the default), ``["hls", "mp4"]``,
and in individual v2 (raw) mode ``["mp3"]`` for audio-only MP3 files the recorder writes itself."""
STREAM_TYPES = (0, 1, 2)
"""``streamTypes``: 0 audio only, 1 video only, 2 audio and video (Agora's default)."""
WEB_CNAME_MAX_BYTES = 1024
"""A web page recording's cname is only a label, and may be this long (AGORA_FILES.md)."""
WEB_CNAME_REPLACED = frozenset("!@#$%^&*()+_.=[]{}~|,;:?<>")
"""Characters the web page recorder writes as ``-`` in file names (AGORA_FILES.md, web mode only)."""
MIN_WEB_MP4_MINUTES, MAX_WEB_MP4_MINUTES, DEFAULT_WEB_MP4_MINUTES = 30, 240, 120
"""``serviceParam.maxVideoDuration``: a web recording's MP4 is cut after this many minutes."""

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
    access_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)
    sts_token: str = field(default="", repr=False)
    """``stsToken``: a temporary session token that goes with the keys."""
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
    stream_mode: str | None = None
    """``streamMode`` of individual recording: ``default``, ``standard`` or ``original``."""
    web: Transcoding | None = None
    """Web-page recording (``extensionServiceConfig`` runs ``web_recorder_service``): the page's video
    size and frame rate from its ``serviceParam`` (``videoWidth``, ``videoHeight``, ``videoFps``)."""
    web_mp4_minutes: int | None = None
    """Web-page recording: ``serviceParam.maxVideoDuration``, the minutes after which the recorder starts
    a new MP4 (Agora's default 120 when the field is absent or out of its 30-240 range)."""

    @property
    def mode(self) -> str | None:
        """``web`` for a web-page recording; None when the names decide (composite or individual)."""
        return "web" if self.web is not None else None

    @property
    def file_cname(self) -> str | None:
        """The channel name as the recorder writes it in file names: the web page recorder replaces
        each of ``WEB_CNAME_REPLACED`` with ``-``; the other modes write the cname as it is."""
        if self.cname is None or self.mode != "web":
            return self.cname
        return web_file_cname(self.cname)

    @property
    def max_mp4_seconds(self) -> float | None:
        """Where the recorder itself would start a new MP4, when the profile says (web mode)."""
        if self.mode != "web":
            return None
        return 60.0 * (self.web_mp4_minutes or DEFAULT_WEB_MP4_MINUTES)

    def __post_init__(self) -> None:
        if isinstance(self.stream_types, bool) or self.stream_types not in STREAM_TYPES:
            raise ConfigError(f"streamTypes must be 0, 1 or 2, got {self.stream_types!r}")
        _check_av_file_types(self.av_file_types, where="avFileType")

    @property
    def wants_mp4(self) -> bool:
        """Whether the start request asked for MP4 files."""
        return "mp4" in self.av_file_types


def web_file_cname(cname: str) -> str:
    """The cname the web page recorder writes in file names: each of ``WEB_CNAME_REPLACED`` becomes ``-``."""
    return "".join("-" if c in WEB_CNAME_REPLACED else c for c in cname)


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


_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
"""What a field name must look like to be logged: a pasted value (a key, a token) in a name's place is not."""


def _object(spec: Mapping[str, Check], *, required: tuple[str, ...] = (), known: str = "") -> Check:
    """An object whose fields in ``spec`` are checked; every other field is accepted unread (and, when it
    is not one of ``known``, the fields Agora documents here, logged at INFO level).

    :param spec: field names (several, space-separated, when they share a validator) -> validator.
    :param known: space-separated names of documented fields recpipe does not use.
    :returns: the checked fields only (what recpipe does not use is not carried along).
    """
    fields = {name: check for names, check in spec.items() for name in names.split()}
    documented = frozenset(known.split()) | fields.keys()

    def check(value: object, path: str) -> object:
        if not isinstance(value, dict):
            _fail(path or "the document", "an object", value)
        for key in required:
            if key not in value:
                raise ConfigError(f"{_join(path, key)}: required field is missing")
        for key in value:
            if key not in documented:
                shown = key if _FIELD_NAME.fullmatch(key) else "(a field whose name is not an identifier)"
                log.info("%s: field not known to recpipe; accepted and not used", _join(path, shown))
        return {key: fields[key](item, _join(path, key)) for key, item in value.items() if key in fields}

    return check


def _free_object(value: object, path: str) -> object:
    """Any object: parameters Agora defines per extension service (``serviceParam``)."""
    if not isinstance(value, dict):
        _fail(path, "an object", value)
    return value


def _cname(value: object, path: str) -> object:
    """A channel name: any text up to ``WEB_CNAME_MAX_BYTES`` here; ``parse_profile`` checks it against
    the rules of the recording's mode once the mode is known."""
    if not isinstance(value, str):
        _fail(path, "a string", value)
    if not value or not value.isprintable() or len(value.encode()) > WEB_CNAME_MAX_BYTES:
        _fail(path, f"a channel name of 1 to {WEB_CNAME_MAX_BYTES} printable bytes", value)
    return value


def _av_file_types(value: object, path: str) -> object:
    """``avFileType``: ``["hls"]``, ``["hls", "mp4"]`` or ``["mp3"]``; returned in canonical order."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        _fail(path, 'an array of strings ("hls", "mp4", "mp3")', value)
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


# --- the schema: the fields recpipe uses are checked, the documented rest listed as known -----------------

_TEXT = _string()
_KEY = _string(secret=True, pattern=".*", expected="a string")
"""Storage keys may be blank: a profile stripped of its secrets uses the store's standard credential chain."""
_POSITIVE = _integer(minimum=1)
_NON_NEGATIVE = _integer(minimum=0)

_TRANSCODING = _object(
    {"width height fps bitrate": _POSITIVE},
    known="maxResolutionUid mixedVideoLayout backgroundColor backgroundImage defaultUserBackgroundImage "
    "layoutConfig backgroundConfig",
)
_RECORDING = _object(
    {
        "streamTypes": _integer(choices=STREAM_TYPES),
        "streamMode": _TEXT,
        "maxIdleTime": _POSITIVE,
        "transcodingConfig": _TRANSCODING,
    },
    known="channelType videoStreamType audioProfile decryptionMode secret salt subscribeUidGroup "
    "subscribeAudioUids unsubscribeAudioUids unSubscribeAudioUids "
    "subscribeVideoUids unsubscribeVideoUids unSubscribeVideoUids privateParams",
)
_STORAGE = _object(
    {
        "vendor region": _NON_NEGATIVE,
        "bucket": _TEXT,
        "accessKey secretKey stsToken": _KEY,
        "fileNamePrefix": _array(_prefix_entry, of="directory names"),
        "extensionParams": _object({"sse tag endpoint": _TEXT}),
    },
    required=("vendor", "region", "bucket"),
    known="stsExpiration",
)
_SERVICE = _object({"serviceName": _TEXT, "serviceParam": _free_object}, known="errorHandlePolicy")
_EXTENSION_SERVICES = _object(
    {"extensionServices": _array(_SERVICE, of="services")}, known="errorHandlePolicy apiVersion"
)
_CLIENT_REQUEST = _object(
    {
        "recordingConfig": _RECORDING,
        "recordingFileConfig": _object({"avFileType": _av_file_types}),
        "storageConfig": _STORAGE,
        "extensionServiceConfig": _EXTENSION_SERVICES,
    },
    known="token snapshotConfig appsCollection transcodeOptions resourceExpiredHour scene "
    "excludeResourceIds startParameter",
)
"""The ``clientRequest`` of a start request."""
_START_REQUEST = _object({"cname": _cname, "clientRequest": _CLIENT_REQUEST}, known="uid")
"""The body of a start request. ``uid`` is the recorder's own uid in the channel: not used."""


# --- building the profile -------------------------------------------------------------------------------


def parse_profile(data: object, *, source: str = "profile") -> Profile:
    """Read a start-request body, or its ``clientRequest``, already decoded from JSON.

    :param source: where ``data`` came from; it starts every error message.
    """
    try:
        body = _validate(data)
        request = _section(body, "clientRequest")
        recording = _section(request, "recordingConfig")
        service = _web_recorder(_section(request, "extensionServiceConfig"))
        cname = _mode_cname(_get(body, "cname", str), web=service is not None)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    file_config = _section(request, "recordingFileConfig")
    return Profile(
        cname=cname,
        uid=_recorder_uid(data),
        stream_types=_value(recording, "streamTypes", 2),
        stream_mode=_get(recording, "streamMode", str),
        transcoding=_transcoding(recording),
        av_file_types=_value(file_config, "avFileType", ("hls",)),
        storage=_storage(_section(request, "storageConfig")),
        max_idle_time=_get(recording, "maxIdleTime", int),
        web=_web_page(service),
        web_mp4_minutes=_web_mp4_minutes(service),
    )


def _recorder_uid(data: object) -> str | None:
    """The recorder's own uid as text, when the body gives a non-empty one (recpipe does not use it)."""
    uid = data.get("uid") if isinstance(data, dict) else None
    if isinstance(uid, int) and not isinstance(uid, bool):
        return str(uid)
    return uid if isinstance(uid, str) and uid else None


def _mode_cname(cname: str | None, *, web: bool) -> str | None:
    """The cname, checked by its mode's rules: a label of up to 1024 bytes for web page recording, else
    a channel name that Agora accepts and recpipe can read back from file names."""
    if cname is None:
        return None
    if web:
        log.debug("web page recording: files are named with cname %r", web_file_cname(cname)[:80])
        return cname
    try:
        return check_cname(cname)
    except NamingError as err:
        raise ConfigError(f"cname: {err}") from err


WEB_RECORDER_SERVICE = "web_recorder_service"


def _web_recorder(config: Mapping[str, object]) -> Mapping[str, object] | None:
    """The ``serviceParam`` of the web page recorder, when the start request runs that service."""
    services = config.get("extensionServices")
    for service in services if isinstance(services, list | tuple) else ():
        if isinstance(service, dict) and service.get("serviceName") == WEB_RECORDER_SERVICE:
            return _section(service, "serviceParam")
    return None


def _web_page(param: Mapping[str, object] | None) -> Transcoding | None:
    """The web page recorder's video parameters (free-form: a value of the wrong type is ignored)."""
    if param is None:
        return None
    size = {key: _positive_int(param.get(f"video{key.title()}")) for key in ("width", "height", "fps")}
    return Transcoding(**size, bitrate=_positive_int(param.get("videoBitrate")))


def _web_mp4_minutes(param: Mapping[str, object] | None) -> int | None:
    """``maxVideoDuration`` in Agora's range of 30 to 240 minutes, else None (the default, 120)."""
    minutes = _positive_int(param.get("maxVideoDuration")) if param is not None else None
    if minutes is not None and not MIN_WEB_MP4_MINUTES <= minutes <= MAX_WEB_MP4_MINUTES:
        log.warning(
            "serviceParam.maxVideoDuration %d is outside Agora's %d-%d minutes; using %d",
            minutes,
            MIN_WEB_MP4_MINUTES,
            MAX_WEB_MP4_MINUTES,
            DEFAULT_WEB_MP4_MINUTES,
        )
        return None
    return minutes


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
        sts_token=_value(config, "stsToken", ""),
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
    """Return ``items`` in canonical order if they are known types, without repeats, and ``mp4`` comes
    with ``hls`` (Agora writes the MP4 beside the HLS recording)."""
    unknown = [item for item in items if item not in AV_FILE_TYPES]
    if unknown:
        problem = f"unknown type {json.dumps(unknown[0])} (known: {', '.join(AV_FILE_TYPES)})"
    elif len(set(items)) != len(items):
        problem = "a type is listed twice"
    elif not items:
        problem = 'no type given; expected ["hls"], ["hls", "mp4"] or ["mp3"]'
    elif "mp4" in items and "hls" not in items:
        problem = 'Agora records "mp4" only with "hls"; expected ["hls", "mp4"]'
    else:
        return tuple(t for t in AV_FILE_TYPES if t in items)
    raise ConfigError(f"{where}: {problem}")
