"""Builders for real media files made with ffmpeg's lavfi sources (test helpers)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from stages.ffmpeg import find_ffmpeg

BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact"]


def av_source_args(
    *, seconds: float, video: bool, audio: bool, size: str = "160x120", fps: int = 15
) -> list[str]:
    """ffmpeg input and encoder arguments for lavfi test video (H.264) and/or a sine tone (AAC)."""
    args: list[str] = []
    if video:
        args += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    if video:
        args += ["-c:v", "libx264", "-preset", "veryfast", "-threads", "1", "-bf", "0", "-pix_fmt", "yuv420p"]
    if audio:
        args += ["-c:a", "aac", "-b:a", "48k"]
    return args


def make_av_mp4(
    path: Path,
    *,
    seconds: float,
    video: bool = True,
    audio: bool = True,
    faststart: bool = True,
    ffmpeg: str | None = None,
) -> Path:
    """Write an MP4 of ``seconds`` with H.264 video and/or AAC audio to ``path`` and return it."""
    if not (video or audio):
        raise ValueError("an MP4 needs video or audio")
    exe = ffmpeg or find_ffmpeg(os.environ)
    argv = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    argv += av_source_args(seconds=seconds, video=video, audio=audio)
    argv += [*BITEXACT, "-t", str(seconds)]
    argv += ["-movflags", "+faststart"] if faststart else []
    argv += ["-f", "mp4", str(path)]
    subprocess.run(argv, check=True, capture_output=True)
    return path


PACKET = 188


def ts_packets(data: bytes) -> list[bytes]:
    """``data`` split into 188-byte packets (it must be whole packets)."""
    assert len(data) % PACKET == 0
    return [data[i : i + PACKET] for i in range(0, len(data), PACKET)]


def packet_pid(packet: bytes) -> int:
    return ((packet[1] & 0x1F) << 8) | packet[2]


def starts_unit(packet: bytes) -> bool:
    return bool(packet[1] & 0x40)
