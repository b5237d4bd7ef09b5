"""Finding ffmpeg and reading its version."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import imageio_ffmpeg
import pytest

from pipeline.model.exceptions import ToolError
from pipeline.run.tools import ffmpeg_version, find_ffmpeg, parse_version_line


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
