"""Finding recordings: group the objects under a prefix by their Agora names.

A recording is one playlist (``<sid>_<cname>.m3u8`` or an individual-mode playlist) plus the
slices in the same directory that carry the same sid, cname (and uid/media). Slices without a
playlist are a recording whose playlist has not been uploaded yet. Snapshot playlists written
after a backup upload (``<sid>_<cname>_<tick>_<index>.m3u8``) are not recordings of their own:
they belong to their composite (or web) recording's ``snapshots``, and a directory holding only
snapshot playlists (and slices) of a recording is that one recording, without its own playlist.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import replace
from typing import NamedTuple

from pipeline.model.exceptions import AmbiguousRecording, NamingError, RecordingNotFound
from pipeline.model.job import Recording
from pipeline.model.naming import (
    UID_END,
    UID_START,
    AgoraName,
    Media,
    parse_name,
    playlist_name,
    split_snapshot_name,
)
from pipeline.storage.base import ObjectInfo, Storage

log = logging.getLogger(__name__)


class _Group(NamedTuple):
    directory: str
    sid: str
    cname: str
    uid: str | None
    media: Media | None
    codec: str | None
    backup: int | None


def is_hidden(key: str) -> bool:
    """Whether the key's file name starts with ``.`` (dot files, macOS's ``._<name>`` AppleDouble
    copies, temporary files): never a recording's file."""
    return key.rpartition("/")[2].startswith(".")


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
    group = _Group(directory, parsed.sid, parsed.cname, parsed.uid, parsed.media, parsed.codec, parsed.backup)
    return group, parsed


Rank = tuple[int, int, str]
"""A snapshot's place among its playlist's versions: (index, tick, name); the index orders them."""


def _snapshot_of(key: str) -> tuple[_Group, Rank] | None:
    """The playlist a snapshot playlist ``<playlist>_<tick>_<index>.m3u8`` is a version of, when its
    name is no playlist's on its own (individual, v2 and failover playlists with the suffix)."""
    directory, name = split_key(key)
    parts = split_snapshot_name(name)
    if parts is None:
        return None
    p = parts.parent
    return _Group(directory, p.sid, p.cname, p.uid, p.media, p.codec, p.backup), (
        parts.index,
        parts.tick,
        name,
    )


def _snapshot_parent(
    group: _Group, *, known: AbstractSet[_Group], has_slices: bool
) -> tuple[_Group, Rank] | None:
    """The recording a composite playlist is a snapshot playlist of, and the snapshot's place among
    that recording's snapshots; None when it is a recording's own playlist.

    A composite name with the snapshot shape (``room_2024_1``) could be either. It is a snapshot when
    its recording's playlist or a slice is in the same directory, or when it has no slices of its own;
    a tick is any run of digits.
    """
    if group.uid is not None:
        return None
    prefix = "" if group.backup is None else f"bak{group.backup}_"
    found = _snapshot_of(f"{group.directory}{prefix}{group.sid}_{group.cname}.m3u8")
    if found is None:
        return None
    parent, rank = found
    if parent not in known and has_slices:
        return None
    return parent, rank


def group_recordings(objects: Iterable[ObjectInfo]) -> tuple[Recording, ...]:
    """Every recording the objects make up, ordered by playlist (or first slice or snapshot) key.

    Snapshot playlists are attached to their recording, which exists even when its own playlist does not.
    """
    playlists: dict[_Group, ObjectInfo] = {}
    slices: defaultdict[_Group, list[ObjectInfo]] = defaultdict(list)
    mp4s: defaultdict[_Group, list[ObjectInfo]] = defaultdict(list)
    others: defaultdict[tuple[str, str, str, str], list[ObjectInfo]] = defaultdict(list)
    snapshots: defaultdict[_Group, list[tuple[Rank, ObjectInfo]]] = defaultdict(list)
    for obj in objects:
        if is_hidden(obj.key):
            log.info("ignoring %s: a hidden name is never a recording's file", obj.key)
            continue
        found = _parse(obj.key)
        version = _snapshot_of(obj.key) if found is None and obj.key.endswith(".m3u8") else None
        if version is not None:
            snapshots[version[0]].append((version[1], obj))
            continue
        if found is None or found[1].media == "av":
            user = user_file(obj.key)
            if user is not None:
                others[user].append(obj)
            continue
        group, parsed = found
        if parsed.kind == "playlist":
            playlists[group] = obj
        elif parsed.kind == "slice":
            slices[group].append(obj)
        else:
            mp4s[group].append(obj)
    known = set(playlists) | set(slices)
    for group in list(playlists):
        found_parent = _snapshot_parent(group, known=known, has_slices=group in slices)
        if found_parent is not None:
            parent, rank = found_parent
            snapshots[parent].append((rank, playlists.pop(group)))
    groups = set(playlists) | set(slices) | set(snapshots)
    recordings = [
        _recording(
            g,
            playlists.get(g),
            slices.get(g, []),
            [obj for _, obj in sorted(snapshots.get(g, []))],
            mp4s=mp4s.get(g, []),
            unprocessed=others.get((g.directory, g.sid, g.cname, g.uid or ""), []),
        )
        for g in groups
    ]
    return tuple(sorted(join_failovers(recordings), key=_order))


