"""What a job's outcome means for its message, and how jobs are described and read back."""

from __future__ import annotations

import json

import pytest

from pipeline.fleet.batch import batch_exit_code
from pipeline.fleet.jobs import Action, JobSpec, Outcome, decide, outcome_from_output, retry_delay
from pipeline.fleet.triggers import JobOptions, Trigger
from pipeline.fleet.worker import WorkerSettings, spec_for, worst
from pipeline.model import exceptions
from pipeline.model.config import load_config
from pipeline.run.app import without_secrets
from tests.pipeline.model.test_exceptions import all_error_classes


def error_class(name: str) -> type[exceptions.PipelineError]:
    cls = getattr(exceptions, name)
    assert issubclass(cls, exceptions.PipelineError)
    return cls


def report(status: str, *codes: str, error: str | None = None) -> dict:
    retryable = error_class(error).retryable if error else False
    return {
        "status": status,
        "findings": [{"code": c} for c in codes],
        "error": {"stage": "fetch", "type": error, "message": "boom", "retryable": retryable}
        if error
        else None,
    }


def printed(code: int, error: str, message: str) -> Outcome:
    """What ``recpipe process --json`` prints for an error that stops it before any report."""
    return Outcome(exit_code=code, error_type=error, error=message, retryable=error_class(error).retryable)


def act(outcome: Outcome, *, superseded: bool = False, age_s: float = 5, receive_count: int = 1) -> Action:
    return decide(
        outcome,
        receive_count=receive_count,
        age_s=age_s,
        pending_delay_s=60,
        max_pending_age_s=3600,
        superseded=superseded,
    )


@pytest.mark.parametrize(
    ("outcome", "kwargs", "verdict", "seconds"),
    [
        (Outcome(exit_code=0, report=report("ok")), {}, "delete", 0),
        (Outcome(exit_code=3, report=report("degraded")), {}, "delete", 0),
        (Outcome(exit_code=4, report=report("rejected", "UNSAFE_URI")), {}, "delete", 0),
        (Outcome(exit_code=1, report=report("failed", "MISSING_SEGMENT")), {}, "delete", 0),
        (Outcome(exit_code=1, report=report("failed", error="StorageError")), {}, "retry", 15),
        (
            Outcome(exit_code=1, report=report("failed", error="StorageError")),
            {"receive_count": 3},
            "retry",
            60,
        ),
        (Outcome(exit_code=75, report=report("pending", "NO_ENDLIST")), {}, "later", 60),
        (Outcome(exit_code=75, report=report("pending", "NO_ENDLIST")), {"superseded": True}, "delete", 0),
        (Outcome(exit_code=75, report=report("pending", "NO_ENDLIST")), {"age_s": 4000}, "dead-letter", 0),
        (Outcome(exit_code=75, report=report("pending", "LEASE_HELD")), {"age_s": 4000}, "later", 60),
        (printed(1, "RecordingNotFound", "none"), {}, "delete", 0),
        (printed(2, "ConfigError", "bad profile"), {}, "dead-letter", 0),
        (printed(1, "ObjectNotFound", "no bucket"), {}, "retry", 15),
        (Outcome(exit_code=-9), {}, "retry", 15),
    ],
)
def test_decide(outcome, kwargs, verdict, seconds):
    action = act(outcome, **kwargs)
    assert (action.verdict, action.seconds) == (verdict, seconds)
    assert action.reason


def test_retry_delay_doubles_up_to_15_minutes():
    assert [retry_delay(n) for n in (1, 2, 3, 10)] == [15, 30, 60, 900]


def test_outcome_from_a_report_an_error_document_or_nothing():
    assert outcome_from_output(0, json.dumps(report("ok"))).status == "ok"
    error = outcome_from_output(
        2, json.dumps({"error": {"type": "ConfigError", "message": "bad"}, "exit_code": 2})
    )
    assert (error.status, error.error_type, error.error) == (None, "ConfigError", "bad")
    crash = outcome_from_output(-11, "", "Segmentation fault\n")
    assert (crash.error_type, crash.error, crash.describe()) == (None, "Segmentation fault", "exit -11")


def test_job_spec_argv():
    spec = JobSpec(
        location="s3://b/a/x.m3u8",
        sid="s1",
        endpoint_url="http://127.0.0.1:9",
        options=JobOptions(dest="s3://o/", policy="lenient", av_file_type="hls,mp4", force=True),
    )
    assert spec.argv(profile=None) == [
        "process", "s3://b/a/x.m3u8", "--json", "--quiet", "--sid", "s1", "--endpoint-url", "http://127.0.0.1:9",
        "--dest", "s3://o/", "--policy", "lenient", "--av-file-type", "hls,mp4", "--force",
    ]  # fmt: skip


def test_events_take_the_workers_defaults_and_jobs_their_own():
    defaults = JobOptions(dest="s3://out/", av_file_type="hls,mp4", profile={"cname": "x"})
    settings = WorkerSettings(recordings="s3://rec/", defaults=defaults)
    event = spec_for(Trigger(origin="s3", location="s3://b/k.m3u8"), settings=settings)
    job = spec_for(
        Trigger(origin="job", location="s3://b/", options=JobOptions(policy="lenient")), settings=settings
    )
    recorder = spec_for(Trigger(origin="recorder", location=None, sid="s"), settings=settings)
    assert event is not None
    assert event.options == defaults
    assert job is not None
    assert job.options == JobOptions(policy="lenient", profile={"cname": "x"})
    assert recorder is not None
    assert (recorder.location, recorder.sid) == ("s3://rec/", "s")
    assert spec_for(Trigger(origin="recorder", location=None, sid="s"), settings=WorkerSettings()) is None


