"""The command lines ``make bench`` measures, and the environment they run in."""

from __future__ import annotations

import compileall
import logging
import os
import subprocess
import sys
from pathlib import Path

from tests.bench.recording import BenchRecording

log = logging.getLogger(__name__)


def ffmpeg_copy(ffmpeg: str, playlist: Path, out: Path, *, faststart: bool = False) -> list[str]:
    """Agora's own recipe: ffmpeg reads the playlist and stream-copies it into an MP4."""
    return [ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(playlist),
            "-c", "copy", "-bsf:a", "aac_adtstoasc",
            *(["-movflags", "+faststart"] if faststart else []), str(out)]  # fmt: skip


def recpipe_argv(source: str, dest: str, recording: BenchRecording, *, endpoint: str | None) -> list[str]:
    """``recpipe process`` as a user runs it."""
    argv = [
        str(Path(sys.executable).with_name("recpipe")),
        "process",
        source,
        "--dest",
        dest,
        "--profile",
        str(recording.profile),
        "--force",
        "--quiet",
    ]
    return argv + (["--endpoint-url", endpoint] if endpoint else [])


def bench_env(ffmpeg: str) -> dict[str, str]:
    """The environment every measured command runs in: fake credentials, the same ffmpeg everywhere."""
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        RECPIPE_FFMPEG=ffmpeg,
    )
    # Every command runs from its bytecode, as an installed program does (pip compiles awscli and
    # yt-dlp when it installs them; ``compile_recpipe`` does it for this checkout).
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)
    return env


def compile_recpipe() -> None:
    """Write the bytecode of recpipe's packages, which an editable install does not: without it every
    run would compile them again (a third of a second), which no installed recpipe does."""
    root = Path(__file__).resolve().parents[2]
    for package in ("pipeline", "stages"):
        compileall.compile_dir(root / package, quiet=1)


def ffmpeg_version(ffmpeg: str) -> str:
    """The first line of ``ffmpeg -version``."""
    out = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0]
