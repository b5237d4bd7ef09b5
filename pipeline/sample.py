"""Write a synthetic, correctly named Agora composite recording with ffmpeg's lavfi sources.

One ffmpeg run encodes test video (H.264) and a sine tone (AAC) into HLS slices in a temporary
directory; the slices are then renamed ``<sid>_<cname>_<utc>.ts`` (``utc`` = start + the muxer's
cumulative ``EXTINF`` durations) and an Agora-style playlist ``<sid>_<cname>.m3u8`` is written last.
Output is byte-identical across runs (bitexact flags, one encoder thread, a sid derived from the inputs).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import NamedTuple

from pipeline.exceptions import ConfigError, NamingError, ToolError
from pipeline.naming import check_cname, check_sid, parse_name, playlist_name, slice_name

log = logging.getLogger(__name__)

DEFECTS: Mapping[str, str] = {
    "missing-slice": "a middle slice is listed in the playlist but its file is not written",
    "no-endlist": "the playlist has no #EXT-X-ENDLIST: the recording is still in progress",
    "unsafe-uri": "one playlist URI is rewritten to ../<name>, outside the recording's prefix",
    "empty-slice": "a middle slice is written as 0 bytes",
    "orphan": "an extra, correctly named slice not listed in the playlist, timed after the last slice",
}
"""Defects ``write_sample`` can inject, with a one-line description each."""
MIDDLE_DEFECTS = frozenset({"missing-slice", "empty-slice", "unsafe-uri"})
"""Defects that change a middle slice, so they need at least three slices."""

VIDEO_KBPS = 32
"""Video bitrate: a 45 s sample stays a few hundred KB."""
AUDIO_KBPS = 24
SAMPLE_UID = "527841"
DEFAULT_START = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
STDERR_TAIL_LINES = 20


@dataclass(frozen=True, kw_only=True, slots=True)
class SampleRecording:
    """What ``write_sample`` wrote."""

    directory: Path
    playlist: Path
    slices: tuple[Path, ...]
    """Every slice the playlist lists, in order (the ``missing-slice`` one does not exist)."""
    sid: str
    cname: str
    seconds: float
    """Sum of the playlist's EXTINF durations."""
    profile: dict[str, object]
    """The start-request body that would have produced this recording."""


