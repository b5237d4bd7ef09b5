"""ffmpeg: the one module that finds it, builds its command lines and runs it.

- **Finding it**: ``$RECPIPE_FFMPEG`` (must be an executable file), else ``ffmpeg`` on ``PATH``, else
  the binary shipped in the ``imageio-ffmpeg`` wheel; ``VersionProbe`` asks it for its version while the
  run gets on with other work (``ffmpeg_version`` waits for the answer at once).
- **Command lines**, each built with ``ffmpeg-python`` and each a pure function (an argv table test
  covers every one): ``remux_argv`` (the slices on stdin → a fragmented MP4), ``merge_argv`` (a user's
  retimed streams → one MP4), ``silence_argv`` (AAC silence for a user's audio holes) and
  ``sample_argv`` (the synthetic recordings of ``recpipe sample``). ffmpeg never reads the vendor
  playlist or a URL: only stdin, files recpipe wrote, or lavfi's generators
  (``-protocol_whitelist file,pipe`` on every MPEG-TS input).
- **Running it**: ``run`` to completion, ``FfmpegProcess`` streaming to its stdin. Either way a failure is
  one ``RemuxError`` carrying the argv, the exit code and the tail of ffmpeg's stderr.

Nothing else in recpipe starts ffmpeg (a test checks that no other module imports ``subprocess`` or
``ffmpeg`` — the fleet's job runner starts recpipe itself, never ffmpeg).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import ffmpeg

from pipeline.model.exceptions import RemuxError, ToolError

log = logging.getLogger(__name__)

ENV_VAR = "RECPIPE_FFMPEG"
VERSION_TIMEOUT_S = 30.0

GLOBAL_OPTIONS = ("-hide_banner", "-nostdin", "-loglevel", "error", "-y")
"""First on every command line: no banner, never read the terminal, errors only, overwrite."""
STDERR_TAIL_LINES = 15
"""How much of ffmpeg's stderr a ``RemuxError`` carries."""
FRAGMENT_MICROSECONDS = 5_000_000
"""ffmpeg cuts a fragment every 5 s of media: all it holds of the MP4's index (and media) at any
time. Shorter makes more fragments for recpipe to read afterwards (0.1 s an hour at 5 s)."""
FRAGMENTED_MOVFLAGS = "+empty_moov+delay_moov+default_base_moof"
TS_INPUT = {"f": "mpegts", "protocol_whitelist": "file,pipe"}
"""How every MPEG-TS input is opened: only stdin or a file recpipe wrote."""
PIPE_BYTES = 1024 * 1024
"""Pipe buffer to ffmpeg (Linux's default is 64 KiB): a slice can be handed over while ffmpeg is still
busy, so reading the next slice and remuxing overlap instead of taking turns."""


# --- finding ffmpeg -----------------------------------------------------------------------------------------


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
    return VersionProbe(exe).result()


