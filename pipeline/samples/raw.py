"""Synthetic individual v2 (``raw``) recordings: one audio+video playlist per user, named as Agora does.

Each user's slices are encoded like a composite sample's (``pipeline.samples.composite``) and named
``<sid>_<cname>__uid_s_<uid>__uid_e_<utc>_<codec>.ts`` — the time *before* the codec — listed by
``<sid>_<cname>__uid_s_<uid>__uid_e_<codec>.m3u8``. Users may start at different times.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from pipeline.model.exceptions import ConfigError, NamingError
from pipeline.model.naming import check_uid, parse_name, playlist_name, slice_name
from pipeline.samples.composite import (
    DEFAULT_START,
    SampleSet,
    check_names,
    default_sid,
    prepare_directory,
    write_atomic,
    write_sample,
)
from pipeline.samples.individual import individual_profile

log = logging.getLogger(__name__)

DEFAULT_CODEC = "h264"
"""The codec token in the samples' names (Agora documents the pattern, not the tokens)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RawUser:
    """One user of a v2 sample: when they start (seconds after the recording) and for how long."""

    uid: str
    start: int = 0
    seconds: int = 6


DEFAULT_RAW_USERS = (RawUser(uid="1001", seconds=6), RawUser(uid="2002", start=2, seconds=4))


def write_raw_sample(
    directory: Path,
    *,
    ffmpeg: str,
    users: Sequence[RawUser] = DEFAULT_RAW_USERS,
    slice_seconds: int = 2,
    cname: str = "demo-room",
    codec: str = DEFAULT_CODEC,
    start: datetime = DEFAULT_START,
    force: bool = False,
) -> SampleSet:
    """Write an individual v2 recording of ``users`` into ``directory``."""
    check_raw_users(users)
    sid = default_sid(f"{cname}/raw", start=start, seconds=max(u.start + u.seconds for u in users))
    check_names(sid=sid, cname=cname)
    prepare_directory(directory, cname=cname, force=force)
    playlists, slices = [], []
    with tempfile.TemporaryDirectory(prefix=".recpipe-sample-", dir=directory) as tmp:
        for user in users:
            made = write_sample(
                Path(tmp) / user.uid,
                ffmpeg=ffmpeg,
                seconds=user.seconds,
                slice_seconds=slice_seconds,
                cname=cname,
                sid=sid,
                start=start + timedelta(seconds=user.start),
            )
            text = made.playlist.read_text(encoding="utf-8")
            for path in made.slices:
                utc = parse_name(path.name).utc
                assert utc is not None
                name = slice_name(sid, cname, utc, uid=user.uid, codec=codec)
                path.replace(directory / name)
                text = text.replace(path.name, name)
                slices.append(directory / name)
            playlist = directory / playlist_name(sid, cname, uid=user.uid, codec=codec)
            write_atomic(playlist, text)
            playlists.append(playlist)
    log.info("wrote individual v2 sample %s_%s (%d users)", sid, cname, len(users))
    return SampleSet(
        directory=directory,
        sid=sid,
        cname=cname,
        playlists=tuple(playlists),
        slices=tuple(slices),
        profile=individual_profile(cname=cname),
    )


def check_raw_users(users: Sequence[RawUser]) -> None:
    """ConfigError unless the users are distinct, valid and each records something."""
    if not users or len({u.uid for u in users}) != len(users):
        raise ConfigError("a v2 sample needs at least one user, each with their own uid")
    for user in users:
        try:
            check_uid(user.uid)
        except NamingError as err:
            raise ConfigError(str(err)) from err
        if user.start < 0 or user.seconds < 1:
            raise ConfigError(f"user {user.uid}: start must not be negative and seconds must be positive")
