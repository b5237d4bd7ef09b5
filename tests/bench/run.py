"""``make bench``: recpipe against what users would otherwise run, over modelled links (SPEC.md targets).

    python -m tests.bench.run [--tools DIR] [--cache DIR] [--hours 1] [--long-hours 4] [--repeat 5]
                              [--slow-repeat 5] [--memory-repeat 3] [--links loopback,4ms,40ms]

A synthetic composite recording (``tests.bench.recording``, built once and cached) is served by a moto
S3 server in its own process on 127.0.0.1 (``tests.bench.s3server``: with HTTP keep-alive, as S3 has),
reached directly (``loopback``) and through the delay-line
proxy of ``tests.bench.link`` (``4ms``: 4 ms RTT, 90 MB/s per connection, 400 MB/s total; ``40ms``: 40 ms,
25 MB/s, 60 MB/s). For each link, runs interleaved, median of ``--repeat`` (``--slow-repeat`` on links of
20 ms RTT or more):

- ``<link>.s3_to_s3``: ``recpipe process s3://… --dest s3://…`` against the naive pipeline, ``aws s3 cp
  --recursive`` + ``ffmpeg -i playlist -c copy -bsf:a aac_adtstoasc -movflags +faststart`` + ``aws s3 cp``
  (≤ 0.6; loopback: reference);
- ``<link>.s3_to_local``: ``recpipe process s3://… --dest DIR`` against the naive pipeline's first two
  steps, timed within the same naive runs (≤ 0.9);
- ``<link>.cpu_s3_to_s3``, ``<link>.cpu_s3_to_local``: user + sys CPU seconds of each command's process
  tree, ffmpeg included, the S3 server and the proxy not (≤ 1.0);
- ``<link>.vs_yt_dlp``: recpipe S3 → local against ``yt-dlp`` on the playlist's URL (reference, one run);
- ``<link>.server_cpu``, ``<link>.proxy_cpu``: CPU seconds the S3 server and the proxy used during one
  recpipe S3 → S3 run (reference: on a small machine they compete with the client);
- ``<link>.s3_to_s3_floor``: the least ``s3_to_s3`` this machine allows, recpipe's CPU seconds with
  the server's and the proxy's spread perfectly over its cores (reference);
- ``<link>.s3_to_s3_floor_serial``: the same with the stretches of each run in which at most one core
  can work (start-up to the first slice GET, CompleteMultipartUpload) taken from the S3 server's
  timeline (``tests.bench.serial``; reference);
- ``<link>.s3_to_local_floor`` (modelled links): each S3 → local run's own start-up to its first slice
  GET, the answer's way back (half the RTT), the recording at the link's total bandwidth, then the MP4
  written out as recpipe publishes it (copied, hashed, on disk; timed here), against the naive
  pipeline (reference: where the link is the limit, what recpipe could at best do).

Before the links, ``ts_reader`` (reference): the diagnostic of ``tests.bench.reader``, TS reader speed over
fetch speed. Then, on local files: ``vs_ffmpeg_local`` (``recpipe process`` against bare ``ffmpeg -c
copy``, the floor: ≤ 1.15), ``local_floor`` and ``vs_local_floor`` (``tests.bench.floor``, only what
every run must do beyond bare ffmpeg, against bare ffmpeg and against recpipe; references),
``memory_1h_mb`` (peak RSS of recpipe's process tree, ≤ 200) and ``memory_4h_vs_1h`` (≤ 1.1), from
the medians of ``--memory-repeat`` runs each (a run's peak moves by a few MB, which
moved the ratio across its target in single runs; a 4 h run takes ~11 s).
A comparison that fails is an ``ERROR`` line with the reason and the others still run; the summary
closes the output, and the exit status is 1 when any target was missed or anything failed.

Every command runs as a subprocess, with the same ffmpeg (``RECPIPE_FFMPEG``); times include interpreter
start-up. awscli and yt-dlp come from their own virtualenv (``--tools``, made by ``make bench``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pipeline.storage.s3 import make_s3_client
from stages.ffmpeg import find_ffmpeg
from stages.media.faststart import Layout, write
from tests.bench import reader
from tests.bench.commands import bench_env, compile_recpipe, ffmpeg_copy, ffmpeg_version, recpipe_argv
from tests.bench.link import LINKS, ROOT, Link, Service, running
from tests.bench.measure import Measured, run, run_steps, total
from tests.bench.profile import profile_results
from tests.bench.recording import BenchRecording, cached
from tests.bench.report import Result, Trials, failed, reason, show, summary
from tests.bench.serial import Serial, serial_stretches

log = logging.getLogger(__name__)

BUCKET = "bench"
MB = 1_000_000
LOOPBACK = "loopback"
SLOW_RTT_MS = 20
FLOOR = Path(__file__).with_name("floor.py")
TARGETS: dict[str, float] = {
    **{f"{name}.s3_to_local": 0.9 for name in (LOOPBACK, *(link.name for link in LINKS))},
    **{f"{link.name}.s3_to_s3": 0.6 for link in LINKS},
    **{f"{name}.cpu_s3_to_s3": 1.0 for name in (LOOPBACK, *(link.name for link in LINKS))},
    **{f"{name}.cpu_s3_to_local": 1.0 for name in (LOOPBACK, *(link.name for link in LINKS))},
    "vs_ffmpeg_local": 1.15,
    "memory_1h_mb": 200.0,
    "memory_s3_to_s3_mb": 200.0,
    "memory_4h_vs_1h": 1.1,
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Bench:
    """What every comparison needs: the recording, the tools, the environment, a scratch directory."""

    recording: BenchRecording
    ffmpeg: str
    env: Mapping[str, str]
    tools: Path
    cache: Path
    work: Path


@contextlib.contextmanager
def s3_server(timeline: Path) -> Iterator[Service]:
    """A moto S3 server (``tests.bench.s3server``: with keep-alive) in its own process on 127.0.0.1, so
    nothing in this process slows it, logging its slice GETs and upload completions to ``timeline``."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.s3server", "--port", str(port), "--timeline", str(timeline)],
        cwd=ROOT,
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
        yield Service(url=endpoint, pid=proc.pid, timeline=timeline)
    finally:
        proc.terminate()
        proc.wait()


