"""Write a synthetic individual-mode recording: per user, an audio and a video playlist with their slices.

Each user is present for one or more stretches (a user who leaves and comes back has two). For every
stretch, ffmpeg encodes an audio-only part (AAC sine tone) and a video-only part (H.264 test
picture) separately, as the recorder records each stream of each user separately. The two streams'
own timestamps deliberately start at unrelated values (as two independent streams' clocks do); only
the ``<utc>`` in the slice names says when each slice began, which is what a correct merge must
align by. A later stretch starts after ``#EXT-X-DISCONTINUITY``. Output is byte-identical across runs.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from pipeline.model.exceptions import ConfigError, NamingError
from pipeline.model.naming import Media, check_uid, playlist_name, slice_name
from pipeline.samples.composite import (
    DEFAULT_START,
    SAMPLE_UID,
    Encoding,
    HlsEntry,
    SampleSet,
    Slice,
    build_playlist,
    check_names,
    default_sid,
    encode_part,
    prepare_directory,
    sample_storage_config,
    to_timedelta,
    write_atomic,
    write_atomic_bytes,
)

log = logging.getLogger(__name__)

PTS_BASES = {"audio": 37, "video": 1000}
"""Seconds each stream's own clock reads at the recording's start: unrelated on purpose."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Presence:
    """A stretch in which a user is in the channel, in seconds from the recording's start."""

    start: int
    seconds: int


@dataclass(frozen=True, kw_only=True, slots=True)
class SampleUser:
    """One user of an individual-mode sample."""

    uid: str
    presences: tuple[Presence, ...]
    video_delay_ms: int = 0
    """The camera's slices start this much after the microphone's (and end as much later)."""


DEFAULT_USERS = (
    SampleUser(uid="1001", presences=(Presence(start=0, seconds=30),)),
    SampleUser(uid="2002", presences=(Presence(start=0, seconds=10), Presence(start=18, seconds=12))),
)
"""Two users: 1001 stays for 30 s; 2002 leaves after 10 s and comes back 8 s later for 12 s."""


def check_users(users: Sequence[SampleUser], *, slice_seconds: int) -> None:
    """ConfigError unless the users' stretches make sense."""
    if not users:
        raise ConfigError("an individual-mode sample needs at least one user")
    if len({u.uid for u in users}) != len(users):
        raise ConfigError("each user of a sample needs its own uid")
    for user in users:
        try:
            check_uid(user.uid)
        except NamingError as err:
            raise ConfigError(str(err)) from err
        if not user.presences or user.video_delay_ms < 0:
            raise ConfigError(f"user {user.uid}: needs at least one presence and a non-negative video delay")
        end = -1
        for p in user.presences:
            if p.seconds < slice_seconds or p.start <= end:
                raise ConfigError(
                    f"user {user.uid}: each presence lasts at least one slice ({slice_seconds} s) "
                    "and starts after the previous one ended"
                )
            end = p.start + p.seconds


def write_individual_sample(
    directory: Path,
    *,
    ffmpeg: str,
    users: Sequence[SampleUser] = DEFAULT_USERS,
    slice_seconds: int = 5,
    cname: str = "demo-room",
    sid: str | None = None,
    start: datetime = DEFAULT_START,
    width: int = 320,
    height: int = 240,
    fps: int = 15,
    force: bool = False,
) -> SampleSet:
    """Write an individual-mode recording of ``users`` into ``directory``."""
    check_users(users, slice_seconds=slice_seconds)
    last = max(p.start + p.seconds for u in users for p in u.presences)
    sid = sid if sid is not None else default_sid(f"{cname}/individual", start=start, seconds=last)
    check_names(sid=sid, cname=cname)
    prepare_directory(directory, cname=cname, force=force)
    playlists: list[Path] = []
    slices: list[Path] = []
    with tempfile.TemporaryDirectory(prefix=".recpipe-sample-", dir=directory) as tmp:
        for user in users:
            for media in ("audio", "video"):
                delay = timedelta(milliseconds=user.video_delay_ms if media == "video" else 0)
                work = Path(tmp) / user.uid / media
                entries, paths = write_stream(
                    ffmpeg,
                    work,
                    user=user,
                    media=media,
                    sid=sid,
                    cname=cname,
                    start=start + delay,
                    dest=directory,
                    encoding=Encoding(
                        seconds=1,
                        slice_seconds=slice_seconds,
                        width=width,
                        height=height,
                        fps=fps,
                        video=media == "video",
                        audio=media == "audio",
                    ),
                )
                playlist = directory / playlist_name(sid, cname, uid=user.uid, media=media)
                write_atomic(playlist, build_playlist(entries))
                playlists.append(playlist)
                slices += paths
    log.info("wrote individual-mode sample %s_%s (%d users)", sid, cname, len(users))
    return SampleSet(
        directory=directory,
        sid=sid,
        cname=cname,
        playlists=tuple(playlists),
        slices=tuple(slices),
        profile=individual_profile(cname=cname),
    )


def write_stream(
    ffmpeg: str,
    work: Path,
    *,
    user: SampleUser,
    media: Media,
    sid: str,
    cname: str,
    start: datetime,
    dest: Path,
    encoding: Encoding,
) -> tuple[list[HlsEntry], list[Path]]:
    """Encode one stream of one user, stretch by stretch; write its slices; return its playlist entries."""
    entries: list[HlsEntry] = []
    paths: list[Path] = []
    for number, presence in enumerate(user.presences):
        base = PTS_BASES[str(media)] + presence.start
        part = Encoding(
            seconds=presence.seconds,
            slice_seconds=encoding.slice_seconds,
            width=encoding.width,
            height=encoding.height,
            fps=encoding.fps,
            video=encoding.video,
            audio=encoding.audio,
            offset=base,
        )
        made: list[Slice] = encode_part(ffmpeg, work / str(number), encoding=part)
        for i, piece in enumerate(made):
            at = start + timedelta(seconds=presence.start) + to_timedelta(piece.offset - Decimal(base))
            name = slice_name(sid, cname, at, uid=user.uid, media=media)
            write_atomic_bytes(dest / name, b"".join(path.read_bytes() for path, _ in piece.parts))
            entries.append(
                HlsEntry(uri=name, duration=str(piece.duration), discontinuity=number > 0 and i == 0)
            )
            paths.append(dest / name)
    return entries, paths


def individual_profile(*, cname: str) -> dict[str, object]:
    """The start-request body of an individual-mode recording of audio and video, with MP4 wanted."""
    return {
        "cname": cname,
        "uid": SAMPLE_UID,
        "clientRequest": {
            "recordingConfig": {"maxIdleTime": 30, "streamTypes": 2, "channelType": 0},
            "recordingFileConfig": {"avFileType": ["hls", "mp4"]},
            "storageConfig": sample_storage_config(),
        },
    }
