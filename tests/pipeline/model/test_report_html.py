"""The HTML page without a browser: escaping of hostile names, the timeline's geometry, lanes, markers
(the rendering in Chromium is tests/integration/test_report_html.py)."""

from __future__ import annotations

import re

from pipeline.model.report_html import X0, clock, render_page

EVIL = '<script>alert("x")</script>&"'


def report(**changes) -> dict:
    uris = ["sid_room_0.ts", f"{EVIL}.ts", "sid_room_2.ts"]
    base = {
        "schema": "recpipe.report/1",
        "recording": {"sid": "sid", "cname": EVIL, "mode": "composite", "playlists": [f"{EVIL}.m3u8"]},
        "status": "degraded",
        "policy": "lenient",
        "segments": {"listed": 3, "present": 2, "bytes": 2000},
        "duration": {"playlist_s": 30.0, "media_s": 20.0, "wallclock_s": 30.0},
        "findings": [
            {
                "code": "MISSING_SEGMENT",
                "severity": "error",
                "at_s": 10.0,
                "seconds": 10.0,
                "segment": uris[1],
                "detail": EVIL,
            },
            {
                "code": "TIMELINE_GAP",
                "severity": "warning",
                "at_s": 10.0,
                "seconds": 10.0,
                "segment": uris[2],
                "detail": "gap",
            },
        ],
        "outputs": [
            {"key": f"out/{EVIL}_0.mp4", "kind": "mp4", "start_s": 0.0, "duration_s": 30.0, "bytes": 9}
        ],
        "timings_s": {"fetch": 0.5},
        "tool": {"recpipe": "1"},
        "timeline": {
            "uri": uris,
            "at_s": [0.0, 10.0, 20.0],
            "extinf_s": [10.0] * 3,
            "media_s": [10.0, None, 10.0],
            "bytes": [1000, None, 1000],
            "first_frame": ["key", None, "delta"],
            "size": ["640x360", None, None],
            "discontinuity": [False, False, True],
            "defect": [None, "MISSING_SEGMENT", None],
        },
    }
    return base | changes


def test_every_name_from_storage_is_escaped():
    page = render_page(report())
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert page.count("<svg") == 1


def test_blocks_sit_where_the_timeline_says():
    page = render_page(report())
    pps = float(re.search(r'data-px-per-s="([0-9.]+)"', page)[1])
    xs = [float(x) for x in re.findall(r'<rect class="slice[^"]*" data-index="\d+" x="([0-9.]+)"', page)]
    assert [round(x - X0, 1) for x in xs] == [0.0, round(10 * pps, 1), round(20 * pps, 1)]
    assert 'class="slice missing' in page
    gap = re.search(r'data-code="TIMELINE_GAP" data-at-s="10.000" x="([0-9.]+)"[^>]*width="([0-9.]+)"', page)
    assert abs(float(gap[1]) - (X0 + 10 * pps)) < 0.01
    assert abs(float(gap[2]) - 10 * pps) < 0.01
    assert 'data-code="DISCONTINUITY" data-at-s="20.000"' in page
    assert "before sid_room_2.ts: it does not start with a keyframe</title>" in page
    assert page.count('class="mp4-span"') == 1


def test_a_users_streams_get_their_own_lanes_from_where_they_start():
    user = report(
        recording={"sid": "sid", "cname": "room", "mode": "individual", "uid": "7"},
        streams={"video": {"starts_s": 0.0}, "audio": {"starts_s": 2.0}},
        absent={"choice": "keep", "spans": [{"at_s": 12.0, "seconds": 3.0}]},
    )
    user["timeline"]["uri"] = [
        "s__uid_s_7__uid_e_video_1.ts",
        "s__uid_s_7__uid_e_audio_1.ts",
        "s__uid_s_7__uid_e_video_2.ts",
    ]
    page = render_page(
        {"recording": {"sid": "sid", "cname": "room", "mode": "individual"}, "users": []}, [user]
    )
    lanes = re.findall(r'<text x="6" y="[0-9.]+">([a-zA-Z0-9]+)</text>', page)
    assert lanes == ["video", "audio", "MP4"]
    pps = float(re.search(r'data-px-per-s="([0-9.]+)"', page)[1])
    audio_x = float(re.search(r'data-index="1" x="([0-9.]+)"', page)[1])
    assert abs(audio_x - (X0 + (2.0 + 10.0) * pps)) < 0.01  # the audio's own clock, placed on the user's
    assert 'data-code="ABSENT" data-at-s="12.000"' in page


def test_clock_labels():
    assert clock(0) == "0:00.0"
    assert clock(75.5) == "1:15.5"
    assert clock(3723) == "1:02:03.0"
