"""How fast recpipe's MPEG-TS reader is, against how fast slices come from a local S3 server.

    python -m tests.bench.reader [--slices N] [--mbps M]

Encodes one 15 s slice at an Agora-like bitrate (720p H.264 + AAC) with ffmpeg, serves N copies
from a moto S3 server on 127.0.0.1, fetches them the way the fetch stage does (8 workers), and
reads the same bytes with ``TsReader`` on one core. The reader must be the faster of the two, so
verifying never holds fetching back. Not a test: timings belong in benchmarks, not in the suite.
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
from pathlib import Path

from moto.server import ThreadedMotoServer

from pipeline.storage.s3 import S3Storage, make_s3_client
from stages.ffmpeg import find_ffmpeg
from stages.media.ts import read_slice


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=40)
    parser.add_argument("--mbps", type=float, default=2.0)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    with tempfile.TemporaryDirectory(prefix="recpipe-bench-") as tmp:
        work = Path(tmp)
        data = encode_slice(find_ffmpeg(os.environ), work / "slice.ts", mbps=args.mbps)
        total = len(data) * args.slices
        print(f"slice: {len(data) / 1e6:.2f} MB (15 s at {args.mbps} Mbit/s video); {args.slices} slices, "
              f"{total / 1e6:.0f} MB")  # fmt: skip

        started = time.perf_counter()
        for _ in range(args.slices):
            media = read_slice(data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20))
        read_s = time.perf_counter() - started
        if not media.readable or media.problems():
            raise SystemExit(f"the encoded slice does not read cleanly: {media.problems()}")

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            client = make_s3_client(endpoint_url=f"http://{host}:{port}", region="us-east-1")
            client.create_bucket(Bucket="bench")
            for n in range(args.slices):
                client.put_object(Bucket="bench", Key=f"s/{n:05d}.ts", Body=data)
            storage = S3Storage(client, "bench")
            started = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                list(
                    pool.map(lambda n: storage.get(f"s/{n:05d}.ts", work / f"{n:05d}.ts"), range(args.slices))
                )
            fetch_s = time.perf_counter() - started
        finally:
            server.stop()
    print(f"ts reader:        {total / read_s / 1e6:7.0f} MB/s  ({read_s:.2f} s, one core)")
    print(f"fetch from moto:  {total / fetch_s / 1e6:7.0f} MB/s  ({fetch_s:.2f} s, 8 workers)")
    print(f"reader/fetch:     {fetch_s / read_s:7.1f}x")
    return 0 if read_s < fetch_s else 1


if __name__ == "__main__":
    sys.exit(main())
