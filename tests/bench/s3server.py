"""The benchmark's S3 server: moto's, on werkzeug's threaded server, with HTTP/1.1 keep-alive.

    python -m tests.bench.s3server [--host 127.0.0.1] --port PORT [--timeline PATH]

werkzeug's development server (which ``python -m moto.server`` runs) answers every request with
``Connection: close``, because http.server cannot drain an unread request body before the next
request line. Real S3 keeps connections open, and over a modelled link (``tests.bench.link``) every
new connection costs a round trip for its handshake, so closing them would charge each request an
extra RTT. Here a request's body is read in full before moto sees it, so the connection can stay
open (werkzeug's drain of unread bytes after each response, which would eat the next request, finds
nothing); a chunked request body keeps werkzeug's ``Connection: close``. Responses are sent with
``TCP_NODELAY`` (werkzeug's small ones otherwise waited up to 40 ms on each kept connection). The
per-request access log is off (it costs the server CPU on the benchmark's two cores); ``--timeline``
logs only the slice GETs and CompleteMultipartUploads (``tests.bench.serial``).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import io
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from moto.core.compat import HAS_CRT
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.s3.models import MultipartChecksumBuilder
from werkzeug.serving import run_simple

from tests.bench.serial import request_kind

log = logging.getLogger(__name__)

KEY_BUFFER_BYTES = 4 << 30
"""Objects up to this size stay in memory (moto's default spools anything over 5 MB to disk)."""


class KeepAliveHandler(MotoRequestHandler):
    """moto's request handler, keeping the connection open after each request it has read in full."""

    keep_alive = False

    def setup(self) -> None:
        """Responses leave at once (``TCP_NODELAY``), as S3's do. werkzeug writes a response's status and
        headers, then its body: without it, a small body waits for the client to acknowledge the headers,
        which the client delays by up to 40 ms on a connection in use (delayed ACK), so every small
        request but a connection's first took 43 ms instead of 4 on loopback."""
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle_one_request(self) -> None:
        self.keep_alive = False
        super().handle_one_request()

    def run_wsgi(self) -> None:
        stream = self.rfile
        try:
            super().run_wsgi()
        finally:
            self.rfile = stream

    def make_environ(self) -> dict[str, Any]:
        """The request's environ, its body read in full (unless chunked); until the response is sent the
        handler's stream is an empty one, so werkzeug's drain after it cannot eat the next request."""
        environ = super().make_environ()
        self.keep_alive = not environ.get("wsgi.input_terminated")  # a chunked body: close, as werkzeug does
        if self.keep_alive:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            environ["wsgi.input"] = io.BytesIO(self.rfile.read(length) if length > 0 else b"")
            self.rfile = io.BytesIO()
        return environ

    def send_header(self, keyword: str, value: str) -> None:
        if self.keep_alive and keyword.lower() == "connection" and value.lower() == "close":
            return  # HTTP/1.1's default: the connection stays open
        super().send_header(keyword, value)


def incremental_full_object_crc32() -> None:
    """S3 gives an upload that named no checksum a full-object one. moto computes it at
    CompleteMultipartUpload from a copy of the whole object (without awscrt: a CRC32), which costs it
    two more copies of every byte, seconds of CPU for a 250 MB MP4 on the cores the measured client
    uses, and only for clients that send no checksums of their own (recpipe, towards a store other
    than AWS; aws-cli sends CRC32s, which moto combines from the parts). Here the same CRC32 is
    computed part by part as the parts are added: the same checksum, without the copies."""
    original_add, original_build = MultipartChecksumBuilder.addPart, MultipartChecksumBuilder.build

    def crc32_of_the_whole(builder: MultipartChecksumBuilder) -> bool:
        algorithm = builder.checksum_algorithm
        crc32 = algorithm == "CRC32" or (algorithm == "CRC64NVME" and not HAS_CRT)
        return builder.checksum_type == "FULL_OBJECT" and crc32

    def add_part(builder: MultipartChecksumBuilder, part: bytes) -> None:
        if not crc32_of_the_whole(builder):
            original_add(builder, part)
            return
        builder.running_crc32 = binascii.crc32(part, getattr(builder, "running_crc32", 0))  # type: ignore[attr-defined]
        builder.part_count += 1

    def build(builder: MultipartChecksumBuilder) -> tuple[str, str, int] | None:
        if not crc32_of_the_whole(builder):
            return original_build(builder)
        crc = getattr(builder, "running_crc32", 0).to_bytes(4, "big")
        return builder.checksum_type, base64.b64encode(crc).decode(), 1

    MultipartChecksumBuilder.addPart = add_part  # type: ignore[method-assign,assignment]
    MultipartChecksumBuilder.build = build  # type: ignore[method-assign,assignment]


class Timeline:
    """WSGI middleware appending ``get <start>`` for each slice GET and ``complete <start> <end>`` for each
    CompleteMultipartUpload to a file (epoch seconds; ``tests.bench.serial`` reads it)."""

    def __init__(self, app: Callable[..., Iterable[bytes]], path: Path) -> None:
        self.app = app
        self.file = path.open("a", buffering=1)
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        query = environ.get("QUERY_STRING", "")
        kind = request_kind(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), query)
        started = time.time()
        if kind == "get":
            self.write(f"get {started:.6f}")
        if kind != "complete":
            return self.app(environ, start_response)
        answer = self.app(environ, start_response)
        try:
            body = list(answer)  # moto joins the parts here
        finally:
            close = getattr(answer, "close", None)
            if close is not None:  # WSGI: a consumed iterable is closed (here, not by the server)
                close()
        self.write(f"complete {started:.6f} {time.time():.6f}")
        return body

    def write(self, line: str) -> None:
        with self.lock:
            self.file.write(line + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeline", type=Path, help="log slice GETs and CompleteMultipartUploads here")
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))
    # moto spools every object over 5 MB (each uploaded part) to a temporary file and reads it back
    # to complete the upload: seconds of this server's CPU and disk on the benchmark's two cores,
    # work S3 does elsewhere. Objects stay in memory instead (a few GB at most here).
    os.environ.setdefault("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", str(KEY_BUFFER_BYTES))
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    incremental_full_object_crc32()
    app: Callable[..., Iterable[bytes]] = DomainDispatcherApplication(create_backend_app)
    if args.timeline is not None:
        app = Timeline(app, args.timeline)
    run_simple(args.host, args.port, app, threaded=True, request_handler=KeepAliveHandler)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
