"""H.264 bits recpipe reads: the SPS's picture size (with cropping) and whether a picture is IDR."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stages.media import h264
from stages.media.ts import read_slice


def encode_one_frame(
    ffmpeg: str, out: Path, *, size: str, pix_fmt: str = "yuv420p", profile: str | None = None
) -> bytes:
    argv = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=15:duration=0.2",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", pix_fmt]  # fmt: skip
    argv += ["-profile:v", profile] if profile else []
    argv += ["-f", "h264", str(out)]
    subprocess.run(argv, check=True, capture_output=True)
    return out.read_bytes()


@pytest.mark.ffmpeg
@pytest.mark.parametrize(
    ("size", "pix_fmt", "profile"),
    [
        pytest.param("320x240", "yuv420p", None, id="qvga-high"),
        pytest.param("640x360", "yuv420p", None, id="360p-cropped"),
        pytest.param("1280x720", "yuv420p", "baseline", id="720p-baseline"),
        pytest.param("1920x1080", "yuv420p", "main", id="1080p-main-cropped"),
        pytest.param("176x144", "yuv420p", None, id="qcif"),
        pytest.param("322x182", "yuv422p", "high422", id="422-cropped"),
        pytest.param("330x250", "yuv444p", "high444", id="444-cropped"),
    ],
)
def test_sps_size_of_real_encodes(tmp_path, ffmpeg_exe, size, pix_fmt, profile):
    stream = encode_one_frame(ffmpeg_exe, tmp_path / "v.h264", size=size, pix_fmt=pix_fmt, profile=profile)
    sps = h264.find_sps(stream)
    assert sps is not None
    width, height = map(int, size.split("x"))
    assert h264.sps_resolution(sps) == (width, height)
    assert h264.first_picture_is_idr(stream) is True


def test_first_picture_kinds():
    idr = b"\x00\x00\x00\x01\x09\xf0\x00\x00\x01\x67\x64\x00\x00\x01\x65\x88"
    non_idr = b"\x00\x00\x01\x09\xf0\x00\x00\x01\x41\x9a"
    assert h264.first_picture_is_idr(idr) is True
    assert h264.first_picture_is_idr(non_idr) is False
    assert h264.first_picture_is_idr(b"\x00\x00\x01\x09\xf0") is None
    assert h264.first_picture_is_idr(b"") is None


def test_hevc_irap():
    assert (
        h264.hevc_first_picture_is_irap(b"\x00\x00\x01\x40\x01\x00\x00\x01\x26\x01") is True
    )  # VPS, IDR_W_RADL
    assert h264.hevc_first_picture_is_irap(b"\x00\x00\x01\x02\x01") is False  # TRAIL_R


def test_emulation_prevention_is_removed():
    assert h264.unescape(b"\x00\x00\x03\x01\x00\x00\x03\x00") == b"\x00\x00\x01\x00\x00\x00"


def test_truncated_sps_is_unknown():
    sps = bytes.fromhex("64000cacb40a0fd80880000003008000000f078a1550")  # sample_data's 320x240 High SPS
    assert h264.sps_resolution(sps) == (320, 240)
    for cut in range(len(sps) - 4):
        assert h264.sps_resolution(sps[:cut]) in (None, (320, 240))
    assert h264.sps_resolution(sps[:5]) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_sps_never_raises(data):
    size = h264.sps_resolution(data)
    assert size is None or (size[0] > 0 and size[1] > 0)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_random_nal_streams_never_raise(data):
    h264.first_picture_is_idr(data)
    h264.hevc_first_picture_is_irap(data)
    h264.find_sps(data)
    read_slice([data])
