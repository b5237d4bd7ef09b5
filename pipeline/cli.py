"""recpipe's command line: the only module that imports click.

Expected errors become ``click.ClickException`` subclasses with distinct exit codes and never
print a traceback; a finished run exits with its status's code (SPEC.md).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from pipeline.model.config import PipelineConfig, load_config
from pipeline.model.exceptions import ConfigError, PipelineError
from pipeline.model.job import ABSENT_CHOICES, BACKUPED_NOW, POLICIES
from pipeline.model.logs import LOG_FORMATS, LOGGERS, LogFormat, setup_logging
from pipeline.model.policy import STATUS_EXIT, exit_code_for
from pipeline.model.progress import NullProgress, Progress, TerminalProgress
from pipeline.model.report import summary_lines
from pipeline.run import collector, interrupts
from pipeline.run.app import (
    Listing,
    Request,
    list_recordings,
    recpipe_version,
    run,
)
from pipeline.run.lease import release_all
from pipeline.run.malloc import limit_malloc_arenas
from pipeline.run.runner import Result
from pipeline.run.show import reports_to_show, write_html
from pipeline.samples.composite import DEFECTS
from pipeline.samples.make import SAMPLE_MODES, describe, make_sample
from stages.ffmpeg import find_ffmpeg

if TYPE_CHECKING:  # imported where they are used: a run loads neither the fleet nor rich's tables
    from rich.console import Console

    from pipeline.fleet.batch import BatchLine
    from pipeline.fleet.metrics import Metrics
    from pipeline.fleet.triggers import JobOptions

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def fail(err: PipelineError, *, as_json: bool) -> NoReturn:
    """Report an expected error (as JSON on stdout with ``--json``) and exit with its code."""
    code = exit_code_for(err)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "error": {"type": type(err).__name__, "message": str(err), "retryable": err.retryable},
                    "exit_code": code,
                }
            )
        )
    else:
        click.echo(f"Error: {err}", err=True)
    sys.exit(code)


def _setup_logging(verbose: int, fmt: LogFormat) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    setup_logging(level=level, fmt=fmt)


def _service_logging() -> None:
    """A long-running service logs what it does (INFO) even without -v."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if logger.level > logging.INFO:
            logger.setLevel(logging.INFO)


METRICS_OPTIONS = (
    click.option(
        "--metrics-port",
        type=click.IntRange(0, 65535),
        help="Serve Prometheus metrics on this port (/metrics): jobs by outcome, job duration, bytes, "
        "retries, queue lag, jobs in flight.",
    ),
    click.option(
        "--metrics-host",
        default="127.0.0.1",
        show_default=True,
        metavar="ADDRESS",
        help="Address for --metrics-port (0.0.0.0 for a scraper outside the container).",
    ),
)


def metrics_options(fn: F) -> F:
    """``--metrics-port`` and ``--metrics-host``."""
    for option in reversed(METRICS_OPTIONS):
        fn = option(fn)
    return fn


def _metrics(port: int | None, host: str) -> Metrics | None:
    """The process's metrics, exposed when a port is given."""
    from pipeline.fleet.metrics import Metrics

    if port is None:
        return None
    metrics = Metrics()
    try:
        metrics.serve(port, host=host)
    except OSError as err:
        fail(ConfigError(f"--metrics-port {port}: {err.strerror or err}"), as_json=False)
    return metrics


def _progress(*, quiet: bool, as_json: bool) -> Progress:
    if quiet or as_json or not sys.stderr.isatty():
        return NullProgress()
    return TerminalProgress(sys.stderr)


def _config(obj: Mapping[str, Any]) -> PipelineConfig:
    return load_config(environ=os.environ, overrides=obj.get("overrides"))


def location_options(fn: F) -> F:
    """``--endpoint-url`` and ``--json``/``--quiet``, shared by every command that reads storage."""
    fn = click.option("--quiet", "-q", is_flag=True, help="Print no progress or summary, only errors.")(fn)
    fn = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")(fn)
    return click.option(
        "--endpoint-url",
        metavar="URL",
        help="S3-compatible endpoint for s3:// locations (default: $AWS_ENDPOINT_URL_S3 or "
        "$AWS_ENDPOINT_URL), or where an az:// account's blobs are served (e.g. Azurite).",
    )(fn)


