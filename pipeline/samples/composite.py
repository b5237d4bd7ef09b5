"""Write a synthetic, correctly named Agora composite recording with ffmpeg's lavfi sources.

One ffmpeg run encodes test video (H.264) and a sine tone (AAC) into HLS pieces in a temporary
directory (two runs at different sizes for ``resolution-change``); the pieces are joined into slices
named ``<sid>_<cname>_<utc>.ts`` (``utc`` = start + the cumulative ``EXTINF`` durations) and an
Agora-style playlist ``<sid>_<cname>.m3u8`` is written last. Every defect in ``DEFECTS`` is made for
real: the bytes, names and playlist are what a recorder with that fault would leave behind.
Output is byte-identical across runs (bitexact flags, one encoder thread, a sid derived from the inputs).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import NamedTuple

from pipeline.model.exceptions import ConfigError, NamingError, ToolError
from pipeline.model.naming import (
    check_cname,
    check_sid,
    parse_name,
    playlist_name,
    slice_name,
    split_snapshot_name,
)
from stages.ffmpeg import SampleMedia, sample_argv
from stages.ffmpeg import run as ffmpeg_run

log = logging.getLogger(__name__)

DEFECTS: Mapping[str, str] = {
    "missing-slice": "a middle slice is listed in the playlist but its file is not written",
    "empty-slice": "a middle slice is written as 0 bytes",
    "garbage-slice": "a middle slice is replaced by random bytes of the same size",
    "truncated-slice": "a middle slice is cut to half its size, in the middle of a packet",
    "timeline-gap": "a middle slice is left out of both the playlist and storage: a hole in the timeline",
    "timeline-overlap": "the slice before the middle one also holds the first third of the middle one",
    "resolution-change": "from the middle slice on, the video is encoded at another size, "
    "after #EXT-X-DISCONTINUITY",
    "no-endlist": "the playlist has no #EXT-X-ENDLIST: the recording is still in progress",
    "duplicate-entry": "the playlist lists the middle slice twice in a row",
    "orphan": "an extra, correctly named slice not listed in the playlist, timed after the last slice",
    "audio-only": "the slices carry only audio although the profile asks for audio and video",
    "video-only": "the slices carry only video although the profile asks for audio and video",
    "vendor-tags": "the playlist carries #EXT-X-AGORA-* tags and EXTINFs over #EXT-X-TARGETDURATION, "
    "as Agora's own playlists do",
    "unsafe-uri": "one playlist URI is rewritten to ../<name>, outside the recording's prefix",
}
"""Defects ``write_sample`` can inject, with a one-line description each."""
MIDDLE_DEFECTS = frozenset(
    {
        "missing-slice",
        "empty-slice",
        "garbage-slice",
        "truncated-slice",
        "timeline-gap",
        "timeline-overlap",
        "resolution-change",
        "duplicate-entry",
        "unsafe-uri",
    }
)
"""Defects that change a middle slice, so they need at least three slices."""
OVERLAP_PIECES = 3
"""``timeline-overlap`` encodes slices as this many keyframe-aligned pieces, so one can be repeated."""

VIDEO_KBPS = 32
"""Video bitrate: a 45 s sample stays a few hundred KB."""
AUDIO_KBPS = 24
SAMPLE_UID = "527841"
TS_PACKET = 188
DEFAULT_START = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)


@dataclass(frozen=True, kw_only=True, slots=True)
class SampleSet:
    """What a sample of several playlists wrote (individual, v2, failover, backuped samples)."""

    directory: Path
    sid: str
    cname: str
    playlists: tuple[Path, ...]
    """In the order they were written (per user: audio then video; the original, then its failover
    set; the main playlist, then its snapshot)."""
    slices: tuple[Path, ...]
    """Every slice the playlists list (a backuped sample's held-back ones included)."""
    profile: dict[str, object]


@dataclass(frozen=True, kw_only=True, slots=True)
class SampleRecording:
    """What ``write_sample`` wrote."""

    directory: Path
    playlist: Path
    slices: tuple[Path, ...]
    """Every slice the playlist lists, in order, once each (a ``missing-slice`` one does not exist)."""
    sid: str
    cname: str
    seconds: float
    """Sum of the playlist's EXTINF durations."""
    profile: dict[str, object]
    """The start-request body that would have produced this recording."""


class HlsEntry(NamedTuple):
    """One playlist entry: its file name, the EXTINF duration as written, and a discontinuity before it."""

    uri: str
    duration: str
    discontinuity: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class Encoding:
    """How the synthetic media is encoded."""

    seconds: int
    slice_seconds: int
    width: int
    height: int
    fps: int
    video: bool = True
    audio: bool = True
    pieces: int = 1
    """Keyframe-aligned pieces the muxer writes per slice (they are joined into one slice file)."""
    offset: int = 0
    """Seconds added to every timestamp: where this part starts in the recording."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Slice:
    """One slice to write: the muxer pieces it is made of, and where it starts."""

    parts: tuple[tuple[Path, Decimal], ...]
    offset: Decimal
    """Seconds from the recording's start."""
    discontinuity: bool = False

    @property
    def duration(self) -> Decimal:
        """The summed duration of its pieces."""
        return sum((d for _, d in self.parts), Decimal(0))


def write_sample(
    directory: Path,
    *,
    ffmpeg: str,
    seconds: int = 45,
    slice_seconds: int = 15,
    cname: str = "demo-room",
    sid: str | None = None,
    start: datetime = DEFAULT_START,
    defect: str | None = None,
    width: int = 320,
    height: int = 240,
    fps: int = 15,
    force: bool = False,
    extinf_comma: bool = False,
) -> SampleRecording:
    """Write a composite recording into ``directory``; with ``force``, replace a previous sample there.

    :param defect: one of ``DEFECTS``, or None for a clean recording.
    :param extinf_comma: ``#EXTINF:<s>,`` as the recorder writes it with ``privateParams``
        ``{"correctEXTINF": true}``; by default its plain ``#EXTINF:<s>``.
    """
    encoding = Encoding(seconds=seconds, slice_seconds=slice_seconds, width=width, height=height, fps=fps)
    check_args(encoding, defect=defect)
    sid = sid if sid is not None else default_sid(cname, start=start, seconds=seconds)
    check_names(sid=sid, cname=cname)
    prepare_directory(directory, cname=cname, force=force)
    with tempfile.TemporaryDirectory(prefix=".recpipe-sample-", dir=directory) as tmp:
        slices = apply_timeline_defect(
            encode_slices(ffmpeg, Path(tmp), encoding=encoding, defect=defect), defect
        )
        names = tuple(slice_name(sid, cname, start + to_timedelta(s.offset)) for s in slices)
        paths = write_slices(slices, names=names, dest=directory, defect=defect)
    if defect == "orphan":
        end = slices[-1].offset + slices[-1].duration
        write_orphan(paths[-1], sid=sid, cname=cname, at=start + to_timedelta(end))
    playlist = directory / playlist_name(sid, cname)
    entries = playlist_entries(slices, names=names, defect=defect)
    text = build_playlist(
        entries, endlist=defect != "no-endlist", vendor=defect == "vendor-tags", extinf_comma=extinf_comma
    )
    write_atomic(playlist, text)
    log.info("wrote sample recording %s (%d slices, defect: %s)", playlist, len(paths), defect)
    return SampleRecording(
        directory=directory,
        playlist=playlist,
        slices=paths,
        sid=sid,
        cname=cname,
        seconds=float(sum((s.duration for s in slices), Decimal(0))),
        profile=build_profile(cname=cname, width=width, height=height, fps=fps, extinf_comma=extinf_comma),
    )


def check_args(encoding: Encoding, *, defect: str | None) -> None:
    """ConfigError unless the sample's parameters make sense together."""
    seconds, slice_seconds = encoding.seconds, encoding.slice_seconds
    if slice_seconds < 1 or seconds < 1 or seconds < slice_seconds:
        raise ConfigError(f"need 1 <= slice_seconds <= seconds, got {seconds=} {slice_seconds=}")
    if defect is not None and defect not in DEFECTS:
        raise ConfigError(f"unknown defect {defect!r}; valid defects: {', '.join(sorted(DEFECTS))}")
    if defect in MIDDLE_DEFECTS and math.ceil(seconds / slice_seconds) < 3:
        raise ConfigError(f"defect {defect!r} needs at least 3 slices (seconds > 2 * slice_seconds)")
    if defect == "timeline-overlap" and (encoding.fps * slice_seconds) % OVERLAP_PIECES:
        raise ConfigError(
            f"defect 'timeline-overlap' needs fps * slice_seconds divisible by {OVERLAP_PIECES}"
        )
    width, height = encoding.width, encoding.height
    if width < 2 or height < 2 or width % 2 or height % 2:
        raise ConfigError(f"width and height must be even and positive, got {width}x{height}")
    if encoding.fps < 1:
        raise ConfigError(f"fps must be positive, got {encoding.fps}")


def check_names(*, sid: str, cname: str) -> None:
    """ConfigError unless ``sid`` and ``cname`` can appear in Agora file names."""
    try:
        check_sid(sid)
        check_cname(cname)
    except NamingError as err:
        raise ConfigError(str(err)) from err


def default_sid(cname: str, *, start: datetime, seconds: int) -> str:
    """A deterministic 32-hex-digit sid derived from the recording's cname, start and length."""
    seed = f"{cname}\n{start.isoformat()}\n{seconds}".encode()
    return hashlib.sha256(seed).hexdigest()[:32]


def prepare_directory(directory: Path, *, cname: str, force: bool) -> None:
    """Create ``directory``, or empty it of a previous sample when ``force``; ConfigError otherwise."""
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory} exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    present = sorted(directory.iterdir())
    if not present:
        return
    if not force:
        raise ConfigError(f"{directory} is not empty; use --force to replace a previous sample")
    foreign = [p.name for p in present if not is_sample_file(p, cname=cname)]
    if foreign:
        raise ConfigError(
            f"{directory} holds files that are not a previous sample of {cname!r}: {', '.join(foreign[:5])}"
        )
    for path in present:
        path.unlink()


