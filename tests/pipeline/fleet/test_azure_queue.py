"""An Azure Storage Queue as the worker's queue, on Azurite (127.0.0.1): Base64 messages as Event Grid
writes them, long polling, pop receipts that change with every visibility change, waiting jobs that keep
their first-arrival time, and messages moved to ``<queue>-poison`` after too many receives."""

from __future__ import annotations

import base64
import json
import time

import pytest
from azure.storage.queue import QueueClient

from pipeline.fleet.azure_queue import (
    AzureQueue,
    decode,
    encode,
    is_azure_queue,
    parse_queue_url,
    unwrap_waiting,
    wrap_waiting,
)
from pipeline.fleet.queues import open_queue
from pipeline.model.exceptions import ConfigError


def test_messages_are_base64_as_event_grid_writes_them_and_plain_text_is_read_as_it_is():
    body = json.dumps({"eventType": "Microsoft.Storage.BlobCreated"})
    assert decode(encode(body)) == body
    assert base64.b64decode(encode(body)).decode() == body
    assert decode(body) == body  # sent by something else, not Base64
    assert decode("aGVsbG8=") == "aGVsbG8="  # Base64 of something that is not JSON: left alone


def test_a_waiting_job_keeps_its_body_and_first_arrival():
    body = '{"schema": "recpipe.job/1", "location": "az://a/b/c.m3u8"}'
    assert unwrap_waiting(wrap_waiting(body, first_seen=1700000000.25)) == (body, 1700000000.25)
    assert unwrap_waiting(body) == (body, None)
    assert unwrap_waiting('{"schema": "recpipe.waiting/1", "body": 3}')[1] is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("azq://acct1/jobs", ("acct1", "jobs")),
        ("https://acct1.queue.core.windows.net/jobs", ("acct1", "jobs")),
        ("https://acct1.queue.core.chinacloudapi.cn/jobs/", ("acct1", "jobs")),
    ],
)
def test_queue_urls(url, expected):
    assert is_azure_queue(url)
    assert parse_queue_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("azq://acct1/", "give the queue as"),
        ("azq://Acct/jobs", "not a storage account name"),
        ("https://acct1.queue.core.windows.net/jobs?sv=1&sig=secret", "names no credentials"),
    ],
)
def test_bad_queue_urls(url, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_queue_url(url)
    assert "secret" not in str(info.value)


def test_sqs_urls_are_not_azure_queues():
    assert not is_azure_queue("https://sqs.us-east-1.amazonaws.com/123/jobs")
    assert not is_azure_queue("https://us-west-2.queue.amazonaws.com/123/jobs")  # SQS's legacy host
    assert not is_azure_queue("http://127.0.0.1:5000/123/jobs")


@pytest.fixture
def queue_url(azurite):
    with azurite.queue() as url:
        yield url


@pytest.fixture
def queue(queue_url, azurite) -> AzureQueue:
    made = open_queue(queue_url, endpoint_url=None, environ=azurite.environ)
    assert isinstance(made, AzureQueue)
    return made


@pytest.mark.integration
def test_send_receive_delete(queue):
    assert queue.send(['{"a": 1}', '{"b": 2}']) == 2
    got = queue.receive(most=10, wait_s=1, visibility_s=30)
    assert sorted(m.body for m in got) == ['{"a": 1}', '{"b": 2}']
    assert all(m.receive_count == 1 and m.first_seen is None for m in got)
    for m in got:
        queue.delete(m)
    assert queue.receive(most=10, wait_s=0, visibility_s=30) == []


@pytest.mark.integration
def test_receive_waits_for_a_message_like_a_long_poll(queue):
    started = time.monotonic()
    assert queue.receive(most=1, wait_s=2, visibility_s=30) == []
    assert time.monotonic() - started >= 1.9


@pytest.mark.integration
def test_hiding_renews_the_receipt_and_the_latest_one_deletes(queue):
    queue.send(['{"job": 1}'])
    [message] = queue.receive(most=1, wait_s=1, visibility_s=30)
    queue.hide(message, 60)  # the heartbeat: a new pop receipt
    queue.hide(message, 60)
    queue.delete(message)  # with the latest receipt, though the message record holds the first
    assert queue.receive(most=1, wait_s=0, visibility_s=1) == []


@pytest.mark.integration
def test_a_released_message_comes_back_with_its_receive_count(queue):
    queue.send(['{"job": 2}'])
    [first] = queue.receive(most=1, wait_s=1, visibility_s=30)
    queue.hide(first, 0)
    [again] = queue.receive(most=1, wait_s=1, visibility_s=30)
    assert again.id == first.id
    assert again.receive_count == 2


@pytest.mark.integration
def test_a_waiting_job_is_a_new_message_that_remembers_when_it_first_arrived(queue):
    queue.send(['{"job": 3}'])
    [message] = queue.receive(most=1, wait_s=1, visibility_s=30)
    queue.send_later(message, seconds=1)
    queue.delete(message)
    assert queue.receive(most=1, wait_s=0, visibility_s=30) == []  # invisible for now
    [later] = queue.receive(most=1, wait_s=3, visibility_s=30)
    assert later.body == '{"job": 3}'
    assert later.receive_count == 1  # waiting does not count as a failed receive
    assert later.first_seen == pytest.approx(message.sent_at, abs=0.01)


@pytest.mark.integration
def test_a_message_received_too_often_goes_to_the_poison_queue(queue_url, azurite):
    queue = open_queue(queue_url, endpoint_url=None, environ=azurite.environ, max_receives=2)
    assert isinstance(queue, AzureQueue)
    queue.send(['{"job": "bad"}'])
    for _ in range(2):
        [message] = queue.receive(most=1, wait_s=1, visibility_s=30)
        queue.hide(message, 0)  # the job failed: back to the queue
    assert queue.receive(most=1, wait_s=1, visibility_s=30) == []  # the third receive: moved aside
    poison = queue.dead_letter_queue()
    assert poison is not None
    assert poison.name == queue.name + "-poison"
    [moved] = poison.receive(most=1, wait_s=1, visibility_s=30)
    assert moved.body == '{"job": "bad"}'
    client = QueueClient.from_connection_string(azurite.connection_string, queue.name)
    assert client.get_queue_properties().approximate_message_count == 0
