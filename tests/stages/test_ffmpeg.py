"""stages.ffmpeg: finding ffmpeg and its version, every command line (argv tables), running it."""

from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import replace
from pathlib import Path

import imageio_ffmpeg
import pytest

from pipeline.model.exceptions import RemuxError, ToolError
from stages import ffmpeg as ffmpeg_module
from stages.ffmpeg import (
    FfmpegProcess,
    SampleMedia,
    VersionProbe,
    ffmpeg_version,
    find_ffmpeg,
    merge_argv,
    parse_version_line,
    remux_argv,
    run,
    sample_argv,
    silence_argv,
    version_cache,
)

GLOBAL = ["/bin/ff", "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
TS_IN = ["-f", "mpegts", "-protocol_whitelist", "file,pipe"]
FRAGMENTED = ["-frag_duration", "5000000", "-movflags", "+empty_moov+delay_moov+default_base_moof"]


def make_executable(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_env_var_to_missing_path_is_an_error(tmp_path):
    with pytest.raises(ToolError, match="RECPIPE_FFMPEG"):
        find_ffmpeg({"RECPIPE_FFMPEG": str(tmp_path / "nope"), "PATH": os.environ.get("PATH", "")})


def test_env_var_to_non_executable_file_is_an_error(tmp_path):
    plain = tmp_path / "ffmpeg"
    plain.write_text("not a program")
    plain.chmod(0o644)
    with pytest.raises(ToolError, match="not an executable"):
        find_ffmpeg({"RECPIPE_FFMPEG": str(plain)})


def test_env_var_wins_over_path(tmp_path):
    chosen = make_executable(tmp_path / "my-ffmpeg")
    on_path = tmp_path / "bin"
    on_path.mkdir()
    make_executable(on_path / "ffmpeg")
    assert find_ffmpeg({"RECPIPE_FFMPEG": str(chosen), "PATH": str(on_path)}) == str(chosen)


def test_ffmpeg_on_path_is_used(tmp_path):
    exe = make_executable(tmp_path / "ffmpeg")
    assert find_ffmpeg({"PATH": str(tmp_path)}) == str(exe)


@pytest.mark.parametrize(
    "environ",
    [
        pytest.param({}, id="no-path"),
        pytest.param({"PATH": ""}, id="empty-path"),
        pytest.param({"RECPIPE_FFMPEG": ""}, id="empty-env-var"),
    ],
)
def test_without_path_falls_back_to_imageio(environ):
    assert find_ffmpeg(environ) == imageio_ffmpeg.get_ffmpeg_exe()


def test_path_without_ffmpeg_falls_back_to_imageio(tmp_path):
    assert find_ffmpeg({"PATH": str(tmp_path)}) == imageio_ffmpeg.get_ffmpeg_exe()


@pytest.mark.ffmpeg
def test_version_of_the_real_binary():
    version = ffmpeg_version(find_ffmpeg({}))
    assert version
    assert " " not in version


def test_version_of_a_missing_binary(tmp_path):
    with pytest.raises(ToolError, match="cannot run"):
        ffmpeg_version(str(tmp_path / "nope"))


def test_version_of_a_failing_binary(tmp_path):
    exe = make_executable(tmp_path / "ffmpeg", "#!/bin/sh\necho 'ffmpeg version n1.0'\nexit 1\n")
    with pytest.raises(ToolError, match="exit code 1"):
        ffmpeg_version(str(exe))


def test_version_of_something_else(tmp_path):
    exe = make_executable(tmp_path / "ffmpeg", "#!/bin/sh\necho hello\n")
    with pytest.raises(ToolError):
        ffmpeg_version(str(exe))


def test_the_version_is_asked_for_when_the_probe_is_made(tmp_path):
    """The probe's ffmpeg runs while the caller does other work; ``result`` only collects its answer."""
    marker = tmp_path / "ran"
    exe = make_executable(tmp_path / "ffmpeg", f"#!/bin/sh\ntouch '{marker}'\necho 'ffmpeg version n7.1 x'\n")
    probe = VersionProbe(str(exe))
    deadline = time.monotonic() + 10
    while not marker.exists():
        assert time.monotonic() < deadline, "the probe did not start ffmpeg"
        time.sleep(0.01)
    assert probe.result() == "n7.1"


def test_a_version_that_never_comes(tmp_path, monkeypatch):
    monkeypatch.setattr(ffmpeg_module, "VERSION_TIMEOUT_S", 0.2)
    exe = make_executable(tmp_path / "ffmpeg", "#!/bin/sh\nexec sleep 30\n")
    probe = VersionProbe(str(exe))
    started = time.monotonic()
    with pytest.raises(ToolError, match=r"cannot run .* -version: .*timed out"):
        probe.result()
    assert time.monotonic() - started < 10


def test_a_probe_nobody_reads_is_stopped(tmp_path):
    exe = make_executable(tmp_path / "ffmpeg", "#!/bin/sh\nexec sleep 30\n")
    probe = VersionProbe(str(exe))
    started = time.monotonic()
    probe.close()
    assert time.monotonic() - started < 10
    assert probe._proc is not None
    assert probe._proc.returncode is not None


def counting_ffmpeg(path: Path, version: str = "n7.1") -> tuple[Path, Path]:
    """A fake ffmpeg that answers ``version`` and notes each time it is run."""
    runs = path.with_name(path.name + ".runs")
    return make_executable(path, f"#!/bin/sh\necho x >> '{runs}'\necho 'ffmpeg version {version} x'\n"), runs


def times_run(runs: Path) -> int:
    return len(runs.read_text().splitlines()) if runs.exists() else 0


def test_an_unchanged_binary_is_not_asked_its_version_again(tmp_path):
    cache = tmp_path / "cache" / "recpipe" / "ffmpeg-versions.json"
    exe, runs = counting_ffmpeg(tmp_path / "ffmpeg")
    assert VersionProbe(str(exe), cache=cache).result() == "n7.1"
    assert VersionProbe(str(exe), cache=cache).result() == "n7.1"
    assert times_run(runs) == 1
    assert VersionProbe(str(exe)).result() == "n7.1"  # no cache: asked
    assert times_run(runs) == 2


def test_a_changed_or_replaced_binary_is_asked_again(tmp_path):
    cache = tmp_path / "versions.json"
    exe, runs = counting_ffmpeg(tmp_path / "ffmpeg")
    VersionProbe(str(exe), cache=cache).result()
    counting_ffmpeg(tmp_path / "ffmpeg", version="n8.0.1")  # rewritten: another size, new times
    assert VersionProbe(str(exe), cache=cache).result() == "n8.0.1"
    replacement, _ = counting_ffmpeg(tmp_path / "new-ffmpeg", version="n9.0")
    os.replace(replacement, exe)  # another inode
    assert VersionProbe(str(exe), cache=cache).result() == "n9.0"
    assert times_run(runs) == 2
    link = tmp_path / "link"
    link.symlink_to(exe)
    assert VersionProbe(str(link), cache=cache).result() == "n9.0"  # the same binary, by its real path
    assert times_run(runs) == 2


def test_a_failed_answer_is_not_remembered(tmp_path):
    cache = tmp_path / "versions.json"
    exe = make_executable(tmp_path / "ffmpeg", "#!/bin/sh\necho hello\n")
    with pytest.raises(ToolError):
        VersionProbe(str(exe), cache=cache).result()
    assert not cache.exists()
    with pytest.raises(ToolError):
        VersionProbe(str(exe), cache=cache).result()


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"[1, 2]", id="not-an-object"),
        pytest.param(json.dumps({"x": 1}).encode(), id="another-binary"),
    ],
)
def test_a_damaged_cache_is_ignored_and_rewritten(tmp_path, content):
    cache = tmp_path / "versions.json"
    cache.write_bytes(content)
    exe, runs = counting_ffmpeg(tmp_path / "ffmpeg")
    assert VersionProbe(str(exe), cache=cache).result() == "n7.1"
    assert VersionProbe(str(exe), cache=cache).result() == "n7.1"
    assert times_run(runs) == 1