class VersionProbe:
    """``exe -version``, started at once and read by ``result``: ffmpeg loads every library it is linked
    with before it answers (0.1–0.25 s here), time a run can spend listing and reading the recording.

    With a ``cache`` file (``version_cache``), an ffmpeg whose binary has not changed since it last
    answered (same path, inode, size, times) is not asked again: its answer is read from the cache.
    """

    def __init__(self, exe: str, *, cache: Path | None = None) -> None:
        self.exe = exe
        self._argv = [exe, "-hide_banner", "-version"]
        self._error: OSError | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._cache = cache
        self._identity = binary_identity(exe) if cache is not None else None
        self._known = cached_version(cache, self._identity) if cache and self._identity else None
        if self._known is not None:
            log.debug("%s: version %s, as it answered before", exe, self._known)
            return
        try:
            self._proc = subprocess.Popen(
                self._argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
        except OSError as err:
            self._error = err

    def result(self) -> str:
        """The version token (e.g. ``"n9.0.2"``); ToolError if ffmpeg could not run or did not say."""
        if self._known is not None:
            return self._known
        if self._proc is None:
            raise ToolError(f"cannot run {self.exe!r} -version: {self._error}")
        try:
            out, _ = self._proc.communicate(timeout=VERSION_TIMEOUT_S)
        except subprocess.TimeoutExpired as err:
            self._proc.kill()
            self._proc.communicate()
            raise ToolError(f"cannot run {self.exe!r} -version: {err}") from err
        first = out.decode("utf-8", "replace").partition("\n")[0]
        version = parse_version_line(first)
        if self._proc.returncode != 0 or version is None:
            raise ToolError(
                f"{self.exe!r} -version failed (exit code {self._proc.returncode}): {first.strip()!r}"
            )
        self._known = version
        if self._cache is not None and self._identity is not None:
            remember_version(self._cache, self._identity, version)
        return version

    def close(self) -> None:
        """Stop waiting for an answer nobody will read (the run ended first)."""
        if self._proc is None:
            return
        with contextlib.suppress(OSError):
            self._proc.kill()
        self._proc.communicate()


# --- the versions ffmpeg gave before ------------------------------------------------------------------------

VERSION_CACHE = Path("recpipe") / "ffmpeg-versions.json"
"""Under the user's cache directory (``$XDG_CACHE_HOME``, else ``~/.cache``)."""
CACHED_BINARIES = 16
"""How many ffmpeg binaries the cache remembers (the most recent)."""
VERSION_TOKEN = re.compile(r"[\w.+~:-]{1,100}")
"""What a version read back from the cache must look like (it goes into reports)."""


@dataclass(frozen=True, slots=True)
class BinaryIdentity:
    """An ffmpeg binary as the file system has it: a changed or replaced binary has another identity."""

    path: str
    """The real path, symbolic links resolved."""
    stat: tuple[int, ...]
    """Device, inode, size, and modification and change times in nanoseconds."""


def version_cache(environ: Mapping[str, str]) -> Path | None:
    """The cache file of ffmpeg versions: under ``$XDG_CACHE_HOME`` (when absolute), else ``~/.cache``;
    None without either."""
    base = environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        home = environ.get("HOME", "")
        if not os.path.isabs(home):
            return None
        base = os.path.join(home, ".cache")
    return Path(base) / VERSION_CACHE


def binary_identity(exe: str) -> BinaryIdentity | None:
    """The identity of the binary ``exe`` names (looked up on PATH when it is a bare name)."""
    found = shutil.which(exe) or exe
    try:
        path = os.path.realpath(found)
        st = os.stat(path)
    except OSError:
        return None
    return BinaryIdentity(path, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))


