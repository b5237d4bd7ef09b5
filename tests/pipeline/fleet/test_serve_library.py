"""``recpipe serve``'s library half: the listen address, and handing a notification's recording on to a
real queue (moto's SQS on 127.0.0.1) as the same job a worker would make of it."""

from __future__ import annotations

import json
import os
import time

import boto3
import pytest

from pipeline.fleet.serve import parse_listen, submitter
from pipeline.fleet.settings import worker_settings
from pipeline.fleet.sqs import SqsQueue
from pipeline.fleet.triggers import JobOptions, Trigger, parse_message
from pipeline.model.exceptions import ConfigError


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("[::1]:0", ("[::1]", 0)),
        ("host.example:443", ("host.example", 443)),
    ],
)
def test_listen_addresses(listen, expected):
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["8080", ":8080", "host:", "host:http"])
def test_bad_listen_addresses(listen):
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_listen(listen)


@pytest.mark.integration
@pytest.mark.usefixtures("aws_environment")
def test_a_notification_becomes_the_job_message_a_worker_would_run(s3_server):
    sqs = boto3.client("sqs", endpoint_url=s3_server, region_name="us-east-1")
    url = sqs.create_queue(QueueName=f"serve-{time.monotonic_ns()}")["QueueUrl"]
    try:
        settings = worker_settings(
            defaults=JobOptions(dest="s3://out/", policy="lenient"),
            endpoint_url=s3_server,
            recordings="s3://rec/agora/",
        )
        handoff = submitter(settings, queue_url=url, environ=os.environ)
        assert handoff.ready() is None  # the queue answers
        handoff.submit(Trigger(origin="notification", location=None, sid="abc123", backuped_at=1700000000.0))
        handoff.finish()
        [message] = SqsQueue(sqs, url).receive(most=10, wait_s=1, visibility_s=30)
        [trigger] = parse_message(message.body).triggers
        assert (trigger.origin, trigger.location, trigger.sid) == ("job", "s3://rec/agora/", "abc123")
        assert (trigger.options.dest, trigger.options.policy) == ("s3://out/", "lenient")
        assert trigger.options.backuped_at == 1700000000.0
        assert json.loads(message.body)["location"] == "s3://rec/agora/"
    finally:
        sqs.delete_queue(QueueUrl=url)
