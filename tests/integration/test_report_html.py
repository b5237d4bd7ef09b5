"""The HTML report in a real browser: Debian's Chromium, headless, opens the page made from a recording
with a gap and from the individual sample, and the rendered DOM is checked — the gap marker where the
timeline puts the gap (within 2 px), one block per slice, a lane per user and stream, no console error —
and a screenshot is saved. A 10,000-slice report (a 40 h recording) opens too.

Chromium comes from Debian's ``chromium`` and ``chromium-driver`` packages, which ``make test``
installs when it runs as root (as CI does); elsewhere this file is skipped with that reason."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.model.report_html import render_page
from pipeline.samples.composite import write_sample
from pipeline.samples.individual import write_individual_sample

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOTS = (
    Path(os.environ.get("RECPIPE_SCREENSHOTS", "")) if os.environ.get("RECPIPE_SCREENSHOTS") else None
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.browser,
    pytest.mark.skipif(
        not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
        reason="Chromium is not installed: `make test` installs Debian's chromium and chromium-driver "
        "when it runs as root (apt); without root the browser test of the HTML report cannot run",
    ),
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def recpipe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, timeout=300
    )


def open_page(browser, page: Path):
    browser.get(page.as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    return browser


def console_errors(browser) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def shoot(browser, tmp_path: Path, name: str) -> Path:
    where = (SCREENSHOTS or tmp_path) / name
    where.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(where))
    assert where.stat().st_size > 1000
    return where


@pytest.mark.ffmpeg
def test_a_gap_is_marked_where_the_timeline_puts_it(browser, tmp_path, ffmpeg_exe):
    made = write_sample(
        tmp_path / "rec", ffmpeg=ffmpeg_exe, seconds=30, slice_seconds=2, defect="timeline-gap"
    )
    (tmp_path / "start.json").write_text(json.dumps(made.profile))
    page = tmp_path / "gap.html"
    profile = str(tmp_path / "start.json")
    done = recpipe("verify", str(tmp_path / "rec"), "--profile", profile, "--html", str(page), "--json")
    report = json.loads(done.stdout)
    [gap] = [f for f in report["findings"] if f["code"] == "TIMELINE_GAP"]
    open_page(browser, page)
    found = browser.execute_script(
        """
        const svg = document.querySelector('svg.timeline');
        const gap = document.querySelector('.marker[data-code="TIMELINE_GAP"]');
        return {x0: +svg.dataset.x0, pps: +svg.dataset.pxPerS,
                svgLeft: svg.getBoundingClientRect().left, gapLeft: gap.getBoundingClientRect().left,
                blocks: document.querySelectorAll('rect.slice').length,
                status: document.querySelector('.status').dataset.status};
        """
    )
    expected = found["x0"] + gap["at_s"] * found["pps"]
    assert abs((found["gapLeft"] - found["svgLeft"]) - expected) <= 2
    assert found["blocks"] == report["segments"]["listed"]
    assert found["status"] == report["status"]
    assert console_errors(browser) == []
    shoot(browser, tmp_path, "report-timeline-gap.png")


@pytest.mark.ffmpeg
def test_the_individual_sample_has_a_lane_per_user_and_stream(browser, tmp_path, ffmpeg_exe):
    made = write_individual_sample(tmp_path / "rec", ffmpeg=ffmpeg_exe)
    (tmp_path / "start.json").write_text(json.dumps(made.profile))
    page = tmp_path / "users.html"
    done = recpipe(
        "process",
        str(tmp_path / "rec"),
        "--profile",
        str(tmp_path / "start.json"),
        "--dest",
        str(tmp_path / "out"),
        "--html",
        str(page),
        "--json",
    )
    report = json.loads(done.stdout)
    users = report["users"]
    open_page(browser, page)
    lanes = browser.execute_script(
        """
        const lanes = ['video', 'audio', 'MP4'];
        return [...document.querySelectorAll('svg.timeline')].map(svg =>
            [...svg.querySelectorAll('text')].map(t => t.textContent).filter(t => lanes.includes(t)));
        """
    )
    assert len(lanes) == len(users)
    assert all(lane == ["video", "audio", "MP4"] for lane in lanes)
    spans = browser.execute_script("return document.querySelectorAll('g.mp4-span').length")
    assert spans == len(report["outputs"])
    away = browser.execute_script(
        "return document.querySelectorAll('.marker[data-code=\"USER_ABSENT\"]').length"
    )
    assert away >= 1  # user 2002 leaves and comes back
    assert console_errors(browser) == []
    shoot(browser, tmp_path, "report-individual.png")
    shown = recpipe(
        "show", str(tmp_path / "rec"), "--dest", str(tmp_path / "out"), "--html", str(tmp_path / "shown.html")
    )
    assert shown.returncode == 0, shown.stderr
    assert (tmp_path / "shown.html").read_text().count('<svg class="timeline"') == len(users)


def long_report(slices: int) -> dict:
    """A 40 h recording's report: ``slices`` slices of 14.4 s, one gap."""
    uris = [f"sid_room_{i:017d}.ts" for i in range(slices)]
    at = [i * 14.4 for i in range(slices)]
    return {
        "schema": "recpipe.report/1",
        "recording": {"sid": "sid", "cname": "room", "mode": "composite", "playlists": ["sid_room.m3u8"]},
        "status": "ok",
        "policy": "strict",
        "segments": {"listed": slices, "present": slices, "bytes": slices * 1_000_000},
        "duration": {"playlist_s": slices * 14.4, "media_s": slices * 14.4, "wallclock_s": slices * 14.4},
        "findings": [
            {
                "code": "TIMELINE_GAP",
                "severity": "warning",
                "at_s": 72000.0,
                "seconds": 14.4,
                "segment": uris[5000],
                "detail": "a hole",
            }
        ],
        "outputs": [
            {"key": f"sid_room_{i}.mp4", "kind": "mp4", "start_s": i * 7200.0, "duration_s": 7200.0}
            for i in range(20)
        ],
        "timings_s": {"fetch": 1.0},
        "tool": {"recpipe": "test"},
        "timeline": {
            "uri": uris,
            "at_s": at,
            "extinf_s": [14.4] * slices,
            "media_s": [14.4] * slices,
            "bytes": [1_000_000] * slices,
            "first_frame": ["key"] * slices,
            "size": ["640x360"] * slices,
            "discontinuity": [False] * slices,
            "defect": [None] * slices,
        },
    }


def test_a_40_hour_recording_of_10000_slices_opens(browser, tmp_path):
    page = tmp_path / "long.html"
    page.write_text(render_page(long_report(10_000)))
    assert page.stat().st_size < 10 * 1024 * 1024
    open_page(browser, page)
    count = browser.execute_script("return document.querySelectorAll('rect.slice').length")
    assert count == 10_000
    assert console_errors(browser) == []
