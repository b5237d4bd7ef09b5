"""Backup uploads end to end: a real recording whose main playlist lacks entries that only a snapshot
playlist lists, processed through the CLI from a local directory and from S3 (moto), real ffmpeg."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pipeline.cli import main
from pipeline.samples.composite import SampleRecording, write_sample
from stages.media.mp4 import read_mp4
from stages.playlist import Entry, Playlist, parse_playlist

pytestmark = [pytest.mark.integration, pytest.mark.ffmpeg]

TICK = "1768469412345"
"""The snapshot's tick (Unix time in ms), as the recorder names snapshot playlists."""


def invoke(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args), catch_exceptions=True)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def m3u8(playlist: Playlist, entries: Sequence[Entry], *, endlist: bool) -> str:
    """Playlist text listing ``entries`` (with their own EXTINFs) under ``playlist``'s header."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{playlist.target_duration:g}"]
    lines.append(f"#EXT-X-MEDIA-SEQUENCE:{entries[0].num}")
    for entry in entries:
        lines += ["#EXT-X-DISCONTINUITY"] if entry.discontinuity else []
        lines += [f"#EXTINF:{entry.duration!r},", entry.uri]
    return "\n".join([*lines, *(["#EXT-X-ENDLIST"] if endlist else [])]) + "\n"


def back_up(rec: SampleRecording, *, main_keeps: int) -> tuple[Playlist, Path]:
    """Turn a finished sample into a backed-up recording: the main playlist as last uploaded lists only
    its first ``main_keeps`` slices and has no #EXT-X-ENDLIST; a snapshot playlist lists the slices
    from the one before the cut to the end, with #EXT-X-ENDLIST. Returns the complete playlist."""
    full = parse_playlist(rec.playlist.read_text())
    entries = full.entries
    rec.playlist.write_text(m3u8(full, entries[:main_keeps], endlist=False))
    snapshot = rec.directory / f"{rec.sid}_{rec.cname}_{TICK}_0.m3u8"
    snapshot.write_text(m3u8(full, entries[main_keeps - 1 :], endlist=True))
    return full, snapshot


@pytest.fixture
def backed_up(tmp_path: Path, ffmpeg_exe: str) -> tuple[SampleRecording, Playlist, Path]:
    """An 8 s recording in four 2 s slices: the main playlist lists two, the snapshot the last three."""
    rec = write_sample(tmp_path / "src" / "recordings", ffmpeg=ffmpeg_exe, seconds=8, slice_seconds=2)
    full, snapshot = back_up(rec, main_keeps=2)
    return rec, full, snapshot


def check_whole(report: dict, *, mp4: Path, full: Playlist, playlists: list[str]) -> None:
    """The report names the playlists merged, and the MP4 covers every slice of the recording."""
    assert report["status"] == "ok", report["findings"]
    assert report["recording"]["playlists"] == playlists
    assert report["recording"]["playlist"] == playlists[0]
    assert report["segments"]["listed"] == report["segments"]["present"] == len(full.entries)
    assert report["duration"]["playlist_s"] == pytest.approx(full.duration, abs=1e-3)
    [info] = [f for f in report["findings"] if f["code"] == "PLAYLIST_SNAPSHOTS"]
    assert info["severity"] == "info"
    assert "2 playlists merged" in info["detail"]
    assert f"2 of {len(full.entries)} entries are listed only by snapshot playlists" in info["detail"]
    assert "#EXT-X-ENDLIST from" in info["detail"]
    codes = {f["code"] for f in report["findings"]}
    assert not codes & {"ORPHAN_SEGMENT", "MISSING_SEGMENT", "NO_ENDLIST", "TIMELINE_GAP"}
    info_mp4 = read_mp4(mp4)
    assert set(info_mp4.track_kinds) == {"video", "audio"}
    assert info_mp4.duration_s == pytest.approx(full.duration, abs=0.2)


