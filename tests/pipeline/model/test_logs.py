"""Log lines for machines and for people: JSON objects carrying the bound recording, sid and stage."""

from __future__ import annotations

import io
import json
import logging

from pipeline.model.logs import JsonFormatter, bound, context, setup_logging


def record(message: str, *, level: int = logging.INFO, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord("pipeline.run", level, __file__, 1, message, (), exc_info)


def test_a_json_line_says_when_what_and_where():
    with bound(recording="sid_room", sid="sid"), bound(stage="fetch"):
        line = JsonFormatter().format(record("hello %s"))
    doc = json.loads(line)
    assert doc["level"] == "info"
    assert doc["message"] == "hello %s"
    assert (doc["recording"], doc["sid"], doc["stage"]) == ("sid_room", "sid", "fetch")
    assert doc["time"].endswith("Z")
    assert "\n" not in line


def test_an_exception_gives_its_type_and_traceback():
    doc = json.loads(JsonFormatter().format(record("failed", level=logging.ERROR, exc=True)))
    assert doc["error"] == "ValueError"
    assert "boom" in doc["traceback"]


def test_the_context_is_undone_on_leaving():
    with bound(recording="a"):
        with bound(stage="verify", sid=None):
            assert context() == {"recording": "a", "stage": "verify"}
        assert context() == {"recording": "a"}
    assert context() == {}


def test_setup_logging_writes_json_lines_for_recpipes_loggers():
    stream = io.StringIO()
    handler = setup_logging(level=logging.INFO, fmt="json", stream=stream)
    try:
        with bound(recording="r1"):
            logging.getLogger("stages.fetch").info("fetched %d slices", 3)
        logging.getLogger("pipeline.x").debug("not at INFO")
    finally:
        for name in ("pipeline", "stages", "recpipe"):
            logging.getLogger(name).handlers.remove(handler)
    [line] = stream.getvalue().splitlines()
    assert json.loads(line) | {"time": None} == {
        "time": None,
        "level": "info",
        "logger": "stages.fetch",
        "message": "fetched 3 slices",
        "recording": "r1",
    }
