"""``recpipe serve``: an HTTP endpoint for the recorder's webhook notifications (Agora's NCS).

Agora signs every notification's raw body with the secret it issued: HMAC-SHA1 in ``Agora-Signature``
and HMAC-SHA256 in ``Agora-Signature-V2`` (hex). A request whose signature does not match is
answered 401 and does nothing. A good one is answered at once (Agora wants a reply within seconds
and retries otherwise): duplicates — the same ``noticeId``, or the same event for the same sid
shortly after — are acknowledged and dropped, ``uploaded``/``backuped`` notifications become jobs
(``pipeline.fleet.triggers``), sent to an SQS queue for the workers, or run here one after another in the
background when no queue is given; every other event is acknowledged and ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from pipeline.fleet.jobs import run_subprocess
from pipeline.fleet.metrics import Metrics
from pipeline.fleet.queues import open_queue
from pipeline.fleet.triggers import VALIDATION, Trigger, event_type, job_message, parse_document, parse_events
from pipeline.fleet.worker import WorkerSettings, spec_for
from pipeline.model.exceptions import ConfigError, MessageError, PipelineError
from pipeline.storage.locations import open_location

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 30.0
"""A request (headers and body) must arrive within this long."""
MAX_BODY_BYTES = 1024 * 1024
"""Agora's notifications are a few KB."""
REMEMBERED = 10_000
"""Notification ids (and sid/event pairs) remembered to drop duplicates."""
SAME_EVENT_S = 600.0
"""The same event for the same sid again within this long is a duplicate (Agora's redundant
notifications carry their own ids)."""

Submit = Callable[[Trigger], None]
"""Hands a recording's job on (to the queue, or to the local runner)."""


def signature_ok(body: bytes, headers: Mapping[str, str], *, secret: bytes) -> bool:
    """Whether ``Agora-Signature-V2`` (HMAC-SHA256) — or, without it, ``Agora-Signature`` (HMAC-SHA1) —
    matches the raw body. ``headers`` has lower-case names."""
    v2 = headers.get("agora-signature-v2")
    if v2:
        return hmac.compare_digest(hmac.new(secret, body, hashlib.sha256).hexdigest(), v2.strip().lower())
    v1 = headers.get("agora-signature")
    if v1:
        return hmac.compare_digest(hmac.new(secret, body, hashlib.sha1).hexdigest(), v1.strip().lower())
    return False