def test_the_fleets_jobs_read_no_slice_ahead_of_their_playlist():
    """A worker comes back to an unfinished recording every minute: a head start would read its first
    slices each time for nothing. A variable the worker's own environment sets still wins."""
    settings = WorkerSettings(recordings="s3://rec/")
    for origin in ("s3", "recorder", "job"):
        spec = spec_for(Trigger(origin=origin, location="s3://b/", sid="s"), settings=settings)
        assert spec is not None
        assert not spec.head_start
        assert load_config(environ=spec.environ({"HOME": "/h"})).fetch_head_start == 0
        assert spec.environ({"HOME": "/h"})["HOME"] == "/h"
        assert spec.environ({"RECPIPE_FETCH_HEAD_START": "2"})["RECPIPE_FETCH_HEAD_START"] == "2"
    batch = JobSpec(location="s3://b/")  # what ``recpipe batch`` runs: people's work, read ahead
    assert batch.environ({}) == {}
    assert load_config(environ=batch.environ({})).fetch_head_start == 7


def test_worst_action_wins():
    later, retry, done = Action(verdict="later"), Action(verdict="retry"), Action(verdict="delete")
    assert worst([done, later, retry]) is retry
    assert worst([done, later]) is later
    assert worst([]).verdict == "delete"


def test_queue_messages_carry_no_credentials():
    profile = {"clientRequest": {"storageConfig": {"bucket": "b", "accessKey": "AKIA", "secretKey": "s3cr3t",
                                                   "extensionParams": {"sse": "aes256"}}}}  # fmt: skip
    assert without_secrets(profile) == {
        "clientRequest": {"storageConfig": {"bucket": "b", "extensionParams": {"sse": "aes256"}}}
    }


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        ([], 0),
        (["ok", "ok"], 0),
        (["ok", "pending"], 75),
        (["degraded", "pending"], 75),  # not all done yet: come back later
        (["rejected", "degraded"], 4),
        (["ok", "failed"], 1),
        (["ok", "failed", "rejected"], 4),  # one order for every summary (pipeline.model.policy)
        (["ok", None], 1),
    ],
)
def test_batch_exit_code(statuses, code):
    assert batch_exit_code(statuses) == code


def test_events_for_buckets_the_worker_does_not_serve_are_refused_unrun():
    import threading

    from pipeline.fleet.sqs import Message
    from pipeline.fleet.worker import Dispatcher

    ran: list[JobSpec] = []
    dispatcher = Dispatcher(
        settings=WorkerSettings(buckets=frozenset({"ours"})),
        run=lambda spec, cancel: (
            ran.append(spec) or Outcome(exit_code=0, report={"status": "ok", "findings": []})
        ),
        probe=lambda _: None,
    )

    def message(bucket: str) -> Message:
        s3 = {"bucket": {"name": bucket}, "object": {"key": "r/s_c.m3u8"}}
        body = json.dumps(
            {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": s3}]}
        )
        return Message(id="1", receipt="r", body=body, receive_count=1, sent_at=0)

    refused = dispatcher.action_for(message("theirs"), cancel=threading.Event())
    assert (refused.verdict, ran) == ("dead-letter", [])
    assert "'theirs'" in refused.reason
    assert dispatcher.action_for(message("ours"), cancel=threading.Event()).verdict == "delete"
    assert [s.location for s in ran] == ["s3://ours/r/s_c.m3u8"]


def test_a_backuped_recordings_job_waits_for_its_files():
    settings = WorkerSettings(recordings="s3://rec/", defaults=JobOptions(av_file_type="hls,mp4"))
    trigger = Trigger(origin="recorder", location=None, sid="s", backuped_at=1767225600.5)
    spec = spec_for(trigger, settings=settings)
    assert spec is not None
    assert spec.options.backuped_at == 1767225600.5
    argv = spec.argv(profile=None)
    assert argv[argv.index("--backuped-at") + 1] == "1767225600.5"
    plain = spec_for(Trigger(origin="recorder", location=None, sid="s"), settings=settings)
    assert plain is not None
    assert "--backuped-at" not in plain.argv(profile=None)


def test_waiting_for_backup_and_for_a_slices_recording():
    waiting = Outcome(exit_code=75, report={"status": "pending", "findings": [{"code": "BACKUP_PENDING"}]})
    live = Outcome(exit_code=75, report={"status": "pending", "findings": [{"code": "NO_ENDLIST"}]})
    common = {"receive_count": 1, "pending_delay_s": 60.0, "max_pending_age_s": 3600.0}
    action = decide(waiting, age_s=10.0, superseded=True, **common)
    assert (action.verdict, action.seconds) == ("later", 60.0)  # a late slice does not end the wait
    assert "backup" in action.reason
    assert decide(waiting, age_s=7200.0, superseded=False, **common).verdict == "dead-letter"
    assert decide(live, age_s=10.0, superseded=True, **common).verdict == "delete"


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_the_decision_is_the_same_with_a_report_or_without(cls):
    """The same error decides the same, whether it was recorded in a report (a stage failed) or
    stopped the job before one existed (retry, or not: read from the error's class either way)."""
    error = {"stage": "fetch", "type": cls.__name__, "message": "x", "retryable": cls.retryable}
    with_report = Outcome(exit_code=1, report={"status": "failed", "findings": [], "error": error})
    without = Outcome(exit_code=cls.exit_code, error_type=cls.__name__, error="x", retryable=cls.retryable)
    assert (act(with_report).verdict == "retry") is cls.retryable
    assert (act(without).verdict == "retry") is cls.retryable
