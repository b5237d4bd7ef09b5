"""Keep-alive connections against a real HTTP/1.1 server on 127.0.0.1 that misbehaves on request:
connections reused, closed ones replaced, half-read answers never reused, timeouts kept."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.storage.keepalive import ConnectionPool, Origin

BODY = b"0123456789" * 1000


class Handler(BaseHTTPRequestHandler):
    """One instance per connection; ``self.server.log`` gets (connection number, path) per request."""

    protocol_version = "HTTP/1.1"
    connections = 0

    def log_message(self, format: str, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.lock:  # type: ignore[attr-defined]
            Handler.connections += 1
            self.number = Handler.connections
        self.answered = 0

    def do_GET(self) -> None:
        self.server.log.append((self.number, self.path))  # type: ignore[attr-defined]
        if self.path == "/unanswered" or (self.path == "/second-unanswered" and self.answered):
            self.close_connection = True  # gone without a word, as a server closing an idle connection
            return
        if self.path == "/stall":
            time.sleep(1.0)
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY) + (10 if self.path == "/short" else 0)))
        if self.path == "/close":
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(BODY)
        self.answered += 1
        if self.path in ("/close", "/then-hang-up", "/short"):
            self.close_connection = True


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.log = []  # type: ignore[attr-defined]
    httpd.lock = threading.Lock()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def pool_for(server: ThreadingHTTPServer, **settings: object) -> ConnectionPool:
    origin = Origin("http", "127.0.0.1", server.server_address[1], **settings)  # type: ignore[arg-type]
    return ConnectionPool(origin)


def get(pool: ConnectionPool, path: str) -> bytes:
    exchange = pool.request("GET", path, {})
    try:
        assert exchange.response.status == 200
        return exchange.response.read()
    finally:
        exchange.finish()


def connections(server: ThreadingHTTPServer) -> list[int]:
    return [number for number, _ in server.log]  # type: ignore[attr-defined]


def test_one_connection_carries_every_request(server: ThreadingHTTPServer) -> None:
    pool = pool_for(server)
    for _ in range(5):
        assert get(pool, "/ok") == BODY
    assert pool.opened == 1
    assert len(set(connections(server))) == 1
    pool.close()


def test_threads_get_a_connection_each_and_give_it_back(server: ThreadingHTTPServer) -> None:
    pool = pool_for(server)
    barrier = threading.Barrier(4)
    results: list[bytes] = []

    def work() -> None:
        barrier.wait()
        results.extend(get(pool, "/ok") for _ in range(10))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [BODY] * 40
    assert pool.opened <= 4
    pool.close()


@pytest.mark.parametrize("path", ["/close", "/then-hang-up"])
def test_a_connection_the_server_closed_is_not_used_again(server: ThreadingHTTPServer, path: str) -> None:
    """``Connection: close`` is obeyed; a connection closed without a word while idle is noticed."""
    pool = pool_for(server)
    assert get(pool, path) == BODY
    time.sleep(0.1)  # the server's FIN arrives
    assert get(pool, "/ok") == BODY
    assert pool.opened == 2
    assert connections(server) == [connections(server)[0], connections(server)[0] + 1]


def test_a_request_the_idle_connection_cannot_answer_is_sent_again(server: ThreadingHTTPServer) -> None:
    """The server takes the request, then closes the connection it had kept idle (the race no check
    before sending can win): the GET goes again on a new connection, and is not an error."""
    pool = pool_for(server)
    assert get(pool, "/second-unanswered") == BODY
    assert get(pool, "/second-unanswered") == BODY
    first = connections(server)[0]
    assert connections(server) == [first, first, first + 1]
    assert pool.opened == 2


def test_no_answer_on_a_new_connection_is_an_error(server: ThreadingHTTPServer) -> None:
    """Sent once more at most: on the connection that was idle, then on a new one, which fails."""
    pool = pool_for(server)
    assert get(pool, "/ok") == BODY
    with pytest.raises(http.client.RemoteDisconnected):
        get(pool, "/unanswered")
    assert pool.opened == 2
    with pytest.raises(http.client.RemoteDisconnected):
        get(pool, "/unanswered")  # nothing idle: a new connection, no second try
    assert pool.opened == 3


def test_a_request_is_sent_again_once_at_most(server: ThreadingHTTPServer) -> None:
    """With idle connections to spare, a request no connection answers is still sent twice only."""
    pool = pool_for(server)
    held = [pool.request("GET", "/ok", {}) for _ in range(3)]
    for exchange in held:
        exchange.response.read()
        exchange.finish()
    assert pool.idle == 3
    with pytest.raises(http.client.RemoteDisconnected):
        get(pool, "/unanswered")
    assert [path for _, path in server.log].count("/unanswered") == 2  # type: ignore[attr-defined]
    assert pool.opened == 4


def test_a_body_cut_short_closes_its_connection(server: ThreadingHTTPServer) -> None:
    pool = pool_for(server)
    exchange = pool.request("GET", "/short", {})
    with pytest.raises(http.client.IncompleteRead):
        exchange.response.read()
    exchange.finish()
    assert pool.idle == 0
    assert get(pool, "/ok") == BODY
    assert pool.idle == 1


def test_an_answer_read_in_part_closes_its_connection(server: ThreadingHTTPServer) -> None:
    pool = pool_for(server)
    exchange = pool.request("GET", "/ok", {})
    assert exchange.response.read(10) == BODY[:10]
    exchange.finish()
    assert get(pool, "/ok") == BODY
    assert pool.opened == 2


def test_idle_connections_are_capped(server: ThreadingHTTPServer) -> None:
    pool = ConnectionPool(Origin("http", "127.0.0.1", server.server_address[1]), max_idle=1)
    first, second = pool.request("GET", "/ok", {}), pool.request("GET", "/ok", {})
    for exchange in (first, second):
        exchange.response.read()
        exchange.finish()
    assert get(pool, "/ok") == BODY
    assert get(pool, "/ok") == BODY
    assert pool.opened == 2  # the second given back was closed; the first carried the rest


def test_reads_time_out_and_socket_options_are_set(server: ThreadingHTTPServer) -> None:
    pool = pool_for(server, read_timeout=0.2, socket_options=((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),))
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        pool.request("GET", "/stall", {})
    assert time.monotonic() - started < 0.9
    exchange = pool.request("GET", "/ok", {})
    sock = exchange._conn.sock
    assert sock is not None
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert sock.gettimeout() == 0.2
    exchange.response.read()
    exchange.finish()


def unused_port() -> int:
    """A port on 127.0.0.1 nothing listens on (a connection to it is refused)."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        return int(unused.getsockname()[1])


