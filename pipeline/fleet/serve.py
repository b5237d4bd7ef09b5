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
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pipeline.fleet.jobs import run_subprocess
from pipeline.fleet.sqs import open_queue
from pipeline.fleet.triggers import Trigger, job_message, parse_document
from pipeline.fleet.worker import WorkerSettings, spec_for
from pipeline.model.exceptions import ConfigError, MessageError, PipelineError

log = logging.getLogger(__name__)

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


def make_server(notifications: Notifications, *, host: str, port: int) -> ThreadingHTTPServer:
    """The HTTP server (``serve_forever`` runs it): POST any path with a notification; GET
    ``/healthz`` for a liveness probe."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "recpipe"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/healthz":
                self._reply(Reply(200, {"status": "ok"}))
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
            self._reply(notifications.handle(body, {k.lower(): v for k, v in self.headers.items()}))

        def _reply(self, reply: Reply) -> None:
            data = json.dumps(reply.body).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
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


def submitter(
    settings: WorkerSettings, *, queue_url: str | None, environ: Mapping[str, str]
) -> tuple[Submit, Callable[[], None]]:
    """How a notification's recording is handed on — a job message to ``queue_url`` for the workers,
    else a ``recpipe process`` here, one at a time in the background — and what to call at the end.
    The job is the one a worker would make of the same trigger (``pipeline.fleet.worker.spec_for``)."""
    if queue_url is not None:
        queue = open_queue(queue_url, endpoint_url=settings.endpoint_url, environ=environ)

        def send(trigger: Trigger) -> None:
            spec = spec_for(trigger, settings=settings)
            if spec is not None:
                queue.send([job_message(spec.location, sid=spec.sid, options=spec.options)])
                log.info("queued the recording %s to %s", trigger.sid, queue.name)

        return send, lambda: None

    pool = ThreadPoolExecutor(1, thread_name_prefix="recpipe-serve-job")

    def run_here(trigger: Trigger) -> None:
        spec = spec_for(trigger, settings=settings)
        if spec is not None:
            future = pool.submit(run_subprocess, spec)
            future.add_done_callback(
                lambda f: log.info("recording %s: %s", trigger.sid, f.result().describe())
            )

    return run_here, lambda: pool.shutdown(wait=False, cancel_futures=True)


def serve_notifications(
    *,
    secret: bytes,
    host: str,
    port: int,
    settings: WorkerSettings,
    queue_url: str | None,
    environ: Mapping[str, str],
) -> None:
    """Answer the recorder's notifications on ``host:port`` until Ctrl-C or SIGTERM; the recordings
    they announce (under ``settings.recordings``) are sent to ``queue_url`` or processed here."""
    submit, finish = submitter(settings, queue_url=queue_url, environ=environ)
    server = make_server(Notifications(secret=secret, submit=submit), host=host, port=port)
    log.warning("listening on http://%s:%d/ for the recorder's notifications", host, server.server_address[1])
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.warning("stopping")
    finally:
        server.server_close()
        finish()
