"""The worker's queue, whichever service holds it: an SQS queue (``pipeline.fleet.sqs``) or an Azure
Storage Queue (``pipeline.fleet.azure_queue``), chosen by the queue's URL (``open_queue``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, kw_only=True, slots=True)
class Message:
    """One received message."""

    id: str
    receipt: str
    body: str
    receive_count: int
    """How many times it has been received, this time included."""
    sent_at: float
    """When it was sent (Unix time)."""
    first_seen: float | None = None
    """When the job it carries was first received, if it was sent again to wait (``send_later``)."""

    @property
    def since(self) -> float:
        """When the job it carries first arrived: what a wait is measured from."""
        return self.sent_at if self.first_seen is None else self.first_seen


class Queue(Protocol):
    """What the worker does with its queue."""

    @property
    def name(self) -> str:
        """The queue's name, for logs."""
        ...

    def receive(self, *, most: int, wait_s: int, visibility_s: int) -> list[Message]:
        """Up to ``most`` messages, waiting up to ``wait_s`` for the first, each hidden ``visibility_s``."""
        ...

    def delete(self, message: Message) -> None:
        """Done with it: it will not come back."""
        ...

    def hide(self, message: Message, seconds: float) -> None:
        """Keep it from other consumers for ``seconds`` from now (0 releases it at once)."""
        ...

    def send_later(self, message: Message, *, seconds: float) -> None:
        """Send its body again, to arrive after ``seconds``, with when its job first arrived."""
        ...

    def send(self, bodies: Sequence[str]) -> int:
        """Send ``bodies``; how many were sent."""
        ...

    def dead_letter_queue(self) -> Queue | None:
        """Where messages go that cannot be processed, if the queue has such a place."""
        ...

    def reachable(self) -> None:
        """Nothing when the queue answers; ``QueueError`` saying why when it does not."""
        ...


def open_queue(
    url: str, *, endpoint_url: str | None, environ: Mapping[str, str], max_receives: int = 5
) -> Queue:
    """The queue ``url`` names: ``azq://<account>/<queue>`` or ``https://<account>.queue.core.windows.net/
    <queue>`` is an Azure Storage Queue (a message received more than ``max_receives`` times goes to
    ``<queue>-poison``), any other URL an SQS queue (its redrive policy does that)."""
    from pipeline.fleet.azure_queue import is_azure_queue, open_azure_queue  # each SDK only when used

    if is_azure_queue(url):
        return open_azure_queue(url, environ=environ, max_receives=max_receives)
    from pipeline.fleet.sqs import open_sqs_queue

    return open_sqs_queue(url, endpoint_url=endpoint_url, environ=environ)
