"""Azure Blob Storage end to end, on Azurite (127.0.0.1): a recording processed from Azurite to Azurite
gives the same MP4 as from a local directory; the MP4 appears only complete (blocks staged, the block
list committed last), a run killed with SIGKILL mid-upload leaves nothing visible and a rerun
completes; hostile blob names are refused as on S3; no key reaches a log, report or error."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient

from pipeline.fleet.azure_queue import encode
from pipeline.samples.composite import write_sample
from tests.azurite import ACCOUNT, KEY, AzureContainer, Azurite
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


def kill_mid_upload(container: AzureContainer, argv: list[str], env: dict[str, str]) -> bool:
    """Start a run, freeze it (recpipe and its ffmpeg, SIGSTOP) as soon as its MP4 has staged blocks,
    then kill it; whether it was caught with the MP4 staged and not committed. A run can commit between
    the test's look and the freeze (the last blocks are quick), or finish between two looks: then it
    was not caught."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not staged_mp4(container):
        time.sleep(0.01)
    if proc.poll() is not None:
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
        return False
    pids = [*children_of().get(proc.pid, []), proc.pid]  # recpipe and its ffmpeg, at once
    signal_all(pids, signal.SIGSTOP)
    caught = staged_mp4(container) and not [k for k in blobs(container) if k.endswith(".mp4")]
    signal_all(pids, signal.SIGKILL)
    proc.wait()
    return caught


def signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def test_a_run_killed_mid_upload_leaves_nothing_visible_and_a_rerun_completes(
    big, azure_container, azurite, tmp_path
):
    azure_container.upload_directory(big.directory, prefix="rec/")
    sources = blobs(azure_container, "rec/")
    argv = [sys.executable, "-m", "pipeline", "process", f"{azure_container.location}rec/",
            "--profile", str(big.profile), "--quiet"]  # fmt: skip
    env = {**os.environ, **azurite.environ, "RECPIPE_WORKDIR": str(tmp_path),
           "RECPIPE_UPLOAD_PART_BYTES": str(5 * 1024 * 1024)}  # fmt: skip
    client = azure_container.service.get_container_client(azure_container.name)
    for _ in range(3):
        if kill_mid_upload(azure_container, argv, env):
            break
        for key in blobs(azure_container):  # committed before it froze: its outputs go, and again
            if key not in sources:
                client.delete_blob(key)
    else:
        pytest.fail("three runs committed their MP4 before they could be frozen mid-upload")
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


def blob_created_event(container: AzureContainer, key: str) -> str:
    """The BlobCreated event Event Grid writes to a Storage Queue for ``key`` (Base64 JSON)."""
    props = container.service.get_blob_client(container.name, key).get_blob_properties()
    event = {
        "topic": f"/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/{ACCOUNT}",
        "subject": f"/blobServices/default/containers/{container.name}/blobs/{key}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "id": "evt-1",
        "data": {
            "api": "PutBlob",
            "eTag": props.etag,
            "blobType": "BlockBlob",
            "url": f"https://{ACCOUNT}.blob.core.windows.net/{container.name}/{quote(key)}",
        },
        "dataVersion": "",
        "metadataVersion": "1",
    }
    return encode(json.dumps(event))


def start_worker(queue_url: str, *, azurite: Azurite, recording: Path, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "pipeline", "-v", "worker", "--queue", queue_url,
            "--profile", str(recording / "start.json"), "--concurrency", "2", "--wait", "1",
            "--pending-delay", "1", "--visibility", "30", "--idle-exit", "5"]  # fmt: skip
    env = {**os.environ, **azurite.environ}
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log.open("wb"), env=env)


