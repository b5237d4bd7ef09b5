"""Backup uploads: pick, or merge, the playlists of a recording that has snapshot playlists. Pure.

When upload to the customer's storage fails, the recorder first stores files in Agora's backup
storage and uploads them later. Such a recording can have, beside its playlist ``<sid>_<cname>.m3u8``,
snapshot playlists ``<sid>_<cname>_<tick>_<index>.m3u8``; each lists the slices known when it was
written, and the main playlist itself may lack entries (or ``#EXT-X-ENDLIST``) that only a snapshot has.
``choose_playlist`` decides what recpipe processes:

1. A playlist is *complete* when it lists every slice that any of the recording's playlists lists,
   and has ``#EXT-X-ENDLIST`` if any of them has it.
2. The first complete playlist is **picked** as it is, in this order of preference: the main
   playlist, then the snapshots from the newest (highest index, then tick) to the oldest.
3. Otherwise the playlists are **merged**: one entry per slice URI, with the EXTINF and discontinuity
   flag of the first playlist in the same order that lists it; entries ordered by the ``<utc>`` in
   their names (ties by name); ``#EXT-X-ENDLIST`` when any playlist has it; the largest target
   duration and version, the smallest media sequence. A merge lists each slice once.
4. A merge must place every entry. A safe name that carries no ``<utc>`` of this recording has no
   known place, so the merge is impossible: ``PlaylistError`` (the recording is rejected as
   ``PLAYLIST_INVALID``) rather than an MP4 with slices in a guessed order or a silently incomplete
   one. Unsafe names are kept, last, so they are reported as ``UNSAFE_URI`` as in any playlist and
   nothing is fetched.

Playlists that give one slice different EXTINFs are reported (``Conflict``); the preferred one's
value is used. ``snapshot_findings`` turns a ``Choice`` into the report's ``PLAYLIST_SNAPSHOTS``
findings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pipeline.model.exceptions import PlaylistError
from pipeline.model.job import Finding
from pipeline.model.naming import split_snapshot_name
from stages.playlist import DEFAULT_MAX_ENTRIES, Entry, Playlist, unsafe_reason

log = logging.getLogger(__name__)

How = Literal["picked", "merged"]
UtcOf = Callable[[str], datetime | None]
"""The start time in a slice name of this recording, or None (``stages.fetch.slice_utc``)."""

EXTINF_TOLERANCE_S = 0.001
"""Two EXTINFs for one slice closer than a millisecond agree (``15`` and ``15.000000`` are one value)."""
MAX_SNAPSHOTS = 100
"""Snapshot playlists read for one recording at most. The recorder writes one per backup episode;
far more is not a recording but a directory to refuse (each one is a request and a parse)."""
MAX_TOTAL_ENTRIES_FACTOR = 4
"""All of a recording's playlists together may list this many times ``max_playlist_entries``
(main and snapshots mostly repeat one another); it bounds the memory one recording can take."""
NAMES_SHOWN = 5
"""Playlists named in a finding's detail before "and N more" (the report's ``playlists`` has all)."""


def file_name(key: str) -> str:
    """The last part of a key."""
    return key.rpartition("/")[2]


@dataclass(frozen=True, kw_only=True, slots=True)
class Candidate:
    """One of the recording's playlists."""

    key: str
    playlist: Playlist
    main: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class Conflict:
    """Two playlists give one slice different EXTINFs; ``used_s`` (from ``used_key``) is processed."""

    uri: str
    used_s: float
    used_key: str
    other_s: float
    other_key: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Choice:
    """What to process for a recording, and how it was decided."""

    playlist: Playlist
    how: How
    used: tuple[str, ...]
    """Keys whose entries ``playlist`` holds: the picked one, or every playlist merged (the main one
    first, then the snapshots oldest to newest)."""
    main: str | None
    """The main playlist's key, when there is one."""
    snapshots: tuple[str, ...] = ()
    """Every snapshot playlist's key, oldest to newest."""
    endlists: tuple[str, ...] = ()
    """Keys of the playlists that have ``#EXT-X-ENDLIST``."""
    only_in_snapshots: int = 0
    """Entries of ``playlist`` whose slice the main playlist does not list (all of them without one)."""
    conflicts: tuple[Conflict, ...] = ()
    joins: tuple[int, ...] = ()
    """Entries where a failover set's slices begin (``stages.failover``)."""


def snapshot_rank(key: str) -> tuple[int, int]:
    """``(index, tick)`` from a snapshot playlist's name — Agora orders the versions by ``index``
    (the tick counts from the system's start, so it orders nothing); (-1, -1) when the name does not say."""
    parts = split_snapshot_name(file_name(key))
    return (-1, -1) if parts is None else (parts.index, parts.tick)