def _read_cache(cache: Path) -> dict[str, object]:
    try:
        data = json.loads(cache.read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def cached_version(cache: Path, identity: BinaryIdentity) -> str | None:
    """The version the binary answered before, when the cache has it for this very identity."""
    entry = _read_cache(cache).get(identity.path)
    if not isinstance(entry, dict) or entry.get("stat") != list(identity.stat):
        return None
    version = entry.get("version")
    return version if isinstance(version, str) and VERSION_TOKEN.fullmatch(version) else None


def remember_version(cache: Path, identity: BinaryIdentity, version: str) -> None:
    """Add the answer to the cache (written to a temporary file, then renamed over it). A cache that
    cannot be written (a read-only home) only means ffmpeg is asked again next time."""
    entries = {k: v for k, v in _read_cache(cache).items() if k != identity.path}
    entries[identity.path] = {"stat": list(identity.stat), "version": version}
    kept = dict(list(entries.items())[-CACHED_BINARIES:])
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=".ffmpeg-versions-", dir=cache.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(kept, f)
            os.replace(temp, cache)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
    except OSError as err:
        log.debug("cannot write the ffmpeg version cache %s: %s", cache, err)


def parse_version_line(line: str) -> str | None:
    """The token after ``version`` in ffmpeg's first ``-version`` line, or None."""
    words = line.split()
    for i, word in enumerate(words[:-1]):
        if word == "version":
            return words[i + 1]
    return None


# --- command lines (pure) -----------------------------------------------------------------------------------


def _argv(ffmpeg_exe: str, stream: ffmpeg.nodes.OutputStream, *, before: Sequence[str] = ()) -> list[str]:
    """Global options first, then ``before``, then the graph's arguments with the output path last:
    the order people expect when reading a log line."""
    return [ffmpeg_exe, *GLOBAL_OPTIONS, *before, *(str(a) for a in stream.get_args())]


def remux_argv(ffmpeg_exe: str, *, output: Path) -> list[str]:
    """MPEG-TS on stdin → fragmented MP4 at ``output``, stream copy, AAC fixed for MP4.

    Fragmented, because ffmpeg's regular MP4 muxer keeps every sample's index entry in memory until
    the end (memory would grow with the recording); ``delay_moov`` writes the ``moov`` once the first
    fragment is known, so its edit lists carry each track's start. recpipe publishes a regular MP4
    with ``moov`` first, built from the fragments (``stages.media.faststart``); no ``+faststart``."""
    source = ffmpeg.input("pipe:0", **TS_INPUT)
    stream = ffmpeg.output(
        source["v?"],
        source["a?"],
        str(output),
        c="copy",
        fflags="+bitexact",
        format="mp4",
        movflags=FRAGMENTED_MOVFLAGS,
        frag_duration=FRAGMENT_MICROSECONDS,
        **{"bsf:a": "aac_adtstoasc"},
    )
    return _argv(ffmpeg_exe, stream)


def merge_argv(
    ffmpeg_exe: str, *, inputs: Mapping[Literal["video", "audio"], Path], offset_s: float, output: Path
) -> list[str]:
    """Each stream's retimed MPEG-TS (``"video"``/``"audio"`` → file) → one fragmented MP4, stream
    copy, the timestamps kept as planned (``-copyts``) and moved ``offset_s`` earlier."""
    sources = {name: ffmpeg.input(str(path), **TS_INPUT) for name, path in inputs.items()}
    picked = [sources[name]["v:0" if name == "video" else "a:0"] for name in sources]
    stream = ffmpeg.output(
        *picked,
        str(output),
        c="copy",
        output_ts_offset=f"-{offset_s:g}",
        fflags="+bitexact",
        format="mp4",
        movflags=FRAGMENTED_MOVFLAGS,
        frag_duration=FRAGMENT_MICROSECONDS,
        **{"bsf:a": "aac_adtstoasc"},
    )
    return _argv(ffmpeg_exe, stream, before=("-copyts",))


def silence_argv(
    ffmpeg_exe: str, *, sample_rate: int, channels: int, pid: int, frames: int, kbps: int, output: Path
) -> list[str]:
    """``frames`` AAC frames of silence as MPEG-TS at ``output``, with the audio's rate, channels and PID."""
    layout = "mono" if channels == 1 else "stereo"
    source = ffmpeg.input(f"anullsrc=r={sample_rate}:cl={layout}", f="lavfi")
    stream = ffmpeg.output(
        source,
        str(output),
        **{"frames:a": frames, "c:a": "aac", "b:a": f"{kbps}k", "flags:a": "+bitexact"},
        streamid=f"0:{pid}",
        fflags="+bitexact",
        format="mpegts",
    )
    return _argv(ffmpeg_exe, stream)


@dataclass(frozen=True, kw_only=True, slots=True)
class SampleMedia:
    """What ``sample_argv`` encodes: a test picture and/or a sine tone, cut into HLS pieces."""

    seconds: int
    width: int
    height: int
    fps: int
    video: bool
    audio: bool
    gop: int
    """Frames between keyframes (every piece starts with one)."""
    hls_time: str
    """The muxer's target piece length, as ffmpeg reads it."""
    offset: int = 0
    """Seconds added to every timestamp."""
    video_kbps: int
    audio_kbps: int


def sample_argv(ffmpeg_exe: str, work: Path, *, media: SampleMedia) -> list[str]:
    """The one command that encodes a synthetic recording into ``work/index.m3u8`` and ``work/seg*.ts``
    (H.264 without B-frames, AAC mono, everything bit-exact so a sample is the same on every run)."""
    m = media
    picked = []
    options: dict[str, object] = {"t": m.seconds}
    if m.video:
        picture = f"testsrc2=size={m.width}x{m.height}:rate={m.fps}:duration={m.seconds}"
        picked.append(ffmpeg.input(picture, f="lavfi")["v"])
        options |= {
            "c:v": "libx264", "preset": "veryfast", "threads": 1, "bf": 0, "pix_fmt": "yuv420p",
            "g": m.gop, "keyint_min": m.gop, "sc_threshold": 0, "b:v": f"{m.video_kbps}k",
            "flags:v": "+bitexact",
        }  # fmt: skip
    if m.audio:
        tone = f"sine=frequency=440:sample_rate=48000:duration={m.seconds}"
        picked.append(ffmpeg.input(tone, f="lavfi")["a"])
        options |= {"c:a": "aac", "b:a": f"{m.audio_kbps}k", "ac": 1, "flags:a": "+bitexact"}
    if m.offset:
        options["output_ts_offset"] = m.offset
    stream = ffmpeg.output(
        *picked,
        str(work / "index.m3u8"),
        fflags="+bitexact",
        format="hls",
        hls_time=m.hls_time,
        hls_list_size=0,
        hls_segment_filename=str(work / "seg%05d.ts"),
        **options,
    )
    return _argv(ffmpeg_exe, stream)


# --- running it ---------------------------------------------------------------------------------------------


def stderr_tail(stderr: bytes | str) -> str:
    """The last ``STDERR_TAIL_LINES`` lines of ffmpeg's stderr."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    return "\n".join(text.splitlines()[-STDERR_TAIL_LINES:])


def not_started(argv: Sequence[str], err: OSError) -> RemuxError:
    """The error for an ffmpeg that could not be started (no such file, not executable)."""
    exe = argv[0] if argv else ""
    return RemuxError(f"cannot run ffmpeg {exe!r}: {err}", argv=argv, returncode=None, stderr_tail="")


def run(argv: Sequence[str], *, what: str) -> None:
    """Run ffmpeg to completion (no stdin); ``RemuxError`` saying it could not ``what`` if it fails."""
    log.debug("running %s", shlex.join(argv))
    try:
        done = subprocess.run(list(argv), capture_output=True, check=False, stdin=subprocess.DEVNULL)
    except OSError as err:
        raise not_started(argv, err) from err
    if done.returncode != 0:
        raise RemuxError(
            f"ffmpeg could not {what}",
            argv=list(argv),
            returncode=done.returncode,
            stderr_tail=stderr_tail(done.stderr),
        )


def widen_pipe(pipe: IO[bytes] | None) -> None:
    """Ask for a ``PIPE_BYTES`` buffer where the platform allows it (a hint; failure changes nothing)."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if pipe is None or set_size is None:
        return
    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe.fileno(), set_size, PIPE_BYTES)


