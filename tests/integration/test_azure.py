"""Azure Blob Storage end to end, on Azurite (127.0.0.1): a recording processed from Azurite to Azurite
gives the same MP4 as from a local directory; the MP4 appears only complete (blocks staged, the block
list committed last), a run killed with SIGKILL mid-upload leaves nothing visible and a rerun
completes; hostile blob names are refused as on S3; no key reaches a log, report or error."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.samples.composite import write_sample
from tests.azurite import KEY, AzureContainer, Azurite
from tests.bench.measure import children_of
from tests.bench.recording import build

pytestmark = [pytest.mark.integration, pytest.mark.ffmpeg, pytest.mark.slow]


@pytest.fixture(scope="module")
def recording(tmp_path_factory, ffmpeg_exe) -> Path:
    """A 30 s sample in 2 s slices, with its profile asking for MP4."""
    root = tmp_path_factory.mktemp("azure")
    made = write_sample(root / "rec", ffmpeg=ffmpeg_exe, seconds=30, slice_seconds=2, cname="azure-room")
    (root / "start.json").write_text(json.dumps(made.profile))
    return root


def recpipe(
    *args: str, azurite: Azurite, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pipeline", *args]
    environ = {**os.environ, **azurite.environ, **(env or {})}
    return subprocess.run(argv, env=environ, capture_output=True, text=True, timeout=300, check=False)


def blobs(container: AzureContainer, prefix: str = "") -> dict[str, str]:
    """Every committed blob under ``prefix``: its sha256."""
    client = container.service.get_container_client(container.name)
    return {
        b.name: hashlib.sha256(client.download_blob(b.name).readall()).hexdigest()
        for b in client.list_blobs(name_starts_with=prefix or None)
    }


def test_azure_to_azure_gives_the_same_mp4_as_local(recording, azure_container, azurite, tmp_path):
    azure_container.upload_directory(recording / "rec", prefix="rec/")
    sources = blobs(azure_container, "rec/")
    where = azure_container.location
    done = recpipe("-v", "process", f"{where}rec/", "--dest", f"{where}out/",
                   "--profile", str(recording / "start.json"), "--json", azurite=azurite)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "ok"
    [output] = report["outputs"]
    local = recpipe("process", str(recording / "rec"), "--dest", str(tmp_path / "out"),
                    "--profile", str(recording / "start.json"), "--json", azurite=azurite)  # fmt: skip
    assert local.returncode == 0, local.stderr
    [local_output] = json.loads(local.stdout)["outputs"]
    assert output["sha256"] == local_output["sha256"]
    stored = blobs(azure_container, "out/")
    assert stored[output["key"]] == output["sha256"]
    assert set(stored) == {output["key"], "out/" + Path(output["key"]).name.replace("_0.mp4", ".report.json")}
    assert blobs(azure_container, "rec/") == sources  # the recording is untouched
    props = azure_container.service.get_blob_client(azure_container.name, output["key"]).get_blob_properties()
    assert props.metadata == {"recpipe_output": Path(output["key"]).name.removesuffix("_0.mp4")}
    again = recpipe("process", f"{azure_container.location}rec/", "--dest", f"{azure_container.location}out/",
                    "--profile", str(recording / "start.json"), "--json", azurite=azurite)  # fmt: skip
    assert again.returncode == 0
    assert "already processed" in again.stderr or json.loads(again.stdout)["outputs"] == report["outputs"]
    assert blobs(azure_container, "out/") == stored  # idempotent: nothing written twice
    for text in (done.stdout, done.stderr, again.stderr):
        assert KEY not in text
        assert "AccountKey" not in text


@pytest.fixture(scope="module")
def big(tmp_path_factory, ffmpeg_exe):
    """32 slices of 9.6 s (about 24 MB): several 5 MiB blocks."""
    return build(tmp_path_factory.mktemp("big"), slices=32, ffmpeg=ffmpeg_exe)


def staged_mp4(container: AzureContainer) -> bool:
    """Whether an MP4 has staged blocks but is not committed yet (an upload in progress)."""
    client = container.service.get_container_client(container.name)
    committed = {b.name for b in client.list_blobs()}
    listed = client.list_blobs(include=["uncommittedblobs"])
    return any(b.name.endswith(".mp4") and b.name not in committed for b in listed)


def test_a_run_killed_mid_upload_leaves_nothing_visible_and_a_rerun_completes(
    big, azure_container, azurite, tmp_path
):
    azure_container.upload_directory(big.directory, prefix="rec/")
    sources = blobs(azure_container, "rec/")
    argv = [sys.executable, "-m", "pipeline", "process", f"{azure_container.location}rec/",
            "--profile", str(big.profile), "--quiet"]  # fmt: skip
    env = {**os.environ, **azurite.environ, "RECPIPE_WORKDIR": str(tmp_path),
           "RECPIPE_UPLOAD_PART_BYTES": str(5 * 1024 * 1024)}  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not staged_mp4(azure_container):
        time.sleep(0.01)
    assert proc.poll() is None, "recpipe finished before its MP4 upload could be interrupted"
    for pid in [*children_of().get(proc.pid, []), proc.pid]:  # recpipe and its ffmpeg, at once
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    visible = blobs(azure_container)
    assert [k for k in visible if k.endswith((".mp4", ".report.json"))] == []  # nothing half-written shows
    assert staged_mp4(azure_container)  # only invisible staged blocks
    rerun = recpipe("process", f"{azure_container.location}rec/", "--profile", str(big.profile), "--json",
                    azurite=azurite, env={"RECPIPE_WORKDIR": str(tmp_path)})  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert report["status"] == "ok"
    after = blobs(azure_container)
    assert not [k for k in after if k.endswith(".lease.json")]
    [output] = report["outputs"]
    assert after[output["key"]] == output["sha256"]
    assert not staged_mp4(azure_container)  # the killed run's staged blocks are gone
    assert {k: after[k] for k in sources} == sources  # the recording is untouched


@pytest.mark.parametrize(
    ("uri", "code"),
    [
        ("../escape.ts", "UNSAFE_URI"),
        ("https://evil.example/x.ts", "UNSAFE_URI"),
        ("/abs/x.ts", "UNSAFE_URI"),
    ],
)
def test_hostile_blob_names_in_a_playlist_are_refused(recording, azure_container, azurite, uri, code):
    azure_container.upload_directory(recording / "rec", prefix="rec/")
    client = azure_container.service.get_container_client(azure_container.name)
    [playlist] = [b.name for b in client.list_blobs(name_starts_with="rec/") if b.name.endswith(".m3u8")]
    text = client.download_blob(playlist).readall().decode()
    first = next(line for line in text.splitlines() if line.endswith(".ts"))
    client.upload_blob(playlist, text.replace(first, uri, 1), overwrite=True)
    done = recpipe("process", f"{azure_container.location}rec/", "--json", azurite=azurite)
    report = json.loads(done.stdout)
    assert code in {f["code"] for f in report["findings"]}
    assert report["outputs"] == []
    assert not [k for k in blobs(azure_container) if not k.startswith("rec/") and k.endswith(".mp4")]
