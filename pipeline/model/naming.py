"""Agora Cloud Recording file names: parse and format every kind listed in AGORA_FILES.md.

    composite / web     <sid>_<cname>.m3u8
                        <sid>_<cname>_<utc>.ts
                        <sid>_<cname>_<index>.mp4
    individual          <sid>_<cname>__uid_s_<uid>__uid_e_<media>.m3u8           media: audio, video, av
                        <sid>_<cname>__uid_s_<uid>__uid_e_<media>_<utc>.ts      (or .webm)
                        <sid>_<cname>__uid_s_<uid>__uid_e_<media>_<index>.mp4
    individual v2 (raw) <sid>_<cname>__uid_s_<uid>__uid_e_<codec>.m3u8           audio and video in one
                        <sid>_<cname>__uid_s_<uid>__uid_e_<utc>_<codec>.ts
                        <sid>_<cname>__uid_s_<uid>__uid_e_<index>_<codec>.mp4
    after a failover    bak<n>_ before any of the above (the set the resumed recorder writes)

Parsing is unambiguous, so ``format_name(parse_name(x)) == x`` for every name that parses:

- the extension (after the last ``.``, case-sensitive) decides the kind;
- a name starting ``bak<n>_`` belongs to failover set ``n`` (a sid is hexadecimal, never ``bak…``);
- a sid has no ``_``, so the first ``_`` ends it;
- a cname may not contain ``__uid_s``, so the rest of the name is individual exactly when it contains
  ``__uid_s_``; its first ``__uid_s_`` ends the cname and its last ``__uid_e_`` ends the uid;
- after ``__uid_e_``, ``audio``/``video``/``av`` is the legacy mode's media; any other lower-case
  alphanumeric token is a v2 codec (``h264``; Agora does not document the tokens, so any is accepted);
  a v2 slice or MP4 has its number *before* the codec, a legacy one after the media;
- ``<utc>`` and ``<index>`` are digit runs at the end, split off at the last ``_`` (a cname may itself end
  in ``_20190920125142485``: the last 17-digit run is the slice's time).

Not covered here: snapshot playlists ``<sid>_<cname>_<tick>_<index>.m3u8`` (they parse as a composite
playlist of cname ``<cname>_<tick>_<index>``; ask :func:`is_snapshot_playlist` with the known cname,
or :func:`split_snapshot_name`) and
the mixed audio files of postponed mixing (``<sid>_<cname>_<index>.mp3``/``.m4a``/``.aac``, the
recorder's own outputs: see :func:`parse_mixed_audio`).
"""

from __future__ import annotations

import logging
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pipeline.model.exceptions import NamingError

log = logging.getLogger(__name__)

Media = Literal["audio", "video", "av"]
Kind = Literal["playlist", "slice", "mp4"]

MEDIAS: tuple[Media, ...] = ("audio", "video", "av")
KINDS: tuple[Kind, ...] = ("playlist", "slice", "mp4")
EXTENSIONS: Mapping[Kind, tuple[str, ...]] = {"playlist": ("m3u8",), "slice": ("ts", "webm"), "mp4": ("mp4",)}
"""File extensions of each kind; ``webm`` slices exist only in individual mode."""

UID_START = "__uid_s_"
UID_END = "__uid_e_"
CNAME_CHARS = frozenset(string.ascii_letters + string.digits + " !#$%&()+-:;<=.>?@[]^_{|}~,")
"""Agora's channel-name alphabet; user accounts use the same one."""
CNAME_MAX_BYTES = 64
"""Agora's limit for a channel name (composite and individual recording)."""
NAME_CNAME_MAX_BYTES = 1024
"""The longest cname read from a file name: a web page recording's cname is a label of up to 1024 bytes."""
UID_MAX_BYTES = 255
MAX_INDEX = 999_999_999
"""Largest MP4 index accepted (nine digits; Agora starts a new file every ~2 hours)."""

_KIND_BY_EXT: Mapping[str, Kind] = {ext: kind for kind, exts in EXTENSIONS.items() for ext in exts}
_EXTS_BY_KIND: Mapping[str, tuple[str, ...]] = {str(kind): exts for kind, exts in EXTENSIONS.items()}
_MEDIA_BY_NAME: Mapping[str, Media] = {media: media for media in MEDIAS}
_UTC_RE = re.compile(r"[0-9]{17}")
_CODEC_RE = re.compile(r"[a-z0-9]{1,16}")
_BACKUP_RE = re.compile(r"bak(0|[1-9][0-9]{0,2})_")
MAX_BACKUP = 999
"""Largest failover set number read (``bak0_`` is the first; a recording rarely fails over twice)."""
_INDEX_RE = re.compile(r"0|[1-9][0-9]{0,8}")


