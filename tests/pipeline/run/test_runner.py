import functools
import logging
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.model.config import PipelineConfig
from pipeline.model.exceptions import PlaylistError, RemuxError, StorageError
from pipeline.model.job import Finding, Job, Recording
from pipeline.model.report import build_report, dump_report
from pipeline.run import runner
from pipeline.run.lease import lease_document, read_holder
from pipeline.run.runner import (
    RunOptions,
    execute,
    job_workdir,
    output_directory,
    remove_stale_outputs,
    run_job,
    under_lease,
)
from pipeline.storage.local import LocalStorage
from stages.base import Destination, StageContext
from stages.outputs import owner_label
from tests.builders import leftovers_refused

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


class Logged(LocalStorage):
    """A local store that logs the calls a run's lease and outputs make, in order."""

    def __init__(self, root: Path, log: list[str], *, discard=lambda: None) -> None:
        super().__init__(root)
        self.log, self._discard = log, discard

    def discard_incomplete(self, prefix):
        self._discard()
        self.log.append("discarded")
        return super().discard_incomplete(prefix)

    def read_bytes(self, key, *, max_bytes):
        self.log.append(f"read {key}")
        return super().read_bytes(key, max_bytes=max_bytes)

    def put_bytes(self, data, key, *, metadata=None):
        self.log.append(f"wrote {key}")
        return super().put_bytes(data, key, metadata=metadata)

    def delete_if(self, key, *, etag):
        self.log.append(f"deleted {key}")
        return super().delete_if(key, etag=etag)


class ReadThenWrite:
    """A stage that reads from the destination, says so, then writes an output there."""

    name = "remux"

    def __init__(self, have_read: threading.Event, log: list[str]) -> None:
        self.have_read, self.log = have_read, log

    def run(self, job, ctx):
        assert not ctx.destination.storage.exists("a/b/sid1_room_0.mp4")
        self.log.append("checked a/b/sid1_room_0.mp4")
        self.have_read.set()
        ctx.destination.writable().put_bytes(b"mp4", "a/b/sid1_room_0.mp4")
        return job


class Pending:
    """A stage after which nothing is published (and no report written)."""

    name = "fetch"

    def run(self, job, ctx):
        return replace(job, status="pending")


def leased_ctx(tmp_path: Path, store: LocalStorage) -> StageContext:
    (tmp_path / "work").mkdir(exist_ok=True)
    return StageContext(
        storage=store,
        destination=Destination(storage=store, directory="a/b/"),
        workdir=tmp_path / "work",
        config=PipelineConfig(workdir=tmp_path / "work"),
    )


def test_a_run_reads_before_the_leftovers_are_gone_and_writes_after(tmp_path):
    have_read, log = threading.Event(), []

    def slow_discard() -> None:  # done only after the work has read: a run that waited for it first waits 5 s
        have_read.wait(timeout=5)
        time.sleep(0.1)

    store = Logged(tmp_path / "dest", log, discard=slow_discard)
    result = execute(
        Job(recording=REC),
        ctx=leased_ctx(tmp_path, store),
        options=RunOptions(force=True),
        stages=[ReadThenWrite(have_read, log)],
    )
    assert result.report_key == "a/b/sid1_room.report.json"
    steps = [e for e in log if e.startswith(("checked", "wrote a/b/sid1_room_0", "discarded"))]
    assert steps == ["checked a/b/sid1_room_0.mp4", "discarded", "wrote a/b/sid1_room_0.mp4"]
    assert log[-1] == "deleted a/b/sid1_room.lease.json"  # the lease outlasts the work and the discard


def test_a_run_that_cannot_clear_the_leftovers_writes_nothing(tmp_path):
    log: list[str] = []
    store = Logged(tmp_path / "dest", log, discard=leftovers_refused)
    with pytest.raises(StorageError, match="AccessDenied"):
        execute(
            Job(recording=REC),
            ctx=leased_ctx(tmp_path, store),
            options=RunOptions(force=True),
            stages=[ReadThenWrite(threading.Event(), log)],
        )
    assert [e for e in log if e.startswith("wrote") and "lease" not in e] == []
    assert sorted(p.name for p in (tmp_path / "dest/a/b").iterdir()) == []  # the lease is released too


def test_the_leftovers_error_ends_a_run_that_writes_nothing(tmp_path):
    store = Logged(tmp_path / "dest", [], discard=leftovers_refused)
    with pytest.raises(StorageError, match="AccessDenied"):
        execute(
            Job(recording=REC),
            ctx=leased_ctx(tmp_path, store),
            options=RunOptions(force=True),
            stages=[Pending()],
        )


