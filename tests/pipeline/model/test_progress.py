import io
import os
import shutil
from pathlib import Path

import pytest

from pipeline.model.config import load_config
from pipeline.model.progress import NullProgress, TerminalProgress, format_amount
from pipeline.run.app import Request, run

SAMPLE = Path(__file__).resolve().parents[3] / "sample_data"


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (0, "B", "0 B"),
        (999, "B", "999 B"),
        (1000, "B", "1.0 kB"),
        (429_392, "B", "429.4 kB"),
        (52_000_000, "B", "52.0 MB"),
        (7_300_000_000_000, "B", "7300.0 GB"),
        (12, "slices", "12 slices"),
    ],
)
def test_format_amount(value, unit, text):
    assert format_amount(value, unit=unit) == text


def test_terminal_line_overwrites_itself_and_ends_with_elapsed_time():
    stream = io.StringIO()
    bar = TerminalProgress(stream, min_interval=0.0)
    bar.start("fetch", total=2000, unit="B")
    bar.advance(1000)
    bar.advance(1000)
    bar.finish()
    text = stream.getvalue()
    frames = text.split("\r")[1:]
    assert frames[0].startswith("fetch     0%  0 B / 2.0 kB")
    assert frames[1].startswith("fetch    50%  1.0 kB / 2.0 kB")
    assert frames[-1].startswith("fetch   100%  2.0 kB / 2.0 kB")
    assert text.endswith(" s\n")
    assert text.count("\n") == 1


def test_terminal_line_is_throttled_but_always_shows_completion():
    stream = io.StringIO()
    bar = TerminalProgress(stream, min_interval=3600.0)
    bar.start("remux", total=100, unit="B")
    for _ in range(99):
        bar.advance(1)
    assert stream.getvalue().count("\r") == 1
    bar.advance(1)
    assert stream.getvalue().count("\r") == 2
    assert "100%" in stream.getvalue()


def test_finish_without_start_prints_nothing():
    stream = io.StringIO()
    TerminalProgress(stream).finish()
    assert stream.getvalue() == ""


class Recorder(NullProgress):
    def __init__(self) -> None:
        self.events: list[tuple[str, str, int]] = []

    def start(self, task: str, *, total: int, unit: str) -> None:
        self.events.append(("start", task, total))

    def advance(self, amount: int = 1) -> None:
        self.events.append(("advance", "", amount))

    def finish(self) -> None:
        self.events.append(("finish", "", 0))


@pytest.mark.ffmpeg
def test_process_reports_progress_while_slices_stream_into_the_mp4(tmp_path):
    shutil.copytree(SAMPLE, tmp_path / "src")
    recorder = Recorder()
    request = Request(location=str(tmp_path / "src"), av_file_type="hls,mp4", dest=str(tmp_path / "out"))
    result = run(request, config=load_config(environ={}), environ=os.environ, progress=recorder)
    assert result.job.status == "ok"
    total = sum(p.stat().st_size for p in (tmp_path / "src" / "recordings").glob("*.ts"))
    starts = [(task, size) for kind, task, size in recorder.events if kind == "start"]
    assert starts == [("fetch+remux", total)]
    assert sum(n for kind, _, n in recorder.events if kind == "advance") == total
    assert recorder.events[-1] == ("finish", "", 0)