def parse_utc(text: str) -> datetime:
    """Read a 17-digit ``YYYYMMDDhhmmssSSS`` UTC time as an aware datetime."""
    if _UTC_RE.fullmatch(text) is None:
        raise NamingError(f"expected a 17-digit UTC time YYYYMMDDhhmmssSSS, got {text!r}")
    month, day, hour, minute, second = (int(text[i : i + 2]) for i in range(4, 14, 2))
    try:
        return datetime(int(text[:4]), month, day, hour, minute, second, int(text[14:]) * 1000, tzinfo=UTC)
    except ValueError as err:
        raise NamingError(f"invalid UTC time {text!r}: {err}") from err


def format_utc(when: datetime) -> str:
    """Write a datetime as 17 digits ``YYYYMMDDhhmmssSSS``; naive means UTC, sub-milliseconds are dropped."""
    u = _as_utc(when)
    clock = f"{u.hour:02d}{u.minute:02d}{u.second:02d}{u.microsecond // 1000:03d}"
    return f"{u.year:04d}{u.month:02d}{u.day:02d}{clock}"


def _as_utc(when: datetime) -> datetime:
    """The same instant in UTC, truncated to the millisecond; a naive datetime is taken as UTC."""
    if when.utcoffset() is None:
        utc = when.replace(tzinfo=UTC)
    else:
        try:
            utc = when.astimezone(UTC)
        except OverflowError as err:
            raise NamingError(f"{when!r} has no UTC equivalent") from err
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000, fold=0)


def check_sid(sid: str) -> str:
    """Return ``sid`` if it can be a session ID: non-empty, no ``_``, path separator, space or control."""
    if not sid:
        raise NamingError("empty sid")
    if "_" in sid or "/" in sid or "\\" in sid or not sid.isprintable() or any(c.isspace() for c in sid):
        raise NamingError(f"sid {sid!r} contains '_', a path separator, whitespace or a control character")
    return sid


def check_cname(cname: str, *, max_bytes: int = CNAME_MAX_BYTES) -> str:
    """Return ``cname`` if it is a channel name recpipe can read back from file names.

    Agora allows 1..64 bytes of ASCII letters, digits, space and ``!#$%&()+-:;<=.>?@[]^_{|}~,``.
    recpipe also refuses a cname containing ``__uid_s``: its composite files would read as individual ones.

    :param max_bytes: ``NAME_CNAME_MAX_BYTES`` for a cname read from a file name (web page recording).
    """
    _check_agora_text(cname, what="cname", max_bytes=max_bytes)
    if UID_START[:-1] in cname:
        raise NamingError(f"cname {cname!r} contains {UID_START[:-1]!r}: its file names would be ambiguous")
    return cname


def check_uid(uid: str) -> str:
    """Return ``uid`` if it is a numeric uid or a user account: 1..255 bytes of the channel-name alphabet.

    ``_`` is allowed (user accounts may contain it); the parser ends a uid at the last ``__uid_e_``, so even
    a uid containing ``__uid_e_`` reads back unchanged.
    """
    return _check_agora_text(uid, what="uid", max_bytes=UID_MAX_BYTES)


def _check_agora_text(text: str, *, what: str, max_bytes: int) -> str:
    """Check ``text`` against Agora's channel-name alphabet and a byte limit."""
    if not text:
        raise NamingError(f"empty {what}")
    bad = sorted(set(text) - CNAME_CHARS)
    if bad:
        raise NamingError(f"{what} {text!r} has characters Agora does not allow: {''.join(bad)!r}")
    if len(text) > max_bytes:  # the alphabet is ASCII, so characters are bytes
        raise NamingError(f"{what} {text!r} is longer than {max_bytes} bytes")
    return text