class Seen:
    """A bounded memory of what was handled (oldest forgotten first)."""

    def __init__(self, size: int = REMEMBERED) -> None:
        self._items: OrderedDict[str, float] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def first_time(self, key: str, *, now: float, within: float | None = None) -> bool:
        """Remember ``key``; False if it was seen before (within ``within`` seconds, when given)."""
        with self._lock:
            when = self._items.get(key)
            if when is not None and (within is None or now - when < within):
                return False
            self._items[key] = now
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
            return True


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer."""

    status: int
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


class Notifications:
    """What the endpoint does with one request (no HTTP here, so it is tested directly too)."""

    def __init__(self, *, secret: bytes, submit: Submit, clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ValueError("a notification secret is required")
        self._secret = secret
        self._submit = submit
        self._clock = clock
        self._ids = Seen()
        self._events = Seen()

    def handle(self, body: bytes, headers: Mapping[str, str]) -> Reply:
        """Verify, de-duplicate, and hand on the recordings a notification names."""
        if not signature_ok(body, headers, secret=self._secret):
            log.warning("notification refused: bad or missing signature (%d bytes)", len(body))
            return Reply(401, {"error": "bad signature"})
        try:
            doc = json.loads(body)
        except ValueError:
            return Reply(400, {"error": "the body is not JSON"})
        if not isinstance(doc, dict):
            return Reply(400, {"error": "the body is not a JSON object"})
        now = self._clock()
        notice = str(doc.get("noticeId", ""))
        if notice and not self._ids.first_time(notice, now=now):
            return Reply(200, {"status": "duplicate", "noticeId": notice})
        try:
            parsed = parse_document(doc)
        except MessageError as err:
            log.warning("notification %s not understood: %s", notice or "?", err)
            return Reply(200, {"status": "ignored", "reason": str(err)})
        accepted = 0
        for trigger in parsed.triggers:
            event = f"{trigger.sid}|{doc.get('eventType')}"
            if not self._events.first_time(event, now=now, within=SAME_EVENT_S):
                log.info("notification %s: %s already handled", notice or "?", event)
                continue
            try:
                self._submit(trigger)
            except PipelineError as err:  # Agora retries on a non-200 answer
                log.error("notification %s: cannot hand on the job: %s", notice or "?", err)
                return Reply(503, {"error": "cannot queue the job, try again"})
            accepted += 1
        if not accepted:
            return Reply(200, {"status": "ignored", "reasons": list(parsed.ignored)})
        return Reply(200, {"status": "accepted", "jobs": accepted})


EVENT_GRID_PATH = "/eventgrid"
"""Where Event Grid delivers to ``serve`` (its webhook URL ends ``/eventgrid?key=<the key>``)."""


class EventGridEndpoint:
    """Event Grid webhook deliveries, in its own schema or as CloudEvents: the subscription's validation
    answered, ``BlobCreated`` events of recordings handed on like a queue's. Event Grid cannot sign
    what it sends, so the webhook URL carries a key (``?key=…``) that every request must repeat."""

    def __init__(self, *, key: bytes, submit: Submit) -> None:
        if not key:
            raise ValueError("an Event Grid key is required")
        self._key = key
        self._submit = submit

    def allowed(self, query: str) -> bool:
        """Whether the request's URL carries the key (compared in constant time)."""
        given = parse_qs(query).get("key", [""])[0].encode()
        return hmac.compare_digest(given, self._key)

    def handshake(self, query: str, headers: Mapping[str, str]) -> Reply:
        """CloudEvents' abuse protection (an ``OPTIONS`` request): allow the origin that asks."""
        origin = headers.get("webhook-request-origin", "")
        if not self.allowed(query) or not origin:
            return Reply(401, {"error": "bad key"})
        return Reply(200, {}, headers={"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*"})

    def handle(self, body: bytes, query: str) -> Reply:
        """One delivery: a validation event is answered with its code; BlobCreated events are handed on."""
        if not self.allowed(query):
            log.warning("Event Grid delivery refused: bad or missing key (%d bytes)", len(body))
            return Reply(401, {"error": "bad key"})
        try:
            doc = json.loads(body)
        except ValueError:
            return Reply(400, {"error": "the body is not JSON"})
        events = doc if isinstance(doc, list) else [doc]
        for event in events:
            if isinstance(event, dict) and event_type(event) == VALIDATION:
                data = event.get("data")
                code = data.get("validationCode") if isinstance(data, dict) else None
                if not isinstance(code, str) or not code:
                    return Reply(400, {"error": "a validation event without its code"})
                log.info("answered Event Grid's subscription validation")
                return Reply(200, {"validationResponse": code})
        try:
            parsed = parse_events(events)
        except MessageError as err:
            return Reply(400, {"error": str(err)})
        for trigger in parsed.triggers:
            try:
                self._submit(trigger)
            except PipelineError as err:  # Event Grid retries on a non-2xx answer
                log.error("Event Grid delivery: cannot hand on the job: %s", err)
                return Reply(503, {"error": "cannot queue the job, try again"})
        return Reply(
            200, {"status": "accepted", "jobs": len(parsed.triggers), "ignored": list(parsed.ignored)}
        )


def make_server(
    notifications: Notifications | None,
    *,
    host: str,
    port: int,
    event_grid: EventGridEndpoint | None = None,
    ready: Ready | None = None,
    metrics: Metrics | None = None,
) -> ThreadingHTTPServer:
    """The HTTP server (``serve_forever`` runs it): POST any path with a recorder notification, or
    ``/eventgrid`` with Event Grid deliveries; GET ``/livez`` for liveness (200 while it runs) and
    ``/healthz`` for readiness (200 when jobs can be handed on — the queue, or the recordings' storage,
    answers — else 503 with the reason)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "recpipe"
        sys_version = ""

        timeout = REQUEST_TIMEOUT_S  # a client that stalls mid-request does not hold a thread forever

        def log_message(self, format: str, *args: Any) -> None:
            line = re.sub(r"\?\S*", "?…", format % args)  # never a query: Event Grid's key is there
            log.debug("%s %s", self.address_string(), line)

        def do_OPTIONS(self) -> None:
            path, _, query = self.path.partition("?")
            if event_grid is None or path.rstrip("/") != EVENT_GRID_PATH:
                self._reply(Reply(404, {"error": "not found"}))
                return
            self._reply(event_grid.handshake(query, {k.lower(): v for k, v in self.headers.items()}))

        def do_GET(self) -> None:
            path = self.path.rstrip("/")
            if path == "/livez":
                self._reply(Reply(200, {"status": "ok"}))
            elif path == "/healthz":
                problem = ready() if ready is not None else None
                if problem is None:
                    self._reply(Reply(200, {"status": "ok", "ready": True}))
                else:
                    self._reply(Reply(503, {"status": "not ready", "ready": False, "reason": problem}))
            else:
                self._reply(Reply(404, {"error": "not found"}))

        def do_POST(self) -> None:
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self._reply(Reply(411, {"error": "Content-Length required"}))
                return
            if not 0 <= length <= MAX_BODY_BYTES:
                self.close_connection = True
                self._reply(Reply(413, {"error": f"body over {MAX_BODY_BYTES} bytes"}))
                return
            body = self.rfile.read(length)
            path, _, query = self.path.partition("?")
            if path.rstrip("/") == EVENT_GRID_PATH and event_grid is not None:
                reply = event_grid.handle(body, query)
            elif notifications is not None:
                reply = notifications.handle(body, {k.lower(): v for k, v in self.headers.items()})
            else:
                reply = Reply(404, {"error": "not found"})
            self._count(reply)
            self._reply(reply)

        def _count(self, reply: Reply) -> None:
            if metrics is None:
                return
            result = str(reply.body.get("status", "")) if reply.status == 200 else f"http-{reply.status}"
            metrics.notifications.labels(result=result or "ok").inc()

        def _reply(self, reply: Reply) -> None:
            data = json.dumps(reply.body).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` → (host, port); ConfigError otherwise."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--listen {listen!r}: give HOST:PORT")
    return host, int(port)


Ready = Callable[[], str | None]
"""None when ``serve`` can hand jobs on; else why not."""


@dataclass(frozen=True, slots=True)
class Handoff:
    """How a notification's recording is handed on, whether that can be done now, what ends it."""

    submit: Submit
    ready: Ready
    finish: Callable[[], None]


