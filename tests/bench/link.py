"""A delay-line TCP proxy on 127.0.0.1 that models a cloud link: latency, per-connection and total bandwidth.

    python -m tests.bench.link --upstream 127.0.0.1:PORT --rtt-ms 4 --conn-mbps 90 --total-mbps 400

prints the port it listens on as the first line of stdout and forwards every connection to the upstream
until it is terminated. Bandwidths are in MB/s, MB = 10^6 bytes. The model, for each direction of each
connection (the link is full duplex: each direction has its own total cap):

- a chunk read at ``arrival`` is serialized at the connection's bandwidth, ending at
  ``ready = max(arrival, conn_free) + n / conn_bw`` (``conn_free``: when the connection's previous chunk
  ended); then it passes the total bandwidth, shared by all connections, which takes chunks in the order
  of their ``ready`` and lets each go at ``total_free = max(ready, total_free + n / total_bw)``; it is
  delivered RTT/2 after that. (Charging the total cap at ``arrival`` instead would let one connection's
  read-ahead, up to the buffer below, reserve the shared link and stall the others behind it.)
- a new connection's first bytes wait one RTT more (the TCP handshake), so a first request's response
  starts 2 RTT after connecting, a later one's after 1 RTT;
- at most ``max(2 × BDP, 1 MiB)`` is queued per direction; past that the proxy stops reading, so the
  sender feels backpressure, and a receiver that does not read stops the delivery;
- an EOF (half-close) is delivered in order after the data before it; when both directions have
  delivered theirs both sockets are closed; a reset on one side aborts the other.

One asyncio event loop on one thread with protocol callbacks (no per-connection tasks): reads are up to
256 KiB, and every chunk due when a timer fires is written at once. ``running()`` starts the proxy as a
subprocess and yields its URL and pid (its CPU time competes with the benchmarked client).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import itertools
import logging
import subprocess
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MB = 1_000_000
MIN_WINDOW = 1 << 20
WRITE_HIGH_WATER = 256 * 1024
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, kw_only=True, slots=True)
class Link:
    """A modelled link: round-trip time, bandwidth per connection and in total (MB/s, MB = 10^6 bytes)."""

    name: str
    rtt_ms: float
    conn_mbps: float
    total_mbps: float

    @property
    def window(self) -> int:
        """Bytes queued per direction before the proxy stops reading: max(2 × BDP, 1 MiB)."""
        return max(int(2 * self.conn_mbps * MB * self.rtt_ms / 1000), MIN_WINDOW)

    def describe(self) -> str:
        """The parameters, for the benchmark's output."""
        return (
            f"{self.name}: RTT {self.rtt_ms:g} ms, {self.conn_mbps:g} MB/s per connection, "
            f"{self.total_mbps:g} MB/s total (each direction), buffer {self.window / MB:.2f} MB per direction"
        )


LINKS = (
    Link(name="4ms", rtt_ms=4, conn_mbps=90, total_mbps=400),
    Link(name="40ms", rtt_ms=40, conn_mbps=25, total_mbps=60),
)


class Bottleneck:
    """The total bandwidth of one direction, shared by every connection. A chunk enters it when its own
    connection has serialized it (``ready``), in that order across connections, so one connection's
    read-ahead never holds another's bytes back; it leaves at ``max(ready, free + n / total)``."""

    def __init__(self, link: Link, *, loop: asyncio.AbstractEventLoop) -> None:
        self.rate = link.total_mbps * MB
        self.loop = loop
        self.free = 0.0
        self.waiting: list[tuple[float, int, Pipe]] = []
        self.count = itertools.count()
        self.timer: asyncio.TimerHandle | None = None

    def enter(self, ready: float, pipe: Pipe) -> None:
        """``pipe``'s newest chunk (or its EOF) reaches the bottleneck at ``ready``."""
        heapq.heappush(self.waiting, (ready, next(self.count), pipe))
        if self.timer is None or ready < self.timer.when():
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.loop.call_at(ready, self.admit)

    def admit(self) -> None:
        """Pass every chunk that has reached the bottleneck, earliest first, and set when it arrives."""
        self.timer = None
        now = self.loop.time()
        while self.waiting and self.waiting[0][0] <= now:
            ready, _, pipe = heapq.heappop(self.waiting)
            size = pipe.next_size()
            if size is None:
                continue  # the connection was reset
            self.free = max(ready, self.free + size / self.rate)
            pipe.admitted(self.free)
        if self.waiting:
            self.timer = self.loop.call_at(self.waiting[0][0], self.admit)


