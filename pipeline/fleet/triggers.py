"""Queue messages and storage events → the recordings to process. Pure: no I/O, no cloud calls.

One message body can be any of these (``parse_message`` tells them apart):

==================  =====================================================================  ==========
shape               recognised by                                                          gives
==================  =====================================================================  ==========
S3 notification     ``{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:…"``  a playlist
                    keys are URL-encoded (``+`` is a space, ``%2B`` a plus)
S3 test event       ``{"Event": "s3:TestEvent", …}`` (sent when a notification is set up)    nothing
SNS envelope        ``{"Type": "Notification", "Message": "<one of these, as a string>"}``  its inside
EventBridge         ``{"source": "aws.s3", "detail-type": "Object Created", "detail": …}``  a playlist
recpipe job         ``{"schema": "recpipe.job/1", "location": …}`` (``recpipe enqueue``)    a location
recorder webhook    ``{"eventType": 31 | 32, "payload": {"sid", "cname", "details": …}}``   a sid
Event Grid          ``{"eventType": "Microsoft.Storage.BlobCreated", "data": {"url": …}}``   a playlist
                    (or a CloudEvent: ``{"specversion", "type", "data"}``; a JSON array of
                    either from a webhook); the blob name in ``data.url`` is percent-encoded
==================  =====================================================================  ==========

Objects that are not a recording's playlist (slices, MP4s, reports) are ignored with a reason; a
backup snapshot playlist starts work on its recording like the recording's own playlist. Anything
else — not JSON, an unknown shape, missing fields, an unsafe key — is a ``MessageError``: the worker
sends it to the dead-letter queue.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, unquote_plus, urlsplit

from pipeline.model.exceptions import MessageError, NamingError
from pipeline.model.job import BACKUPED_NOW, POLICIES, Policy
from pipeline.model.naming import parse_name, playlist_name, split_snapshot_name

JOB_SCHEMA = "recpipe.job/1"
RECORDER_EVENTS = {31: "uploaded", 32: "backuped"}
"""The recorder's notifications that say a recording's files are all stored (in the customer's
storage, or first in Agora's backup storage, from where they are uploaded later)."""
MAX_MESSAGE_BYTES = 256 * 1024
"""SQS's own limit; anything larger did not come through a queue."""
MAX_NESTING = 3
"""SNS inside SQS inside … : deeper than this is not an envelope recpipe knows."""

Origin = Literal["s3", "eventbridge", "eventgrid", "job", "recorder"]


@dataclass(frozen=True, kw_only=True, slots=True)
class JobOptions:
    """What a job message asks for beyond the location (the same as ``recpipe process``'s flags)."""

    dest: str | None = None
    policy: Policy | None = None
    av_file_type: str | None = None
    force: bool = False
    profile: Mapping[str, Any] | None = None
    """A start request (or its clientRequest), without storage credentials."""
    backuped_at: float | None = None
    """When the recorder reported ``backuped`` (Unix time): slices not there yet are still coming."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Trigger:
    """One recording to process."""

    origin: Origin
    location: str | None
    """``s3://bucket/<playlist key>`` or any LOCATION; None: where the worker says the recorder writes."""
    sid: str | None = None
    etag: str | None = None
    """The playlist version an S3 event is about (a newer upload means a newer event will follow)."""
    backuped_at: float | None = None
    """A recorder ``backuped`` notification: when it was sent (Unix time)."""
    from_slice: bool = False
    """A slice's event, naming its recording's playlist: a late slice of a finished recording (from
    Agora's backup) starts its job again; while the recording goes on, the playlist's events do."""
    alternatives: tuple[str, ...] = ()
    """Other spellings of ``location`` to try if it holds no recording (EventBridge key encoding)."""
    options: JobOptions = field(default_factory=JobOptions)

    @property
    def label(self) -> str:
        """For log lines."""
        where = self.location or "(recorder's storage)"
        return f"{where} (sid {self.sid})" if self.sid else where


@dataclass(frozen=True, kw_only=True, slots=True)
class Parsed:
    """What one message holds: recordings to process, and what was ignored and why."""

    triggers: tuple[Trigger, ...] = ()
    ignored: tuple[str, ...] = ()


def parse_message(body: str | bytes) -> Parsed:
    """The recordings a queue message (or a direct event) asks for; ``MessageError`` if it is not
    something recpipe understands."""
    if len(body) > MAX_MESSAGE_BYTES:
        raise MessageError(f"message of {len(body)} bytes is larger than any queue message")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise MessageError(f"message is not JSON: {err}") from err
    if isinstance(doc, list):
        return parse_events(doc)
    return parse_document(doc)


def parse_events(events: list[Any]) -> Parsed:
    """A batch of Event Grid events (as a webhook receives them), each parsed on its own."""
    if len(events) > MAX_EVENTS or not all(isinstance(e, dict) and is_event_grid(e) for e in events):
        raise MessageError("message is a JSON array, not an object (nor a batch of Event Grid events)")
    parts = [_event_grid(e) for e in events]
    return Parsed(
        triggers=tuple(t for p in parts for t in p.triggers),
        ignored=tuple(i for p in parts for i in p.ignored),
    )


def parse_document(doc: Any, *, depth: int = 0) -> Parsed:
    """Like ``parse_message`` for an already decoded JSON document."""
    if not isinstance(doc, dict):
        raise MessageError(f"message is a JSON {type(doc).__name__}, not an object")
    if depth > MAX_NESTING:
        raise MessageError("message envelopes nested too deep")
    if doc.get("Type") == "Notification" and "Message" in doc:
        inner = doc["Message"]
        if not isinstance(inner, str):
            raise MessageError("SNS notification whose Message is not a string")
        try:
            return parse_document(json.loads(inner), depth=depth + 1)
        except ValueError as err:
            raise MessageError(f"SNS notification whose Message is not JSON: {err}") from err
    if doc.get("Event") == "s3:TestEvent":
        return Parsed(ignored=(f"S3 test event for bucket {doc.get('Bucket', '?')}",))
    if "Records" in doc:
        return _s3_records(doc["Records"])
    if doc.get("source") == "aws.s3" and "detail" in doc:
        return _eventbridge(doc)
    if doc.get("schema") == JOB_SCHEMA:
        return Parsed(triggers=(_job(doc),))
    if "eventType" in doc and "payload" in doc:
        return _recorder(doc)
    if is_event_grid(doc):
        return _event_grid(doc)
    raise MessageError(
        "message is not an S3 event, SNS notification, EventBridge event, recpipe job or recorder "
        f"notification (keys: {', '.join(sorted(map(str, doc))[:8])})"
    )


def _s3_records(records: Any) -> Parsed:
    if not isinstance(records, list):
        raise MessageError("S3 event whose Records is not a list")
    triggers: list[Trigger] = []
    ignored: list[str] = []
    for record in records:
        if not isinstance(record, dict) or record.get("eventSource") != "aws:s3":
            raise MessageError("S3 event with a record that is not from aws:s3")
        name = str(record.get("eventName", ""))
        bucket, raw_key, etag = _s3_object(record.get("s3"), key_field="key", etag_field="eTag")
        key = unquote_plus(raw_key)
        if not name.startswith("ObjectCreated:"):
            ignored.append(f"{name or 'an event'} for s3://{bucket}/{key}: only new objects start work")
            continue
        reason = not_a_recording(key)
        playlist = slice_playlist(key) if reason else None
        if playlist is not None:
            triggers.append(Trigger(origin="s3", location=f"s3://{bucket}/{playlist}", from_slice=True))
            continue
        if reason:
            ignored.append(f"s3://{bucket}/{key}: {reason}")
            continue
        triggers.append(Trigger(origin="s3", location=f"s3://{bucket}/{key}", etag=etag))
    return Parsed(triggers=tuple(triggers), ignored=tuple(ignored))


def _eventbridge(doc: Mapping[str, Any]) -> Parsed:
    detail = doc["detail"]
    if doc.get("detail-type") != "Object Created":
        return Parsed(ignored=(f"EventBridge {doc.get('detail-type')!r} event: only new objects start work",))
    if not isinstance(detail, dict):
        raise MessageError("EventBridge event whose detail is not an object")
    bucket, raw_key, etag = _s3_object(detail, key_field="key", etag_field="etag")
    key = unquote_plus(raw_key)
    reason = not_a_recording(key)
    if reason:
        return Parsed(ignored=(f"s3://{bucket}/{key}: {reason}",))
    other = () if raw_key == key or not_a_recording(raw_key) else (f"s3://{bucket}/{raw_key}",)
    return Parsed(
        triggers=(
            Trigger(origin="eventbridge", location=f"s3://{bucket}/{key}", etag=etag, alternatives=other),
        )
    )


def _s3_object(s3: Any, *, key_field: str, etag_field: str) -> tuple[str, str, str | None]:
    """``(bucket, key as sent, etag)`` from an S3 record's ``s3`` part or an EventBridge ``detail``."""
    if not isinstance(s3, dict):
        raise MessageError("S3 event without its s3 object")
    bucket, obj = s3.get("bucket"), s3.get("object")
    if not isinstance(bucket, dict) or not isinstance(obj, dict):
        raise MessageError("S3 event without bucket or object")
    name, key, etag = bucket.get("name"), obj.get(key_field), obj.get(etag_field)
    if not isinstance(name, str) or not name or not isinstance(key, str) or not key:
        raise MessageError("S3 event without a bucket name or object key")
    return name, key, etag.strip('"') if isinstance(etag, str) and etag else None


def slice_playlist(key: str) -> str | None:
    """The key of the playlist of the recording a slice belongs to, or None for anything else."""
    directory, _, name = key.rpartition("/")
    try:
        parsed = parse_name(name)
    except NamingError:
        return None
    if parsed.kind != "slice" or name.startswith("."):
        return None
    playlist = playlist_name(
        parsed.sid, parsed.cname, uid=parsed.uid, media=parsed.media, codec=parsed.codec, backup=parsed.backup
    )
    return f"{directory}/{playlist}" if directory else playlist


def not_a_recording(key: str) -> str | None:
    """Why the object at ``key`` does not start work, or None for a recording's playlist (its own, or
    a backup snapshot playlist ``<sid>_<cname>_<tick>_<index>.m3u8``: the job finds the recording
    it belongs to, even before the recording's own playlist is there)."""
    if "\0" in key or key.startswith("/") or any(part in ("", ".", "..") for part in key.split("/")):
        raise MessageError(f"unsafe object key {key!r}")
    name = key.rsplit("/", 1)[-1]
    if not name.endswith(".m3u8"):
        return "not a playlist"
    if split_snapshot_name(name) is not None:
        return None  # a backup snapshot of one of a recording's playlists (any kind)
    try:
        parsed = parse_name(name)
    except NamingError:
        return "a playlist not named like a recording's (<sid>_<cname>.m3u8)"
    if parsed.kind != "playlist":
        return "not a recording's playlist"
    return None


def _job(doc: Mapping[str, Any]) -> Trigger:
    location = doc.get("location")
    if not isinstance(location, str) or not location:
        raise MessageError("recpipe job without a location")
    policy = doc.get("policy")
    if policy is not None and policy not in POLICIES:
        raise MessageError(f"recpipe job with unknown policy {policy!r}")
    profile = doc.get("profile")
    if profile is not None and not isinstance(profile, dict):
        raise MessageError("recpipe job whose profile is not an object")
    text = {name: doc.get(name) for name in ("dest", "av_file_type", "sid")}
    if any(v is not None and not isinstance(v, str) for v in text.values()):
        raise MessageError("recpipe job with a non-text dest, av_file_type or sid")
    backuped_at = doc.get("backuped_at")
    if backuped_at is not None and not is_number(backuped_at):
        raise MessageError("recpipe job whose backuped_at is not a Unix time")
    options = JobOptions(
        dest=text["dest"],
        policy=policy,
        av_file_type=text["av_file_type"],
        force=bool(doc.get("force", False)),
        profile=profile,
        backuped_at=None if backuped_at is None else float(backuped_at),
    )
    return Trigger(origin="job", location=location, sid=text["sid"], options=options)


def _recorder(doc: Mapping[str, Any]) -> Parsed:
    kind = RECORDER_EVENTS.get(doc["eventType"]) if isinstance(doc["eventType"], int) else None
    if kind is None:
        return Parsed(
            ignored=(f"recorder notification of event type {doc['eventType']!r}: not a finished recording",)
        )
    payload = doc["payload"]
    if not isinstance(payload, dict) or not isinstance(payload.get("sid"), str) or not payload["sid"]:
        raise MessageError(f"recorder {kind} notification without a sid")
    backuped_at = None
    if kind == "backuped":  # some files are still on their way from Agora's backup cloud
        notified = doc.get("notifyMs")
        backuped_at = BACKUPED_NOW
        if isinstance(notified, int | float) and not isinstance(notified, bool) and notified > 0:
            backuped_at = notified / 1000
    trigger = Trigger(origin="recorder", location=None, sid=payload["sid"], backuped_at=backuped_at)
    return Parsed(triggers=(trigger,))


def is_number(value: object) -> bool:
    """A JSON number (not a boolean)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def job_message(location: str, *, sid: str | None = None, options: JobOptions = JobOptions()) -> str:
    """The body of a ``recpipe.job/1`` message (what ``recpipe enqueue`` sends)."""
    doc: dict[str, Any] = {"schema": JOB_SCHEMA, "location": location}
    extra = {
        "sid": sid,
        "dest": options.dest,
        "policy": options.policy,
        "av_file_type": options.av_file_type,
        "force": options.force or None,
        "profile": dict(options.profile) if options.profile is not None else None,
        "backuped_at": options.backuped_at,
    }
    doc.update({k: v for k, v in extra.items() if v is not None})
    return json.dumps(doc, ensure_ascii=False, sort_keys=True)


# --- Azure Event Grid (Blob Storage events) --------------------------------------------------------------

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"
MAX_EVENTS = 5000
"""More Event Grid events than a batch holds (it delivers up to 5,000 per webhook request)."""


def is_event_grid(doc: Mapping[str, Any]) -> bool:
    """An Event Grid event in its own schema (``eventType``, ``subject``, ``data``) or as a CloudEvent
    (``specversion``, ``type``, ``source``)."""
    kind = doc.get("type") if "specversion" in doc else doc.get("eventType")
    return isinstance(kind, str) and kind.startswith("Microsoft.") and "data" in doc


def event_type(doc: Mapping[str, Any]) -> str:
    """The event's type in either schema."""
    return str(doc.get("type") if "specversion" in doc else doc.get("eventType"))


def _event_grid(doc: Mapping[str, Any]) -> Parsed:
    kind = event_type(doc)
    if kind == VALIDATION:
        return Parsed(ignored=("an Event Grid subscription validation event",))
    if kind != BLOB_CREATED:
        return Parsed(ignored=(f"Event Grid {kind!r} event: only new blobs start work",))
    data = doc.get("data")
    if not isinstance(data, dict):
        raise MessageError("Event Grid BlobCreated event without its data")
    account, container, key = blob_of(data.get("url"))
    etag = data.get("eTag")
    etag = etag.strip('"') if isinstance(etag, str) and etag else None
    where = f"az://{account}/{container}"
    reason = not_a_recording(key)
    playlist = slice_playlist(key) if reason else None
    if playlist is not None:
        return Parsed(
            triggers=(Trigger(origin="eventgrid", location=f"{where}/{playlist}", from_slice=True),)
        )
    if reason:
        return Parsed(ignored=(f"{where}/{key}: {reason}",))
    return Parsed(triggers=(Trigger(origin="eventgrid", location=f"{where}/{key}", etag=etag),))


_BLOB_URL_HOST = re.compile(r"([a-z0-9]{3,24})\.blob\.[a-z0-9.-]+")
_CONTAINER = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")


def blob_of(url: Any) -> tuple[str, str, str]:
    """``(account, container, blob name)`` from a BlobCreated event's ``data.url``
    (``https://<account>.blob.core.windows.net/<container>/<blob>``, the name percent-encoded)."""
    if not isinstance(url, str) or not url:
        raise MessageError("Event Grid BlobCreated event without data.url")
    parts = urlsplit(url)
    host = _BLOB_URL_HOST.fullmatch(parts.hostname or "")
    if parts.scheme != "https" or host is None or parts.query or parts.username:
        raise MessageError(
            f"Event Grid BlobCreated event for an unexpected URL {parts.scheme}://{parts.hostname}"
        )
    container, _, raw = parts.path.lstrip("/").partition("/")
    if _CONTAINER.fullmatch(container) is None or not raw:
        raise MessageError("Event Grid BlobCreated event whose URL names no container and blob")
    return host.group(1), container, unquote(raw)
