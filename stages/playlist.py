"""Reading the recorder's HLS media playlist. Pure: text in, ``Playlist`` out.

The ``m3u8`` library does the tag parsing; it is lenient (it drops a URI without ``#EXTINF``,
ignores garbage lines), so recpipe adds the structural checks a batch pipeline needs and turns
every library failure into ``PlaylistError``.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

import m3u8

from pipeline.model.exceptions import PlaylistError

log = logging.getLogger(__name__)

VENDOR_TAG_PREFIX = "#EXT-X-AGORA-"
"""Agora's own tags (``#EXT-X-AGORA-TRACK-EVENT``, ``#EXT-X-AGORA-ROTATE``): kept, not interpreted."""

MAX_MEDIA_SEQUENCE = 2**63
"""RFC 8216 makes it a decimal-integer (0 to 2**64-1); recpipe keeps it within a signed 64-bit range."""
MAX_TARGET_DURATION_S = 24 * 3600
"""A day: far beyond any slice (cut every ~15 s, forced at ~5.5 min), and small enough to be a float.
Also the longest EXTINF accepted."""
DEFAULT_MAX_ENTRIES = 50_000
"""A day of 15 s slices is 5,760 entries (``RECPIPE_MAX_PLAYLIST_ENTRIES`` changes the limit)."""
UNSUPPORTED_TAGS = {
    "#EXT-X-KEY": "encrypted slices (#EXT-X-KEY)",
    "#EXT-X-SESSION-KEY": "encrypted slices (#EXT-X-SESSION-KEY)",
    "#EXT-X-BYTERANGE": "byte-range slices (#EXT-X-BYTERANGE)",
    "#EXT-X-MAP": "an initialization section (#EXT-X-MAP, fragmented MP4 slices)",
    "#EXT-X-PART": "low-latency partial slices (#EXT-X-PART)",
}
"""HLS features the recorder never writes and recpipe cannot honour: a playlist using them is refused
rather than read wrongly (every slice is read whole, as MPEG-TS, in the clear)."""

MAX_NAME_BYTES = 255
"""The longest file name filesystems allow; Agora's slice names are under 120 bytes."""
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, kw_only=True, slots=True)
class Entry:
    """One ``#EXTINF`` entry of the playlist."""

    index: int
    num: int
    uri: str
    duration: float
    discontinuity: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class Playlist:
    """The parts of a media playlist recpipe uses."""

    version: int | None
    target_duration: float | None
    media_sequence: int
    endlist: bool
    entries: tuple[Entry, ...]
    vendor_tags: tuple[str, ...] = ()

    @property
    def duration(self) -> float:
        """Sum of the EXTINF durations."""
        return math.fsum(e.duration for e in self.entries)


def decode_playlist(data: bytes) -> str:
    """The playlist's text; ``PlaylistError`` unless it is UTF-8 without NULs."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise PlaylistError(f"playlist is not UTF-8 text (byte {err.start})") from err
    if "\x00" in text:
        raise PlaylistError("playlist contains NUL bytes")
    return text


def _uri_lines(text: str) -> list[str]:
    """Every non-empty line that is not a tag or comment: the URIs the playlist lists."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _check_header(text: str) -> None:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if first != "#EXTM3U":
        raise PlaylistError("playlist does not start with #EXTM3U")


def _collect_vendor_tags(text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in text.splitlines() if line.strip().startswith(VENDOR_TAG_PREFIX))


def _load(text: str) -> m3u8.M3U8:
    try:
        return m3u8.loads(text)
    except (ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
        raise PlaylistError(f"playlist cannot be parsed: {err}") from err


def _entries(parsed: m3u8.M3U8, *, media_sequence: int) -> tuple[Entry, ...]:
    entries = []
    for index, seg in enumerate(parsed.segments):
        duration = seg.duration
        if duration is None or not math.isfinite(duration) or not 0 <= duration <= MAX_TARGET_DURATION_S:
            raise PlaylistError(f"entry {index} ({seg.uri!r}) has an invalid EXTINF duration {duration!r}")
        entries.append(
            Entry(
                index=index,
                num=media_sequence + index,
                uri=str(seg.uri),
                duration=float(duration),
                discontinuity=bool(seg.discontinuity),
            )
        )
    return tuple(entries)


def _check_supported(text: str, *, max_entries: int) -> None:
    """Refuse what recpipe cannot read correctly, before the parser spends time on it."""
    entries = 0
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXTINF"):
            entries += 1
        elif line.startswith("#EXT-X-"):
            tag = line.partition(":")[0]
            if tag in UNSUPPORTED_TAGS:
                raise PlaylistError(
                    f"the playlist uses {UNSUPPORTED_TAGS[tag]}, which Agora recordings never do"
                )
    if entries > max_entries:
        raise PlaylistError(f"the playlist lists {entries} slices, over the limit of {max_entries}")


def parse_playlist(text: str, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> Playlist:
    """Parse a media playlist; ``PlaylistError`` for anything that is not one (or lists more than
    ``max_entries`` slices)."""
    _check_header(text)
    _check_supported(text, max_entries=max_entries)
    parsed = _load(text)
    if parsed.is_variant:
        raise PlaylistError("a master (variant) playlist was given; recordings have media playlists")
    uris = _uri_lines(text)
    if len(uris) != len(parsed.segments):
        raise PlaylistError(f"{len(uris)} URI lines but {len(parsed.segments)} #EXTINF entries")
    media_sequence = int(parsed.media_sequence or 0)
    if not 0 <= media_sequence < MAX_MEDIA_SEQUENCE:
        raise PlaylistError(f"EXT-X-MEDIA-SEQUENCE {str(media_sequence)[:20]} is out of range")
    target = parsed.target_duration
    if target is not None and not 0 <= target <= MAX_TARGET_DURATION_S:
        raise PlaylistError(f"EXT-X-TARGETDURATION {str(target)[:20]} is out of range")
    return Playlist(
        version=parsed.version,
        target_duration=None if target is None else float(target),
        media_sequence=media_sequence,
        endlist=bool(parsed.is_endlist),
        entries=_entries(parsed, media_sequence=media_sequence),
        vendor_tags=_collect_vendor_tags(text),
    )


def unsafe_reason(uri: str) -> str | None:
    """Why ``uri`` is not a plain file name inside the recording's directory, or None if it is."""
    if not uri:
        return "empty URI"
    if len(uri.encode("utf-8")) > MAX_NAME_BYTES:
        return f"a name longer than {MAX_NAME_BYTES} bytes"
    if _CONTROL.search(uri):
        return "control characters"
    if "/" in uri or "\\" in uri:
        return "path separators"
    if uri.startswith("."):
        return "a leading dot (hidden file or parent directory)"
    if _SCHEME.match(uri):
        return "a URL scheme"
    return None
