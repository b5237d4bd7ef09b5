"""Every message shape the worker accepts, and every way a message can be refused."""

from __future__ import annotations

import json

import pytest

from pipeline.fleet.triggers import JobOptions, Trigger, job_message, parse_message
from pipeline.model.exceptions import MessageError
from pipeline.model.job import BACKUPED_NOW

SID = "665ba1974b715d7e0faf7b5a3c199acf"


def s3_event(*keys: str, event: str = "ObjectCreated:Put", bucket: str = "rec-bucket") -> dict:
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventName": event,
                "s3": {"bucket": {"name": bucket}, "object": {"key": k, "size": 10, "eTag": "abc123"}},
            }
            for k in keys
        ]
    }


def test_s3_keys_are_url_decoded_plus_is_space_and_percent_2b_is_plus():
    parsed = parse_message(json.dumps(s3_event(f"rec/{SID}_my+room%2B1.m3u8")))
    assert parsed.triggers == (
        Trigger(origin="s3", location=f"s3://rec-bucket/rec/{SID}_my room+1.m3u8", etag="abc123"),
    )


def test_several_records_in_one_message_and_non_playlists_ignored():
    body = s3_event(
        f"a/{SID}_r1.m3u8", f"a/{SID}_r1_20260101000000000.ts", f"b/{SID}_r2.m3u8", "a/x.report.json",
        "a/notes.txt",
    )  # fmt: skip
    parsed = parse_message(json.dumps(body))
    assert [(t.location, t.from_slice) for t in parsed.triggers] == [
        (f"s3://rec-bucket/a/{SID}_r1.m3u8", False),
        (f"s3://rec-bucket/a/{SID}_r1.m3u8", True),  # a slice: its recording, if it is otherwise done
        (f"s3://rec-bucket/b/{SID}_r2.m3u8", False),
    ]
    assert len(parsed.ignored) == 2
    assert all("not a playlist" in reason for reason in parsed.ignored)


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("rec/notes.m3u8", "not named like"),
        (f"rec/{SID}_room.report.json", "not a playlist"),
    ],
)
def test_objects_that_do_not_start_work(key, reason):
    parsed = parse_message(json.dumps(s3_event(key)))
    assert parsed.triggers == ()
    assert reason in parsed.ignored[0]


def test_removed_objects_do_not_start_work():
    parsed = parse_message(json.dumps(s3_event(f"a/{SID}_r.m3u8", event="ObjectRemoved:Delete")))
    assert parsed.triggers == ()
    assert "only new objects" in parsed.ignored[0]


def test_test_event_is_acknowledged_and_ignored():
    body = {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2026-11-25T10:00:00Z",
        "Bucket": "rec-bucket",
    }
    parsed = parse_message(json.dumps(body))
    assert parsed.triggers == ()
    assert "test event" in parsed.ignored[0]


def test_sns_envelope_around_an_s3_event():
    envelope = {
        "Type": "Notification",
        "TopicArn": "arn:aws:sns:us-east-1:1:t",
        "Message": json.dumps(s3_event(f"a/{SID}_r.m3u8")),
    }
    assert parse_message(json.dumps(envelope)).triggers[0].location == f"s3://rec-bucket/a/{SID}_r.m3u8"


def test_eventbridge_object_created_tries_the_decoded_key_then_the_raw_one():
    doc = {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "detail": {"bucket": {"name": "b"}, "object": {"key": f"a/{SID}_my+room.m3u8", "etag": "e1"}},
    }
    [trigger] = parse_message(json.dumps(doc)).triggers
    assert (trigger.location, trigger.alternatives, trigger.etag) == (
        f"s3://b/a/{SID}_my room.m3u8",
        (f"s3://b/a/{SID}_my+room.m3u8",),
        "e1",
    )


def test_recpipe_job_round_trip():
    options = JobOptions(
        dest="s3://out/x/", policy="lenient", av_file_type="hls,mp4", force=True, profile={"cname": "r"}
    )
    body = job_message("s3://b/a/", sid=SID, options=options)
    assert parse_message(body).triggers == (
        Trigger(origin="job", location="s3://b/a/", sid=SID, options=options),
    )


