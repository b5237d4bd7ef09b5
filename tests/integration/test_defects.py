"""Every defect ``recpipe sample`` can make, verified end to end: exact finding codes, severities and
positions, and the status and exit code SPEC.md's table gives for each policy."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.samples.composite import DEFECTS, write_sample
from stages.media.mp4 import read_mp4

pytestmark = [pytest.mark.integration, pytest.mark.ffmpeg]

SLICE = 2.0
NEAR = 0.06
"""Slices are placed by their media clock: the first slice's audio starts 21 ms before its video."""


def at(seconds: float):
    return pytest.approx(seconds, abs=NEAR)


# defect → (status under strict, [(code, severity, at_s, seconds)])
EXPECTED = {
    "missing-slice": ("failed", [("MISSING_SEGMENT", "error", at(2), at(2))]),
    "empty-slice": ("failed", [("EMPTY_SEGMENT", "error", at(2), at(2))]),
    "garbage-slice": ("failed", [("CORRUPT_SEGMENT", "error", at(2), at(2))]),
    "truncated-slice": (
        "failed",
        [
            ("CORRUPT_SEGMENT", "error", at(2), at(2)),
            # Half the bytes is not half the time (the keyframe is big): the hole is somewhere in [2, 4).
            ("TIMELINE_GAP", "error", pytest.approx(3, abs=1), pytest.approx(1, abs=1)),
        ],
    ),
    "timeline-gap": ("failed", [("TIMELINE_GAP", "error", at(2), at(2))]),
    "timeline-overlap": ("failed", [("TIMELINE_OVERLAP", "error", at(2), at(2 / 3))]),
    "resolution-change": (
        "ok",
        [("DISCONTINUITY", "info", at(2), None), ("RESOLUTION_MISMATCH", "warning", at(2), at(4))],
    ),
    "no-endlist": ("pending", [("NO_ENDLIST", "info", None, None)]),
    "duplicate-entry": ("ok", [("DUPLICATE_SEGMENT", "warning", at(2), at(2))]),
    "orphan": ("ok", [("ORPHAN_SEGMENT", "warning", at(6), None)]),
    "audio-only": ("failed", [("STREAMS_MISMATCH", "error", at(0), at(6))]),
    "video-only": ("failed", [("STREAMS_MISMATCH", "error", at(0), at(6))]),
    "vendor-tags": (
        "ok",
        [("TARGET_DURATION_EXCEEDED", "warning", at(t), at(2)) for t in (0, 2, 4)],
    ),
    "unsafe-uri": ("rejected", [("UNSAFE_URI", "error", None, None)]),
}
EXIT = {"ok": 0, "degraded": 3, "failed": 1, "pending": 75, "rejected": 4}


