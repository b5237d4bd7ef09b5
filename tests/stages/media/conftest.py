"""Fixtures for the media readers' tests: the ffmpeg binary and real files made with it."""

from __future__ import annotations

import os

import pytest

from pipeline.run.tools import find_ffmpeg


@pytest.fixture(scope="session")
def ffmpeg_exe() -> str:
    """The ffmpeg binary recpipe would use."""
    return find_ffmpeg(os.environ)
