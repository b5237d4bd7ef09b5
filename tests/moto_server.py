"""A moto server on 127.0.0.1 in this process: the tests' S3 and SQS fixtures, the benchmark's diagnostics."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from moto.server import ThreadedMotoServer


@contextlib.contextmanager
def running_moto() -> Iterator[str]:
    """Start a moto server on a free port of 127.0.0.1; yield its URL; stop it on the way out."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()