class Pipe:
    """One direction of one connection: reads from ``src``, delivers to ``dst`` as the link would."""

    def __init__(self, conn: Connection, *, bottleneck: Bottleneck, free: float) -> None:
        self.conn = conn
        self.link = conn.link
        self.loop = conn.loop
        self.bottleneck = bottleneck
        self.free = free
        self.src: asyncio.Transport | None = None
        self.dst: asyncio.Transport | None = None
        self.serialized: deque[bytes | None] = deque()
        self.queue: deque[tuple[float, bytes | None]] = deque()
        self.queued = 0
        self.last_due = 0.0
        self.reading = True
        self.blocked = False
        self.timer: asyncio.TimerHandle | None = None
        self.done = False

    def feed(self, data: bytes) -> None:
        """Serialize ``data``, read now, at the connection's bandwidth, then on to the bottleneck."""
        if self.done:
            return
        self.free = max(self.loop.time(), self.free) + len(data) / (self.link.conn_mbps * MB)
        self.serialized.append(data)
        self.bottleneck.enter(self.free, self)
        self.queued += len(data)
        if self.queued >= self.link.window and self.reading and self.src is not None:
            self.reading = False
            self.src.pause_reading()

    def feed_eof(self) -> None:
        """Queue the sender's EOF behind its data."""
        self.free = max(self.loop.time(), self.free)
        self.serialized.append(None)
        self.bottleneck.enter(self.free, self)

    def next_size(self) -> int | None:
        """The size of the chunk the bottleneck takes next (0: the EOF; ``None``: nothing, after a reset)."""
        if not self.serialized:
            return None
        head = self.serialized[0]
        return 0 if head is None else len(head)

    def admitted(self, leaves: float) -> None:
        """The oldest serialized chunk leaves the bottleneck at ``leaves``: deliver it RTT/2 later."""
        self.push(leaves + self.link.rtt_ms / 2000, self.serialized.popleft())

    def push(self, due: float, data: bytes | None) -> None:
        self.last_due = max(self.last_due, due)
        self.queue.append((self.last_due, data))
        self.schedule()

    def schedule(self) -> None:
        """Set the timer for the head of the queue, if it can be delivered."""
        if self.timer is None and self.queue and self.dst is not None and not self.blocked:
            self.timer = self.loop.call_at(self.queue[0][0], self.deliver)

    def deliver(self) -> None:
        """Write every chunk that is due in one go (and the EOF, if it is due)."""
        self.timer = None
        if self.dst is None or self.blocked or self.done:
            return
        now = self.loop.time()
        chunks: list[bytes] = []
        eof = False
        while self.queue and self.queue[0][0] <= now:
            data = self.queue.popleft()[1]
            if data is None:
                eof = True
                break
            chunks.append(data)
        if chunks:
            size = sum(map(len, chunks))
            self.dst.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
            self.queued -= size
        if not self.reading and self.queued < self.link.window and self.src is not None:
            self.reading = True
            self.src.resume_reading()
        if eof:
            self.finish()
        else:
            self.schedule()

    def finish(self) -> None:
        """Deliver the EOF: half-close the receiver, and close the connection when both sides did."""
        self.done = True
        self.queue.clear()
        if self.dst is not None and not self.dst.is_closing() and self.dst.can_write_eof():
            self.dst.write_eof()
        self.conn.check_done()

    def set_blocked(self, blocked: bool) -> None:
        """The receiver's buffer is full (``True``) or has drained (``False``)."""
        self.blocked = blocked
        if not blocked:
            self.cancel()
            self.deliver()

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def stop(self) -> None:
        """Deliver nothing more: the connection was reset."""
        self.cancel()
        self.done = True
        self.queue.clear()
        self.serialized.clear()


