"""The MP4s recpipe makes, for every kind of recording: tracks, duration to the frame, monotonic
timestamps with no frozen or squashed stretch, clean decoding, and the split into ``<index>`` parts."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.model.naming import format_utc, parse_name
from stages.media.mp4 import Mp4Info, read_mp4
from stages.media.retime import retime
from stages.media.ts import read_slice

pytestmark = [pytest.mark.integration, pytest.mark.ffmpeg]

FRAME_S = 1 / 15
"""The samples' video frame (15 fps)."""
AUDIO_PES_S = 8 * 1024 / 48000
"""The samples' audio PES: ffmpeg's muxer packs 8 AAC frames into one. Where two slices overlap,
the earlier one's audio is cut at a PES boundary, so its last sample may stretch by up to this much."""


def process(root: Path, dest: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict]:
    result = CliRunner().invoke(
        main,
        ["process", str(root), "--profile", str(root / "start.json"), "--dest", str(dest), "--json", *args],
        env=env,
        catch_exceptions=True,
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def decode_errors(ffmpeg_exe: str, path: Path) -> str:
    """What ffmpeg says when it decodes every frame of ``path`` (nothing, for a sound file)."""
    done = subprocess.run(
        [ffmpeg_exe, "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    return f"exit {done.returncode}: {done.stderr}" if done.returncode or done.stderr else ""


def assert_smooth(info: Mp4Info, *, audio_slack_s: float = 0.0) -> None:
    """Timestamps strictly increase; no video frame lasts much more than a frame (frozen) or less
    (squashed); audio samples are one AAC frame long, give or take ``audio_slack_s``."""
    for track in info.tracks:
        assert track.shortest_sample_s > 0, f"{track.kind}: two samples share a timestamp"
        if track.kind == "video":
            assert track.shortest_sample_s == pytest.approx(FRAME_S, abs=0.002)
            assert track.longest_sample_s <= 1.5 * FRAME_S, "a frozen picture"
        else:
            assert track.shortest_sample_s >= 1024 / 48000 - 0.001
            assert track.longest_sample_s <= 1024 / 48000 + 0.017 + audio_slack_s, "stretched sound"


@pytest.mark.parametrize(
    ("defect", "policy", "tracks", "audio_slack_s"),
    [
        pytest.param(None, "strict", ["video", "audio"], 0.0, id="clean"),
        pytest.param("resolution-change", "strict", ["video", "audio"], AUDIO_PES_S, id="resolution-change"),
        pytest.param("timeline-gap", "lenient", ["video", "audio"], 0.0, id="gap-closed"),
        pytest.param("missing-slice", "lenient", ["video", "audio"], 0.0, id="missing-closed"),
        pytest.param("timeline-overlap", "lenient", ["video", "audio"], AUDIO_PES_S, id="overlap-cut"),
        pytest.param("audio-only", "lenient", ["audio"], 0.0, id="audio-only"),
        pytest.param("video-only", "lenient", ["video"], 0.0, id="video-only"),
        pytest.param("duplicate-entry", "strict", ["video", "audio"], 0.0, id="duplicate-left-out"),
    ],
)
def test_mp4_holds_the_media_smoothly(samples, tmp_path, ffmpeg_exe, defect, policy, tracks, audio_slack_s):
    _, report = process(samples[defect], tmp_path, "--policy", policy)
    assert report["status"] in ("ok", "degraded"), report["findings"]
    [output] = report["outputs"]
    path = tmp_path / output["key"]
    info = read_mp4(path)
    assert list(info.track_kinds) == tracks
    assert info.duration_s == pytest.approx(report["duration"]["media_s"], abs=FRAME_S)
    assert_smooth(info, audio_slack_s=audio_slack_s)
    assert decode_errors(ffmpeg_exe, path) == ""
    assert not [f for f in report["findings"] if f["code"] == "DURATION_MISMATCH"]


def test_a_gap_is_closed_and_reported_on_the_recording_clock(samples, tmp_path):
    _, report = process(samples["timeline-gap"], tmp_path, "--policy", "lenient")
    [gap] = [f for f in report["findings"] if f["code"] == "TIMELINE_GAP"]
    [output] = report["outputs"]
    assert gap["at_s"] == pytest.approx(2.0, abs=0.06)
    assert gap["seconds"] == pytest.approx(2.0, abs=0.06)
    assert output["duration_s"] == pytest.approx(4.0, abs=0.1)  # 6 s recording, 2 s never recorded
    assert report["duration"]["wallclock_s"] == pytest.approx(6.0, abs=0.01)


def test_audio_only_recording_as_asked(samples, tmp_path):
    root = samples["audio-only"]
    profile = json.loads((root / "start.json").read_text())
    profile["clientRequest"]["recordingConfig"]["streamTypes"] = 0
    (root / "audio.json").write_text(json.dumps(profile))
    result = CliRunner().invoke(
        main, ["process", str(root), "--profile", str(root / "audio.json"), "--dest", str(tmp_path), "--json"]
    )
    report = json.loads(result.stdout)
    assert (result.exit_code, report["status"]) == (0, "ok")
    [output] = report["outputs"]
    assert output["tracks"] == ["audio"]
    assert_smooth(read_mp4(tmp_path / output["key"]))


@pytest.mark.parametrize("setting", ["RECPIPE_MAX_MP4_SECONDS", "RECPIPE_MAX_MP4_BYTES"])
def test_split_into_indexed_mp4s_at_slice_boundaries(samples, tmp_path, ffmpeg_exe, setting):
    """Limits too small for two 2 s slices: three MP4s with Agora's names (index 0, 1, 2), back to back;
    with a template that asks for it, each is named after its first slice's time."""
    root = samples[None]
    slices = sorted((root / "recordings").glob("*.ts"))
    sizes = sorted(p.stat().st_size for p in slices)
    assert sizes[0] + sizes[1] > sizes[-1]  # so the largest slice's size admits no two slices
    value = "2.5" if setting == "RECPIPE_MAX_MP4_SECONDS" else str(sizes[-1])
    code, report = process(root, tmp_path / "agora", env={setting: value})
    assert (code, report["status"]) == (0, "ok")
    [playlist] = (root / "recordings").glob("*.m3u8")
    names = [o["key"].rsplit("/", 1)[1] for o in report["outputs"]]
    assert names == [f"{playlist.name.removesuffix('.m3u8')}_{i}.mp4" for i in range(3)]
    template = {"RECPIPE_MP4_TEMPLATE": "{sid}_{cname}_{utc}_{index}.mp4"}
    code, report = process(root, tmp_path, env={setting: value, **template})
    assert (code, report["status"]) == (0, "ok")
    outputs = report["outputs"]
    names = [o["key"].rsplit("/", 1)[1] for o in outputs]
    stems = [p.name.removesuffix(".ts") for p in slices]
    assert names == [f"{stem}_{i}.mp4" for i, stem in enumerate(stems)]
    for before, after in itertools.pairwise(outputs):
        assert before["start_s"] + before["duration_s"] == pytest.approx(after["start_s"], abs=FRAME_S)
    total = sum(o["duration_s"] for o in outputs)
    assert total == pytest.approx(report["duration"]["media_s"], abs=3 * FRAME_S)
    for output in outputs:
        path = tmp_path / output["key"]
        info = read_mp4(path)
        assert info.track_kinds == ("video", "audio")
        assert info.duration_s == pytest.approx(2.0, abs=FRAME_S)
        assert_smooth(info)
        assert decode_errors(ffmpeg_exe, path) == ""
    again_code, again = process(root, tmp_path, env={setting: value})
    assert (again_code, [o["key"] for o in again["outputs"]]) == (0, [o["key"] for o in outputs])


def restart_clock(root: Path, *, at: int, pause_s: float) -> None:
    """Make the recorder restart at slice ``at``: from there on the slices' timestamps start again
    near zero, their names move on by ``pause_s``, and the playlist says #EXT-X-DISCONTINUITY."""
    rec = root / "recordings"
    [playlist] = rec.glob("*.m3u8")
    names = [line for line in playlist.read_text().splitlines() if line.endswith(".ts")]
    first = read_slice([(rec / names[at]).read_bytes()]).start_ticks
    assert first is not None
    text = playlist.read_text()
    for name in names[at:]:
        old = parse_name(name)
        assert old.utc is not None
        new = name.replace(format_utc(old.utc), format_utc(old.utc + timedelta(seconds=pause_s)))
        (rec / new).write_bytes(retime((rec / name).read_bytes(), shift=90_000 - first))  # restarts at 1 s
        if new != name:
            (rec / name).unlink()
        text = text.replace(name, new)
    marker = f"#EXTINF:{text.split(names[at - 1])[1].split('#EXTINF:')[1]}"
    text = text.replace(marker, "#EXT-X-DISCONTINUITY\n" + marker, 1)
    playlist.write_text(text)


@pytest.mark.parametrize(
    ("pause_s", "policy", "status", "errors"),
    [
        pytest.param(0.0, "strict", "ok", [], id="restart-in-place"),
        pytest.param(3.0, "lenient", "degraded", ["TIMELINE_GAP"], id="restart-after-a-pause"),
    ],
)
def test_restarted_clock_continues_smoothly(samples, tmp_path, ffmpeg_exe, pause_s, policy, status, errors):
    root = tmp_path / "src"
    shutil.copytree(samples[None], root)
    restart_clock(root, at=2, pause_s=pause_s)
    _, report = process(root, tmp_path / "out", "--policy", policy)
    assert report["status"] == status, report["findings"]
    assert [f["code"] for f in report["findings"] if f["severity"] == "error"] == errors
    assert "DISCONTINUITY" in [f["code"] for f in report["findings"]]
    [output] = report["outputs"]
    path = tmp_path / "out" / output["key"]
    info = read_mp4(path)
    assert info.duration_s == pytest.approx(6.0, abs=FRAME_S)  # the pause is closed
    assert_smooth(info)
    assert decode_errors(ffmpeg_exe, path) == ""


def test_ffmpeg_failing_mid_stream_is_a_remux_failure_and_nothing_is_published(samples, tmp_path, ffmpeg_exe):
    """An ffmpeg that dies after reading some input (the real one answers -version)."""
    dying = tmp_path / "ffmpeg"
    dying.write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" -version "*) exec "{ffmpeg_exe}" "$@" ;; esac\n'
        "head -c 20000 >/dev/null; echo 'simulated crash' >&2; exit 1\n"
    )
    dying.chmod(0o755)
    code, report = process(samples[None], tmp_path / "out", env={"RECPIPE_FFMPEG": str(dying)})
    assert (code, report["status"], report["outputs"]) == (1, "failed", [])
    assert (report["error"]["stage"], report["error"]["type"]) == ("remux", "RemuxError")
    assert "simulated crash" in report["error"]["message"]
    assert not list((tmp_path / "out").rglob("*.mp4"))
