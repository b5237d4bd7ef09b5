"""A fault-injecting HTTP proxy for tests: it sits on 127.0.0.1 in front of the moto server and, for a
chosen share of requests, answers 500 InternalError or 503 SlowDown, drops the connection in the
middle of a response body, or stalls before answering (or, when asked, flips a byte of a body). It
also records every request it sees.

Which requests fail is decided from (seed, method, path without a presigned URL's signature, how often
that request was seen), not from
arrival order, so a run with eight concurrent downloads faults the same requests every time; and a
request is never faulted more than ``max_in_a_row`` times in a row, so a client that retries enough
always gets through (``permanent=True`` fails everything, for the other case).
"""

from __future__ import annotations

import hashlib
import http.client
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

FAULTS = ("500", "503", "reset", "stall")
SIGNED = frozenset(
    {"x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-expires", "x-amz-signedheaders",
     "x-amz-signature", "x-amz-security-token", "awsaccesskeyid", "signature", "expires"}
)  # fmt: skip
BUCKET_NAME = re.compile(r"recpipe-test-[0-9a-f]+")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "expect",
}


def unsigned(path: str) -> str:
    """The request's path and query without a presigned URL's authentication parameters."""
    parts = urlsplit(path)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() not in SIGNED]
    return parts.path + (f"?{urlencode(kept)}" if kept else "")


@dataclass
class FaultPlan:
    """What the proxy does."""

    rate: float = 0.2
    """Share of requests that get a fault."""
    seed: int = 1
    max_in_a_row: int = 2
    stall_s: float = 0.4
    permanent: bool = False
    """Every request gets 503 SlowDown."""
    kinds: tuple[str, ...] = FAULTS
    """The faults drawn from; ``corrupt`` (one byte of a body flipped, as a bad network path or disk
    would) only when asked for."""
    seen: Counter[tuple[str, str]] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    requests: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def decide(self, method: str, path: str) -> str | None:
        """The fault for this request (None: pass it through)."""
        with self.lock:
            self.requests.append((method, path))
            path = unsigned(path)
            n = self.seen[(method, path)]
            self.seen[(method, path)] += 1
            if self.permanent:
                self.faults["503"] += 1
                return "503"
            if n >= self.max_in_a_row:
                return None
            # The test bucket's name is random and a presigned URL's signature and date change with every
            # request: leave them out, so a seed faults the same requests every run.
            stable = BUCKET_NAME.sub("bucket", path)
            digest = hashlib.sha256(f"{self.seed}|{method}|{stable}|{n}".encode()).digest()
            draw = struct.unpack(">Q", digest[:8])[0] / 2**64
            if draw >= self.rate:
                return None
            fault = self.kinds[digest[8] % len(self.kinds)]
            self.faults[fault] += 1
            return fault


class FaultProxy:
    """The proxy server; ``url`` is what clients use as their endpoint."""

    def __init__(self, upstream: str, plan: FaultPlan) -> None:
        self.plan = plan
        target = urlsplit(upstream)
        host, port = target.hostname or "127.0.0.1", target.port or 80
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy.plan.decide(self.command, self.path)
                if fault in ("500", "503"):
                    self._error(int(fault))
                    return
                if fault == "reset" and self.command != "GET":
                    self._reset()  # dropped on the way: the server never saw it
                    return
                if fault == "stall":
                    time.sleep(proxy.plan.stall_s)
                upstream = http.client.HTTPConnection(host, port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                finally:
                    upstream.close()
                self.send_response(response.status, response.reason)
                for k, v in response.getheaders():
                    if k.lower() not in HOP_BY_HOP and (
                        k.lower() != "content-length" or self.command == "HEAD"
                    ):
                        self.send_header(k, v)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if fault == "corrupt" and self.command == "GET" and data:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                if fault == "reset" and len(data) > 1:  # half the body, then the connection drops
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self._reset()
                    return
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _error(self, status: int) -> None:
                code = "SlowDown" if status == 503 else "InternalError"
                data = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _reset(self) -> None:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
