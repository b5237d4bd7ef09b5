"""An Azure Storage Queue as the worker's queue: where Event Grid delivers ``BlobCreated`` events (and
where ``recpipe enqueue`` and ``serve`` send jobs), with the semantics the worker has on SQS.

What SQS does by itself is done here:

- **Long polling**: a Storage Queue answers at once, so ``receive`` asks again every
  ``POLL_S`` until a message comes or ``wait_s`` is over.
- **Redrive**: a message received more than ``max_receives`` times (a job that keeps failing) is moved
  to ``<queue>-poison`` — Azure Functions' convention — instead of being handed out again; the worker's
  own dead-lettering sends there too.
- **A waiting job** is sent again with an initial invisibility and its first-arrival time in a small
  envelope (``{"schema": "recpipe.waiting/1", ...}``), so waiting does not count as a failed receive.

Messages are Base64 text, as Event Grid writes them; one that is not Base64 JSON is read as it is.
Every visibility change gives a message a new pop receipt: the latest is kept per message id.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.queue import ExponentialRetry, QueueClient, QueueServiceClient

from pipeline.fleet.queues import Message
from pipeline.model.exceptions import ConfigError, QueueError
from pipeline.storage.azure import DEFAULT_SUFFIX, azure_credential, check_account

log = logging.getLogger(__name__)

POLL_S = 1.0
"""How often an empty queue is asked again while ``receive`` waits."""
BATCH = 32
"""A Storage Queue's largest receive."""
MAX_VISIBILITY_S = 7 * 24 * 3600
"""A Storage Queue's longest visibility timeout (and initial invisibility)."""
DEFAULT_MAX_RECEIVES = 5
"""Receives before a message is moved to the poison queue (Azure Functions' ``maxDequeueCount``)."""
WAITING_SCHEMA = "recpipe.waiting/1"
POISON_SUFFIX = "-poison"


_QUEUE_HOST = re.compile(r"[a-z0-9]{3,24}\.queue\.core\.[a-z0-9.-]+")


def is_azure_queue(url: str) -> bool:
    """Whether ``url`` names an Azure Storage Queue (``azq://`` or ``https://<account>.queue.core.…``)."""
    parts = urlsplit(url)
    return parts.scheme == "azq" or _QUEUE_HOST.fullmatch(parts.hostname or "") is not None


def parse_queue_url(url: str) -> tuple[str, str]:
    """``(account, queue)`` from ``azq://<account>/<queue>`` or ``https://<account>.queue.<suffix>/<queue>``."""
    parts = urlsplit(url)
    if parts.username or parts.password or parts.query:
        raise ConfigError(f"{parts.scheme}://{parts.hostname}{parts.path}: a queue URL names no credentials "
                          "or SAS (give them in the environment)")  # fmt: skip
    account = parts.netloc if parts.scheme == "azq" else (parts.hostname or "").split(".", 1)[0]
    name = parts.path.strip("/")
    check_account(account, where=url)
    if not name or "/" in name:
        raise ConfigError(f"{url}: give the queue as azq://<account>/<queue>")
    return account, name


def encode(body: str) -> str:
    """A message's content as it is sent: Base64 of its UTF-8 text (what Event Grid writes)."""
    return base64.b64encode(body.encode()).decode("ascii")


