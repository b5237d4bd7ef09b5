"""``SqsQueue``: the few SQS operations the worker and ``recpipe enqueue`` need. boto3's SQS lives here.

Every botocore error becomes a ``QueueError`` in this module, and nowhere else.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pipeline.fleet.queues import Message as Message  # re-exported: it used to live here
from pipeline.model.exceptions import ConfigError, QueueError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

BATCH = 10
"""SQS's largest batch for receive, send and delete."""
MAX_VISIBILITY_S = 12 * 3600
"""SQS's longest visibility timeout."""
MAX_DELAY_S = 900
"""SQS's longest message delay."""
FIRST_SEEN = "recpipe-first-seen"
"""The message attribute that carries when a waiting job first arrived (Unix time)."""


def first_seen_of(attributes: Mapping[str, Any]) -> float | None:
    """The ``FIRST_SEEN`` attribute of a received message (as boto3 or a Lambda event gives them)."""
    value = attributes.get(FIRST_SEEN) if isinstance(attributes, Mapping) else None
    text = value.get("StringValue", value.get("stringValue")) if isinstance(value, Mapping) else None
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def region_of(url: str, default: str) -> str:
    """The region in an AWS queue URL (``https://sqs.<region>.amazonaws.com/...``), else ``default``."""
    host = urlsplit(url).hostname or ""
    parts = host.split(".")
    if len(parts) >= 4 and parts[0] == "sqs" and "amazonaws" in parts:
        return parts[1]
    return default


def open_sqs_queue(url: str, *, endpoint_url: str | None, environ: Mapping[str, str]) -> SqsQueue:
    """The queue at ``url`` (region from the URL, else ``AWS_REGION``/``AWS_DEFAULT_REGION``)."""
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    return SqsQueue(make_sqs_client(queue_url=url, endpoint_url=endpoint_url, region=region), url)


def make_sqs_client(*, queue_url: str, endpoint_url: str | None, region: str | None) -> SQSClient:
    """A boto3 SQS client for ``queue_url`` (standard retries, keep-alive, region from the URL)."""
    session = boto3.session.Session()
    config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=30)
    where = region_of(queue_url, region or session.region_name or "us-east-1")
    return session.client("sqs", endpoint_url=endpoint_url, region_name=where, config=config)


