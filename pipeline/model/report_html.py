"""A recording at a glance: its report(s) as one self-contained HTML page (``recpipe show --html``).

Pure: report documents in, one HTML string out — no network, no CDN, no script; inline CSS and SVG.
Each recording (or, in individual mode, each user) gets a timeline on its own clock: one lane per
stream with a block per slice (its tooltip: name, EXTINF, media duration, bytes, first frame, size),
markers for every positioned finding (coloured by severity: gaps and overlaps as shaded stretches,
discontinuities as lines), the MP4s recpipe wrote and the recorder's own as spans, and the time a user
was away shaded. Above it, what a reader needs first: status, policy, counts, durations, sizes, timings
per stage, tool versions, the playlists read (snapshot and failover ones included).

Every name comes from storage and is escaped. The x of a time ``t`` on a timeline is
``data-x0 + t * data-px-per-s`` (attributes of its ``<svg>``), which a test checks in a real browser.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

X0 = 110.0
"""Left gutter (lane labels)."""
MIN_WIDTH = 1100.0
MAX_WIDTH = 60_000.0
"""A 40 h recording of 10,000 slices stays a few megabytes of SVG a browser draws at once."""
MIN_SLICE_PX = 4.0
LANE_H = 26.0
GAP = 8.0
SEVERITY_COLOUR = {"error": "#c62828", "warning": "#ef6c00", "info": "#1565c0"}
SPAN_CODES = {
    "TIMELINE_GAP": "gap",
    "TIMELINE_OVERLAP": "overlap",
    "FAILOVER_GAP": "gap",
    "USER_ABSENT": "away",
}

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1a1a1a;background:#fafafa}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.status{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:600}
.ok{background:#2e7d32}.degraded{background:#ef6c00}.failed{background:#c62828}
.rejected{background:#6a1b9a}.pending{background:#546e7a}.none{background:#9e9e9e}
table{border-collapse:collapse;margin:6px 0 12px}td,th{padding:3px 10px;text-align:left;
border-bottom:1px solid #e0e0e0;vertical-align:top}th{font-weight:600;color:#555}
.scroll{overflow-x:auto;border:1px solid #ddd;background:#fff}
svg text{font:11px system-ui,sans-serif}
.slice{fill:#90caf9;stroke:#1e88e5;stroke-width:.5}.slice.key{fill:#64b5f6}.slice.odd{fill-opacity:.7}
.slice.bad{fill:#ef9a9a;stroke:#c62828}.slice.missing{fill:#fff;stroke:#c62828;stroke-dasharray:2 2}
.span-gap{fill:#c62828;fill-opacity:.18}.span-overlap{fill:#ef6c00;fill-opacity:.25}
.span-away{fill:#9e9e9e;fill-opacity:.25}
.mp4{fill:#a5d6a7;stroke:#2e7d32}.recorder{fill:#ce93d8;stroke:#6a1b9a}
.disc{stroke:#6a1b9a;stroke-width:1.5}.axis{stroke:#bbb}
code{font-size:12px}
"""


def esc(value: object) -> str:
    """Text for HTML (and SVG) content and attributes."""
    return html.escape("" if value is None else str(value), quote=True)


def seconds(value: object) -> str:
    """``12.345 s``, or ``—``."""
    return f"{value:.3f} s" if isinstance(value, int | float) and not isinstance(value, bool) else "—"


def render_page(report: Mapping[str, Any], users: Sequence[Mapping[str, Any]] = ()) -> str:
    """The page for one report; ``users`` are the user reports an individual-mode recording's report
    lists (each drawn on its own user's clock)."""
    rec = report.get("recording", {})
    title = f"{rec.get('sid', '?')}_{rec.get('cname', '?')}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>recpipe · {esc(title)}</title>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{esc(title)} {status_badge(report.get('status'))}</h1>",
        f"<div>{esc(rec.get('mode'))} recording · {esc(report.get('policy'))} policy</div>",
        summary_table(report),
    ]
    timed = [report] if "timeline" in report else []
    for doc in [*timed, *users]:
        parts.append(timeline_section(doc))
    parts.append(findings_table(report, users))
    parts.append("</body></html>")
    return "\n".join(parts)