def test_a_refused_connection_is_an_error() -> None:
    pool = ConnectionPool(Origin("http", "127.0.0.1", unused_port(), connect_timeout=2))
    with pytest.raises(ConnectionRefusedError):
        pool.request("GET", "/", {})
    assert pool.opened == 0


def test_only_http_origins() -> None:
    with pytest.raises(ValueError, match="ftp"):
        ConnectionPool(Origin("ftp", "127.0.0.1", 21))


def wait_for(condition: Callable[[], bool], *, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def openers_done() -> bool:
    return not any(t.name.startswith("recpipe-connect-") for t in threading.enumerate())


def test_connections_opened_ahead_carry_the_next_requests(server: ThreadingHTTPServer) -> None:
    pool = pool_for(server, read_timeout=5.0, socket_options=((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),))
    pool.warm(4)
    wait_for(lambda: pool.idle == 4)
    assert pool.opened == 4
    assert server.log == []  # type: ignore[attr-defined]  # opened, nothing sent on them yet
    barrier = threading.Barrier(4)
    socks: list[socket.socket] = []

    def work() -> None:
        barrier.wait()
        exchange = pool.request("GET", "/ok", {})
        assert exchange._conn.sock is not None
        socks.append(exchange._conn.sock)
        assert exchange.response.read() == BODY
        barrier.wait()  # all four busy at once
        exchange.finish()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert pool.opened == 4  # none opened on the way
    assert len(set(connections(server))) == 4
    assert {s.gettimeout() for s in socks} == {5.0}  # made as every connection is
    assert {s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) for s in socks} == {1}
    pool.close()


def test_opening_ahead_counts_the_idle_ones_and_stops_at_the_cap(server: ThreadingHTTPServer) -> None:
    pool = ConnectionPool(Origin("http", "127.0.0.1", server.server_address[1]), max_idle=2)
    pool.warm(8)
    wait_for(openers_done)
    assert (pool.opened, pool.idle) == (2, 2)
    pool.warm(2)  # enough are idle already
    wait_for(openers_done)
    assert pool.opened == 2
    assert get(pool, "/ok") == BODY
    assert pool.opened == 2
    pool.close()


def test_a_connection_that_cannot_be_opened_ahead_is_left_for_a_request_to_report() -> None:
    pool = ConnectionPool(Origin("http", "127.0.0.1", unused_port(), connect_timeout=2))
    pool.warm(3)  # does not raise, nor wait
    wait_for(openers_done)
    assert (pool.opened, pool.idle) == (0, 0)
    with pytest.raises(ConnectionRefusedError):
        pool.request("GET", "/", {})