@dataclass(frozen=True, kw_only=True, slots=True)
class AgoraName:
    """The parts of one Agora file name. ``utc`` is normalised to an aware UTC time in whole milliseconds."""

    kind: Kind
    sid: str
    cname: str
    uid: str | None = None
    """Individual mode only."""
    media: Media | None = None
    """Legacy individual mode: the stream (``audio``, ``video``, or ``av`` for the standard-mode list)."""
    codec: str | None = None
    """Individual v2 (raw) mode: the codec token of the user's audio+video files. With a ``uid``,
    exactly one of ``media`` and ``codec`` is set."""
    utc: datetime | None = None
    """Slices only."""
    index: int | None = None
    """MP4s only."""
    ext: str
    backup: int | None = None
    """``n`` of a failover set's ``bak<n>_`` prefix; None for the original recorder's files."""

    def __post_init__(self) -> None:
        check_sid(self.sid)
        check_cname(self.cname, max_bytes=NAME_CNAME_MAX_BYTES)
        _check_source(self.uid, self.media, self.codec)
        _check_ext(self.kind, self.ext, individual=self.individual)
        _check_utc(self.kind, self.utc)
        _check_index(self.kind, self.index)
        _check_backup(self.backup)
        if self.utc is not None:
            object.__setattr__(self, "utc", _as_utc(self.utc))

    @property
    def individual(self) -> bool:
        """Whether the file belongs to one user's stream (individual mode)."""
        return self.uid is not None


def _check_source(uid: str | None, media: str | None, codec: str | None) -> None:
    """Check that uid, media and codec are all absent, or a valid uid with a known media type or a codec."""
    if (uid is None) != (media is None and codec is None) or (media is not None and codec is not None):
        raise NamingError(
            f"a uid goes with a media or a codec (uid={uid!r}, media={media!r}, codec={codec!r})"
        )
    if uid is not None:
        check_uid(uid)
        if media is not None and media not in MEDIAS:
            raise NamingError(f"media must be one of {', '.join(MEDIAS)}, got {media!r}")
        if codec is not None and (_CODEC_RE.fullmatch(codec) is None or codec in MEDIAS):
            raise NamingError(f"a codec is 1-16 lower-case letters and digits (not a media), got {codec!r}")


def _check_backup(backup: int | None) -> None:
    """Check a failover set's number."""
    if backup is not None and (isinstance(backup, bool) or not 0 <= backup <= MAX_BACKUP):
        raise NamingError(f"a failover set's number is 0 to {MAX_BACKUP}, got {backup!r}")


def _check_ext(kind: str, ext: str, *, individual: bool) -> None:
    """Check that ``ext`` is an extension of ``kind`` (``webm`` only in individual mode)."""
    exts = _EXTS_BY_KIND.get(kind)
    if exts is None:
        raise NamingError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if ext not in exts:
        raise NamingError(f"a {kind} name ends in .{' or .'.join(exts)}, not {ext!r}")
    if ext == "webm" and not individual:
        raise NamingError("only individual-mode slices are .webm")


def _check_utc(kind: str, utc: datetime | None) -> None:
    """Check that a time is present exactly on slices."""
    if kind == "slice" and utc is None:
        raise NamingError("a slice name needs a utc time")
    if kind != "slice" and utc is not None:
        raise NamingError(f"a {kind} name has no utc time")


def _check_index(kind: str, index: int | None) -> None:
    """Check that an index in 0..MAX_INDEX is present exactly on MP4s."""
    if kind != "mp4":
        if index is not None:
            raise NamingError(f"a {kind} name has no index")
        return
    if index is None or isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= MAX_INDEX:
        raise NamingError(f"an mp4 name needs an index from 0 to {MAX_INDEX}, got {index!r}")


def parse_name(name: str) -> AgoraName:
    """Split an Agora file name into its parts; NamingError for anything else."""
    try:
        return _parse(name)
    except NamingError as err:
        raise NamingError(f"not an Agora recording file name: {name!r}: {err}") from None


def _parse(name: str) -> AgoraName:
    """Parse ``name``; errors do not repeat the name."""
    if "/" in name or "\\" in name or not name.isprintable():
        raise NamingError("contains a path separator or a control character")
    stem, dot, ext = name.rpartition(".")
    kind = _KIND_BY_EXT.get(ext)
    if not dot or kind is None:
        raise NamingError(f"extension is not one of .{', .'.join(_KIND_BY_EXT)}")
    backup = None
    prefix = _BACKUP_RE.match(stem)
    if prefix is not None:
        backup, stem = int(prefix[1]), stem[prefix.end() :]
    sid, sep, rest = stem.partition("_")
    if not sep:
        raise NamingError("no '_' after the sid")
    if UID_START in rest:
        return _parse_individual(rest, kind=kind, sid=sid, ext=ext, backup=backup)
    return _parse_composite(rest, kind=kind, sid=sid, ext=ext, backup=backup)


