"""The recording model: frozen records that stages pass along. No I/O here.

A ``Job`` starts with a discovered ``Recording`` and grows, stage by stage, through
``dataclasses.replace``: the fetch stage adds ``segments``, verify adds ``findings``, remux and
publish add ``outputs``. The runner derives the status from the findings and the policy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from pipeline.model.exceptions import PipelineError
from pipeline.model.media import SliceMedia
from pipeline.model.naming import Media, playlist_name
from pipeline.model.objects import ObjectInfo, Upload

log = logging.getLogger(__name__)

Status = Literal["ok", "degraded", "failed", "pending", "rejected"]
Severity = Literal["error", "warning", "info"]
Policy = Literal["strict", "lenient"]
Mode = Literal["composite", "individual", "web"]

BACKUPED_NOW = -1.0
"""A ``backuped_at`` that says "known to be backuped" without a time: the wait does not run out."""

Absent = Literal["keep", "cut"]
"""Individual mode: what a user's MP4 does with the time they were away (``stages.align``)."""
ABSENT_CHOICES: tuple[Absent, ...] = ("keep", "cut")
STATUSES: tuple[Status, ...] = ("ok", "degraded", "failed", "pending", "rejected")
POLICIES: tuple[Policy, ...] = ("strict", "lenient")


@dataclass(frozen=True, kw_only=True, slots=True)
class Finding:
    """One observation about a recording, with a stable ``code`` from SPEC.md."""

    code: str
    severity: Severity
    detail: str
    segment: str | None = None
    at_s: float | None = None
    seconds: float | None = None
    entry: int | None = None
    """Index of the playlist entry concerned, for recpipe's own bookkeeping (not in the report)."""

    def to_json(self) -> dict[str, object]:
        """The report's JSON shape for this finding."""
        return {
            "code": self.code,
            "severity": self.severity,
            "segment": self.segment,
            "at_s": None if self.at_s is None else round(self.at_s, 3),
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "detail": self.detail,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class Recording:
    """A recording found in storage: its identity and the objects that belong to it."""

    sid: str
    cname: str
    mode: Mode = "composite"
    uid: str | None = None
    media: Media | None = None
    codec: str | None = None
    """Individual v2 (raw) mode: the codec token of the user's audio+video playlist."""
    backup: int | None = None
    """A failover set's ``n`` (its files are named ``bak<n>_...``); None for the original recorder's."""
    directory: str
    """Key prefix of the directory holding the recording ("" or ending with "/")."""
    playlist_key: str | None
    """The playlist's key, or None when slices exist but no playlist has been uploaded yet."""
    slices: tuple[ObjectInfo, ...] = ()
    """Every object in ``directory`` named as a slice of this recording, in key order."""
    playlist: ObjectInfo | None = None
    snapshots: tuple[ObjectInfo, ...] = ()
    """Snapshot playlists ``<sid>_<cname>_<tick>_<index>.m3u8`` beside it, written after a backup
    upload (of any playlist kind), oldest first (by index, then tick)."""
    failovers: tuple[Recording, ...] = ()
    """The sets a resumed recorder wrote after a failover (``bak0_…``, ``bak1_…``), in order: each with
    its own playlist and snapshot playlists; their slices and MP4s are this recording's ``slices`` and
    ``mp4s``."""
    unprocessed: tuple[ObjectInfo, ...] = ()
    """The user's files beside it that recpipe recognises but does not process (``not_processed``)."""
    mp4s: tuple[ObjectInfo, ...] = ()
    """Objects in ``directory`` carrying the names the recorder gives this recording's MP4s
    (``<sid>_<cname>_<index>.mp4`` and the like), in key order: the recorder's, or recpipe's own."""

    @property
    def stem(self) -> str:
        """The playlist's name without ``.m3u8``: what recpipe's report and lease are named after."""
        name = playlist_name(self.sid, self.cname, uid=self.uid, media=self.media, codec=self.codec)
        return name.removesuffix(".m3u8")

    @property
    def label(self) -> str:
        """Short human name: ``<sid>_<cname>`` plus the uid/media (or codec) for individual recordings,
        and ``bak<n>_`` in front for a failover set."""
        return self.stem if self.backup is None else f"bak{self.backup}_{self.stem}"

    @property
    def playlist_keys(self) -> tuple[str, ...]:
        """The keys of every playlist of the recording: its own (uploaded yet or not), its snapshots,
        and those of its failover sets."""
        own = ((self.playlist_key,) if self.playlist_key else ()) + tuple(o.key for o in self.snapshots)
        return own + tuple(k for part in self.failovers for k in part.playlist_keys)

    @property
    def playlist_objects(self) -> tuple[ObjectInfo, ...]:
        """Every playlist of the recording: its own, its snapshots, and those of its failover sets."""
        own = ((self.playlist,) if self.playlist else ()) + self.snapshots
        return own + tuple(o for part in self.failovers for o in part.playlist_objects)

    @property
    def inputs(self) -> tuple[ObjectInfo, ...]:
        """The objects whose (key, size, etag) define the recording's inputs."""
        return self.playlist_objects + self.slices


@dataclass(frozen=True, kw_only=True, slots=True)
class Segment:
    """One playlist entry, resolved against storage and, once fetched, on local disk."""

    index: int
    """Position in the playlist, from 0."""
    num: int
    """Media sequence number: EXT-X-MEDIA-SEQUENCE plus ``index``."""
    uri: str
    duration: float
    discontinuity: bool = False
    key: str | None = None
    """Storage key, set only when the URI is a safe name inside the recording's directory."""
    utc: datetime | None = None
    """Start time from the slice name, when the name follows the convention."""
    size: int | None = None
    """Bytes fetched; None when the slice was not fetched (missing, or never asked for)."""
    defect: str | None = None
    """The finding code that makes this slice unusable for the MP4 (set by verify)."""
    media: SliceMedia | None = None
    """What recpipe's MPEG-TS reader found in the fetched bytes (set by fetch, as the slices stream)."""
    at_s: float | None = None
    """Start on the recording's reconciled timeline, in seconds from its start (set by verify)."""

    @property
    def present(self) -> bool:
        """Whether the slice was fetched."""
        return self.size is not None

    @property
    def length_s(self) -> float:
        """Seconds the slice covers: its media's duration once read, else what its EXTINF says."""
        media_s = self.media.duration_s if self.media is not None else None
        return self.duration if media_s is None else media_s


@dataclass(frozen=True, kw_only=True, slots=True)
class Output:
    """A file recpipe published."""

    key: str
    kind: str
    bytes: int
    sha256: str
    duration_s: float | None = None
    tracks: tuple[str, ...] = ()
    start_s: float | None = None
    """Where the output begins on the recording's clock (seconds from its start); MP4s only."""
    local: Path | None = field(default=None, compare=False)
    """The finished file in the work directory, to be published."""
    upload: Upload | None = field(default=None, compare=False)
    """An upload with every part sent, to be completed when published (instead of ``local``)."""

    def to_json(self) -> dict[str, object]:
        """The report's JSON shape for this output."""
        return {
            "key": self.key,
            "kind": self.kind,
            "bytes": self.bytes,
            "duration_s": None if self.duration_s is None else round(self.duration_s, 3),
            "tracks": list(self.tracks),
            "sha256": self.sha256,
            "start_s": None if self.start_s is None else round(self.start_s, 3),
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class RecorderMp4:
    """One of the MP4s the recorder wrote itself (``avFileType`` ``["hls", "mp4"]``), as recpipe read it."""

    key: str
    index: int
    backup: int | None = None
    """The failover set it belongs to (``bak<n>_``), None for the original recorder's."""
    bytes: int
    etag: str
    duration_s: float | None = None
    tracks: tuple[str, ...] = ()
    error: str | None = None
    """Why its index (``moov``) could not be read; None when it was."""
    start_s: float | None = None
    """Where it begins on the recording's clock, once judged against the slices."""
    slices: tuple[str, ...] = ()
    """The first and last slice it covers, once judged against the slices."""

    def to_json(self) -> dict[str, object]:
        """The report's ``recorder_outputs`` entry."""
        return {
            "key": self.key,
            "kind": "mp4",
            "index": self.index,
            "failover": self.backup,
            "bytes": self.bytes,
            "duration_s": None if self.duration_s is None else round(self.duration_s, 3),
            "tracks": list(self.tracks),
            "start_s": None if self.start_s is None else round(self.start_s, 3),
            "slices": list(self.slices),
            "error": self.error,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class Expectations:
    """What the recording should contain, from the start-request profile."""

    stream_types: int | None = None
    """``streamTypes``: 0 audio, 1 video, 2 both; None when no profile says."""
    width: int | None = None
    height: int | None = None
    fps: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class StageError:
    """The error that stopped a stage, as shown in the report."""

    stage: str
    type: str
    message: str
    retryable: bool = False
    """Whether another try later may succeed (the error class's ``retryable``)."""

    @classmethod
    def of(cls, err: PipelineError, *, stage: str) -> StageError:
        """The record of ``err`` (its class says whether it is worth retrying)."""
        return cls(stage=stage, type=type(err).__name__, message=str(err), retryable=err.retryable)


@dataclass(frozen=True, kw_only=True, slots=True)
class Alignment:
    """Individual mode: how a user's streams were laid on one clock (planned by ``stages.align``)."""

    starts: Mapping[str, float]
    """Where each stream (``audio``/``video``) begins on the user's clock, in seconds."""
    absences: tuple[tuple[float, float], ...]
    """``(at_s, seconds)`` of each stretch in which neither stream has media."""
    media_s: float | None
    """Seconds of the user's clock covered by the placed slices (None when none was placed)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Job:
    """One recording going through the stages (in individual mode: one user, whose ``streams`` are
    each fetched and verified as a job of their own)."""

    recording: Recording
    policy: Policy = "strict"
    want_mp4: bool = False
    expect: Expectations = Expectations()
    inputs_digest: str = ""
    playlist_duration: float = 0.0
    target_duration: float | None = None
    endlist: bool = False
    playlists: tuple[str, ...] | None = None
    """Keys of the playlists whose entries were processed (set by fetch; ``stages.snapshots``)."""
    backup_wait: bool = False
    """The recorder reported ``backuped`` and the wait has not run out: listed slices that are not
    there yet are on their way (``BACKUP_PENDING``), not missing."""
    failover_joins: tuple[int, ...] = ()
    """Entries where a failover set's slices begin (set by fetch; ``stages.failover``)."""
    recorder_mp4s: tuple[RecorderMp4, ...] = ()
    """The recorder's own MP4s of this recording (``stages.recorder``)."""
    mp4_alongside: bool = False
    """The recorder's MP4 names are taken (by its own files): recpipe names its MP4s ``….recpipe.mp4``."""
    mp4_source: Literal["recpipe", "recorder"] | None = None
    """Whose MP4s the report offers: recpipe's, the recorder's (complete and sound, so recpipe wrote
    none), or none."""
    streams: tuple[Job, ...] = ()
    """Individual mode: the job of each of the user's streams (video first), fetched and verified."""
    absent: Absent | None = None
    """Individual mode: what the user's MP4 does with time when the user was away."""
    alignment: Alignment | None = None
    """Individual mode: the user's streams on one clock (set by the align stage)."""
    segments: tuple[Segment, ...] = ()
    findings: tuple[Finding, ...] = ()
    outputs: tuple[Output, ...] = ()
    error: StageError | None = None
    status: Status | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    retries: int = 0
    """Storage requests that had to be sent again while this job ran."""
    skipped: bool = False
    """True when an up-to-date report already existed and nothing was done."""

    @property
    def present_segments(self) -> tuple[Segment, ...]:
        """Segments that were fetched, in playlist order."""
        return tuple(s for s in self.segments if s.present)

    @property
    def usable_segments(self) -> tuple[Segment, ...]:
        """Segments that go into the MP4: fetched and without a defect."""
        return tuple(s for s in self.segments if s.present and s.defect is None)

    def has(self, code: str) -> bool:
        """Whether any finding carries ``code``."""
        return any(f.code == code for f in self.findings)