def upload(recording: BenchRecording, *, endpoint: str, prefix: str) -> None:
    """Put the recording's files into the bench bucket under ``prefix``."""
    client = make_s3_client(endpoint_url=endpoint)
    client.create_bucket(Bucket=BUCKET)
    files = sorted(recording.directory.iterdir())

    def put(path: Path) -> None:  # public-read, so yt-dlp can fetch the playlist and slices over HTTP
        client.put_object(Bucket=BUCKET, Key=prefix + path.name, Body=path.read_bytes(), ACL="public-read")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, files))


def fresh(directory: Path) -> Path:
    """``directory``, emptied (outside any timing)."""
    shutil.rmtree(directory, ignore_errors=True)
    return directory


def command(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    watch: Mapping[str, int] | None = None,
    memory: bool = False,
    mkdir: bool = False,
) -> Callable[[], list[Measured]]:
    """One measured run of ``argv``, to hand to ``Trials.run`` (with ``mkdir``, its last argument is a
    directory made first, outside the timing)."""

    def measure() -> list[Measured]:
        if mkdir:
            Path(argv[-1]).mkdir(parents=True, exist_ok=True)
        return [run(argv, env=env, watch=watch, memory=memory)]

    return measure


def result(name: str, value: float, detail: str) -> Result:
    """Print and return the result ``name`` against its target (or as a reference line)."""
    return show(Result(name=name, value=value, target=TARGETS.get(name), detail=detail))


def failure(name: str, err: BaseException | str) -> Result:
    """Print and return ``name`` as an ERROR line with the reason."""
    why = err if isinstance(err, str) else reason(err)
    return show(Result(name=name, value=None, target=TARGETS.get(name), detail="", error=why))


