"""Failover: join the original recorder's playlist and those of the recorders that resumed it. Pure.

When a recording server fails, Agora resumes the recording on another within about 90 s, and the new
one writes a set of its own, every file prefixed ``bak<n>_`` (``bak0_<sid>_<cname>.m3u8`` and its
slices). The original playlist may never get ``#EXT-X-ENDLIST``. ``join_parts`` makes one playlist of
the parts, in order (original, ``bak0``, ``bak1``, …):

- each part's entries in its own order, the first of every later part marked as a discontinuity
  (its timestamps start afresh), its index remembered in ``Choice.joins``;
- ``#EXT-X-ENDLIST`` from the last part: the recording ended when the last recorder stopped;
- the stretch the recorders lost between two parts is a gap the timeline finds; ``failover_findings``
  names it ``FAILOVER_GAP`` — a **warning**, not an error: Agora documents the loss as what its
  high-availability mechanism costs, recpipe can recover nothing of it, and failing every such
  recording under the strict policy would leave its users with no MP4 at all. A part that starts
  before the previous one ended overlaps it: the MP4 keeps the later recorder's media there (as for
  any overlap) and the finding is ``FAILOVER_OVERLAP``, info.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from pipeline.model.exceptions import PlaylistError
from pipeline.model.job import Finding
from stages.playlist import Entry, Playlist
from stages.snapshots import Choice, file_name

log = logging.getLogger(__name__)


def join_parts(parts: Sequence[Choice], *, max_entries: int) -> Choice:
    """One choice whose playlist is every part's entries, in order (rules in the module docstring)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0].playlist
    entries: list[Entry] = []
    joins: list[int] = []
    for number, part in enumerate(parts):
        for i, entry in enumerate(part.playlist.entries):
            at = len(entries)
            if number > 0 and i == 0:
                joins.append(at)
            starts_part = number > 0 and i == 0
            entries.append(
                replace(
                    entry,
                    index=at,
                    num=first.media_sequence + at,
                    discontinuity=entry.discontinuity or starts_part,
                )
            )
    if len(entries) > max_entries:
        raise PlaylistError(
            f"the recording and its failover sets list {len(entries)} slices, over the limit of {max_entries}"
        )
    playlist = Playlist(
        version=max((p.playlist.version for p in parts if p.playlist.version is not None), default=None),
        target_duration=max(
            (p.playlist.target_duration for p in parts if p.playlist.target_duration is not None),
            default=None,
        ),
        media_sequence=first.media_sequence,
        endlist=parts[-1].playlist.endlist,
        entries=tuple(entries),
        vendor_tags=tuple(dict.fromkeys(t for p in parts for t in p.playlist.vendor_tags)),
    )
    return replace(
        parts[0],
        playlist=playlist,
        used=tuple(k for p in parts for k in p.used),
        snapshots=tuple(k for p in parts for k in p.snapshots),
        endlists=tuple(k for p in parts for k in p.endlists),
        only_in_snapshots=sum(p.only_in_snapshots for p in parts),
        conflicts=tuple(c for p in parts for c in p.conflicts),
        joins=tuple(joins),
    )


def failover_summary(choice: Choice) -> tuple[Finding, ...]:
    """``FAILOVER`` (info): the recording was resumed, and where each resumed part begins."""
    if not choice.joins:
        return ()
    starts = ", ".join(
        f"{file_name(choice.playlist.entries[j].uri)} (entry {j})" for j in choice.joins[:5]
    ) + (" ..." if len(choice.joins) > 5 else "")
    detail = (
        f"the recording failed over {len(choice.joins)} time(s) and was resumed by another recorder; "
        f"its playlists are joined: {', '.join(file_name(k) for k in choice.used[:6])}; resumed parts "
        f"begin at {starts}"
    )
    return (Finding(code="FAILOVER", severity="info", detail=detail),)


def failover_findings(findings: Sequence[Finding], *, joins: Sequence[int]) -> tuple[Finding, ...]:
    """The timeline's gap or overlap where a resumed part begins, as ``FAILOVER_GAP`` (warning) or
    ``FAILOVER_OVERLAP`` (info)."""
    at_join = set(joins)
    out = []
    for f in findings:
        if f.entry in at_join and f.code == "TIMELINE_GAP":
            seconds = f.seconds or 0.0
            detail = (
                f"{seconds:.3f} s lost to a failover before {f.segment}: the recording server failed and "
                "another resumed the recording (Agora's high availability); nothing of it can be recovered"
            )
            f = replace(f, code="FAILOVER_GAP", severity="warning", detail=detail)
        elif f.entry in at_join and f.code == "TIMELINE_OVERLAP":
            detail = (
                f"the resumed recorder's {f.segment} starts {f.seconds or 0.0:.3f} s before the previous "
                "recorder's media ends; the MP4 keeps the resumed recorder's media there"
            )
            f = replace(f, code="FAILOVER_OVERLAP", severity="info", detail=detail)
        out.append(f)
    return tuple(out)
