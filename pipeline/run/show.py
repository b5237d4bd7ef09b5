"""``recpipe show``: the report(s) of a recording, read from a report file or from where the
recording's outputs are, ready to be drawn (``pipeline.model.report_html``) or summed up in text.

An individual-mode recording's report lists its users' reports: they are read too (from storage by
their keys, or beside a report file by their names), so every user gets a timeline.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.model.exceptions import ConfigError, ObjectNotFound, RecordingNotFound
from pipeline.model.naming import report_name
from pipeline.model.report import load_report
from pipeline.model.report_html import render_page
from pipeline.run.app import Request, destination_for
from pipeline.storage.base import Storage
from pipeline.storage.locations import open_location
from stages.discover import find_recordings
from stages.publish import MAX_REPORT_BYTES

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class Shown:
    """A recording's report and, in individual mode, its users' reports."""

    report: dict[str, Any]
    users: tuple[dict[str, Any], ...] = ()
    where: str = ""
    """Where the report was read, for messages."""


def reports_to_show(
    target: str, *, sid: str | None, dest: str | None, endpoint_url: str | None, environ: Mapping[str, str]
) -> Shown:
    """The report at ``target`` — a report file, or a location holding a recording (``--sid`` when it
    holds several) whose report is beside it or under ``dest``."""
    path = Path(target)
    if path.suffix == ".json" and path.is_file():
        report = _parse(path.read_bytes(), where=str(path))
        users = tuple(
            _parse(user_file.read_bytes(), where=str(user_file))
            for user_file in (path.parent / str(key).rpartition("/")[2] for key in _user_keys(report))
            if user_file.is_file()
        )
        return Shown(report=report, users=users, where=str(path))
    source = open_location(target, endpoint_url=endpoint_url, environ=environ)
    found = [r for r in find_recordings(source.storage, source.prefix) if sid is None or r.sid == sid]
    recordings = {(r.directory, r.sid, r.cname): r for r in found}
    if not recordings:
        raise RecordingNotFound(f"no recording at {source.display}" + (f" with sid {sid}" if sid else ""))
    if len(recordings) > 1:
        raise ConfigError(f"{len(recordings)} recordings at {source.display}; choose one with --sid")
    rec = next(iter(recordings.values()))
    destination = destination_for(
        rec,
        request=Request(location=target, dest=dest, endpoint_url=endpoint_url),
        source=source,
        environ=environ,
    )
    key = destination.directory + report_name(rec.sid, rec.cname)
    report = _read(destination.storage, key)
    users = tuple(_read(destination.storage, k) for k in _user_keys(report))
    return Shown(report=report, users=users, where=f"{destination.storage.url}/{key}")


def _user_keys(report: Mapping[str, Any]) -> list[str]:
    return [
        u["report"]
        for u in report.get("users", [])
        if isinstance(u, dict) and isinstance(u.get("report"), str)
    ]


def _read(storage: Storage, key: str) -> dict[str, Any]:
    try:
        data = storage.read_bytes(key, max_bytes=MAX_REPORT_BYTES)
    except ObjectNotFound as err:
        raise RecordingNotFound(
            f"no report at {storage.url}/{key}: run `recpipe verify` or `recpipe process` first"
        ) from err
    return _parse(data, where=f"{storage.url}/{key}")


def _parse(data: bytes, *, where: str) -> dict[str, Any]:
    report = load_report(data)
    if report is None:
        raise ConfigError(f"{where} is not a recpipe report (recpipe.report/1)")
    return report


def write_html(out: Path, report: Mapping[str, Any], users: tuple[Mapping[str, Any], ...] = ()) -> Path:
    """Write the page for ``report`` (and its users' reports) to ``out``, atomically."""
    page = render_page(report, users)
    out = out.expanduser()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(page)
        os.chmod(tmp, 0o644)  # a page to open in a browser, not a secret (mkstemp made it 0600)
        os.replace(tmp, out)
    except OSError as err:
        raise ConfigError(f"cannot write {out}: {err.strerror or err}") from err
    log.info("wrote %s (%d bytes)", out, len(page.encode()))
    return out