def is_sample_file(path: Path, *, cname: str) -> bool:
    """Whether ``path`` is a ``.m3u8`` playlist (a snapshot playlist included) or ``.ts`` slice of
    channel ``cname`` (any mode)."""
    if not path.is_file() or path.is_symlink() or path.suffix not in (".ts", ".m3u8"):
        return False
    snapshot = split_snapshot_name(path.name)
    if snapshot is not None and snapshot.cname == cname:
        return True
    try:
        name = parse_name(path.name)
    except NamingError:
        return False
    return name.cname == cname and name.kind in ("playlist", "slice")


def encode_slices(ffmpeg: str, work: Path, *, encoding: Encoding, defect: str | None) -> list[Slice]:
    """Encode the recording (in two parts of different sizes for ``resolution-change``) into slices."""
    if defect == "resolution-change":
        count = math.ceil(encoding.seconds / encoding.slice_seconds)
        first = middle(count) * encoding.slice_seconds
        width, height = other_size(encoding.width, encoding.height)
        before = replace(encoding, seconds=first)
        after = replace(encoding, seconds=encoding.seconds - first, width=width, height=height, offset=first)
        later = encode_part(ffmpeg, work / "b", encoding=after)
        return [
            *encode_part(ffmpeg, work / "a", encoding=before),
            replace(later[0], discontinuity=True),
            *later[1:],
        ]
    pieces = OVERLAP_PIECES if defect == "timeline-overlap" else 1
    shaped = replace(encoding, pieces=pieces, video=defect != "audio-only", audio=defect != "video-only")
    return encode_part(ffmpeg, work, encoding=shaped)