def test_two_workers_on_one_queue_make_exactly_one_output_set(recording, azure_container, azurite, tmp_path):
    azure_container.upload_directory(recording / "rec", prefix="rec/")
    client = azure_container.service.get_container_client(azure_container.name)
    [playlist] = [b.name for b in client.list_blobs(name_starts_with="rec/") if b.name.endswith(".m3u8")]
    with azurite.queue() as queue_url:
        name = queue_url.rsplit("/", 1)[1]
        queue = QueueClient.from_connection_string(azurite.connection_string, name)
        event = blob_created_event(azure_container, playlist)
        for _ in range(3):  # Event Grid delivers at least once: the same event, three times
            queue.send_message(event)
        logs = [tmp_path / "w1.log", tmp_path / "w2.log"]
        workers = [start_worker(queue_url, azurite=azurite, recording=recording, log=log) for log in logs]
        for worker in workers:
            assert worker.wait(timeout=180) == 0, "\n".join(p.read_text() for p in logs)
        outputs = {k: v for k, v in blobs(azure_container).items() if not k.startswith("rec/") or k.endswith((
            ".mp4", ".report.json", ".lease.json"))}  # fmt: skip
        report_key = playlist.removesuffix(".m3u8") + ".report.json"
        report = json.loads(client.download_blob(report_key).readall())
        assert report["status"] == "ok"
        [output] = report["outputs"]
        assert set(outputs) == {report_key, output["key"]}  # one MP4 and its report, no lease left
        assert outputs[output["key"]] == output["sha256"]
        assert queue.get_queue_properties().approximate_message_count == 0  # every copy deleted
        poison = QueueClient.from_connection_string(azurite.connection_string, f"{name}-poison")
        assert not poison_messages(poison)
        text = "\n".join(p.read_text() for p in logs)
        assert KEY not in text


def poison_messages(client: QueueClient) -> list[str]:
    try:
        return [m.content for m in client.peek_messages(max_messages=32)]
    except ResourceNotFoundError:
        return []


def http(method: str, url: str, body: object = None, headers: dict[str, str] | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read() or b"{}")


def test_serve_answers_event_grids_validation_and_queues_blob_created_events(
    azure_container, azurite, tmp_path
):
    port = free_port()
    key = "grid-key-123"
    with azurite.queue() as queue_url:
        argv = [sys.executable, "-m", "pipeline", "-vv", "serve", "--listen", f"127.0.0.1:{port}",
                "--recordings", azure_container.location, "--queue", queue_url]  # fmt: skip
        env = {**os.environ, **azurite.environ, "RECPIPE_EVENT_GRID_KEY": key}
        env.pop("RECPIPE_NCS_SECRET", None)
        log = tmp_path / "serve.log"
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 20
            while not _listening(port) or http("GET", base + "/healthz")[0] != 200:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            code = "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"
            kind = "Microsoft.EventGrid.SubscriptionValidationEvent"
            validation = [{"id": "v1", "eventType": kind, "subject": "", "data": {"validationCode": code}}]
            assert http("POST", f"{base}/eventgrid?key={key}", validation)[::2] == (
                200,
                {"validationResponse": code},
            )
            assert http("POST", f"{base}/eventgrid?key=wrong", validation)[0] == 401
            assert http("POST", f"{base}/eventgrid", validation)[0] == 401
            status, headers, _ = http(
                "OPTIONS",
                f"{base}/eventgrid?key={key}",
                headers={"WebHook-Request-Origin": "eventgrid.azure.net"},
            )
            assert (status, headers.get("WebHook-Allowed-Origin")) == (200, "eventgrid.azure.net")
            name = "a2c006617b326e6b40feca8a3da39c9a_room.m3u8"
            event = json.loads(base64.b64decode(blob_created_event_for(azure_container, f"rec/{name}")))
            status, _, body = http("POST", f"{base}/eventgrid?key={key}", [event])
            assert (status, body["jobs"]) == (200, 1)
            queue = QueueClient.from_connection_string(azurite.connection_string, queue_url.rsplit("/", 1)[1])
            [message] = list(queue.receive_messages(max_messages=5))
            job = json.loads(base64.b64decode(message.content))
            assert job["schema"] == "recpipe.job/1"
            assert job["location"] == f"{azure_container.location}rec/{name}"
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    assert key not in log.read_text()


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def blob_created_event_for(container: AzureContainer, key: str) -> bytes:
    """A BlobCreated event (Base64, as on a queue) for a blob that need not exist."""
    event = {
        "topic": f"/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/{ACCOUNT}",
        "subject": f"/blobServices/default/containers/{container.name}/blobs/{key}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "id": "evt-2",
        "data": {
            "api": "PutBlob",
            "eTag": "0x1",
            "url": f"https://{ACCOUNT}.blob.core.windows.net/{container.name}/{key}",
        },
    }
    return encode(json.dumps(event)).encode()