def status_badge(status: object) -> str:
    name = str(status) if status in ("ok", "degraded", "failed", "rejected", "pending") else "none"
    return f'<span class="status {name}" data-status="{esc(status)}">{esc(status or "no status")}</span>'


def summary_table(report: Mapping[str, Any]) -> str:
    """Counts, durations, sizes, timings, tools and playlists."""
    seg = report.get("segments", {})
    dur = report.get("duration", {})
    counts: dict[str, int] = {}
    for f in report.get("findings", []):
        counts[f.get("severity", "?")] = counts.get(f.get("severity", "?"), 0) + 1
    rows = [
        (
            "slices",
            f"{seg.get('present', 0)} of {seg.get('listed', 0)} present, {seg.get('bytes', 0):,} bytes",
        ),
        (
            "duration",
            f"playlist {seconds(dur.get('playlist_s'))}, media {seconds(dur.get('media_s'))}, "
            f"wall clock {seconds(dur.get('wallclock_s'))}",
        ),
        ("findings", ", ".join(f"{n} {sev}" for sev, n in sorted(counts.items())) or "none"),
        ("outputs", ", ".join(o.get("key", "?") for o in report.get("outputs", [])) or "none"),
        ("MP4 from", str(report.get("mp4_source") or "—")),
        ("timings", ", ".join(f"{k} {v:.3f} s" for k, v in report.get("timings_s", {}).items()) or "—"),
        ("retries", str(report.get("retries", 0))),
        ("tools", ", ".join(f"{k} {v}" for k, v in report.get("tool", {}).items()) or "—"),
        ("playlists", ", ".join(str(p) for p in report.get("recording", {}).get("playlists", [])) or "—"),
    ]
    if report.get("error"):
        err = report["error"]
        rows.insert(0, ("error", f"{err.get('stage')}: {err.get('type')}: {err.get('message')}"))
    for user in report.get("users", []):
        rows.append(
            (f"user {user.get('uid')}", f"{user.get('status')} ({', '.join(user.get('streams', []))})")
        )
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f'<table class="summary">{body}</table>'


def lane_of(uri: str, doc: Mapping[str, Any]) -> str:
    """Which lane a slice is drawn in: its stream in a user's report, else the one lane."""
    if "streams" not in doc:
        return "slices"
    for name in doc["streams"]:
        if f"__uid_e_{name}_" in uri or uri.endswith(f"__uid_e_{name}.ts"):
            return str(name)
    return "slices"


