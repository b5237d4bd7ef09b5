"""``recpipe worker``: consume storage events and job messages from SQS, one job per recording.

The loop long-polls the queue for as many messages as it has free job slots, runs each message's
recordings (``pipeline.fleet.jobs``) and then, by ``pipeline.fleet.jobs.decide``: deletes the message (done,
or nothing to do), returns it after a delay (still recording, or another recpipe holds the
recording), returns it after a growing back-off (an error worth retrying; after the queue's
``maxReceiveCount`` SQS moves it to the dead-letter queue), or moves it to the dead-letter queue at
once (a message recpipe cannot understand, or a recording that never finished).

While a job runs, a heartbeat keeps its message hidden (``ChangeMessageVisibility`` every third of
the visibility timeout), so a long recording is not handed to a second worker. A message is
deleted only after its job committed its outputs and report. On SIGTERM the worker takes no new
messages, gives running jobs ``grace_s`` to finish, then stops them cleanly (their uploads aborted,
their leases released) and returns their messages to the queue at once.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace

from pipeline.fleet.jobs import Action, JobSpec, Outcome, decide, run_subprocess
from pipeline.fleet.metrics import Metrics
from pipeline.fleet.queues import Message, Queue, open_queue
from pipeline.fleet.triggers import JobOptions, Trigger, parse_message
from pipeline.model.exceptions import MessageError, PipelineError
from pipeline.model.logs import bound
from pipeline.run.app import playlist_etag

log = logging.getLogger(__name__)

Runner = Callable[[JobSpec, threading.Event], Outcome]
"""Runs one job; stops it cleanly when the event is set."""
Probe = Callable[[str], str | None]
"""The current ETag of the playlist at a location (None if it cannot be told)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerSettings:
    """How the worker behaves (the ``recpipe worker`` options)."""

    concurrency: int = 2
    wait_s: int = 20
    visibility_s: int = 300
    pending_delay_s: int = 60
    retry_delay_s: float = 15.0
    """First back-off after a failed job; doubled on every receive (SQS's redrive ends it)."""
    max_pending_age_s: float = 24 * 3600.0
    idle_exit_s: float | None = None
    grace_s: float = 30.0
    buckets: frozenset[str] = frozenset()
    """When set, events and jobs for any other bucket are refused (dead-lettered), not processed."""
    recordings: str | None = None
    """Where the recorder writes: the location for recorder notifications, which name only a sid."""
    max_receives: int = 5
    """An Azure Storage Queue's redrive: receives before a message goes to ``<queue>-poison`` (an SQS
    queue's is its redrive policy's ``maxReceiveCount``)."""
    endpoint_url: str | None = None
    defaults: JobOptions = field(default_factory=JobOptions)
    """dest, policy, avFileType and profile for events (job messages bring their own)."""


@dataclass(slots=True)
class Stats:
    """What the worker did."""

    messages: int = 0
    deleted: int = 0
    returned: int = 0
    dead_lettered: int = 0


@dataclass(slots=True)
class InFlight:
    message: Message
    cancel: threading.Event
    hidden_at: float


def spec_for(trigger: Trigger, *, settings: WorkerSettings) -> JobSpec | None:
    """The job for a trigger, with the worker's defaults where an event says nothing."""
    location = trigger.location or settings.recordings
    if location is None:
        return None
    options = trigger.options if trigger.origin == "job" else settings.defaults
    if trigger.origin == "job" and options.profile is None and settings.defaults.profile is not None:
        options = replace(options, profile=settings.defaults.profile)
    if trigger.backuped_at is not None:
        options = replace(options, backuped_at=trigger.backuped_at)
    return JobSpec(
        location=location,
        sid=trigger.sid,
        endpoint_url=settings.endpoint_url,
        options=options,
        head_start=False,
    )


