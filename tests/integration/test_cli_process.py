"""The CLI end to end on real recordings: local directories and a moto S3 server, real ffmpeg."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.run.lease import Lease, acquire
from pipeline.samples.composite import write_sample
from pipeline.storage import LocalStorage
from stages.media.mp4 import read_mp4
from stages.playlist import parse_playlist

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "sample_data"

pytestmark = [pytest.mark.integration, pytest.mark.ffmpeg]

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
PROFILE = SAMPLE / "start_request.json"


def invoke(*args: str):
    result = CliRunner().invoke(main, list(args), catch_exceptions=True)
    # Expected outcomes end with SystemExit (our exit codes); anything else is a traceback.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def report_of(result) -> dict:
    return json.loads(result.stdout)


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


def playlist_duration(directory: Path) -> float:
    [playlist] = directory.glob("*.m3u8")
    return parse_playlist(playlist.read_text()).duration


@pytest.fixture
def sample_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "src"
    shutil.copytree(SAMPLE, dest)
    return dest


def make_defect(tmp_path: Path, ffmpeg_exe: str, defect: str | None) -> Path:
    root = tmp_path / f"rec-{defect or 'clean'}"
    write_sample(root / "recordings", ffmpeg=ffmpeg_exe, seconds=8, slice_seconds=2, defect=defect)
    return root


def test_process_local_sample_makes_a_faithful_mp4(tmp_path):
    out = tmp_path / "out"
    result = invoke("process", str(SAMPLE), "--profile", str(PROFILE), "--dest", str(out), "--json")
    assert result.exit_code == 0, result.output
    report = report_of(result)
    assert report["status"] == "ok"
    assert report["schema"] == "recpipe.report/1"
    [output] = report["outputs"]
    mp4 = out / output["key"]
    info = read_mp4(mp4)
    assert set(info.track_kinds) == {"video", "audio"}
    assert abs(info.duration_s - playlist_duration(SAMPLE / "recordings")) <= 0.2
    assert info.faststart
    assert output["key"].startswith("recordings/")
    assert output["key"].endswith("_0.mp4")
    on_disk = json.loads(
        (out / output["key"])
        .with_name(Path(report["recording"]["playlist"]).stem + ".report.json")
        .read_text()
    )
    assert on_disk["outputs"] == report["outputs"]
    assert on_disk["inputs_digest"] == report["inputs_digest"]


def test_process_twice_writes_nothing_and_never_touches_sources(sample_copy):
    profile = str(sample_copy / "start_request.json")
    sources = snapshot(sample_copy)
    first = invoke("process", str(sample_copy), "--profile", profile)
    assert first.exit_code == 0, first.output
    after_first = snapshot(sample_copy)
    assert {k: v for k, v in after_first.items() if k in sources} == sources
    assert len(after_first) == len(sources) + 2  # the MP4 and the report, beside the recording
    second = invoke("process", str(sample_copy), "--profile", profile)
    assert second.exit_code == 0, second.output
    assert "already processed" in second.output
    assert snapshot(sample_copy) == after_first


def test_force_processes_again_with_identical_media(sample_copy):
    profile = str(sample_copy / "start_request.json")
    first = report_of(invoke("process", str(sample_copy), "--profile", profile, "--json"))
    second = report_of(invoke("process", str(sample_copy), "--profile", profile, "--json", "--force"))
    assert [o["sha256"] for o in first["outputs"]] == [o["sha256"] for o in second["outputs"]]
    assert len(list(sample_copy.rglob("*.mp4"))) == 1


def test_process_s3(s3_bucket, tmp_path):
    s3_bucket.upload_directory((SAMPLE / "recordings"), prefix="recordings/")
    before = {
        o["Key"]: o["ETag"] for o in s3_bucket.client.list_objects_v2(Bucket=s3_bucket.name)["Contents"]
    }
    location = f"s3://{s3_bucket.name}/recordings/"
    args = ("process", location, "--profile", str(PROFILE), "--endpoint-url", s3_bucket.endpoint, "--json")
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    [output] = report_of(result)["outputs"]
    local = tmp_path / "out.mp4"
    s3_bucket.get_file(output["key"], local)
    info = read_mp4(local)
    assert set(info.track_kinds) == {"video", "audio"}
    assert abs(info.duration_s - playlist_duration(SAMPLE / "recordings")) <= 0.2
    after = {o["Key"]: o["ETag"] for o in s3_bucket.client.list_objects_v2(Bucket=s3_bucket.name)["Contents"]}
    assert {k: v for k, v in after.items() if k in before} == before
    assert len(after) == len(before) + 2
    again = invoke(*args)
    assert again.exit_code == 0
    assert report_of(again)["outputs"] == report_of(result)["outputs"]
    last = s3_bucket.client.list_objects_v2(Bucket=s3_bucket.name)["Contents"]
    assert {o["Key"]: o["ETag"] for o in last} == after


@pytest.mark.parametrize(
    ("defect", "policy", "exit_code", "status", "code"),
    [
        pytest.param("missing-slice", "strict", 1, "failed", "MISSING_SEGMENT", id="missing-strict"),
        pytest.param("missing-slice", "lenient", 3, "degraded", "MISSING_SEGMENT", id="missing-lenient"),
        pytest.param("empty-slice", "strict", 1, "failed", "EMPTY_SEGMENT", id="empty"),
        pytest.param("no-endlist", "strict", 75, "pending", "NO_ENDLIST", id="pending"),
        pytest.param("unsafe-uri", "lenient", 4, "rejected", "UNSAFE_URI", id="unsafe"),
        pytest.param("orphan", "strict", 0, "ok", "ORPHAN_SEGMENT", id="orphan-warning"),
    ],
)
def test_defects_give_status_and_exit_code(tmp_path, ffmpeg_exe, defect, policy, exit_code, status, code):
    root = make_defect(tmp_path, ffmpeg_exe, defect)
    sources = snapshot(root)
    result = invoke("process", str(root), "--av-file-type", "hls,mp4", "--policy", policy, "--json")
    assert result.exit_code == exit_code, result.output
    report = report_of(result)
    assert report["status"] == status
    assert code in [f["code"] for f in report["findings"]]
    written = set(snapshot(root)) - set(sources)
    mp4s = {p for p in written if p.endswith(".mp4")}
    reports = {p for p in written if p.endswith(".report.json")}
    assert bool(mp4s) is (status in {"ok", "degraded"})
    assert bool(reports) is (status != "pending")


def test_missing_slice_is_named_with_its_position(tmp_path, ffmpeg_exe):
    root = make_defect(tmp_path, ffmpeg_exe, "missing-slice")
    result = invoke("process", str(root), "--json")
    [finding] = [f for f in report_of(result)["findings"] if f["code"] == "MISSING_SEGMENT"]
    [playlist] = (root / "recordings").glob("*.m3u8")
    entries = parse_playlist(playlist.read_text()).entries
    [missing] = [e for e in entries if not (root / "recordings" / e.uri).exists()]
    assert finding["segment"] == missing.uri
    assert finding["at_s"] == pytest.approx(sum(e.duration for e in entries[: missing.index]), abs=1e-3)
    assert missing.uri in invoke("process", str(root)).output


def test_unsafe_uri_fetches_nothing(tmp_path, ffmpeg_exe):
    root = make_defect(tmp_path, ffmpeg_exe, "unsafe-uri")
    report = report_of(invoke("verify", str(root), "--json"))
    assert report["status"] == "rejected"
    assert report["segments"]["present"] == 0


def test_verify_writes_nothing(sample_copy):
    before = snapshot(sample_copy)
    result = invoke("verify", str(sample_copy), "--profile", str(sample_copy / "start_request.json"))
    assert result.exit_code == 0, result.output
    assert "OK" in result.output
    assert snapshot(sample_copy) == before


def test_dry_run_writes_nothing(sample_copy):
    before = snapshot(sample_copy)
    result = invoke("process", str(sample_copy), "--av-file-type", "hls,mp4", "--dry-run")
    assert result.exit_code == 0, result.output
    assert snapshot(sample_copy) == before


def test_a_recording_another_recpipe_holds_is_pending_then_processed(sample_copy):
    """A live lease beside the recording: exit 75 (pending, LEASE_HELD), nothing written; once the
    holder is gone, the same command processes it."""
    profile = str(sample_copy / "start_request.json")
    store = LocalStorage(sample_copy)
    [playlist] = [i for i in store.list("recordings/") if i.key.endswith(".m3u8")]
    lease_key = playlist.key.removesuffix(".m3u8") + ".lease.json"
    held = acquire(store, lease_key, owner="other-host:1:abcd", seconds=600)
    assert isinstance(held, Lease)
    before = snapshot(sample_copy)
    busy = invoke("process", str(sample_copy), "--profile", profile, "--json")
    assert busy.exit_code == 75, busy.output
    assert [f["code"] for f in report_of(busy)["findings"]] == ["LEASE_HELD"]
    assert "other-host:1:abcd" in report_of(busy)["findings"][0]["detail"]
    assert snapshot(sample_copy) == before
    held.release()
    done = invoke("process", str(sample_copy), "--profile", profile)
    assert done.exit_code == 0, done.output
    assert not store.exists(lease_key)


def test_json_logs_carry_the_recording_and_the_stage(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "-vv", "--log-format", "json", "verify", str(SAMPLE_DATA),
         "--profile", str(SAMPLE_DATA / "start_request.json"), "--quiet"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert lines
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    staged = [line for line in lines if line.get("stage")]
    assert staged
    assert all(line["recording"].endswith("_demo-room") and line["sid"] for line in staged)