def test_a_cached_version_that_is_not_a_version_is_not_believed(tmp_path):
    """The cache is a file anyone with the user's rights can edit; what it says goes into reports."""
    cache = tmp_path / "versions.json"
    exe, runs = counting_ffmpeg(tmp_path / "ffmpeg")
    VersionProbe(str(exe), cache=cache).result()
    data = json.loads(cache.read_text())
    [entry] = data.values()
    entry["version"] = "<script>alert(1)</script>"
    cache.write_text(json.dumps(data))
    assert VersionProbe(str(exe), cache=cache).result() == "n7.1"
    assert times_run(runs) == 2


def test_an_unwritable_cache_only_means_asking_again(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    cache = blocked / "recpipe" / "versions.json"  # its directory cannot be made
    exe, runs = counting_ffmpeg(tmp_path / "ffmpeg")
    assert VersionProbe(str(exe), cache=cache).result() == "n7.1"
    assert VersionProbe(str(exe), cache=cache).result() == "n7.1"
    assert times_run(runs) == 2


def test_the_cache_keeps_the_most_recent_binaries(tmp_path, monkeypatch):
    monkeypatch.setattr(ffmpeg_module, "CACHED_BINARIES", 2)
    cache = tmp_path / "versions.json"
    exes = [counting_ffmpeg(tmp_path / f"ffmpeg{i}")[0] for i in range(3)]
    for exe in exes:
        VersionProbe(str(exe), cache=cache).result()
    assert sorted(json.loads(cache.read_text())) == sorted(os.path.realpath(e) for e in exes[1:])


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param({"XDG_CACHE_HOME": "/c", "HOME": "/h"}, "/c/recpipe/ffmpeg-versions.json", id="xdg"),
        pytest.param({"XDG_CACHE_HOME": "rel", "HOME": "/h"}, "/h/.cache/recpipe/ffmpeg-versions.json",
                     id="relative-xdg-ignored"),
        pytest.param({"HOME": "/h"}, "/h/.cache/recpipe/ffmpeg-versions.json", id="home"),
        pytest.param({}, None, id="neither"),
    ],
)  # fmt: skip
def test_where_the_cache_is(environ, expected):
    found = version_cache(environ)
    assert (str(found) if found else None) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param("ffmpeg version n9.0.2 Copyright (c) 2000-2026", "n9.0.2", id="release"),
        pytest.param("ffmpeg version 6.1.1-3ubuntu5 Copyright (c)", "6.1.1-3ubuntu5", id="distro"),
        pytest.param("ffmpeg version N-112345-gabcdef Copyright", "N-112345-gabcdef", id="git"),
        pytest.param("ffmpeg version", None, id="no-token"),
        pytest.param("", None, id="empty"),
        pytest.param("hello world", None, id="other"),
    ],
)
def test_parse_version_line(line, expected):
    assert parse_version_line(line) == expected