def timeline_section(doc: Mapping[str, Any]) -> str:
    """One recording's (or user's) timeline as an SVG in a scrolling box."""
    rec = doc.get("recording", {})
    label = f"user {rec.get('uid')}" if rec.get("uid") else "timeline"
    tl = doc.get("timeline", {})
    uris = list(tl.get("uri", []))
    starts = dict(doc.get("streams", {}))
    offset = {name: (s.get("starts_s") or 0.0) for name, s in starts.items()}
    blocks: list[tuple[str, float, float, int]] = []
    for i, uri in enumerate(uris):
        at = tl["at_s"][i]
        if at is None:
            continue
        lane = lane_of(uri, doc)
        length = tl["media_s"][i] if tl["media_s"][i] is not None else tl["extinf_s"][i]
        blocks.append((lane, float(offset.get(lane, 0.0)) + float(at), max(float(length or 0.0), 0.0), i))
    order = ("video", "audio", "slices")
    lanes = sorted({b[0] for b in blocks}, key=lambda n: (order.index(n) if n in order else 3, n)) or [
        "slices"
    ]
    ends = [start + length for _, start, length, _ in blocks]
    ends += [
        float(o.get("start_s") or 0.0) + float(o.get("duration_s") or 0.0) for o in doc.get("outputs", [])
    ]
    total = max([*ends, float(doc.get("duration", {}).get("playlist_s") or 0.0), 1.0])
    mean = total / max(len(blocks), 1)
    pps = min(max(MIN_WIDTH / total, MIN_SLICE_PX / max(mean, 1e-3)), MAX_WIDTH / total)
    width = X0 + total * pps + 40
    rows = [*lanes, "MP4"]
    height = 30 + len(rows) * (LANE_H + GAP) + 20

    def x(t: float) -> float:
        return X0 + t * pps

    def y(row: str) -> float:
        return 30 + rows.index(row) * (LANE_H + GAP)

    svg = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'data-x0="{X0}" data-px-per-s="{pps:.6f}" data-total-s="{total:.3f}">'
    ]
    svg += axis(total, x, height)
    for row in rows:
        svg.append(f'<text x="6" y="{y(row) + LANE_H * 0.65:.1f}">{esc(row)}</text>')
    for lane, start, length, i in blocks:
        defect = tl["defect"][i]
        frame = tl["first_frame"][i]
        kind = "missing" if defect == "MISSING_SEGMENT" else "bad" if defect else ""
        kind += (" key" if frame == "key" else "") + (" odd" if i % 2 else "")
        tip = (
            f"{uris[i]}\nEXTINF {seconds(tl['extinf_s'][i])}, media {seconds(tl['media_s'][i])}\n"
            f"{tl['bytes'][i] if tl['bytes'][i] is not None else 'not fetched'} bytes"
            f"{', first frame ' + frame if frame else ''}{', ' + tl['size'][i] if tl['size'][i] else ''}"
            f"{', ' + defect if defect else ''}\nat {start:.3f} s"
        )
        svg.append(
            f'<rect class="slice {kind}" data-index="{i}" x="{x(start):.2f}" y="{y(lane):.1f}" '
            f'width="{max(length * pps, 1.0):.2f}" height="{LANE_H}"><title>{esc(tip)}</title></rect>'
        )
        if tl["discontinuity"][i]:
            svg.append(
                f'<line class="disc marker" data-code="DISCONTINUITY" data-at-s="{start:.3f}" '
                f'x1="{x(start):.2f}" x2="{x(start):.2f}" '
                f'y1="{y(lane) - 3:.1f}" y2="{y(lane) + LANE_H + 3:.1f}">'
                f"<title>#EXT-X-DISCONTINUITY before {esc(uris[i])}{esc(changed(tl, i))}</title></line>"
            )
    bottom = 30 + len(lanes) * (LANE_H + GAP)
    for at, length in absences(doc):
        svg.append(
            f'<rect class="span-away marker" data-code="ABSENT" data-at-s="{at:.3f}" x="{x(at):.2f}" y="24" '
            f'width="{max(length * pps, 2.0):.2f}" height="{bottom - 24:.1f}">'
            f"<title>the user is away: {length:.3f} s from {at:.3f} s</title></rect>"
        )

    def place(t: float, segment: str) -> float:
        """A time of the stream ``segment`` belongs to, on the page."""
        return x(t + float(offset.get(lane_of(segment, doc), 0.0)))

    svg += finding_marks(doc, place=place, pps=pps, top=30.0, bottom=bottom)
    for out in doc.get("outputs", []):
        svg.append(span(out, cls="mp4", x=x, pps=pps, y=y("MP4")))
    for out in doc.get("recorder_outputs", []):
        if out.get("start_s") is not None:
            svg.append(span(out, cls="recorder", x=x, pps=pps, y=y("MP4") + LANE_H / 2))
    svg.append("</svg>")
    return f'<h2>{esc(label)}</h2><div class="scroll">{"".join(svg)}</div>'


def changed(tl: Mapping[str, Any], i: int) -> str:
    """What differs across a discontinuity: the picture size, or the first frame's kind."""
    if i == 0:
        return ""
    notes = []
    before, after = tl["size"][i - 1], tl["size"][i]
    if before and after and before != after:
        notes.append(f"size {before} → {after}")
    if tl["first_frame"][i] == "delta":
        notes.append("it does not start with a keyframe")
    return f": {'; '.join(notes)}" if notes else ": nothing visible changed"


def axis(total: float, x: Any, height: float) -> list[str]:
    """Ticks at a round step (about 12 across the page, whatever the length)."""
    raw = total / 12
    step = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for factor in (1, 2, 5, 10):
        if raw <= step * factor:
            step *= factor
            break
    out = []
    t = 0.0
    while t <= total + 1e-9:
        out.append(f'<line class="axis" x1="{x(t):.2f}" x2="{x(t):.2f}" y1="18" y2="{height - 14:.0f}"/>')
        out.append(f'<text x="{x(t) + 2:.2f}" y="14">{clock(t)}</text>')
        t += step
    return out


