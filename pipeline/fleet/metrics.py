"""A fleet's Prometheus metrics (``prometheus-client``), served by ``recpipe worker`` and ``recpipe
serve`` on ``--metrics-port``: what a service owner graphs and alerts on.

==================================  =========  ==================================================
metric                              type       what
==================================  =========  ==================================================
recpipe_jobs_total{outcome}         counter    jobs run: the report's status, or ``error`` (no report)
recpipe_job_duration_seconds        histogram  how long a job took
recpipe_fetched_bytes_total         counter    slice bytes read (the reports' ``segments.bytes``)
recpipe_published_bytes_total       counter    output bytes the jobs' reports list (``outputs``)
recpipe_storage_retries_total       counter    storage requests sent again (the reports' ``retries``)
recpipe_messages_total{verdict}     counter    queue messages: deleted, later, retry, dead-letter
recpipe_queue_receive_lag_seconds   histogram  from a message's sending to its receipt
recpipe_jobs_in_flight              gauge      jobs running now
recpipe_notifications_total{result} counter    ``serve``: requests accepted, ignored or refused
==================================  =========  ==================================================

Each process has its own registry (nothing global), so tests and several workers in one process do
not share counts.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

if TYPE_CHECKING:
    from pipeline.fleet.jobs import Outcome

log = logging.getLogger(__name__)

JOB_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)
LAG_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400, 86400)


class Metrics:
    """The metrics of one worker or ``serve`` process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs = Counter(
            "recpipe_jobs", "Jobs run, by outcome (the report's status, or error)", ["outcome"], registry=r
        )
        self.job_seconds = Histogram(
            "recpipe_job_duration_seconds", "How long a job took", buckets=JOB_BUCKETS, registry=r
        )
        self.fetched = Counter("recpipe_fetched_bytes", "Slice bytes read", registry=r)
        self.published = Counter("recpipe_published_bytes", "Output bytes written", registry=r)
        self.retries = Counter("recpipe_storage_retries", "Storage requests sent again", registry=r)
        self.messages = Counter(
            "recpipe_messages", "Queue messages, by what became of them", ["verdict"], registry=r
        )
        self.receive_lag = Histogram(
            "recpipe_queue_receive_lag_seconds",
            "From a message's sending to its receipt",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("recpipe_jobs_in_flight", "Jobs running now", registry=r)
        self.notifications = Counter(
            "recpipe_notifications", "serve: requests, by what became of them", ["result"], registry=r
        )

    def job_done(self, outcome: Outcome, *, seconds: float) -> None:
        """Count one finished job, from its report when it printed one."""
        self.jobs.labels(outcome=outcome.status or "error").inc()
        self.job_seconds.observe(seconds)
        report: Any = outcome.report or {}
        segments = report.get("segments") if isinstance(report, dict) else None
        if isinstance(segments, dict) and isinstance(segments.get("bytes"), int):
            self.fetched.inc(segments["bytes"])
        outputs = report.get("outputs") if isinstance(report, dict) else None
        if isinstance(outputs, list) and report.get("skipped") is not True:
            self.published.inc(sum(o.get("bytes", 0) for o in outputs if isinstance(o, dict)))
        if isinstance(report, dict) and isinstance(report.get("retries"), int):
            self.retries.inc(report["retries"])

    def serve(self, port: int, *, host: str) -> int:
        """Expose ``/metrics`` on ``host:port`` (0: any free port) in a background thread; the port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        bound_port = int(server.server_address[1])
        log.info("metrics on http://%s:%d/metrics", host, bound_port)
        return bound_port
