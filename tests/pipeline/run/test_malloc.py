"""Limiting glibc's malloc arenas (pipeline.run.malloc)."""

from __future__ import annotations

import ctypes.util
import platform

import pytest

from pipeline.run import malloc


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's arena limit is glibc's")
def test_glibc_takes_the_limit() -> None:
    assert malloc.limit_malloc_arenas(2) is True


def test_without_a_c_library_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert malloc.limit_malloc_arenas() is False


def test_a_c_library_without_mallopt_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoMallopt:
        def __init__(self, name: str) -> None:
            pass

    monkeypatch.setattr(malloc.ctypes, "CDLL", NoMallopt)
    assert malloc.limit_malloc_arenas() is False
