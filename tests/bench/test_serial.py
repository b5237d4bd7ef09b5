"""The single-core stretches of a run (``tests.bench.serial``), and the S3 server's timeline they are read
from (``tests.bench.s3server --timeline``, run as ``make bench`` runs it)."""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import pytest

from pipeline.storage.s3 import make_s3_client
from tests.bench.link import Link
from tests.bench.measure import Measured
from tests.bench.report import Trials
from tests.bench.run import publish_seconds, s3_server, serial_floor, transfer_floor
from tests.bench.serial import Serial, request_kind, serial_stretches


@pytest.mark.parametrize(
    ("method", "path", "query", "kind"),
    [
        ("GET", "/bench/rec/a_b_20260302140000000.ts", "X-Amz-Signature=x", "get"),
        ("GET", "/bench/rec/a_b.m3u8", "", None),
        ("HEAD", "/bench/rec/a_b_20260302140000000.ts", "", None),
        ("POST", "/bench/out/a_b_0.mp4", "uploadId=abc", "complete"),
        ("POST", "/bench/out/a_b_0.mp4", "uploads", None),  # CreateMultipartUpload
        ("PUT", "/bench/out/a_b_0.mp4", "partNumber=1&uploadId=abc", None),
    ],
)
def test_which_requests_are_logged(method: str, path: str, query: str, kind: str | None) -> None:
    assert request_kind(method, path, query) == kind


def test_the_stretches_of_one_run_among_others() -> None:
    lines = [
        "get 99.0",  # an earlier run's
        "complete 99.5 99.9",
        "get 101.25",
        "get 101.2",  # answered out of order: the first one counts
        "get 102.0",
        "complete 104.0 104.75",
        "complete 105.0 107.0",  # cut at the run's end
        "get 108.0",  # a later run's
    ]
    stretches = serial_stretches(lines, start=100.0, end=106.0)
    assert stretches is not None
    assert stretches.startup == pytest.approx(1.2)
    assert stretches.complete == pytest.approx(1.75)


def test_overlapping_completions_count_once_and_broken_lines_are_skipped() -> None:
    lines = ["get 100.5", "complete 101.0 102.0", "complete 101.5 102.5", "complete 103.0 103.25",
             "complete 104", "get", "complete 10x.0 104.0", ""]  # fmt: skip
    stretches = serial_stretches(lines, start=100.0, end=110.0)
    assert stretches is not None
    assert stretches.complete == pytest.approx(1.75)


def test_a_run_without_a_slice_get_has_no_bound() -> None:
    assert serial_stretches(["complete 1.0 2.0", "get 9.0"], start=0.0, end=5.0) is None


def test_the_bound_spreads_only_what_is_not_serial() -> None:
    stretches = Serial(startup=0.75, complete=1.25)
    assert stretches.bound(busy=10.0, cores=2) == pytest.approx(2.0 + 8.0 / 2)
    assert stretches.bound(busy=10.0, cores=1) == pytest.approx(10.0)  # one core: the CPU seconds
    assert stretches.bound(busy=1.0, cores=2) == pytest.approx(2.0)  # waiting, not working


@pytest.mark.integration
def test_the_s3_server_logs_slice_gets_and_upload_completions(tmp_path: Path, aws_environment: None) -> None:
    timeline = tmp_path / "timeline.log"
    with s3_server(timeline) as server:  # the benchmark's, not the suite's (tests.moto_server)
        client = make_s3_client(endpoint_url=server.url)
        client.create_bucket(Bucket="bench")
        client.put_object(Bucket="bench", Key="rec/x_20260302140000000.ts", Body=b"G" * 188)
        client.put_object(Bucket="bench", Key="rec/x.m3u8", Body=b"#EXTM3U\n")
        client.get_object(Bucket="bench", Key="rec/x.m3u8")["Body"].read()
        client.get_object(Bucket="bench", Key="rec/x_20260302140000000.ts")["Body"].read()
        upload = client.create_multipart_upload(Bucket="bench", Key="out/x.mp4")["UploadId"]
        part = client.upload_part(
            Bucket="bench", Key="out/x.mp4", UploadId=upload, PartNumber=1, Body=b"m" * 1000
        )
        client.complete_multipart_upload(
            Bucket="bench", Key="out/x.mp4", UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        )  # fmt: skip
        assert client.get_object(Bucket="bench", Key="out/x.mp4")["Body"].read() == b"m" * 1000
    kinds = [line.split()[0] for line in timeline.read_text().splitlines()]
    assert kinds == ["get", "complete"]
    start, end = map(float, timeline.read_text().splitlines()[1].split()[1:])
    assert 0 <= end - start < 5


