"""Builders for test inputs: playlists and slice names in Agora's shapes."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta

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
