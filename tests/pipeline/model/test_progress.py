import io
import os
import shutil
from pathlib import Path

import pytest

from pipeline.model.config import load_config
from pipeline.model.progress import NullProgress, TerminalProgress
from pipeline.run.app import Request, run

SAMPLE = Path(__file__).resolve().parents[3] / "sample_data"


def test_a_terminal_bar_shows_the_task_share_bytes_rate_and_time():
    stream = io.StringIO()
    bar = TerminalProgress(stream, force_terminal=True, width=120)
    bar.start("fetch+remux", total=2_000_000, unit="B")
    bar.advance(1_000_000)
    bar.advance(1_000_000)
    bar.finish()
    text = stream.getvalue()
    assert "fetch+remux" in text
    assert "100%" in text
    assert "2.0/2.0 MB" in text
    assert "0:00:00" in text  # elapsed and time left


def test_a_count_bar_for_other_units():
    stream = io.StringIO()
    bar = TerminalProgress(stream, force_terminal=True, width=120)
    bar.start("users", total=3, unit="user")
    bar.advance(3)
    bar.finish()
    assert "3/3" in stream.getvalue()


def test_finish_without_start_prints_nothing():
    stream = io.StringIO()
    TerminalProgress(stream, force_terminal=True).finish()
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
