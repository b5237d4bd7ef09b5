"""Following ffmpeg's fragmented MP4 while it is written: the layout read along is the one read from the
whole file afterwards, and whenever the finished file is not what was read, the whole file decides.
Real ffmpeg, the sample recording's slices."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from pipeline.model.exceptions import MediaError
from stages.ffmpeg import FfmpegProcess, remux_argv
from stages.follow import POLL_S, Following
from stages.media.faststart import plan
from stages.media.mp4 import parse_boxes

pytestmark = pytest.mark.ffmpeg

SLICES = sorted((Path(__file__).resolve().parents[2] / "sample_data" / "recordings").glob("*.ts"))


@pytest.fixture(scope="module")
def finished(ffmpeg_exe: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """recpipe's fragmented MP4 of the sample slices."""
    assert len(SLICES) >= 3, "the sample recording is missing"
    path = tmp_path_factory.mktemp("follow") / "part.mp4"
    process = FfmpegProcess(remux_argv(ffmpeg_exe, output=path))
    for ts in SLICES:
        process.write(ts.read_bytes())
    process.close()
    return path


def write_slowly(src: Path, dest: Path, *, pieces: int = 7, change=None) -> None:  # type: ignore[no-untyped-def]
    """Write ``src`` to ``dest`` in pieces, pausing so the follower sees it half-written."""
    data = src.read_bytes()
    step = len(data) // pieces + 1
    with dest.open("wb") as f:
        for at in range(0, len(data), step):
            f.write(data[at : at + step])
            f.flush()
            time.sleep(POLL_S * 2)
    if change is not None:
        change(dest)


def test_ffmpeg_writing_is_read_along(ffmpeg_exe: str, tmp_path: Path) -> None:
    path = tmp_path / "part.mp4.part"
    follow = Following(path)
    follow.start()
    process = FfmpegProcess(remux_argv(ffmpeg_exe, output=path))
    for ts in SLICES:
        process.write(ts.read_bytes())
        time.sleep(POLL_S)
    process.close()
    layout = follow.layout()
    assert follow.read_along
    assert layout == plan(path)
    assert len(follow.media) == len(layout.ranges) > 1


def test_a_file_written_in_pieces_is_read_along(finished: Path, tmp_path: Path) -> None:
    path = tmp_path / "part.mp4.part"
    follow = Following(path)
    follow.start()
    write_slowly(finished, path)
    assert follow.layout() == plan(finished)
    assert follow.read_along


def rewrite_moov(path: Path) -> None:
    """Change a byte inside the ``moov`` (as if ffmpeg had gone back to it)."""
    data = bytearray(path.read_bytes())
    moov = next(box for box in parse_boxes(bytes(data)) if box.type == "moov")
    data[moov.end - 1] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_moov_changed_after_it_was_read_means_the_whole_file_is_read(
    finished: Path, tmp_path: Path
) -> None:
    path = tmp_path / "part.mp4.part"
    follow = Following(path)
    follow.start()
    write_slowly(finished, path, change=rewrite_moov)
    try:
        expected = plan(path)
    except MediaError as err:
        with pytest.raises(MediaError, match=str(err)[:40]):
            follow.layout()
    else:
        assert follow.layout() == expected
    assert not follow.read_along


def test_an_unfinished_last_box_is_the_whole_files_error(finished: Path, tmp_path: Path) -> None:
    path = tmp_path / "part.mp4.part"
    follow = Following(path)
    follow.start()
    write_slowly(finished, path, change=lambda p: p.write_bytes(p.read_bytes()[:-5]))
    with pytest.raises(MediaError):
        plan(path)
    with pytest.raises(MediaError):
        follow.layout()
    assert not follow.read_along


def test_what_is_not_an_mp4_is_reported_by_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "part.mp4.part"
    follow = Following(path)
    follow.start()
    path.write_bytes(b"\x00\x00\x00\x10moov" + bytes(8) + b"\x00\x00\x00\x10mdat" + bytes(8))
    time.sleep(POLL_S * 3)
    with pytest.raises(MediaError) as read_along:
        follow.layout()
    with pytest.raises(MediaError) as whole:
        plan(path)
    assert str(read_along.value) == str(whole.value)


def test_a_file_never_written_is_an_error(tmp_path: Path) -> None:
    follow = Following(tmp_path / "never.mp4.part")
    follow.start()
    time.sleep(POLL_S * 2)
    with pytest.raises(MediaError):
        follow.layout()


def test_stop_is_idempotent_and_layout_works_after_it(finished: Path, tmp_path: Path) -> None:
    path = tmp_path / "part.mp4.part"
    shutil.copyfile(finished, path)
    follow = Following(path)
    follow.start()
    follow.stop()
    follow.stop()
    assert follow.layout() == plan(finished)
