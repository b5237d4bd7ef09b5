"""The README's Azure wiring matches what the code does: the Event Grid subscription sends the events
the worker is built for, in a schema it reads, to a queue URL it understands; the roles there allow
every call recpipe makes to Blob Storage and the Storage Queue; the flags it names exist."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from click.testing import CliRunner

from pipeline.cli import main
from pipeline.fleet.azure_queue import POISON_SUFFIX, parse_queue_url
from pipeline.fleet.triggers import BLOB_CREATED, not_a_recording, parse_message, slice_playlist

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = README[README.index("### Wiring it on Azure") : README.index("## Developing")]
SNIPPET = SECTION[SECTION.index("```sh") + 5 : SECTION.index("```", SECTION.index("```sh") + 5)]

# Azure SDK call → the built-in role that allows it (data plane).
ROLE_OF = {
    "download_blob": "Storage Blob Data Contributor",
    "get_blob_properties": "Storage Blob Data Contributor",
    "list_blobs": "Storage Blob Data Contributor",
    "upload_blob": "Storage Blob Data Contributor",
    "stage_block": "Storage Blob Data Contributor",
    "commit_block_list": "Storage Blob Data Contributor",
    "delete_blob": "Storage Blob Data Contributor",
    "receive_messages": "Storage Queue Data Message Processor",
    "update_message": "Storage Queue Data Message Processor",
    "delete_message": "Storage Queue Data Message Processor",
    "send_message": "Storage Queue Data Message Sender",
    "create_queue": "the README creates the queues",
}


def words() -> list[str]:
    """The snippet's words, with its variables filled in and continuation lines joined."""
    text = SNIPPET.replace("\\\n", " ")
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    first = next(line for line in lines if "=" in line)
    values = dict(re.findall(r"(\w+)=(\S+)", first))
    joined = " ".join(lines)
    for name, value in values.items():
        joined = joined.replace(f"${name}", value)
    return shlex.split(joined)


def option(name: str) -> list[str]:
    """The values after ``name`` in the event subscription command."""
    w = words()
    start = w.index(name) + 1
    values = []
    for word in w[start:]:
        if word.startswith("--") or word in ("az", "for", "recpipe"):
            break
        values.append(word)
    return values


SDK_NAMES = ("_blob", "_blobs", "_message", "_messages", "_queue", "_block", "_block_list")
"""How the SDK's request methods are named (``download_blob``, ``receive_messages``, ``stage_block`` …)."""


def sdk_calls() -> set[str]:
    """Every Azure SDK request method recpipe calls."""
    source = "".join(
        (ROOT / f).read_text() for f in ("pipeline/storage/azure.py", "pipeline/fleet/azure_queue.py")
    )
    found = set(re.findall(r"\.(\w+)\(", source))
    ours = {"dead_letter_queue", "open_azure_queue"}  # recpipe's own methods
    return {
        c for c in found - ours if c in ROLE_OF or (c.endswith(SDK_NAMES) and not c.startswith(("_", "get_")))
    }


def test_the_subscription_sends_what_the_worker_starts_work_on():
    assert option("--included-event-types") == [BLOB_CREATED]
    assert option("--endpoint-type") == ["storagequeue"]
    suffixes = option("--advanced-filter")[2:]
    assert option("--advanced-filter")[:2] == ["subject", "StringEndsWith"]
    assert sorted(suffixes) == [".m3u8", ".ts"]
    name = "a2c006617b326e6b40feca8a3da39c9a_room"
    assert not_a_recording(f"agora/{name}.m3u8") is None
    assert slice_playlist(f"agora/{name}_20260115093000000.ts") == f"agora/{name}.m3u8"
    assert option("--subject-begins-with")[0].startswith("/blobServices/default/containers/agora/blobs/")


def test_the_delivery_schema_is_one_the_worker_reads():
    [schema] = option("--event-delivery-schema")
    assert schema in ("eventgridschema", "cloudeventschemav1_0")
    event = {"eventType": BLOB_CREATED, "subject": "/blobServices/default/containers/agora/blobs/x.m3u8",
             "data": {"url": "https://myrecordings.blob.core.windows.net/agora/a_b.m3u8"}}  # fmt: skip
    if schema != "eventgridschema":
        event = {"specversion": "1.0", "type": BLOB_CREATED, "source": "s", "data": event["data"]}
    [trigger] = parse_message(json.dumps(event)).triggers
    assert trigger.location == "az://myrecordings/agora/a_b.m3u8"


def test_the_queues_are_the_ones_the_worker_uses():
    created = [w[w.index("--name") + 1] for w in _commands("storage", "queue", "create")]
    queue = created[0]
    assert created == [queue, queue + POISON_SUFFIX]
    [worker] = _commands("worker")
    url = worker[worker.index("--queue") + 1]
    assert parse_queue_url(url) == ("myrecordings", queue)
    endpoint = option("--endpoint")[0]
    assert endpoint.endswith(f"/queueservices/default/queues/{queue}")


def test_the_roles_allow_every_call_recpipe_makes():
    calls = sdk_calls()
    assert {"download_blob", "commit_block_list", "receive_messages", "send_message"} <= calls
    unknown = calls - set(ROLE_OF)
    assert not unknown, f"map these calls to roles: {unknown}"
    roles = set(re.findall(r'"(Storage [A-Za-z ]+)"', SNIPPET))
    needed = {ROLE_OF[c] for c in calls} - {"the README creates the queues"}
    assert needed <= roles, needed - roles


def test_the_flags_the_readme_names_exist():
    help_text = CliRunner().invoke(main, ["worker", "--help"]).output
    [worker] = _commands("worker")
    for flag in (w for w in worker if w.startswith("--")):
        assert flag in help_text
    serve_help = CliRunner().invoke(main, ["serve", "--help"]).output
    assert "RECPIPE_EVENT_GRID_KEY" in serve_help
    assert "RECPIPE_EVENT_GRID_KEY" in SECTION


def _commands(*head: str) -> list[list[str]]:
    """Each command in the snippet that starts with ``head`` (after ``az``/``recpipe``)."""
    w = words()
    starts = [i for i, word in enumerate(w) if word in ("az", "recpipe")]
    out = []
    for begin, end in zip(starts, [*starts[1:], len(w)], strict=True):
        command = w[begin + 1 : end]
        if command[: len(head)] == list(head):
            out.append(command)
    return out
