from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.model.config import PipelineConfig
from pipeline.model.exceptions import PlaylistError, RemuxError
from pipeline.model.job import Finding, Job, Recording
from pipeline.run.runner import job_workdir, output_directory, run_job
from pipeline.storage.local import LocalStorage
from stages.base import Destination, StageContext

REC = Recording(sid="sid1", cname="room", directory="a/b/", playlist_key="a/b/sid1_room.m3u8")


class AddFinding:
    def __init__(self, name, code, severity="error"):
        self.name, self.code, self.severity = name, code, severity

    def run(self, job, ctx):
        return replace(
            job, findings=(*job.findings, Finding(code=self.code, severity=self.severity, detail="x"))
        )


class Raise:
    def __init__(self, name, err):
        self.name, self.err = name, err

    def run(self, job, ctx):
        raise self.err


class Record:
    def __init__(self, name, seen):
        self.name, self.seen = name, seen

    def run(self, job, ctx):
        self.seen.append(self.name)
        return job


@pytest.fixture
def ctx(tmp_path):
    store = LocalStorage(tmp_path)
    return StageContext(
        storage=store,
        destination=Destination(storage=store, directory=""),
        workdir=tmp_path,
        config=PipelineConfig(),
    )


def test_runs_in_order_and_times_each_stage(ctx):
    seen = []
    job = run_job(Job(recording=REC), [Record("fetch", seen), Record("verify", seen)], ctx=ctx)
    assert seen == ["fetch", "verify"]
    assert job.status == "ok"
    assert set(job.timings) == {"fetch", "verify"}


@pytest.mark.parametrize(
    ("first", "policy", "status", "ran_second"),
    [
        pytest.param(AddFinding("verify", "MISSING_SEGMENT"), "strict", "failed", False, id="strict-stops"),
        pytest.param(
            AddFinding("verify", "MISSING_SEGMENT"), "lenient", "degraded", True, id="lenient-goes-on"
        ),
        pytest.param(
            AddFinding("fetch", "NO_ENDLIST", "info"), "lenient", "pending", False, id="pending-stops"
        ),
        pytest.param(
            AddFinding("fetch", "NAME_MISMATCH", "warning"), "strict", "ok", True, id="warning-goes-on"
        ),
    ],
)
def test_policy_decides_whether_to_go_on(ctx, first, policy, status, ran_second):
    seen = []
    job = run_job(Job(recording=REC, policy=policy), [first, Record("remux", seen)], ctx=ctx)
    assert job.status == status
    assert (seen == ["remux"]) is ran_second


def test_stage_error_becomes_job_error(ctx):
    err = RemuxError("ffmpeg could not remux", argv=["ffmpeg"], returncode=1, stderr_tail="bad")
    seen = []
    job = run_job(
        Job(recording=REC, policy="lenient"), [Raise("remux", err), Record("publish", seen)], ctx=ctx
    )
    assert job.status == "failed"
    assert seen == []
    assert (job.error.stage, job.error.type) == ("remux", "RemuxError")
    assert "bad" in job.error.message


def test_playlist_error_rejects(ctx):
    job = run_job(Job(recording=REC), [Raise("fetch", PlaylistError("not HLS"))], ctx=ctx)
    assert job.status == "rejected"
    assert [f.code for f in job.findings] == ["PLAYLIST_INVALID"]


def test_unexpected_exceptions_are_bugs_and_propagate(ctx):
    with pytest.raises(ZeroDivisionError):
        run_job(Job(recording=REC), [Raise("fetch", ZeroDivisionError())], ctx=ctx)


def test_workdir_removed_even_on_error(tmp_path):
    config = PipelineConfig(workdir=tmp_path)
    seen: list[Path] = []

    def crash_inside() -> None:
        with job_workdir(config) as workdir:
            seen.append(workdir)
            (workdir / "slice.ts").write_bytes(b"x")
            raise RuntimeError("stage crashed")

    with pytest.raises(RuntimeError, match="stage crashed"):
        crash_inside()
    assert seen
    assert not seen[0].exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("source_base", "dest_base", "expected"),
    [
        pytest.param("", None, "a/b/", id="beside"),
        pytest.param("", "out/", "out/a/b/", id="mirror"),
        pytest.param("a/", "", "b/", id="relative-to-location"),
        pytest.param("a/b/", "x/", "x/", id="same-dir"),
    ],
)
def test_output_directory(source_base, dest_base, expected):
    assert output_directory(REC, source_base=source_base, dest_base=dest_base) == expected


def test_work_directories_of_killed_recpipes_are_removed(tmp_path):
    import os
    import subprocess
    import sys

    from pipeline.run.liveness import pid_namespace
    from pipeline.run.runner import remove_orphaned_workdirs

    dead = int(
        subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
        ).stdout
    )
    ns = pid_namespace()
    names = [
        f"recpipe-{ns}-{dead}-abc",
        f"recpipe-{ns}-{os.getppid()}-abc",
        f"recpipe-{ns + 1}-{dead}-abc",
        "other",
    ]
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "part-0.mp4.part").write_bytes(b"x")
    remove_orphaned_workdirs(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:])
