"""The recorder's own MP4s (``avFileType`` ``["hls", "mp4"]``) beside the slices: verified, reported,
never overwritten or deleted; recpipe's own MP4s carry Agora's names where they are free, and
``….recpipe.mp4`` where the recorder's set is there but does not cover the recording."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.storage import LocalStorage
from stages.outputs import OWNER_LABEL

pytestmark = [pytest.mark.integration, pytest.mark.ffmpeg]


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def run(*args: str) -> tuple[int, dict]:
    result = invoke(*args, "--json")
    assert result.stdout, result.output
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture
def root(samples, tmp_path) -> Path:
    """A copy of the clean 6 s sample (three 2 s slices) with its profile (avFileType hls+mp4)."""
    copy = tmp_path / "bucket"
    shutil.copytree(samples[None], copy)
    return copy


@pytest.fixture(scope="module")
def recorders_mp4(samples, tmp_path_factory) -> bytes:
    """An MP4 of the whole clean sample, as the recorder would have written it (no recpipe label)."""
    out = tmp_path_factory.mktemp("made")
    code, report = run(
        "process", str(samples[None]), "--profile", str(samples[None] / "start.json"), "--dest", str(out)
    )
    assert code == 0
    [output] = report["outputs"]
    return (out / output["key"]).read_bytes()


def stem(root: Path) -> str:
    [playlist] = (root / "recordings").glob("*.m3u8")
    return playlist.name.removesuffix(".m3u8")


def process(root: Path, *extra: str) -> tuple[int, dict]:
    return run("process", str(root), "--profile", str(root / "start.json"), *extra)


def findings(report: dict, code: str) -> list[dict]:
    return [f for f in report["findings"] if f["code"] == code]


def test_a_sound_recorder_set_means_no_mp4_of_recpipes_own(root, recorders_mp4):
    theirs = root / "recordings" / f"{stem(root)}_0.mp4"
    theirs.write_bytes(recorders_mp4)
    before = theirs.stat()
    code, report = process(root)
    assert (code, report["status"]) == (0, "ok")
    assert report["outputs"] == []
    assert report["mp4_source"] == "recorder"
    [info] = findings(report, "RECORDER_MP4")
    assert info["severity"] == "info"
    [listed] = report["recorder_outputs"]
    slices = sorted(p.name for p in (root / "recordings").glob("*.ts"))
    assert listed["key"] == f"recordings/{theirs.name}"
    assert (listed["index"], listed["start_s"], listed["slices"]) == (0, 0.0, [slices[0], slices[-1]])
    assert listed["duration_s"] == pytest.approx(report["duration"]["media_s"], abs=0.1)
    assert theirs.read_bytes() == recorders_mp4
    assert (theirs.stat().st_mtime_ns, theirs.stat().st_ino) == (before.st_mtime_ns, before.st_ino)
    assert sorted(p.name for p in (root / "recordings").glob("*.mp4")) == [theirs.name]

    report_file = root / "recordings" / f"{stem(root)}.report.json"
    written = report_file.stat().st_mtime_ns
    again = invoke("process", str(root), "--profile", str(root / "start.json"))
    assert again.exit_code == 0
    assert report_file.stat().st_mtime_ns == written  # up to date: nothing written


@pytest.mark.parametrize(
    ("name", "damage", "problem"),
    [
        pytest.param("_0.mp4", lambda data: data[: len(data) // 3], "cannot be read", id="truncated"),
        pytest.param("_1.mp4", lambda data: data, "MP4 index 0 is missing", id="index-0-missing"),
    ],
)
def test_a_broken_recorder_set_is_reported_and_recpipe_writes_beside_it(
    root, recorders_mp4, name, damage, problem
):
    theirs = root / "recordings" / f"{stem(root)}{name}"
    theirs.write_bytes(damage(recorders_mp4))
    kept = theirs.read_bytes()
    code, report = process(root)
    assert (code, report["status"]) == (0, "ok")
    [warning] = findings(report, "RECORDER_MP4")
    assert warning["severity"] == "warning"
    assert problem in warning["detail"]
    assert report["mp4_source"] == "recpipe"
    [output] = report["outputs"]
    assert output["key"] == f"recordings/{stem(root)}_0.recpipe.mp4"
    assert theirs.read_bytes() == kept
    assert LocalStorage(root).read_metadata(output["key"]) == {OWNER_LABEL: stem(root)}
    assert LocalStorage(root).read_metadata(f"recordings/{theirs.name}") == {}


def test_recpipes_own_mp4_has_agoras_name_and_is_not_taken_for_the_recorders(root):
    code, report = process(root)
    assert code == 0
    [output] = report["outputs"]
    assert output["key"] == f"recordings/{stem(root)}_0.mp4"
    assert report["recorder_outputs"] == []
    again = process(root)
    assert again[1]["outputs"] == report["outputs"]  # the up-to-date report: nothing redone
    [listing] = json.loads(invoke("ls", str(root), "--json").stdout)
    assert listing["state"] == "processed"


def test_a_rerun_with_other_options_leaves_no_output_that_no_report_describes(root, recorders_mp4):
    code, first = process(root)
    assert code == 0
    [ours] = first["outputs"]
    assert (root / ours["key"]).exists()
    code, second = process(root, "--av-file-type", "hls")
    assert code == 0
    assert second["outputs"] == []
    assert not (root / ours["key"]).exists()  # recpipe's own earlier MP4: removed with its description
    described = {o["key"] for o in second["outputs"]}
    on_disk = {f"recordings/{p.name}" for p in (root / "recordings").glob("*.mp4")}
    assert on_disk <= described


def test_a_recorder_mp4_is_never_removed_even_if_a_report_lists_it(root, recorders_mp4):
    """An earlier report naming a file that is not recpipe's (a hand-edited or foreign report) does not
    make recpipe delete it."""
    theirs = root / "recordings" / f"{stem(root)}_0.mp4"
    assert process(root)[0] == 0
    theirs.unlink()
    theirs.write_bytes(recorders_mp4)  # now the recorder's: no label
    assert process(root, "--av-file-type", "hls")[0] == 0
    assert theirs.read_bytes() == recorders_mp4


def test_on_s3_the_recorders_set_is_verified_and_left_alone(root, recorders_mp4, s3_bucket):
    key = f"recordings/{stem(root)}_0.mp4"
    s3_bucket.upload_directory((root / "recordings"), prefix="recordings/")
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=key, Body=recorders_mp4)
    etag = s3_bucket.client.head_object(Bucket=s3_bucket.name, Key=key)["ETag"]
    location = f"s3://{s3_bucket.name}/recordings/"
    args = ("process", location, "--profile", str(root / "start.json"), "--endpoint-url", s3_bucket.endpoint)
    code, report = run(*args)
    assert (code, report["mp4_source"], report["outputs"]) == (0, "recorder", [])

    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=key, Body=recorders_mp4[:1000])  # now broken
    etag = s3_bucket.client.head_object(Bucket=s3_bucket.name, Key=key)["ETag"]
    code, report = run(*args)
    assert (code, report["mp4_source"]) == (0, "recpipe")
    [output] = report["outputs"]
    assert output["key"] == f"recordings/{stem(root)}_0.recpipe.mp4"
    head = s3_bucket.client.head_object(Bucket=s3_bucket.name, Key=output["key"])
    assert head["Metadata"] == {OWNER_LABEL: stem(root)}
    assert s3_bucket.client.head_object(Bucket=s3_bucket.name, Key=key)["ETag"] == etag
    body = s3_bucket.client.get_object(Bucket=s3_bucket.name, Key=key)["Body"].read()
    assert body == recorders_mp4[:1000]
