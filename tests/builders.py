"""Builders for test inputs: playlists and slice names in Agora's shapes, and the refusal of a store
that may not be written."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from pipeline.model.exceptions import StorageError
from pipeline.model.media import TICKS_PER_S, SliceMedia, StreamFacts

SID = "sid713476478245"
CNAME = "demo room"
START = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)


def utc17(when: datetime) -> str:
    """17-digit UTC as in slice names."""
    return when.strftime("%Y%m%d%H%M%S") + f"{when.microsecond // 1000:03d}"


def slice_uri(n: int, *, sid: str = SID, cname: str = CNAME, seconds: float = 15.0) -> str:
    """Name of slice ``n`` of a recording whose slices last ``seconds`` each."""
    return f"{sid}_{cname}_{utc17(START + timedelta(seconds=n * seconds))}.ts"


def make_playlist(
    *,
    first_seq: int = 0,
    count: int = 3,
    duration: float = 15.0,
    target: int = 15,
    drop: Collection[int] = (),
    discontinuity_at: Collection[int] = (),
    endlist: bool = True,
    uris: dict[int, str] | None = None,
    extra_tags: tuple[str, ...] = (),
) -> str:
    """m3u8 text for ``count`` slices; ``drop`` leaves entries out, ``uris`` overrides names."""
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-MEDIA-SEQUENCE:{first_seq}",
        f"#EXT-X-TARGETDURATION:{target}",
    ]
    lines += list(extra_tags)
    for n in range(count):
        if n in drop:
            continue
        if n in discontinuity_at:
            lines.append("#EXT-X-DISCONTINUITY")
        lines.append(f"#EXTINF:{duration:.6f},")
        lines.append((uris or {}).get(n, slice_uri(n, seconds=duration)))
    if endlist:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def media(
    start_s: float = 0.0,
    seconds: float = 15.0,
    *,
    kinds: Collection[str] = ("video", "audio"),
    size: tuple[int, int] | None = (320, 240),
    keyframe: bool | None = True,
    cc_errors: tuple[tuple[int, int], ...] = (),
    trailing: int = 0,
    readable: bool = True,
) -> SliceMedia:
    """A ``SliceMedia`` as the TS reader would report a slice at ``start_s`` lasting ``seconds``."""
    frame = 6000  # 15 fps
    first = round((10 + start_s) * TICKS_PER_S)
    last = first + round(seconds * TICKS_PER_S) - frame
    streams = []
    if "video" in kinds:
        streams.append(
            StreamFacts(
                pid=256, stream_type=0x1B, kind="video", codec="h264", pes_count=10,
                first_pts=first, last_pts=last, min_pts=first, max_pts=last, frame_ticks=frame,
                tail_ticks=frame, keyframe_at_start=keyframe,
                width=size[0] if size else None, height=size[1] if size else None,
            )
        )  # fmt: skip
    if "audio" in kinds:
        streams.append(
            StreamFacts(
                pid=257, stream_type=0x0F, kind="audio", codec="aac", pes_count=10,
                first_pts=first, last_pts=last, min_pts=first, max_pts=last, frame_ticks=frame,
                tail_ticks=frame, sample_rate=48000, channels=1,
            )
        )  # fmt: skip
    packets = 100
    return SliceMedia(
        size=packets * 188 + trailing,
        packets=packets,
        trailing_bytes=trailing,
        has_pat=True,
        has_pmt=readable,
        streams=tuple(streams) if readable else (),
        cc_errors=cc_errors,
    )


def leftovers_refused() -> None:
    """A destination's ``cleared`` when the store refuses to list what a killed run left."""
    raise StorageError("cannot list multipart uploads: AccessDenied")