def join_failovers(recordings: Iterable[Recording]) -> list[Recording]:
    """One recording per original and its failover sets (``bak<n>_…``): the original (or, when only
    failover sets are there, a stand-in without files of its own) holding every part's slices and MP4s,
    and the failover sets, in order, in ``failovers``."""
    parts: defaultdict[tuple[object, ...], list[Recording]] = defaultdict(list)
    for rec in recordings:
        parts[(rec.directory, rec.sid, rec.cname, rec.uid, rec.media, rec.codec)].append(rec)
    joined = []
    for group in parts.values():
        group.sort(key=lambda r: -1 if r.backup is None else r.backup)
        if len(group) == 1 and group[0].backup is None:
            joined.append(group[0])
            continue
        first = group[0]
        main = (
            first
            if first.backup is None
            else replace(
                first, backup=None, playlist_key=None, playlist=None, snapshots=(), slices=(), mp4s=()
            )
        )
        rest = group[1:] if first.backup is None else group
        joined.append(
            replace(
                main,
                slices=tuple(sorted((o for r in group for o in r.slices), key=lambda o: o.key)),
                mp4s=tuple(sorted((o for r in group for o in r.mp4s), key=lambda o: o.key)),
                failovers=tuple(replace(r, slices=(), mp4s=(), unprocessed=()) for r in rest),
            )
        )
    return joined


def _order(rec: Recording) -> str:
    """Sort key: the playlist's key, else the first slice's or snapshot's."""
    first = [o.key for o in rec.slices[:1]] or list(rec.playlist_keys[:1])
    return rec.playlist_key or (first[0] if first else "")


def _recording(
    group: _Group,
    playlist: ObjectInfo | None,
    slices: Sequence[ObjectInfo],
    snapshots: Sequence[ObjectInfo],
    *,
    mp4s: Sequence[ObjectInfo],
    unprocessed: Sequence[ObjectInfo],
) -> Recording:
    return Recording(
        sid=group.sid,
        cname=group.cname,
        mode="individual" if group.uid is not None else "composite",
        uid=group.uid,
        media=group.media,
        codec=group.codec,
        backup=group.backup,
        directory=group.directory,
        playlist_key=playlist.key if playlist else None,
        playlist=playlist,
        slices=tuple(sorted(slices, key=lambda o: o.key)),
        snapshots=tuple(snapshots),
        mp4s=tuple(sorted(mp4s, key=lambda o: o.key)),
        unprocessed=tuple(sorted(unprocessed, key=lambda o: o.key)),
    )


UNPROCESSED_EXTENSIONS = ("mpd", "webm", "m3u8")
"""Kinds of an individual-mode user's files that recpipe recognises without processing them."""


def user_file(key: str) -> tuple[str, str, str, str] | None:
    """``(directory, sid, cname, uid)`` of an individual-mode user's file recpipe does not process — a
    DASH manifest (``.mpd``), a v2 WebM segment, the standard-mode ``__uid_e_av.m3u8`` list of the user's
    playlists — else None."""
    directory, name = split_key(key)
    stem, _, ext = name.rpartition(".")
    sid, _, rest = stem.partition("_")
    cname, marker, source = rest.partition(UID_START)
    uid, end, _ = source.rpartition(UID_END)
    if ext not in UNPROCESSED_EXTENSIONS or not (marker and end and sid and cname and uid):
        return None
    return directory, sid, cname, uid


def names_playlist(recording: Recording, key: str) -> bool:
    """Whether ``key`` is the recording's playlist (uploaded yet or not) or one of its snapshot playlists."""
    try:
        own = recording.directory + playlist_name(
            recording.sid,
            recording.cname,
            uid=recording.uid,
            media=recording.media,
            codec=recording.codec,
            backup=recording.backup,
        )
    except NamingError:
        own = None
    return key == own or key in recording.playlist_keys


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
        and (playlist_key is None or names_playlist(r, playlist_key))
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
        return tuple(r for r in group_recordings(storage.list(directory)) if names_playlist(r, prefix))
    return group_recordings(storage.list(prefix))


def inputs_digest(recording: Recording) -> str:
    """sha256 of (key, size, etag) of the playlist, every snapshot playlist and every slice: changes
    when any input does (a snapshot playlist or a slice arriving late, too)."""
    digest = hashlib.sha256()
    for obj in sorted(recording.inputs, key=lambda o: o.key):
        digest.update(f"{obj.key}\t{obj.size}\t{obj.etag}\n".encode())
    return digest.hexdigest()