def decode(content: str) -> str:
    """A received message's text: Base64-decoded when it is Base64 of UTF-8 JSON, else as it is."""
    try:
        text = base64.b64decode(content, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return content
    return text if text.lstrip().startswith(("{", "[")) else content


def wrap_waiting(body: str, *, first_seen: float) -> str:
    """The envelope of a job sent again to wait: its body and when it first arrived."""
    return json.dumps({"schema": WAITING_SCHEMA, "first_seen": round(first_seen, 3), "body": body})


def unwrap_waiting(text: str) -> tuple[str, float | None]:
    """``(body, first_seen)`` of a waiting envelope; ``(text, None)`` for any other message."""
    if WAITING_SCHEMA not in text:
        return text, None
    try:
        doc = json.loads(text)
    except ValueError:
        return text, None
    if (
        not isinstance(doc, dict)
        or doc.get("schema") != WAITING_SCHEMA
        or not isinstance(doc.get("body"), str)
    ):
        return text, None
    seen = doc.get("first_seen")
    return doc["body"], float(seen) if isinstance(seen, int | float) and not isinstance(seen, bool) else None


class AzureQueue:
    """One Azure Storage Queue, with the worker's queue operations."""

    def __init__(
        self,
        client: QueueClient,
        *,
        max_receives: int = DEFAULT_MAX_RECEIVES,
        poison: QueueClient | None = None,
    ) -> None:
        self._client = client
        self._max_receives = max_receives
        self._poison = poison
        """The poison queue's client (None: this is a poison queue)."""
        self._receipts: dict[str, str] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._ensured = False

    @property
    def name(self) -> str:
        """The queue's name."""
        return str(self._client.queue_name)

    @contextlib.contextmanager
    def translated(self, action: str) -> Iterator[None]:
        """Turn the SDK's errors into ``QueueError`` (its code, never a credential)."""
        try:
            yield
        except AzureError as err:
            code = getattr(err, "error_code", None)
            code = getattr(code, "value", code) or type(err).__name__
            raise QueueError(f"{self.name}: {action} failed: {code}") from err

    def receive(self, *, most: int, wait_s: int, visibility_s: int) -> list[Message]:
        """Up to ``most`` messages; while there are none, asked again every ``POLL_S`` for ``wait_s``."""
        deadline = time.monotonic() + wait_s
        while True:
            with self.translated("receive"):
                got = list(
                    self._client.receive_messages(
                        max_messages=max(1, min(most, BATCH)),
                        visibility_timeout=int(min(max(visibility_s, 1), MAX_VISIBILITY_S)),
                    )
                )
            messages = [m for m in (self._message(raw) for raw in got) if m is not None]
            remaining = deadline - time.monotonic()
            if messages or remaining <= 0:
                return messages
            time.sleep(min(POLL_S, remaining))

    def _message(self, raw: Any) -> Message | None:
        """The worker's message, or None when it has been received too often (moved to the poison
        queue; if that fails, it is left to come back and be moved next time)."""
        body, first_seen = unwrap_waiting(decode(str(raw.content or "")))
        message = Message(
            id=str(raw.id),
            receipt=str(raw.pop_receipt),
            body=body,
            receive_count=int(raw.dequeue_count or 1),
            sent_at=raw.inserted_on.timestamp() if raw.inserted_on else time.time(),
            first_seen=first_seen,
        )
        with self._lock:
            self._receipts[message.id] = message.receipt
        if self._poison is None or message.receive_count <= self._max_receives:
            return message
        poison = self.dead_letter_queue()
        assert poison is not None
        try:
            poison.send([message.body])
            self.delete(message)
        except QueueError as err:
            log.error("message %s: cannot move it to %s (%s); it comes back", message.id, poison.name, err)
            return None
        log.error("message %s moved to %s after %d receives", message.id, poison.name, message.receive_count)
        return None

    @contextlib.contextmanager
    def _holding(self, message: Message) -> Iterator[str]:
        """The message's latest pop receipt, held while it is used: a heartbeat's visibility change and
        the job's delete never race (each change makes the previous receipt useless)."""
        with self._lock:
            lock = self._locks.setdefault(message.id, threading.Lock())
        with lock:
            with self._lock:
                receipt = self._receipts.get(message.id, message.receipt)
            yield receipt

    def _forget(self, message: Message) -> None:
        with self._lock:
            self._receipts.pop(message.id, None)
            self._locks.pop(message.id, None)

    def delete(self, message: Message) -> None:
        """Done with it: it will not come back."""
        with self._holding(message) as receipt, self.translated("delete"):
            self._client.delete_message(message.id, receipt)
        self._forget(message)

    def hide(self, message: Message, seconds: float) -> None:
        """Keep it from other consumers for ``seconds`` from now (0 releases it at once)."""
        with self._holding(message) as receipt:
            with self.translated("update visibility"):
                updated = self._client.update_message(
                    message.id, receipt, visibility_timeout=int(min(max(seconds, 0), MAX_VISIBILITY_S))
                )
            with self._lock:
                self._receipts[message.id] = str(updated.pop_receipt)
        if seconds <= 0:
            self._forget(message)  # released: the next receive brings a new receipt

    def send_later(self, message: Message, *, seconds: float) -> None:
        """Send ``message``'s body again, invisible for ``seconds``, with when its job first arrived."""
        content = encode(wrap_waiting(message.body, first_seen=message.since))
        with self.translated("send"):
            self._client.send_message(content, visibility_timeout=int(min(max(seconds, 0), MAX_VISIBILITY_S)))

    def send(self, bodies: Sequence[str]) -> int:
        """Send each body (Base64); returns how many were sent."""
        self._ensure()
        for body in bodies:
            with self.translated("send"):
                self._client.send_message(encode(body))
        return len(bodies)

    def reachable(self) -> None:
        """Nothing when the queue answers (Get Queue Properties); ``QueueError`` otherwise."""
        with self.translated("get properties"):
            self._client.get_queue_properties()

    def dead_letter_queue(self) -> AzureQueue | None:
        """``<queue>-poison``, where messages go that cannot be processed (created when first needed)."""
        return None if self._poison is None else AzureQueue(self._poison, poison=None)

    def _ensure(self) -> None:
        """Create a poison queue on first use if it is not there. An identity allowed only to send and
        receive messages cannot create it (the README's setup does): then sending says so."""
        if self._poison is not None or self._ensured:
            return
        try:
            with contextlib.suppress(ResourceExistsError), self.translated("create"):
                self._client.create_queue()
        except QueueError as err:
            log.debug("cannot create %s (%s); it must exist already", self.name, err)
        self._ensured = True


def open_azure_queue(
    url: str, *, environ: Mapping[str, str], max_receives: int = DEFAULT_MAX_RECEIVES
) -> AzureQueue:
    """The Azure Storage Queue ``url`` names. Credentials as for blobs (``pipeline.storage.azure``):
    a connection string (its ``QueueEndpoint`` is used), a key, a SAS, or azure-identity."""
    account, name = parse_queue_url(url)
    retry = ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=5)
    connection = environ.get("AZURE_STORAGE_CONNECTION_STRING", "").strip()
    try:
        if connection:
            service = QueueServiceClient.from_connection_string(connection, retry_policy=retry)
            if service.account_name != account:
                other = service.account_name
                raise ConfigError(
                    f"AZURE_STORAGE_CONNECTION_STRING is for the account {other!r}, not {account!r}"
                )
        else:
            parts = urlsplit(url)
            suffix = environ.get("AZURE_STORAGE_SUFFIX") or DEFAULT_SUFFIX
            endpoint = (
                f"https://{parts.hostname}"
                if parts.scheme == "https"
                else f"https://{account}.queue.{suffix}"
            )
            service = QueueServiceClient(
                endpoint, credential=azure_credential(account, environ=environ), retry_policy=retry
            )
        client = service.get_queue_client(name)
        poison = service.get_queue_client(name + POISON_SUFFIX)  # the same credential, SAS included
    except (ValueError, AzureError) as err:
        raise ConfigError(
            f"cannot set up the Azure queue client for {account!r}: {type(err).__name__}"
        ) from err
    return AzureQueue(client, max_receives=max_receives, poison=poison)