def test_argv_is_a_stream_copy_from_stdin():
    argv = remux_argv("/opt/ffmpeg", output=Path("/w/out.mp4.part"))
    assert argv[0] == "/opt/ffmpeg"
    joined = " ".join(argv)
    for part in (
        "-protocol_whitelist file,pipe",
        "-protocol_whitelist file,pipe -i pipe:0",
        "-map 0:v? -map 0:a?",
        "-c copy",
        "-bsf:a aac_adtstoasc",
        "-f mp4",
    ):
        assert part in joined
    before_input = argv[: argv.index("-i")]
    assert before_input[before_input.index("-f") + 1] == "mpegts"
    assert argv[-1] == "/w/out.mp4.part"
    assert argv[-1] == "/w/out.mp4.part"
    assert "-y" in argv
    assert "-nostdin" in argv
    assert "faststart" not in joined  # recpipe moves moov itself while writing the published copy
    assert not any(a.endswith(".m3u8") or "://" in a for a in argv)


@pytest.mark.ffmpeg
def test_ffmpeg_failure_reports_the_tail_of_stderr(tmp_path):
    ffmpeg_exe = find_ffmpeg(os.environ)
    proc = FfmpegProcess(remux_argv(ffmpeg_exe, output=tmp_path / "out.mp4"))
    proc.write(b"this is not an MPEG transport stream" * 100)
    with pytest.raises(RemuxError) as info:
        proc.close()
    assert info.value.returncode not in (0, None)
    assert info.value.stderr_tail
    assert "ffmpeg exit code" in str(info.value)
    assert not (tmp_path / "out.mp4").exists() or (tmp_path / "out.mp4").stat().st_size == 0


def test_ffmpeg_missing_binary(tmp_path):
    with pytest.raises(RemuxError, match="cannot run ffmpeg"):
        FfmpegProcess([str(tmp_path / "nope")])


@pytest.mark.ffmpeg
def test_killed_ffmpeg_leaves_no_error(tmp_path):
    ffmpeg_exe = find_ffmpeg(os.environ)
    proc = FfmpegProcess(remux_argv(ffmpeg_exe, output=tmp_path / "out.mp4"))
    proc.write(b"\x47" * 188)
    proc.kill()


