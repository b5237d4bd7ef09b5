"""Agora Cloud Recording file names: parse and format every kind listed in AGORA_FILES.md.

    composite / web   <sid>_<cname>.m3u8
                      <sid>_<cname>_<utc>.ts
                      <sid>_<cname>_<utc>_<index>.mp4
    individual        <sid>_<cname>__uid_s_<uid>__uid_e_<media>.m3u8
                      <sid>_<cname>__uid_s_<uid>__uid_e_<media>_<utc>.ts      (or .webm)
                      <sid>_<cname>__uid_s_<uid>__uid_e_<media>_<index>.mp4

Parsing is unambiguous, so ``format_name(parse_name(x)) == x`` for every name that parses:

- the extension (after the last ``.``, case-sensitive) decides the kind;
- a sid has no ``_``, so the first ``_`` ends it;
- a cname may not contain ``__uid_s``, so the rest of the name is individual exactly when it contains
  ``__uid_s_``; its first ``__uid_s_`` ends the cname and its last ``__uid_e_`` ends the uid;
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

from pipeline.exceptions import NamingError

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
    """Individual mode only: set exactly when ``uid`` is."""
    utc: datetime | None = None
    """Slices (both modes) and composite MP4s."""
    index: int | None = None
    """MP4s only."""
    ext: str

    def __post_init__(self) -> None:
        check_sid(self.sid)
        check_cname(self.cname, max_bytes=NAME_CNAME_MAX_BYTES)
        _check_source(self.uid, self.media)
        _check_ext(self.kind, self.ext, individual=self.individual)
        _check_utc(self.kind, self.utc, individual=self.individual)
        _check_index(self.kind, self.index)
        if self.utc is not None:
            object.__setattr__(self, "utc", _as_utc(self.utc))

    @property
    def individual(self) -> bool:
        """Whether the file belongs to one user's stream (individual mode)."""
        return self.uid is not None


def _check_source(uid: str | None, media: str | None) -> None:
    """Check that uid and media are both absent, or a valid uid with a known media type."""
    if (uid is None) != (media is None):
        raise NamingError(f"uid and media go together (uid={uid!r}, media={media!r})")
    if uid is not None:
        check_uid(uid)
        if media not in MEDIAS:
            raise NamingError(f"media must be one of {', '.join(MEDIAS)}, got {media!r}")


def _check_ext(kind: str, ext: str, *, individual: bool) -> None:
    """Check that ``ext`` is an extension of ``kind`` (``webm`` only in individual mode)."""
    exts = _EXTS_BY_KIND.get(kind)
    if exts is None:
        raise NamingError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if ext not in exts:
        raise NamingError(f"a {kind} name ends in .{' or .'.join(exts)}, not {ext!r}")
    if ext == "webm" and not individual:
        raise NamingError("only individual-mode slices are .webm")


def _check_utc(kind: str, utc: datetime | None, *, individual: bool) -> None:
    """Check that a time is present exactly on slices and composite MP4s."""
    wanted = kind == "slice" or (kind == "mp4" and not individual)
    if wanted and utc is None:
        raise NamingError(f"a {'composite ' if kind == 'mp4' else ''}{kind} name needs a utc time")
    if not wanted and utc is not None:
        raise NamingError(f"a {'individual ' if kind == 'mp4' else ''}{kind} name has no utc time")


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
    sid, sep, rest = stem.partition("_")
    if not sep:
        raise NamingError("no '_' after the sid")
    if UID_START in rest:
        return _parse_individual(rest, kind=kind, sid=sid, ext=ext)
    return _parse_composite(rest, kind=kind, sid=sid, ext=ext)


def _parse_composite(rest: str, *, kind: Kind, sid: str, ext: str) -> AgoraName:
    """Parse the part after ``<sid>_`` of a composite (or web) name."""
    if kind == "playlist":
        return AgoraName(kind=kind, sid=sid, cname=rest, ext=ext)
    index: int | None = None
    if kind == "mp4":
        rest, _, index_text = rest.rpartition("_")
        index = _parse_index(index_text)
    cname, sep, utc_text = rest.rpartition("_")
    if not sep:
        raise NamingError(f"a composite {kind} name ends in _<utc>{'_<index>' if index is not None else ''}")
    return AgoraName(kind=kind, sid=sid, cname=cname, utc=parse_utc(utc_text), index=index, ext=ext)


def _parse_individual(rest: str, *, kind: Kind, sid: str, ext: str) -> AgoraName:
    """Parse the part after ``<sid>_`` of an individual-mode name."""
    cname, _, source = rest.partition(UID_START)
    uid, sep, tail = source.rpartition(UID_END)
    if not sep:
        raise NamingError(f"{UID_START!r} without a following {UID_END!r}")
    media_text, _, number = tail.partition("_")
    media = _MEDIA_BY_NAME.get(media_text)
    if media is None or (kind == "playlist") != (media_text == tail):
        shape = "<media>" if kind == "playlist" else "<media>_<number>"
        raise NamingError(f"expected {UID_END}{shape} at the end, got {tail!r}")
    utc = parse_utc(number) if kind == "slice" else None
    index = _parse_index(number) if kind == "mp4" else None
    return AgoraName(kind=kind, sid=sid, cname=cname, uid=uid, media=media, utc=utc, index=index, ext=ext)