class SqsQueue:
    """One SQS queue."""

    def __init__(self, client: SQSClient, url: str) -> None:
        if not url.startswith(("https://", "http://")):
            raise ConfigError(
                f"{url}: a queue is given by its URL (https://sqs.<region>.amazonaws.com/<account>/<name>)"
            )
        self._client = client
        self.url = url

    @property
    def name(self) -> str:
        """The queue's name (the URL's last part)."""
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    @contextlib.contextmanager
    def translated(self, action: str) -> Iterator[None]:
        """Turn botocore's errors into ``QueueError``."""
        try:
            yield
        except ClientError as err:
            error = err.response.get("Error", {})
            raise QueueError(
                f"{self.name}: {action} failed: {error.get('Code', '?')}: {error.get('Message', '')}"
            ) from err
        except BotoCoreError as err:
            raise QueueError(f"{self.name}: {action} failed: {err}") from err

    def receive(self, *, most: int, wait_s: int, visibility_s: int) -> list[Message]:
        """Up to ``most`` messages, waiting up to ``wait_s`` for the first (long polling)."""
        with self.translated("receive"):
            response = self._client.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=max(1, min(most, BATCH)),
                WaitTimeSeconds=wait_s,
                VisibilityTimeout=visibility_s,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
                MessageAttributeNames=[FIRST_SEEN],
            )
        out = []
        for m in response.get("Messages", []):
            attributes = m.get("Attributes", {})
            out.append(
                Message(
                    id=m["MessageId"],
                    receipt=m["ReceiptHandle"],
                    body=m.get("Body", ""),
                    receive_count=int(attributes.get("ApproximateReceiveCount", "1")),
                    sent_at=int(attributes.get("SentTimestamp", str(int(time.time() * 1000)))) / 1000,
                    first_seen=first_seen_of(m.get("MessageAttributes", {})),
                )
            )
        return out

    def delete(self, message: Message) -> None:
        """Done with it: it will not come back."""
        with self.translated("delete"):
            self._client.delete_message(QueueUrl=self.url, ReceiptHandle=message.receipt)

    def hide(self, message: Message, seconds: float) -> None:
        """Keep it from other consumers for ``seconds`` from now (0 releases it at once)."""
        with self.translated("change visibility"):
            self._client.change_message_visibility(
                QueueUrl=self.url,
                ReceiptHandle=message.receipt,
                VisibilityTimeout=int(min(max(seconds, 0), MAX_VISIBILITY_S)),
            )

    def url_of(self, name: str, *, account: str) -> str:
        """The URL of queue ``name`` of ``account``, as the service gives it."""
        with self.translated("get queue url"):
            return self._client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]

    def send_later(self, message: Message, *, seconds: float) -> None:
        """Send ``message``'s body again, to arrive after ``seconds`` (SQS allows up to 15 minutes), with
        when its job first arrived: a job that waits is a new message each time, so waiting never uses
        up the queue's ``maxReceiveCount`` (which is for failures)."""
        attributes = {FIRST_SEEN: {"DataType": "Number", "StringValue": f"{message.since:.3f}"}}
        with self.translated("send"):
            self._client.send_message(
                QueueUrl=self.url,
                MessageBody=message.body,
                DelaySeconds=int(min(max(seconds, 0), MAX_DELAY_S)),
                MessageAttributes=attributes,  # type: ignore[arg-type]
            )

    def send(self, bodies: Sequence[str]) -> int:
        """Send ``bodies`` (in batches of 10); returns how many were accepted, raises if any was not."""
        sent = 0
        for start in range(0, len(bodies), BATCH):
            entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + BATCH])]
            with self.translated("send"):
                response = self._client.send_message_batch(QueueUrl=self.url, Entries=entries)  # type: ignore[arg-type]
            failed = response.get("Failed", [])
            if failed:
                reasons = "; ".join(f"{f.get('Code')}: {f.get('Message', '')}" for f in failed[:3])
                raise QueueError(f"{self.name}: {len(failed)} message(s) were not accepted ({reasons})")
            sent += len(entries)
        return sent

    def dead_letter_queue(self) -> SqsQueue | None:
        """The queue's dead-letter queue (from its redrive policy), if it has one."""
        with self.translated("get attributes"):
            attributes = self._client.get_queue_attributes(
                QueueUrl=self.url, AttributeNames=["RedrivePolicy"]
            )
        policy = attributes.get("Attributes", {}).get("RedrivePolicy")
        if not policy:
            return None
        try:
            arn = str(json.loads(policy)["deadLetterTargetArn"])
        except (ValueError, KeyError) as err:
            raise QueueError(f"{self.name}: unreadable redrive policy {policy!r}") from err
        _, _, _, _, account, name = arn.split(":", 5)
        with self.translated("get dead-letter queue URL"):
            url = self._client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
        return SqsQueue(self._client, url)

    def reachable(self) -> None:
        """Nothing when the queue answers (GetQueueAttributes); ``QueueError`` otherwise."""
        self.depth()

    def depth(self) -> tuple[int, int]:
        """``(visible, in flight)`` message counts (approximate, as SQS reports them)."""
        with self.translated("get attributes"):
            attributes = self._client.get_queue_attributes(
                QueueUrl=self.url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )
        values = attributes.get("Attributes", {})
        visible = values.get("ApproximateNumberOfMessages", "0")
        hidden = values.get("ApproximateNumberOfMessagesNotVisible", "0")
        return int(visible), int(hidden)