def outside_buckets(trigger: Trigger, buckets: frozenset[str]) -> str | None:
    """Why a trigger names a bucket (an Azure container) this worker does not serve, or None."""
    if not buckets or trigger.location is None:
        return None
    if trigger.location.startswith("s3://"):
        bucket = trigger.location.removeprefix("s3://").partition("/")[0]
    elif trigger.location.startswith("az://"):
        bucket = (*trigger.location.removeprefix("az://").split("/"), "")[1]
    else:
        return None
    if bucket in buckets:
        return None
    return f"{trigger.origin} message for bucket {bucket!r}; this worker serves {', '.join(sorted(buckets))}"


def worst(actions: list[Action]) -> Action:
    """One action for a message with several recordings: retry > dead-letter > later > delete."""
    order = {"retry": 0, "dead-letter": 1, "later": 2, "delete": 3}
    return (
        min(actions, key=lambda a: order[a.verdict])
        if actions
        else Action(verdict="delete", reason="nothing to do")
    )


class Dispatcher:
    """From a message to an action: parse it, run its recordings' jobs, decide (shared with Lambda)."""

    def __init__(
        self,
        *,
        settings: WorkerSettings,
        run: Runner,
        probe: Probe,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self._run = run
        self._probe = probe
        self._clock = clock
        self.jobs = 0
        self.metrics = metrics

    def action_for(self, message: Message, *, cancel: threading.Event) -> Action:
        """Run the message's recordings; what the message becomes."""
        try:
            parsed = parse_message(message.body)
        except MessageError as err:
            return Action(verdict="dead-letter", reason=str(err))
        for reason in parsed.ignored:
            log.debug("message %s: ignored %s", message.id, reason)
        actions = []
        for trigger in parsed.triggers:
            foreign = outside_buckets(trigger, self.settings.buckets)
            if foreign:
                actions.append(Action(verdict="dead-letter", reason=foreign))
                continue
            spec = spec_for(trigger, settings=self.settings)
            if spec is None:
                actions.append(
                    Action(
                        verdict="dead-letter",
                        reason="a recorder notification, but no --recordings location is set",
                    )
                )
                continue
            actions.append(self.job(trigger, spec, message=message, cancel=cancel))
            if cancel.is_set():
                break
        return worst(actions)

    def job(self, trigger: Trigger, spec: JobSpec, *, message: Message, cancel: threading.Event) -> Action:
        """Run one recording's job (and the other spellings of its key, if need be); the action."""
        self.jobs += 1
        with bound(recording=trigger.label, sid=trigger.sid):
            return self._job(trigger, spec, message=message, cancel=cancel)

    def _job(self, trigger: Trigger, spec: JobSpec, *, message: Message, cancel: threading.Event) -> Action:
        started = time.monotonic()
        if self.metrics is not None:
            self.metrics.in_flight.inc()
        try:
            outcome = self._run(spec, cancel)
        finally:
            if self.metrics is not None:
                self.metrics.in_flight.dec()
        for other in trigger.alternatives:  # another spelling of the key, when the first holds nothing
            if outcome.error_type != "RecordingNotFound" or cancel.is_set():
                break
            outcome = self._run(replace(spec, location=other), cancel)
        superseded = False
        if outcome.status == "pending" and trigger.from_slice:
            superseded = "NO_ENDLIST" in outcome.codes  # still recording: the playlist's events follow
        elif outcome.status == "pending" and trigger.etag is not None:
            current = self._probe(spec.location)
            superseded = current is not None and current != trigger.etag
        action = decide(
            outcome,
            receive_count=message.receive_count,
            age_s=self._clock() - message.since,
            pending_delay_s=self.settings.pending_delay_s,
            max_pending_age_s=self.settings.max_pending_age_s,
            superseded=superseded,
            retry_base_s=self.settings.retry_delay_s,
        )
        log.info("%s: %s → %s (%s)", trigger.label, outcome.describe(), action.verdict, action.reason)
        if self.metrics is not None:
            self.metrics.job_done(outcome, seconds=time.monotonic() - started)
        return action


class Worker:
    """One worker process's loop over one queue."""

    def __init__(
        self,
        queue: Queue,
        *,
        dispatcher: Dispatcher,
        dead_letters: Queue | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue = queue
        self.dispatcher = dispatcher
        self.settings = dispatcher.settings
        self._dead = dead_letters
        self._clock = clock
        self._inflight: dict[str, InFlight] = {}
        self._lock = threading.Lock()
        self.stats = Stats()

    def serve(self, stop: threading.Event) -> Stats:
        """Work until ``stop`` is set (or the queue stays empty for ``idle_exit_s``)."""
        s = self.settings
        done = threading.Event()
        heartbeat = threading.Thread(
            target=self._heartbeat, args=(done,), name="recpipe-heartbeat", daemon=True
        )
        heartbeat.start()
        stopper = threading.Thread(
            target=self._stopper, args=(stop, done), name="recpipe-stopper", daemon=True
        )
        stopper.start()
        idle_since = self._clock()
        with ThreadPoolExecutor(s.concurrency, thread_name_prefix="recpipe-job") as pool:
            running: set[Future[None]] = set()
            while not stop.is_set():
                running = {f for f in running if not f.done()}
                free = s.concurrency - len(running)
                if free <= 0:
                    wait(running, timeout=1.0, return_when=FIRST_COMPLETED)
                    continue
                try:
                    messages = self.queue.receive(most=free, wait_s=s.wait_s, visibility_s=s.visibility_s)
                except PipelineError as err:
                    log.error("cannot receive from %s: %s (trying again)", self.queue.name, err)
                    stop.wait(5.0)
                    continue
                if stop.is_set():  # SIGTERM during the long poll: hand these straight back
                    for message in messages:
                        self.queue.hide(message, 0)
                    break
                if messages:
                    idle_since = self._clock()
                elif (
                    not running and s.idle_exit_s is not None and self._clock() - idle_since >= s.idle_exit_s
                ):
                    log.info("no messages for %.0f s: stopping", s.idle_exit_s)
                    break
                elif running:
                    idle_since = self._clock()
                for message in messages:
                    self.stats.messages += 1
                    if self.dispatcher.metrics is not None:
                        self.dispatcher.metrics.receive_lag.observe(max(self._clock() - message.sent_at, 0.0))
                    flight = InFlight(message=message, cancel=threading.Event(), hidden_at=self._clock())
                    with self._lock:
                        self._inflight[message.id] = flight
                    running.add(pool.submit(self._handle, flight))
            self._wind_down(running)
        done.set()
        heartbeat.join()
        stopper.join()
        return self.stats

    def _wind_down(self, running: set[Future[None]]) -> None:
        """Wait for running jobs (``_stopper`` stops them once their grace is over)."""
        if running:
            log.info("stopping: %d running job(s) get up to %.0f s", len(running), self.settings.grace_s)
            wait(running)

    def _stopper(self, stop: threading.Event, done: threading.Event) -> None:
        """From the moment ``stop`` is set, give running jobs ``grace_s``, then stop them (their
        messages return to the queue at once)."""
        while not stop.wait(0.05):
            if done.is_set():
                return
        if done.wait(self.settings.grace_s):
            return
        with self._lock:
            flights = list(self._inflight.values())
        for flight in flights:
            flight.cancel.set()

    def _heartbeat(self, done: threading.Event) -> None:
        """Keep in-flight messages hidden while their jobs run (until every job has ended)."""
        every = max(self.settings.visibility_s / 3, 1.0)
        while not done.wait(min(every, 5.0)):
            now = self._clock()
            with self._lock:
                due = [f for f in self._inflight.values() if now - f.hidden_at >= every]
            for flight in due:
                try:
                    self.queue.hide(flight.message, self.settings.visibility_s)
                    flight.hidden_at = now
                except PipelineError as err:
                    log.warning("cannot extend message %s: %s", flight.message.id, err)

    def _handle(self, flight: InFlight) -> None:
        message = flight.message
        try:
            action = self.dispatcher.action_for(message, cancel=flight.cancel)
            if flight.cancel.is_set():
                action = Action(verdict="later", seconds=0, reason="the worker is stopping")
                log.info("message %s returns to the queue: the worker is stopping", message.id)
            self._apply(message, action)
        except Exception:  # one bad message must not stop the worker
            log.exception("message %s: unexpected error; it returns to the queue", message.id)
        finally:
            with self._lock:
                self._inflight.pop(message.id, None)

    def _apply(self, message: Message, action: Action) -> None:
        if self.dispatcher.metrics is not None:
            self.dispatcher.metrics.messages.labels(verdict=action.verdict).inc()
        if action.verdict == "delete":
            self.queue.delete(message)
            self.stats.deleted += 1
        elif action.verdict == "later" and action.seconds > 0:  # waiting: a new message, not a retry
            self.queue.send_later(message, seconds=action.seconds)
            self.queue.delete(message)
            self.stats.returned += 1
        elif action.verdict in ("later", "retry"):
            self.queue.hide(message, action.seconds)
            self.stats.returned += 1
        else:
            self._dead_letter(message, action.reason)

    def _dead_letter(self, message: Message, reason: str) -> None:
        if self._dead is None:
            log.error("message %s dropped (the queue has no dead-letter queue): %s", message.id, reason)
        else:
            self._dead.send([message.body])
            log.error("message %s moved to %s: %s", message.id, self._dead.name, reason)
        self.queue.delete(message)
        self.stats.dead_lettered += 1


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerRun:
    """What ``run_worker`` did before it stopped."""

    stats: Stats
    jobs: int


def stop_on_signals(stop: threading.Event, *, grace_s: float) -> None:
    """On SIGTERM or SIGINT (Ctrl-C) set ``stop``: the worker takes no new messages and gives running
    jobs ``grace_s`` to finish."""

    def on_signal(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        log.warning("%s: finishing running jobs (up to %.0f s), taking no new messages", name, grace_s)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)


def run_worker(
    queue_url: str,
    *,
    settings: WorkerSettings,
    environ: Mapping[str, str],
    stop: threading.Event | None = None,
    metrics: Metrics | None = None,
) -> WorkerRun:
    """Consume the queue at ``queue_url`` until ``stop`` is set (by default: until SIGTERM or Ctrl-C),
    or until it has been idle ``settings.idle_exit_s``; each job in a ``recpipe process`` of its own.
    ``metrics``, when given, are counted (``Metrics.serve`` exposes them)."""
    queue = open_queue(
        queue_url, endpoint_url=settings.endpoint_url, environ=environ, max_receives=settings.max_receives
    )
    dead = queue.dead_letter_queue()
    dispatcher = Dispatcher(
        settings=settings,
        run=lambda spec, cancel: run_subprocess(spec, cancel=cancel),
        probe=lambda location: playlist_etag(location, endpoint_url=settings.endpoint_url, environ=environ),
        metrics=metrics,
    )
    if stop is None:
        stop = threading.Event()
        stop_on_signals(stop, grace_s=settings.grace_s)
    log.info(
        "worker on %s: %d job(s) at once; dead-letter queue: %s",
        queue.name,
        settings.concurrency,
        dead.name if dead else "none",
    )
    stats = Worker(queue, dispatcher=dispatcher, dead_letters=dead).serve(stop)
    log.info(
        "worker done: %d message(s), %d job(s), %d deleted, %d returned, %d dead-lettered",
        stats.messages,
        dispatcher.jobs,
        stats.deleted,
        stats.returned,
        stats.dead_lettered,
    )
    return WorkerRun(stats=stats, jobs=dispatcher.jobs)
