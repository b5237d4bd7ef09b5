"""Find the ffmpeg binary and ask its version; nothing is cached here (callers cache).

Order: ``$RECPIPE_FFMPEG`` (must be an executable file), else ``ffmpeg`` on ``PATH``, else the binary
shipped in the ``imageio-ffmpeg`` wheel.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping

from pipeline.model.exceptions import ToolError

log = logging.getLogger(__name__)

ENV_VAR = "RECPIPE_FFMPEG"
VERSION_TIMEOUT_S = 30.0


def find_ffmpeg(environ: Mapping[str, str]) -> str:
    """Path of the ffmpeg binary to use: ``$RECPIPE_FFMPEG``, else PATH, else imageio-ffmpeg's."""
    chosen = environ.get(ENV_VAR)
    if chosen:
        return _check_executable(chosen)
    on_path = shutil.which("ffmpeg", path=environ.get("PATH")) if environ.get("PATH") else None
    if on_path:
        log.debug("using ffmpeg on PATH: %s", on_path)
        return on_path
    return _bundled_ffmpeg()


def _check_executable(path: str) -> str:
    """Return ``path`` if it is an executable file, else ToolError naming the variable."""
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise ToolError(f"${ENV_VAR} is set to {path!r}, which is not an executable file")
    log.debug("using ffmpeg from $%s: %s", ENV_VAR, path)
    return path


def _bundled_ffmpeg() -> str:
    """The binary shipped in the imageio-ffmpeg wheel; ToolError if it is not available."""
    try:
        import imageio_ffmpeg

        exe = str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError, OSError) as err:
        raise ToolError(
            f"ffmpeg not found: set ${ENV_VAR} to an ffmpeg binary, put ffmpeg on PATH, "
            f"or install the imageio-ffmpeg wheel ({err})"
        ) from err
    log.debug("using imageio-ffmpeg's ffmpeg: %s", exe)
    return exe


def ffmpeg_version(exe: str) -> str:
    """The version token of ``exe -version`` (e.g. ``"n9.0.2"``); ToolError if it cannot run."""
    argv = [exe, "-hide_banner", "-version"]
    try:
        done = subprocess.run(argv, capture_output=True, check=False, timeout=VERSION_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as err:
        raise ToolError(f"cannot run {exe!r} -version: {err}") from err
    first = done.stdout.decode("utf-8", "replace").partition("\n")[0]
    version = parse_version_line(first)
    if done.returncode != 0 or version is None:
        raise ToolError(f"{exe!r} -version failed (exit code {done.returncode}): {first.strip()!r}")
    return version


def parse_version_line(line: str) -> str | None:
    """The token after ``version`` in ffmpeg's first ``-version`` line, or None."""
    words = line.split()
    for i, word in enumerate(words[:-1]):
        if word == "version":
            return words[i + 1]
    return None