def ratio(
    name: str,
    trials: Trials,
    sides: tuple[str, str],
    *,
    cpu: bool = False,
    labels: str = "recpipe naive",
    parts: Sequence[str] = (),
) -> Result:
    """``sides[0] / sides[1]`` of the medians of wall time (or CPU time), as result ``name``.

    :param parts: sides whose medians are shown as the steps of ``sides[1]``.
    """
    metric: Callable[[Measured], float] = (lambda m: m.cpu) if cpu else (lambda m: m.seconds)
    try:
        ours, theirs = (trials.median(side, metric) for side in sides)
    except LookupError as err:
        return failure(name, str(err))
    first, second = labels.split()
    unit = "cpu-s" if cpu else "s"
    steps = " + ".join(f"{STEPS[part]} {trials.median(part, metric):.2f}" for part in parts)
    runs = min(trials.count(side) for side in sides)
    detail = f"{first} {ours:.2f} {unit}, {second} {theirs:.2f} {unit}{f' ({steps})' if steps else ''}"
    return result(name, ours / theirs, f"{detail}; median of {runs}")


STEPS = {"aws_down": "aws down", "ffmpeg_naive": "ffmpeg", "aws_up": "aws up"}


SIDES = {
    "recpipe_s3": "recpipe S3→S3",
    "naive_s3": "naive S3→S3",
    "recpipe_local": "recpipe S3→local",
    "yt_dlp": "yt-dlp",
}


def helper_cpu(name: str, trials: Trials, helper: str) -> Result:
    """CPU seconds ``helper`` used during the median recpipe S3 → S3 run, the other sides beside it."""
    try:
        value = trials.median("recpipe_s3", lambda m: m.watched[helper])
    except LookupError as err:
        return failure(name, str(err))
    others = [
        f"{label} {trials.median(side, lambda m: m.watched[helper]):.2f}"
        for side, label in SIDES.items()
        if trials.count(side)
    ]
    return result(name, value, f"{helper} cpu-s per run with " + ", ".join(others))


def measure_link(bench: Bench, *, url: str, watch: Mapping[str, int], repeat: int) -> Trials:
    """Every side of a link's comparisons: recpipe and naive ``repeat`` times, interleaved; yt-dlp once."""
    rec, work, env = bench.recording, bench.work, bench.env
    aws = str(bench.tools / "bin" / "aws")
    source = f"s3://{BUCKET}/rec/"
    s3 = ["--endpoint-url", url, "--only-show-errors"]

    def naive() -> list[Measured]:
        local = fresh(work / "naive")
        steps = run_steps(
            [
                [aws, "s3", "cp", "--recursive", source, str(local), *s3],
                ffmpeg_copy(bench.ffmpeg, local / rec.playlist.name, local / "out.mp4", faststart=True),
                [aws, "s3", "cp", str(local / "out.mp4"), f"s3://{BUCKET}/out-naive/out.mp4", *s3],
            ],
            env=env,
            watch=watch,
        )
        fresh(local)
        return [total(steps), total(steps[:2]), *steps]

    def yt_dlp() -> list[Measured]:
        target = fresh(work / "yt") / "out.mp4"
        playlist = f"{url}/{BUCKET}/rec/{rec.playlist.name}"
        argv = [str(bench.tools / "bin" / "yt-dlp"), "--quiet", "--no-progress",
                "--ffmpeg-location", bench.ffmpeg, "-o", str(target), playlist]  # fmt: skip
        return [run(argv, env=env, watch=watch)]

    trials = Trials()
    for _ in range(repeat):
        to_s3 = recpipe_argv(source, f"s3://{BUCKET}/out-recpipe/", rec, endpoint=url)
        trials.run(["recpipe_s3"], command(to_s3, env=env, watch=watch))
        trials.run(["naive_s3", "naive_local", *STEPS], naive)
        to_local = recpipe_argv(source, str(fresh(work / "recpipe")), rec, endpoint=url)
        trials.run(["recpipe_local"], command(to_local, env=env, watch=watch))
    trials.run(["yt_dlp"], yt_dlp)
    return trials