def test_local_recording_is_pending_without_its_snapshot_and_whole_with_it(backed_up, tmp_path):
    rec, full, snapshot = backed_up
    root = tmp_path / "src"
    kept = snapshot.read_bytes()
    snapshot.unlink()
    pending = invoke("process", str(root), "--av-file-type", "hls,mp4", "--json")
    assert pending.exit_code == 75, pending.output  # the main playlist alone: still recording
    snapshot.write_bytes(kept)

    result = invoke("process", str(root), "--av-file-type", "hls,mp4", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    [output] = report["outputs"]
    keys = [f"recordings/{rec.playlist.name}", f"recordings/{snapshot.name}"]
    check_whole(report, mp4=root / output["key"], full=full, playlists=keys)
    assert output["key"] == f"recordings/{rec.playlist.name.removesuffix('.m3u8')}_0.mp4"  # Agora's name

    [listing] = json.loads(invoke("ls", str(root), "--json").stdout)
    assert (listing["state"], listing["slices"], listing["playlists"]) == ("processed", 4, keys)


def test_s3_recording_merged_and_found_through_its_snapshot_key(backed_up, s3_bucket, tmp_path):
    rec, full, snapshot = backed_up
    s3_bucket.upload_directory(rec.directory, prefix="recordings/")
    endpoint = ("--endpoint-url", s3_bucket.endpoint)
    location = f"s3://{s3_bucket.name}/recordings/"
    result = invoke("process", location, "--av-file-type", "hls,mp4", "--json", *endpoint)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    [output] = report["outputs"]
    local = tmp_path / "out.mp4"
    s3_bucket.get_file(output["key"], local)
    keys = [f"recordings/{rec.playlist.name}", f"recordings/{snapshot.name}"]
    check_whole(report, mp4=local, full=full, playlists=keys)

    # What a storage event for the snapshot playlist runs: the same recording, already processed.
    before = s3_bucket.client.list_objects_v2(Bucket=s3_bucket.name)["Contents"]
    again = invoke("process", location + snapshot.name, "--av-file-type", "hls,mp4", "--json", *endpoint)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["inputs_digest"] == report["inputs_digest"]
    after = s3_bucket.client.list_objects_v2(Bucket=s3_bucket.name)["Contents"]
    assert [(o["Key"], o["ETag"]) for o in after] == [(o["Key"], o["ETag"]) for o in before]


def test_snapshot_only_recording_with_a_slice_arriving_late(tmp_path, ffmpeg_exe):
    """No main playlist yet and a listed slice still in backup storage: failed (MISSING_SEGMENT); once
    the slice has arrived, the inputs differ and the same command makes the whole MP4."""
    rec = write_sample(tmp_path / "src" / "recordings", ffmpeg=ffmpeg_exe, seconds=8, slice_seconds=2)
    full = parse_playlist(rec.playlist.read_text())
    snapshot = rec.directory / f"{rec.sid}_{rec.cname}_{TICK}_0.m3u8"
    shutil.move(rec.playlist, snapshot)
    late = rec.slices[2]
    held = late.read_bytes()
    late.unlink()
    location = str(snapshot)  # what an event for the snapshot playlist names

    first = invoke("process", location, "--av-file-type", "hls,mp4", "--json")
    assert first.exit_code == 1, first.output
    report = json.loads(first.stdout)
    assert report["recording"]["playlist"] is None
    assert report["recording"]["playlists"] == [snapshot.name]  # the location is the snapshot's directory
    assert [f["segment"] for f in report["findings"] if f["code"] == "MISSING_SEGMENT"] == [late.name]
    assert report["outputs"] == []

    late.write_bytes(held)
    second = invoke("process", location, "--av-file-type", "hls,mp4", "--json")
    assert second.exit_code == 0, second.output
    report = json.loads(second.stdout)
    [info] = [f for f in report["findings"] if f["code"] == "PLAYLIST_SNAPSHOTS"]
    assert "there is no main playlist" in info["detail"]
    [output] = report["outputs"]
    assert read_mp4(rec.directory / output["key"]).duration_s == pytest.approx(full.duration, abs=0.2)