def by_preference(main: Candidate | None, snapshots: Iterable[Candidate]) -> tuple[Candidate, ...]:
    """The main playlist first, then the snapshots from the newest (highest index) to the oldest."""
    newest = sorted(snapshots, key=lambda c: (snapshot_rank(c.key), c.key), reverse=True)
    return ((main,) if main is not None else ()) + tuple(newest)


def uris(playlist: Playlist) -> frozenset[str]:
    """The slice URIs a playlist lists."""
    return frozenset(e.uri for e in playlist.entries)


def is_complete(candidate: Candidate, *, listed: frozenset[str], endlist: bool) -> bool:
    """Whether a playlist lists every slice in ``listed`` (and has ENDLIST when any playlist has)."""
    return (candidate.playlist.endlist or not endlist) and uris(candidate.playlist) >= listed


def choose_playlist(
    main: tuple[str, Playlist] | None,
    snapshots: Mapping[str, Playlist],
    *,
    utc_of: UtcOf,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> Choice:
    """Pick the recording's one complete playlist, or merge them all (rules in the module docstring).

    :param main: the main playlist's key and contents, when it exists.
    :param snapshots: snapshot playlist key → contents.
    :param max_entries: the most entries a merged playlist may have (as for one playlist).
    """
    main_candidate = Candidate(key=main[0], playlist=main[1], main=True) if main is not None else None
    ordered = by_preference(main_candidate, (Candidate(key=k, playlist=p) for k, p in snapshots.items()))
    if not ordered:
        raise PlaylistError("the recording has no playlist: neither its own nor a snapshot playlist")
    listed = frozenset().union(*(uris(c.playlist) for c in ordered))
    endlist = any(c.playlist.endlist for c in ordered)
    picked = next((c for c in ordered if is_complete(c, listed=listed, endlist=endlist)), None)
    how: How
    used: tuple[str, ...]
    if picked is not None:
        playlist, how, used = picked.playlist, "picked", (picked.key,)
        sources: Sequence[Candidate] = (picked, *(c for c in ordered if c is not picked))
    else:
        playlist = merge_playlists(ordered, utc_of=utc_of, max_entries=max_entries)
        how, used, sources = "merged", written_order(ordered), ordered
    main_uris = uris(main_candidate.playlist) if main_candidate is not None else frozenset()
    return Choice(
        playlist=playlist,
        how=how,
        used=used,
        main=main_candidate.key if main_candidate is not None else None,
        snapshots=tuple(c.key for c in reversed(ordered) if not c.main),
        endlists=tuple(c.key for c in written_order_candidates(ordered) if c.playlist.endlist),
        only_in_snapshots=sum(1 for e in playlist.entries if e.uri not in main_uris),
        conflicts=find_conflicts(sources),
    )


def written_order_candidates(ordered: Sequence[Candidate]) -> tuple[Candidate, ...]:
    """Candidates in the report's order: the main playlist, then the snapshots oldest to newest."""
    return tuple(c for c in ordered if c.main) + tuple(c for c in reversed(ordered) if not c.main)


def written_order(ordered: Sequence[Candidate]) -> tuple[str, ...]:
    """Keys in the report's order: the main playlist, then the snapshots oldest to newest."""
    return tuple(c.key for c in written_order_candidates(ordered))


def first_entries(ordered: Iterable[Candidate]) -> dict[str, tuple[Candidate, Entry]]:
    """URI → the first playlist (in ``ordered``) listing it and its first entry for it."""
    first: dict[str, tuple[Candidate, Entry]] = {}
    for candidate in ordered:
        for entry in candidate.playlist.entries:
            first.setdefault(entry.uri, (candidate, entry))
    return first


def find_conflicts(ordered: Sequence[Candidate]) -> tuple[Conflict, ...]:
    """One ``Conflict`` per slice whose EXTINF differs between playlists (against the first's value)."""
    first = first_entries(ordered)
    conflicts: dict[str, Conflict] = {}
    for candidate in ordered:
        for entry in candidate.playlist.entries:
            used, used_entry = first[entry.uri]
            if entry.uri in conflicts or abs(entry.duration - used_entry.duration) <= EXTINF_TOLERANCE_S:
                continue
            conflicts[entry.uri] = Conflict(
                uri=entry.uri,
                used_s=used_entry.duration,
                used_key=used.key,
                other_s=entry.duration,
                other_key=candidate.key,
            )
    return tuple(conflicts.values())


def merge_playlists(ordered: Sequence[Candidate], *, utc_of: UtcOf, max_entries: int) -> Playlist:
    """The union of the playlists' entries, ordered by the times in the slice names."""
    first = first_entries(ordered)
    if len(first) > max_entries:
        raise PlaylistError(
            f"the recording's playlists list {len(first)} different slices, over the limit of {max_entries}"
        )
    timed: list[tuple[datetime, str]] = []
    unsafe: list[str] = []
    for uri, (candidate, entry) in first.items():
        utc = utc_of(uri) if unsafe_reason(uri) is None else None
        if utc is not None:
            timed.append((utc, uri))
        elif unsafe_reason(uri) is not None:
            unsafe.append(uri)
        else:
            raise PlaylistError(
                f"cannot merge the recording's playlists: {file_name(candidate.key)} lists {uri[:120]!r} "
                f"(entry {entry.index}), whose name carries no time of this recording, so its place among "
                "the slices the other playlists list is unknown"
            )
    order = [uri for _, uri in sorted(timed)] + unsafe
    sequence = min(c.playlist.media_sequence for c in ordered)
    entries = tuple(
        Entry(
            index=i,
            num=sequence + i,
            uri=uri,
            duration=first[uri][1].duration,
            discontinuity=first[uri][1].discontinuity,
        )
        for i, uri in enumerate(order)
    )
    return Playlist(
        version=max((c.playlist.version for c in ordered if c.playlist.version is not None), default=None),
        target_duration=max(
            (c.playlist.target_duration for c in ordered if c.playlist.target_duration is not None),
            default=None,
        ),
        media_sequence=sequence,
        endlist=any(c.playlist.endlist for c in ordered),
        entries=entries,
        vendor_tags=tuple(dict.fromkeys(t for c in ordered for t in c.playlist.vendor_tags)),
    )


# --- findings -------------------------------------------------------------------------------------


def snapshot_findings(choice: Choice) -> tuple[Finding, ...]:
    """``PLAYLIST_SNAPSHOTS``: one info finding saying what was processed, and a warning per slice
    the playlists give different EXTINFs; nothing for a recording without snapshot playlists."""
    if not choice.snapshots:
        return ()
    positions: dict[str, int] = {}
    for entry in choice.playlist.entries:
        positions.setdefault(entry.uri, entry.index)
    summary = Finding(code="PLAYLIST_SNAPSHOTS", severity="info", detail=describe_choice(choice))
    return (summary, *(conflict_finding(c, entry=positions.get(c.uri)) for c in choice.conflicts))


def conflict_finding(conflict: Conflict, *, entry: int | None) -> Finding:
    """The warning for one slice whose EXTINF the playlists disagree on."""
    detail = (
        f"the playlists disagree on slice {conflict.uri}: EXTINF {conflict.used_s:.3f} s in "
        f"{file_name(conflict.used_key)}, {conflict.other_s:.3f} s in {file_name(conflict.other_key)}; "
        f"{conflict.used_s:.3f} s is used"
    )
    return Finding(
        code="PLAYLIST_SNAPSHOTS", severity="warning", segment=conflict.uri, entry=entry, detail=detail
    )


def name_list(keys: Sequence[str]) -> str:
    """``a, b, c`` (at most ``NAMES_SHOWN`` names, then ``and N more``)."""
    shown = ", ".join(file_name(k) for k in keys[:NAMES_SHOWN])
    more = len(keys) - NAMES_SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


def describe_choice(choice: Choice) -> str:
    """The ``PLAYLIST_SNAPSHOTS`` info finding's sentence."""
    count = len(choice.snapshots) + (choice.main is not None)
    total = len(choice.playlist.entries)
    if choice.how == "picked":
        [key] = choice.used
        what = "the main playlist" if key == choice.main else "snapshot playlist"
        head = f"backup upload: of {count} playlists, {what} {file_name(key)} is used: it lists every slice"
        head += " the others list" if count > 1 else ""
    else:
        head = (
            f"backup upload: {count} playlists merged ({name_list(choice.used)}), as none lists every "
            "slice; entries ordered by the time in their names"
        )
    parts = [head]
    if choice.main is None:
        parts.append("there is no main playlist")
    elif choice.playlist.endlist and choice.main not in choice.endlists:
        parts.append(f"#EXT-X-ENDLIST from {name_list(choice.endlists)}, which the main playlist lacks")
    parts.append(f"{choice.only_in_snapshots} of {total} entries are listed only by snapshot playlists")
    if choice.conflicts:
        parts.append(f"{len(choice.conflicts)} slices have different EXTINFs in different playlists")
    return "; ".join(parts)
