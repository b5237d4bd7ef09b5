"""Moving moov to the front: byte-identical to ffmpeg's own +faststart, on real MP4s."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from pipeline.exceptions import MediaError
from stages.media.faststart import Layout, moov_first, plan, sha256_of, shift_chunk_offsets, write
from stages.media.mp4 import parse_boxes, read_mp4

pytestmark = pytest.mark.ffmpeg

SLICES = sorted((Path(__file__).resolve().parents[3] / "sample_data" / "recordings").glob("*.ts"))


def remux(ffmpeg: str, out: Path, *extra: str) -> Path:
    data = b"".join(p.read_bytes() for p in SLICES)
    subprocess.run(
        [ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-f", "mpegts", "-i", "pipe:0", "-map", "0:v?",
         "-map", "0:a?", "-c", "copy", "-bsf:a", "aac_adtstoasc", "-fflags", "+bitexact", *extra, "-f", "mp4",
         str(out)],
        input=data, check=True,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def moov_last(tmp_path_factory, ffmpeg_exe) -> Path:
    return remux(ffmpeg_exe, tmp_path_factory.mktemp("mp4") / "last.mp4")


def test_same_bytes_as_ffmpeg_faststart(moov_last, ffmpeg_exe, tmp_path):
    theirs = remux(ffmpeg_exe, tmp_path / "theirs.mp4", "-movflags", "+faststart")
    ours = tmp_path / "ours.mp4"
    sha256 = moov_first(moov_last, ours)
    assert ours.read_bytes() == theirs.read_bytes()
    assert sha256 == hashlib.sha256(theirs.read_bytes()).hexdigest()
    assert [b.type for b in parse_boxes(ours.read_bytes())][:2] == ["ftyp", "moov"]
    assert read_mp4(ours).faststart


def test_layout_is_head_then_the_media(moov_last):
    layout = plan(moov_last)
    boxes = {b.type: b for b in parse_boxes(moov_last.read_bytes())}
    assert layout.ranges == ((boxes["ftyp"].end, boxes["moov"].offset),)
    assert len(layout.head) == boxes["ftyp"].size + boxes["moov"].size
    assert layout.size == moov_last.stat().st_size
    assert sha256_of(layout, moov_last) == moov_first(moov_last, moov_last.with_name("copy.mp4"))


def test_a_file_already_moov_first_is_copied_as_it_is(ffmpeg_exe, tmp_path):
    faststart = remux(ffmpeg_exe, tmp_path / "fs.mp4", "-movflags", "+faststart")
    assert plan(faststart) == Layout(head=b"", ranges=((0, faststart.stat().st_size),))
    with (tmp_path / "copy.mp4").open("wb") as dest:
        write(plan(faststart), src=faststart, dest=dest)
    assert (tmp_path / "copy.mp4").read_bytes() == faststart.read_bytes()


def test_offsets_past_32_bits_are_refused():
    stco = (
        (16 + 4).to_bytes(4, "big")
        + b"stco"
        + bytes(4)
        + (1).to_bytes(4, "big")
        + (2**32 - 10).to_bytes(4, "big")
    )
    moov = bytearray((8 + len(stco)).to_bytes(4, "big") + b"stbl" + stco)
    moov = bytearray((8 + len(moov)).to_bytes(4, "big") + b"moov") + moov
    with pytest.raises(MediaError, match="32-bit"):
        shift_chunk_offsets(moov, 100)


def test_co64_offsets_shift_too():
    co64 = (
        (16 + 8).to_bytes(4, "big") + b"co64" + bytes(4) + (1).to_bytes(4, "big") + (2**40).to_bytes(8, "big")
    )
    moov = bytearray((8 + len(co64)).to_bytes(4, "big") + b"moov" + co64)
    shift_chunk_offsets(moov, 7)
    assert int.from_bytes(moov[-8:], "big") == 2**40 + 7


def test_not_an_mp4(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes((16).to_bytes(4, "big") + b"free" + bytes(8))
    with pytest.raises(MediaError, match="no moov"):
        plan(junk)
