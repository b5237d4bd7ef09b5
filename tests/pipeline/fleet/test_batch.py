"""``recpipe batch``'s library half: a batch's lines, its summary and exit code, and a real batch of
``recpipe process`` runs over a local directory (real ffmpeg), reported as each finishes."""

from __future__ import annotations

import os

import pytest

from pipeline.fleet.batch import BatchLine, batch_exit_code, batch_summary, run_batch
from pipeline.fleet.triggers import JobOptions
from pipeline.samples.composite import write_sample


def line(status, label="r") -> BatchLine:
    return BatchLine(recording=f"/x/{label}", label=label, status=status, exit_code=0, detail="", report=None)


def test_the_summary_counts_statuses_and_jobs_without_a_report():
    assert batch_summary([line("ok"), line("ok"), line("degraded"), line(None)]) == (
        "4 recording(s): 1 degraded, 1 error, 2 ok"
    )
    assert batch_exit_code([line("ok").status, line("degraded").status]) == 3
    assert line("ok").to_json() == {
        "recording": "/x/r",
        "status": "ok",
        "exit_code": 0,
        "detail": "",
        "report": None,
    }


@pytest.mark.ffmpeg
@pytest.mark.integration
def test_a_batch_runs_every_recording_and_says_as_each_finishes(tmp_path, ffmpeg_exe):
    for cname in ("room-a", "room-b"):
        write_sample(tmp_path / "rec" / cname, ffmpeg=ffmpeg_exe, seconds=4, slice_seconds=2, cname=cname)
    seen: list[tuple[int, int, str]] = []
    lines = run_batch(
        str(tmp_path / "rec"),
        jobs=2,
        options=JobOptions(dest=str(tmp_path / "out")),
        endpoint_url=None,
        environ=os.environ,
        on_done=lambda done, total, line: seen.append((done, total, line.label)),
    )
    assert sorted(line.status or "" for line in lines) == ["ok", "ok"]
    assert [(d, t) for d, t, _ in seen] == [(1, 2), (2, 2)]
    assert {label.split("_", 1)[1] for _, _, label in seen} == {"room-a", "room-b"}
    assert all(line.report is not None and line.report["status"] == "ok" for line in lines)
    assert (
        run_batch(str(tmp_path / "out"), jobs=1, options=JobOptions(), endpoint_url=None, environ=os.environ)
        == []
    )
