"""``verify`` and ``process`` give the same verdict on the same inputs: every defect ``recpipe sample``
makes, under both policies, and the recordings with nothing in them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.samples.composite import DEFECTS

pytestmark = [pytest.mark.integration, pytest.mark.ffmpeg, pytest.mark.slow]


def verdict(command: str, root: Path, *args: str) -> tuple[int, str | None]:
    result = CliRunner().invoke(
        main,
        [command, str(root), "--profile", str(root / "start.json"), "--json", *args],
        catch_exceptions=False,
    )
    doc = json.loads(result.stdout) if result.stdout.strip() else {}
    return result.exit_code, doc.get("status")


@pytest.mark.parametrize("policy", ["strict", "lenient"])
@pytest.mark.parametrize("defect", [None, *sorted(DEFECTS)])
def test_verify_and_process_agree(samples, tmp_path, defect, policy):
    root = tmp_path / "rec"
    shutil.copytree(samples[defect], root)
    verified = verdict("verify", root, "--policy", policy)
    processed = verdict("process", root, "--policy", policy, "--dest", str(tmp_path / "out"))
    assert processed == verified


def empty_playlist(root: Path, samples_root: Path, *, keep: int) -> None:
    """The clean sample with a playlist listing only its first ``keep`` entries (and its header and
    ``#EXT-X-ENDLIST``); every slice stays in storage."""
    shutil.copytree(samples_root, root)
    [playlist] = (root / "recordings").glob("*.m3u8")
    lines = playlist.read_text().splitlines()
    header = [
        line for line in lines if line.startswith("#EXT") and not line.startswith(("#EXTINF", "#EXT-X-END"))
    ]
    entries = [line for line in lines if line.startswith("#EXTINF") or not line.startswith("#")]
    playlist.write_text("\n".join([*header, *entries[: 2 * keep], "#EXT-X-ENDLIST"]) + "\n")


@pytest.mark.parametrize("policy", ["strict", "lenient"])
def test_a_recording_with_nothing_in_it_is_not_ok(samples, tmp_path, policy):
    root = tmp_path / "rec"
    empty_playlist(root, samples[None], keep=0)
    result = CliRunner().invoke(
        main, ["verify", str(root), "--profile", str(root / "start.json"), "--json", "--policy", policy]
    )
    code, report = result.exit_code, json.loads(result.stdout)
    assert (code, report["status"]) == (1, "failed")
    assert "NO_MEDIA" in {f["code"] for f in report["findings"]}
    assert verdict("process", root, "--policy", policy, "--dest", str(tmp_path / "out")) == (1, "failed")
    assert not list((tmp_path / "out").rglob("*.mp4"))


def test_a_recording_of_corrupt_slices_only_fails_under_either_policy(samples, tmp_path):
    root = tmp_path / "rec"
    shutil.copytree(samples[None], root)
    for ts in (root / "recordings").glob("*.ts"):
        ts.write_bytes(b"\x00" * 1000)
    for policy in ("strict", "lenient"):
        assert verdict("verify", root, "--policy", policy) == (1, "failed")
        assert verdict("process", root, "--policy", policy, "--dest", str(tmp_path / policy)) == (1, "failed")


@pytest.fixture(scope="module")
def other_kinds(tmp_path_factory, ffmpeg_exe) -> dict[str, Path]:
    """One recording of each other kind recpipe sample makes, with its profile."""
    from pipeline.samples.individual import write_individual_sample
    from pipeline.samples.raw import write_raw_sample
    from pipeline.samples.recovery import write_backuped_sample, write_failover_sample

    made = {}
    for kind, write in (
        ("individual", lambda d: write_individual_sample(d, ffmpeg=ffmpeg_exe, slice_seconds=5)),
        ("raw", lambda d: write_raw_sample(d, ffmpeg=ffmpeg_exe)),
        ("failover", lambda d: write_failover_sample(d, ffmpeg=ffmpeg_exe)),
        ("backuped", lambda d: write_backuped_sample(d, ffmpeg=ffmpeg_exe)),
    ):
        root = tmp_path_factory.mktemp(kind)
        sample = write(root / "recordings")
        (root / "start.json").write_text(json.dumps(sample.profile))
        made[kind] = root
    return made


@pytest.mark.parametrize(
    "extra", [(), ("--backuped",), ("--policy", "lenient")], ids=["plain", "backuped", "lenient"]
)
@pytest.mark.parametrize("kind", ["individual", "raw", "failover", "backuped"])
def test_verify_and_process_agree_on_every_kind_of_recording(other_kinds, tmp_path, kind, extra):
    root = tmp_path / "rec"
    shutil.copytree(other_kinds[kind], root)
    verified = verdict("verify", root, *extra)
    processed = verdict("process", root, *extra, "--dest", str(tmp_path / "out"))
    assert processed == verified
