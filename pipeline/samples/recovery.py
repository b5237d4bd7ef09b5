"""Synthetic recordings shaped by the recorder's own recovery: a failover set, and a backup upload.

- ``write_failover_sample``: the original recorder's playlist lists the first slices and never gets
  ``#EXT-X-ENDLIST``; a resumed recorder, ``gap_s`` later, writes the rest as ``bak0_<sid>_<cname>…``
  with a playlist of its own that ends the recording.
- ``write_backuped_sample``: the recording's last uploads went to Agora's backup cloud: the main
  playlist lacks the last slices and ``#EXT-X-ENDLIST``, a snapshot playlist
  ``<sid>_<cname>_<tick>_<index>.m3u8`` lists them all, and ``missing`` of those slices are not in
  storage yet (still on their way).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from pipeline.model.exceptions import ConfigError
from pipeline.model.naming import parse_name, playlist_name, slice_name
from pipeline.samples.composite import (
    DEFAULT_START,
    HlsEntry,
    SampleSet,
    build_playlist,
    build_profile,
    parse_hls_entries,
    prepare_directory,
    write_atomic,
    write_sample,
)

log = logging.getLogger(__name__)

SNAPSHOT_TICK = 22194679897
"""The tick of the samples' snapshot playlists: "ticks since the system started" (Agora's example)."""


@contextlib.contextmanager
def _encoded(
    directory: Path,
    *,
    ffmpeg: str,
    seconds: int,
    slice_seconds: int,
    cname: str,
    start: datetime,
    force: bool,
) -> Iterator[tuple[str, list[Path], list[HlsEntry]]]:
    """A composite recording encoded in a temporary directory inside ``directory`` (prepared for the
    sample): its sid, slices and playlist entries, to move into place before the block ends."""
    prepare_directory(directory, cname=cname, force=force)
    with tempfile.TemporaryDirectory(prefix=".recpipe-sample-", dir=directory) as tmp:
        made = write_sample(
            Path(tmp), ffmpeg=ffmpeg, seconds=seconds, slice_seconds=slice_seconds, cname=cname, start=start
        )
        yield made.sid, list(made.slices), list(parse_hls_entries(made.playlist.read_text(encoding="utf-8")))


def write_failover_sample(
    directory: Path,
    *,
    ffmpeg: str,
    seconds: int = 8,
    slice_seconds: int = 2,
    gap_s: float = 3.0,
    cname: str = "demo-room",
    start: datetime = DEFAULT_START,
    force: bool = False,
) -> SampleSet:
    """The first half of the slices from the original recorder, the rest from ``bak0`` ``gap_s`` later."""
    if seconds < 2 * slice_seconds or gap_s < 0:
        raise ConfigError("a failover sample needs two slices at least and a gap that is not negative")
    encoded = _encoded(
        directory,
        ffmpeg=ffmpeg,
        seconds=seconds,
        slice_seconds=slice_seconds,
        cname=cname,
        start=start,
        force=force,
    )
    with encoded as (sid, paths, entries):
        half = len(paths) // 2
        moved, renamed = [], []
        for i, (path, entry) in enumerate(zip(paths, entries, strict=True)):
            name = path.name
            if i >= half:
                utc = parse_name(name).utc
                assert utc is not None
                name = slice_name(sid, cname, utc + timedelta(seconds=gap_s), backup=0)
            path.replace(directory / name)
            moved.append(directory / name)
            renamed.append(entry._replace(uri=name))
    original = directory / playlist_name(sid, cname)
    resumed = directory / playlist_name(sid, cname, backup=0)
    write_atomic(original, build_playlist(renamed[:half], endlist=False))
    write_atomic(resumed, build_playlist(renamed[half:]))
    log.info("wrote failover sample %s_%s (%d + %d slices)", sid, cname, half, len(moved) - half)
    return SampleSet(
        directory=directory,
        sid=sid,
        cname=cname,
        playlists=(original, resumed),
        slices=tuple(moved),
        profile=_profile(cname),
    )


def write_backuped_sample(
    directory: Path,
    *,
    ffmpeg: str,
    seconds: int = 8,
    slice_seconds: int = 2,
    late: int = 2,
    missing: int = 1,
    cname: str = "demo-room",
    start: datetime = DEFAULT_START,
    force: bool = False,
    held: Path | None = None,
) -> SampleSet:
    """The main playlist without its last ``late`` slices or ``#EXT-X-ENDLIST``; a snapshot playlist
    listing them all; the last ``missing`` slices not in storage yet.

    :param held: where the missing slices are put instead (to "arrive" later), if anywhere.
    """
    if not 0 <= missing <= late or late < 1 or seconds < (late + 1) * slice_seconds:
        raise ConfigError("a backuped sample needs 0 <= missing <= late, and more slices than late ones")
    encoded = _encoded(
        directory,
        ffmpeg=ffmpeg,
        seconds=seconds,
        slice_seconds=slice_seconds,
        cname=cname,
        start=start,
        force=force,
    )
    with encoded as (sid, paths, entries):
        for path in paths[: len(paths) - missing]:
            path.replace(directory / path.name)
        if held is not None and missing:
            held.mkdir(parents=True, exist_ok=True)
            for path in paths[len(paths) - missing :]:
                path.replace(held / path.name)
    main = directory / playlist_name(sid, cname)
    snapshot = directory / f"{sid}_{cname}_{SNAPSHOT_TICK}_1.m3u8"
    write_atomic(main, build_playlist(entries[: len(entries) - late], endlist=False))
    write_atomic(snapshot, build_playlist(entries))
    log.info("wrote backuped sample %s_%s (%d slices, %d still missing)", sid, cname, len(paths), missing)
    return SampleSet(
        directory=directory,
        sid=sid,
        cname=cname,
        playlists=(main, snapshot),
        slices=tuple(directory / p.name for p in paths),
        profile=_profile(cname),
    )


def _profile(cname: str) -> dict[str, object]:
    """The start request of the samples: composite, audio and video, MP4 wanted."""
    return build_profile(cname=cname, width=320, height=240, fps=15)