class Connection:
    """A client connection and its upstream one; ``pipes[0]`` carries client → upstream."""

    def __init__(
        self, link: Link, *, bottlenecks: tuple[Bottleneck, Bottleneck], loop: asyncio.AbstractEventLoop
    ) -> None:
        self.link = link
        self.loop = loop
        now = loop.time()
        self.pipes = (
            Pipe(
                self, bottleneck=bottlenecks[0], free=now + link.rtt_ms / 1000
            ),  # the handshake's round trip
            Pipe(self, bottleneck=bottlenecks[1], free=now),
        )
        self.transports: list[asyncio.Transport | None] = [None, None]

    def attach(self, side: int, transport: asyncio.Transport) -> None:
        """Side 0 (the client) or 1 (upstream) is connected: it feeds one pipe and drains the other."""
        self.transports[side] = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.pipes[side].src = transport
        if not self.pipes[side].reading:
            transport.pause_reading()
        self.pipes[1 - side].dst = transport
        self.pipes[1 - side].schedule()

    def check_done(self) -> None:
        if all(pipe.done for pipe in self.pipes):
            self.close()

    def close(self) -> None:
        for transport in self.transports:
            if transport is not None:
                transport.close()

    def abort(self) -> None:
        """A reset on either side: reset the other too."""
        for pipe in self.pipes:
            pipe.stop()
        for transport in self.transports:
            if transport is not None:
                transport.abort()


class Side(asyncio.Protocol):
    """One socket of a proxied connection (``side`` 0: the client's, 1: upstream's)."""

    def __init__(self, conn: Connection, *, side: int) -> None:
        self.conn = conn
        self.side = side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.conn.attach(self.side, transport)

    def data_received(self, data: bytes) -> None:
        self.conn.pipes[self.side].feed(data)

    def eof_received(self) -> bool:
        self.conn.pipes[self.side].feed_eof()
        return True  # keep writing the other way: a half-close

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.conn.abort()

    def pause_writing(self) -> None:
        self.conn.pipes[1 - self.side].set_blocked(True)

    def resume_writing(self) -> None:
        self.conn.pipes[1 - self.side].set_blocked(False)


async def serve(link: Link, *, upstream: tuple[str, int], port: int = 0) -> asyncio.Server:
    """Listen on 127.0.0.1 (``port`` 0: any free port) and proxy each connection to ``upstream``."""
    loop = asyncio.get_running_loop()
    bottlenecks = (Bottleneck(link, loop=loop), Bottleneck(link, loop=loop))
    connecting: set[asyncio.Task[None]] = set()

    def accept() -> Side:
        conn = Connection(link, bottlenecks=bottlenecks, loop=loop)
        task = loop.create_task(connect(conn))
        connecting.add(task)
        task.add_done_callback(connecting.discard)
        return Side(conn, side=0)

    async def connect(conn: Connection) -> None:
        try:
            await loop.create_connection(lambda: Side(conn, side=1), *upstream)
        except OSError as err:
            log.warning("cannot connect to %s:%d: %s", *upstream, err)
            conn.abort()

    return await loop.create_server(accept, "127.0.0.1", port)


async def serve_forever(link: Link, *, upstream: tuple[str, int]) -> None:
    server = await serve(link, upstream=upstream)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


@dataclass(frozen=True, kw_only=True, slots=True)
class Service:
    """A helper process serving on 127.0.0.1 (the proxy, the S3 server): its URL and process id, and the
    file it logs its requests' times to, if any (the S3 server: ``tests.bench.serial``)."""

    url: str
    pid: int
    timeline: Path | None = None


@contextlib.contextmanager
def running(link: Link, *, upstream: str) -> Iterator[Service]:
    """Start the proxy for ``link`` in front of ``upstream`` (``host:port``) as a subprocess; its URL."""
    argv = [sys.executable, "-m", "tests.bench.link", "--upstream", upstream, "--rtt-ms", str(link.rtt_ms),
            "--conn-mbps", str(link.conn_mbps), "--total-mbps", str(link.total_mbps)]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"the link proxy did not start (exit {proc.poll()})")
        yield Service(url=f"http://127.0.0.1:{line.strip()}", pid=proc.pid)
    finally:
        proc.terminate()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--upstream", required=True, help="host:port to forward to")
    parser.add_argument("--rtt-ms", type=float, required=True, help="round-trip time, ms")
    parser.add_argument("--conn-mbps", type=float, required=True, help="per connection, MB/s (10^6 B/s)")
    parser.add_argument("--total-mbps", type=float, required=True, help="all connections, MB/s")
    args = parser.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    link = Link(name="link", rtt_ms=args.rtt_ms, conn_mbps=args.conn_mbps, total_mbps=args.total_mbps)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(link, upstream=(host, int(port))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