def _parse_composite(rest: str, *, kind: Kind, sid: str, ext: str, backup: int | None) -> AgoraName:
    """Parse the part after ``<sid>_`` of a composite (or web) name."""
    if kind == "playlist":
        return AgoraName(kind=kind, sid=sid, cname=rest, ext=ext, backup=backup)
    cname, sep, number = rest.rpartition("_")
    if not sep:
        raise NamingError(f"a composite {kind} name ends in _{'<index>' if kind == 'mp4' else '<utc>'}")
    utc = parse_utc(number) if kind == "slice" else None
    index = _parse_index(number) if kind == "mp4" else None
    return AgoraName(kind=kind, sid=sid, cname=cname, utc=utc, index=index, ext=ext, backup=backup)


def _parse_individual(rest: str, *, kind: Kind, sid: str, ext: str, backup: int | None) -> AgoraName:
    """Parse the part after ``<sid>_`` of an individual-mode name (legacy or v2)."""
    cname, _, source = rest.partition(UID_START)
    uid, sep, tail = source.rpartition(UID_END)
    if not sep:
        raise NamingError(f"{UID_START!r} without a following {UID_END!r}")
    first, _, last = tail.partition("_")
    legacy = first in _MEDIA_BY_NAME
    if kind == "playlist":
        if "_" in tail:
            raise NamingError(f"expected {UID_END}<media> or {UID_END}<codec> at the end, got {tail!r}")
        media, codec, number = (_MEDIA_BY_NAME[tail], None, "") if legacy else (None, tail, "")
    elif legacy and "_" not in last:
        media, codec, number = _MEDIA_BY_NAME[first], None, last
    elif not legacy and "_" not in last and first.isdigit() and ext != "webm":
        media, codec, number = None, last, first
    else:
        shape = "<media>_<number> or <number>_<codec>"
        raise NamingError(f"expected {UID_END}{shape} at the end, got {tail!r}")
    utc = parse_utc(number) if kind == "slice" else None
    index = _parse_index(number) if kind == "mp4" else None
    return AgoraName(
        kind=kind,
        sid=sid,
        cname=cname,
        uid=uid,
        media=media,
        codec=codec,
        utc=utc,
        index=index,
        ext=ext,
        backup=backup,
    )


def _parse_index(text: str) -> int:
    """Read an MP4 index: a decimal number without leading zeros, at most nine digits."""
    if _INDEX_RE.fullmatch(text) is None:
        raise NamingError(f"expected an MP4 index (0, 1, ...; at most 9 digits), got {text!r}")
    return int(text)


def format_name(name: AgoraName) -> str:
    """Write the file name that ``name`` describes (the inverse of :func:`parse_name`)."""
    parts = [] if name.backup is None else [f"bak{name.backup}_"]
    parts += [name.sid, "_", name.cname]
    number = format_utc(name.utc) if name.utc is not None else None
    number = str(name.index) if name.index is not None else number
    if name.codec is not None:  # v2: the number comes before the codec
        parts += [UID_START, name.uid or "", UID_END, *([number, "_"] if number else []), name.codec]
    else:
        if name.uid is not None:
            parts += [UID_START, name.uid, UID_END, str(name.media)]
        if number is not None:
            parts += ["_", number]
    return "".join([*parts, ".", name.ext])


def playlist_name(
    sid: str,
    cname: str,
    *,
    uid: str | None = None,
    media: Media | None = None,
    codec: str | None = None,
    backup: int | None = None,
) -> str:
    """The playlist name of a composite recording, of one individual-mode stream, or of a v2 user."""
    name = AgoraName(
        kind="playlist", sid=sid, cname=cname, uid=uid, media=media, codec=codec, ext="m3u8", backup=backup
    )
    return format_name(name)


def slice_name(
    sid: str,
    cname: str,
    utc: datetime,
    *,
    uid: str | None = None,
    media: Media | None = None,
    codec: str | None = None,
    ext: str = "ts",
    backup: int | None = None,
) -> str:
    """The name of the slice starting at ``utc``."""
    name = AgoraName(
        kind="slice", sid=sid, cname=cname, uid=uid, media=media, codec=codec, utc=utc, ext=ext, backup=backup
    )
    return format_name(name)