def compare_link(
    bench: Bench,
    name: str,
    *,
    url: str,
    watch: Mapping[str, int],
    repeat: int,
    timeline: Path | None,
    link: Link | None = None,
) -> list[Result]:
    """Every comparison over one link (the S3 server reached at ``url``, logging to ``timeline``;
    ``link``: the modelled link in between, None on loopback)."""
    trials = measure_link(bench, url=url, watch=watch, repeat=repeat)
    results = [
        ratio(f"{name}.s3_to_s3", trials, ("recpipe_s3", "naive_s3"), parts=list(STEPS)),
        ratio(f"{name}.s3_to_local", trials, ("recpipe_local", "naive_local")),
        ratio(f"{name}.cpu_s3_to_s3", trials, ("recpipe_s3", "naive_s3"), cpu=True, parts=list(STEPS)),
        ratio(f"{name}.cpu_s3_to_local", trials, ("recpipe_local", "naive_local"), cpu=True),
        ratio(f"{name}.vs_yt_dlp", trials, ("recpipe_local", "yt_dlp"), labels="recpipe yt-dlp"),
    ]
    helpers = [helper_cpu(f"{name}.{role}_cpu", trials, helper) for role, helper in ROLES if helper in watch]
    floors = [cpu_floor(f"{name}.s3_to_s3_floor", trials)]
    if timeline is not None:
        floors.append(serial_floor(f"{name}.s3_to_s3_floor_serial", trials, timeline))
    if timeline is not None and link is not None:
        mp4 = sum(p.stat().st_size for p in (bench.work / "recpipe").rglob("*.mp4")) or bench.recording.bytes
        floors.append(
            transfer_floor(
                f"{name}.s3_to_local_floor",
                trials,
                timeline,
                link=link,
                size=bench.recording.bytes,
                finish_seconds=publish_seconds(mp4, work=bench.work),
            )
        )
    return [*results, *floors, *helpers]


def cpu_floor(name: str, trials: Trials) -> Result:
    """The least wall time recpipe S3 → S3 could take on this machine, against naive: the CPU seconds its
    median run used, with the S3 server's and the proxy's meanwhile (they share the cores), spread
    perfectly over every core, start-up and tail included (a reference line)."""
    cores = len(os.sched_getaffinity(0))
    try:
        busy = trials.median("recpipe_s3", lambda m: m.cpu + sum(m.watched.values()))
        naive = trials.median("naive_s3", lambda m: m.seconds)
    except LookupError as err:
        return failure(name, str(err))
    detail = (
        f"{busy:.2f} cpu-s (recpipe, S3 server, proxy) over {cores} cores: {busy / cores:.2f} s at best, "
        f"naive {naive:.2f} s"
    )
    return result(name, busy / cores / naive, detail)


Timed = tuple[Measured, Serial]
"""A run and its stretches on the S3 server's timeline."""


def on_timeline(
    trials: Trials, timeline: Path, *, side: str, naive: str, what: str
) -> tuple[float, list[Timed]]:
    """The median seconds of the ``naive`` side, and each run of ``side`` with its stretches on the S3
    server's ``timeline`` (a run without a slice GET there is left out).

    :param what: what ``side`` runs, for the error when none of its runs is on the timeline.
    :raises LookupError: a side has no runs (the reason its runs failed), or no run of ``side`` is on the
        timeline; ``OSError``: no timeline.
    """
    seconds = trials.median(naive, lambda m: m.seconds)
    lines = timeline.read_text().splitlines()
    runs = [(one, serial_stretches(lines, start=one.started_at, end=one.ended_at)) for one in trials.of(side)]
    found = [(one, stretches) for one, stretches in runs if stretches is not None]
    if not found:
        raise LookupError(f"no {what} run with a slice GET in the S3 server's timeline")
    return seconds, found


