"""Diagnostic: how fast recpipe's MPEG-TS reader is, against how fast slices come from a local S3 server.

    python -m tests.bench.reader [--slices N] [--mbps M]

Encodes one 15 s slice at an Agora-like bitrate (720p H.264 + AAC) with ffmpeg, serves N copies
from a moto S3 server on 127.0.0.1 (``make bench`` passes its own server), fetches them the way the
fetch stage does (8 workers), and reads the same bytes with ``TsReader`` on one core. The reader
should be the faster of the two, so verifying never holds fetching back; this prints the numbers and
always exits 0 (a diagnostic, not a target: ``make bench`` shows it as a reference line).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pipeline.storage.s3 import S3Storage, make_s3_client
from stages.ffmpeg import find_ffmpeg
from stages.media.ts import read_slice
from tests.moto_server import running_moto

log = logging.getLogger(__name__)

BUCKET = "bench-reader"
MB = 1_000_000


@dataclass(frozen=True, kw_only=True, slots=True)
class ReaderSpeed:
    """Bytes read and fetched, and the seconds each took."""

    total: int
    read_s: float
    fetch_s: float

    def describe(self) -> str:
        return (
            f"ts reader {self.total / self.read_s / MB:.0f} MB/s on one core, "
            f"fetch {self.total / self.fetch_s / MB:.0f} MB/s with 8 workers, {self.total / MB:.0f} MB"
        )


def encode_slice(ffmpeg: str, out: Path, *, mbps: float) -> bytes:
    subprocess.run(
        [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30:duration=15",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=15",
         "-c:v", "libx264", "-preset", "ultrafast", "-b:v", f"{mbps}M", "-g", "450",
         "-c:a", "aac", "-b:a", "128k", "-f", "mpegts", str(out)],
        check=True,
    )  # fmt: skip
    return out.read_bytes()


def measure(ffmpeg: str, *, endpoint: str, slices: int = 40, mbps: float = 2.0) -> ReaderSpeed:
    """Read ``slices`` copies of one encoded slice, then fetch them from the S3 server at ``endpoint``."""
    with tempfile.TemporaryDirectory(prefix="recpipe-bench-") as tmp:
        work = Path(tmp)
        data = encode_slice(ffmpeg, work / "slice.ts", mbps=mbps)
        started = time.perf_counter()
        for _ in range(slices):
            media = read_slice(data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20))
        read_s = time.perf_counter() - started
        if not media.readable or media.problems():
            raise RuntimeError(f"the encoded slice does not read cleanly: {media.problems()}")
        client = make_s3_client(endpoint_url=endpoint, region="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        for n in range(slices):
            client.put_object(Bucket=BUCKET, Key=f"s/{n:05d}.ts", Body=data)
        storage = S3Storage(client, BUCKET)
        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: storage.get(f"s/{n:05d}.ts", work / f"{n:05d}.ts"), range(slices)))
        fetch_s = time.perf_counter() - started
    return ReaderSpeed(total=len(data) * slices, read_s=read_s, fetch_s=fetch_s)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--slices", type=int, default=40)
    parser.add_argument("--mbps", type=float, default=2.0)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    try:
        with running_moto() as endpoint:
            speed = measure(find_ffmpeg(os.environ), endpoint=endpoint, slices=args.slices, mbps=args.mbps)
    except Exception as err:  # a diagnostic: say what went wrong, never fail the caller
        print(f"ts reader diagnostic failed: {type(err).__name__}: {err}")
        return 0
    print(f"{speed.describe()}; reader/fetch speed {speed.fetch_s / speed.read_s:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