def submitter(settings: WorkerSettings, *, queue_url: str | None, environ: Mapping[str, str]) -> Handoff:
    """A job message to ``queue_url`` for the workers (ready when the queue answers), else a ``recpipe
    process`` here, one at a time in the background (ready when the recordings' storage answers).
    The job is the one a worker would make of the same trigger (``pipeline.fleet.worker.spec_for``)."""
    if queue_url is not None:
        queue = open_queue(queue_url, endpoint_url=settings.endpoint_url, environ=environ)

        def send(trigger: Trigger) -> None:
            spec = spec_for(trigger, settings=settings)
            if spec is not None:
                queue.send([job_message(spec.location, sid=spec.sid, options=spec.options)])
                log.info("queued the recording %s to %s", trigger.sid, queue.name)

        def queue_ready() -> str | None:
            try:
                queue.reachable()
            except PipelineError as err:
                return f"the queue does not answer: {err}"
            return None

        return Handoff(submit=send, ready=queue_ready, finish=lambda: None)

    pool = ThreadPoolExecutor(1, thread_name_prefix="recpipe-serve-job")

    def run_here(trigger: Trigger) -> None:
        spec = spec_for(trigger, settings=settings)
        if spec is not None:
            future = pool.submit(run_subprocess, spec)
            future.add_done_callback(
                lambda f: log.info("recording %s: %s", trigger.sid, f.result().describe())
            )

    def storage_ready() -> str | None:
        if settings.recordings is None:
            return "no --recordings location"
        try:
            source = open_location(settings.recordings, endpoint_url=settings.endpoint_url, environ=environ)
            next(iter(source.storage.list(source.prefix)), None)
        except PipelineError as err:
            return f"the recordings' storage does not answer: {err}"
        return None

    return Handoff(
        submit=run_here, ready=storage_ready, finish=lambda: pool.shutdown(wait=False, cancel_futures=True)
    )


def serve_notifications(
    *,
    secret: bytes,
    host: str,
    port: int,
    settings: WorkerSettings,
    queue_url: str | None,
    environ: Mapping[str, str],
    event_grid_key: bytes = b"",
    metrics: Metrics | None = None,
) -> None:
    """Answer the recorder's notifications (with ``secret``) and Event Grid's deliveries (with
    ``event_grid_key``) on ``host:port`` until Ctrl-C or SIGTERM; the recordings they announce are sent
    to ``queue_url`` or processed here."""
    if not secret and not event_grid_key:
        raise ConfigError("give the recorder's notification secret, an Event Grid key, or both")
    handoff = submitter(settings, queue_url=queue_url, environ=environ)
    notifications = Notifications(secret=secret, submit=handoff.submit) if secret else None
    event_grid = EventGridEndpoint(key=event_grid_key, submit=handoff.submit) if event_grid_key else None
    server = make_server(
        notifications, host=host, port=port, event_grid=event_grid, ready=handoff.ready, metrics=metrics
    )
    log.info("listening on http://%s:%d/ for the recorder's notifications", host, server.server_address[1])
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        server.server_close()
        handoff.finish()
