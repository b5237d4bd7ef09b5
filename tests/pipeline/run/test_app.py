"""pipeline.run.app: which problem a run reports first, now that ffmpeg is asked for its version while the
recording is found (``early_version_probe``): the order a user always saw, and nothing written first."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from pipeline.model.config import PipelineConfig
from pipeline.model.exceptions import ConfigError, RecordingNotFound, ToolError
from pipeline.run.app import Request, run

SAMPLE = Path(__file__).resolve().parents[3] / "sample_data" / "recordings"


def environ(ffmpeg: Path) -> dict[str, str]:
    return {"RECPIPE_FFMPEG": str(ffmpeg), "PATH": os.environ.get("PATH", "")}


def fake_ffmpeg(path: Path, script: str) -> Path:
    path.write_text(script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def files_under(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def test_a_missing_recording_is_reported_before_a_missing_ffmpeg(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    request = Request(location=str(empty), av_file_type="hls,mp4")
    with pytest.raises(RecordingNotFound):
        run(request, config=PipelineConfig(), environ=environ(tmp_path / "no-ffmpeg"))


def test_no_location_is_reported_before_a_missing_ffmpeg(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        run(Request(location=None, av_file_type="hls,mp4"), config=PipelineConfig(),
            environ=environ(tmp_path / "no-ffmpeg"))  # fmt: skip


def test_a_missing_ffmpeg_stops_the_run_before_any_work(tmp_path: Path) -> None:
    recording = shutil.copytree(SAMPLE, tmp_path / "rec")
    before = files_under(recording)
    with pytest.raises(ToolError, match="RECPIPE_FFMPEG"):
        run(Request(location=str(recording), av_file_type="hls,mp4"), config=PipelineConfig(),
            environ=environ(tmp_path / "no-ffmpeg"))  # fmt: skip
    assert files_under(recording) == before


def test_an_ffmpeg_that_cannot_say_its_version_stops_the_run_before_any_work(tmp_path: Path) -> None:
    recording = shutil.copytree(SAMPLE, tmp_path / "rec")
    before = files_under(recording)
    broken = fake_ffmpeg(tmp_path / "ffmpeg", "#!/bin/sh\necho 'not ffmpeg'\nexit 1\n")
    with pytest.raises(ToolError, match="-version failed"):
        run(Request(location=str(recording), av_file_type="hls,mp4"), config=PipelineConfig(),
            environ=environ(broken))  # fmt: skip
    assert files_under(recording) == before


def test_a_run_that_remuxes_nothing_never_asks_ffmpeg(tmp_path: Path) -> None:
    """A dry run (and an HLS-only one) needs no ffmpeg: a broken one is not even started."""
    recording = shutil.copytree(SAMPLE, tmp_path / "rec")
    marker = tmp_path / "ran"
    spy = fake_ffmpeg(tmp_path / "ffmpeg", f"#!/bin/sh\ntouch '{marker}'\nexit 1\n")
    result = run(Request(location=str(recording), av_file_type="hls,mp4", dry_run=True),
                 config=PipelineConfig(), environ=environ(spy))  # fmt: skip
    assert result.job.status == "ok"
    assert not marker.exists()
