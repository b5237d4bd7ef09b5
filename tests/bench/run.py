"""``make bench``: recpipe against what users would otherwise run, measured in one run (SPEC.md targets).

    python -m tests.bench.run [--tools DIR] [--cache DIR] [--hours 1] [--long-hours 4]

On a synthetic composite recording (``tests.bench.recording``, built once and cached) served by a moto
S3 server on 127.0.0.1, each line prints ``name: ratio`` with the absolute times beside it:

- ``vs_naive``: ``recpipe process`` S3 → S3 against ``aws s3 cp --recursive`` + ``ffmpeg -i playlist
  -c copy`` + ``aws s3 cp`` (target ≤ 0.5);
- ``vs_yt_dlp``: the same run against ``yt-dlp`` fetching and merging the playlist over HTTP (≤ 0.25);
- ``vs_ffmpeg_local``: ``recpipe process`` on local files against bare ``ffmpeg -c copy`` (≤ 1.3);
- ``memory_1h``: peak memory of recpipe's process tree, MB (≤ 200), and ``memory_4h_vs_1h`` (≤ 1.1).

Every command runs as a subprocess; times include interpreter start-up. awscli and yt-dlp come from
their own virtualenv (``--tools``, made by ``make bench``), so their pinned botocore never meets recpipe's.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipeline.storage.s3 import make_s3_client
from stages.ffmpeg import find_ffmpeg
from tests.bench.measure import Measured, run, run_all
from tests.bench.recording import BenchRecording, cached

BUCKET = "bench"
MB = 1_000_000
TARGETS = {
    "vs_naive": 0.5,
    "vs_yt_dlp": 0.25,
    "vs_ffmpeg_local": 1.3,
    "memory_1h_mb": 200.0,
    "memory_4h_vs_1h": 1.1,
}


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """A moto S3 server in its own process on 127.0.0.1 (so nothing in this process slows it); its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the moto S3 server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait()


def upload(recording: BenchRecording, *, endpoint: str, prefix: str) -> None:
    """Put the recording's files into the bench bucket under ``prefix``."""
    client = make_s3_client(endpoint_url=endpoint)
    client.create_bucket(Bucket=BUCKET)
    files = sorted(recording.directory.iterdir())
    with ThreadPoolExecutor(8) as pool:
        # Public-read, so yt-dlp can fetch the playlist and slices over plain HTTP.
        extra = {"ACL": "public-read"}
        list(pool.map(lambda p: client.upload_file(str(p), BUCKET, prefix + p.name, ExtraArgs=extra), files))


