"""The per-slice half of verification: where each slice sits on the timeline and whether the MP4 can
use it, decided while the slices stream (the remux feeder) by the same rules ``stages.verify`` applies
to the whole recording afterwards, so both always agree."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from pipeline.model.exceptions import NamingError
from pipeline.model.job import Segment
from stages.timeline import TimelineBuilder, repeated_entries


def unusable(seg: Segment, *, repeats: frozenset[int]) -> str | None:
    """The finding code that keeps a slice out of the MP4, or None when it can be used."""
    if seg.key is None or not seg.present:
        return "MISSING_SEGMENT"
    if seg.size == 0:
        return "EMPTY_SEGMENT"
    if seg.index in repeats:
        return "DUPLICATE_SEGMENT"
    if seg.media is not None and not seg.media.readable:
        return "CORRUPT_SEGMENT"
    return None


class Screen:
    """The per-slice half of verification, for slices as they stream in playlist order: where each
    one sits on the timeline and whether the MP4 can use it. The same rules ``check`` applies to the
    whole recording afterwards, so both always agree."""

    def __init__(self, segments: Sequence[Segment]) -> None:
        self._repeats = repeated_entries(segments)
        self._timeline = TimelineBuilder(repeats=self._repeats)

    def wall_clock(self, seg: Segment) -> datetime:
        """When a placed slice starts on the recorder's clock: its name's time, else the timeline's."""
        if seg.utc is not None:
            return seg.utc
        origin = self._timeline.origin
        if origin is None or seg.at_s is None:
            raise NamingError(f"cannot name the MP4 that starts with {seg.uri}: no slice name carries a time")
        return origin + timedelta(seconds=seg.at_s)

    def add(self, seg: Segment) -> Segment:
        """The next entry (fetched and read, or not), placed and judged."""
        at = self._timeline.add(seg)
        return replace(seg, at_s=at, defect=unusable(seg, repeats=self._repeats))
