"""Finding recordings: group the objects under a prefix by their Agora names.

A recording is one playlist (``<sid>_<cname>.m3u8`` or an individual-mode playlist) plus the
slices in the same directory that carry the same sid, cname (and uid/media). Slices without a
playlist are a recording whose playlist has not been uploaded yet. Snapshot playlists written
after a backup upload (``<sid>_<cname>_<tick>_<index>.m3u8``) are not recordings of their own.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from pipeline.exceptions import AmbiguousRecording, NamingError, RecordingNotFound
from pipeline.job import Recording
from pipeline.naming import AgoraName, Media, is_snapshot_playlist, parse_name
from pipeline.storage.base import ObjectInfo, Storage

log = logging.getLogger(__name__)


class _Group(NamedTuple):
    directory: str
    sid: str
    cname: str
    uid: str | None
    media: Media | None


def split_key(key: str) -> tuple[str, str]:
    """``("a/b/", "name")`` for ``"a/b/name"``; the directory is "" at the root."""
    head, sep, name = key.rpartition("/")
    return (head + sep, name)


def _parse(key: str) -> tuple[_Group, AgoraName] | None:
    directory, name = split_key(key)
    try:
        parsed = parse_name(name)
    except NamingError:
        return None
    return _Group(directory, parsed.sid, parsed.cname, parsed.uid, parsed.media), parsed


def _is_snapshot(group: _Group, playlists: Iterable[_Group]) -> bool:
    """Whether ``group``'s playlist is a snapshot playlist of another playlist in its directory."""
    name = f"{group.sid}_{group.cname}.m3u8"
    return any(
        other != group
        and other.directory == group.directory
        and other.sid == group.sid
        and other.uid is None
        and is_snapshot_playlist(name, sid=other.sid, cname=other.cname)
        for other in playlists
    )


def group_recordings(objects: Iterable[ObjectInfo]) -> tuple[Recording, ...]:
    """Every recording the objects make up, ordered by playlist (or first slice) key."""
    playlists: dict[_Group, ObjectInfo] = {}
    slices: defaultdict[_Group, list[ObjectInfo]] = defaultdict(list)
    for obj in objects:
        found = _parse(obj.key)
        if found is None:
            continue
        group, parsed = found
        if parsed.kind == "playlist":
            playlists[group] = obj
        elif parsed.kind == "slice":
            slices[group].append(obj)
    snapshots = {g for g in playlists if g.uid is None and _is_snapshot(g, playlists)}
    groups = (set(playlists) | set(slices)) - snapshots
    recordings = [_recording(g, playlists.get(g), slices.get(g, [])) for g in groups]
    return tuple(sorted(recordings, key=lambda r: r.playlist_key or (r.slices[0].key if r.slices else "")))


def _recording(group: _Group, playlist: ObjectInfo | None, slices: Sequence[ObjectInfo]) -> Recording:
    return Recording(
        sid=group.sid,
        cname=group.cname,
        mode="individual" if group.uid is not None else "composite",
        uid=group.uid,
        media=group.media,
        directory=group.directory,
        playlist_key=playlist.key if playlist else None,
        playlist=playlist,
        slices=tuple(sorted(slices, key=lambda o: o.key)),
    )


def select_recording(
    recordings: Sequence[Recording],
    *,
    sid: str | None = None,
    cname: str | None = None,
    playlist_key: str | None = None,
    where: str = "",
) -> Recording:
    """The one recording matching the filters; otherwise a clear discovery error."""
    matches = [
        r
        for r in recordings
        if (sid is None or r.sid == sid)
        and (cname is None or r.cname == cname)
        and (playlist_key is None or r.playlist_key == playlist_key)
    ]
    wanted = ", ".join(f"{k}={v}" for k, v in (("sid", sid), ("cname", cname)) if v is not None)
    suffix = f" matching {wanted}" if wanted else ""
    if not matches:
        raise RecordingNotFound(f"no recording{suffix} found at {where}")
    if len(matches) > 1:
        raise AmbiguousRecording(
            f"{len(matches)} recordings{suffix} at {where}; "
            "choose one with --sid (or give the playlist's path)",
            candidates=[r.playlist_key or r.label for r in matches],
        )
    return matches[0]


def find_recordings(storage: Storage, prefix: str) -> tuple[Recording, ...]:
    """List ``prefix`` (a directory prefix, or one playlist's key) and group what is there."""
    if prefix.endswith(".m3u8"):
        directory, _ = split_key(prefix)
        return tuple(r for r in group_recordings(storage.list(directory)) if r.playlist_key == prefix)
    return group_recordings(storage.list(prefix))


def inputs_digest(recording: Recording) -> str:
    """sha256 of (key, size, etag) of the playlist and every slice: changes when any input does."""
    digest = hashlib.sha256()
    for obj in sorted(recording.inputs, key=lambda o: o.key):
        digest.update(f"{obj.key}\t{obj.size}\t{obj.etag}\n".encode())
    return digest.hexdigest()
