"""Prometheus metrics over real HTTP on 127.0.0.1: what a finished job adds, and the exposition."""

from __future__ import annotations

import urllib.request

from pipeline.fleet.jobs import Outcome
from pipeline.fleet.metrics import Metrics


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_jobs_bytes_retries_and_lag_are_exposed():
    metrics = Metrics()
    port = metrics.serve(0, host="127.0.0.1")
    report = {"status": "ok", "segments": {"bytes": 1000}, "outputs": [{"bytes": 700}], "retries": 2}
    metrics.job_done(Outcome(exit_code=0, report=report), seconds=12.0)
    metrics.job_done(Outcome(exit_code=1, error_type="StorageError", error="down"), seconds=1.0)
    metrics.messages.labels(verdict="delete").inc()
    metrics.receive_lag.observe(3.0)
    metrics.in_flight.inc()
    got = scrape(port)
    assert got['recpipe_jobs_total{outcome="ok"}'] == 1
    assert got['recpipe_jobs_total{outcome="error"}'] == 1
    assert got["recpipe_job_duration_seconds_count"] == 2
    assert got["recpipe_job_duration_seconds_sum"] == 13.0
    assert got["recpipe_fetched_bytes_total"] == 1000
    assert got["recpipe_published_bytes_total"] == 700
    assert got["recpipe_storage_retries_total"] == 2
    assert got['recpipe_messages_total{verdict="delete"}'] == 1
    assert got["recpipe_queue_receive_lag_seconds_count"] == 1
    assert got["recpipe_jobs_in_flight"] == 1


def test_each_process_counts_on_its_own():
    one, two = Metrics(), Metrics()
    one.jobs.labels(outcome="ok").inc()
    assert two.registry.get_sample_value("recpipe_jobs_total", {"outcome": "ok"}) is None
    assert one.registry.get_sample_value("recpipe_jobs_total", {"outcome": "ok"}) == 1
