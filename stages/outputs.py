"""What recpipe writes, named and labelled: the MP4s' names from the configured templates, the label
every output carries (``OWNER_LABEL``), and the checks that keep recpipe off the recorder's own files.

recpipe gives its MP4s Agora's names, which the recorder also writes with ``avFileType``
``["hls", "mp4"]``. An object at such a name is recpipe's when it carries recpipe's label; any other is
the recorder's, and recpipe never overwrites or deletes it: it writes ``….recpipe.mp4`` beside it
(``alongside_name``), a name the recorder never writes.
"""

from __future__ import annotations

from datetime import datetime

from pipeline.model.exceptions import ObjectNotFound
from pipeline.model.job import Job, Recording
from pipeline.model.naming import format_utc
from pipeline.storage.base import Storage

OWNER_LABEL = "recpipe-output"
"""Metadata recpipe writes with each of its outputs (value: the recording's name): what tells its MP4s
from the recorder's when both carry Agora's names."""


ALONGSIDE_SUFFIX = ".recpipe.mp4"
"""What recpipe's MP4 names end in when the recorder's set is there: a name the recorder never writes."""


def alongside_name(name: str) -> str:
    """``x_0.mp4`` → ``x_0.recpipe.mp4``: recpipe's MP4 beside the recorder's of the same index."""
    return name.removesuffix(".mp4") + ALONGSIDE_SUFFIX


def is_own(storage: Storage, key: str) -> bool:
    """Whether the object carries recpipe's label (it is one of recpipe's outputs); an object that is
    gone counts as recpipe's too (there is nothing of anyone else's to keep there)."""
    try:
        return OWNER_LABEL in storage.read_metadata(key)
    except ObjectNotFound:
        return True


def owner_label(job: Job) -> dict[str, str]:
    """The metadata recpipe writes with each output of ``job``."""
    return {OWNER_LABEL: job.recording.stem}


def label_for(key: str) -> dict[str, str]:
    """The metadata recpipe writes with one of its own objects that is not a recording's output (a
    report): the object's name without its extensions."""
    return {OWNER_LABEL: key.rpartition("/")[2].partition(".")[0]}


def name_taken(storage: Storage, key: str) -> bool:
    """Whether an object that is not recpipe's sits at ``key`` (so recpipe must not write there)."""
    return storage.exists(key) and not is_own(storage, key)


def mp4_file_name(recording: Recording, *, template: str, index: int, utc: datetime | None) -> str:
    """The MP4's file name from the configured template (fields: sid, cname, utc, index, uid, media,
    codec); ``utc``, the MP4's first slice's time, is needed only by a template that uses it."""
    return template.format(
        sid=recording.sid,
        cname=recording.cname,
        utc=format_utc(utc) if utc is not None else "",
        index=index,
        uid=recording.uid or "",
        media=recording.media or "",
        codec=recording.codec or "",
    )


DURATION_TOLERANCE_S = 0.5
"""Output vs. slice timeline: more than this is reported. A frame at 15 fps is 0.067 s and AAC
frames are 0.021 s, so a faithful copy lands well inside; half a second means lost media."""
