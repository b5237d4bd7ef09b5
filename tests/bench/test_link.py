"""The benchmark's link proxy (``tests.bench.link``), run as ``make bench`` runs it (its own process), in
front of a small TCP server on 127.0.0.1: latency, handshake, bandwidth per connection and shared,
backpressure, half-close and close."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.bench.link import LINKS, Link, running

pytestmark = pytest.mark.integration

MB = 1_000_000
NARROW = Link(name="narrow", rtt_ms=40, conn_mbps=50, total_mbps=1000)
SHARED = Link(name="shared", rtt_ms=10, conn_mbps=50, total_mbps=50)


class Handler(socketserver.StreamRequestHandler):
    """First line ``echo``: echo until EOF, then ``bye`` and close. ``send N``: send N bytes and close.
    ``sink N``: read N bytes, answer ``ok``. ``hold``: read nothing until the test is over."""

    server: Server

    def handle(self) -> None:
        command, *arg = self.rfile.readline().split()
        if command == b"echo":
            while data := self.rfile.read1(65536):
                self.wfile.write(data)
            self.wfile.write(b"bye")
        elif command == b"send":
            block = b"x" * 65536
            for start in range(0, int(arg[0]), len(block)):
                self.wfile.write(block[: int(arg[0]) - start])
        elif command == b"sink":
            left = int(arg[0])
            while left > 0 and (data := self.rfile.read1(min(left, 1 << 20))):
                left -= len(data)
            self.wfile.write(b"ok")
        elif command == b"hold":
            self.server.release.wait(10)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.release = threading.Event()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with Server() as srv:
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        try:
            yield srv
        finally:
            srv.release.set()
            srv.shutdown()
            thread.join()


def address(server: Server) -> str:
    return f"127.0.0.1:{server.socket.getsockname()[1]}"


@pytest.fixture(scope="module")
def narrow(server: Server) -> Iterator[tuple[str, int]]:
    """The proxy for NARROW: 40 ms RTT, 50 MB/s per connection, a total cap far above it."""
    with running(NARROW, upstream=address(server)) as proxy:
        yield "127.0.0.1", int(proxy.url.rpartition(":")[2])


@pytest.fixture(scope="module")
def shared(server: Server) -> Iterator[tuple[str, int]]:
    """The proxy for SHARED: 10 ms RTT, 50 MB/s per connection and 50 MB/s for all of them."""
    with running(SHARED, upstream=address(server)) as proxy:
        yield "127.0.0.1", int(proxy.url.rpartition(":")[2])


def receive(sock: socket.socket, size: int) -> bytes:
    """Exactly ``size`` bytes (fewer only at EOF)."""
    chunks, left = [], size
    while left and (data := sock.recv(min(left, 1 << 20))):
        chunks.append(data)
        left -= len(data)
    return b"".join(chunks)


def download(proxy: tuple[str, int], size: int) -> float:
    """Seconds to receive ``size`` bytes through ``proxy`` up to the server's close (checked)."""
    started = time.perf_counter()
    with socket.create_connection(proxy) as sock:
        sock.sendall(b"send %d\n" % size)
        assert len(receive(sock, size)) == size
        assert sock.recv(1) == b""  # the server's close arrives after its data
    return time.perf_counter() - started


@pytest.mark.parametrize(
    ("link", "window"),
    [
        pytest.param(LINKS[0], 1 << 20, id="4ms-floor-1MiB"),
        pytest.param(LINKS[1], 2 * 25 * MB * 40 // 1000, id="40ms-2xBDP"),
    ],
)
def test_window_is_twice_the_bdp_at_least_1mib(link: Link, window: int) -> None:
    assert link.window == window


def test_a_round_trip_takes_the_rtt_and_a_new_connection_one_more(narrow: tuple[str, int]) -> None:
    rtt = NARROW.rtt_ms / 1000
    started = time.perf_counter()
    with socket.create_connection(narrow) as sock:
        sock.sendall(b"echo\nping")
        assert receive(sock, 4) == b"ping"
        first = time.perf_counter() - started
        started = time.perf_counter()
        sock.sendall(b"pong")
        assert receive(sock, 4) == b"pong"
        second = time.perf_counter() - started
    assert first >= 2 * rtt  # the handshake, then the request and its answer
    assert second >= rtt
    assert second < first - rtt / 2  # an open connection pays no handshake again


def test_a_connection_is_held_to_its_bandwidth_both_ways(narrow: tuple[str, int]) -> None:
    assert download(narrow, 20 * MB) >= 20 / 50
    started = time.perf_counter()
    with socket.create_connection(narrow) as sock:
        sock.sendall(b"sink %d\n" % (10 * MB))
        sock.sendall(b"y" * (10 * MB))
        assert receive(sock, 2) == b"ok"
    assert time.perf_counter() - started >= 10 / 50


def test_parallel_connections_each_get_their_bandwidth_under_a_high_total(narrow: tuple[str, int]) -> None:
    with ThreadPoolExecutor(2) as pool:
        times = list(pool.map(lambda _: download(narrow, 10 * MB), range(2)))
    assert min(times) >= 10 / 50
    assert max(times) < 20 / 50  # not one after the other


def test_parallel_connections_share_the_total_bandwidth(shared: tuple[str, int]) -> None:
    with ThreadPoolExecutor(2) as pool:
        times = list(pool.map(lambda _: download(shared, 10 * MB), range(2)))
    assert max(times) >= 20 / 50  # 20 MB through 50 MB/s in all
    assert min(times) >= 0.75 * 20 / 50  # both slowed, neither at its own 50 MB/s (0.2 s)


def test_a_half_close_goes_through_and_the_close_comes_back(narrow: tuple[str, int]) -> None:
    with socket.create_connection(narrow) as sock:
        sock.sendall(b"echo\nabc")
        sock.shutdown(socket.SHUT_WR)
        assert receive(sock, 6) == b"abcbye"  # the server saw the EOF, and still answered
        assert sock.recv(1) == b""


def send_until_blocked(sock: socket.socket, *, limit: int) -> int:
    """Bytes ``sock`` accepts before a send blocks for its timeout (``limit`` if it never does)."""
    block, sent = b"z" * (1 << 20), 0
    try:
        while sent < limit:
            sent += sock.send(block)
    except TimeoutError:
        pass
    return sent


def test_a_sender_is_held_back_when_the_receiver_does_not_read(shared: tuple[str, int]) -> None:
    offered = 64 * MB
    with socket.create_connection(shared) as sock:
        sock.sendall(b"hold\n")
        sock.settimeout(0.3)
        sent = send_until_blocked(sock, limit=offered)
    assert sent < offered / 2  # the proxy's queue plus the kernels' socket buffers, not everything