def serial_floor(name: str, trials: Trials, timeline: Path) -> Result:
    """``cpu_floor`` with each recpipe S3 → S3 run's single-core stretches (``tests.bench.serial``): the
    median of the runs' bounds against the naive median (a reference line)."""
    cores = len(os.sched_getaffinity(0))
    try:
        naive, runs = on_timeline(
            trials, timeline, side="recpipe_s3", naive="naive_s3", what="recpipe S3 → S3"
        )
    except (LookupError, OSError) as err:
        return failure(name, str(err))
    bounds = [
        (s.bound(busy=one.cpu + sum(one.watched.values()), cores=cores), s, one.seconds) for one, s in runs
    ]
    bound, stretches, seconds = sorted(bounds, key=lambda b: b[0])[len(bounds) // 2]  # a run's own numbers
    detail = (
        f"at most one core busy {stretches.seconds:.2f} s (start-up to the first slice GET "
        f"{stretches.startup:.2f} s, CompleteMultipartUpload {stretches.complete:.2f} s), the rest spread "
        f"over {cores} cores: {bound:.2f} s at best, that run took {seconds:.2f} s; naive {naive:.2f} s; "
        f"median of {len(bounds)} runs"
    )
    return result(name, bound / naive, detail)


def transfer_floor(
    name: str, trials: Trials, timeline: Path, *, link: Link, size: int, finish_seconds: float
) -> Result:
    """The least each recpipe S3 → local run could take over ``link``, against the naive median (a
    reference line): its own start-up to the first slice GET (from the S3 server's timeline), the
    answer's way back (half the RTT), the recording's ``size`` bytes at the link's total bandwidth,
    then the MP4 written out as recpipe publishes it (``finish_seconds``), which can only start after
    the last byte: the file begins with the moov, built from every sample."""
    try:
        naive, runs = on_timeline(
            trials, timeline, side="recpipe_local", naive="naive_local", what="recpipe S3 → local"
        )
    except (LookupError, OSError) as err:
        return failure(name, str(err))
    back = link.rtt_ms / 2000
    transfer = size / (link.total_mbps * MB)
    bounds = sorted((s.startup + back + transfer + finish_seconds, s.startup, one.seconds) for one, s in runs)
    bound, startup, seconds = bounds[len(bounds) // 2]  # a run's own numbers
    detail = (
        f"start-up to the first slice GET {startup:.2f} s, its answer's way back {back * 1000:.0f} ms, "
        f"{size / MB:.0f} MB at {link.total_mbps:g} MB/s {transfer:.2f} s, the MP4 copied, hashed and "
        f"synced {finish_seconds:.2f} s: {bound:.2f} s at best, that run took {seconds:.2f} s; "
        f"naive {naive:.2f} s; median of {len(bounds)} runs"
    )
    return result(name, bound / naive, detail)


def publish_seconds(size: int, *, work: Path) -> float:
    """Seconds this machine takes to publish ``size`` bytes of MP4 on local disk as recpipe does
    (``faststart.write`` with ``sync``: copied inside the kernel from a file in the page cache, hashed
    beside the copy, on disk when it returns), as one range with no moov to build: the best of three."""
    source, copy = work / "publish-source.bin", work / "publish-copy.bin"
    block = hashlib.sha256(b"recpipe").digest() * (1024 * 1024 // 32)  # not zeros: nothing special-cased
    try:
        with source.open("wb") as f:
            for _ in range(size // len(block)):
                f.write(block)
            f.write(block[: size % len(block)])
            f.flush()
            os.fsync(f.fileno())  # in the page cache, clean: as ffmpeg's file is once written back
        layout = Layout(head=b"", ranges=((0, size),))
        best = float("inf")
        for _ in range(3):
            copy.unlink(missing_ok=True)
            with copy.open("xb") as out:
                best = min(best, timed(lambda: write(layout, src=source, dest=out, sync=True)))
        return best
    finally:
        source.unlink(missing_ok=True)
        copy.unlink(missing_ok=True)


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


ROLES = (("server", "moto"), ("proxy", "proxy"))


def compare_s3(bench: Bench, *, links: Sequence[str], repeat: int, slow_repeat: int) -> list[Result]:
    """Every comparison against the S3 server, on each link in ``links``."""
    results: list[Result] = []
    with s3_server(bench.work / "s3-timeline.log") as server:
        upload(bench.recording, endpoint=server.url, prefix="rec/")
        results.append(diagnose_reader(bench, endpoint=server.url))
        results += guard("profile", functools.partial(profile_steps, bench, endpoint=server.url))
        if LOOPBACK in links:
            print(f"link {LOOPBACK}: the S3 server directly, no proxy (runs: {repeat})", flush=True)
            results += compare_link(
                bench, LOOPBACK, url=server.url, watch={"moto": server.pid}, repeat=repeat,
                timeline=server.timeline,
            )  # fmt: skip
            memory = functools.partial(compare_s3_memory, bench, url=server.url)
            results += guard("memory_s3_to_s3_mb", memory)
        for link in LINKS:
            if link.name in links:
                proxied = functools.partial(compare_proxied, bench, link, server, repeat, slow_repeat)
                results += guard(link.name, proxied)
    return results


def compare_proxied(bench: Bench, link: Link, server: Service, repeat: int, slow_repeat: int) -> list[Result]:
    """The comparisons over ``link``: the S3 server behind the proxy."""
    runs = slow_repeat if link.rtt_ms >= SLOW_RTT_MS else repeat
    print(f"link {link.describe()} (runs: {runs})", flush=True)
    with running(link, upstream=server.url.removeprefix("http://")) as proxy:
        watch = {"moto": server.pid, "proxy": proxy.pid}
        return compare_link(
            bench, link.name, url=proxy.url, watch=watch, repeat=runs, timeline=server.timeline, link=link
        )


def profile_steps(bench: Bench, *, endpoint: str) -> list[Result]:
    """Where recpipe's CPU goes, step by step (``tests.bench.profile``; reference lines)."""
    print("profile: each step of recpipe S3 → S3 on its own, loopback", flush=True)
    recording = bench.recording.directory
    return profile_results(endpoint=endpoint, bucket=BUCKET, prefix="rec/", recording=recording,
                           ffmpeg=bench.ffmpeg, env=dict(bench.env))  # fmt: skip


def diagnose_reader(bench: Bench, *, endpoint: str) -> Result:
    """The TS reader's speed against fetching from the S3 server (a reference line, never a failure)."""
    try:
        speed = reader.measure(bench.ffmpeg, endpoint=endpoint)
    except Exception as err:  # a diagnostic: report it, run the rest
        return failure("ts_reader", err)
    return result(
        "ts_reader", speed.fetch_s / speed.read_s, f"reader speed / fetch speed; {speed.describe()}"
    )


def compare_local(bench: Bench, *, repeat: int) -> list[Result]:
    """recpipe on local files against bare ffmpeg (no upload, no faststart), and the floor of a local run
    (``tests.bench.floor``: what every run must do beyond bare ffmpeg, one step after another), all
    interleaved."""
    one, work, env = bench.recording, bench.work, bench.env
    bare = ffmpeg_copy(bench.ffmpeg, one.playlist, work / "bare.mp4")
    trials = Trials()
    for _ in range(repeat):
        ours = recpipe_argv(str(one.directory), str(fresh(work / "ours")), one, endpoint=None)
        trials.run(["recpipe"], command(ours, env=env))
        trials.run(["ffmpeg"], command(bare, env=env))
        floor = [sys.executable, str(FLOOR), str(one.playlist.parent), str(fresh(work / "floor"))]
        trials.run(["floor"], command(floor, env=env, mkdir=True))
    return [
        ratio("vs_ffmpeg_local", trials, ("recpipe", "ffmpeg"), labels="recpipe ffmpeg"),
        ratio("local_floor", trials, ("floor", "ffmpeg"), labels="floor ffmpeg"),
        ratio("vs_local_floor", trials, ("recpipe", "floor"), labels="recpipe floor"),
    ]


def compare_s3_memory(bench: Bench, *, url: str) -> list[Result]:
    """Peak RSS of recpipe's process tree S3 → S3 (slices in flight, parts uploading): one run."""
    argv = recpipe_argv(f"s3://{BUCKET}/rec/", f"s3://{BUCKET}/out-memory/", bench.recording, endpoint=url)
    peak = run(argv, env=bench.env, memory=True).peak_rss / MB
    return [result("memory_s3_to_s3_mb", peak, "peak RSS of recpipe + ffmpeg, S3 → S3 on loopback, 1 run")]


def compare_memory(bench: Bench, *, hours: float, long_hours: float, repeat: int) -> list[Result]:
    """Peak RSS of recpipe's process tree on local files, for the recording and a longer one."""
    long, built = cached(bench.cache, hours=long_hours, ffmpeg=bench.ffmpeg)
    if built is not None:
        print(f"long recording: {long.slices} slices, {long.bytes / MB:.0f} MB, built in {built:.1f} s")
    trials = Trials()
    for side, recording in (("short", bench.recording), ("long", long)):
        for _ in range(repeat):
            argv = recpipe_argv(
                str(recording.directory), str(fresh(bench.work / "mem")), recording, endpoint=None
            )
            trials.run([side], command(argv, env=bench.env, memory=True))
    try:
        short_mb, long_mb = (trials.median(side, lambda m: m.peak_rss / MB) for side in ("short", "long"))
    except LookupError as err:
        return [failure("memory_1h_mb", str(err)), failure("memory_4h_vs_1h", str(err))]
    detail = f"peak RSS of recpipe + ffmpeg, {hours:g} h recording, median of {trials.count('short')}"
    return [
        result("memory_1h_mb", short_mb, detail),
        result("memory_4h_vs_1h", long_mb / short_mb, f"{long_mb:.0f} MB for {long_hours:g} h, "
               f"{short_mb:.0f} MB for {hours:g} h"),
    ]  # fmt: skip


def guard(name: str, compare: Callable[[], list[Result]]) -> list[Result]:
    """``compare()``'s results, or one ERROR line for ``name`` if it raised (the benchmark goes on)."""
    try:
        return compare()
    except Exception as err:  # whatever broke, report it and run the other comparisons
        log.debug("%s failed", name, exc_info=True)
        return [failure(name, err)]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--tools", type=Path, default=Path(".bench/tools"), help="virtualenv with awscli, yt-dlp"
    )
    parser.add_argument("--cache", type=Path, default=Path(".bench/cache"), help="where recordings are kept")
    parser.add_argument("--work", type=Path, default=None, help="scratch directory (default: system temp)")
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--long-hours", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=5, help="runs per timing; the median is used")
    parser.add_argument("--memory-repeat", type=int, default=3, help="runs per peak-memory measurement")
    parser.add_argument("--slow-repeat", type=int, default=5, help=f"runs on links of ≥ {SLOW_RTT_MS} ms RTT")
    parser.add_argument("--links", default=",".join([LOOPBACK, *(link.name for link in LINKS)]),
                        help="comma-separated links to measure (none: only the local checks)")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    ffmpeg = find_ffmpeg(os.environ)
    env = bench_env(ffmpeg)
    compile_recpipe()
    os.environ.update(
        {k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    )
    print(f"machine: {os.cpu_count()} cores; ffmpeg: {ffmpeg} ({ffmpeg_version(ffmpeg)})", flush=True)
    one, built = cached(args.cache, hours=args.hours, ffmpeg=ffmpeg)
    how = f"built in {built:.1f} s" if built is not None else "cached"
    print(f"recording: {one.slices} slices, {one.bytes / MB:.0f} MB ({how})", flush=True)
    links = [name for name in args.links.split(",") if name]
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="recpipe-bench-", dir=args.work) as tmp:
        bench = Bench(
            recording=one, ffmpeg=ffmpeg, env=env, tools=args.tools, cache=args.cache, work=Path(tmp)
        )
        results += guard(
            "s3", lambda: compare_s3(bench, links=links, repeat=args.repeat, slow_repeat=args.slow_repeat)
        )
        results += guard("vs_ffmpeg_local", lambda: compare_local(bench, repeat=args.repeat))
        results += guard("memory", lambda: compare_memory(bench, hours=args.hours, long_hours=args.long_hours,
                                                           repeat=args.memory_repeat))  # fmt: skip
    for line in summary(results, seconds=time.perf_counter() - started):
        print(line)
    return 1 if failed(results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
