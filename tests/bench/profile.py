"""Where recpipe's CPU goes: each step of a run, on the benchmark's recording, measured on its own.

    python -m tests.bench.profile --endpoint URL --bucket B --prefix P --recording DIR [--ffmpeg PATH]

Runs, one after another in this process, what ``recpipe process s3://… --dest s3://…`` does to an
hour of recording: import recpipe, make the S3 client, read every slice from the S3 server (8 threads,
as the fetch stage does), read each with the MPEG-TS reader (verification), write them all into one
ffmpeg remuxing to a fragmented MP4 (the pipe writes are recpipe's, the remux ffmpeg's), build the
moov-first layout from the fragments, copy the media behind it (the faststart copy), hash the result,
and upload it in parts. Prints one JSON object: CPU-seconds (user + sys, every thread of this process;
ffmpeg's from its own rusage) per step, and the bytes each step handled. ``make bench`` runs it three
times and prints each step's median as ``profile.<step>`` reference lines. The steps overlap in a real
run; their sum is the CPU a run needs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.bench.report import Result, show

MB = 1_000_000
UPLOAD_KEY = "profile/out.mp4"
PROFILE_RUNS = 3
"""Fresh processes per profile; each step's median is printed."""
"""Where the ``uploads`` step writes (outside the recording's prefix, which recpipe's runs list)."""

STEPS = (
    "imports",
    "s3_client",
    "http_reads",
    "ts_reading",
    "pipe_writes",
    "ffmpeg_remux",
    "moov_building",
    "faststart_copy",
    "hashing",
    "uploads",
)


def cpu() -> float:
    """CPU-seconds of this process so far, every thread."""
    return time.process_time()


def children_cpu() -> float:
    """CPU-seconds of the child processes waited for so far (ffmpeg)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Steps:
    """CPU-seconds and bytes per step, measured around each ``step`` block."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.bytes: dict[str, int] = {}

    def measure(self, name: str, work: Callable[[], int]) -> None:
        """Run ``work`` (which returns the bytes it handled) and keep its CPU time under ``name``."""
        started = cpu()
        self.bytes[name] = work()
        self.cpu[name] = cpu() - started


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


def profile(args: argparse.Namespace) -> dict[str, Any]:
    """Every step's CPU-seconds and bytes."""
    steps = Steps()
    started = cpu()
    from pipeline.run import app  # noqa: F401 - what every recpipe command imports
    from stages.ffmpeg import FfmpegProcess, remux_argv
    from stages.media.faststart import copy_range, plan, sha256_of
    from stages.media.ts import read_slice

    steps.cpu["imports"], steps.bytes["imports"] = cpu() - started, 0

    started = cpu()
    from pipeline.storage.s3 import S3Storage, make_s3_client

    storage = S3Storage(make_s3_client(endpoint_url=args.endpoint), args.bucket)
    steps.cpu["s3_client"], steps.bytes["s3_client"] = cpu() - started, 0

    names = sorted(p.name for p in args.recording.glob("*.ts"))
    slices: list[bytes] = []

    def http_reads() -> int:
        with ThreadPoolExecutor(8) as pool:
            slices.extend(
                pool.map(lambda name: storage.read_bytes(args.prefix + name, max_bytes=1 << 30), names)
            )
        return sum(map(len, slices))

    steps.measure("http_reads", http_reads)
    steps.measure("ts_reading", lambda: sum(read_slice((data,)).size for data in slices))
    with tempfile.TemporaryDirectory(prefix="recpipe-profile-", dir=args.work) as tmp:
        work = Path(tmp)
        fragmented = work / "part.mp4"
        before = children_cpu()

        def pipe_writes() -> int:
            process = FfmpegProcess(remux_argv(args.ffmpeg, output=fragmented))
            for data in slices:
                process.write(data)
            process.close()
            return sum(map(len, slices))

        steps.measure("pipe_writes", pipe_writes)
        steps.cpu["ffmpeg_remux"] = children_cpu() - before
        steps.bytes["ffmpeg_remux"] = steps.bytes["pipe_writes"]
        layouts = []

        def moov_building() -> int:
            layouts.append(plan(fragmented))
            return fragmented.stat().st_size

        steps.measure("moov_building", moov_building)
        layout = layouts[0]
        final = work / "final.mp4"

        def faststart_copy() -> int:
            with fragmented.open("rb") as src, final.open("xb") as dest:
                dest.write(layout.head)
                dest.flush()
                for start, end in layout.ranges:
                    copy_range(src, dest, start=start, end=end)
            return layout.size

        steps.measure("faststart_copy", faststart_copy)

        def hashing() -> int:
            sha256_of(layout, fragmented)
            return layout.size

        steps.measure("hashing", hashing)

        def uploads() -> int:
            upload = storage.begin_upload(UPLOAD_KEY)
            assert upload is not None
            with final.open("rb") as f:
                for number, data in enumerate(iter(lambda: f.read(args.part_bytes), b""), start=1):
                    upload.put_part(number, data)
            upload.complete()
            return layout.size

        steps.measure("uploads", uploads)
    return {"cpu_s": steps.cpu, "bytes": steps.bytes}