def test_the_bench_line_bounds_each_run_and_names_a_failed_side(tmp_path: Path) -> None:
    timeline = tmp_path / "timeline.log"
    timeline.write_text("get 101.0\ncomplete 105.0 106.0\nget 201.0\ncomplete 205.0 205.5\n")
    trials = Trials()
    trials.run(["naive_s3"], lambda: [Measured(seconds=10.0, cpu=6.0)])
    for start, busy in ((100.0, 8.0), (200.0, 9.0)):
        one = Measured(
            seconds=6.0, cpu=busy - 1.0, watched={"moto": 1.0}, started_at=start, ended_at=start + 6.5
        )
        trials.run(["recpipe_s3"], functools.partial(list, [one]))
    line = serial_floor("x.s3_to_s3_floor_serial", trials, timeline)
    cores = len(os.sched_getaffinity(0))
    bounds = sorted([2.0 + 6.0 / cores, 1.5 + 7.5 / cores])  # serial: 1 + 1 s, then 1 + 0.5 s
    assert line.value == pytest.approx(bounds[1] / 10.0)

    def broken() -> list[Measured]:
        raise RuntimeError("recpipe exited 1")

    failed = Trials()
    failed.run(["naive_s3"], lambda: [Measured(seconds=10.0, cpu=6.0)])
    failed.run(["recpipe_s3"], broken)
    assert "recpipe exited 1" in (serial_floor("y", failed, timeline).error or "")


def test_the_transfer_floor_is_each_runs_start_up_the_links_transfer_and_the_publish(tmp_path: Path) -> None:
    timeline = tmp_path / "timeline.log"
    timeline.write_text("get 100.5\nget 101.0\nget 200.25\nget 300.75\n")
    trials = Trials()
    trials.run(["naive_local"], lambda: [Measured(seconds=10.0, cpu=6.0)])
    for start in (100.0, 200.0, 300.0):
        one = Measured(seconds=7.0, cpu=3.0, started_at=start, ended_at=start + 7.0)
        trials.run(["recpipe_local"], functools.partial(list, [one]))
    link = Link(name="x", rtt_ms=40, conn_mbps=25, total_mbps=60)
    line = transfer_floor(
        "x.s3_to_local_floor", trials, timeline, link=link, size=300_000_000, finish_seconds=0.2
    )
    assert line.value == pytest.approx((0.5 + 0.02 + 5.0 + 0.2) / 10.0)  # the middle run's start-up
    assert "start-up to the first slice GET 0.50 s, its answer's way back 20 ms" in line.detail
    assert "300 MB at 60 MB/s 5.00 s, the MP4 copied, hashed and synced 0.20 s" in line.detail
    empty = tmp_path / "empty.log"
    empty.write_text("")
    assert "no recpipe S3 → local run" in (
        transfer_floor("y", trials, empty, link=link, size=1, finish_seconds=0.0).error or ""
    )


def test_publish_seconds_scale_with_the_size_and_leave_nothing_behind(tmp_path: Path) -> None:
    small = publish_seconds(32 * 1024 * 1024 + 5, work=tmp_path)
    large = publish_seconds(128 * 1024 * 1024, work=tmp_path)
    assert 0 < small < large
    assert large / small == pytest.approx(4.0, rel=0.6)  # measured twice: the machine's noise
    assert list(tmp_path.iterdir()) == []


@pytest.mark.integration
def test_small_answers_on_a_kept_connection_are_not_held_back(tmp_path: Path, aws_environment: None) -> None:
    """werkzeug writes a response's headers and body apart: without ``TCP_NODELAY`` every small answer
    on a connection in use waited for the client's delayed acknowledgement (43 ms each on loopback)."""
    with s3_server(tmp_path / "timeline.log") as server:
        client = make_s3_client(endpoint_url=server.url)
        client.create_bucket(Bucket="bench")
        client.put_object(Bucket="bench", Key="rec/x.m3u8", Body=b"#EXTM3U\n" * 100)
        client.get_object(Bucket="bench", Key="rec/x.m3u8")["Body"].read()  # the connection is open
        started = time.monotonic()
        for _ in range(10):
            client.get_object(Bucket="bench", Key="rec/x.m3u8")["Body"].read()
        assert time.monotonic() - started < 0.3  # held back: at least 10 × 40 ms
