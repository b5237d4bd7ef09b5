"""The work directory's space: checked before remuxing starts, and a disk that fills up while
ffmpeg writes (simulated with a file-size limit, as no test can fill a real disk here) publishes
nothing and says so."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.model.exceptions import NoSpace
from stages.base import check_space, space_needed

pytestmark = [pytest.mark.integration, pytest.mark.ffmpeg]

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


def process(sample: Path, dest: Path, env: dict[str, str], **popen) -> tuple[int, dict, str]:
    argv = [sys.executable, "-m", "pipeline", "process", str(sample), "--dest", str(dest),
            "--profile", str(sample / "start_request.json"), "--json"]  # fmt: skip
    run = subprocess.run(
        argv, capture_output=True, text=True, env={**os.environ, **env}, timeout=120, **popen
    )
    return run.returncode, json.loads(run.stdout), run.stderr


def test_not_enough_space_fails_before_ffmpeg_starts(tmp_path):
    code, report, stderr = process(SAMPLE, tmp_path / "out", {"RECPIPE_WORKDIR_RESERVE_BYTES": str(10**18)})
    assert (code, report["status"], report["error"]["type"]) == (1, "failed", "NoSpace")
    assert "MiB free" in report["error"]["message"]
    assert "Traceback" not in stderr
    assert not list((tmp_path / "out").rglob("*.mp4"))


def test_a_disk_filling_up_mid_write_publishes_nothing(tmp_path):
    def small_files() -> None:  # ffmpeg may write at most 100 kB to any file
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    code, report, stderr = process(SAMPLE, tmp_path / "out", {}, preexec_fn=small_files)
    assert (code, report["status"]) == (1, "failed")
    assert report["error"]["stage"] == "remux"
    assert "Traceback" not in stderr
    assert not list((tmp_path / "out").rglob("*.mp4"))
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.endswith(".part")]


def test_space_arithmetic(tmp_path):
    assert space_needed(0) == 64 * 1024 * 1024
    assert space_needed(1000) == 2000 + 64 * 1024 * 1024
    free = shutil.disk_usage(tmp_path).free
    check_space(tmp_path, need=1, reserve=0)
    with pytest.raises(NoSpace, match="needs about"):
        check_space(tmp_path, need=free + 1, reserve=0)