def test_a_run_that_fails_says_the_leftovers_could_not_be_cleared_either(tmp_path, caplog):
    store = Logged(tmp_path / "dest", [], discard=leftovers_refused)
    with caplog.at_level(logging.WARNING), pytest.raises(ZeroDivisionError):
        execute(
            Job(recording=REC),
            ctx=leased_ctx(tmp_path, store),
            options=RunOptions(force=True),
            stages=[Raise("fetch", ZeroDivisionError())],
        )
    assert "could not clear what a killed run left" in caplog.text
    assert "AccessDenied" in caplog.text


def test_under_lease_ends_when_the_leftovers_are_gone(tmp_path):
    log: list[str] = []
    store = Logged(tmp_path / "dest", log, discard=lambda: time.sleep(0.2))
    with under_lease(Job(recording=REC), ctx=leased_ctx(tmp_path, store)) as (_, previous):
        assert previous() is None
    assert "discarded" in log


@pytest.mark.parametrize(("force", "reads"), [(False, 2), (True, 1)])
def test_a_run_reads_the_previous_report_once_under_its_lease(tmp_path, force, reads):
    log: list[str] = []
    store = Logged(tmp_path / "dest", log)
    ctx = leased_ctx(tmp_path, store)
    # an earlier run's report, of other inputs, listing an output of recpipe's that this run does not write
    earlier = build_report(Job(recording=REC, inputs_digest="other"), tool={})
    earlier["outputs"] = [{"key": "a/b/sid1_room_old.mp4", "kind": "mp4", "bytes": 3, "sha256": "x"}]
    LocalStorage(tmp_path / "dest").put_bytes(dump_report(earlier), "a/b/sid1_room.report.json")
    job = Job(recording=REC, inputs_digest="new")
    LocalStorage(tmp_path / "dest").put_bytes(b"old", "a/b/sid1_room_old.mp4", metadata=owner_label(job))
    execute(job, ctx=ctx, options=RunOptions(force=force), stages=[Record("verify", [])])
    assert log.count("read a/b/sid1_room.report.json") == reads
    assert "deleted a/b/sid1_room_old.mp4" in log  # compared with the report read under the lease
    assert not (tmp_path / "dest/a/b/sid1_room_old.mp4").exists()


def test_stale_outputs_are_removed_only_once_the_destination_may_be_written(tmp_path):
    store = Logged(tmp_path / "dest", [])
    store.put_bytes(b"old", "a/b/sid1_room_old.mp4", metadata=owner_label(Job(recording=REC)))
    ctx = leased_ctx(tmp_path, store)
    ctx = replace(ctx, destination=replace(ctx.destination, cleared=leftovers_refused))
    previous = {"outputs": [{"key": "a/b/sid1_room_old.mp4"}]}
    with pytest.raises(StorageError, match="AccessDenied"):
        remove_stale_outputs({"outputs": []}, previous=previous, ctx=ctx)
    assert (tmp_path / "dest/a/b/sid1_room_old.mp4").exists()


class Clock:
    """The run's clock for its lease: moved on by hand, as a stalled process finds it when it wakes."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class StalledWhileTakenOver:
    """A stage during which the run stalls past its lease's end and another recpipe takes the lease
    over, before this run's renewals (every 40 s of real time) could notice."""

    name = "remux"

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def run(self, job, ctx):
        self.clock.now += 121
        ctx.destination.storage.put_bytes(
            lease_document(owner="other", expires=self.clock.now + 120), "a/b/sid1_room.lease.json"
        )
        return job


@pytest.mark.parametrize("publish", ["output", "report"])
def test_a_run_whose_lease_was_taken_over_commits_nothing_more(tmp_path, monkeypatch, publish):
    clock, log = Clock(), []
    monkeypatch.setattr(runner, "acquire", functools.partial(runner.acquire, clock=clock))
    store = Logged(tmp_path / "dest", log)
    ctx = leased_ctx(tmp_path, store)
    stages = [StalledWhileTakenOver(clock)]
    if publish == "output":
        stages.append(ReadThenWrite(threading.Event(), []))
    result = execute(Job(recording=REC), ctx=ctx, options=RunOptions(force=True), stages=stages)
    assert result.job.status == "pending"
    assert [f.code for f in result.job.findings] == ["LEASE_HELD"]
    assert "another recpipe took over the lease" in result.job.findings[0].detail
    assert result.report_key is None
    assert sorted(p.name for p in (tmp_path / "dest/a/b").iterdir()) == ["sid1_room.lease.json"]
    assert read_holder(store.read_bytes("a/b/sid1_room.lease.json", max_bytes=1000)).owner == "other"
    assert not [e for e in log if e.startswith("deleted")]  # the other recpipe's lease is left alone