def test_recorder_uploaded_and_backuped_notifications():
    for event_type in (31, 32):
        doc = {"noticeId": "n1", "productId": 3, "eventType": event_type, "notifyMs": 1,
               "payload": {"cname": "room", "uid": "1", "sid": SID, "sequence": 0, "serviceType": 2,
                           "details": {"msgName": "uploaded", "status": 0}}}  # fmt: skip
        backuped_at = 0.001 if event_type == 32 else None  # notifyMs: files are still coming
        assert parse_message(json.dumps(doc)).triggers == (
            Trigger(origin="recorder", location=None, sid=SID, backuped_at=backuped_at),
        )
    progress = {"eventType": 33, "payload": {"sid": SID}}
    assert parse_message(json.dumps(progress)).triggers == ()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not an object"),
        ('{"hello": 1}', "not an S3 event"),
        ('{"Records": "x"}', "not a list"),
        ('{"Records": [{"eventSource": "aws:sqs"}]}', "not from aws:s3"),
        (
            json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {}}]}),
            "without bucket",
        ),
        (json.dumps(s3_event("../etc/passwd.m3u8")), "unsafe object key"),
        (json.dumps(s3_event("/abs.m3u8")), "unsafe object key"),
        ('{"Type": "Notification", "Message": "nope"}', "not JSON"),
        ('{"schema": "recpipe.job/1"}', "without a location"),
        ('{"schema": "recpipe.job/1", "location": "s3://b/", "policy": "yolo"}', "unknown policy"),
        ('{"eventType": 31, "payload": {"cname": "r"}}', "without a sid"),
        ("x" * 300_000, "larger than any queue message"),
    ],
)
def test_malformed_messages_are_refused(body, message):
    with pytest.raises(MessageError, match=message):
        parse_message(body)


def test_a_backup_snapshot_playlist_starts_work_on_its_recording():
    """A snapshot playlist may be all there is of a backed-up recording for a while: its event is a job
    for the snapshot's key, which discovery resolves to the recording it belongs to."""
    parsed = parse_message(json.dumps(s3_event(f"rec/{SID}_my+room_1732500000123_0.m3u8")))
    assert parsed.triggers == (
        Trigger(
            origin="s3", location=f"s3://rec-bucket/rec/{SID}_my room_1732500000123_0.m3u8", etag="abc123"
        ),
    )
    assert parsed.ignored == ()


def test_a_job_message_carries_the_backup_wait():
    options = JobOptions(backuped_at=1767225600.0)
    [trigger] = parse_message(job_message("s3://b/a/", sid=SID, options=options)).triggers
    assert trigger.options.backuped_at == 1767225600.0
    with pytest.raises(MessageError, match="backuped_at"):
        parse_message(json.dumps({"schema": "recpipe.job/1", "location": "s3://b/", "backuped_at": "soon"}))


def test_a_backuped_notification_without_a_time_waits_without_a_deadline():
    doc = {"noticeId": "n1", "productId": 3, "eventType": 32, "payload": {"sid": SID}}
    [trigger] = parse_message(json.dumps(doc)).triggers
    assert trigger.backuped_at == BACKUPED_NOW


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(f"{SID}_room__uid_s_123__uid_e_video_22194679897_3.m3u8", id="individual-snapshot"),
        pytest.param(f"{SID}_room__uid_s_123__uid_e_h264_5_0.m3u8", id="v2-snapshot"),
        pytest.param(f"bak0_{SID}_room.m3u8", id="failover-playlist"),
    ],
)
def test_every_kind_of_a_recordings_playlist_starts_work(name):
    parsed = parse_message(json.dumps(s3_event(f"rec/{name}")))
    assert [t.location for t in parsed.triggers] == [f"s3://rec-bucket/rec/{name}"]


# --- Azure Event Grid ---------------------------------------------------------------------------------

SID_NAME = "a2c006617b326e6b40feca8a3da39c9a_room%201"