def best(times: int, measure: Callable[[], Measured]) -> Measured:
    """The run with the median wall time of ``times`` runs."""
    runs = sorted((measure() for _ in range(times)), key=lambda r: r.seconds)
    return runs[len(runs) // 2]


def show(name: str, ratio: float, detail: str) -> str:
    """Print and return ``name: ratio`` with the absolute numbers, the target and whether it is met."""
    target = TARGETS[name]
    verdict = "ok" if ratio <= target else "MISSED"
    text = f"{name}: {ratio:.3f}    (target ≤ {target:g}, {verdict}; {detail})"
    print(text, flush=True)
    return text


def ffmpeg_copy(ffmpeg: str, playlist: Path, out: Path) -> list[str]:
    """Agora's own recipe: ffmpeg reads the playlist and stream-copies it into an MP4."""
    return [ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(playlist),
            "-c", "copy", "-bsf:a", "aac_adtstoasc", str(out)]  # fmt: skip


def recpipe_argv(source: str, dest: str, recording: BenchRecording, *, endpoint: str | None) -> list[str]:
    """``recpipe process`` as a user runs it."""
    argv = [
        str(Path(sys.executable).with_name("recpipe")),
        "process",
        source,
        "--dest",
        dest,
        "--profile",
        str(recording.profile),
        "--force",
        "--quiet",
    ]
    return argv + (["--endpoint-url", endpoint] if endpoint else [])


def compare(args: argparse.Namespace, *, ffmpeg: str, env: Mapping[str, str]) -> list[str]:
    """Every comparison, as printable lines."""
    out: list[str] = []
    one, built = cached(args.cache, hours=args.hours, ffmpeg=ffmpeg)
    how = f"built in {built:.1f} s" if built is not None else "cached"
    print(f"recording: {one.slices} slices, {one.bytes / MB:.0f} MB ({how})", flush=True)
    aws = str(args.tools / "bin" / "aws")
    ytdlp = str(args.tools / "bin" / "yt-dlp")
    with s3_server() as endpoint:
        upload(one, endpoint=endpoint, prefix="rec/")
        playlist_key = f"rec/{one.playlist.name}"
        with tempfile.TemporaryDirectory(prefix="recpipe-bench-", dir=args.work) as tmp:
            work = Path(tmp)

            def ours_s3() -> Measured:
                return run(
                    recpipe_argv(
                        f"s3://{BUCKET}/rec/", f"s3://{BUCKET}/out-recpipe/", one, endpoint=endpoint
                    ),
                    env=env,
                )

            def naive() -> Measured:
                local = work / "naive"
                shutil.rmtree(local, ignore_errors=True)
                s3 = ["--endpoint-url", endpoint, "--only-show-errors"]
                result = run_all(
                    [
                        [aws, "s3", "cp", "--recursive", f"s3://{BUCKET}/rec/", str(local), *s3],
                        ffmpeg_copy(ffmpeg, local / one.playlist.name, local / "out.mp4"),
                        [aws, "s3", "cp", str(local / "out.mp4"), f"s3://{BUCKET}/out-naive/out.mp4", *s3],
                    ],
                    env=env,
                )
                shutil.rmtree(local, ignore_errors=True)
                return result

            def yt_dlp() -> Measured:
                target = work / "yt" / "out.mp4"
                shutil.rmtree(target.parent, ignore_errors=True)
                return run(
                    [
                        ytdlp,
                        "--quiet",
                        "--no-progress",
                        "--ffmpeg-location",
                        ffmpeg,
                        "-o",
                        str(target),
                        f"{endpoint}/{BUCKET}/{playlist_key}",
                    ],
                    env=env,
                )

            ours = best(args.repeat, ours_s3)
            theirs = best(args.repeat, naive)
            detail = f"recpipe {ours.seconds:.2f} s, aws+ffmpeg+aws {theirs.seconds:.2f} s"
            out.append(show("vs_naive", ours.seconds / theirs.seconds, detail))
            yt = best(1, yt_dlp)
            detail = f"recpipe {ours.seconds:.2f} s, yt-dlp {yt.seconds:.2f} s"
            out.append(show("vs_yt_dlp", ours.seconds / yt.seconds, detail))
    out += compare_local(args, one=one, ffmpeg=ffmpeg, env=env)
    return out


def compare_local(
    args: argparse.Namespace, *, one: BenchRecording, ffmpeg: str, env: Mapping[str, str]
) -> list[str]:
    """recpipe on local files against bare ffmpeg, and recpipe's memory on a short and a long recording."""
    out: list[str] = []
    with tempfile.TemporaryDirectory(prefix="recpipe-bench-", dir=args.work) as tmp:
        work = Path(tmp)
        ours = best(
            args.repeat,
            lambda: run(recpipe_argv(str(one.directory), str(work / "ours"), one, endpoint=None), env=env),
        )
        bare = best(
            args.repeat,
            lambda: run(ffmpeg_copy(ffmpeg, one.playlist, work / "bare.mp4"), env=env),
        )
        detail = f"recpipe {ours.seconds:.2f} s, ffmpeg {bare.seconds:.2f} s"
        out.append(show("vs_ffmpeg_local", ours.seconds / bare.seconds, detail))
        long, built = cached(args.cache, hours=args.long_hours, ffmpeg=ffmpeg)
        if built is not None:
            print(f"long recording: {long.slices} slices, {long.bytes / MB:.0f} MB, built in {built:.1f} s")

        def peak(recording: BenchRecording) -> float:
            """Median over the runs of the peak RSS of recpipe's process tree, MB."""
            argv = recpipe_argv(str(recording.directory), str(work / "mem"), recording, endpoint=None)
            return statistics.median(
                run(argv, env=env, memory=True).peak_rss / MB for _ in range(args.repeat)
            )

        short_mb, long_mb = peak(one), peak(long)
        out.append(
            show("memory_1h_mb", short_mb, f"peak RSS of recpipe + ffmpeg, {args.hours:g} h recording")
        )
        detail = f"{long_mb:.0f} MB for {args.long_hours:g} h, {short_mb:.0f} MB for {args.hours:g} h"
        out.append(show("memory_4h_vs_1h", long_mb / short_mb, detail))
    return out


def bench_env(ffmpeg: str) -> dict[str, str]:
    """The environment every measured command runs in: fake credentials, the same ffmpeg everywhere."""
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        RECPIPE_FFMPEG=ffmpeg,
    )
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        env.pop(name, None)
    return env


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--tools", type=Path, default=Path(".bench/tools"), help="virtualenv with awscli, yt-dlp"
    )
    parser.add_argument("--cache", type=Path, default=Path(".bench/cache"), help="where recordings are kept")
    parser.add_argument("--work", type=Path, default=None, help="scratch directory (default: system temp)")
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--long-hours", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing; the median is used")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    ffmpeg = find_ffmpeg(os.environ)
    env = bench_env(ffmpeg)
    os.environ.update(
        {k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    )
    print(f"machine: {os.cpu_count()} cores; ffmpeg: {ffmpeg}", flush=True)
    lines = compare(args, ffmpeg=ffmpeg, env=env)
    missed = [text for text in lines if "MISSED" in text]
    print(f"{len(lines) - len(missed)} of {len(lines)} targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