def run(*args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(main, [*args, "--json"], catch_exceptions=True)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def findings(report: dict) -> list[tuple]:
    return [(f["code"], f["severity"], f["at_s"], f["seconds"]) for f in report["findings"]]


def test_the_table_covers_every_defect():
    assert set(EXPECTED) == set(DEFECTS)


def test_a_clean_recording_has_no_findings(samples):
    code, report = run("verify", str(samples[None]), "--profile", str(samples[None] / "start.json"))
    assert (code, report["status"], report["findings"]) == (0, "ok", [])
    assert report["duration"]["media_s"] == pytest.approx(6.0, abs=0.1)


@pytest.mark.parametrize("defect", sorted(EXPECTED))
def test_defect_gives_exactly_its_findings(samples, defect):
    root = samples[defect]
    status, expected = EXPECTED[defect]
    code, report = run("verify", str(root), "--profile", str(root / "start.json"))
    assert findings(report) == expected
    assert (report["status"], code) == (status, EXIT[status])


@pytest.mark.parametrize("defect", sorted(d for d, (s, _) in EXPECTED.items() if s == "failed"))
def test_lenient_policy_degrades_instead_of_failing(samples, defect):
    root = samples[defect]
    code, report = run("verify", str(root), "--profile", str(root / "start.json"), "--policy", "lenient")
    assert (report["status"], code) == ("degraded", 3)
    assert findings(report) == EXPECTED[defect][1]


def test_truncated_slice_hole_runs_to_the_next_slice(samples):
    _, report = run("verify", str(samples["truncated-slice"]))
    [gap] = [f for f in report["findings"] if f["code"] == "TIMELINE_GAP"]
    assert gap["at_s"] + gap["seconds"] == at(4.0)
    assert "holds" in report["findings"][0]["detail"]


def test_audio_only_as_asked_is_clean(samples, tmp_path):
    root = samples["audio-only"]
    profile = json.loads((root / "start.json").read_text())
    profile["clientRequest"]["recordingConfig"]["streamTypes"] = 0
    (tmp_path / "audio.json").write_text(json.dumps(profile))
    code, report = run(
        "process", str(root), "--profile", str(tmp_path / "audio.json"), "--dest", str(tmp_path / "o")
    )
    assert (code, report["status"], report["findings"]) == (0, "ok", [])
    [output] = report["outputs"]
    assert output["tracks"] == ["audio"]


@pytest.mark.parametrize(
    ("defect", "policy", "tracks"),
    [
        pytest.param("truncated-slice", "lenient", ["video", "audio"], id="truncated"),
        pytest.param("garbage-slice", "lenient", ["video", "audio"], id="garbage"),
        pytest.param("duplicate-entry", "strict", ["video", "audio"], id="duplicate"),
        pytest.param("vendor-tags", "strict", ["video", "audio"], id="vendor-tags"),
        pytest.param("video-only", "lenient", ["video"], id="video-only"),
    ],
)
def test_publishable_defects_give_a_sound_mp4(samples, tmp_path, defect, policy, tracks):
    """Every usable second is in the MP4, holes closed: it lasts the media the report counts, to a frame."""
    root = samples[defect]
    dest = tmp_path / "out"
    _, report = run("process", str(root), "--profile", str(root / "start.json"), "--policy", policy,
                    "--dest", str(dest))  # fmt: skip
    assert report["status"] in ("ok", "degraded"), report
    [output] = report["outputs"]
    info = read_mp4(dest / output["key"])
    assert list(info.track_kinds) == tracks
    assert info.duration_s == pytest.approx(report["duration"]["media_s"], abs=1 / 15)
    assert output["duration_s"] == pytest.approx(info.duration_s, abs=0.001)
    assert not [f for f in report["findings"] if f["code"] == "DURATION_MISMATCH"]


@pytest.mark.slow
def test_hand_checked_gap(tmp_path, ffmpeg_exe):
    """Remove one 15 s slice from the middle of a 60 s recording, from the playlist and from storage."""
    root = tmp_path / "src"
    rec = write_sample(root / "recordings", ffmpeg=ffmpeg_exe, seconds=60, defect="timeline-gap")
    (root / "start.json").write_text(json.dumps(rec.profile))
    assert len(rec.slices) == 3

    code, report = run(
        "process", str(root), "--profile", str(root / "start.json"), "--dest", str(tmp_path / "a")
    )
    assert (code, report["status"], report["outputs"]) == (1, "failed", [])
    [gap] = report["findings"]
    assert gap["code"] == "TIMELINE_GAP"
    assert gap["at_s"] == pytest.approx(30.0, abs=0.1)
    assert gap["seconds"] == pytest.approx(15.0, abs=0.1)
    assert gap["segment"] == rec.slices[2].name

    dest = tmp_path / "b"
    code, report = run("process", str(root), "--profile", str(root / "start.json"), "--policy", "lenient",
                       "--dest", str(dest))  # fmt: skip
    assert (code, report["status"]) == (3, "degraded")
    assert findings(report) == [
        ("TIMELINE_GAP", "error", pytest.approx(30.0, abs=0.1), pytest.approx(15, abs=0.1))
    ]
    [output] = report["outputs"]
    assert read_mp4(dest / output["key"]).track_kinds == ("video", "audio")
    saved = json.loads((dest / "recordings" / f"{rec.sid}_{rec.cname}.report.json").read_text())
    assert findings(saved) == findings(report)
