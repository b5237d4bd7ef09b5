"""A synthetic composite recording of any length, built in seconds and cached: the benchmark's input.

One slice is encoded for real (H.264 + AAC at Agora's default composite profile: 640x360, 15 fps,
500 kbit/s) and tiled: copy ``i`` is the same bytes with every timestamp moved by ``i`` slice lengths
(``stages.media.retime``). For the copies to join seamlessly the slice length must hold whole video
frames *and* whole audio PES: 9.6 s is 144 frames at 15 fps and 450 AAC frames at 48 kHz, and the
muxer is told to put one AAC frame in each PES. The slice is the middle one of three cut from one
continuous encode, so its audio starts and ends exactly where its neighbours' would.

The result is named and listed exactly like the recorder's output (``<sid>_<cname>.m3u8`` and
``<sid>_<cname>_<utc>.ts``) with a start request beside it, and is kept under ``.bench/cache``.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.model.naming import format_utc
from pipeline.samples.composite import HlsEntry, build_playlist, build_profile
from stages.media.retime import retime

log = logging.getLogger(__name__)

SLICE_S = 9.6
SLICE_TICKS = 864_000
WIDTH, HEIGHT, FPS, VIDEO_KBPS = 640, 360, 15, 500
CNAME = "bench-room"
START = datetime(2026, 3, 2, 14, 0, 0, tzinfo=UTC)
FORMAT = 1
"""Bumped whenever what is built changes, so stale caches are rebuilt."""


@dataclass(frozen=True, kw_only=True, slots=True)
class BenchRecording:
    """A built recording: its directory (the slices and playlist), playlist and start request."""

    directory: Path
    playlist: Path
    profile: Path
    slices: int
    bytes: int


def encode_middle_slice(ffmpeg: str, work: Path) -> bytes:
    """Encode three slice lengths continuously, cut at the keyframes, and keep the middle slice."""
    seconds = 3 * SLICE_S
    subprocess.run(
        [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
         "-c:v", "libx264", "-preset", "veryfast", "-b:v", f"{VIDEO_KBPS}k", "-maxrate", f"{VIDEO_KBPS}k",
         "-bufsize", f"{2 * VIDEO_KBPS}k", "-bf", "0", "-g", "1000", "-sc_threshold", "0",
         "-force_key_frames", f"expr:gte(t,n_forced*{SLICE_S})", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "48k", "-ac", "1",
         "-f", "segment", "-segment_time", str(SLICE_S), "-segment_format", "mpegts",
         "-segment_format_options", "pes_payload_size=0", str(work / "piece%d.ts")],
        check=True,
    )  # fmt: skip
    return (work / "piece1.ts").read_bytes()


def slice_name(sid: str, index: int) -> str:
    """The recorder's name for slice ``index``."""
    return f"{sid}_{CNAME}_{format_utc(START + timedelta(seconds=index * SLICE_S))}.ts"


def build(directory: Path, *, slices: int, ffmpeg: str) -> BenchRecording:
    """Write a recording of ``slices`` tiled slices into ``directory`` (replacing it)."""
    sid = f"bench{slices:05d}"
    shutil.rmtree(directory, ignore_errors=True)
    rec_dir = directory / "recordings"
    rec_dir.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="recpipe-bench-") as tmp:
        middle = encode_middle_slice(ffmpeg, Path(tmp))
    names = []
    for i in range(slices):
        name = slice_name(sid, i)
        (rec_dir / name).write_bytes(retime(middle, shift=(i - 1) * SLICE_TICKS))
        names.append(name)
    entries = [HlsEntry(uri=name, duration=f"{SLICE_S:.3f}", discontinuity=False) for name in names]
    playlist = rec_dir / f"{sid}_{CNAME}.m3u8"
    playlist.write_text(build_playlist(entries))
    profile = directory / "start.json"
    profile.write_text(json.dumps(build_profile(cname=CNAME, width=WIDTH, height=HEIGHT, fps=FPS)))
    (directory / "FORMAT").write_text(str(FORMAT))
    return describe(directory)


def describe(directory: Path) -> BenchRecording:
    """The recording already built in ``directory``."""
    rec_dir = directory / "recordings"
    ts = sorted(rec_dir.glob("*.ts"))
    [playlist] = rec_dir.glob("*.m3u8")
    return BenchRecording(
        directory=rec_dir,
        playlist=playlist,
        profile=directory / "start.json",
        slices=len(ts),
        bytes=sum(p.stat().st_size for p in ts),
    )


def cached(cache: Path, *, hours: float, ffmpeg: str) -> tuple[BenchRecording, float | None]:
    """The recording of ``hours`` from the cache (built first if needed) and the build time, if built."""
    slices = round(hours * 3600 / SLICE_S)
    directory = cache / f"composite-{slices}"
    stamp = directory / "FORMAT"
    if stamp.exists() and stamp.read_text() == str(FORMAT) and describe(directory).slices == slices:
        return describe(directory), None
    started = datetime.now(UTC)
    recording = build(directory, slices=slices, ffmpeg=ffmpeg)
    return recording, (datetime.now(UTC) - started).total_seconds()
