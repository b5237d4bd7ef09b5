"""Pipeline settings: one frozen dataclass, loaded once from flags and the environment."""

from __future__ import annotations

import logging
import string
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from pipeline.model.exceptions import ConfigError
from pipeline.model.job import ABSENT_CHOICES, POLICIES, Absent, Policy

log = logging.getLogger(__name__)

MP4_TEMPLATE_FIELDS = frozenset({"sid", "cname", "utc", "index", "uid", "media", "codec"})
DEFAULT_MP4_TEMPLATE = "{sid}_{cname}_{index}.mp4"
"""Agora's own name for a composite or web page recording's MP4s (AGORA_FILES.md)."""
DEFAULT_INDIVIDUAL_MP4_TEMPLATE = "{sid}_{cname}__uid_s_{uid}__uid_e_{media}_{index}.mp4"
"""A legacy individual-mode user's merged MP4 (``media`` is ``av``, or the one stream the user has)."""
DEFAULT_RAW_MP4_TEMPLATE = "{sid}_{cname}__uid_s_{uid}__uid_e_{index}_{codec}.mp4"
"""Agora's name for a v2 (raw) individual user's MP4s."""

MIN_PART_BYTES = 5 * 1024 * 1024
"""S3's smallest multipart part (all but the last)."""

ENV_PREFIX = "RECPIPE_"
"""Settings can come from ``RECPIPE_<FIELD>`` variables, e.g. ``RECPIPE_FETCH_WORKERS=16``."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PipelineConfig:
    """How recpipe runs. Every field has a default that suits a laptop and a worker alike."""

    fetch_workers: int = 8
    """Slices downloaded concurrently. S3 is latency-bound, so more workers than cores pays off."""
    fetch_window: int = 16
    """Slices in flight or waiting to be consumed at any time."""
    fetch_window_bytes: int = 64 * 1024 * 1024
    """Bytes of slices in flight or waiting at any time: what bounds memory, whatever the recording's
    length (a slice larger than this is still fetched, alone)."""
    fetch_head_start: int = 7
    """Slices read while the playlist is read, before it names them: the first ones listed, at most
    ``fetch_workers`` - 1 (one connection stays free for the playlist: 7 for the default 8 workers);
    0 turns it off. Only for a recording whose playlist was last written ``fetch_head_start_after_s``
    ago or more: one still going rewrites its playlist with every slice, and what is read ahead for a
    recording that turns out unfinished is read for nothing. The fleet's workers never read ahead
    (they try unfinished recordings again and again)."""
    fetch_head_start_after_s: float = 60.0
    """How long a playlist must have been left unchanged (by the store's clock against this machine's)
    before its slices are read ahead (``fetch_head_start``)."""
    max_slice_bytes: int = 256 * 1024 * 1024
    """A slice larger than this is not read (the recorder cuts slices at ~50 MB)."""
    fetch_attempts: int = 3
    """Tries per slice for read errors and size mismatches (botocore retries throttling/5xx itself)."""
    max_playlist_bytes: int = 8 * 1024 * 1024
    """A playlist larger than this is rejected unread (a day of 15 s slices is about 0.5 MB)."""
    max_playlist_entries: int = 50_000
    """A playlist listing more slices is rejected before it is parsed (a day of 15 s slices is 5,760)."""
    policy: Policy = "strict"
    """``strict``: any error finding fails the recording; ``lenient``: publish a best-effort MP4."""
    absent: Absent = "keep"
    """Individual mode: a user's time away stays in their MP4 (``keep``: last frame and silence) or is
    removed from both streams (``cut``)."""
    mp4_template: str = DEFAULT_MP4_TEMPLATE
    """Name of composite and web MP4 outputs; fields: sid, cname, index, utc (its first slice's time).
    Where the recorder's own MP4s are, recpipe's end in ``.recpipe.mp4`` instead of ``.mp4``."""
    individual_mp4_template: str = DEFAULT_INDIVIDUAL_MP4_TEMPLATE
    """Name of legacy individual-mode MP4 outputs; fields: sid, cname, uid, media, index."""
    raw_mp4_template: str = DEFAULT_RAW_MP4_TEMPLATE
    """Name of v2 (raw) individual-mode MP4 outputs; fields: sid, cname, uid, codec, index."""
    max_mp4_seconds: float = 7200.0
    """A new MP4 starts at the slice boundary before one would pass this much media. Agora contradicts
    itself on where its recorder does (the REST reference: ~2 hours; the "Manage recorded files" page:
    ~3 hours), so it is a setting: 7200 matches the reference, 10800 the other page. Web page
    recordings follow their start request's ``serviceParam.maxVideoDuration`` instead."""
    max_mp4_bytes: int = 2 * 1024**3
    """... or before its slices would pass this many bytes (the recorder's ~2 GB; the MP4 is a little
    smaller than its slices)."""
    upload_part_bytes: int = 8 * 1024 * 1024
    """Part size of streamed MP4 uploads (S3 wants at least 5 MiB); a few parts are in memory at once."""
    lease_seconds: float = 120.0
    """Life of the lease that keeps two recpipes from processing one recording at once; renewed every
    third of it while working. A crashed holder blocks the recording at most this long."""
    backup_wait_seconds: float = 86400.0
    """How long after the recorder reported ``backuped`` a recording whose listed slices are not all
    there yet stays pending; afterwards the missing slices count as missing."""
    workdir_reserve_bytes: int = 0
    """Free space to leave in the work directory for others, beyond what an MP4 needs."""
    workdir: Path | None = None
    """Parent of the per-job temporary directory; None means the system's temp directory."""
    ffmpeg: str | None = None
    """ffmpeg to run; None means $RECPIPE_FFMPEG, PATH, then the imageio-ffmpeg wheel."""

    def __post_init__(self) -> None:
        for name in (
            "fetch_workers",
            "fetch_window",
            "fetch_window_bytes",
            "fetch_attempts",
            "max_playlist_bytes",
            "max_playlist_entries",
            "max_slice_bytes",
            "max_mp4_bytes",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.fetch_head_start < 0:
            raise ConfigError(f"fetch_head_start must not be negative, got {self.fetch_head_start}")
        if not self.fetch_head_start_after_s >= 0:
            raise ConfigError(
                f"fetch_head_start_after_s must not be negative, got {self.fetch_head_start_after_s}"
            )
        if self.upload_part_bytes < MIN_PART_BYTES:
            raise ConfigError(f"upload_part_bytes must be at least {MIN_PART_BYTES} (S3's minimum part size)")
        if self.workdir_reserve_bytes < 0:
            raise ConfigError("workdir_reserve_bytes must not be negative")
        if not self.lease_seconds >= 3:
            raise ConfigError(f"lease_seconds must be at least 3, got {self.lease_seconds}")
        if not self.max_mp4_seconds > 0:
            raise ConfigError(f"max_mp4_seconds must be positive, got {self.max_mp4_seconds}")
        if self.fetch_window < self.fetch_workers:
            raise ConfigError("fetch_window must be at least fetch_workers")
        if self.absent not in ABSENT_CHOICES:
            raise ConfigError(f"absent must be one of {', '.join(ABSENT_CHOICES)}, got {self.absent!r}")
        if self.policy not in POLICIES:
            raise ConfigError(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        check_template(self.mp4_template, name="mp4_template")
        check_template(self.individual_mp4_template, name="individual_mp4_template")
        check_template(self.raw_mp4_template, name="raw_mp4_template")


def check_template(template: str, *, name: str) -> str:
    """Validate an output-name template: known fields only, ``{index}`` required, no path parts."""
    try:
        used = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as err:
        raise ConfigError(f"{name}: {err}") from err
    unknown = used - MP4_TEMPLATE_FIELDS
    if unknown:
        raise ConfigError(f"{name}: unknown field(s) {sorted(unknown)}; known: {sorted(MP4_TEMPLATE_FIELDS)}")
    if "index" not in used:
        raise ConfigError(f"{name}: must contain {{index}} so split outputs get distinct names")
    if "/" in template or "\\" in template or not template.endswith(".mp4"):
        raise ConfigError(f"{name}: must be a plain file name ending in .mp4, got {template!r}")
    return template


def _coerce(raw: str, *, like: Any, name: str) -> Any:
    """Turn an environment string into the type of the field's default."""
    if isinstance(like, bool):
        return raw.lower() in {"1", "true", "yes", "on"}
    if isinstance(like, int):
        try:
            return int(raw)
        except ValueError as err:
            raise ConfigError(f"{ENV_PREFIX}{name.upper()}: expected an integer, got {raw!r}") from err
    if isinstance(like, float):
        try:
            return float(raw)
        except ValueError as err:
            raise ConfigError(f"{ENV_PREFIX}{name.upper()}: expected a number, got {raw!r}") from err
    if name == "workdir":
        return Path(raw)
    return raw


def load_config(
    *, environ: Mapping[str, str], overrides: Mapping[str, object] | None = None
) -> PipelineConfig:
    """Defaults, then ``RECPIPE_*`` variables, then explicit overrides (command-line flags)."""
    base = PipelineConfig()
    values: dict[str, Any] = {}
    for f in fields(PipelineConfig):
        raw = environ.get(f"{ENV_PREFIX}{f.name.upper()}")
        if raw is not None and raw != "":
            values[f.name] = _coerce(raw, like=getattr(base, f.name), name=f.name)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = {f.name for f in fields(PipelineConfig)}
    stray = set(values) - known
    if stray:
        raise ConfigError(f"unknown setting(s): {sorted(stray)}")
    return replace(base, **values)
