"""Keep-alive HTTP/1.1 connections to one origin, lent to one thread at a time (``http.client``).

``s3_direct`` sends a fetch's hundreds of presigned GETs here when nothing stands between recpipe and the
store (no proxy, no client certificate): ``http.client`` alone costs about half the CPU per request of
urllib3's and botocore's layers above it. TLS, timeouts and socket options are the ones the S3 client
would use; the caller works them out (``s3_direct.bare_origin``).

A connection that sat idle may have been closed by the server in the meantime (S3 closes idle ones after
a few seconds): one that has something to read before a request is sent (the server's end) is not used,
and a request that cannot be sent on one, or gets no answer at all, is sent once more on a new
connection, which is safe for the only requests made here (GETs), and is not a failure.
"""

from __future__ import annotations

import http.client
import logging
import select
import ssl
import threading
from collections.abc import Mapping, Sequence
from typing import NamedTuple

log = logging.getLogger(__name__)

_STALE = (
    BrokenPipeError,
    ConnectionResetError,
    ConnectionAbortedError,
    http.client.BadStatusLine,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)
"""What a request on a connection the server has already closed fails with (``RemoteDisconnected`` is
both a reset and a bad status line; over TLS the end may come as a TLS error)."""


class Origin(NamedTuple):
    """Where requests go, and how connections to it are made."""

    scheme: str
    """``http`` or ``https``."""
    host: str
    port: int
    ssl_context: ssl.SSLContext | None = None
    """For https: the certificates and checks the S3 client would use."""
    connect_timeout: float | None = 60.0
    read_timeout: float | None = 60.0
    """Seconds a read may wait for the next bytes (None: forever)."""
    socket_options: Sequence[tuple[int, int, int]] = ()
    """``setsockopt`` arguments for every new connection (the S3 client's TCP keep-alive)."""


class Exchange:
    """One request's answer on a borrowed connection; ``finish`` gives the connection back."""

    def __init__(
        self, pool: ConnectionPool, conn: http.client.HTTPConnection, response: http.client.HTTPResponse
    ) -> None:
        self._pool = pool
        self._conn = conn
        self.response = response
        """Status and headers read; the body is the caller's to read."""

    def finish(self) -> None:
        """Give the connection back if the body was read to its announced length and the server keeps the
        connection open; close it otherwise (a body read in part, cut short, chunked or without a length)."""
        response = self.response
        if response.isclosed() and not response.will_close and not response.chunked and response.length == 0:
            self._pool.give_back(self._conn)
        else:
            self._conn.close()


class ConnectionPool:
    """Idle connections to one ``Origin``, at most ``max_idle`` kept; thread-safe."""

    def __init__(self, origin: Origin, *, max_idle: int = 32) -> None:
        if origin.scheme not in ("http", "https"):
            raise ValueError(f"not an HTTP origin: {origin.scheme!r}")
        self._origin = origin
        self._max_idle = max_idle
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self.opened = 0
        """Connections made so far (for tests and logs)."""

    @property
    def origin(self) -> Origin:
        """Where the connections go."""
        return self._origin

    @property
    def idle(self) -> int:
        """Connections kept for the next requests."""
        return len(self._idle)

    def request(self, method: str, target: str, headers: Mapping[str, str]) -> Exchange:
        """Send a request and read the answer's status and headers; the body is the caller's to read.

        :param target: the path and query, already percent-encoded.
        :raises OSError, http.client.HTTPException: no answer (the connection is closed).
        """
        conn, reused = self._take()
        try:
            return self._exchange(conn, method, target, headers)
        except _STALE:
            if not reused:
                raise
        # closed by the server while it was idle: once more, on a new connection
        return self._exchange(self._new(), method, target, headers)

    def _exchange(
        self, conn: http.client.HTTPConnection, method: str, target: str, headers: Mapping[str, str]
    ) -> Exchange:
        try:
            conn.request(method, target, headers=dict(headers))
            return Exchange(self, conn, conn.getresponse())
        except BaseException:
            conn.close()
            raise

    def give_back(self, conn: http.client.HTTPConnection) -> None:
        """Keep an idle connection for the next request (closed if enough are kept)."""
        with self._lock:
            if len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def warm(self, count: int) -> None:
        """Open connections in the background until about ``count`` (at most ``max_idle``) are idle,
        each on a thread of its own, so that the next requests need not wait for their handshakes (one
        round trip for TCP, one or two more for TLS). Nothing waits for them: a request that comes first
        opens its own, and one that cannot be opened is left for a request to find (and report)."""
        with self._lock:
            missing = min(count, self._max_idle) - len(self._idle)
        for n in range(missing):
            threading.Thread(target=self._open_idle, name=f"recpipe-connect-{n}", daemon=True).start()

    def _open_idle(self) -> None:
        try:
            conn = self._new()
        except (OSError, http.client.HTTPException) as err:
            log.debug("could not open a connection ahead to %s: %s", self._origin.host, err)
            return
        self.give_back(conn)

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        """The most recently used idle connection that still looks open, else a new one."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._new(), False
            if not _dropped(conn):
                return conn, True
            conn.close()

    def _new(self) -> http.client.HTTPConnection:
        origin = self._origin
        conn: http.client.HTTPConnection
        if origin.scheme == "https":
            conn = http.client.HTTPSConnection(
                origin.host, origin.port, timeout=origin.connect_timeout, context=origin.ssl_context
            )
        else:
            conn = http.client.HTTPConnection(origin.host, origin.port, timeout=origin.connect_timeout)
        try:
            conn.connect()
            assert conn.sock is not None
            for option in origin.socket_options:
                conn.sock.setsockopt(*option)
            conn.sock.settimeout(origin.read_timeout)
        except BaseException:
            conn.close()
            raise
        with self._lock:
            self.opened += 1
        return conn


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle connection has something to read: the server closed it (or sent what no request
    asked for); either way it cannot carry a request. Over TLS, what is there may be only the session
    tickets a TLS 1.3 server sends after its handshake, which a connection opened ahead and not used yet
    has not read: those are read here, and the connection is kept."""
    sock = conn.sock
    if sock is None:
        return True
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    if not poller.poll(0):
        return False
    return not isinstance(sock, ssl.SSLSocket) or not _only_tls_records(sock)


def _only_tls_records(sock: ssl.SSLSocket) -> bool:
    """Whether what a TLS connection has to read is TLS's own records, no data and no end (read here)."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        sock.recv(1)  # data, or b"" at the end: either way the connection cannot carry a request
    except ssl.SSLWantReadError:
        return True  # records read, and nothing for the application
    except OSError:  # ssl.SSLError included
        return False
    finally:
        sock.settimeout(timeout)
    return False
