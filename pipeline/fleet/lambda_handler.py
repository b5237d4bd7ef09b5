"""AWS Lambda entry point: ``pipeline.fleet.lambda_handler.handler``.

Wire it as an SQS event source with ``ReportBatchItemFailures``: every record is one queue message
(any shape ``pipeline.fleet.triggers`` accepts) and is processed in this process, one after another. A
message that is done (or has nothing to do) succeeds; a message that must wait (a recording still
recording, another recpipe holding it, slices still coming from backup) is sent again to its queue
with a delay and succeeds, so waiting never uses up ``maxReceiveCount``; every other one is reported
in ``batchItemFailures`` and comes back after the queue's visibility timeout — an error worth
retrying, and a message recpipe cannot understand, which the queue's redrive policy moves to the
dead-letter queue after ``maxReceiveCount``.
Give the function a timeout above the longest recording's processing time and the queue a
visibility timeout above the function's timeout (AWS requires 6x the function timeout in practice).

It also accepts an S3 notification or EventBridge event directly (Lambda as the bucket's or rule's
target); then an error worth retrying raises, so Lambda's own retries apply.

Settings come from the environment: ``RECPIPE_BUCKETS`` (comma-separated: serve only these),
``RECPIPE_RECORDINGS`` (the recorder's storage, for its notifications), ``RECPIPE_DEST``,
``RECPIPE_AV_FILE_TYPE``, ``RECPIPE_PROFILE`` (a start-request JSON file shipped with the function),
``RECPIPE_POLICY`` and every other ``RECPIPE_*`` setting, and ``AWS_ENDPOINT_URL`` for an
S3-compatible store.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from pipeline.fleet.jobs import run_in_process
from pipeline.fleet.settings import settings_from_environ
from pipeline.fleet.sqs import Message, SqsQueue, first_seen_of, make_sqs_client
from pipeline.fleet.worker import Dispatcher
from pipeline.model.exceptions import PipelineError
from pipeline.model.logs import setup_logging
from pipeline.run.app import playlist_etag
from pipeline.run.malloc import limit_malloc_arenas

log = logging.getLogger("recpipe")


limit_malloc_arenas()  # once per Lambda process, before any thread starts (pipeline.run.malloc)


def dispatcher_for(environ: Mapping[str, str]) -> Dispatcher:
    """A dispatcher that runs jobs in this process."""
    settings = settings_from_environ(environ)
    return Dispatcher(
        settings=settings,
        run=lambda spec, _cancel: run_in_process(spec, environ=environ),
        probe=lambda location: playlist_etag(location, endpoint_url=settings.endpoint_url, environ=environ),
    )


def sqs_message(record: Mapping[str, Any]) -> Message:
    """A queue message from one record of an SQS-triggered invocation."""
    attributes = record.get("attributes") or {}
    return Message(
        id=str(record.get("messageId", "")),
        receipt=str(record.get("receiptHandle", "")),
        body=str(record.get("body", "")),
        receive_count=int(attributes.get("ApproximateReceiveCount", 1)),
        sent_at=int(attributes.get("SentTimestamp", time.time() * 1000)) / 1000,
        first_seen=first_seen_of(record.get("messageAttributes") or {}),
    )


def source_queue(arn: str, *, environ: Mapping[str, str]) -> SqsQueue | None:
    """The queue an SQS record came from (``arn:aws:sqs:<region>:<account>:<name>``), or None."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        return None
    region, account, name = parts[3], parts[4], parts[5]
    endpoint = environ.get("AWS_ENDPOINT_URL_SQS") or environ.get("AWS_ENDPOINT_URL") or None
    url = f"https://sqs.{region}.amazonaws.com/{account}/{name}"
    client = make_sqs_client(queue_url=url, endpoint_url=endpoint, region=region)
    queue = SqsQueue(client, url)
    return SqsQueue(client, queue.url_of(name, account=account))


def wait_in_queue(record: Mapping[str, Any], message: Message, *, seconds: float) -> bool:
    """Send the message again to wait ``seconds`` in its queue; False when that cannot be done."""
    try:
        queue = source_queue(str(record.get("eventSourceARN", "")), environ=os.environ)
        if queue is None:
            return False
        queue.send_later(message, seconds=seconds)
    except PipelineError as err:
        log.warning("message %s cannot wait in its queue (%s); it comes back instead", message.id, err)
        return False
    return True


def configure_logging(environ: Mapping[str, str]) -> None:
    """JSON lines at INFO (CloudWatch Logs Insights reads them field by field); ``RECPIPE_LOG_FORMAT=text``
    for plain lines. Done once per container."""
    global _LOGGING
    if _LOGGING:
        return
    fmt = environ.get("RECPIPE_LOG_FORMAT", "json")
    setup_logging(level=logging.INFO, fmt="text" if fmt == "text" else "json")
    _LOGGING = True


_LOGGING = False


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Process an SQS batch (partial failures reported) or one direct S3/EventBridge event."""
    configure_logging(os.environ)
    dispatcher = dispatcher_for(os.environ)
    records = event.get("Records") if isinstance(event, Mapping) else None
    if isinstance(records, list) and records and all(r.get("eventSource") == "aws:sqs" for r in records):
        failures = []
        for record in records:
            message = sqs_message(record)
            action = dispatcher.action_for(message, cancel=threading.Event())
            if (
                action.verdict == "later"
                and action.seconds > 0
                and wait_in_queue(record, message, seconds=action.seconds)
            ):
                log.info(
                    "message %s waits %.0f s in its queue (%s)", message.id, action.seconds, action.reason
                )
                continue
            if action.verdict != "delete":
                log.info("message %s: %s (%s); it comes back", message.id, action.verdict, action.reason)
                failures.append({"itemIdentifier": message.id})
        return {"batchItemFailures": failures}
    request_id = str(getattr(context, "aws_request_id", "direct"))
    message = Message(id=request_id, receipt="", body=json.dumps(event), receive_count=1, sent_at=time.time())
    action = dispatcher.action_for(message, cancel=threading.Event())
    if action.verdict == "retry":
        raise RuntimeError(f"recpipe: {action.reason}")
    return {"verdict": action.verdict, "reason": action.reason}