def clock(t: float) -> str:
    """``1:02:03`` or ``2:03.5``."""
    h, rest = divmod(t, 3600)
    m, s = divmod(rest, 60)
    return f"{int(h)}:{int(m):02d}:{s:04.1f}" if h else f"{int(m)}:{s:04.1f}"


def absences(doc: Mapping[str, Any]) -> list[tuple[float, float]]:
    """A user's stretches away, on the user's clock (``absent.spans``)."""
    absent = doc.get("absent")
    spans = absent.get("spans", []) if isinstance(absent, dict) else []
    return [(float(s["at_s"]), float(s["seconds"])) for s in spans if isinstance(s, dict) and "at_s" in s]


def finding_marks(
    doc: Mapping[str, Any], *, place: Callable[[float, str], float], pps: float, top: float, bottom: float
) -> list[str]:
    """A mark per positioned finding: a shaded stretch for gaps, overlaps and absences, else a flag.
    ``place(t, segment)`` is where time ``t`` of the stream of the finding's slice is on the page."""
    out = []
    for f in doc.get("findings", []):
        at = f.get("at_s")
        if not isinstance(at, int | float):
            continue
        left = place(float(at), str(f.get("segment") or ""))
        code, sev = str(f.get("code")), str(f.get("severity"))
        colour = SEVERITY_COLOUR.get(sev, "#555")
        tip = esc(f"{sev} {code} at {at:.3f} s: {f.get('detail', '')}")
        kind = SPAN_CODES.get(code)
        if kind is not None and isinstance(f.get("seconds"), int | float):
            width = max(abs(f["seconds"]) * pps, 2.0)
            out.append(
                f'<rect class="span-{kind} marker" data-code="{esc(code)}" data-at-s="{at:.3f}" '
                f'x="{left:.2f}" y="{top - 6:.1f}" width="{width:.2f}" height="{bottom - top + 6:.1f}">'
                f"<title>{tip}</title></rect>"
            )
            continue
        out.append(
            f'<path class="flag marker" data-code="{esc(code)}" data-at-s="{at:.3f}" fill="{colour}" '
            f'd="M{left:.2f},{top - 2:.1f} l-5,-9 h10 z"><title>{tip}</title></path>'
        )
    return out


def span(out: Mapping[str, Any], *, cls: str, x: Any, pps: float, y: float) -> str:
    """An MP4 as a span from its ``start_s``, with its name."""
    start = out.get("start_s") or 0.0
    length = out.get("duration_s") or 0.0
    name = str(out.get("key", "")).rpartition("/")[2]
    tip = f"{name}\nfrom {start:.3f} s, {length:.3f} s, {out.get('bytes', '?')} bytes"
    return (
        f'<g class="{cls}-span"><rect class="{cls}" x="{x(start):.2f}" y="{y:.1f}" '
        f'width="{max(length * pps, 2):.2f}" '
        f'height="{LANE_H / 2:.1f}"><title>{esc(tip)}</title></rect>'
        f'<text x="{x(start) + 3:.2f}" y="{y + LANE_H / 2 - 3:.1f}">{esc(name)}</text></g>'
    )


def findings_table(report: Mapping[str, Any], users: Sequence[Mapping[str, Any]]) -> str:
    """Every finding, in a table."""
    rows = []
    for doc in [report, *users]:
        who = doc.get("recording", {}).get("uid")
        for f in doc.get("findings", []):
            colour = SEVERITY_COLOUR.get(str(f.get("severity")), "#555")
            rows.append(
                f"<tr><td style='color:{colour}'>{esc(f.get('severity'))}</td><td>{esc(f.get('code'))}</td>"
                f"<td>{esc(who or '')}</td><td>{esc(seconds(f.get('at_s')))}</td>"
                f"<td><code>{esc(f.get('segment') or '')}</code></td><td>{esc(f.get('detail'))}</td></tr>"
            )
    if not rows:
        return "<h2>findings</h2><p>none</p>"
    head = "<tr><th>severity</th><th>code</th><th>user</th><th>at</th><th>slice</th><th>detail</th></tr>"
    return f'<h2>findings</h2><table class="findings">{head}{"".join(rows)}</table>'
