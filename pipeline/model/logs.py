"""Logs for people and for machines: the context a log line belongs to (which recording, sid, stage),
and the two formats recpipe writes — ``recpipe: LEVEL: message`` for a terminal, one JSON object per
line (``--log-format json``; the Lambda handler's default) for a fleet's log pipeline.

The context is a ``contextvars`` variable: ``bound(recording=…, sid=…)`` around a job, ``bound(stage=…)``
around a stage; every line logged inside carries it. A thread starts with an empty context, so a worker
binds it in the thread that runs the job.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
FIELDS = ("recording", "sid", "stage")
"""What a line's context may say, in this order."""
LOGGERS = ("pipeline", "stages", "recpipe")
"""recpipe's loggers (the libraries' own stay quiet unless they warn)."""

_context: ContextVar[dict[str, str]] = ContextVar("recpipe_log_context", default={})  # noqa: B039 - never mutated


@contextlib.contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """Every line logged inside says these fields (None leaves a field as it was)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def context() -> dict[str, str]:
    """The fields bound here."""
    return dict(_context.get())


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``logger``,
    ``message``, the bound ``recording``/``sid``/``stage``, and for an exception its ``error`` type and
    ``traceback``."""

    def format(self, record: logging.LogRecord) -> str:
        """The line for ``record``."""
        when = datetime.fromtimestamp(record.created, tz=UTC)
        doc: dict[str, object] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        bound_here = context()
        doc.update({k: bound_here[k] for k in FIELDS if k in bound_here})
        error = getattr(record, "error_type", None)
        if record.exc_info and record.exc_info[0] is not None:
            error = error or record.exc_info[0].__name__
            doc["traceback"] = self.formatException(record.exc_info)
        if error:
            doc["error"] = str(error)
        return json.dumps(doc, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``recpipe: LEVEL: message`` (with ``[recording stage]`` when a context is bound)."""

    def format(self, record: logging.LogRecord) -> str:
        """The line for ``record``."""
        text = super().format(record)
        where = " ".join(v for k, v in context().items() if k in ("recording", "stage"))
        return f"recpipe: {record.levelname}: {f'[{where}] ' if where else ''}{text}"


def setup_logging(*, level: int, fmt: LogFormat = "text", stream: object = None) -> logging.Handler:
    """Send recpipe's loggers to ``stream`` (stderr) in ``fmt`` at ``level``; the handler it set."""
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter("%(message)s"))
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level)
        logger.propagate = False
    return handler
