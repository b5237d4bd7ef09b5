"""The worker loop against a real SQS (moto on 127.0.0.1): dead-lettering, redrive, heartbeat,
graceful stop. Jobs here are real ``recpipe process`` runs where the outcome matters, and a job that
waits to be stopped where only the loop's behaviour is under test."""

from __future__ import annotations

import json
import threading
import time

import boto3
import pytest

from pipeline.fleet.jobs import JobSpec, Outcome, run_subprocess
from pipeline.fleet.metrics import Metrics
from pipeline.fleet.sqs import SqsQueue
from pipeline.fleet.triggers import job_message
from pipeline.fleet.worker import Dispatcher, Worker, WorkerSettings

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("aws_environment")]


@pytest.fixture
def queues(s3_server):
    """A queue whose dead-letter queue takes messages after 2 receives."""
    sqs = boto3.client("sqs", endpoint_url=s3_server, region_name="us-east-1")
    tag = str(time.monotonic_ns())
    dlq = sqs.create_queue(QueueName=f"dead-{tag}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "2"})
    url = sqs.create_queue(QueueName=f"work-{tag}", Attributes={"RedrivePolicy": redrive})["QueueUrl"]
    yield SqsQueue(sqs, url), SqsQueue(sqs, dlq)
    for u in (url, dlq):
        sqs.delete_queue(QueueUrl=u)


def worker_for(queue: SqsQueue, dead: SqsQueue | None, run, **settings) -> Worker:
    base = {"wait_s": 1, "visibility_s": 10, "idle_exit_s": 2.0, "grace_s": 0.5, "retry_delay_s": 0.0}
    dispatcher = Dispatcher(settings=WorkerSettings(**{**base, **settings}), run=run, probe=lambda _: None)
    return Worker(queue, dispatcher=dispatcher, dead_letters=dead)


def all_bodies(queue: SqsQueue) -> list[str]:
    return [m.body for m in queue.receive(most=10, wait_s=1, visibility_s=30)]


def test_a_message_recpipe_cannot_understand_goes_to_the_dead_letter_queue_at_once(queues):
    queue, dead = queues
    queue.send(["<xml/>"])
    stats = worker_for(queue, dead, run=lambda spec, cancel: Outcome(exit_code=0)).serve(threading.Event())
    assert (stats.messages, stats.dead_lettered) == (1, 1)
    assert all_bodies(dead) == ["<xml/>"]
    assert queue.depth() == (0, 0)


def test_a_job_that_keeps_failing_ends_in_the_dead_letter_queue_by_redrive(queues, s3_server):
    """A real job for a bucket that does not exist fails on every receive; after the queue's
    maxReceiveCount (2) SQS itself moves the message to the dead-letter queue."""
    queue, dead = queues
    queue.send([job_message("s3://no-such-bucket-recpipe/rec/x_y.m3u8")])
    worker = worker_for(
        queue, dead, run=lambda spec, cancel: run_subprocess(spec, cancel=cancel), endpoint_url=s3_server
    )
    stats = worker.serve(threading.Event())
    assert worker.dispatcher.jobs == 2
    assert stats.returned == 2
    assert [json.loads(b)["location"] for b in all_bodies(dead)] == [
        "s3://no-such-bucket-recpipe/rec/x_y.m3u8"
    ]


def test_heartbeat_keeps_a_long_job_hidden(queues):
    queue, dead = queues
    queue.send([job_message("s3://b/rec/")])
    seen: list[int] = []
    sqs = queue._client

    def slow_job(spec: JobSpec, cancel: threading.Event) -> Outcome:
        for _ in range(12):  # 6 s, longer than the 3 s visibility: only the heartbeat keeps it hidden
            attributes = sqs.get_queue_attributes(
                QueueUrl=queue.url, AttributeNames=["ApproximateNumberOfMessages"]
            )
            seen.append(int(attributes["Attributes"]["ApproximateNumberOfMessages"]))
            time.sleep(0.5)
        return Outcome(exit_code=0, report={"status": "ok", "findings": []})

    stats = worker_for(queue, dead, run=slow_job, visibility_s=3).serve(threading.Event())
    assert set(seen) == {0}
    assert (stats.messages, stats.deleted) == (1, 1)


def test_stop_gives_jobs_their_grace_then_returns_their_messages(queues):
    queue, dead = queues
    queue.send([job_message("s3://b/rec/a/"), job_message("s3://b/rec/b/")])
    started = threading.Barrier(3)
    stopped: list[str] = []

    def job_until_stopped(spec: JobSpec, cancel: threading.Event) -> Outcome:
        started.wait()
        cancel.wait(30)
        stopped.append(spec.location)
        return Outcome(exit_code=130)

    stop = threading.Event()
    worker = worker_for(queue, dead, run=job_until_stopped, concurrency=2, idle_exit_s=None, grace_s=0.5)
    serving = threading.Thread(target=worker.serve, args=(stop,))
    serving.start()
    started.wait(timeout=20)
    stop.set()  # what SIGTERM does
    serving.join(timeout=30)
    assert not serving.is_alive()
    assert sorted(stopped) == ["s3://b/rec/a/", "s3://b/rec/b/"]
    assert len(all_bodies(queue)) == 2  # visible again at once, for another worker


def test_the_worker_counts_what_it_does_in_its_metrics(queues):
    queue, dead = queues
    queue.send([job_message("s3://b/rec/a_b.m3u8"), "<xml/>"])
    metrics = Metrics()
    report = {"status": "ok", "segments": {"bytes": 500}, "outputs": [{"bytes": 400}], "retries": 1}
    in_flight: list[float] = []

    def job(spec: JobSpec, cancel: threading.Event) -> Outcome:
        in_flight.append(metrics.in_flight._value.get())
        return Outcome(exit_code=0, report=report)

    base = {"wait_s": 1, "visibility_s": 10, "idle_exit_s": 2.0, "grace_s": 0.5, "retry_delay_s": 0.0}
    dispatcher = Dispatcher(settings=WorkerSettings(**base), run=job, probe=lambda _: None, metrics=metrics)
    Worker(queue, dispatcher=dispatcher, dead_letters=dead).serve(threading.Event())
    value = metrics.registry.get_sample_value
    assert value("recpipe_jobs_total", {"outcome": "ok"}) == 1
    assert value("recpipe_messages_total", {"verdict": "delete"}) == 1
    assert value("recpipe_messages_total", {"verdict": "dead-letter"}) == 1
    assert value("recpipe_queue_receive_lag_seconds_count") == 2
    assert value("recpipe_fetched_bytes_total") == 500
    assert in_flight == [1.0]
    assert value("recpipe_jobs_in_flight") == 0