def mp4_name(
    sid: str,
    cname: str,
    *,
    index: int,
    uid: str | None = None,
    media: Media | None = None,
    codec: str | None = None,
    backup: int | None = None,
) -> str:
    """The name the recorder gives its MP4 number ``index``."""
    name = AgoraName(
        kind="mp4",
        sid=sid,
        cname=cname,
        uid=uid,
        media=media,
        codec=codec,
        index=index,
        ext="mp4",
        backup=backup,
    )
    return format_name(name)


def report_name(
    sid: str, cname: str, *, uid: str | None = None, media: Media | None = None, codec: str | None = None
) -> str:
    """The name of recpipe's report: the playlist's name with ``.report.json`` for ``.m3u8``."""
    return playlist_name(sid, cname, uid=uid, media=media, codec=codec).removesuffix(".m3u8") + ".report.json"


def lease_name(
    sid: str, cname: str, *, uid: str | None = None, media: Media | None = None, codec: str | None = None
) -> str:
    """The name of recpipe's lease while it processes a recording: ``.lease.json`` for ``.m3u8``."""
    return playlist_name(sid, cname, uid=uid, media=media, codec=codec).removesuffix(".m3u8") + ".lease.json"


MIXED_AUDIO_EXTENSIONS = ("mp3", "m4a", "aac")


@dataclass(frozen=True, kw_only=True, slots=True)
class MixedAudio:
    """A mixed audio file the recorder writes itself with postponed audio mixing."""

    sid: str
    cname: str
    index: int
    ext: str


def parse_mixed_audio(name: str) -> MixedAudio | None:
    """``<sid>_<cname>_<index>.mp3|m4a|aac`` split into its parts, or None for any other name."""
    stem, dot, ext = name.rpartition(".")
    if not dot or ext not in MIXED_AUDIO_EXTENSIONS or "/" in name or not name.isprintable():
        return None
    sid, sep, rest = stem.partition("_")
    cname, sep2, index = rest.rpartition("_")
    if not sep or not sep2 or _INDEX_RE.fullmatch(index) is None:
        return None
    try:
        check_sid(sid)
        check_cname(cname, max_bytes=NAME_CNAME_MAX_BYTES)
    except NamingError:
        return None
    return MixedAudio(sid=sid, cname=cname, index=int(index), ext=ext)


def is_snapshot_playlist(name: str, *, sid: str, cname: str) -> bool:
    """Whether ``name`` is a snapshot playlist ``<sid>_<cname>_<tick>_<index>.m3u8`` of this recording."""
    match = _SNAPSHOT_RE.search(name)
    return match is not None and name[: match.start()] == f"{sid}_{cname}"


MAX_TICK_DIGITS = 20
"""A snapshot's tick counts "ticks since the system started" (11 digits in Agora's one example): any
run of digits up to this long is one."""
MAX_INDEX_DIGITS = 9
_SNAPSHOT_RE = re.compile(rf"_([0-9]{{1,{MAX_TICK_DIGITS}}})_([0-9]{{1,{MAX_INDEX_DIGITS}}})\.m3u8\Z")


@dataclass(frozen=True, kw_only=True, slots=True)
class SnapshotName:
    """The parts of a snapshot playlist's name ``<playlist name without .m3u8>_<tick>_<index>.m3u8``:
    the playlist it is a version of, and its place (``index`` orders the versions, higher is newer)."""

    parent: AgoraName
    tick: int
    index: int

    @property
    def sid(self) -> str:
        """The recording's sid."""
        return self.parent.sid

    @property
    def cname(self) -> str:
        """The recording's cname."""
        return self.parent.cname


def split_snapshot_name(name: str) -> SnapshotName | None:
    """The parts of ``name`` if it has a snapshot playlist's shape — a valid playlist name of any kind
    (composite, individual, v2, failover) followed by ``_<tick>_<index>`` — else None.

    A composite name alone cannot say whether the digits belong to the channel name (``room_2024_1``):
    ``stages.discover`` decides with the files beside it.
    """
    match = _SNAPSHOT_RE.search(name)
    if match is None:
        return None
    try:
        parent = parse_name(name[: match.start()] + ".m3u8")
    except NamingError:
        return None
    if parent.kind != "playlist":
        return None
    return SnapshotName(parent=parent, tick=int(match[1]), index=int(match[2]))