def blob_created(key: str, *, account: str = "acct1", container: str = "rec", etag: str = "0x8DC1") -> dict:
    """A BlobCreated event in Event Grid's own schema, as Azure sends it."""
    return {
        "topic": f"/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/{account}",
        "subject": f"/blobServices/default/containers/{container}/blobs/{key}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": "2026-11-26T00:00:00Z",
        "id": "e1",
        "data": {
            "api": "PutBlockList",
            "eTag": etag,
            "contentType": "application/x-mpegURL",
            "contentLength": 524,
            "blobType": "BlockBlob",
            "url": f"https://{account}.blob.core.windows.net/{container}/{key}",
        },
        "dataVersion": "",
        "metadataVersion": "1",
    }


def as_cloud_event(event: dict) -> dict:
    """The same event in the CloudEvents 1.0 schema."""
    return {
        "specversion": "1.0",
        "type": event["eventType"],
        "source": event["topic"],
        "subject": event["subject"],
        "id": event["id"],
        "time": event["eventTime"],
        "data": event["data"],
    }


@pytest.mark.parametrize("shape", [lambda e: e, as_cloud_event], ids=["event-grid-schema", "cloud-events"])
def test_a_blob_created_playlist_starts_work_with_its_decoded_name(shape):
    event = shape(blob_created(f"agora/{SID_NAME}.m3u8"))
    [trigger] = parse_message(json.dumps(event)).triggers
    assert trigger.origin == "eventgrid"
    assert trigger.location == "az://acct1/rec/agora/a2c006617b326e6b40feca8a3da39c9a_room 1.m3u8"
    assert trigger.etag == "0x8DC1"


def test_a_webhook_batch_of_events_is_parsed_event_by_event():
    batch = [blob_created(f"agora/{SID_NAME}.m3u8"), blob_created("agora/notes.txt")]
    parsed = parse_message(json.dumps(batch))
    assert [t.location for t in parsed.triggers] == [
        "az://acct1/rec/agora/a2c006617b326e6b40feca8a3da39c9a_room 1.m3u8"
    ]
    assert parsed.ignored == ("az://acct1/rec/agora/notes.txt: not a playlist",)


def test_a_slice_event_starts_its_recordings_job():
    [trigger] = parse_message(json.dumps(blob_created(f"agora/{SID_NAME}_20260115093000000.ts"))).triggers
    assert trigger.from_slice
    assert trigger.location == "az://acct1/rec/agora/a2c006617b326e6b40feca8a3da39c9a_room 1.m3u8"


@pytest.mark.parametrize(
    ("event_type", "reason"),
    [
        ("Microsoft.Storage.BlobDeleted", "only new blobs start work"),
        ("Microsoft.EventGrid.SubscriptionValidationEvent", "subscription validation"),
    ],
)
def test_other_event_grid_events_are_acknowledged_and_ignored(event_type, reason):
    event = {**blob_created(f"agora/{SID_NAME}.m3u8"), "eventType": event_type}
    parsed = parse_message(json.dumps(event))
    assert parsed.triggers == ()
    assert reason in parsed.ignored[0]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://acct1.blob.core.windows.net/rec/a/../../etc/x.m3u8", "unsafe object key"),
        ("http://acct1.blob.core.windows.net/rec/a.m3u8", "unexpected URL"),
        ("https://evil.example.com/rec/a.m3u8", "unexpected URL"),
        ("https://acct1.blob.core.windows.net/rec/a.m3u8?sig=x", "unexpected URL"),
        ("https://acct1.blob.core.windows.net/rec", "names no container and blob"),
        (None, "without data.url"),
    ],
)
def test_hostile_or_broken_blob_events_are_refused(url, message):
    event = blob_created("a.m3u8")
    event["data"]["url"] = url
    with pytest.raises(MessageError, match=message):
        parse_message(json.dumps(event))


def test_an_array_that_is_not_event_grid_events_is_refused():
    with pytest.raises(MessageError, match="nor a batch of Event Grid events"):
        parse_message(json.dumps([{"Records": []}]))