SAMPLE = SampleMedia(
    seconds=8, width=320, height=240, fps=15, video=True, audio=True, gop=60, hls_time="4",
    video_kbps=32, audio_kbps=24,
)  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(
            remux_argv("/bin/ff", output=Path("/w/part-0.mp4.part")),
            [*GLOBAL, *TS_IN, "-i", "pipe:0", "-map", "0:v?", "-map", "0:a?", "-f", "mp4",
             "-bsf:a", "aac_adtstoasc", "-c", "copy", "-fflags", "+bitexact", *FRAGMENTED,
             "/w/part-0.mp4.part"],
            id="remux",
        ),
        pytest.param(
            merge_argv(
                "/bin/ff",
                inputs={"video": Path("/w/video.ts"), "audio": Path("/w/audio.ts")},
                offset_s=10.0,
                output=Path("/w/u.mp4.ffmpeg"),
            ),
            [*GLOBAL, "-copyts", *TS_IN, "-i", "/w/video.ts", *TS_IN, "-i", "/w/audio.ts",
             "-map", "0:v:0", "-map", "1:a:0", "-f", "mp4", "-bsf:a", "aac_adtstoasc", "-c", "copy",
             "-fflags", "+bitexact", *FRAGMENTED, "-output_ts_offset", "-10", "/w/u.mp4.ffmpeg"],
            id="merge-both-streams",
        ),
        pytest.param(
            merge_argv(
                "/bin/ff", inputs={"audio": Path("/w/audio.ts")}, offset_s=0.5, output=Path("/w/a.mp4")
            ),
            [*GLOBAL, "-copyts", *TS_IN, "-i", "/w/audio.ts", "-map", "0:a:0", "-f", "mp4",
             "-bsf:a", "aac_adtstoasc", "-c", "copy", "-fflags", "+bitexact", *FRAGMENTED,
             "-output_ts_offset", "-0.5", "/w/a.mp4"],
            id="merge-audio-only",
        ),
        pytest.param(
            silence_argv(
                "/bin/ff", sample_rate=48000, channels=1, pid=257, frames=46, kbps=32, output=Path("/w/s.ts")
            ),
            [*GLOBAL, "-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-f", "mpegts", "-b:a", "32k",
             "-c:a", "aac", "-fflags", "+bitexact", "-flags:a", "+bitexact", "-frames:a", "46",
             "-streamid", "0:257", "/w/s.ts"],
            id="silence-mono",
        ),
        pytest.param(
            silence_argv(
                "/bin/ff", sample_rate=44100, channels=2, pid=258, frames=3, kbps=32, output=Path("/w/s.ts")
            )[6:10],
            ["-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo"],
            id="silence-stereo",
        ),
        pytest.param(
            sample_argv("/bin/ff", Path("/w"), media=SAMPLE),
            [*GLOBAL, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15:duration=8",
             "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=8",
             "-map", "0:v", "-map", "1:a", "-f", "hls", "-ac", "1", "-b:a", "24k", "-b:v", "32k", "-bf", "0",
             "-c:a", "aac", "-c:v", "libx264", "-fflags", "+bitexact", "-flags:a", "+bitexact",
             "-flags:v", "+bitexact", "-g", "60", "-hls_list_size", "0",
             "-hls_segment_filename", "/w/seg%05d.ts", "-hls_time", "4", "-keyint_min", "60",
             "-pix_fmt", "yuv420p", "-preset", "veryfast", "-sc_threshold", "0", "-t", "8", "-threads", "1",
             "/w/index.m3u8"],
            id="sample-av",
        ),
        pytest.param(
            sample_argv("/bin/ff", Path("/w"), media=replace(SAMPLE, video=False, offset=12)),
            [*GLOBAL, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=8",
             "-map", "0:a", "-f", "hls", "-ac", "1", "-b:a", "24k", "-c:a", "aac", "-fflags", "+bitexact",
             "-flags:a", "+bitexact", "-hls_list_size", "0", "-hls_segment_filename", "/w/seg%05d.ts",
             "-hls_time", "4", "-output_ts_offset", "12", "-t", "8", "/w/index.m3u8"],
            id="sample-audio-only-later",
        ),
    ],
)  # fmt: skip
def test_argv_table(argv, expected):
    assert argv == expected


@pytest.mark.parametrize(
    "argv",
    [
        remux_argv("/bin/ff", output=Path("/w/o.mp4")),
        merge_argv("/bin/ff", inputs={"video": Path("/w/v.ts")}, offset_s=1, output=Path("/w/o.mp4")),
        silence_argv(
            "/bin/ff", sample_rate=48000, channels=1, pid=1, frames=1, kbps=32, output=Path("/w/s.ts")
        ),
        sample_argv("/bin/ff", Path("/w"), media=SAMPLE),
    ],
    ids=["remux", "merge", "silence", "sample"],
)
def test_no_command_line_reads_a_playlist_or_a_url(argv):
    inputs = [argv[i + 1] for i, a in enumerate(argv) if a == "-i"]
    assert all(not i.endswith(".m3u8") and "://" not in i for i in inputs)
    assert argv[1:6] == GLOBAL[1:]


@pytest.mark.ffmpeg
def test_run_reports_what_it_could_not_do(tmp_path):
    argv = [
        find_ffmpeg(os.environ),
        "-hide_banner",
        "-nostdin",
        "-i",
        str(tmp_path / "absent.ts"),
        str(tmp_path / "o.mp4"),
    ]
    with pytest.raises(RemuxError, match="ffmpeg could not encode silence") as info:
        run(argv, what="encode silence")
    assert info.value.returncode not in (0, None)
    assert "absent.ts" in info.value.stderr_tail
    assert list(info.value.argv) == argv


def test_run_without_a_binary(tmp_path):
    with pytest.raises(RemuxError, match="cannot run ffmpeg"):
        run([str(tmp_path / "nope"), "-version"], what="start")