def run_profile(
    *, endpoint: str, bucket: str, prefix: str, recording: Path, ffmpeg: str, env: dict[str, str]
) -> dict[str, Any]:
    """``profile`` in a fresh interpreter (so ``imports`` measures a cold start); its JSON result."""
    argv = [sys.executable, "-m", "tests.bench.profile", "--endpoint", endpoint, "--bucket", bucket,
            "--prefix", prefix, "--recording", str(recording), "--ffmpeg", ffmpeg]  # fmt: skip
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, env=env, cwd=root, timeout=600)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


WHAT = {
    "imports": "recpipe's modules imported (the interpreter's own start not included)",
    "s3_client": "botocore imported, one S3 client made",
    "http_reads": "GetObject of every slice, 8 threads",
    "ts_reading": "the MPEG-TS reader over every slice (verification)",
    "pipe_writes": "the slices written to ffmpeg's stdin",
    "ffmpeg_remux": "ffmpeg: MPEG-TS to fragmented MP4, stream copy",
    "moov_building": "fragments parsed, the moov-first layout built",
    "faststart_copy": "the media copied behind the new moov (copy_file_range)",
    "hashing": "sha256 of the published MP4",
    "uploads": "the MP4 uploaded in 8 MiB parts",
}


def profile_results(
    *,
    endpoint: str,
    bucket: str,
    prefix: str,
    recording: Path,
    ffmpeg: str,
    env: dict[str, str],
    repeat: int = PROFILE_RUNS,
) -> list[Result]:
    """``profile.<step>`` reference lines (CPU-seconds for the recording, each step's median over
    ``repeat`` fresh processes: a busy host moves a single run's steps by up to 2×) and their total."""
    runs = [run_profile(endpoint=endpoint, bucket=bucket, prefix=prefix, recording=recording,
                        ffmpeg=ffmpeg, env=env) for _ in range(repeat)]  # fmt: skip
    measured = {
        "cpu_s": {step: statistics.median(r["cpu_s"][step] for r in runs) for step in STEPS},
        "bytes": runs[0]["bytes"],
    }
    results = []
    for step in STEPS:
        seconds, count = measured["cpu_s"][step], measured["bytes"][step]
        rate = f", {count / MB / seconds:.0f} MB/s" if count and seconds > 0 else ""
        detail = f"cpu-s: {WHAT[step]}; {count / MB:.0f} MB{rate}" if count else f"cpu-s: {WHAT[step]}"
        results.append(show(Result(name=f"profile.{step}", value=seconds, target=None, detail=detail)))
    total = sum(measured["cpu_s"].values())
    detail = f"cpu-s: the steps above, one after another (a run overlaps them); medians of {repeat} runs"
    results.append(show(Result(name="profile.total", value=total, target=None, detail=detail)))
    return results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="the S3 server's URL")
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", required=True, help="where the recording's slices are in the bucket")
    parser.add_argument("--recording", type=Path, required=True, help="the recording's local directory")
    parser.add_argument("--ffmpeg", default=os.environ.get("RECPIPE_FFMPEG", "ffmpeg"))
    parser.add_argument("--part-bytes", type=int, default=8 * 1024 * 1024)
    parser.add_argument("--work", type=Path, default=None, help="scratch directory (default: system temp)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    print(json.dumps(profile(parse_args(argv))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