def other_size(width: int, height: int) -> tuple[int, int]:
    """The size after a ``resolution-change``: twice as wide, half again as tall (320x240 → 640x360)."""
    return width * 2, (height * 3 // 2) // 2 * 2


def encode_part(ffmpeg: str, work: Path, *, encoding: Encoding) -> list[Slice]:
    """Run ffmpeg into ``work`` and group the pieces its playlist lists into slices."""
    work.mkdir(parents=True, exist_ok=True)
    ffmpeg_run(sample_argv(ffmpeg, work, media=sample_media(encoding)), what="make the sample")
    entries = parse_hls_entries((work / "index.m3u8").read_text(encoding="utf-8"))
    slices = []
    offset = Decimal(encoding.offset)
    for first in range(0, len(entries), encoding.pieces):
        group = entries[first : first + encoding.pieces]
        made = Slice(parts=tuple((work / e.uri, Decimal(e.duration)) for e in group), offset=offset)
        slices.append(made)
        offset += made.duration
    return slices


def sample_media(encoding: Encoding) -> SampleMedia:
    """What ffmpeg encodes for ``encoding``: a keyframe at the start of every piece."""
    e = encoding
    return SampleMedia(
        seconds=e.seconds,
        width=e.width,
        height=e.height,
        fps=e.fps,
        video=e.video,
        audio=e.audio,
        gop=e.fps * e.slice_seconds // e.pieces,
        hls_time=hls_time(e),
        offset=e.offset,
        video_kbps=VIDEO_KBPS,
        audio_kbps=AUDIO_KBPS,
    )


def hls_time(encoding: Encoding) -> str:
    """The muxer's target piece length. Pieces are cut at the first keyframe past each multiple of it,
    so for several pieces per slice it is set a little short of the keyframe interval: a fraction like
    2/3 s printed as 0.666667 would otherwise miss the keyframe at 0.6666… s and double the piece."""
    if encoding.pieces == 1:
        return str(encoding.slice_seconds)
    return f"{encoding.slice_seconds / encoding.pieces * 0.9:.3f}"


def parse_hls_entries(text: str) -> tuple[HlsEntry, ...]:
    """The slices of ffmpeg's own media playlist, with EXTINF durations as written."""
    entries: list[HlsEntry] = []
    duration: str | None = None
    for line in (raw.strip() for raw in text.splitlines()):
        if line.startswith("#EXTINF:"):
            duration = line.removeprefix("#EXTINF:").partition(",")[0].strip()
        elif line and not line.startswith("#"):
            if duration is None or not is_duration(duration):
                raise ToolError(f"ffmpeg wrote a playlist entry {line!r} without a valid #EXTINF")
            entries.append(HlsEntry(uri=line, duration=duration))
            duration = None
    if not entries:
        raise ToolError("ffmpeg wrote a playlist without slices")
    return tuple(entries)


def is_duration(text: str) -> bool:
    """Whether ``text`` is a finite, non-negative decimal number."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        return False
    return value.is_finite() and value >= 0


def to_timedelta(seconds: Decimal) -> timedelta:
    """``seconds`` to the millisecond."""
    return timedelta(milliseconds=int(seconds.quantize(Decimal("0.001")) * 1000))


def offsets(entries: Sequence[HlsEntry]) -> tuple[timedelta, ...]:
    """Start of each entry after the first one's, from the cumulative durations, to the millisecond."""
    starts = itertools.accumulate((Decimal(e.duration) for e in entries), initial=Decimal(0))
    return tuple(to_timedelta(t) for t, _ in zip(starts, entries, strict=False))


def middle(count: int) -> int:
    """Index of the slice a middle-slice defect changes."""
    return count // 2


def apply_timeline_defect(slices: list[Slice], defect: str | None) -> list[Slice]:
    """``timeline-gap`` drops the middle slice; ``timeline-overlap`` lets the one before it run into it."""
    hit = middle(len(slices))
    if defect == "timeline-gap":
        return slices[:hit] + slices[hit + 1 :]
    if defect == "timeline-overlap":
        before = slices[hit - 1]
        extended = replace(before, parts=before.parts + slices[hit].parts[:1])
        return [*slices[: hit - 1], extended, *slices[hit:]]
    return slices


def write_slices(
    slices: Sequence[Slice], *, names: Sequence[str], dest: Path, defect: str | None
) -> tuple[Path, ...]:
    """Write each slice (its pieces joined) under its Agora name, applying a file defect to the middle one."""
    hit = middle(len(slices))
    placed = tuple(dest / name for name in names)
    for i, (made, target) in enumerate(zip(slices, placed, strict=True)):
        if i == hit and defect == "missing-slice":
            continue
        data = b"".join(path.read_bytes() for path, _ in made.parts)
        if i == hit:
            data = damage(data, defect=defect, seed=target.name)
        write_atomic_bytes(target, data)
    return placed


def damage(data: bytes, *, defect: str | None, seed: str) -> bytes:
    """The bytes of a slice after a file defect."""
    if defect == "empty-slice":
        return b""
    if defect == "garbage-slice":
        return noise(len(data), seed=seed)
    if defect == "truncated-slice":
        half = len(data) // 2
        return data[: half - half % TS_PACKET + TS_PACKET // 2]
    return data


def noise(size: int, *, seed: str) -> bytes:
    """``size`` deterministic pseudo-random bytes."""
    blocks = (hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(size // 32 + 1))
    return b"".join(blocks)[:size]


def write_orphan(last: Path, *, sid: str, cname: str, at: datetime) -> Path:
    """Copy the last slice to a correctly named slice starting at ``at``, not listed anywhere."""
    orphan = last.with_name(slice_name(sid, cname, at))
    shutil.copyfile(last, orphan)
    return orphan


def playlist_entries(slices: Sequence[Slice], *, names: Sequence[str], defect: str | None) -> list[HlsEntry]:
    """The playlist's entries: ``unsafe-uri`` points the middle one at ``../``; ``duplicate-entry`` lists
    it twice."""
    entries = [
        HlsEntry(uri=name, duration=str(s.duration), discontinuity=s.discontinuity)
        for s, name in zip(slices, names, strict=True)
    ]
    hit = middle(len(entries))
    if defect == "unsafe-uri":
        entries[hit] = entries[hit]._replace(uri=f"../{entries[hit].uri}")
    if defect == "duplicate-entry":
        entries.insert(hit + 1, entries[hit])
    return entries


def build_playlist(
    entries: Sequence[HlsEntry], *, endlist: bool = True, vendor: bool = False, extinf_comma: bool = False
) -> str:
    """Agora-style media playlist text for ``entries``: ``#EXTINF:<seconds>`` without the comma, as the
    recorder writes it by default (with ``extinf_comma``, as it does when asked to ``correctEXTINF``).

    With ``vendor``, Agora's own tags are added and the target duration is one second short of the
    longest EXTINF, as in Agora's published sample playlist.
    """
    comma = "," if extinf_comma else ""
    target = max(math.ceil(Decimal(e.duration)) for e in entries)
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-ALLOW-CACHE:YES"]
    if vendor:
        target = max(1, target - 1)
        lines.append("#EXT-X-AGORA-ROTATE:0")
    lines.append(f"#EXT-X-TARGETDURATION:{target}")
    for i, entry in enumerate(entries):
        if entry.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        if vendor and i == 0:
            lines.append(f"#EXT-X-AGORA-TRACK-EVENT:EVENT=1,UID={SAMPLE_UID},TYPE=video")
        lines += [f"#EXTINF:{entry.duration}{comma}", entry.uri]
    if endlist:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def build_profile(
    *, cname: str, width: int, height: int, fps: int, extinf_comma: bool = False
) -> dict[str, object]:
    """The start-request body (``cname``, ``uid``, ``clientRequest``) describing the sample."""
    transcoding = {"width": width, "height": height, "fps": fps, "bitrate": VIDEO_KBPS, "mixedVideoLayout": 1}
    storage = sample_storage_config()
    recording: dict[str, object] = {
        "maxIdleTime": 30,
        "streamTypes": 2,
        "channelType": 0,
        "transcodingConfig": transcoding,
    }
    if extinf_comma:
        recording["privateParams"] = {"correctEXTINF": True}
    return {
        "cname": cname,
        "uid": SAMPLE_UID,
        "clientRequest": {
            "recordingConfig": recording,
            "recordingFileConfig": {"avFileType": ["hls", "mp4"]},
            "storageConfig": storage,
        },
    }


def sample_storage_config() -> dict[str, object]:
    """The samples' storageConfig: Amazon S3 us-east-1, bucket ``recpipe-demo``, no keys."""
    return {
        "vendor": 1,
        "region": 0,
        "bucket": "recpipe-demo",
        "accessKey": "",
        "secretKey": "",
        "fileNamePrefix": ["recordings"],
    }


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a ``.part`` file and a rename."""
    write_atomic_bytes(path, text.encode("utf-8"))


def write_atomic_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a ``.part`` file and a rename."""
    part = path.with_name(path.name + ".part")
    part.write_bytes(data)
    os.replace(part, path)