def _parse_index(text: str) -> int:
    """Read an MP4 index: a decimal number without leading zeros, at most nine digits."""
    if _INDEX_RE.fullmatch(text) is None:
        raise NamingError(f"expected an MP4 index (0, 1, ...; at most 9 digits), got {text!r}")
    return int(text)


def format_name(name: AgoraName) -> str:
    """Write the file name that ``name`` describes (the inverse of :func:`parse_name`)."""
    parts = [name.sid, "_", name.cname]
    if name.uid is not None:
        parts += [UID_START, name.uid, UID_END, str(name.media)]
    if name.utc is not None:
        parts += ["_", format_utc(name.utc)]
    if name.index is not None:
        parts += ["_", str(name.index)]
    return "".join([*parts, ".", name.ext])


def playlist_name(sid: str, cname: str, *, uid: str | None = None, media: Media | None = None) -> str:
    """The playlist name of a composite recording, or of one individual-mode stream."""
    return format_name(AgoraName(kind="playlist", sid=sid, cname=cname, uid=uid, media=media, ext="m3u8"))


def slice_name(
    sid: str,
    cname: str,
    utc: datetime,
    *,
    uid: str | None = None,
    media: Media | None = None,
    ext: str = "ts",
) -> str:
    """The name of the slice starting at ``utc``."""
    return format_name(AgoraName(kind="slice", sid=sid, cname=cname, uid=uid, media=media, utc=utc, ext=ext))


def mp4_name(
    sid: str,
    cname: str,
    *,
    index: int,
    utc: datetime | None = None,
    uid: str | None = None,
    media: Media | None = None,
) -> str:
    """The name of an MP4 file: composite ones need ``utc``, individual ones must not have it."""
    name = AgoraName(kind="mp4", sid=sid, cname=cname, uid=uid, media=media, utc=utc, index=index, ext="mp4")
    return format_name(name)


def report_name(sid: str, cname: str, *, uid: str | None = None, media: Media | None = None) -> str:
    """The name of recpipe's report: the playlist's name with ``.report.json`` for ``.m3u8``."""
    return playlist_name(sid, cname, uid=uid, media=media).removesuffix(".m3u8") + ".report.json"


def lease_name(sid: str, cname: str, *, uid: str | None = None, media: Media | None = None) -> str:
    """The name of recpipe's lease while it processes a recording: ``.lease.json`` for ``.m3u8``."""
    return playlist_name(sid, cname, uid=uid, media=media).removesuffix(".m3u8") + ".lease.json"


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


MIN_TICK_DIGITS = 10
"""A snapshot's tick is a Unix time (10 digits in seconds, 13 in ms). Only for a snapshot whose
recording has neither playlist nor slices in its directory does the name alone decide, and then a
shorter run of digits is taken as part of the channel name."""
MAX_TICK_DIGITS = 20
MAX_INDEX_DIGITS = 9
_SNAPSHOT_RE = re.compile(rf"_([0-9]{{1,{MAX_TICK_DIGITS}}})_([0-9]{{1,{MAX_INDEX_DIGITS}}})\.m3u8\Z")


@dataclass(frozen=True, kw_only=True, slots=True)
class SnapshotName:
    """The parts of a snapshot playlist's name ``<sid>_<cname>_<tick>_<index>.m3u8``."""

    sid: str
    cname: str
    tick: int
    index: int


def split_snapshot_name(name: str) -> SnapshotName | None:
    """The parts of ``name`` if it has a snapshot playlist's shape (valid sid and cname), else None.

    Alone, a name cannot say whether the digits belong to the channel name: ask with the cname known
    (:func:`is_snapshot_playlist`), or use :func:`looks_like_snapshot`.
    """
    match = _SNAPSHOT_RE.search(name)
    if match is None:
        return None
    sid, sep, cname = name[: match.start()].partition("_")
    try:
        check_sid(sid)
        check_cname(cname, max_bytes=NAME_CNAME_MAX_BYTES)
    except NamingError:
        return None
    if not sep:
        return None
    return SnapshotName(sid=sid, cname=cname, tick=int(match[1]), index=int(match[2]))


def looks_like_snapshot(name: str) -> bool:
    """Whether a playlist name, on its own, reads as a snapshot's: ``_<tick>_<index>.m3u8`` with a tick
    of at least ``MIN_TICK_DIGITS`` digits (a Unix time)."""
    match = _SNAPSHOT_RE.search(name)
    return match is not None and len(match[1]) >= MIN_TICK_DIGITS and split_snapshot_name(name) is not None