class FfmpegProcess:
    """One ffmpeg reading from its stdin (``remux_argv``) while recpipe writes to it."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        log.debug("running %s", shlex.join(self.argv))
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process; closed in close/kill
        try:
            self._proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr
            )
        except OSError as err:
            self._stderr.close()
            raise not_started(self.argv, err) from err
        self._broken = False
        widen_pipe(self._proc.stdin)

    def write(self, data: bytes) -> None:
        """Pass ``data`` on; if ffmpeg has stopped reading, the error shows when it is closed."""
        if self._broken or not data:
            return
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(data)
        except BrokenPipeError:
            self._broken = True
            log.debug("ffmpeg closed its input early")

    def close(self) -> None:
        """End the input and wait; ``RemuxError`` with the tail of stderr if ffmpeg failed."""
        assert self._proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self._proc.stdin.close()
        returncode = self._proc.wait()
        self._stderr.seek(0)
        stderr = self._stderr.read()
        self._stderr.close()
        if returncode != 0:
            raise RemuxError(
                "ffmpeg could not remux the slices",
                argv=self.argv,
                returncode=returncode,
                stderr_tail=stderr_tail(stderr),
            )

    def kill(self) -> None:
        """Stop ffmpeg at once (the output is thrown away)."""
        with contextlib.suppress(OSError):
            self._proc.kill()
        with contextlib.suppress(OSError, BrokenPipeError):
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        self._proc.wait()
        self._stderr.close()