def recording_options(fn: F) -> F:
    """Options that choose the recording and what to expect of it."""
    decorators = [
        click.option("--sid", help="The recording's session ID, when the location holds several recordings."),
        click.option(
            "--profile",
            type=click.Path(dir_okay=False, path_type=Path),
            help="The start-request JSON (or its clientRequest): expected streams, avFileType, storage.",
        ),
        click.option(
            "--policy",
            type=click.Choice(POLICIES),
            help="strict (default): any error finding fails the recording. "
            "lenient: publish a best-effort MP4 and report the problems (status degraded, exit 3).",
        ),
        click.option(
            "--absent",
            type=click.Choice(ABSENT_CHOICES),
            help="Individual mode: time a user was away (left and came back). keep (default, or "
            "RECPIPE_ABSENT): their MP4 holds the last frame and silence, so positions are time since "
            "they first appeared. cut: it is removed from both streams at once.",
        ),
        click.option(
            "--backuped",
            is_flag=True,
            help='The recorder reported uploadingStatus "backuped": some files are still coming from '
            "Agora's backup cloud. Listed slices not there yet make the recording pending (exit 75), not "
            "failed.",
        ),
        click.option(
            "--backuped-at",
            type=float,
            metavar="UNIX_TIME",
            help="Like --backuped, from when the recorder said so: after RECPIPE_BACKUP_WAIT_SECONDS "
            "(24 h) recpipe stops waiting and missing slices count as missing.",
        ),
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


def backup_option(opts: dict[str, Any]) -> dict[str, Any]:
    """``--backuped`` (now) and ``--backuped-at`` as the request's one ``backuped_at``."""
    backuped = opts.pop("backuped", False)
    if backuped and opts.get("backuped_at") is None:
        opts["backuped_at"] = BACKUPED_NOW
    return opts


def _echo_result(result: Result, *, as_json: bool, quiet: bool, dest_url: str) -> None:
    if as_json:
        click.echo(json.dumps(result.report, indent=2, ensure_ascii=False))
        return
    if quiet:
        return
    for line in summary_lines(result.report):
        click.echo(line)
    if result.job.skipped:
        click.echo("  already processed with the same inputs: nothing written (use --force to redo)")
    if result.report_key:
        click.echo(f"  report   {result.report_key}")
    click.echo(f"  where    {dest_url}")


def _finish(result: Result, *, as_json: bool, quiet: bool, dest_url: str) -> NoReturn:
    _echo_result(result, as_json=as_json, quiet=quiet, dest_url=dest_url)
    sys.exit(STATUS_EXIT[result.job.status or "failed"])


def _run(
    request: Request, *, obj: Mapping[str, Any], as_json: bool, quiet: bool, page: Path | None = None
) -> NoReturn:
    try:
        result = run(
            request,
            config=_config(obj),
            environ=os.environ,
            progress=_progress(quiet=quiet, as_json=as_json),
            own_process=True,
        )
        if page is not None:
            write_html(page, result.report, result.parts)
    except PipelineError as err:
        fail(err, as_json=as_json)
    dest = request.dest or request.location or "(profile storage)"
    _finish(result, as_json=as_json, quiet=quiet, dest_url=dest)


@click.group(
    name="recpipe", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(recpipe_version(), prog_name="recpipe")
@click.option("-v", "--verbose", count=True, help="More logging on stderr (-v info, -vv debug).")
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="text",
    show_default=True,
    envvar="RECPIPE_LOG_FORMAT",
    help="text for a terminal; json for a log pipeline (one object per line: time, level, recording, "
    "sid, stage, message, error).",
)
@click.option("--workers", type=click.IntRange(1, 256), help="Slices fetched concurrently (default 8).")
@click.pass_context
def main(ctx: click.Context, verbose: int, log_format: LogFormat, workers: int | None) -> None:
    """recpipe: turn Agora Cloud Recording HLS output into verified, published MP4s.

    A LOCATION is a local directory (or file:///path), s3://bucket/prefix, or an Azure container
    (az://account/container/prefix or its https:// blob URL). recpipe finds the
    recordings under it by their Agora names (<sid>_<cname>.m3u8 + <sid>_<cname>_<utc>.ts).

    \b
    Exit codes: 0 ok, 3 degraded, 1 failed, 75 pending (still recording),
                4 rejected (unsafe or unreadable input), 2 usage or configuration error.
    """
    _setup_logging(verbose, log_format)
    overrides = {"fetch_workers": workers, "fetch_window": max(16, 2 * workers) if workers else None}
    ctx.obj = {"overrides": overrides}


HTML_OPTION = click.option(
    "--html",
    "page",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the report as a self-contained HTML page: the timeline, findings, MP4s (see show).",
)


@main.command()
@click.argument("location", required=False)
@recording_options
@HTML_OPTION
@click.option("--dest", metavar="LOCATION", help="Where to write outputs (default: beside the recording).")
@click.option("--av-file-type", metavar="LIST", help='Override the profile\'s avFileType, e.g. "hls,mp4".')
@click.option("--force", is_flag=True, help="Process again even if an up-to-date report exists.")
@click.option("--dry-run", is_flag=True, help="Fetch and verify only; write nothing.")
@location_options
@click.pass_obj
def process(obj: Mapping[str, Any], /, location: str | None, **opts: Any) -> None:
    """Fetch, verify, remux (if MP4 is wanted) and publish one recording.

    Slices stream from storage through verification into ffmpeg (stream copy, nothing on disk but
    the MP4). Outputs are named by Agora's conventions (<sid>_<cname>_<index>.mp4; a new MP4 past
    ~2 h or ~2 GB, see RECPIPE_MAX_MP4_SECONDS/_BYTES; ….recpipe.mp4 beside the recorder's own MP4s
    when those do not cover the recording, none when they do) and the report
    <sid>_<cname>.report.json is written last. Under --policy lenient, holes are closed in the MP4
    and listed in the report. Running again with the same inputs writes nothing.
    """
    as_json, quiet, page = opts.pop("as_json"), opts.pop("quiet"), opts.pop("page")
    request = Request(location=location, **backup_option(opts))
    _run(request, obj=obj, as_json=as_json, quiet=quiet, page=page)


@main.command()
@click.argument("location", required=False)
@recording_options
@HTML_OPTION
@location_options
@click.pass_obj
def verify(obj: Mapping[str, Any], /, location: str | None, **opts: Any) -> None:
    """Fetch and verify one recording; write nothing to storage. Same statuses and exit codes as
    process (--html writes the page locally)."""
    as_json, quiet, page = opts.pop("as_json"), opts.pop("quiet"), opts.pop("page")
    request = Request(location=location, publish=False, **backup_option(opts))
    _run(request, obj=obj, as_json=as_json, quiet=quiet, page=page)


@main.command()
@click.argument("target", metavar="LOCATION|REPORT")
@click.option("--sid", help="Which recording, when LOCATION holds several.")
@click.option("--dest", metavar="LOCATION", help="Where the report was written, if not beside the recording.")
@HTML_OPTION
@location_options
@click.pass_obj
def show(obj: Mapping[str, Any], /, target: str, sid: str | None, dest: str | None, page: Path | None,
         endpoint_url: str | None, as_json: bool, quiet: bool) -> None:  # fmt: skip
    """Show a recording's report: from a report file, or from where the recording's outputs are.

    
    --html OUT.html writes one self-contained page (no network): the recording's timeline on
    the wall clock (a block per slice with its name, EXTINF, media duration, bytes and first
    frame; gaps, overlaps, discontinuities and every finding marked; the MP4s as spans), one
    lane per user and stream in individual mode, and the summary (status, counts, durations,
    sizes, timings, tools). Without it, the summary is printed (--json: the report itself).
    """
    try:
        shown = reports_to_show(target, sid=sid, dest=dest, endpoint_url=endpoint_url, environ=os.environ)
        if page is not None:
            write_html(page, shown.report, shown.users)
    except PipelineError as err:
        fail(err, as_json=as_json)
    if as_json:
        click.echo(json.dumps(shown.report, indent=2, ensure_ascii=False))
    elif not quiet:
        for line in summary_lines(shown.report):
            click.echo(line)
        if page is not None:
            click.echo(f"  page     {page}")
        click.echo(f"  from     {shown.where}")


@main.command(name="ls")
@click.argument("location")
@click.option("--dest", metavar="LOCATION", help="Where reports were written, if not beside the recordings.")
@location_options
@click.pass_obj
def ls_command(
    obj: Mapping[str, Any],
    location: str,
    dest: str | None,
    endpoint_url: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """List the recordings under LOCATION: state, slices, duration, mode, sid and cname.

    \b
    States: in-progress (no #EXT-X-ENDLIST yet), complete (finished, not processed),
            processed (report ok/degraded for these inputs), failed, invalid (unreadable playlist).
    """
    try:
        listings = list_recordings(
            location, endpoint_url=endpoint_url, dest=dest, environ=os.environ, config=_config(obj)
        )
    except PipelineError as err:
        fail(err, as_json=as_json)
    if as_json:
        click.echo(json.dumps([item.to_json() for item in listings], indent=2, ensure_ascii=False))
        return
    if not listings and not quiet:
        click.echo(f"no recordings under {location}", err=True)
    if listings and sys.stdout.isatty():
        _ls_table(listings)
        return
    for item in listings:
        rec = item.recording
        who = f"{rec.sid}  {rec.cname}" + (f"  uid {rec.uid} {rec.media or rec.codec}" if rec.uid else "")
        who = who if rec.backup is None else f"{who}  (failover set bak{rec.backup})"
        click.echo(f"{item.state:<12}{item.slices:>6} slices {item.duration_s:>9.1f} s  {rec.mode:<11} {who}")


STATE_STYLE = {
    "processed": "green",
    "complete": "cyan",
    "in-progress": "yellow",
    "failed": "red",
    "invalid": "magenta",
}


def _ls_table(listings: Sequence[Listing], *, console: Console | None = None) -> None:
    """``recpipe ls`` on a terminal: an aligned table, each state in its colour."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name, justify in (("state", "left"), ("slices", "right"), ("duration", "right"), ("mode", "left"),
                          ("sid", "left"), ("cname", "left"), ("user", "left")):  # fmt: skip
        table.add_column(name, justify=justify, min_width=32 if name == "sid" else None)  # type: ignore[arg-type]
    for item in listings:
        rec = item.recording
        user = f"{rec.uid} {rec.media or rec.codec}" if rec.uid else ""
        if rec.backup is not None:
            user = f"{user} (failover bak{rec.backup})".strip()
        table.add_row(
            Text(item.state, style=STATE_STYLE.get(item.state, "")),
            str(item.slices),
            f"{item.duration_s:.1f} s",
            rec.mode,
            rec.sid,
            rec.cname,
            user,
        )
    (console or Console()).print(table)


def _defect_help() -> str:
    return "; ".join(f"{name}: {text}" for name, text in DEFECTS.items())


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--seconds",
    type=click.IntRange(1, 24 * 3600),
    default=45,
    show_default=True,
    help="Length of the recording.",
)
@click.option(
    "--slice-seconds",
    type=click.IntRange(1, 600),
    default=15,
    show_default=True,
    help="Length of each slice (Agora cuts about every 15 s).",
)
@click.option("--cname", default="demo-room", show_default=True, help="Channel name.")
@click.option(
    "--prefix",
    default="recordings",
    show_default=True,
    help="fileNamePrefix directory (inside DIRECTORY) that receives the recording.",
)
@click.option("--defect", type=click.Choice(sorted(DEFECTS)), help=f"Inject one defect. {_defect_help()}")
@click.option(
    "--mode",
    type=click.Choice(SAMPLE_MODES),
    default="composite",
    show_default=True,
    help="individual: two users' audio and video playlists (user 1001 stays 30 s; user 2002 leaves "
    "after 10 s and comes back 8 s later), in 5 s slices; raw: individual recording v2, one audio+video "
    "playlist per user named with its codec (user 1001 for 6 s, 2002 from 2 s to 6 s), in 2 s slices; "
    "failover: 8 s whose second half a resumed recorder wrote as bak0_..., 3 s later; backuped: a main "
    "playlist without its last two slices or #EXT-X-ENDLIST, a snapshot playlist listing them, and the "
    "last slice held back in DIRECTORY-late/ (copy it in to make it arrive). "
    "--seconds and --defect apply to composite samples only.",
)
@click.option(
    "--extinf-comma",
    is_flag=True,
    help="Write #EXTINF:<seconds>, with the comma, as the recorder does when the start request's "
    'privateParams is {"correctEXTINF": true} (by default, its plain #EXTINF:<seconds>).',
)
@click.option("--force", is_flag=True, help="Overwrite a previous sample in the same place.")
def sample(
    directory: Path,
    seconds: int,
    slice_seconds: int,
    cname: str,
    prefix: str,
    defect: str | None,
    mode: str,
    extinf_comma: bool,
    force: bool,
) -> None:
    """Write a synthetic, correctly named composite recording (H.264 + AAC) into DIRECTORY.

    The slices and playlist go to DIRECTORY/PREFIX/ and the matching start-request profile to
    DIRECTORY/start_request.json, ready for: recpipe process DIRECTORY --profile DIRECTORY/start_request.json
    """
    if defect is not None and mode != "composite":
        raise click.UsageError("--defect applies to composite samples only")
    try:
        made = make_sample(
            mode,  # type: ignore[arg-type]  # click.Choice(SAMPLE_MODES)
            directory,
            ffmpeg=find_ffmpeg(os.environ),
            prefix=prefix,
            cname=cname,
            seconds=seconds,
            slice_seconds=slice_seconds,
            defect=defect,
            extinf_comma=extinf_comma,
            force=force,
        )
    except PipelineError as err:
        fail(err, as_json=False)
    for line in describe(made):
        click.echo(line)
    if defect:
        click.echo(f"defect:  {defect} — {DEFECTS[defect]}")


def _job_options(opts: Mapping[str, Any], *, embed_profile: bool) -> JobOptions:
    """dest/policy/avFileType/force/profile from flags, as jobs take them."""
    from pipeline.fleet.settings import job_defaults

    try:
        return job_defaults(
            profile=opts.get("profile"),
            dest=opts.get("dest"),
            policy=opts.get("policy"),
            av_file_type=opts.get("av_file_type"),
            force=bool(opts.get("force")),
            embed_profile=embed_profile,
        )
    except PipelineError as err:
        fail(err, as_json=bool(opts.get("as_json")))


def job_options(fn: F) -> F:
    """The ``process`` flags a fleet passes on to every job."""
    decorators = [
        click.option(
            "--profile",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Start-request JSON for every recording: expected streams and avFileType.",
        ),
        click.option(
            "--dest", metavar="LOCATION", help="Where to write outputs (default: beside each recording)."
        ),
        click.option(
            "--policy", type=click.Choice(POLICIES), help="strict (default) or lenient, as for process."
        ),
        click.option("--av-file-type", metavar="LIST", help='Override avFileType, e.g. "hls,mp4".'),
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


@main.command()
@click.option(
    "--queue",
    "queue_url",
    required=True,
    metavar="URL",
    help="The queue to consume: an SQS queue URL, or an Azure Storage Queue (azq://<account>/<queue> or "
    "https://<account>.queue.core.windows.net/<queue>).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Recordings processed at once (each in its own process).",
)
@click.option(
    "--recordings",
    metavar="LOCATION",
    help="Where the recorder writes (s3://bucket/prefix), for its notifications (they name only a sid).",
)
@click.option(
    "--bucket",
    "buckets",
    multiple=True,
    metavar="NAME",
    help="Serve only events and jobs for this bucket (repeatable); others go to the dead-letter queue.",
)
@job_options
@click.option(
    "--wait",
    "wait_s",
    type=click.IntRange(0, 20),
    default=20,
    show_default=True,
    help="Long-poll seconds per receive.",
)
@click.option(
    "--visibility",
    "visibility_s",
    type=click.IntRange(10, 43200),
    default=300,
    show_default=True,
    help="Seconds a message stays hidden; renewed every third of it while its job runs.",
)
@click.option(
    "--pending-delay",
    "pending_delay_s",
    type=click.IntRange(0, 43200),
    default=60,
    show_default=True,
    help="Seconds before an unfinished (or busy) recording is looked at again.",
)
@click.option(
    "--retry-delay",
    "retry_delay_s",
    type=click.FloatRange(0),
    default=15.0,
    show_default=True,
    help="Seconds before a failed job is tried again; doubled each time, until the queue's redrive count.",
)
@click.option(
    "--max-pending-age",
    "max_pending_age_s",
    type=click.FloatRange(0),
    default=86400.0,
    show_default=True,
    help="Seconds after its event before an unfinished recording goes to the dead-letter queue.",
)
@click.option(
    "--idle-exit",
    "idle_exit_s",
    type=click.FloatRange(0),
    metavar="SECONDS",
    help="Exit after this long with an empty queue and nothing running (default: never).",
)
@click.option(
    "--grace",
    "grace_s",
    type=click.FloatRange(0),
    default=30.0,
    show_default=True,
    help="On SIGTERM, seconds running jobs get before they are stopped and their messages returned.",
)
@click.option(
    "--max-receives",
    type=click.IntRange(1, 1000),
    default=5,
    show_default=True,
    help="Azure Storage Queue: receives before a message goes to <queue>-poison (SQS: set the queue's "
    "redrive policy instead).",
)
@click.option(
    "--endpoint-url", metavar="URL", help="S3/SQS-compatible endpoint (default: AWS, or $AWS_ENDPOINT_URL)."
)
@metrics_options
@click.pass_obj
def worker(obj: Mapping[str, Any], /, queue_url: str, endpoint_url: str | None, metrics_port: int | None,
           metrics_host: str, **opts: Any) -> None:  # fmt: skip
    """Process recordings as their storage events (or job messages) arrive on a queue (SQS, or an
    Azure Storage Queue fed by Event Grid).

    \b
    Accepts on the queue: S3 event notifications (directly, or via SNS), EventBridge
    "Object Created" events, recpipe job messages (recpipe enqueue) and the recorder's
    uploaded/backuped notifications. Only a recording's playlist (<sid>_<cname>.m3u8)
    starts work; a playlist without #EXT-X-ENDLIST comes back after --pending-delay.
    A message is deleted only once its outputs and report are committed; one recpipe
    cannot understand goes to the queue's dead-letter queue. Stop with SIGTERM or Ctrl-C.
    """
    from pipeline.fleet.settings import worker_settings
    from pipeline.fleet.worker import run_worker

    names = ("concurrency", "wait_s", "visibility_s", "pending_delay_s", "retry_delay_s", "max_pending_age_s",
             "idle_exit_s", "grace_s", "max_receives")  # fmt: skip
    settings = worker_settings(
        defaults=_job_options(opts, embed_profile=False),
        endpoint_url=endpoint_url,
        buckets=opts["buckets"],
        recordings=opts["recordings"],
        **{n: opts[n] for n in names},
    )
    _service_logging()
    metrics = _metrics(metrics_port, metrics_host)
    try:
        run_worker(queue_url, settings=settings, environ=os.environ, metrics=metrics)
    except PipelineError as err:
        fail(err, as_json=False)


@main.command()
@click.argument("location")
@click.option(
    "--queue", "queue_url", required=True, metavar="URL", help="The queue workers consume (SQS, or azq://…)."
)
@job_options
@click.option(
    "--force", is_flag=True, help="Ask workers to process again even when an up-to-date report exists."
)
@location_options
@click.pass_obj
def enqueue(
    obj: Mapping[str, Any], /, location: str, queue_url: str, endpoint_url: str | None, **opts: Any
) -> None:
    """Send one job message per recording under LOCATION to the queue (re-processing at scale).

    Each message names one recording's playlist and carries --dest, --policy, --av-file-type,
    --force and the --profile (without storage credentials). Workers skip recordings already
    processed with the same inputs unless --force.
    """
    from pipeline.fleet.batch import enqueue_recordings

    as_json, quiet = opts.pop("as_json"), opts.pop("quiet")
    options = _job_options(opts, embed_profile=True)
    try:
        sent, found = enqueue_recordings(
            location, queue_url=queue_url, options=options, endpoint_url=endpoint_url, environ=os.environ
        )
    except PipelineError as err:
        fail(err, as_json=as_json)
    if as_json:
        click.echo(
            json.dumps({"queue": queue_url, "sent": sent, "recordings": [w for w, _ in found]}, indent=2)
        )
    elif not quiet:
        for where, _ in found:
            click.echo(f"queued   {where}")
        click.echo(
            f"{sent} job message(s) sent to {queue_url}" if sent else f"no recordings under {location}"
        )


@main.command()
@click.argument("location")
@click.option(
    "--workers",
    "jobs",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Recordings processed at once (each in its own process).",
)
@job_options
@click.option("--force", is_flag=True, help="Process again even when an up-to-date report exists.")
@location_options
@click.pass_obj
def batch(obj: Mapping[str, Any], /, location: str, jobs: int, endpoint_url: str | None, **opts: Any) -> None:
    """Process every recording under LOCATION, several at once; skip those already processed.

    \b
    One line per recording as it finishes. Exit code: 1 if any failed, else 4 if any was
    rejected, 3 if any is degraded, 75 if any is still recording, else 0.
    """
    from pipeline.fleet.batch import batch_exit_code, batch_summary, run_batch

    as_json, quiet = opts.pop("as_json"), opts.pop("quiet")

    def show(done: int, total: int, line: BatchLine) -> None:  # one line per finished recording
        if not (quiet or as_json):
            note = "" if line.status else f"  {line.detail}"
            click.echo(f"[{done}/{total}] {line.status or 'error':<9} {line.label}{note}")

    try:
        lines = run_batch(
            location,
            jobs=jobs,
            options=_job_options(opts, embed_profile=False),
            endpoint_url=endpoint_url,
            environ=os.environ,
            on_done=show,
        )
    except PipelineError as err:
        fail(err, as_json=as_json)
    if as_json:
        click.echo(json.dumps([line.to_json() for line in lines], indent=2, ensure_ascii=False))
    elif not quiet:
        click.echo(batch_summary(lines) if lines else f"no recordings under {location}")
    sys.exit(batch_exit_code([line.status for line in lines]))


@main.command()
@click.option(
    "--recordings",
    required=True,
    metavar="LOCATION",
    help="Where the recorder writes (s3://bucket/prefix); notifications name only a sid.",
)
@click.option(
    "--listen",
    default="127.0.0.1:8080",
    show_default=True,
    metavar="HOST:PORT",
    help="Address to listen on (put a TLS-terminating proxy in front of it on the internet).",
)
@click.option(
    "--secret-env",
    default="RECPIPE_NCS_SECRET",
    show_default=True,
    metavar="NAME",
    help="Environment variable holding the notification secret Agora issued.",
)
@click.option(
    "--event-grid-key-env",
    default="RECPIPE_EVENT_GRID_KEY",
    show_default=True,
    metavar="NAME",
    help="Environment variable holding the key Event Grid's webhook URL carries (/eventgrid?key=...).",
)
@click.option(
    "--queue",
    "queue_url",
    metavar="URL",
    help="Send jobs to this SQS queue or Azure Storage Queue (azq://account/queue) for the workers "
    "(default: run them here, one at a time).",
)
@job_options
@click.option("--endpoint-url", metavar="URL", help="S3/SQS-compatible endpoint (default: AWS).")
@metrics_options
@click.pass_obj
def serve(obj: Mapping[str, Any], /, recordings: str, listen: str, secret_env: str, event_grid_key_env: str,
          queue_url: str | None, endpoint_url: str | None, metrics_port: int | None, metrics_host: str,
          **opts: Any) -> None:  # fmt: skip
    """Receive the recorder's webhook notifications and process the recordings they announce.

    \b
    Every notification must carry a valid Agora-Signature-V2 (HMAC-SHA256) or Agora-Signature
    (HMAC-SHA1) of its body, made with the secret in $RECPIPE_NCS_SECRET; others get 401.
    uploaded/backuped notifications become jobs (by sid, under --recordings), sent to --queue or
    run here; duplicates (same noticeId, or the same event for the same sid) are dropped.
    With $RECPIPE_EVENT_GRID_KEY set, POST /eventgrid?key=<it> takes Event Grid deliveries
    (BlobCreated events of Azure Blob Storage, either schema) and answers its validation.
    GET /healthz answers 200 when jobs can be handed on (the queue, or the recordings' storage,
    answers), else 503 with the reason; GET /livez answers 200. Stop with SIGTERM or Ctrl-C.
    """
    from pipeline.fleet.serve import parse_listen, serve_notifications
    from pipeline.fleet.settings import worker_settings

    secret = os.environ.get(secret_env, "")
    event_grid_key = os.environ.get(event_grid_key_env, "")
    try:
        if not secret and not event_grid_key:
            raise ConfigError(
                f"set the notification secret in ${secret_env} (Agora issues it), "
                f"or an Event Grid key in ${event_grid_key_env}"
            )
        host, port = parse_listen(listen)
        defaults = _job_options(opts, embed_profile=queue_url is not None)
        settings = worker_settings(defaults=defaults, endpoint_url=endpoint_url, recordings=recordings)
        _service_logging()
        serve_notifications(
            secret=secret.encode(),
            host=host,
            port=port,
            settings=settings,
            queue_url=queue_url,
            environ=os.environ,
            event_grid_key=event_grid_key.encode(),
            metrics=_metrics(metrics_port, metrics_host),
        )
    except PipelineError as err:
        fail(err, as_json=False)


def run_main() -> None:
    """The ``recpipe`` program: SIGTERM and Ctrl-C stop a run cleanly (uploads aborted, leases
    released, work directory removed) instead of killing it where it stands."""
    collector.settle()
    interrupts.install()
    limit_malloc_arenas()
    try:
        main(prog_name="recpipe")
    finally:
        release_all()
