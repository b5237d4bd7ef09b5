"""The commands' logic without click: from what the user asked for to a finished ``Result``.

``cli.py`` parses flags into a ``Request`` and prints; everything between lives here, so the
storage-event worker and tests can drive the same path.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.agora.profile import Profile, load_profile, parse_av_file_types
from pipeline.model.config import PipelineConfig
from pipeline.model.exceptions import ConfigError, PipelineError, PlaylistError
from pipeline.model.job import BACKUPED_NOW, Absent, Expectations, Policy, Recording
from pipeline.model.progress import NullProgress, Progress
from pipeline.model.report import recording_json
from pipeline.run import collector
from pipeline.run.individual import (
    UserSettings,
    is_individual_set,
    process_individual,
    process_user,
    stream_report,
    users_of,
)
from pipeline.run.malloc import keep_freed_heap
from pipeline.run.raw import process_raw_users, raw_users
from pipeline.run.runner import Result, RunOptions, execute, make_job, output_directory
from pipeline.storage import LocalStorage
from pipeline.storage.locations import Location, location_from_storage_spec, open_destination, open_location
from stages.base import Destination, StageContext
from stages.discover import find_recordings, inputs_digest, select_recording, split_key
from stages.fetch import read_playlists
from stages.ffmpeg import VersionProbe, find_ffmpeg, version_cache
from stages.publish import read_existing_report, report_key

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class Request:
    """One command invocation, as parsed from flags."""

    location: str | None
    endpoint_url: str | None = None
    profile: Path | None = None
    sid: str | None = None
    dest: str | None = None
    policy: Policy | None = None
    av_file_type: str | None = None
    force: bool = False
    dry_run: bool = False
    publish: bool = True
    backuped_at: float | None = None
    """The recorder reported ``backuped`` (files still coming from Agora's backup cloud) at this Unix
    time; -1 for "now" (``--backuped``). None: not known to be backuped."""
    absent: Absent | None = None
    """Individual mode: keep a user's absent time in their MP4 (last frame, silence) or cut it;
    None: the setting (``RECPIPE_ABSENT``, ``keep``)."""


def backup_wait(backuped_at: float | None, *, now: float, wait_s: float) -> bool:
    """Whether slices not there yet are still on their way from Agora's backup cloud (pure)."""
    if backuped_at is None:
        return False
    return backuped_at == BACKUPED_NOW or now - backuped_at < wait_s


def recpipe_version() -> str:
    """The installed recpipe version."""
    try:
        return metadata.version("recpipe")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def read_profile(path: Path | None) -> Profile | None:
    """The start-request profile, when one was given."""
    return None if path is None else load_profile(path)


def open_source(request: Request, *, profile: Profile | None, environ: Mapping[str, str]) -> Location:
    """The location to read from: the LOCATION argument, else the profile's storageConfig."""
    if request.location is not None:
        return open_location(request.location, endpoint_url=request.endpoint_url, environ=environ)
    if profile is not None and profile.storage is not None:
        return location_from_storage_spec(profile.storage, endpoint_url=request.endpoint_url, environ=environ)
    raise ConfigError("give a LOCATION, or a --profile whose storageConfig says where the recording is")


def base_directory(prefix: str) -> str:
    """The directory part of a location prefix (a playlist key's directory, or the prefix itself)."""
    return split_key(prefix)[0] if not prefix.endswith("/") else prefix


def discover(source: Location, *, sid: str | None, profile: Profile | None) -> tuple[Recording, ...]:
    """The recording at ``source`` matching ``--sid`` and the profile's cname: one composite (or web)
    recording, every stream of one individual-mode recording, or (a stream's playlist named) the
    streams of that stream's user."""
    recordings = find_recordings(source.storage, source.prefix)
    exact = source.prefix if source.prefix.endswith(".m3u8") else None
    if exact is None:
        cname = profile.file_cname if profile is not None else None
        matches = [
            r for r in recordings if (sid is None or r.sid == sid) and (cname is None or r.cname == cname)
        ]
        if len(matches) > 1 and is_individual_set(matches):
            return tuple(matches)
    chosen = _discover_one(source, recordings, sid=sid, profile=profile)
    if chosen.uid is None or chosen.media not in ("audio", "video"):
        return (chosen,)
    siblings = find_recordings(source.storage, chosen.directory)
    return tuple(r for r in siblings if (r.sid, r.cname, r.uid) == (chosen.sid, chosen.cname, chosen.uid))


def _discover_one(
    source: Location, recordings: tuple[Recording, ...], *, sid: str | None, profile: Profile | None
) -> Recording:
    exact = source.prefix if source.prefix.endswith(".m3u8") else None
    cname = profile.file_cname if profile is not None else None
    if exact is not None and cname is not None:  # the playlist named wins over the profile's channel
        chosen = select_recording(recordings, sid=sid, cname=None, playlist_key=exact, where=source.display)
        if chosen.cname != cname:
            log.info(
                "%s: channel %r, not the profile's %r; using the profile for what to expect",
                exact,
                chosen.cname,
                cname,
            )
        return chosen
    return select_recording(recordings, sid=sid, cname=cname, playlist_key=exact, where=source.display)


def remux_ffmpeg(
    request: Request, *, profile: Profile | None, config: PipelineConfig, environ: Mapping[str, str]
) -> str | None:
    """The ffmpeg a run remuxes with; None when it remuxes nothing (a dry run, no MP4 wanted)."""
    if request.dry_run or not request.publish or not wants_mp4(request, profile=profile):
        return None
    return config.ffmpeg or find_ffmpeg(environ)


def early_version_probe(
    request: Request, *, profile: Profile | None, config: PipelineConfig, environ: Mapping[str, str]
) -> VersionProbe | None:
    """ffmpeg asked for its version before the recording is found (it answers meanwhile), when the run
    will remux. None when it will not — or when something is wrong: ``remux_ffmpeg``, asked again after
    discovery, reports it where it always did (a missing recording before a missing ffmpeg)."""
    try:
        exe = remux_ffmpeg(request, profile=profile, config=config, environ=environ)
    except PipelineError:
        return None
    return version_probe(exe, environ=environ) if exe else None


def version_probe(exe: str, *, environ: Mapping[str, str]) -> VersionProbe:
    """``exe -version`` asked for now, or its answer read from the user's cache (``version_cache``)."""
    return VersionProbe(exe, cache=version_cache(environ))


def recording_config(config: PipelineConfig, *, profile: Profile | None) -> PipelineConfig:
    """The settings for this recording: a web page recording's MP4s are split where its recorder splits
    them (``serviceParam.maxVideoDuration``) rather than at ``RECPIPE_MAX_MP4_SECONDS``."""
    if profile is None or profile.max_mp4_seconds is None:
        return config
    return replace(config, max_mp4_seconds=profile.max_mp4_seconds)


def wants_mp4(request: Request, *, profile: Profile | None) -> bool:
    """``--av-file-type`` wins, then the profile's avFileType, then Agora's default (HLS only)."""
    if request.av_file_type is not None:
        return "mp4" in parse_av_file_types(request.av_file_type)
    return profile.wants_mp4 if profile is not None else False


def expectations(profile: Profile | None) -> Expectations:
    """What the profile says the recording holds."""
    if profile is None:
        return Expectations()
    t = profile.web or profile.transcoding
    return Expectations(
        stream_types=profile.stream_types,
        width=t.width if t else None,
        height=t.height if t else None,
        fps=t.fps if t else None,
    )


def destination_for(
    recording: Recording, *, request: Request, source: Location, environ: Mapping[str, str]
) -> Destination:
    """Where this recording's outputs go: ``--dest`` mirroring its directory, else beside it."""
    base = base_directory(source.prefix)
    if request.dest is None:
        return Destination(storage=source.storage, directory=recording.directory)
    dest = open_destination(request.dest, endpoint_url=request.endpoint_url, environ=environ, source=source)
    directory = output_directory(recording, source_base=base, dest_base=base_directory(dest.prefix))
    return Destination(storage=dest.storage, directory=directory)


def run(
    request: Request,
    *,
    config: PipelineConfig,
    environ: Mapping[str, str],
    progress: Progress | None = None,
    logger: logging.Logger | None = None,
    own_process: bool = False,
) -> Result:
    """Discover, then run the stages for one recording (process, verify, dry run).

    :param own_process: the process ends with this run (the command line, not a worker or Lambda):
        what its setup builds is exempted from later garbage collections (``pipeline.run.collector``).
    """
    profile = read_profile(request.profile)
    early = early_version_probe(request, profile=profile, config=config, environ=environ)
    try:
        with collector.paused(settle_after=own_process):  # the setup builds what lives for the run
            source = open_source(request, profile=profile, environ=environ)
            # the slices' connections open while the recording is listed
            source.storage.prepare_reads(config.fetch_workers, prefix=source.prefix)
            found = discover(source, sid=request.sid, profile=profile)
            recording = found[0]
            if profile is not None and profile.mode == "web" and recording.uid is None:
                recording = replace(recording, mode="web")  # named like a composite recording
            want_mp4 = wants_mp4(request, profile=profile)
            config = recording_config(config, profile=profile)
            publish = request.publish and not request.dry_run
            if early is not None:  # the same question, answered before discovery
                ffmpeg: str | None = early.exe
            else:
                ffmpeg = remux_ffmpeg(request, profile=profile, config=config, environ=environ)
            destination = destination_for(recording, request=request, source=source, environ=environ)
    except BaseException:
        if early is not None:
            early.close()
        raise
    version = early or (version_probe(ffmpeg, environ=environ) if ffmpeg else None)
    if ffmpeg and destination.is_local:
        keep_freed_heap()  # its buffers are slices, not upload parts (pipeline.run.malloc)
    ctx = StageContext(
        storage=source.storage,
        destination=destination,
        workdir=Path("."),
        config=config,
        ffmpeg=ffmpeg or "ffmpeg",
        tool={"recpipe": recpipe_version(), "ffmpeg": version.result() if version else ""},
        logger=logger or logging.getLogger("recpipe"),
        progress=progress or NullProgress(),
    )
    policy = request.policy or config.policy
    options = RunOptions(publish=publish, force=request.force)
    settings = UserSettings(
        policy=policy,
        want_mp4=want_mp4,
        expect=expectations(profile),
        absent=request.absent or config.absent,
        options=options,
        backup_wait=backup_wait(request.backuped_at, now=time.time(), wait_s=config.backup_wait_seconds),
    )
    users = raw_users(found)
    if users and not source.prefix.endswith(".m3u8"):  # individual v2: every user's playlist
        return process_raw_users(users, settings=settings, expect=expectations(profile), ctx=ctx)
    if recording.media in ("audio", "video"):  # individual mode: users, each merged from two streams
        if source.prefix.endswith(".m3u8"):  # one stream's playlist: its user
            [user] = users_of(found)
            return process_user(user, settings=settings, ctx=ctx)
        return process_individual(found, settings=settings, ctx=ctx)
    job = make_job(recording, policy=policy, want_mp4=want_mp4, expect=expectations(profile))
    return execute(replace(job, backup_wait=settings.backup_wait), ctx=ctx, options=options)


@dataclass(frozen=True, kw_only=True, slots=True)
class Listing:
    """One line of ``recpipe ls``."""

    recording: Recording
    state: str
    """in-progress, complete, processed, failed or invalid."""
    slices: int
    duration_s: float
    report_status: str | None
    playlists: tuple[str, ...] | None = None
    """The playlists whose entries count (the recording's own, or its backup snapshot playlists)."""

    def to_json(self) -> dict[str, object]:
        """The ``ls --json`` shape."""
        return {
            **recording_json(self.recording, playlists=self.playlists),
            "slices": self.slices,
            "duration_s": round(self.duration_s, 3),
            "state": self.state,
            "report_status": self.report_status,
        }


def recording_state(*, endlist: bool | None, report: Mapping[str, object] | None, digest: str) -> str:
    """The ``ls`` state from the playlist's end marker and the existing report (pure)."""
    if endlist is None:
        return "invalid"
    if not endlist:
        return "in-progress"
    if report is None or report.get("inputs_digest") != digest:
        return "complete"
    return "processed" if report.get("status") in {"ok", "degraded"} else "failed"


def list_recordings(
    location: str,
    *,
    endpoint_url: str | None,
    dest: str | None,
    environ: Mapping[str, str],
    config: PipelineConfig,
) -> list[Listing]:
    """Every recording under ``location`` with its state (reads playlists and reports, nothing else)."""
    source = open_location(location, endpoint_url=endpoint_url, environ=environ)
    request = Request(location=location, endpoint_url=endpoint_url, dest=dest)
    listings = []
    for rec in find_recordings(source.storage, source.prefix):
        destination = destination_for(rec, request=request, source=source, environ=environ)
        listings.append(_listing(rec, source=source, destination=destination, config=config))
    return listings


def _listing(
    rec: Recording, *, source: Location, destination: Destination, config: PipelineConfig
) -> Listing:
    endlist: bool | None = False
    slices, duration = len(rec.slices), 0.0
    playlists: tuple[str, ...] | None = None
    if rec.playlist_keys:
        try:
            choice = read_playlists(
                source.storage,
                rec,
                max_bytes=config.max_playlist_bytes,
                max_entries=config.max_playlist_entries,
            )
            playlist, playlists = choice.playlist, choice.used
            endlist, slices, duration = playlist.endlist, len(playlist.entries), playlist.duration
        except PlaylistError:
            endlist = None
    if rec.media in ("audio", "video"):  # individual mode: processed as part of its user
        report = stream_report(rec, storage=destination.storage, directory=destination.directory)
    else:
        report = read_existing_report(destination.storage, report_key(rec, directory=destination.directory))
    state = recording_state(endlist=endlist, report=report, digest=inputs_digest(rec))
    status = str(report["status"]) if report else None
    return Listing(
        recording=rec,
        state=state,
        slices=slices,
        duration_s=duration,
        report_status=status,
        playlists=playlists,
    )


# --- fleets: enqueue, batch, the worker's helpers ------------------------------------------------

SECRET_FIELDS = frozenset(
    {
        "accessKey",
        "secretKey",
        "stsToken",
        "token",
        "secret",
        "salt",
        "sessionToken",
        "accessKeyId",
        "secretAccessKey",
    }
)
"""storageConfig fields that never leave this machine in a queue message."""


def without_secrets(doc: Any) -> Any:
    """A profile document with every credential field removed (for queue messages)."""
    if isinstance(doc, dict):
        return {k: without_secrets(v) for k, v in doc.items() if k not in SECRET_FIELDS}
    if isinstance(doc, list):
        return [without_secrets(v) for v in doc]
    return doc


def read_profile_document(path: Path | None) -> dict[str, Any] | None:
    """The profile file as a JSON document, checked by the profile loader first."""
    if path is None:
        return None
    load_profile(path)  # the same checks and messages as ``process --profile``
    doc = json.loads(path.read_text(encoding="utf-8"))
    return doc if isinstance(doc, dict) else None


def location_of(source: Location, recording: Recording) -> str:
    """A location string naming exactly this recording (its playlist, else its newest snapshot
    playlist), for a job message or a job."""
    playlists = recording.playlist_keys
    key = recording.playlist_key or (playlists[-1] if playlists else None) or recording.directory
    storage = source.storage
    if isinstance(storage, LocalStorage):
        return str(storage.root.joinpath(*key.split("/"))) if key else str(storage.root)
    return f"{storage.url}/{key}"


def recordings_at(
    location: str, *, endpoint_url: str | None, environ: Mapping[str, str]
) -> list[tuple[str, Recording]]:
    """Every recording under ``location``, each with a location that names only it."""
    source = open_location(location, endpoint_url=endpoint_url, environ=environ)
    return [(location_of(source, rec), rec) for rec in find_recordings(source.storage, source.prefix)]


def playlist_etag(location: str, *, endpoint_url: str | None, environ: Mapping[str, str]) -> str | None:
    """The current ETag of the playlist a location names (None if there is none or it cannot be read)."""
    try:
        source = open_location(location, endpoint_url=endpoint_url, environ=environ)
        return source.storage.stat(source.prefix).etag if source.prefix.endswith(".m3u8") else None
    except PipelineError as err:
        log.debug("cannot look at %s: %s", location, err)
        return None