class HlsEntry(NamedTuple):
    """One slice of the muxer's playlist: its file name and the EXTINF duration as written."""

    uri: str
    duration: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Encoding:
    """How the synthetic media is encoded."""

    seconds: int
    slice_seconds: int
    width: int
    height: int
    fps: int


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
) -> SampleRecording:
    """Write a composite recording into ``directory``; with ``force``, replace a previous sample there.

    :param defect: one of ``DEFECTS``, or None for a clean recording.
    """
    encoding = Encoding(seconds=seconds, slice_seconds=slice_seconds, width=width, height=height, fps=fps)
    check_args(encoding, defect=defect)
    sid = sid if sid is not None else default_sid(cname, start=start, seconds=seconds)
    check_names(sid=sid, cname=cname)
    prepare_directory(directory, cname=cname, force=force)
    with tempfile.TemporaryDirectory(prefix=".recpipe-sample-", dir=directory) as tmp:
        entries = encode(ffmpeg, Path(tmp), encoding=encoding)
        names = slice_names(entries, sid=sid, cname=cname, start=start)
        slices = place_slices(entries, names=names, src=Path(tmp), dest=directory, defect=defect)
    if defect == "orphan":
        write_orphan(slices[-1], sid=sid, cname=cname, at=start + span(entries))
    playlist = directory / playlist_name(sid, cname)
    listed = apply_uri_defect(entries, names=names, defect=defect)
    write_atomic(playlist, build_playlist(listed, endlist=defect != "no-endlist"))
    log.info("wrote sample recording %s (%d slices, defect: %s)", playlist, len(slices), defect)
    return SampleRecording(
        directory=directory,
        playlist=playlist,
        slices=slices,
        sid=sid,
        cname=cname,
        seconds=span(entries).total_seconds(),
        profile=build_profile(cname=cname, width=width, height=height, fps=fps),
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
    """Whether ``path`` is a composite ``.m3u8`` playlist or ``.ts`` slice of channel ``cname``."""
    if not path.is_file() or path.is_symlink() or path.suffix not in (".ts", ".m3u8"):
        return False
    try:
        name = parse_name(path.name)
    except NamingError:
        return False
    return name.cname == cname and not name.individual and name.kind in ("playlist", "slice")


def encode(ffmpeg: str, work: Path, *, encoding: Encoding) -> tuple[HlsEntry, ...]:
    """Run ffmpeg into ``work`` and return the slices its playlist lists."""
    run_encoder(build_ffmpeg_argv(ffmpeg, work, encoding=encoding))
    return parse_hls_entries((work / "index.m3u8").read_text(encoding="utf-8"))


def build_ffmpeg_argv(ffmpeg: str, work: Path, *, encoding: Encoding) -> list[str]:
    """The one ffmpeg command that writes ``work/index.m3u8`` and ``work/seg*.ts``."""
    e = encoding
    gop = str(e.fps * e.slice_seconds)
    return [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={e.width}x{e.height}:rate={e.fps}:duration={e.seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={e.seconds}",
        "-map", "0:v", "-map", "1:a", "-t", str(e.seconds),
        "-c:v", "libx264", "-preset", "veryfast", "-threads", "1", "-bf", "0", "-pix_fmt", "yuv420p",
        "-g", gop, "-keyint_min", gop, "-sc_threshold", "0", "-b:v", f"{VIDEO_KBPS}k",
        "-c:a", "aac", "-b:a", f"{AUDIO_KBPS}k", "-ac", "1",
        "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
        "-f", "hls", "-hls_time", str(e.slice_seconds), "-hls_list_size", "0",
        "-hls_segment_filename", str(work / "seg%05d.ts"), str(work / "index.m3u8"),
    ]  # fmt: skip


def run_encoder(argv: Sequence[str]) -> None:
    """Run ffmpeg; ToolError with the end of its stderr if it cannot start or fails."""
    log.debug("running %s", " ".join(argv))
    try:
        done = subprocess.run(list(argv), capture_output=True, check=False)
    except OSError as err:
        raise ToolError(f"cannot run ffmpeg {argv[0]!r}: {err}") from err
    if done.returncode != 0:
        tail = "\n".join(done.stderr.decode("utf-8", "replace").splitlines()[-STDERR_TAIL_LINES:])
        raise ToolError(f"ffmpeg failed to make the sample (exit code {done.returncode}):\n{tail}")


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


def offsets(entries: Sequence[HlsEntry]) -> tuple[timedelta, ...]:
    """Start of each slice after the first one's, from the cumulative durations, to the millisecond."""
    starts: list[timedelta] = []
    total = Decimal(0)
    for entry in entries:
        starts.append(timedelta(milliseconds=int(total.quantize(Decimal("0.001")) * 1000)))
        total += Decimal(entry.duration)
    return tuple(starts)


def span(entries: Sequence[HlsEntry]) -> timedelta:
    """The summed duration of ``entries``, to the millisecond."""
    total = sum((Decimal(e.duration) for e in entries), Decimal(0))
    return timedelta(milliseconds=int(total.quantize(Decimal("0.001")) * 1000))


def slice_names(entries: Sequence[HlsEntry], *, sid: str, cname: str, start: datetime) -> tuple[str, ...]:
    """Agora names of the slices: ``<sid>_<cname>_<start + offset>.ts``."""
    return tuple(slice_name(sid, cname, start + offset) for offset in offsets(entries))


def middle(count: int) -> int:
    """Index of the slice a middle-slice defect changes."""
    return count // 2


def place_slices(
    entries: Sequence[HlsEntry], *, names: Sequence[str], src: Path, dest: Path, defect: str | None
) -> tuple[Path, ...]:
    """Move the muxer's slices to their Agora names in ``dest``, applying a slice defect."""
    placed = tuple(dest / name for name in names)
    hit = middle(len(entries))
    for i, (entry, target) in enumerate(zip(entries, placed, strict=True)):
        if i == hit and defect == "missing-slice":
            continue
        if i == hit and defect == "empty-slice":
            write_atomic(target, "")
            continue
        os.replace(src / entry.uri, target)
    return placed


def write_orphan(last: Path, *, sid: str, cname: str, at: datetime) -> Path:
    """Copy the last slice to a correctly named slice starting at ``at``, not listed anywhere."""
    orphan = last.with_name(slice_name(sid, cname, at))
    shutil.copyfile(last, orphan)
    return orphan


def apply_uri_defect(
    entries: Sequence[HlsEntry], *, names: Sequence[str], defect: str | None
) -> list[HlsEntry]:
    """The playlist entries under their Agora names; ``unsafe-uri`` points the middle one at ``../``."""
    renamed = [HlsEntry(uri=name, duration=e.duration) for e, name in zip(entries, names, strict=True)]
    if defect == "unsafe-uri":
        hit = middle(len(renamed))
        renamed[hit] = renamed[hit]._replace(uri=f"../{renamed[hit].uri}")
    return renamed


def build_playlist(entries: Sequence[HlsEntry], *, endlist: bool = True) -> str:
    """Agora-style media playlist text for ``entries``."""
    target = max(math.ceil(Decimal(e.duration)) for e in entries)
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-ALLOW-CACHE:YES"]
    lines.append(f"#EXT-X-TARGETDURATION:{target}")
    for entry in entries:
        lines += [f"#EXTINF:{entry.duration},", entry.uri]
    if endlist:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def build_profile(*, cname: str, width: int, height: int, fps: int) -> dict[str, object]:
    """The start-request body (``cname``, ``uid``, ``clientRequest``) describing the sample."""
    transcoding = {"width": width, "height": height, "fps": fps, "bitrate": VIDEO_KBPS, "mixedVideoLayout": 1}
    storage = {
        "vendor": 1,
        "region": 0,
        "bucket": "recpipe-demo",
        "accessKey": "",
        "secretKey": "",
        "fileNamePrefix": ["recordings"],
    }
    return {
        "cname": cname,
        "uid": SAMPLE_UID,
        "clientRequest": {
            "recordingConfig": {
                "maxIdleTime": 30,
                "streamTypes": 2,
                "channelType": 0,
                "transcodingConfig": transcoding,
            },
            "recordingFileConfig": {"avFileType": ["hls", "mp4"]},
            "storageConfig": storage,
        },
    }


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a ``.part`` file and a rename."""
    part = path.with_name(path.name + ".part")
    part.write_text(text, encoding="utf-8")
    os.replace(part, path)
